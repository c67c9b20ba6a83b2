//! The CRI configurations of a pod's sandbox and containers (upstream's
//! `generatePodSandboxConfig` and `generateContainerConfig`): metadata and labels, logs, DNS,
//! ports, cgroups per QoS class, resources and security contexts. Pure functions.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::env::ConfigError;
use super::qos::{milli, qos_class, whole};
use crate::KubeletConfig;
use crate::cri::labels;

/// CPU period for quotas, in microseconds.
pub const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1000;
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn meta(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.name.clone().unwrap_or_default(),
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.uid.clone().unwrap_or_default(),
    )
}

/// The pod's log directory: `<log_root>/<ns>_<name>_<uid>`.
pub fn log_dir(config: &KubeletConfig, pod: &Pod) -> PathBuf {
    let (name, ns, uid) = meta(pod);
    config.log_root.join(format!("{ns}_{name}_{uid}"))
}

/// A container's log path relative to the log directory: `<container>/<restart>.log`.
pub fn log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

/// The pod's cgroup: `<root>/pod<uid>` for Guaranteed pods, `<root>/<qos>/pod<uid>` otherwise.
pub fn cgroup_parent(config: &KubeletConfig, pod: &Pod) -> String {
    let (_, _, uid) = meta(pod);
    let root = config.cgroup_root.trim_end_matches('/');
    match qos_class(pod) {
        "Guaranteed" => format!("{root}/pod{uid}"),
        "Burstable" => format!("{root}/burstable/pod{uid}"),
        _ => format!("{root}/besteffort/pod{uid}"),
    }
}

/// The labels every sandbox and container of the pod carries.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (name, ns, uid) = meta(pod);
    HashMap::from([
        (labels::POD_NAME.to_string(), name),
        (labels::POD_NAMESPACE.to_string(), ns),
        (labels::POD_UID.to_string(), uid),
    ])
}

/// The host's resolver settings, for `dnsPolicy: Default` (and ClusterFirst without cluster
/// DNS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl HostDns {
    /// Parses resolv.conf.
    pub fn parse(text: &str) -> HostDns {
        let mut d = HostDns::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => d.servers.extend(words.next().map(str::to_string)),
                Some("search") => d.searches = words.map(str::to_string).collect(),
                Some("options") => d.options = words.map(str::to_string).collect(),
                _ => {}
            }
        }
        d
    }
}

fn dns_config(pod: &Pod, config: &KubeletConfig, host: &HostDns) -> cri::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let (_, ns, _) = meta(pod);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_net = spec.host_network == Some(true);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_net,
        _ => false,
    };
    let mut d = if policy == "None" {
        cri::DnsConfig::default()
    } else if cluster && !config.cluster_dns.is_empty() {
        let domain = &config.cluster_domain;
        let mut searches = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        searches.extend(host.searches.iter().cloned());
        cri::DnsConfig {
            servers: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        cri::DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        }
    };
    if let Some(extra) = spec.dns_config {
        d.servers.extend(extra.nameservers.unwrap_or_default());
        d.searches.extend(extra.searches.unwrap_or_default());
        for o in extra.options.unwrap_or_default() {
            let name = o.name.unwrap_or_default();
            d.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            d.options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    d
}

fn port_mappings(pod: &Pod) -> Vec<cri::PortMapping> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

fn namespaces(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |host: Option<bool>, otherwise: cri::NamespaceMode| {
        (if host == Some(true) {
            cri::NamespaceMode::Node
        } else {
            otherwise
        }) as i32
    };
    let pid_default = if spec.share_process_namespace == Some(true) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, cri::NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid_default),
        ipc: mode(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

fn seccomp(
    pod_sc: Option<&PodSecurityContext>,
    sc: Option<&SecurityContext>,
) -> Option<cri::SecurityProfile> {
    let profile = sc
        .and_then(|s| s.seccomp_profile.clone())
        .or_else(|| pod_sc.and_then(|s| s.seccomp_profile.clone()));
    let (kind, localhost) = match profile {
        Some(p) if p.type_ == "RuntimeDefault" => {
            (cri::security_profile::ProfileType::RuntimeDefault, None)
        }
        Some(p) if p.type_ == "Localhost" => (
            cri::security_profile::ProfileType::Localhost,
            p.localhost_profile,
        ),
        _ => (cri::security_profile::ProfileType::Unconfined, None),
    };
    Some(cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost.unwrap_or_default(),
    })
}

/// The sandbox configuration of `pod`'s `attempt`th sandbox.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    config: &KubeletConfig,
    host_dns: &HostDns,
) -> cri::PodSandboxConfig {
    let (name, ns, uid) = meta(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network == Some(true);
    let mut labels = pod.metadata.labels.clone().unwrap_or_default();
    labels.extend(pod_labels(pod).into_iter().collect::<Vec<_>>());
    let hostname = if host_net {
        String::new()
    } else {
        let h = spec.hostname.clone().unwrap_or_else(|| name.clone());
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid,
            namespace: ns,
            attempt,
        }),
        hostname,
        log_directory: log_dir(config, pod).to_string_lossy().into_owned(),
        dns_config: Some(dns_config(pod, config, host_dns)),
        port_mappings: port_mappings(pod),
        labels: labels.into_iter().collect(),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(config, pod),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                run_as_user: pod_sc.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: pod_sc.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental(&pod_sc),
                privileged,
                seccomp: seccomp(Some(&pod_sc), None),
                ..Default::default()
            }),
            sysctls: pod_sc
                .sysctls
                .iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

