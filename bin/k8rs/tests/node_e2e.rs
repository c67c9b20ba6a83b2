//! Whole nodes end to end, through the real `k8rs` binary and the real kubectl: a server node
//! and an agent node, each in a network namespace of its own with no route out of the machine
//! (see `e2e/`). One cluster serves every phase, in order:
//!
//! 1. the server's node is Ready (the "server start to Ready node" figure, within 10 s);
//! 2. a Deployment's pods run with IPs from the node's podCIDR, and `kubectl logs` works;
//! 3. a Service is reached from a pod by DNS name and by ClusterIP;
//! 4. an agent joins with the token (CSR approved and signed), gets a podCIDR, runs a pod pinned
//!    to it; pods reach each other across nodes; a wrong token is refused clearly; then the
//!    whole `k8rs server` is stopped (SIGTERM) and started again on its data dir: its nftables
//!    tables come back the same (no duplicates), a Service deleted right after the restart
//!    loses its rules, and a new pod on it reaches the Service again;
//! 5. `k8rs killall` leaves no nftables table of ours and no containerd in the namespaces.
//!
//! Every phase reports PASS/FAIL with diagnostics; the test fails at the end if any phase did.

mod e2e;

use std::time::{Duration, Instant};

use e2e::cluster::{AGT_IP, Cluster, SRV_IP};
use e2e::rulesets::{self, Snapshot};
use e2e::{K8RS, comm, in_cidr, processes_mentioning, wait_for};

const IMAGE: &str = "localhost/k8rs/busybox:1.35";
/// What the image's httpd serves.
const PAGE: &str = "Hello from k8rs";

#[derive(Default)]
struct Outcome {
    lines: Vec<String>,
    failed: usize,
}

impl Outcome {
    /// Records a phase; true if it passed. Failures print the cluster's diagnostics.
    fn record(&mut self, c: Option<&Cluster>, phase: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                eprintln!("PASS {phase}: {detail}");
                self.lines.push(format!("PASS {phase}: {detail}"));
                true
            }
            Err(why) => {
                eprintln!("FAIL {phase}: {why}");
                if let Some(c) = c {
                    eprintln!("{}", c.diagnostics());
                }
                self.lines.push(format!("FAIL {phase}: {why}"));
                self.failed += 1;
                false
            }
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

#[test]
fn whole_nodes_in_network_namespaces() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, containerd)");
        return;
    }
    k8rs_testing::netguard::ensure().expect("the network-safety guard must load");
    let started = Instant::now();
    let mut c = Cluster::new();
    let mut out = Outcome::default();
    let ready = match server_ready(&mut c) {
        Ok(took) => {
            out.record(
                None,
                "1 server start to Ready node <= 10 s",
                if took <= Duration::from_secs(10) {
                    Ok(format!("{:.2} s", took.as_secs_f64()))
                } else {
                    Err(format!("{:.2} s", took.as_secs_f64()))
                },
            );
            true
        }
        Err(e) => out.record(Some(&c), "1 server node Ready", Err(e)),
    };
    if ready {
        let deployed = out.record(Some(&c), "2 deployment pods Running", deployment(&c));
        if deployed {
            out.record(Some(&c), "2b kubectl logs", web_logs(&c, false));
        }
        let served = out.record(Some(&c), "3 Service by DNS name and ClusterIP", service(&c));
        let joining = join(&mut c);
        let joined = out.record(Some(&c), "4 agent joins and is Ready", joining);
        if joined {
            out.record(Some(&c), "4b pod pinned to agt, cross-node", cross_node(&c));
        }
        out.record(None, "4c wrong token refused", wrong_token(&c));
        if served {
            let restarted = restart(&mut c);
            out.record(Some(&c), "4d whole k8rs server restart", restarted);
        }
    }
    out.record(None, "5 killall cleans up", killall(&mut c));
    drop(c);
    eprintln!(
        "\n=== node e2e summary ({:.1} s) ===\n{}",
        started.elapsed().as_secs_f64(),
        out.lines.join("\n")
    );
    assert_eq!(out.failed, 0, "{}", out.lines.join("\n"));
}

