//! End to end: the kubelet pulls from a plain-HTTP registry on 127.0.0.1 (Debian's
//! `docker-registry`) through a real containerd and applies each image pull policy.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;

use k8rs_testing::eventually;

const WAIT: Duration = Duration::from_secs(90);

/// A `docker-registry serve` of the test's own on a free port, killed by PID on drop.
struct Registry {
    _dir: tempfile::TempDir,
    log: PathBuf,
    port: u16,
    child: Child,
}

impl Registry {
    async fn start() -> anyhow::Result<Registry> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            d.join("storage").display()
        );
        std::fs::write(d.join("config.yml"), config)?;
        let log = d.join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(std::fs::File::create(d.join("registry.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let registry = Registry {
            _dir: dir,
            log,
            port,
            child,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(registry);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("docker-registry did not listen on {port}")
    }

    fn image(&self, tag: &str) -> String {
        format!("127.0.0.1:{}/k8rs/busybox:{tag}", self.port)
    }

    /// Pushes the cached busybox archive as `image(tag)`.
    fn push(&self, tag: &str) -> anyhow::Result<()> {
        let (busybox, _) = common::images()?;
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", busybox.display()))
            .arg(format!("docker://{}", self.image(tag)))
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "skopeo push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// How many requests for the image's manifests the registry has logged.
    fn manifest_requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/v2/k8rs/busybox/manifests/"))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, node: &str, image: &str, policy: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": image, "imagePullPolicy": policy,
                                 "command": ["sleep", "3600"]}]}
    }))?)
}

fn status(p: &Pod) -> ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

fn waiting_reason(p: &Pod) -> Option<String> {
    status(p).state?.waiting?.reason
}

async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("{name} Running"), WAIT, || async {
        let p = pods.get_opt(name).await.ok().flatten()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_policies_against_a_local_registry() -> anyhow::Result<()> {
    let node = common::Node::start(16).await?;
    let registry = Registry::start().await?;
    registry.push("1")?;
    let client = node.server.client();
    let name = node.config.node_name.clone();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    let image = registry.image("1");
    let cri = node.cri();

    // Always: pulled from the registry, then runs.
    pods.create(&pp, &pod("always", &name, &image, "Always")?)
        .await?;
    let p = running(&pods, "always").await;
    assert!(status(&p).image_id.contains("sha256:"), "{:?}", status(&p));
    assert!(cri.image_status(&image).await?.is_some());
    assert!(registry.manifest_requests() > 0, "the registry was asked");

    // IfNotPresent: the image is there, so the registry is not asked again.
    let before = registry.manifest_requests();
    pods.create(&pp, &pod("present", &name, &image, "IfNotPresent")?)
        .await?;
    running(&pods, "present").await;
    assert_eq!(registry.manifest_requests(), before, "no second pull");

    // A missing tag: ErrImagePull, then ImagePullBackOff.
    let missing = registry.image("missing");
    pods.create(&pp, &pod("missing", &name, &missing, "Always")?)
        .await?;
    // ErrImagePull lasts only until the next sync turns it into ImagePullBackOff, so a poller
    // can miss it: the failed pull is checked through its `Failed` event instead.
    let p = eventually("ImagePullBackOff", WAIT, || async {
        let p = pods.get_opt("missing").await.ok().flatten()?;
        (waiting_reason(&p).as_deref() == Some("ImagePullBackOff")).then_some(p)
    })
    .await;
    let events: Api<Event> = Api::namespaced(node.server.client(), "default");
    eventually("a Failed event for the pull", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("missing")
                    && e.reason.as_deref() == Some("Failed")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("Failed to pull image"))
            })
            .then_some(())
    })
    .await;
    let msg = status(&p).state.and_then(|s| s.waiting?.message);
    assert!(
        msg.as_deref().is_some_and(|m| m.contains(&missing)),
        "{msg:?}"
    );
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    // Never with an image that is not on the node: ErrImageNeverPull, no pull.
    let before = registry.manifest_requests();
    let absent = registry.image("absent");
    pods.create(&pp, &pod("never", &name, &absent, "Never")?)
        .await?;
    let p = eventually("ErrImageNeverPull", WAIT, || async {
        let p = pods.get_opt("never").await.ok().flatten()?;
        (waiting_reason(&p).as_deref() == Some("ErrImageNeverPull")).then_some(p)
    })
    .await;
    let msg = status(&p).state.and_then(|s| s.waiting?.message);
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("is not present with pull policy of Never")),
        "{msg:?}"
    );
    assert_eq!(registry.manifest_requests(), before, "Never does not pull");
    assert!(cri.image_status(&absent).await?.is_none());
    Ok(())
}
