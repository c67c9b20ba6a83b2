use super::*;
use std::net::{IpAddr, Ipv4Addr};

fn config() -> KubeletConfig {
    let mut c = KubeletConfig::new(
        "n1",
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        "/run/cri.sock",
        "/tmp/x",
    );
    c.control_plane = true;
    c
}

fn observed() -> Observed {
    Observed {
        host: HostInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            memory_available_bytes: 2 << 30,
            storage_bytes: 100 << 30,
            storage_available_bytes: 50 << 30,
            pid_max: 4_194_304,
            pids_in_use: 200,
            ..Default::default()
        },
        runtime_version: Some("containerd://1.6.20".into()),
        images: vec![],
    }
}

#[test]
fn labels_carry_the_well_known_ones_and_the_control_plane_role() {
    let l = node_labels(&config());
    assert_eq!(l["kubernetes.io/hostname"], "n1");
    assert_eq!(l["kubernetes.io/os"], "linux");
    assert_eq!(l["node-role.kubernetes.io/control-plane"], "");
    assert!(l.contains_key("kubernetes.io/arch"));
}

#[test]
fn allocatable_is_capacity_less_eviction_thresholds() {
    let (cap, alloc) = resources(&observed().host);
    assert_eq!(cap["memory"].0, "4194304Ki");
    assert_eq!(
        alloc["memory"].0,
        format!("{}Ki", 4 * 1024 * 1024 - 100 * 1024)
    );
    assert_eq!(cap["pods"].0, "110");
    assert_eq!(
        alloc["ephemeral-storage"].0,
        ((100u64 << 30) * 9 / 10).to_string()
    );
}

#[test]
fn conditions_use_upstream_reasons_and_keep_transition_times() {
    let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let s = node_status(&config(), &observed(), &[], t0);
    let conds = s.conditions.clone().unwrap_or_default();
    let kinds: Vec<_> = conds.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        kinds,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert_eq!(conds[3].reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        conds[3].message.as_deref(),
        Some("kubelet is posting ready status")
    );
    assert_eq!(
        conds[0].reason.as_deref(),
        Some("KubeletHasSufficientMemory")
    );
    let t1 = t0 + chrono::Duration::seconds(30);
    let again = node_status(&config(), &observed(), &conds, t1);
    assert_eq!(
        comparable(&again),
        comparable(&s),
        "unchanged status compares equal"
    );
    let mut down = observed();
    down.runtime_version = None;
    let not_ready = node_status(&config(), &down, &conds, t1);
    let ready = &not_ready.conditions.unwrap_or_default()[3];
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time, Some(Time(to_ts(t1))));
}

#[test]
fn meminfo_and_os_release_parse() {
    let m = "MemTotal:        4028344 kB\nMemAvailable:    3000000 kB\n";
    assert_eq!(host::meminfo_field(m, "MemTotal"), Some(4028344 * 1024));
    assert_eq!(
        host::os_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
        Some("Debian GNU/Linux 12 (bookworm)".into())
    );
}