/// The Ready condition's status of `node`.
fn node_ready(c: &Cluster, node: &str) -> bool {
    let path = "-o=jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    c.kubectl(&["get", "node", node, path])
        .is_ok_and(|s| s.trim() == "True")
}

fn pod_cidr(c: &Cluster, node: &str) -> Result<String, String> {
    let cidr = c.kubectl(&["get", "node", node, "-o=jsonpath={.spec.podCIDR}"])?;
    let cidr = cidr.trim().to_string();
    if cidr.is_empty() {
        return Err(format!("node {node} has no podCIDR"));
    }
    Ok(cidr)
}

/// Phase 1: start the server; the time to its node's Ready (bounded at 60 s).
fn server_ready(c: &mut Cluster) -> Result<Duration, String> {
    let start = Instant::now();
    c.start_server();
    let kubeconfig = c.kubeconfig();
    let (ready, _) = wait_for("node srv Ready", Duration::from_secs(60), || {
        if let Some(status) = c.server.as_mut().and_then(|p| p.exited()) {
            return Some(Err(format!("k8rs server exited with {status}")));
        }
        (kubeconfig.exists() && node_ready(c, "srv")).then_some(Ok(()))
    })?;
    ready?;
    Ok(start.elapsed())
}

/// `name phase podIP nodeName` of each pod matching `selector`.
fn pods(c: &Cluster, selector: &str) -> Vec<Vec<String>> {
    let fmt = "-o=jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} \
               {.spec.nodeName}{\"\\n\"}{end}";
    c.kubectl(&["get", "pods", "-l", selector, fmt])
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Phase 2: a Deployment's two pods run with IPs from srv's podCIDR.
fn deployment(c: &Cluster) -> Result<String, String> {
    c.kubectl(&[
        "create",
        "deploy",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=2",
    ])?;
    let cidr = pod_cidr(c, "srv")?;
    let (running, took) = wait_for("2 web pods Running", Duration::from_secs(90), || {
        let list = pods(c, "app=web");
        (list.len() == 2 && list.iter().all(|p| p.len() == 4 && p[1] == "Running")).then_some(list)
    })?;
    for p in &running {
        if !in_cidr(&p[2], &cidr) {
            return Err(format!("pod {} has IP {} outside {cidr}", p[0], p[2]));
        }
    }
    let ips: Vec<&str> = running.iter().map(|p| p[2].as_str()).collect();
    Ok(format!(
        "Running after {:.1} s with IPs {ips:?} in {cidr}",
        took.as_secs_f64()
    ))
}

/// `kubectl logs` of the web pods; with `want_requests`, their httpd must have logged
/// connections (`-v`), on one pod at least.
fn web_logs(c: &Cluster, want_requests: bool) -> Result<String, String> {
    let (mut sizes, mut total) = (Vec::new(), 0);
    for p in pods(c, "app=web") {
        let lines = c.kubectl(&["logs", &p[0]])?.lines().count();
        sizes.push(format!("{}: {lines} lines", p[0]));
        total += lines;
    }
    if want_requests && total == 0 {
        return Err(format!(
            "the web pods logged nothing after requests: {sizes:?}"
        ));
    }
    Ok(sizes.join(", "))
}

/// A shell script fetching `url` `n` times, printing `label i: ok` or `label i: FAIL <why>`.
fn fetch_script(label: &str, url: &str, n: u32) -> String {
    format!(
        "for i in $(seq 1 {n}); do r=$(timeout 3 wget -qO- {url} 2>&1); \
         case \"$r\" in *'{PAGE}'*) echo \"{label} $i: ok\";; \
         *) echo \"{label} $i: FAIL $r\";; esac; done; "
    )
}

/// A pod running `script` once, optionally pinned to `node` by nodeSelector.
fn client_pod(name: &str, node: Option<&str>, script: &str) -> String {
    let selector = node
        .map(|n| format!("  nodeSelector: {{kubernetes.io/hostname: {n}}}\n"))
        .unwrap_or_default();
    let script = script.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n\
         {selector}  containers:\n  - name: c\n    image: {IMAGE}\n    \
         command: [sh, -c, \"{script}\"]\n"
    )
}

/// Waits (up to `limit`) for pod `name` to finish and returns its logs.
fn finished_logs(c: &Cluster, name: &str, limit: Duration) -> Result<String, String> {
    wait_for(&format!("pod {name} to finish"), limit, || {
        let phase = c
            .kubectl(&["get", "pod", name, "-o=jsonpath={.status.phase}"])
            .unwrap_or_default();
        matches!(phase.trim(), "Succeeded" | "Failed").then_some(())
    })?;
    c.kubectl(&["logs", name])
}

/// Checks that every `label i:` line of `logs` says ok.
fn all_ok(logs: &str, labels: &[&str], n: usize) -> Result<String, String> {
    let mut counts = Vec::new();
    for label in labels {
        let ok = logs
            .lines()
            .filter(|l| l.starts_with(&format!("{label} ")) && l.ends_with(": ok"))
            .count();
        counts.push(format!("{label} {ok}/{n}"));
        if ok != n {
            return Err(format!("{}; output:\n{logs}", counts.join(", ")));
        }
    }
    Ok(counts.join(", "))
}

/// Phase 3: the Service, reached from a pod by DNS name and by ClusterIP.
fn service(c: &Cluster) -> Result<String, String> {
    c.kubectl(&["expose", "deploy", "web", "--port=80", "--target-port=8080"])?;
    let ip = c.kubectl(&["get", "svc", "web", "-o=jsonpath={.spec.clusterIP}"])?;
    let ip = ip.trim().to_string();
    wait_for("2 ready endpoints of web", Duration::from_secs(30), || {
        let fmt = "-o=jsonpath={range .items[*].endpoints[*]}{.conditions.ready}{\"\\n\"}{end}";
        let text = c
            .kubectl(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                fmt,
            ])
            .unwrap_or_default();
        (text.lines().filter(|l| l.trim() == "true").count() == 2).then_some(())
    })?;
    let script = format!(
        "{}{}nslookup web.default.svc.cluster.local 2>&1 | tail -n 3",
        fetch_script("dns", "http://web.default.svc.cluster.local", 3),
        fetch_script("ip", &format!("http://{ip}"), 3),
    );
    c.kubectl(&[
        "run",
        "client",
        &format!("--image={IMAGE}"),
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        &script,
    ])?;
    let logs = finished_logs(c, "client", Duration::from_secs(90))?;
    let counts = all_ok(&logs, &["dns", "ip"], 3)?;
    let served = web_logs(c, true).unwrap_or_else(|e| format!("(web logs: {e})"));
    Ok(format!("{counts} via ClusterIP {ip}; web logs: {served}"))
}

