//! The payloads of the API-data volumes (configMap, secret, downwardAPI, projected), as
//! upstream's plugins build them: keys or `items` to paths, `mode`/`defaultMode`, optional
//! references, fsGroup's group read bits. Pure functions over fetched objects.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};

use super::atomic::{FileProjection, Payload};
use crate::pods::env::Facts;

/// Upstream's default file mode of API-data volumes (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// The objects a pod's volumes refer to, fetched (`None`: not found), and the service-account
/// tokens by `(audience, expirationSeconds)`.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    pub tokens: HashMap<(String, i64), String>,
}

/// What the payload functions need besides the pod.
#[derive(Clone, Copy, Debug)]
pub struct Modes {
    pub default_mode: i32,
    /// The pod's fsGroup: files get group read bits.
    pub fs_group: Option<i64>,
}

fn mode_of(explicit: Option<i32>, m: Modes) -> u32 {
    let base = u32::try_from(explicit.unwrap_or(m.default_mode)).unwrap_or(0o644) & 0o7777;
    if m.fs_group.is_some() {
        base | 0o440
    } else {
        base
    }
}

fn cm_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// A keyed source (configMap or secret): every key, or the listed `items`.
struct Keyed<'a> {
    /// `configmap` or `secret`, for messages.
    kind: &'static str,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

fn keyed(
    k: &Keyed,
    data: Option<BTreeMap<String, Vec<u8>>>,
    m: Modes,
    out: &mut Payload,
) -> Result<(), String> {
    let Some(data) = data else {
        if k.optional {
            return Ok(());
        }
        return Err(format!("{} \"{}\" not found", k.kind, k.name));
    };
    let Some(items) = k.items.filter(|i| !i.is_empty()) else {
        for (key, v) in data {
            let f = FileProjection {
                data: v,
                mode: mode_of(None, m),
            };
            out.insert(key, f);
        }
        return Ok(());
    };
    for it in items {
        let Some(v) = data.get(&it.key) else {
            if k.optional {
                continue;
            }
            return Err(match k.kind {
                "configmap" => format!("configmap references non-existent config key: {}", it.key),
                _ => format!("references non-existent secret key: {}", it.key),
            });
        };
        let f = FileProjection {
            data: v.clone(),
            mode: mode_of(it.mode, m),
        };
        out.insert(it.path.clone(), f);
    }
    Ok(())
}

/// The payload of a configMap source named `name`.
pub fn config_map(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    f: &Fetched,
    m: Modes,
    out: &mut Payload,
) -> Result<(), String> {
    let k = Keyed {
        kind: "configmap",
        name,
        items,
        optional,
    };
    let data = f.config_maps.get(name).cloned().flatten();
    keyed(&k, data.as_ref().map(cm_data), m, out)
}

/// The payload of a secret source named `name`.
pub fn secret(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    f: &Fetched,
    m: Modes,
    out: &mut Payload,
) -> Result<(), String> {
    let k = Keyed {
        kind: "secret",
        name,
        items,
        optional,
    };
    let data = f.secrets.get(name).cloned().flatten();
    keyed(&k, data.as_ref().map(secret_data), m, out)
}

/// A label or annotation map as upstream's downward API writes it: sorted `key="value"`
/// lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
        .collect::<String>()
        .trim_end_matches('\n')
        .to_string()
}

/// The payload of downwardAPI `items`.
pub fn downward(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    facts: &Facts,
    m: Modes,
    out: &mut Payload,
) -> Result<(), String> {
    for it in items {
        let value = if let Some(fr) = &it.field_ref {
            match fr.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => crate::pods::env::field_ref(path, pod, facts).map_err(|e| e.0)?,
            }
        } else if let Some(rf) = &it.resource_field_ref {
            let cname = rf.container_name.clone().unwrap_or_default();
            let spec = pod.spec.as_ref();
            let c = spec
                .into_iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == cname)
                .ok_or_else(|| format!("container {cname} not found"))?;
            crate::pods::env::resource_ref(rf, c, facts).map_err(|e| e.0)?
        } else {
            continue;
        };
        let f = FileProjection {
            data: value.into_bytes(),
            mode: mode_of(it.mode, m),
        };
        out.insert(it.path.clone(), f);
    }
    Ok(())
}

/// The token key of a serviceAccountToken source: `(audience, expirationSeconds)`.
pub fn token_key(audience: Option<&str>, expiration: Option<i64>) -> (String, i64) {
    (
        audience.unwrap_or_default().to_string(),
        expiration.unwrap_or(3600),
    )
}

