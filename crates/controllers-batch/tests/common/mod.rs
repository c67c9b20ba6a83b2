//! The shared environment of the batch integration tests: one API server per test binary with
//! hollow nodes, the scheduler, pod CIDRs and the batch controllers (pod failure backoff of
//! 100 ms; the CronJob controller on a clock the tests move).

#![allow(dead_code)]

use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8rs_controllers_batch::clock::{FakeClock, SharedClock};
use k8rs_controllers_batch::{cronjob, job, ttl};
use k8rs_testing::TestServer;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OnceCell;

pub const WAIT: Duration = Duration::from_secs(60);

pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

pub struct Env {
    pub server: TestServer,
    /// The CronJob controller's clock.
    pub cron_clock: FakeClock,
}

static ENV: OnceCell<Env> = OnceCell::const_new();

pub async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let server = TestServer::start().await;
        let (client, token) = (server.client(), server.shutdown_token());
        tokio::spawn(assign_pod_cidrs(client.clone()));
        let hollow = k8rs_hollow::HollowConfig {
            count: 2,
            ..Default::default()
        };
        tokio::spawn(k8rs_hollow::run(client.clone(), hollow, token.clone()));
        let sched = k8rs_scheduler::SchedulerConfig::default();
        tokio::spawn(k8rs_scheduler::run(client.clone(), sched, token.clone()));
        let jobs = job::JobConfig {
            backoff_base: Duration::from_millis(100),
            ..Default::default()
        };
        // One set of caches for the three controllers, as in the controller manager.
        let informers = SharedInformers::new(client.clone(), token.clone());
        tokio::spawn(job::run(informers.clone(), jobs, token.clone()));
        tokio::spawn(ttl::run(
            informers.clone(),
            ttl::TtlConfig::default(),
            token.clone(),
        ));
        let cron_clock = FakeClock::new(Timestamp::now());
        let clock: SharedClock = std::sync::Arc::new(cron_clock.clone());
        let cron = cronjob::CronJobConfig {
            clock,
            local_time_zone: k8s_openapi::jiff::tz::TimeZone::UTC,
            ..Default::default()
        };
        tokio::spawn(cronjob::run(informers, cron, token));
        Env { server, cron_clock }
    })
    .await
}

/// Node IPAM stand-in: every node gets `10.42.<i>.0/24`.
async fn assign_pod_cidrs(client: kube::Client) {
    let nodes: Api<Node> = Api::all(client);
    let mut next = 0u32;
    loop {
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            for node in list {
                if node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_some()
                {
                    continue;
                }
                let cidr = format!("10.42.{next}.0/24");
                next += 1;
                let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                let name = node.metadata.name.clone().unwrap_or_default();
                let _ = nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// Runs kubectl against the server; panics with its stderr when it fails.
pub fn kubectl(server: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = try_kubectl(server, args);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

pub fn try_kubectl(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pod template whose containers run `run` then exit with `code`.
pub fn template(run: &str, code: i32) -> serde_json::Value {
    json!({
        "metadata": {"annotations": {"hollow.k8rs.io/run-duration": run,
                                     "hollow.k8rs.io/exit-code": code.to_string()}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "busybox"}]}
    })
}