fn supplemental(pod_sc: &PodSecurityContext) -> Vec<i64> {
    let mut groups = pod_sc.supplemental_groups.clone().unwrap_or_default();
    if let Some(g) = pod_sc.fs_group {
        groups.push(g);
    }
    groups
}

/// Upstream's `milliCPUToShares`.
pub fn shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu * 1024 / 1000).max(MIN_SHARES)
}

/// Upstream's `milliCPUToQuota`.
pub fn quota(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu * CPU_PERIOD / 1000).max(MIN_QUOTA)
}

/// The container's cgroup resources; `node_memory` (bytes) scales Burstable pods' OOM score.
pub fn resources(pod: &Pod, c: &Container, node_memory: i64) -> cri::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let cpu_limit = limits.get("cpu").map(milli);
    let cpu_request = requests.get("cpu").map(milli).or(cpu_limit).unwrap_or(0);
    let mem_limit = limits.get("memory").map(whole).unwrap_or(0);
    let mem_request = requests.get("memory").map(whole).unwrap_or(mem_limit);
    let oom = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ if node_memory > 0 => (1000 - 1000 * mem_request / node_memory).clamp(2, 999),
        _ => 999,
    };
    cri::LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map(quota).unwrap_or(0),
        cpu_shares: shares(cpu_request),
        memory_limit_in_bytes: mem_limit,
        oom_score_adj: oom,
        ..Default::default()
    }
}

/// The effective user of a container: its own, else the pod's, else the image's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

fn check_non_root(
    pod: &Pod,
    c: &Container,
    sc: &SecurityContext,
    pod_sc: &PodSecurityContext,
    image: &ImageUser,
) -> Result<(), ConfigError> {
    let non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    if !non_root {
        return Ok(());
    }
    let (name, ns, _) = meta(pod);
    let who = format!(
        "(pod: \"{name}_{ns}({})\", container: {})",
        meta(pod).2,
        c.name
    );
    match sc.run_as_user.or(pod_sc.run_as_user).or(image.uid) {
        Some(0) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root {who}"
        ))),
        Some(_) => Ok(()),
        None if !image.username.is_empty() => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({}), cannot verify user is non-root {who}",
            image.username
        ))),
        None => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root {who}"
        ))),
    }
}

fn container_security(
    pod: &Pod,
    c: &Container,
    image: &ImageUser,
) -> Result<cri::LinuxContainerSecurityContext, ConfigError> {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    check_non_root(pod, c, &sc, &pod_sc, image)?;
    let privileged = sc.privileged == Some(true);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        (own(MASKED_PATHS), own(READONLY_PATHS))
    };
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespaces(pod)),
        run_as_user: sc
            .run_as_user
            .or(pod_sc.run_as_user)
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(pod_sc.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: supplemental(&pod_sc),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: masked,
        readonly_paths: readonly,
        seccomp: seccomp(Some(&pod_sc), Some(&sc)),
        ..Default::default()
    })
}

/// A stable hash of a container's spec (FNV-1a over its JSON), recorded on the container so
/// that a changed spec (a new image) restarts it.
pub fn container_hash(c: &Container) -> String {
    let json = serde_json::to_string(c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What a container's configuration needs besides the pod.
#[derive(Clone, Debug, Default)]
pub struct ContainerParams {
    pub attempt: u32,
    pub env: Vec<(String, String)>,
    /// The image to run (the pulled reference).
    pub image: String,
    pub image_user: ImageUser,
    /// The host file mounted at `terminationMessagePath`.
    pub termination_message_file: Option<PathBuf>,
    pub node_memory: i64,
    /// The container's volume mounts (before the termination message file's).
    pub mounts: Vec<cri::Mount>,
}

/// The container configuration of `c`.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    p: &ContainerParams,
) -> Result<cri::ContainerConfig, ConfigError> {
    let (command, args) = super::env::expand_command(c, &p.env);
    let mut labels = pod_labels(pod);
    labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let mut annotations = HashMap::from([
        (labels::RESTART_COUNT.to_string(), p.attempt.to_string()),
        (labels::TERMINATION_GRACE.to_string(), grace.to_string()),
        (labels::CONTAINER_HASH.to_string(), container_hash(c)),
    ]);
    let mut mounts = p.mounts.clone();
    if let Some(file) = &p.termination_message_file {
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        annotations.insert(
            labels::TERMINATION_MESSAGE_HOST_PATH.into(),
            file.to_string_lossy().into_owned(),
        );
        mounts.push(cri::Mount {
            container_path: path,
            host_path: file.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: p.attempt,
        }),
        image: Some(crate::cri::image_spec(&p.image)),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: p
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: log_path(&c.name, p.attempt),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(pod, c, p.node_memory)),
            security_context: Some(container_security(pod, c, &p.image_user)?),
        }),
        ..Default::default()
    })
}
