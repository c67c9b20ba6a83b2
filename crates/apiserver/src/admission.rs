//! Admission: the built-in plugins in upstream's order (NamespaceLifecycle, LimitRanger,
//! ServiceAccount, DefaultTolerationSeconds, Priority, DefaultStorageClass, ResourceQuota),
//! each a small function on the object being written. Webhooks and PodSecurity slot in here.

use serde_json::{Value, json};

use crate::ApiServer;
use crate::error::{ApiError, ApiResult, Details};
use crate::objects::meta;
use crate::registry::ResourceDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl ApiServer {
    /// Runs the admission chain; it may change `obj` (mutating plugins) or refuse it.
    pub async fn admit(
        &self,
        def: &ResourceDef,
        op: Operation,
        obj: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        if op != Operation::Create {
            return Ok(());
        }
        let ns = meta(obj)["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if def.namespaced {
            self.namespace_lifecycle(def, &ns, obj).await?;
        }
        match (def.group, def.plural) {
            ("", "pods") => {
                self.limit_ranger(&ns, obj);
                self.service_account(&ns, obj).await;
                default_toleration_seconds(obj);
                self.priority(obj).await?;
            }
            ("", "persistentvolumeclaims") => self.default_storage_class(obj),
            _ => {}
        }
        if def.namespaced {
            self.resource_quota(def, &ns)?;
        }
        Ok(())
    }

    /// An object from the cache, or, when the cache has not seen it yet, from the store (a
    /// namespace created a moment ago must admit content at once, as upstream's live lookup).
    pub(crate) async fn lookup(
        &self,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let def = self.registry.lookup(group, "v1", plural)?;
        let key = def.key(ns, name);
        if let Some(obj) = self.cache.get(&key) {
            return Some(obj.value());
        }
        let kv = self.store.get(&key).await.ok()??;
        crate::objects::decode_kv(&kv).ok()
    }

    fn cached_list(&self, group: &str, version: &str, plural: &str, ns: &str) -> Vec<Value> {
        let Some(def) = self.registry.lookup(group, version, plural) else {
            return vec![];
        };
        let (snapshot, _) = self.cache.snapshot();
        let prefix = crate::list::prefix(&def, Some(ns));
        crate::cache::range(&snapshot, &prefix, None)
            .map(|o| o.value())
            .collect()
    }

    async fn namespace_lifecycle(&self, def: &ResourceDef, ns: &str, obj: &Value) -> ApiResult<()> {
        let Some(namespace) = self.lookup("", "namespaces", None, ns).await else {
            return Err(ApiError::not_found(Details::new(ns, "", "namespaces")));
        };
        let terminating = namespace["status"]["phase"] == "Terminating";
        if terminating && !(def.plural == "events" && def.group.is_empty()) {
            let name = meta(obj)["name"].as_str().unwrap_or_default();
            return Err(ApiError::forbidden(
                Details::new(name, def.group, def.plural),
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Default requests and limits from the namespace's LimitRanges (type Container).
    fn limit_ranger(&self, ns: &str, pod: &mut Value) {
        for lr in self.cached_list("", "v1", "limitranges", ns) {
            for limit in lr["spec"]["limits"].as_array().into_iter().flatten() {
                if limit["type"] != "Container" {
                    continue;
                }
                for list in ["containers", "initContainers"] {
                    for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
                        for (field, default) in
                            [("limits", "default"), ("requests", "defaultRequest")]
                        {
                            let Some(defaults) = limit[default].as_object() else {
                                continue;
                            };
                            for (res, q) in defaults {
                                if c["resources"][field][res].is_null() {
                                    c["resources"][field][res] = q.clone();
                                }
                            }
                        }
                        // Requests default to limits when only limits are set.
                        if let Some(limits) = c["resources"]["limits"].as_object().cloned() {
                            for (res, q) in limits {
                                if c["resources"]["requests"][&res].is_null() {
                                    c["resources"]["requests"][&res] = q;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The default service account and the projected `kube-api-access-*` token volume.
    async fn service_account(&self, ns: &str, pod: &mut Value) {
        let spec = &mut pod["spec"];
        if spec["serviceAccountName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            spec["serviceAccountName"] = "default".into();
        }
        let sa_name = spec["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        if spec["serviceAccount"].is_null() {
            spec["serviceAccount"] = sa_name.clone().into();
        }
        let sa = self.lookup("", "serviceaccounts", Some(ns), &sa_name).await;
        let automount = spec["automountServiceAccountToken"]
            .as_bool()
            .or_else(|| {
                sa.as_ref()
                    .and_then(|s| s["automountServiceAccountToken"].as_bool())
            })
            .unwrap_or(true);
        if !automount {
            return;
        }
        let has_volume = spec["volumes"].as_array().into_iter().flatten().any(|v| {
            v["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("kube-api-access-")
        });
        if has_volume {
            return;
        }
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(5)
            .collect();
        let name = format!("kube-api-access-{suffix}");
        let volume = json!({
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }
        });
        match spec["volumes"].as_array_mut() {
            Some(v) => v.push(volume),
            None => spec["volumes"] = json!([volume]),
        }
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_array_mut().into_iter().flatten() {
                let mounted = c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["mountPath"] == SA_MOUNT);
                if mounted {
                    continue;
                }
                let mount = json!({"name": name, "readOnly": true, "mountPath": SA_MOUNT});
                match c["volumeMounts"].as_array_mut() {
                    Some(m) => m.push(mount),
                    None => c["volumeMounts"] = json!([mount]),
                }
            }
        }
    }

    /// Priority admission: priorityClassName to priority, refusing unknown classes.
    async fn priority(&self, pod: &mut Value) -> ApiResult<()> {
        let spec = &mut pod["spec"];
        let class_name = spec["priorityClassName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let class = if class_name.is_empty() {
            self.global_default_priority_class()
        } else {
            let found = self
                .lookup("scheduling.k8s.io", "priorityclasses", None, &class_name)
                .await;
            if found.is_none() {
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                return Err(ApiError::forbidden(
                    Details::new(&name, "", "pods"),
                    &format!("no PriorityClass with name {class_name} was found"),
                ));
            }
            found
        };
        let spec = &mut pod["spec"];
        let (priority, policy) = match &class {
            Some(c) => (
                c["value"].as_i64().unwrap_or(0),
                c["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
            ),
            None => (0, "PreemptLowerPriority".to_string()),
        };
        if let (Some(c), true) = (&class, class_name.is_empty()) {
            spec["priorityClassName"] = c["metadata"]["name"].clone();
        }
        spec["priority"] = priority.into();
        if spec["preemptionPolicy"].is_null() {
            spec["preemptionPolicy"] = policy.into();
        }
        Ok(())
    }

    fn global_default_priority_class(&self) -> Option<Value> {
        let def = self
            .registry
            .lookup("scheduling.k8s.io", "v1", "priorityclasses")?;
        let (snapshot, _) = self.cache.snapshot();
        let prefix = crate::list::prefix(&def, None);
        crate::cache::range(&snapshot, &prefix, None)
            .map(|o| o.value())
            .find(|c| c["globalDefault"] == true)
    }

    fn default_storage_class(&self, pvc: &mut Value) {
        if pvc["spec"]
            .get("storageClassName")
            .is_some_and(|v| !v.is_null())
        {
            return;
        }
        let Some(def) = self
            .registry
            .lookup("storage.k8s.io", "v1", "storageclasses")
        else {
            return;
        };
        let (snapshot, _) = self.cache.snapshot();
        let prefix = crate::list::prefix(&def, None);
        let default = crate::cache::range(&snapshot, &prefix, None)
            .map(|o| o.value())
            .find(|c| {
                c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    == "true"
            });
        if let Some(sc) = default {
            pvc["spec"]["storageClassName"] = sc["metadata"]["name"].clone();
        }
    }

    /// Refuses creates that would exceed an object-count quota of the namespace.
    fn resource_quota(&self, def: &ResourceDef, ns: &str) -> ApiResult<()> {
        let quotas = self.cached_list("", "v1", "resourcequotas", ns);
        if quotas.is_empty() {
            return Ok(());
        }
        let count_name = if def.group.is_empty() {
            format!("count/{}", def.plural)
        } else {
            format!("count/{}.{}", def.plural, def.group)
        };
        let short = match (def.group, def.plural) {
            (
                "",
                p @ ("pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "persistentvolumeclaims"
                | "replicationcontrollers"
                | "resourcequotas"),
            ) => Some(p),
            _ => None,
        };
        let used = self
            .cached_list(def.group, def.version, def.plural, ns)
            .len() as i64;
        for q in quotas {
            let hard = &q["spec"]["hard"];
            for res in [Some(count_name.as_str()), short].into_iter().flatten() {
                let Some(limit) = hard[res]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .or(hard[res].as_i64())
                else {
                    continue;
                };
                if used + 1 > limit {
                    let qname = q["metadata"]["name"].as_str().unwrap_or_default();
                    return Err(ApiError::forbidden(
                        Details::new("", def.group, def.plural),
                        &format!(
                            "exceeded quota: {qname}, requested: {res}=1, used: {res}={used}, limited: {res}={limit}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The 300 s not-ready/unreachable NoExecute tolerations, unless the pod has its own.
fn default_toleration_seconds(pod: &mut Value) {
    let mut tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let has = tolerations.iter().any(|t| {
            (t["key"] == key || t["key"].is_null() && t["operator"] == "Exists")
                && (t["effect"].is_null() || t["effect"] == "NoExecute")
        });
        if !has {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    pod["spec"]["tolerations"] = Value::Array(tolerations);
}

/// The Eviction API's check, as upstream: a pod covered by a PodDisruptionBudget may be evicted
/// only if the budget allows a disruption; the allowance is then taken (decremented, and the
/// pod recorded in `disruptedPods`) in the same compare-and-swap, so two concurrent evictions
/// cannot both spend one allowance. Refusals are 429 with upstream's messages. The budgets are
/// read once the cache holds every write so far; a budget deleted between that read and the
/// compare-and-swap no longer guards the pod, so the check starts again.
pub async fn check_disruption_budgets(api: &ApiServer, ns: &str, pod: &Value) -> ApiResult<()> {
    const ATTEMPTS: usize = 3;
    let Some(def) = api.registry.lookup("policy", "v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    let labels = pod["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        api.cache.sync().await?;
        let matching: Vec<Value> = api
            .cached_list("policy", "v1", "poddisruptionbudgets", ns)
            .into_iter()
            .filter(|pdb| {
                let selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                    serde_json::from_value(pdb["spec"]["selector"].clone()).unwrap_or_default();
                !pdb["spec"]["selector"].is_null()
                    && k8rs_machinery::labels::Selector::from_label_selector(&selector)
                        .is_ok_and(|sel| sel.matches(&labels))
            })
            .collect();
        let pdb = match matching.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ));
            }
        };
        let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
        let now = crate::objects::now_rfc3339();
        match api
            .mutate(&def, Some(ns), name, |pdb| {
                take_disruption(pdb, &pod_name, &now)
            })
            .await
        {
            Err(ApiError::NotFound { .. }) if attempt < ATTEMPTS => {}
            result => return result.map(drop),
        }
    }
}

/// Spends one disruption of `pdb` on `pod`, or says why it may not.
fn take_disruption(pdb: &mut Value, pod: &str, now: &str) -> ApiResult<()> {
    let name = pdb["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let observed = pdb["status"]["observedGeneration"].as_i64().unwrap_or(0);
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    if observed < generation {
        return Err(ApiError::TooManyRequests(format!(
            "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        return Err(ApiError::TooManyRequests(format!(
            "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} needs {} healthy pods and has {} currently",
            pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
            pdb["status"]["currentHealthy"].as_i64().unwrap_or(0)
        )));
    }
    pdb["status"]["disruptionsAllowed"] = (allowed - 1).into();
    if !pdb["status"]["disruptedPods"].is_object() {
        pdb["status"]["disruptedPods"] = json!({});
    }
    pdb["status"]["disruptedPods"][pod] = now.into();
    Ok(())
}
