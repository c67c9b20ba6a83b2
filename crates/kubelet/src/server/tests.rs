use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::handlers::{Decision, authorize, log_path_parts};
use super::logs::{LogFilter, LogOptions, parse_line, tail_start};
use super::stats::{
    ContainerUsage, NodeUsage, PodUsage, Usage, parse_meminfo, parse_proc_stat, render_prometheus,
    render_summary, resource_metrics,
};
use super::tls;
use k8rs_auth::UserInfo;

const LOG: &str = "\
2026-01-01T00:00:01.000000001Z stdout F one
2026-01-01T00:00:02.5Z stderr F two
2026-01-01T00:00:03Z stdout P thr
2026-01-01T00:00:03.1Z stdout F ee
2026-01-01T00:00:04Z stdout F four
";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn render(o: &LogOptions, content: &str) -> String {
    let start = o
        .tail_lines
        .map_or(0, |n| tail_start(content.as_bytes(), n));
    let mut out = Vec::new();
    LogFilter::new(o).push_all(&content.as_bytes()[start..], &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn parses_cri_log_lines() {
    let l = parse_line(b"2026-01-01T00:00:02.5Z stderr P hello world").expect("parsed");
    assert_eq!(l.stream, "stderr");
    assert!(l.partial);
    assert_eq!(l.message, b"hello world");
    assert_eq!(l.time_text, "2026-01-01T00:00:02.5Z");
    let empty = parse_line(b"2026-01-01T00:00:02Z stdout F").expect("parsed");
    assert_eq!(empty.message, b"");
    assert!(parse_line(b"garbage line").is_none());
    assert!(parse_line(b"").is_none());
}

#[test]
fn plain_logs_join_partial_lines() {
    let o = LogOptions::default();
    assert_eq!(render(&o, LOG), "one\ntwo\nthree\nfour\n");
}

#[test]
fn tail_since_timestamps_and_limit() {
    let tail = LogOptions {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(render(&tail, LOG), "ee\nfour\n");
    let none = LogOptions {
        tail_lines: Some(0),
        ..Default::default()
    };
    assert_eq!(render(&none, LOG), "");
    let many = LogOptions {
        tail_lines: Some(100),
        ..Default::default()
    };
    assert_eq!(render(&many, LOG), "one\ntwo\nthree\nfour\n");

    let since = LogOptions {
        since: Some(t("2026-01-01T00:00:03Z")),
        ..Default::default()
    };
    assert_eq!(render(&since, LOG), "three\nfour\n");

    let stamps = LogOptions {
        timestamps: true,
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(render(&stamps, LOG), "2026-01-01T00:00:04Z four\n");

    let limit = LogOptions {
        limit_bytes: Some(6),
        ..Default::default()
    };
    assert_eq!(render(&limit, LOG), "one\ntw");
}

#[test]
fn tail_start_counts_complete_lines() {
    assert_eq!(tail_start(b"a\nb\nc\n", 1), 4);
    assert_eq!(tail_start(b"a\nb\nc\n", 3), 0);
    assert_eq!(tail_start(b"a\nb\nc", 1), 4);
    assert_eq!(tail_start(b"", 5), 0);
}

#[test]
fn log_query_parameters() {
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 1, 0)
        .single()
        .unwrap_or_default();
    let o = LogOptions::from_query(
        "follow=true&previous=1&tailLines=3&timestamps=true&limitBytes=10&sinceSeconds=60",
        now,
    )
    .expect("parsed");
    assert!(o.follow && o.previous && o.timestamps);
    assert_eq!(o.tail_lines, Some(3));
    assert_eq!(o.limit_bytes, Some(10));
    assert_eq!(o.since, Some(t("2026-01-01T00:00:00Z")));
    let o = LogOptions::from_query("sinceTime=2026-01-01T00%3A00%3A30Z", now).expect("parsed");
    assert_eq!(o.since, Some(t("2026-01-01T00:00:30Z")));
    assert!(LogOptions::from_query("tailLines=x", now).is_err());
    assert!(LogOptions::from_query("limitBytes=0", now).is_err());
    assert!(LogOptions::from_query("sinceSeconds=1&sinceTime=2026-01-01T00:00:30Z", now).is_err());
    assert_eq!(LogOptions::from_query("", now), Ok(LogOptions::default()));
}

#[test]
fn log_paths() {
    assert_eq!(
        log_path_parts("/containerLogs/default/web/app"),
        Some(("default".into(), "web".into(), "app".into()))
    );
    assert_eq!(log_path_parts("/containerLogs/default/web"), None);
    assert_eq!(log_path_parts("/containerLogs/a/b/c/d"), None);
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        uid: String::new(),
        extra: BTreeMap::new(),
    }
}

#[test]
fn only_the_apiserver_and_admins_may_call() {
    assert_eq!(authorize(None, "get", "proxy"), Decision::Unauthorized);
    let apiserver = user("system:apiserver", &["system:masters"]);
    assert_eq!(authorize(Some(&apiserver), "get", "proxy"), Decision::Allow);
    let admin = user("system:admin", &["system:masters", "system:authenticated"]);
    assert_eq!(authorize(Some(&admin), "get", "metrics"), Decision::Allow);
    let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
    assert_eq!(
        authorize(Some(&node), "get", "proxy"),
        Decision::Forbidden(
            "Forbidden (user=system:node:n1, verb=get, resource=nodes, subresource=proxy)".into()
        )
    );
}

fn fixture() -> NodeUsage {
    let ts = 1_700_000_123_456_000_000;
    let usage = |cpu: u64, mem: u64| Usage {
        timestamp: ts,
        cpu_core_nanos: Some(cpu),
        nano_cores: Some(1000),
        working_set_bytes: Some(mem),
        usage_bytes: Some(mem * 2),
        available_bytes: None,
    };
    NodeUsage {
        name: "n1".into(),
        start_time: 1_600_000_000_000_000_000,
        usage: Usage {
            nano_cores: None,
            available_bytes: Some(4096),
            ..usage(12_500_000_000, 1024)
        },
        pods: vec![PodUsage {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            start_time: 1_700_000_000_000_000_000,
            usage: usage(2_500_000_000, 512),
            containers: vec![ContainerUsage {
                name: "app".into(),
                start_time: 1_700_000_000_000_000_000,
                usage: usage(2_500_000_000, 512),
            }],
        }],
    }
}

#[test]
fn resource_metrics_in_seconds_and_milliseconds() {
    use k8rs_resourcemetrics::{Point, Usage as Series};
    let at = |value| Some(Point::new(value, 1_700_000_123_456));
    let m = resource_metrics(&fixture());
    assert_eq!(m.node, None);
    let usage = |cpu, memory| Series {
        cpu: at(cpu),
        memory: at(memory),
    };
    assert_eq!(m.usage, usage(12.5, 1024.0));
    let pod = &m.pods[0];
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("default", "web")
    );
    assert_eq!(pod.usage, usage(2.5, 512.0));
    let app = &pod.containers[0];
    assert_eq!(app.name, "app");
    assert_eq!(app.usage, usage(2.5, 512.0));
    assert_eq!(Some(app.start_time), at(1_700_000_000.0));

    let mut unknown = fixture();
    unknown.usage.cpu_core_nanos = None;
    assert_eq!(resource_metrics(&unknown).usage.cpu, None);
    let text = render_prometheus(&fixture());
    assert!(text.contains("\nnode_cpu_usage_seconds_total 12.5 1700000123456\n"));
}

