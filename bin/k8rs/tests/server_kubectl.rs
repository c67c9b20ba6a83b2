//! The API server driven by the real kubectl: the user's first session, apply's add/change/remove
//! of fields and list items, the everyday verbs, and output formats.

mod common;

use std::time::Duration;

use common::{Server, eventually};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: localhost/web:1
        ports: [{containerPort: 8080}]
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
      - name: sidecar
        image: localhost/sidecar:1
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: \"1\"}}\n")
}

#[test]
fn first_session_with_kubectl() {
    let s = Server::start(&[]);
    let log = s.log();
    assert!(
        log.contains("admin.kubeconfig"),
        "server logs where the kubeconfig is: {log}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.kubeconfig())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let ns = s.kubectl(&["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    assert_eq!(s.create_namespace("shop").trim(), "namespace/shop created");
    assert_eq!(
        s.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT).trim(),
        "deployment.apps/web created"
    );
    s.kubectl_stdin(&["-n", "shop", "create", "-f", "-"], &configmap("cfg"));
    s.kubectl_stdin(&["-n", "shop", "create", "-f", "-"], SERVICE);
    let out = s.kubectl(&["get", "deploy,cm,svc", "-A", "-o", "wide"]);
    assert!(out.contains("deployment.apps/web"), "{out}");
    assert!(out.contains("configmap/cfg"), "{out}");
    assert!(
        out.contains("service/kubernetes") && out.contains("10.43.0.1"),
        "{out}"
    );
    assert!(
        out.contains("service/web") && out.contains("80/TCP"),
        "{out}"
    );
    let header = s.kubectl(&["get", "deploy", "-n", "shop"]);
    assert!(
        header.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{header}"
    );
}

#[test]
fn apply_adds_changes_and_removes_fields() {
    let s = Server::start(&[]);
    s.create_namespace("shop");
    s.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    // Change an env value, remove env B and the sidecar, add a label.
    let changed = DEPLOYMENT
        .replace("{name: A, value: \"1\"}", "{name: A, value: \"10\"}")
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace(
            "      - name: sidecar\n        image: localhost/sidecar:1\n",
            "",
        )
        .replace(
            "labels: {app: web}\nspec:\n  replicas: 2",
            "labels: {app: web, tier: front}\nspec:\n  replicas: 3",
        );
    assert_eq!(
        s.kubectl_stdin(&["apply", "-f", "-"], &changed).trim(),
        "deployment.apps/web configured"
    );
    let got = s.kubectl(&["-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels.tier} {range .spec.template.spec.containers[*]}{.name},{end} {range .spec.template.spec.containers[0].env[*]}{.name}={.value};{end} {.metadata.generation}"]);
    assert_eq!(got, "3 front web, A=10; 2");
    assert_eq!(
        s.kubectl_stdin(&["apply", "-f", "-"], &changed).trim(),
        "deployment.apps/web unchanged"
    );
    let diff = s.kubectl_raw(&["diff", "-f", "-"]);
    let _ = diff;
}