/// Each wait of phase 4d.
const RESTART_WAIT: Duration = Duration::from_secs(30);

/// The lastHeartbeatTime of `node`'s Ready condition while it is True.
fn ready_heartbeat(c: &Cluster, node: &str) -> Option<String> {
    let path = "-o=jsonpath={range .status.conditions[?(@.type==\"Ready\")]}{.status} \
                {.lastHeartbeatTime}{end}";
    let text = c.kubectl(&["get", "node", node, path]).ok()?;
    let (status, time) = text.trim().split_once(' ')?;
    (status == "True").then(|| time.to_string())
}

/// The server node's tables once they stop changing (equal for a second) and hold the
/// endpoints of Service `gone` at `gone_ip`.
fn settled_tables(c: &Cluster, gone_ip: &str) -> Result<Snapshot, String> {
    let slots = format!("element {gone_ip} . tcp . 81 . ");
    let mut last: Option<(Snapshot, Instant)> = None;
    let (tables, _) = wait_for(
        "Service gone programmed, tables settled",
        RESTART_WAIT,
        || {
            let now = rulesets::snapshot(&c.srv_ns).ok()?;
            let programmed = now.values().flatten().filter(|l| l.starts_with(&slots));
            if programmed.count() < 2 {
                return None;
            }
            match &last {
                Some((prev, since)) if *prev == now => {
                    (since.elapsed() >= Duration::from_secs(1)).then_some(now)
                }
                _ => {
                    last = Some((now, Instant::now()));
                    None
                }
            }
        },
    )?;
    Ok(tables)
}