#[test]
fn summary_api_shape() {
    let s = render_summary(&fixture());
    assert_eq!(s["node"]["nodeName"], "n1");
    assert_eq!(s["node"]["cpu"]["usageCoreNanoSeconds"], 12_500_000_000u64);
    assert_eq!(s["node"]["memory"]["workingSetBytes"], 1024);
    assert_eq!(s["node"]["memory"]["availableBytes"], 4096);
    assert_eq!(s["node"]["startTime"], "2020-09-13T12:26:40Z");
    let pod = &s["pods"][0];
    assert_eq!(pod["podRef"]["name"], "web");
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["podRef"]["uid"], "u1");
    assert_eq!(pod["cpu"]["usageNanoCores"], 1000);
    assert_eq!(pod["memory"]["workingSetBytes"], 512);
    assert_eq!(pod["containers"][0]["name"], "app");
    assert_eq!(
        pod["containers"][0]["cpu"]["usageCoreNanoSeconds"],
        2_500_000_000u64
    );
}

#[test]
fn node_usage_from_proc() {
    let stat = "cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 1 2 3 4\nbtime 1700000000\n";
    let (cpu, boot) = parse_proc_stat(stat);
    assert_eq!(cpu, Some(170 * 10_000_000));
    assert_eq!(boot, Some(1_700_000_000_000_000_000));
    let meminfo = "MemTotal:       1000 kB\nMemFree:         300 kB\nMemAvailable:    600 kB\n";
    assert_eq!(
        parse_meminfo(meminfo),
        (Some(400 * 1024), Some(700 * 1024), Some(600 * 1024))
    );
}

