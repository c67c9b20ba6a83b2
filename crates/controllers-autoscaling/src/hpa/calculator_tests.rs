use super::*;
use crate::builders::PodBuilder;

const NOW: i64 = 1_000_000_000;

fn metric(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp_ms: NOW - 1_000,
        window_ms: 15_000,
    }
}

struct Case {
    name: &'static str,
    current: i32,
    pods: Vec<Pod>,
    usage: Vec<(&'static str, i64)>,
    target: Target,
    want: Result<(i32, Option<i32>), &'static str>,
}

fn ready(names: &[&'static str]) -> Vec<Pod> {
    names
        .iter()
        .map(|n| PodBuilder::new(n, "1").build())
        .collect()
}

fn run(case: &Case) {
    let metrics: BTreeMap<String, PodMetric> = case
        .usage
        .iter()
        .map(|(p, v)| (p.to_string(), metric(*v)))
        .collect();
    let got = replicas(&Input {
        resource: "cpu",
        target: case.target,
        current_replicas: case.current,
        pods: &case.pods.iter().collect::<Vec<_>>(),
        metrics: &metrics,
        now_ms: NOW,
    });
    let got = got.map(|r| (r.replicas, r.utilization)).map_err(|e| e.0);
    let want = case.want.map_err(str::to_string);
    assert_eq!(got, want, "{}", case.name);
}

#[test]
fn replica_calculator_table() {
    let cases = vec![
        Case {
            name: "scale up",
            current: 3,
            pods: ready(&["a", "b", "c"]),
            usage: vec![("a", 300), ("b", 500), ("c", 700)],
            target: Target::Utilization(30),
            want: Ok((5, Some(50))),
        },
        Case {
            name: "scale down",
            current: 5,
            pods: ready(&["a", "b", "c", "d", "e"]),
            usage: vec![("a", 100), ("b", 300), ("c", 500), ("d", 250), ("e", 250)],
            target: Target::Utilization(50),
            want: Ok((3, Some(28))),
        },
        Case {
            name: "within tolerance",
            current: 3,
            pods: ready(&["a", "b", "c"]),
            usage: vec![("a", 1010), ("b", 1030), ("c", 1020)],
            target: Target::Utilization(100),
            want: Ok((3, Some(102))),
        },
        Case {
            name: "unready pod counts as zero on a scale-up",
            current: 3,
            pods: vec![
                PodBuilder::new("a", "1")
                    .readiness(NOW - 60_000, "False", NOW - 60_000)
                    .build(),
                PodBuilder::new("b", "1").build(),
                PodBuilder::new("c", "1").build(),
            ],
            usage: vec![("a", 300), ("b", 500), ("c", 700)],
            target: Target::Utilization(30),
            want: Ok((4, Some(60))),
        },
        Case {
            name: "sample older than a window since readiness is held out",
            current: 2,
            pods: vec![
                PodBuilder::new("a", "1")
                    .readiness(NOW - 60_000, "True", NOW - 2_000)
                    .build(),
                PodBuilder::new("b", "1").build(),
            ],
            usage: vec![("a", 2000), ("b", 1500)],
            target: Target::Utilization(50),
            want: Ok((3, Some(150))),
        },
        Case {
            name: "missing metrics use the request on a scale-down",
            current: 4,
            pods: ready(&["a", "b", "c", "d"]),
            usage: vec![("a", 100), ("b", 100), ("c", 100)],
            target: Target::Utilization(50),
            want: Ok((3, Some(10))),
        },
        Case {
            name: "missing metrics use nothing on a scale-up",
            current: 4,
            pods: ready(&["a", "b", "c", "d"]),
            usage: vec![("a", 900), ("b", 900), ("c", 900)],
            target: Target::Utilization(50),
            want: Ok((6, Some(90))),
        },
        Case {
            name: "missing metrics that would reverse the direction change nothing",
            current: 2,
            pods: ready(&["a", "b"]),
            usage: vec![("a", 600)],
            target: Target::Utilization(50),
            want: Ok((2, Some(60))),
        },
        Case {
            name: "pending, failed and deleted pods are ignored",
            current: 3,
            pods: vec![
                PodBuilder::new("a", "1").build(),
                PodBuilder::new("b", "1").build(),
                PodBuilder::new("c", "1").build(),
                PodBuilder::new("p", "1").phase("Pending").build(),
                PodBuilder::new("f", "1").phase("Failed").build(),
                PodBuilder::new("x", "1").deleting().build(),
            ],
            usage: vec![("a", 500), ("b", 500), ("c", 500), ("f", 0), ("x", 0)],
            target: Target::Utilization(25),
            want: Ok((6, Some(50))),
        },
        Case {
            name: "average value",
            current: 3,
            pods: ready(&["a", "b", "c"]),
            usage: vec![("a", 300), ("b", 600), ("c", 900)],
            target: Target::AverageValue(300),
            want: Ok((6, None)),
        },
        Case {
            name: "missing request",
            current: 1,
            pods: vec![PodBuilder::new("a", "1").no_request().build()],
            usage: vec![("a", 300)],
            target: Target::Utilization(50),
            want: Err("missing request for cpu in container app of Pod a"),
        },
        Case {
            name: "no metrics",
            current: 1,
            pods: ready(&["a"]),
            usage: vec![],
            target: Target::Utilization(50),
            want: Err("did not receive metrics for targeted pods (pods might be unready)"),
        },
        Case {
            name: "no pods",
            current: 1,
            pods: vec![],
            usage: vec![],
            target: Target::Utilization(50),
            want: Err("no pods returned by selector while calculating replica count"),
        },
    ];
    for case in &cases {
        run(case);
    }
}

#[test]
fn milli_rounds_up() {
    assert_eq!(milli(1_000_000_000), 1000);
    assert_eq!(milli(1), 1);
    assert_eq!(milli(0), 0);
}