#[test]
fn everyday_verbs() {
    let s = Server::start(&[]);
    s.kubectl_stdin(
        &["create", "-f", "-"],
        &DEPLOYMENT.replace("  namespace: shop\n", ""),
    );
    s.kubectl(&["label", "deploy", "web", "team=a"]);
    s.kubectl(&["annotate", "deploy", "web", "note=hello"]);
    s.kubectl(&["scale", "deploy", "web", "--replicas=4"]);
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"paused":true}}"#,
    ]);
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ]);
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
    ]);
    let got = s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels.team} {.metadata.annotations.note} {.spec.replicas} {.spec.paused} {.metadata.labels.merged} {.metadata.labels.json}"]);
    assert_eq!(got, "a hello 4 true yes yes");
    // replace with a stale resourceVersion conflicts with upstream's message.
    let yaml = s.kubectl(&["get", "deploy", "web", "-o", "yaml"]);
    s.kubectl(&["label", "deploy", "web", "bump=1"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.yaml");
    std::fs::write(&f, &yaml).unwrap();
    let err = s.kubectl_fails(&["replace", "-f", f.to_str().unwrap()]);
    assert!(err.contains("the object has been modified; please apply your changes to the latest version and try again"), "{err}");
    // edit through a scripted editor
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/note: hello/note: edited/' \"$1\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBE_EDITOR", &editor)
        .args(["edit", "deploy", "web"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "edited"
    );
    // server-side dry run stores nothing
    s.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &configmap("dry"),
    );
    assert!(s.kubectl_fails(&["get", "cm", "dry"]).contains("not found"));
    s.kubectl(&["delete", "deploy", "web", "--wait"]);
    assert!(
        s.kubectl_fails(&["get", "deploy", "web"])
            .contains("deployments.apps \"web\" not found")
    );
}

#[test]
fn discovery_explain_and_formats() {
    let s = Server::start(&[]);
    let res = s.kubectl(&["api-resources"]);
    for line in [
        "pods",
        "po",
        "deployments",
        "deploy",
        "horizontalpodautoscalers",
        "hpa",
        "leases",
        "certificatesigningrequests",
    ] {
        assert!(res.contains(line), "api-resources lacks {line}: {res}");
    }
    let explain = s.kubectl(&["explain", "deployment.spec.replicas"]);
    assert!(
        explain.contains("replicas") && explain.contains("integer"),
        "{explain}"
    );
    let versions = s.kubectl(&["api-versions"]);
    assert!(
        versions.contains("autoscaling/v1") && versions.contains("autoscaling/v2"),
        "{versions}"
    );
    s.kubectl_stdin(&["create", "-f", "-"], &configmap("c1"));
    assert_eq!(
        s.kubectl(&["get", "cm", "c1", "-o", "name"]).trim(),
        "configmap/c1"
    );
    let cc = s.kubectl(&[
        "get",
        "cm",
        "c1",
        "-o",
        "custom-columns=N:.metadata.name,A:.data.a",
        "--no-headers",
    ]);
    assert_eq!(cc.split_whitespace().collect::<Vec<_>>(), ["c1", "1"]);
    let json = s.kubectl(&["get", "cm", "c1", "-o", "json"]);
    assert!(json.contains("\"resourceVersion\""), "{json}");
    let all = s.kubectl(&["get", "all", "-A"]);
    assert!(all.contains("service/kubernetes"), "{all}");
}

#[test]
fn namespace_deletion_removes_content() {
    let s = Server::start(&[]);
    s.create_namespace("gone");
    s.kubectl_stdin(&["-n", "gone", "create", "-f", "-"], &configmap("a"));
    s.kubectl_stdin(
        &["-n", "gone", "create", "-f", "-"],
        &DEPLOYMENT.replace("  namespace: shop\n", ""),
    );
    s.kubectl(&["delete", "ns", "gone", "--wait=false"]);
    let err = s.kubectl_stdin_fails(&["-n", "gone", "create", "-f", "-"], &configmap("b"));
    assert!(
        err.contains("because it is being terminated") || err.contains("not found"),
        "{err}"
    );
    assert!(eventually(Duration::from_secs(20), || !s
        .kubectl_raw(&["get", "ns", "gone"])
        .status
        .success()));
    let err = s.kubectl_fails(&["delete", "ns", "default"]);
    assert!(err.contains("forbidden"), "{err}");
    let err = s.kubectl_stdin_fails(&["-n", "missing", "create", "-f", "-"], &configmap("a"));
    assert!(err.contains("namespaces \"missing\" not found"), "{err}");
}

#[test]
fn restart_and_kill9_keep_every_acknowledged_write() {
    let mut s = Server::start(&[]);
    for i in 0..20 {
        s.kubectl_stdin(&["create", "-f", "-"], &configmap(&format!("c{i}")));
    }
    s.kill9_and_restart();
    let names = s.kubectl(&["get", "cm", "-o", "name"]);
    for i in 0..20 {
        assert!(
            names.contains(&format!("configmap/c{i}\n")),
            "c{i} lost after kill -9: {names}"
        );
    }
    let status = s.stop_and_restart();
    assert!(status.success(), "SIGTERM shutdown exits 0, got {status}");
    assert!(
        s.kubectl(&["get", "cm", "c19", "-o", "name"])
            .contains("c19")
    );
    // The same CA and certificates are reused: the old kubeconfig still works.
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {app: x}}
spec:
  containers: [{name: c, image: localhost/busybox:1}]
"#;

#[test]
fn describe_watch_and_diff() {
    let s = Server::start(&[]);
    s.kubectl_stdin(&["apply", "-f", "-"], POD);
    let d = s.kubectl(&["describe", "pod", "p1"]);
    for want in [
        "Name:             p1",
        "Status:           Pending",
        "QoS Class:                   BestEffort",
        "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
        "kube-api-access-",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{d}");
    }
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .args(["get", "pods", "-w", "--request-timeout=2s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("NAME   READY   STATUS    RESTARTS   AGE\np1     0/1     Pending   0"),
        "{text}"
    );
    let changed = POD.replace("{app: x}", "{app: z}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(&f, changed).unwrap();
    let out = s.kubectl_raw(&["diff", "-f", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-    app: x") && text.contains("+    app: z"),
        "{text}"
    );
}

#[test]
fn deletion_grace_finalizers_and_propagation() {
    // The API server's side only: with the garbage collector running, the finalizers would be
    // acted on (and removed) before they could be seen.
    let s = Server::start(&["--disable-controllers=garbagecollector"]);
    // A pod bound to a node ends gracefully; without a node it goes at once.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &POD.replace("spec:\n", "spec:\n  nodeName: n1\n"),
    );
    s.kubectl(&["delete", "pod", "p1", "--wait=false"]);
    let ts = s.kubectl(&[
        "get",
        "pod",
        "p1",
        "-o",
        "jsonpath={.metadata.deletionGracePeriodSeconds}",
    ]);
    assert_eq!(ts, "30");
    assert!(s.kubectl(&["get", "pod", "p1"]).contains("Terminating"));
    assert!(
        s.kubectl_raw(&["delete", "pod", "p1", "--grace-period=0", "--force"])
            .status
            .success()
    );
    assert!(s.kubectl_fails(&["get", "pod", "p1"]).contains("not found"));
    s.kubectl_stdin(&["apply", "-f", "-"], POD);
    s.kubectl(&["delete", "pod", "p1", "--wait=false"]);
    assert!(s.kubectl_fails(&["get", "pod", "p1"]).contains("not found"));
    // Finalizers hold an object; foreground and orphan deletion are recorded as finalizers.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    s.kubectl(&["delete", "cm", "held", "--wait=false"]);
    assert!(
        !s.kubectl(&[
            "get",
            "cm",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty()
    );
    s.kubectl(&[
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        s.kubectl_fails(&["get", "cm", "held"])
            .contains("not found")
    );
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("  namespace: shop\n", ""),
    );
    s.kubectl(&[
        "delete",
        "deploy",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert_eq!(
        s.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.finalizers}"
        ]),
        r#"["foregroundDeletion"]"#
    );
    s.kubectl_stdin(&["apply", "-f", "-"], &configmap("orphaned"));
    s.kubectl(&[
        "delete",
        "cm",
        "orphaned",
        "--cascade=orphan",
        "--wait=false",
    ]);
    assert_eq!(
        s.kubectl(&[
            "get",
            "cm",
            "orphaned",
            "-o",
            "jsonpath={.metadata.finalizers}"
        ]),
        r#"["orphan"]"#
    );
}

#[test]
fn admission_and_allocation() {
    let s = Server::start(&[]);
    let err = s.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        &POD.replace("spec:\n", "spec:\n  priorityClassName: nope\n"),
    );
    assert!(
        err.contains("no PriorityClass with name nope was found"),
        "{err}"
    );
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &POD.replace(
            "spec:\n",
            "spec:\n  priorityClassName: system-node-critical\n",
        ),
    );
    assert_eq!(
        s.kubectl(&["get", "pod", "p1", "-o", "jsonpath={.spec.priority}"]),
        "2000001000"
    );
    let svc = SERVICE.replace("spec:\n", "spec:\n  type: NodePort\n");
    s.kubectl_stdin(&["apply", "-f", "-"], &svc);
    let got = s.kubectl(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    let (ip, port) = got.split_once(' ').unwrap();
    let port: u16 = port.parse().unwrap();
    assert!((30000..=32767).contains(&port), "{got}");
    let last: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
    let third: u32 = ip.split('.').nth(2).unwrap().parse().unwrap();
    assert!(
        ip.starts_with("10.43.") && (third > 0 || last > 255 || third * 256 + last >= 256),
        "dynamic IPs avoid the static band: {ip}"
    );
    let taken = SERVICE
        .replace("name: web", "name: web2")
        .replace("spec:\n", &format!("spec:\n  clusterIP: {ip}\n"));
    let err = s.kubectl_stdin_fails(&["apply", "-f", "-"], &taken);
    assert!(err.contains("provided IP is already allocated"), "{err}");
    // A replace that leaves out the allocated address keeps it.
    s.kubectl_stdin(&["replace", "-f", "-"], &svc);
    let again = s.kubectl(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    assert_eq!(again, got);
    s.kubectl(&["delete", "svc", "web"]);
    s.kubectl_stdin(&["apply", "-f", "-"], &taken);
    // Jobs get the selector and labels upstream generates from their uid.
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: localhost/busybox:1}]\n";
    s.kubectl_stdin(&["create", "-f", "-"], job);
    let got = s.kubectl(&["get", "job", "j", "-o", "jsonpath={.metadata.uid} {.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid} {.spec.template.metadata.labels.job-name}"]);
    let parts: Vec<&str> = got.split(' ').collect();
    assert_eq!((parts[0], parts[2]), (parts[1], "j"), "{got}");
}

#[test]
fn one_object_served_in_two_versions() {
    let s = Server::start(&[]);
    let hpa = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}
"#;
    s.kubectl_stdin(&["apply", "-f", "-"], hpa);
    let v1 = s.kubectl(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-o",
        "json",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .unwrap()
            .contains("memory")
    );
    s.kubectl(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":7}}"#,
    ]);
    let v2 = s.kubectl(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "jsonpath={.spec.maxReplicas} {.spec.metrics[1].resource.name}",
    ]);
    assert_eq!(v2, "7 memory");
    let ev = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: e1}