#[test]
fn serving_certificates_name_the_node_ip_and_name() {
    let config = crate::KubeletConfig::new("n1", [10, 0, 0, 5].into(), "/x.sock", "/tmp/x");
    let names = tls::names(&config);
    assert_eq!(names.node, "n1");
    assert_eq!(names.ips, [config.node_ip]);
    assert_eq!(names.dns_names, ["n1"]);
    let pem = names.self_signed().expect("self-signed");
    assert!(k8rs_auth::serving::names_ip(&pem.cert_pem, config.node_ip));
    assert!(k8rs_auth::serving::ServingCert::new(&pem).is_ok());
}

mod follow {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use k8s_cri::v1 as cri;
    use tokio::sync::mpsc;

    use crate::cri::{Cri, labels};
    use crate::server::logs::{LogOptions, LogRequest, find_target, stream_log};
    use crate::testing::FakeCri;

    fn line(msg: &str) -> String {
        format!("2026-01-01T00:00:00Z stdout F {msg}\n")
    }

    fn pod_labels() -> HashMap<String, String> {
        HashMap::from([
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_NAME.to_string(), "p".to_string()),
            (labels::POD_UID.to_string(), "u1".to_string()),
        ])
    }

    async fn container(cri: &FakeCri, sandbox: &str, attempt: u32) -> String {
        let mut labels = pod_labels();
        labels.insert(labels::CONTAINER_NAME.into(), "c".into());
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt,
            }),
            labels,
            log_path: format!("c/{attempt}.log"),
            ..Default::default()
        };
        let id = cri
            .create_container(sandbox, config, Default::default())
            .await
            .unwrap_or_default();
        let _ = cri.start_container(&id).await;
        // Creation times are nanoseconds: keep instances apart.
        tokio::time::sleep(Duration::from_millis(2)).await;
        id
    }

    async fn next(rx: &mut mpsc::Receiver<Bytes>) -> Option<String> {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        got.ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn follows_growth_rotation_and_the_next_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let logs = dir.path().to_path_buf();
        std::fs::create_dir_all(logs.join("c")).unwrap_or_default();
        let cri = Arc::new(FakeCri::default());
        let sandbox = cri
            .run_pod_sandbox(cri::PodSandboxConfig {
                labels: pod_labels(),
                log_directory: logs.display().to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        std::fs::write(logs.join("c/0.log"), line("a")).unwrap_or_default();
        container(&cri, &sandbox, 0).await;
        let previous = find_target(cri.as_ref(), "default", "p", "c", true).await;
        assert!(previous.is_err());
        let target = find_target(cri.as_ref(), "default", "p", "c", false)
            .await
            .unwrap_or_else(|e| panic!("target: {e}"));
        let (tx, mut rx) = mpsc::channel(16);
        let req = LogRequest {
            cri: cri.clone(),
            namespace: "default".into(),
            pod: "p".into(),
            container: "c".into(),
            options: LogOptions {
                follow: true,
                ..Default::default()
            },
        };
        let task = tokio::spawn(stream_log(req, target, tx));
        assert_eq!(next(&mut rx).await.as_deref(), Some("a\n"));

        let append = |path: &std::path::Path, text: &str| {
            use std::io::Write;
            let f = std::fs::OpenOptions::new().append(true).open(path);
            f.and_then(|mut f| f.write_all(text.as_bytes()))
                .unwrap_or_else(|e| panic!("append: {e}"));
        };
        append(&logs.join("c/0.log"), &line("b"));
        assert_eq!(next(&mut rx).await.as_deref(), Some("b\n"));

        // Rotation: the live file is renamed away and a new one written.
        std::fs::rename(logs.join("c/0.log"), logs.join("c/0.log.1")).unwrap_or_default();
        std::fs::write(logs.join("c/0.log"), line("c")).unwrap_or_default();
        assert_eq!(next(&mut rx).await.as_deref(), Some("c\n"));

        // The container exits and restarts: the next instance's file follows.
        cri.exit("c", 1);
        std::fs::write(logs.join("c/1.log"), line("d")).unwrap_or_default();
        container(&cri, &sandbox, 1).await;
        assert_eq!(next(&mut rx).await.as_deref(), Some("d\n"));
        let previous = find_target(cri.as_ref(), "default", "p", "c", true).await;
        assert_eq!(previous.map(|t| t.path), Ok(logs.join("c/0.log")));

        // It exits with no next instance: the stream ends.
        cri.exit("c", 1);
        assert_eq!(next(&mut rx).await, None);
        let _ = task.await;
    }
}
