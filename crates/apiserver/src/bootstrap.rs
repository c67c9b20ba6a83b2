//! What the API server keeps in place itself: the built-in namespaces and priority classes, the
//! `kubernetes` Service with endpoints listing the live API servers (one Lease per server, as
//! upstream's lease endpoint reconciler), and the removal of a terminating namespace's content.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::ApiServer;
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, WriteOptions, now_rfc3339};
use crate::registry::{Def, ResourceDef};

const LEASE_LABEL: &str = "k8rs.io/apiserver-endpoint";
const LEASE_DURATION_S: i64 = 30;

impl ApiServer {
    pub(crate) fn def(&self, group: &str, version: &str, plural: &str) -> Def {
        self.registry
            .lookup(group, version, plural)
            .unwrap_or_else(|| panic!("built-in resource {group}/{version} {plural} is registered"))
    }

    /// Creates `obj` unless it exists.
    async fn ensure(&self, def: &ResourceDef, ns: Option<&str>, obj: Value) -> ApiResult<()> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if self.store.get(&def.key(ns, name)).await?.is_some() {
            return Ok(());
        }
        match self.create(def, ns, obj, &WriteOptions::default()).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces `obj` when its `spec`-like content differs.
    async fn upsert(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        obj: Value,
    ) -> ApiResult<()> {
        match self.read(def, ns, name).await {
            Ok((current, _)) => {
                let mut new = current.clone();
                for (k, v) in obj.as_object().into_iter().flatten() {
                    if k != "metadata" {
                        new[k] = v.clone();
                    }
                }
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                if new != current {
                    self.update(def, ns, name, None, new, &WriteOptions::default())
                        .await?;
                }
                Ok(())
            }
            Err(ApiError::NotFound { .. }) => self.ensure(def, ns, obj).await,
            Err(e) => Err(e),
        }
    }

    /// The objects every cluster starts with.
    pub async fn bootstrap(&self) -> ApiResult<()> {
        let namespaces = &self.def("", "v1", "namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.ensure(namespaces, None, obj).await?;
        }
        let classes = &self.def("scheduling.k8s.io", "v1", "priorityclasses");
        for (name, value) in [
            ("system-node-critical", 2000001000),
            ("system-cluster-critical", 2000000000),
        ] {
            let obj = json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "description": "Used for system critical pods that must not be moved from their current node.",
            });
            self.ensure(classes, None, obj).await?;
        }
        let services = &self.def("", "v1", "services");
        let ip = self.allocators.nth(1).to_string();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.config.advertise_port}]},
        });
        self.ensure(services, Some("default"), svc).await
    }

    /// Renews this server's Lease and writes the live servers into the `kubernetes` endpoints.
    pub async fn reconcile_endpoints(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.reconcile_endpoints_once().await {
                tracing::warn!(%err, "reconciling the kubernetes service endpoints failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
        // Leave the endpoints to the servers that remain.
        let leases = &self.def("coordination.k8s.io", "v1", "leases");
        let _ = self
            .delete(
                leases,
                Some("kube-system"),
                &self.lease_name(),
                &DeleteOptions::default(),
            )
            .await;
        let _ = self.reconcile_endpoints_once_without_self().await;
    }

    fn lease_name(&self) -> String {
        format!(
            "apiserver-{}",
            self.config.advertise_address.to_string().replace('.', "-")
        )
    }

    async fn reconcile_endpoints_once(&self) -> ApiResult<()> {
        let leases = &self.def("coordination.k8s.io", "v1", "leases");
        let name = self.lease_name();
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-system", "labels": {LEASE_LABEL: self.config.advertise_address.to_string()}},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_S,
                     "renewTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)},
        });
        self.upsert(leases, Some("kube-system"), &name, lease)
            .await?;
        self.write_endpoints(None).await
    }

    async fn reconcile_endpoints_once_without_self(&self) -> ApiResult<()> {
        self.write_endpoints(Some(self.config.advertise_address.to_string()))
            .await
    }

    async fn write_endpoints(&self, except: Option<String>) -> ApiResult<()> {
        let leases = &self.def("coordination.k8s.io", "v1", "leases");
        let (objects, _) = self.list_cached(leases, Some("kube-system")).await?;
        let now = chrono::Utc::now();
        let mut ips: Vec<String> = objects
            .iter()
            .filter_map(|o| {
                let ip = o.labels.get(LEASE_LABEL)?.clone();
                let v = o.value();
                let renewed =
                    chrono::DateTime::parse_from_rfc3339(v["spec"]["renewTime"].as_str()?).ok()?;
                let fresh = now.signed_duration_since(renewed).num_seconds() < LEASE_DURATION_S;
                (fresh && Some(&ip) != except.as_ref()).then_some(ip)
            })
            .collect();
        ips.sort();
        ips.dedup();
        let port = self.config.advertise_port;
        let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let subsets = if addresses.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        };
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": subsets,
        });
        let eps = &self.def("", "v1", "endpoints");
        self.upsert(eps, Some("default"), "kubernetes", endpoints)
            .await?;
        let slice_endpoints: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": slice_endpoints,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        });
        let slices = &self.def("discovery.k8s.io", "v1", "endpointslices");
        self.upsert(slices, Some("default"), "kubernetes", slice)
            .await
    }

    /// Empties terminating namespaces, then removes their `kubernetes` finalizer.
    pub async fn finalize_namespaces(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.finalize_namespaces_once().await {
                tracing::warn!(%err, "finalizing terminating namespaces failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    async fn finalize_namespaces_once(&self) -> ApiResult<()> {
        let namespaces = &self.def("", "v1", "namespaces");
        let (objects, _) = self.list_cached(namespaces, None).await?;
        for ns in objects {
            let v = ns.value();
            if v["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let has_ours = v["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "kubernetes"));
            if !has_ours {
                continue;
            }
            if self.delete_namespace_content(&ns.name).await? > 0 {
                continue;
            }
            let mut new = v.clone();
            let rest: Vec<Value> = v["spec"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| *x != "kubernetes")
                .cloned()
                .collect();
            new["spec"]["finalizers"] = Value::Array(rest);
            self.update(
                namespaces,
                None,
                &ns.name,
                Some("finalize"),
                new,
                &WriteOptions::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes everything in a namespace; returns how many objects remain.
    async fn delete_namespace_content(&self, ns: &str) -> ApiResult<usize> {
        let mut remaining = 0;
        for def in self.registry.stored().iter().filter(|d| d.namespaced) {
            let (objects, _) = self.list_cached(def, Some(ns)).await?;
            for obj in objects {
                remaining += 1;
                if obj.value()["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                let opts = DeleteOptions {
                    grace_period_seconds: None,
                    ..Default::default()
                };
                match self.delete(def, Some(ns), &obj.name, &opts).await {
                    Ok(crate::objects::Deleted::Gone(_)) => remaining -= 1,
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let _ = now_rfc3339();
        Ok(remaining)
    }
}
