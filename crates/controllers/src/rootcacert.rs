//! The root-CA publisher, as upstream's: a ConfigMap `kube-root-ca.crt` with key `ca.crt` (the
//! cluster CA bundle) in every active namespace, created when missing and repaired when changed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8rs_controller_runtime::SharedInformers;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::informer::{self, Next};
use crate::serviceaccount::active;

/// The ConfigMap's name.
pub const CONFIGMAP: &str = "kube-root-ca.crt";
/// The key holding the CA bundle.
pub const KEY: &str = "ca.crt";
/// Upstream's description annotation.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const RESYNC: Duration = Duration::from_secs(300);

/// The publisher's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCaCertConfig {
    /// The cluster CA certificate(s), PEM.
    pub ca_pem: String,
}

/// An action of one sync.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Create { namespace: String, cm: ConfigMap },
    Update { namespace: String, cm: ConfigMap },
}

fn desired_data(ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), ca.to_string())])
}

fn desired(namespace: &str, ca: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(desired_data(ca)),
        ..Default::default()
    }
}

/// What one sync does: create the ConfigMap where missing, restore its data and description
/// where changed (keeping everything else of the object).
pub fn plan(
    namespaces: &[&Namespace],
    existing: &HashMap<String, &ConfigMap>,
    ca: &str,
) -> Vec<Action> {
    let mut names: Vec<&str> = namespaces
        .iter()
        .filter(|ns| active(ns))
        .filter_map(|ns| ns.metadata.name.as_deref())
        .collect();
    names.sort_unstable();
    let mut out = Vec::new();
    for ns in names {
        let Some(cm) = existing.get(ns) else {
            out.push(Action::Create {
                namespace: ns.into(),
                cm: desired(ns, ca),
            });
            continue;
        };
        let described = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
            .is_some_and(|d| !d.is_empty());
        if cm.data.as_ref() == Some(&desired_data(ca)) && described {
            continue;
        }
        let mut fixed = (*cm).clone();
        fixed.data = Some(desired_data(ca));
        fixed
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
        out.push(Action::Update {
            namespace: ns.into(),
            cm: fixed,
        });
    }
    out
}

/// Runs the publisher until `shutdown`. Only the `kube-root-ca.crt` ConfigMaps are cached (a
/// field-selected subscription): nothing else in the controller manager caches ConfigMaps.
pub async fn run(
    informers: SharedInformers,
    config: RootCaCertConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.ca_pem.trim().is_empty() {
        return Err(Error::InvalidConfig {
            controller: "root-ca-certificate-publisher",
            message: "no CA certificate".into(),
        });
    }
    let client = informers.client().clone();
    let (namespaces, ns_changes) = informers.changes::<Namespace>();
    let by_name = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}"));
    let (maps, cm_changes) = informer::selected::<ConfigMap>(&informers, by_name);
    let ready = vec![
        k8rs_controller_runtime::ready(&namespaces),
        k8rs_controller_runtime::ready(&maps),
    ];
    let ca = config.ca_pem;
    informer::run_loop(
        vec![ns_changes, cm_changes],
        ready,
        RESYNC,
        shutdown,
        || {
            let (client, ca) = (client.clone(), ca.clone());
            let (ns_snap, cm_snap) = (namespaces.state(), maps.state());
            async move {
                let refs: Vec<&Namespace> = ns_snap.iter().map(AsRef::as_ref).collect();
                let existing: HashMap<String, &ConfigMap> = cm_snap
                    .iter()
                    .filter(|c| c.metadata.name.as_deref() == Some(CONFIGMAP))
                    .filter_map(|c| Some((c.metadata.namespace.clone()?, c.as_ref())))
                    .collect();
                let mut next = Next::Idle;
                for action in plan(&refs, &existing, &ca) {
                    if !perform(&client, action).await {
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

async fn perform(client: &kube::Client, action: Action) -> bool {
    let (ns, result) = match action {
        Action::Create { namespace, cm } => {
            let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
            (namespace, api.create(&PostParams::default(), &cm).await)
        }
        Action::Update { namespace, cm } => {
            let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
            (
                namespace,
                api.replace(CONFIGMAP, &PostParams::default(), &cm).await,
            )
        }
    };
    match result {
        Ok(_) => true,
        // Raced with another writer or the namespace's end: the watch brings the news.
        Err(kube::Error::Api(s)) if matches!(s.code, 409 | 403 | 404) => true,
        Err(err) => {
            tracing::warn!(%err, namespace = ns, "publishing {CONFIGMAP} failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ns
    }

    #[test]
    fn creates_missing_and_repairs_changed_configmaps() {
        let (a, b, c) = (ns("a"), ns("b"), ns("c"));
        let ok = desired("b", "CA");
        let mut changed = desired("c", "CA");
        changed.data = Some(BTreeMap::from([(KEY.to_string(), "evil".to_string())]));
        changed.metadata.resource_version = Some("7".into());
        let existing = HashMap::from([("b".to_string(), &ok), ("c".to_string(), &changed)]);
        let mut repaired = desired("c", "CA");
        repaired.metadata.resource_version = Some("7".into());
        assert_eq!(
            plan(&[&a, &b, &c], &existing, "CA"),
            vec![
                Action::Create {
                    namespace: "a".into(),
                    cm: desired("a", "CA")
                },
                Action::Update {
                    namespace: "c".into(),
                    cm: repaired
                },
            ]
        );
    }

    #[test]
    fn terminating_namespaces_get_nothing() {
        let mut gone = ns("gone");
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(plan(&[&gone], &HashMap::new(), "CA"), vec![]);
    }
}