/// Deletes Service `name` as soon as the (restarting) API server answers.
fn delete_when_back(c: &mut Cluster, name: &str) -> Result<(), String> {
    let delete = ["delete", "svc", name, "--ignore-not-found", "--wait=false"];
    let (deleted, _) = wait_for("the API server, to delete a Service", RESTART_WAIT, || {
        if let Some(status) = c.server.as_mut().and_then(|p| p.exited()) {
            return Some(Err(format!("k8rs server exited with {status}")));
        }
        c.kubectl(&delete).ok().map(|_| Ok(()))
    })?;
    deleted
}

/// Waits for the server node's tables to equal `expected`; else the difference.
fn tables_become(c: &Cluster, expected: &Snapshot, what: &str) -> Result<(), String> {
    let mut last = Snapshot::new();
    let result = wait_for(what, RESTART_WAIT, || {
        last = rulesets::snapshot(&c.srv_ns).ok()?;
        (last == *expected).then_some(())
    });
    result.map(|_| ()).map_err(|e| {
        let diff = rulesets::diff(expected, &last, 40);
        format!("{e}; expected (-) and found (+):\n{diff}")
    })
}

/// Phase 4d: the whole `k8rs server` stopped with SIGTERM (by its PID) and started again on the
/// same data dir. Its nftables tables (service proxy, pod network, network policy) come back
/// as they were, without duplicates; Service `gone`, deleted as soon as the API answers again,
/// leaves nothing behind; a new pod reaches the web Service by DNS name and ClusterIP.
fn restart(c: &mut Cluster) -> Result<String, String> {
    let expose = ["expose", "deploy", "web", "--name=gone", "--port=81"];
    c.kubectl(&[&expose[..], &["--target-port=8080"]].concat())?;
    let gone = c.kubectl(&["get", "svc", "gone", "-o=jsonpath={.spec.clusterIP}"])?;
    let gone = gone.trim().to_string();
    let before = settled_tables(c, &gone)?;
    let heartbeat = ready_heartbeat(c, "srv");
    let status = c
        .stop_server(Duration::from_secs(20))
        .ok_or("no server process to stop")?;
    if !status.success() {
        return Err(format!("k8rs server exited with {status} on SIGTERM"));
    }
    let restarted = Instant::now();
    c.start_server();
    delete_when_back(c, "gone")?;
    let api_back = restarted.elapsed().as_secs_f64();
    wait_for("node srv Ready with a new heartbeat", RESTART_WAIT, || {
        ready_heartbeat(c, "srv").filter(|h| Some(h) != heartbeat.as_ref())
    })?;
    let ready = restarted.elapsed().as_secs_f64();
    let expected = rulesets::without_address(&before, &gone);
    tables_become(c, &expected, "the tables as before, without Service gone")?;
    let resynced = restarted.elapsed().as_secs_f64();
    let ip = c.kubectl(&["get", "svc", "web", "-o=jsonpath={.spec.clusterIP}"])?;
    let script = format!(
        "{}{}",
        fetch_script("dns", "http://web.default.svc.cluster.local", 3),
        fetch_script("ip", &format!("http://{}", ip.trim()), 3)
    );
    let pod = client_pod("afterrestart", Some("srv"), &script);
    c.kubectl_stdin(&["create", "-f", "-"], &pod)?;
    let logs = finished_logs(c, "afterrestart", RESTART_WAIT)?;
    let counts = all_ok(&logs, &["dns", "ip"], 3)?;
    let lines: usize = before.values().map(Vec::len).sum();
    Ok(format!(
        "SIGTERM: {status}; after the start: API {api_back:.1} s, Ready {ready:.1} s, tables \
         as before minus Service gone {resynced:.1} s ({} objects, {lines} lines); then {counts}",
        before.len()
    ))
}

