//! End-to-end support: a test image built offline from busybox (cached under /tmp), a
//! containerd of the test's own (root, state, socket, CNI config under a temp dir), the API
//! server in-process, and a guard that tears all of it down even when the test fails.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8rs_kubelet::KubeletConfig;
use k8rs_kubelet::cri::{Cri, GrpcCri};
use k8rs_testing::TestServer;
use tokio_util::sync::CancellationToken;

pub const IMAGE: &str = "localhost/busybox:k8rs-test";
pub const PAUSE: &str = "localhost/pause:k8rs-test";
const CACHE: &str = "/tmp/k8rs-kubelet-test-images";

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Builds (once, cached) the busybox and pause image archives; returns their paths.
pub fn images() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = Path::new(CACHE);
    let (busybox, pause) = (dir.join("busybox.tar"), dir.join("pause.tar"));
    if busybox.exists() && pause.exists() {
        return Ok((busybox, pause));
    }
    std::fs::create_dir_all(dir)?;
    let work = tempfile::tempdir_in(dir)?;
    let w = work.path();
    let layout = w.join("oci");
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &img("busybox")]))?;
    let bundle = w.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &img("busybox")])
        .arg(&bundle))?;
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    for d in ["tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(bundle.join("rootfs").join(d))?;
    }
    std::fs::write(
        bundle.join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    run(Command::new("umoci")
        .args(["repack", "--image", &img("busybox")])
        .arg(&bundle))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img("busybox"),
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/bin",
    ]))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img("busybox"),
        "--tag",
        "pause",
        "--config.cmd",
        "sleep",
        "--config.cmd",
        "2147483647",
    ]))?;
    let tmp_b = w.join("busybox.tar");
    let tmp_p = w.join("pause.tar");
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}", img("busybox")),
        &format!("docker-archive:{}:{IMAGE}", tmp_b.display()),
    ]))?;
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}", img("pause")),
        &format!("docker-archive:{}:{PAUSE}", tmp_p.display()),
    ]))?;
    std::fs::rename(tmp_p, &pause)?;
    std::fs::rename(tmp_b, &busybox)?;
    Ok((busybox, pause))
}

/// A containerd of the test's own, with its images imported and a CNI bridge network.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub bridge: String,
    pub subnet: String,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd with pod subnet `10.42.<net>.0/24` on bridge `k8rst<net>`.
    pub async fn start(net: u8) -> anyhow::Result<Containerd> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        k8rs_testing::netguard::ensure()?;
        let (busybox, pause) = images()?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let socket = d.join("c.sock");
        let cni = d.join("cni");
        std::fs::create_dir_all(&cni)?;
        let bridge = format!("k8rst{net}");
        let subnet = format!("10.42.{net}.0/24");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0", "name": format!("k8rs-test-{net}"),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                          "dataDir": d.join("ipam").display().to_string(),
                          "routes": [{"dst": "0.0.0.0/0"}]}}]
        });
        std::fs::write(
            cni.join("10-k8rs.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            opt = d.join("opt").display(),
            cni = cni.display(),
        );
        std::fs::write(d.join("config.toml"), config)?;
        let log = std::fs::File::create(d.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut c = Containerd {
            dir,
            socket,
            bridge,
            subnet,
            child: Some(child),
        };
        for _ in 0..100 {
            if c.socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for tar in [&busybox, &pause] {
            run(Command::new("ctr")
                .arg("--address")
                .arg(&c.socket)
                .args(["-n", "k8s.io", "images", "import"])
                .arg(tar))?;
        }
        let cri = c.cri()?;
        for _ in 0..50 {
            if cri.version().await.is_ok() {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.stop();
        anyhow::bail!("containerd did not answer")
    }

    pub fn cri(&self) -> anyhow::Result<GrpcCri> {
        Ok(GrpcCri::connect_lazy(&self.socket)?)
    }

    /// Removes every pod through the CRI, then stops containerd by its PID.
    fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let socket = self.socket.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(cri) = GrpcCri::connect_lazy(&socket) else {
                    return;
                };
                let Ok(sandboxes) = cri.list_pod_sandboxes(Default::default()).await else {
                    return;
                };
                for s in sandboxes {
                    let _ = cri.stop_pod_sandbox(&s.id).await;
                    let _ = cri.remove_pod_sandbox(&s.id).await;
                }
            });
        })
        .join();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The API server, containerd and a running kubelet for node `node`.