eventTime: "2024-05-01T12:00:00.000000Z"
reportingController: test
reportingInstance: test-1
action: Testing
reason: Tested
type: Normal
note: hello
regarding: {kind: Pod, name: p1, namespace: default}
"#;
    s.kubectl_stdin(&["create", "-f", "-"], ev);
    assert_eq!(
        s.kubectl(&[
            "get",
            "events.v1.",
            "e1",
            "-o",
            "jsonpath={.message} {.involvedObject.name}"
        ]),
        "hello p1"
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "e1",
            "-o",
            "jsonpath={.note} {.regarding.name}"
        ]),
        "hello p1"
    );
    let fs = s.kubectl(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=p1",
        "-o",
        "name",
    ]);
    assert_eq!(fs.trim(), "event/e1");
}

#[test]
fn validation_answers_422_with_field_causes() {
    let s = Server::start(&[]);
    let err = s.kubectl_stdin_fails(&["create", "-f", "-"], &configmap("Bad_Name"));
    assert!(err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{err}");
    let bad_pod = POD
        .replace("[{name: c, image: localhost/busybox:1}]", "[{name: c}]")
        .replace("spec:\n", "spec:\n  restartPolicy: Sometimes\n");
    let err = s.kubectl_stdin_fails(&["create", "-f", "-"], &bad_pod);
    assert!(
        err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    assert!(
        err.contains("spec.restartPolicy: Unsupported value: \"Sometimes\""),
        "{err}"
    );
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("  namespace: shop\n", ""),
    );
    let err = s.kubectl_fails(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}"#]);
    assert!(err.contains("field is immutable"), "{err}");
}

#[test]
fn api_semantics_kubectl_relies_on() {
    let s = Server::start(&[]);
    // generateName
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-}\n",
    );
    let name = out.trim().trim_end_matches(" created");
    assert!(
        name.starts_with("configmap/gen-") && name.len() == "configmap/gen-".len() + 5,
        "{out}"
    );
    // Deployments move generation on annotation changes; status writes do not.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("  namespace: shop\n", ""),
    );
    s.kubectl(&["annotate", "deploy", "web", "a=b"]);
    assert_eq!(
        s.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        "2"
    );
    // Switching the strategy to Recreate drops rollingUpdate ($retainKeys).
    let recreate = DEPLOYMENT.replace("  namespace: shop\n", "").replace(
        "spec:\n  replicas: 2",
        "spec:\n  replicas: 2\n  strategy: {type: Recreate}",
    );
    s.kubectl_stdin(&["apply", "-f", "-"], &recreate);
    assert_eq!(
        s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.strategy}"]),
        r#"{"type":"Recreate"}"#
    );
    // Unknown fields: kubectl's strict validation is the server's.
    let err = s.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspecc: {}\n",
    );
    assert!(err.contains("unknown field \"specc\""), "{err}");
    // Field selectors on pods.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &POD.replace("spec:\n", "spec:\n  nodeName: n1\n"),
    );
    s.kubectl_stdin(&["apply", "-f", "-"], &POD.replace("name: p1", "name: p2"));
    assert_eq!(
        s.kubectl(&[
            "get",
            "pods",
            "--field-selector=spec.nodeName=n1",
            "-o",
            "name"
        ])
        .trim(),
        "pod/p1"
    );
    // (The Deployment's pods are Pending too: no node runs here.)
    let pending = s.kubectl(&[
        "get",
        "pods",
        "--field-selector=spec.nodeName!=n1,status.phase=Pending",
        "-o",
        "name",
    ]);
    assert!(
        pending.lines().any(|l| l == "pod/p2") && !pending.contains("pod/p1"),
        "{pending}"
    );
    let err = s.kubectl_fails(&["get", "pods", "--field-selector=spec.image=x"]);
    assert!(
        err.contains("field label not supported: spec.image"),
        "{err}"
    );
    // The kubernetes Service's endpoints name this API server.
    let ep = s.kubectl(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
    ]);
    let (ip, port) = ep.split_once(':').unwrap();
    assert!(
        ip.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| !ip.is_loopback()),
        "{ep}"
    );
    assert_eq!(port, s.port.to_string());
    let slice = s.kubectl(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]}",
    ]);
    assert_eq!(slice, ip);
}

