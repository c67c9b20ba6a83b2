//! The service-account controller, as upstream's: a `default` ServiceAccount in every active
//! namespace, created again when deleted. It records no events, as upstream.

use std::collections::HashSet;
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};

/// The account every namespace gets.
pub const DEFAULT_ACCOUNT: &str = "default";
/// How often everything is checked again even without changes.
const RESYNC: Duration = Duration::from_secs(300);

/// Whether a namespace takes new objects (not terminating).
pub fn active(ns: &Namespace) -> bool {
    let terminating = ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    ns.metadata.deletion_timestamp.is_none() && !terminating
}

/// The namespaces that need a `default` ServiceAccount created.
pub fn plan(namespaces: &[&Namespace], accounts: &HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = namespaces
        .iter()
        .filter(|ns| active(ns))
        .filter_map(|ns| ns.metadata.name.clone())
        .filter(|n| !accounts.contains(n))
        .collect();
    out.sort();
    out
}

/// Runs the controller until `shutdown`. Only the `default` accounts are cached (a
/// field-selected subscription): nothing else in the controller manager needs the others.
pub async fn run(informers: SharedInformers, shutdown: CancellationToken) -> Result<(), Error> {
    let client = informers.client().clone();
    let (namespaces, ns_changes) = informers.changes::<Namespace>();
    let by_name = watcher::Config::default().fields(&format!("metadata.name={DEFAULT_ACCOUNT}"));
    let (accounts, sa_changes) = informer::selected::<ServiceAccount>(&informers, by_name);
    let ready = vec![
        k8rs_controller_runtime::ready(&namespaces),
        k8rs_controller_runtime::ready(&accounts),
    ];
    informer::run_loop(
        vec![ns_changes, sa_changes],
        ready,
        RESYNC,
        shutdown,
        || {
            let client = client.clone();
            let snapshot = namespaces.state();
            let have: HashSet<String> = accounts
                .state()
                .iter()
                .filter(|sa| sa.metadata.name.as_deref() == Some(DEFAULT_ACCOUNT))
                .filter_map(|sa| sa.metadata.namespace.clone())
                .collect();
            async move {
                let refs: Vec<&Namespace> = snapshot.iter().map(AsRef::as_ref).collect();
                let mut next = Next::Idle;
                for ns in plan(&refs, &have) {
                    if !create(&client, &ns).await {
                        next = Next::Retry;
                    }
                }
                next
            }
        },
    )
    .await;
    Ok(())
}

async fn create(client: &kube::Client, ns: &str) -> bool {
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(DEFAULT_ACCOUNT.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => true,
        // Already there, or the namespace is going away.
        Err(kube::Error::Api(s)) if matches!(s.code, 409 | 403 | 404) => true,
        Err(err) => {
            tracing::warn!(%err, namespace = ns, "creating the default ServiceAccount failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, phase: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        ns
    }

    #[test]
    fn creates_the_missing_accounts_of_active_namespaces_only() {
        let (a, b, c) = (ns("a", "Active"), ns("b", "Active"), ns("c", "Terminating"));
        let have = HashSet::from(["b".to_string()]);
        assert_eq!(plan(&[&a, &b, &c], &have), vec!["a".to_string()]);
    }
}