pub struct Node {
    pub server: TestServer,
    pub containerd: Containerd,
    pub config: KubeletConfig,
    pub kubelet: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Node {
    pub async fn start(net: u8) -> anyhow::Result<Node> {
        Node::start_with(net, |_| {}).await
    }

    /// Starts with `tweak` applied to the kubelet's configuration.
    pub async fn start_with(
        net: u8,
        tweak: impl FnOnce(&mut KubeletConfig),
    ) -> anyhow::Result<Node> {
        let containerd = Containerd::start(net).await?;
        let server = TestServer::start().await;
        cluster_defaults(&server).await?;
        let ip: IpAddr = "127.0.0.1".parse()?;
        let mut config = KubeletConfig::new(
            format!("node-{net}"),
            ip,
            &containerd.socket,
            containerd.dir.path().join("kubelet"),
        );
        config.cgroup_root = format!("/k8rs-test-{net}");
        config.crash_loop_base = Duration::from_secs(1);
        config.crash_loop_max = Duration::from_secs(4);
        config.relist_period = Duration::from_millis(300);
        config.status_update_period = Duration::from_secs(1);
        config.pinned_images = vec![PAUSE.to_string()];
        // This shared machine's disk may be nearly full: no evictions or image GC in tests.
        config.eviction = false;
        config.image_gc_high_percent = 100;
        tweak(&mut config);
        let mut node = Node {
            server,
            containerd,
            config,
            kubelet: None,
        };
        node.start_kubelet();
        Ok(node)
    }

    pub fn start_kubelet(&mut self) {
        let token = self.server.shutdown_token();
        let (client, config) = (self.server.client(), self.config.clone());
        let t = token.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = k8rs_kubelet::run(client, config, t).await {
                panic!("kubelet stopped: {e}");
            }
        });
        self.kubelet = Some((token, task));
    }

    /// Runs the kubelet as its node (`system:node:NAME`), as the CSR approver requires of
    /// serving certificate requests.
    pub fn start_kubelet_as_node(&mut self) {
        let token = self.server.shutdown_token();
        let name = self.config.node_name.clone();
        let client = self
            .server
            .client_as(&format!("system:node:{name}"), &["system:nodes"]);
        let (config, t) = (self.config.clone(), token.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = k8rs_kubelet::run(client, config, t).await {
                panic!("kubelet stopped: {e}");
            }
        });
        self.kubelet = Some((token, task));
    }

    /// Starts the CSR approver and signer (the certificates controller) beside the server, so
    /// that the kubelet gets a serving certificate the API server trusts.
    pub fn start_signer(&self) -> anyhow::Result<()> {
        use k8rs_controllers::certificates::{self, CertificatesConfig};
        let pki = k8rs_auth::pki::ClusterPki::load_or_create(
            self.server.pki.dir(),
            &k8rs_auth::pki::PkiOptions {
                service_ip: "10.43.0.1".parse()?,
                extra_sans: vec![],
                host_ips: Some(vec![]),
            },
        )?;
        tokio::spawn(certificates::run(
            k8rs_controller_runtime::SharedInformers::new(
                self.server.client(),
                self.server.shutdown_token(),
            ),
            CertificatesConfig::new(Arc::new(pki)),
            self.server.shutdown_token(),
        ));
        Ok(())
    }

    pub async fn stop_kubelet(&mut self) {
        if let Some((token, task)) = self.kubelet.take() {
            token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub fn cri(&self) -> Arc<dyn Cri> {
        match self.containerd.cri() {
            Ok(c) => Arc::new(c),
            Err(e) => panic!("CRI client: {e}"),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((token, task)) = self.kubelet.take() {
            token.cancel();
            task.abort();
        }
        let root = self.config.cgroup_root.trim_start_matches('/').to_string();
        // Pods go first (containerd's guard), then the cgroups left empty.
        self.containerd.stop();
        k8rs_kubelet::volumes::unmount_under(self.containerd.dir.path());
        remove_cgroups(&root);
    }
}

/// What the service-account and root-CA controllers would make in `default`: the `default`
/// ServiceAccount and the `kube-root-ca.crt` ConfigMap, which every pod's `kube-api-access-*`
/// volume needs.
pub async fn cluster_defaults(server: &TestServer) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
    use kube::api::{Api, PostParams};
    let client = server.client();
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "default", "namespace": "default"}
    }))?;
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
        "data": {"ca.crt": server.pki.ca_cert_pem()}
    }))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for r in [
        accounts.create(&pp, &sa).await.map(|_| ()),
        maps.create(&pp, &cm).await.map(|_| ()),
    ] {
        match r {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => other?,
        }
    }
    Ok(())
}

fn remove_cgroups(root: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        rmdir_tree(&h.path().join(root));
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