/// The payload of a projected volume.
pub fn projected(
    p: &ProjectedVolumeSource,
    pod: &Pod,
    facts: &Facts,
    f: &Fetched,
    fs_group: Option<i64>,
) -> Result<Payload, String> {
    let m = Modes {
        default_mode: p.default_mode.unwrap_or(DEFAULT_MODE),
        fs_group,
    };
    let mut out = Payload::new();
    for s in p.sources.iter().flatten() {
        if let Some(c) = &s.config_map {
            let opt = c.optional == Some(true);
            config_map(&c.name, c.items.as_deref(), opt, f, m, &mut out)?;
        }
        if let Some(c) = &s.secret {
            let opt = c.optional == Some(true);
            secret(&c.name, c.items.as_deref(), opt, f, m, &mut out)?;
        }
        if let Some(d) = &s.downward_api {
            downward(
                d.items.as_deref().unwrap_or_default(),
                pod,
                facts,
                m,
                &mut out,
            )?;
        }
        if let Some(t) = &s.service_account_token {
            let key = token_key(t.audience.as_deref(), t.expiration_seconds);
            let token = f
                .tokens
                .get(&key)
                .ok_or_else(|| "failed to fetch token".to_string())?;
            let file = FileProjection {
                data: token.clone().into_bytes(),
                mode: mode_of(None, m),
            };
            out.insert(t.path.clone(), file);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned + Default>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn fetched() -> Fetched {
        let mut f = Fetched::default();
        let cm: ConfigMap =
            from(json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}));
        f.config_maps.insert("cfg".into(), Some(cm));
        f.config_maps.insert("gone".into(), None);
        let s: Secret = from(json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}}));
        f.secrets.insert("s".into(), Some(s));
        f.tokens.insert(("".into(), 3607), "tok".into());
        f
    }

    const M: Modes = Modes {
        default_mode: DEFAULT_MODE,
        fs_group: None,
    };

    fn text(p: &Payload, k: &str) -> Option<(String, u32)> {
        p.get(k)
            .map(|f| (String::from_utf8_lossy(&f.data).into_owned(), f.mode))
    }

    #[test]
    fn keys_items_modes_and_optional() {
        let f = fetched();
        let mut p = Payload::new();
        assert_eq!(config_map("cfg", None, false, &f, M, &mut p), Ok(()));
        assert_eq!(text(&p, "a"), Some(("1".into(), 0o644)));
        assert_eq!(text(&p, "b"), Some(("2".into(), 0o644)));

        let items: Vec<KeyToPath> = from(json!([{"key": "a", "path": "x/y", "mode": 0o400}]));
        let mut p = Payload::new();
        assert_eq!(
            config_map("cfg", Some(&items), false, &f, M, &mut p),
            Ok(())
        );
        assert_eq!(p.len(), 1);
        assert_eq!(text(&p, "x/y"), Some(("1".into(), 0o400)));

        let missing: Vec<KeyToPath> = from(json!([{"key": "nope", "path": "n"}]));
        let mut p = Payload::new();
        assert_eq!(
            config_map("cfg", Some(&missing), false, &f, M, &mut p),
            Err("configmap references non-existent config key: nope".into())
        );
        assert_eq!(
            config_map("cfg", Some(&missing), true, &f, M, &mut p),
            Ok(())
        );
        assert_eq!(
            config_map("gone", None, false, &f, M, &mut p),
            Err("configmap \"gone\" not found".into())
        );
        assert_eq!(config_map("gone", None, true, &f, M, &mut p), Ok(()));
        assert!(p.is_empty());
        assert_eq!(
            secret("other", None, false, &f, M, &mut p),
            Err("secret \"other\" not found".into())
        );

        let grouped = Modes {
            default_mode: 0o400,
            fs_group: Some(2000),
        };
        let mut p = Payload::new();
        assert_eq!(secret("s", None, false, &f, grouped, &mut p), Ok(()));
        assert_eq!(text(&p, "pw"), Some(("hunter2".into(), 0o440)));
    }

    #[test]
    fn kube_api_access_projection() {
        let pod: Pod = from(json!({
            "metadata": {"name": "p", "namespace": "ns1", "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }));
        let src: ProjectedVolumeSource = from(json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
                ]}}
            ]
        }));
        let p = projected(&src, &pod, &Facts::default(), &fetched(), None);
        let p = p.unwrap_or_default();
        assert_eq!(text(&p, "token"), Some(("tok".into(), 0o644)));
        assert_eq!(text(&p, "ca.crt"), Some(("1".into(), 0o644)));
        assert_eq!(text(&p, "namespace"), Some(("ns1".into(), 0o644)));
        assert_eq!(
            text(&p, "labels"),
            Some(("a=\"x\\\"y\"\nb=\"2\"".into(), 0o644))
        );
        assert_eq!(text(&p, "mem"), Some(("64".into(), 0o644)));
    }
}
