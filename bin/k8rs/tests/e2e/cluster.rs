//! Two machines in network namespaces (`srv` at 192.168.88.1, `agt` at 192.168.88.2, joined by a
//! veth pair, no default route), their data dirs with the air-gap images, the `k8rs server` and
//! `k8rs agent` processes, and a teardown that runs even when the test fails. Set
//! `K8RS_E2E_LOGS=DIR` to keep the nodes' logs in DIR.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::{K8RS, Netns, Proc, kubectl, kubectl_ok, link, remove_data_dir, run_ok};

pub const PORT: u16 = 6443;
pub const SRV_IP: &str = "192.168.88.1";
pub const AGT_IP: &str = "192.168.88.2";

pub struct Cluster {
    pub srv_ns: Netns,
    pub agt_ns: Netns,
    srv_dir: Option<tempfile::TempDir>,
    agt_dir: Option<tempfile::TempDir>,
    pub server: Option<Proc>,
    pub agent: Option<Proc>,
    torn_down: bool,
}

impl Cluster {
    /// Creates the namespaces and data dirs and builds the images; panics if a namespace could
    /// reach outside the machine.
    pub fn new() -> Cluster {
        let pid = std::process::id();
        let srv_ns = Netns::create(&format!("k8rs-e2e-{pid}-srv"));
        let agt_ns = Netns::create(&format!("k8rs-e2e-{pid}-agt"));
        link(&srv_ns, SRV_IP, &agt_ns, AGT_IP).expect("veth between the namespaces");
        for ns in [&srv_ns, &agt_ns] {
            assert!(
                !ns.has_default_route(),
                "namespace {} has a default route: refusing to run",
                ns.name
            );
        }
        let cluster = Cluster {
            srv_ns,
            agt_ns,
            srv_dir: Some(tempfile::tempdir().expect("tempdir")),
            agt_dir: Some(tempfile::tempdir().expect("tempdir")),
            server: None,
            agent: None,
            torn_down: false,
        };
        for dir in [cluster.srv_dir(), cluster.agt_dir()] {
            build_images(&dir.join("agent/images"));
        }
        cluster
    }

    pub fn srv_dir(&self) -> PathBuf {
        self.srv_dir
            .as_ref()
            .map(|d| d.path().into())
            .unwrap_or_default()
    }

    pub fn agt_dir(&self) -> PathBuf {
        self.agt_dir
            .as_ref()
            .map(|d| d.path().into())
            .unwrap_or_default()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.srv_dir().join("admin.kubeconfig")
    }

    pub fn server_url(&self) -> String {
        format!("https://{SRV_IP}:{PORT}")
    }

    pub fn start_server(&mut self) {
        let dir = self.srv_dir();
        let args = [
            "server".to_string(),
            format!("--data-dir={}", dir.display()),
            "--bind-address=0.0.0.0".into(),
            format!("--https-port={PORT}"),
            format!("--node-ip={SRV_IP}"),
            "--node-name=srv".into(),
            format!("--tls-san={SRV_IP}"),
        ];
        self.server = Some(Proc::spawn(&self.srv_ns, &args, &dir.join("server.log")));
    }

    /// SIGTERM to the server process (by its PID), up to `grace` for it to exit; its exit
    /// status (`None` if none was running).
    pub fn stop_server(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.server.take()?.stop(grace)
    }

    pub fn start_agent(&mut self) {
        let dir = self.agt_dir();
        let args = [
            "agent".to_string(),
            format!("--server={}", self.server_url()),
            format!("--token-file={}", self.srv_dir().join("token").display()),
            "--node-name=agt".into(),
            format!("--node-ip={AGT_IP}"),
            format!("--data-dir={}", dir.display()),
        ];
        self.agent = Some(Proc::spawn(&self.agt_ns, &args, &dir.join("agent.log")));
    }

    /// kubectl in the server's namespace with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        kubectl_ok(&self.srv_ns, &self.kubeconfig(), args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String, String> {
        kubectl_ok(&self.srv_ns, &self.kubeconfig(), args, Some(input))
    }

    pub fn kubectl_raw(&self, args: &[&str]) -> Output {
        kubectl(&self.srv_ns, &self.kubeconfig(), args, None)
    }

    /// What a reader needs when a phase fails: pods, nodes, events, pod descriptions and the
    /// logs' tails.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for args in [
            &["get", "nodes", "-o", "wide"][..],
            &["get", "pods", "-A", "-o", "wide"],
            &["get", "svc,endpointslices", "-A"],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"],
            &["describe", "pods"],
        ] {
            let text = match self.kubectl(args) {
                Ok(t) | Err(t) => t,
            };
            let lines: Vec<&str> = text.lines().collect();
            let shown = lines[lines.len().saturating_sub(80)..].join("\n");
            out.push_str(&format!("--- kubectl {}\n{shown}\n", args.join(" ")));
        }
        for ns in [&self.srv_ns, &self.agt_ns] {
            let tables = ns.run("nft", &["list", "tables"]);
            let routes = ns.ip(&["route"]).unwrap_or_else(|e| e);
            out.push_str(&format!(
                "--- {}: nft tables\n{}--- routes\n{routes}",
                ns.name,
                String::from_utf8_lossy(&tables.stdout)
            ));
        }
        for (name, proc) in [("server", &self.server), ("agent", &self.agent)] {
            if let Some(p) = proc {
                out.push_str(&format!("--- {name} log (tail)\n{}\n", p.log_tail(60)));
            }
        }
        out
    }

    /// `k8rs killall --data-dir DIR` in `ns`, bounded.
    pub fn killall(ns: &Netns, dir: &Path) -> Output {
        let dir = dir.display().to_string();
        ns.run("timeout", &["120", K8RS, "killall", "--data-dir", &dir])
    }

    /// Stops both nodes' processes and cleans up their machines; the problems found.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.torn_down {
            return problems;
        }
        self.torn_down = true;
        for (name, proc) in [("agent", self.agent.take()), ("server", self.server.take())] {
            if let Some(mut p) = proc
                && let Some(status) = p.stop(Duration::from_secs(20))
                && !status.success()
            {
                problems.push(format!("k8rs {name} exited with {status} on SIGTERM"));
            }
        }
        for (ns, dir) in [
            (&self.agt_ns, self.agt_dir()),
            (&self.srv_ns, self.srv_dir()),
        ] {
            let out = Self::killall(ns, &dir);
            if !out.status.success() {
                problems.push(format!(
                    "k8rs killall in {} failed ({}): {}",
                    ns.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        problems
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("teardown: {problem}");
        }
        super::remove_node_cgroups(&["srv", "agt"]);
        if let Some(keep) = std::env::var_os("K8RS_E2E_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for log in [
                self.srv_dir().join("server.log"),
                self.agt_dir().join("agent.log"),
            ] {
                if let Some(name) = log.file_name() {
                    let _ = std::fs::copy(&log, keep.join(name));
                }
            }
        }
        for dir in [self.srv_dir.take(), self.agt_dir.take()]
            .into_iter()
            .flatten()
        {
            remove_data_dir(dir);
        }
    }
}

/// `scripts/build-images.sh OUT` (fast and idempotent).
fn build_images(out: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-images.sh");
    let out = out.display().to_string();
    if let Err(e) = run_ok(script, &[&out]) {
        panic!("building the images: {e}");
    }
}
