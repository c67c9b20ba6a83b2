use super::*;

const TS: i64 = 1_700_000_123_456;

fn usage(cpu: f64, memory: f64) -> Usage {
    Usage {
        cpu: Some(Point::new(cpu, TS)),
        memory: Some(Point::new(memory, TS)),
    }
}

fn node(label: Option<&str>) -> NodeMetrics {
    NodeMetrics {
        node: label.map(String::from),
        usage: usage(12.5, 1024.0),
        pods: vec![PodMetrics {
            namespace: "default".into(),
            name: "web".into(),
            usage: usage(2.5, 512.0),
            containers: vec![ContainerMetrics {
                name: "app".into(),
                usage: usage(2.5, 512.0),
                start_time: Point::new(1_700_000_000.0, TS),
            }],
        }],
    }
}

#[test]
fn renders_the_kubelet_resource_metrics() {
    let text = render(&[node(None)]);
    for want in [
        "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds\n",
        "# TYPE node_cpu_usage_seconds_total counter\n",
        "# TYPE node_memory_working_set_bytes gauge\n",
        "\nnode_cpu_usage_seconds_total 12.5 1700000123456\n",
        "\nnode_memory_working_set_bytes 1024 1700000123456\n",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2.5 1700000123456\n",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 512 1700000123456\n",
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 2.5 1700000123456\n",
        "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 512 1700000123456\n",
        "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1700000000 1700000123456\n",
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut sorted = families.clone();
    sorted.sort_unstable();
    assert_eq!(families, sorted);
    assert_eq!(families.len(), 8);
}

#[test]
fn node_labels_escaping_and_missing_points() {
    let mut n = node(Some("n1"));
    n.pods[0].name = "we\"b\\\n".into();
    n.pods[0].usage.memory = None;
    let text = render(&[n, node(Some("n2"))]);
    assert!(text.contains("node_cpu_usage_seconds_total{node=\"n1\"} 12.5 1700000123456\n"));
    assert!(text.contains("node_cpu_usage_seconds_total{node=\"n2\"} 12.5 1700000123456\n"));
    assert!(text.contains("pod=\"we\\\"b\\\\\\n\"} 2.5"), "{text}");
    assert_eq!(text.matches("pod_memory_working_set_bytes{").count(), 1);
}

#[test]
fn parses_what_it_renders() {
    let mut odd = node(Some("n1"));
    odd.pods[0].containers[0].name = "side \"car\"\n".into();
    let scrape = parse(&render(&[odd, node(Some("n2"))]), 0).expect("parses");
    assert_eq!(scrape.nodes.len(), 2);
    assert_eq!(scrape.nodes[&Some("n1".into())], usage(12.5, 1024.0));
    let key = ("default".into(), "web".into(), "side \"car\"\n".into());
    assert_eq!(scrape.containers[&key], usage(2.5, 512.0));
    let single = parse(&render(&[node(None)]), 0).expect("parses");
    assert_eq!(single.nodes[&None], usage(12.5, 1024.0));
}

const KUBELET: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 12.5 1700000000000
container_cpu_usage_seconds_total{container="side \"car\"",namespace="default",pod="web-1"} 0.25 1700000000000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web-1"} 6.7108864e+07 1700000000001
container_start_time_seconds{container="app",namespace="default",pod="web-1"} 1.7e+09 1700000000000
node_cpu_usage_seconds_total 100.5 1700000000002
node_memory_working_set_bytes 1.073741824e+09 1700000000002
pod_cpu_usage_seconds_total{namespace="default",pod="web-1"} 12.75 1700000000000
resource_scrape_error 0
"#;

#[test]
fn parses_the_kubelet_resource_metrics() {
    let s = parse(KUBELET, 5).expect("parses");
    let node = s.nodes[&None];
    assert_eq!(
        node.cpu,
        Some(Point {
            value: 100.5,
            ts_ms: 1_700_000_000_002
        })
    );
    assert_eq!(node.memory.map(|p| p.value), Some(1_073_741_824.0));
    let app = s.containers[&("default".into(), "web-1".into(), "app".into())];
    assert_eq!(app.cpu.map(|p| p.value), Some(12.5));
    assert_eq!(app.memory.map(|p| p.ts_ms), Some(1_700_000_000_001));
    let side = s.containers[&("default".into(), "web-1".into(), "side \"car\"".into())];
    assert_eq!(side.cpu.map(|p| p.value), Some(0.25));
    assert_eq!(side.memory, None);
    assert_eq!(s.containers.len(), 2);
}

#[test]
fn node_labels_and_missing_timestamps() {
    let text = "node_cpu_usage_seconds_total{node=\"a\"} 1\nnode_cpu_usage_seconds_total{node=\"b\"} 2 7\n";
    let s = parse(text, 42).expect("parses");
    assert_eq!(s.nodes[&Some("a".into())].cpu.map(|p| p.ts_ms), Some(42));
    assert_eq!(s.nodes[&Some("b".into())].cpu.map(|p| p.ts_ms), Some(7));
}

#[test]
fn refuses_garbage() {
    for bad in [
        "node_cpu_usage_seconds_total",
        "x{a=\"b} 1",
        "x{a=b} 1",
        "x one",
        "x 1 t",
    ] {
        assert!(parse(bad, 0).is_err(), "{bad}");
    }
    assert!(
        parse("x NaN\n\n# comment\n", 0)
            .expect("parses")
            .nodes
            .is_empty()
    );
}