/// Phase 4: the agent joins, is Ready and gets its own podCIDR; its CSR was approved and signed.
fn join(c: &mut Cluster) -> Result<String, String> {
    let start = Instant::now();
    c.start_agent();
    let (ready, _) = wait_for("node agt Ready", Duration::from_secs(90), || {
        if let Some(status) = c.agent.as_mut().and_then(|p| p.exited()) {
            return Some(Err(format!("k8rs agent exited with {status}")));
        }
        node_ready(c, "agt").then_some(Ok(()))
    })?;
    ready?;
    let took = start.elapsed();
    let (srv, agt) = (pod_cidr(c, "srv")?, pod_cidr(c, "agt")?);
    if srv == agt {
        return Err(format!("both nodes have podCIDR {srv}"));
    }
    let csrs = c.kubectl(&["get", "csr", "--no-headers"])?;
    let issued = csrs
        .lines()
        .find(|l| l.contains("kube-apiserver-client-kubelet") && l.contains("Approved,Issued"))
        .ok_or_else(|| format!("no approved and issued kubelet CSR:\n{csrs}"))?;
    Ok(format!(
        "Ready {:.1} s after start, podCIDR {agt}; CSR: {}",
        took.as_secs_f64(),
        issued.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

/// Phase 4b: an httpd pod pinned to agt; a pod on srv reaches it by pod IP; a pod on agt reaches
/// the web Service (pods on srv) by DNS name (DNS served on srv) and ClusterIP.
fn cross_node(c: &Cluster) -> Result<String, String> {
    let far = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: far, labels: {{app: far}}}}\nspec:\n  \
         nodeSelector: {{kubernetes.io/hostname: agt}}\n  containers:\n  - name: httpd\n    \
         image: {IMAGE}\n"
    );
    c.kubectl_stdin(&["create", "-f", "-"], &far)?;
    let cidr = pod_cidr(c, "agt")?;
    let (far, _) = wait_for("pod far Running on agt", Duration::from_secs(90), || {
        pods(c, "app=far")
            .into_iter()
            .find(|p| p.len() == 4 && p[1] == "Running")
    })?;
    if far[3] != "agt" || !in_cidr(&far[2], &cidr) {
        return Err(format!(
            "pod far runs on {} with IP {} (want agt, {cidr})",
            far[3], far[2]
        ));
    }
    let url = format!("http://{}:8080", far[2]);
    let near = client_pod("near", Some("srv"), &fetch_script("pod", &url, 3));
    c.kubectl_stdin(&["create", "-f", "-"], &near)?;
    let ip = c.kubectl(&["get", "svc", "web", "-o=jsonpath={.spec.clusterIP}"])?;
    let script = format!(
        "{}{}",
        fetch_script("dns", "http://web.default.svc.cluster.local", 3),
        fetch_script("ip", &format!("http://{}", ip.trim()), 3)
    );
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &client_pod("farclient", Some("agt"), &script),
    )?;
    let near_logs = finished_logs(c, "near", Duration::from_secs(90))?;
    let pod_to_pod = all_ok(&near_logs, &["pod"], 3).map_err(|e| format!("srv -> agt: {e}"))?;
    let far_logs = finished_logs(c, "farclient", Duration::from_secs(90))?;
    let from_agt =
        all_ok(&far_logs, &["dns", "ip"], 3).map_err(|e| format!("agt -> Service: {e}"))?;
    let remote_logs = c
        .kubectl(&["logs", "far"])
        .map(|t| format!("{} lines", t.lines().count()))
        .map_err(|e| format!("kubectl logs of a pod on agt: {e}"))?;
    Ok(format!(
        "far {} on agt; srv->agt pod IP: {pod_to_pod}; agt->Service: {from_agt}; \
         kubectl logs far: {remote_logs}",
        far[2]
    ))
}