#[test]
fn limit_ranges_and_quotas() {
    let s = Server::start(&[]);
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m}\n");
    s.kubectl_stdin(&["apply", "-f", "-"], POD);
    let got = s.kubectl(&["get", "pod", "p1", "-o", "jsonpath={.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.requests.memory} {.status.qosClass}"]);
    assert_eq!(got, "500m 100m 256Mi Burstable");
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec:\n  hard: {configmaps: \"2\"}\n");
    s.kubectl_stdin(&["create", "-f", "-"], &configmap("one"));
    let existing = s.kubectl(&["get", "cm", "-o", "name"]).lines().count();
    for i in existing..2 {
        s.kubectl_stdin(&["create", "-f", "-"], &configmap(&format!("more{i}")));
    }
    let err = s.kubectl_stdin_fails(&["create", "-f", "-"], &configmap("over"));
    assert!(err.contains("exceeded quota: q"), "{err}");
    // DefaultStorageClass: a claim without a class gets the default one.
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\nprovisioner: k8rs.io/local-path\n");
    s.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n");
    assert_eq!(
        s.kubectl(&[
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.spec.storageClassName} {.status.phase}"
        ]),
        "local Pending"
    );
    assert!(s.kubectl(&["get", "sc"]).contains("local (default)"));
}

#[test]
fn certificate_signing_requests_are_approved_through_their_subresource() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let csr = dir.path().join("c.csr");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=alice/O=dev",
        ])
        .args([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read(&csr).unwrap();
    let b64: String = base64_encode(&pem);
    let obj = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: alice}}\nspec:\n  request: {b64}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"
    );
    s.kubectl_stdin(&["create", "-f", "-"], &obj);
    assert!(s.kubectl(&["get", "csr", "alice"]).contains("Pending"));
    s.kubectl(&["certificate", "approve", "alice"]);
    let cond = s.kubectl(&[
        "get",
        "csr",
        "alice",
        "-o",
        "jsonpath={.status.conditions[0].type}",
    ]);
    assert_eq!(cond, "Approved");
    assert!(s.kubectl(&["get", "csr", "alice"]).contains("Approved"));
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
