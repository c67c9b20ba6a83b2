//! Registers the hollow nodes, as a kubelet registers itself at start: create the Node; if it
//! exists already (this process ran before), report its status as healthy again. Retries with
//! backoff until it works or the process stops, many nodes at once.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::HollowConfig;
use crate::node::{node_name, node_object};

/// Registrations in flight at once.
const CONCURRENCY: usize = 32;
/// The first and the longest wait between attempts for one node.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// A registered hollow node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub index: usize,
    pub name: String,
    pub ip: Ipv4Addr,
    pub uid: String,
    pub pod_cidr: Option<String>,
}

/// Registers every node of `config`, in index order; `None` when `shutdown` came first.
pub async fn register_all(
    client: &kube::Client,
    config: &HollowConfig,
    shutdown: &CancellationToken,
) -> Option<Vec<Registered>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut registered: Vec<Registered> = stream::iter(0..config.count)
        .map(|i| register_one(&nodes, config, i, shutdown))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Option<_>>()?;
    registered.sort_by_key(|r| r.index);
    Some(registered)
}

async fn register_one(
    nodes: &Api<Node>,
    config: &HollowConfig,
    index: usize,
    shutdown: &CancellationToken,
) -> Option<Registered> {
    // `validate` checked that every index has an address.
    let ip = match config.metrics {
        Some(endpoint) => endpoint.address,
        None => crate::ip::node_ip(index)?,
    };
    let mut wait = BACKOFF.0;
    loop {
        match try_register(nodes, config, index, ip).await {
            Ok(r) => return Some(r),
            Err(err) => {
                let node = node_name(&config.name_prefix, index);
                tracing::warn!(node, %err, "registering the hollow node failed; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(BACKOFF.1);
    }
}

async fn try_register(
    nodes: &Api<Node>,
    config: &HollowConfig,
    index: usize,
    ip: Ipv4Addr,
) -> Result<Registered, kube::Error> {
    let object = node_object(config, index, ip, Utc::now());
    let node: Node = serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
    let name = node_name(&config.name_prefix, index);
    let created = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let status = json!({"status": object["status"]});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                .await?
        }
        Err(err) => return Err(err),
    };
    Ok(Registered {
        index,
        name,
        ip,
        uid: created.metadata.uid.unwrap_or_default(),
        pod_cidr: created.spec.and_then(|s| s.pod_cidr),
    })
}