/// Phase 4c: agents with a wrong secret, and with a token of another CA, fail with clear errors.
fn wrong_token(c: &Cluster) -> Result<String, String> {
    let token = std::fs::read_to_string(c.srv_dir().join("token"))
        .map_err(|e| format!("reading the token: {e}"))?;
    let token = token.trim();
    let (hash, secret) = token
        .split_once("::node:")
        .ok_or_else(|| format!("unexpected token shape {token:?}"))?;
    let bad_secret = format!("{hash}::node:{}", "0".repeat(secret.len()));
    let bad_ca = format!("K10{}::node:{secret}", "0".repeat(64));
    let mut seen = Vec::new();
    for (what, bad, want) in [
        ("wrong secret", bad_secret, "refused the join token"),
        ("another CA", bad_ca, "does not match the join token"),
    ] {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{bad}\n")).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let out = c.agt_ns.run(
            "timeout",
            &[
                "60",
                K8RS,
                "agent",
                &format!("--server={}", c.server_url()),
                &format!("--token-file={}", file.display()),
                "--node-name=intruder",
                &format!("--node-ip={AGT_IP}"),
                &format!("--data-dir={}", dir.path().join("data").display()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_default()
            .trim()
            .to_string();
        if out.status.success() || out.status.code() == Some(124) || !stderr.contains(want) {
            return Err(format!(
                "{what}: exit {} after {:.1} s, stderr lacks {want:?}:\n{stderr}",
                out.status,
                start.elapsed().as_secs_f64()
            ));
        }
        seen.push(format!("{what}: {} {said:?}", out.status));
    }
    Ok(seen.join("; "))
}

/// Phase 5: stop both nodes, `k8rs killall` each, and check what is left in the namespaces.
fn killall(c: &mut Cluster) -> Result<String, String> {
    let problems = c.teardown();
    let mut left = Vec::new();
    let mut notes = Vec::new();
    for (ns, dir) in [(&c.srv_ns, c.srv_dir()), (&c.agt_ns, c.agt_dir())] {
        let tables = ns.run("nft", &["list", "tables"]);
        let tables = String::from_utf8_lossy(&tables.stdout);
        for t in ["k8rs-proxy", "k8rs-podnet", "k8rs-netpol"] {
            if tables.contains(t) {
                left.push(format!("{}: nft table {t}", ns.name));
            }
        }
        for pid in ns.pids() {
            let name = comm(pid);
            if name.starts_with("containerd") || name == "k8rs" {
                left.push(format!("{}: process {pid} {name}", ns.name));
            }
        }
        let containerd = dir.join("agent").display().to_string();
        for (pid, cmd) in processes_mentioning(&containerd) {
            left.push(format!("process {pid} still uses {containerd}: {cmd}"));
        }
        let links = ns.ip(&["-br", "link"]).unwrap_or_default();
        let links: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        notes.push(format!("links left in {}: {links:?}", ns.name));
    }
    let cgroups = e2e::node_cgroups(&["srv", "agt"]);
    if !cgroups.is_empty() {
        notes.push(format!(
            "{} cgroup dirs left under /sys/fs/cgroup/*/k8rs-{{srv,agt}}",
            cgroups.len()
        ));
    }
    e2e::remove_node_cgroups(&["srv", "agt"]);
    if problems.is_empty() && left.is_empty() {
        Ok(format!(
            "no k8rs tables or containerd left on {SRV_IP} and {AGT_IP}; notes: {}",
            notes.join("; ")
        ))
    } else {
        Err(format!(
            "{problems:?} {left:?}; notes: {}",
            notes.join("; ")
        ))
    }
}
