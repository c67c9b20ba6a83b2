//! Lists with upstream's resourceVersion semantics and pagination: the first page comes from
//! the watch cache, later pages from the store at the first page's revision, so all pages are
//! one consistent snapshot; a continue token whose revision was compacted gets 410 Expired.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::ApiServer;
use crate::cache::{self, CachedObject};
use crate::error::{ApiError, ApiResult};
use crate::handlers::Filter;
use crate::registry::ResourceDef;
use crate::request::Params;

pub struct Page {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

fn encode_token(rev: i64, start: &str) -> String {
    let t = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    URL_SAFE_NO_PAD.encode(t.to_string())
}

fn decode_token(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rev, start))
}

fn parse_rv(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// The list prefix of a resource in a namespace or in all of them.
pub fn prefix(def: &ResourceDef, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if def.namespaced => format!("{}/{ns}/", def.prefix),
        _ => format!("{}/", def.prefix),
    }
}

pub async fn page(
    api: &ApiServer,
    def: &ResourceDef,
    ns: Option<&str>,
    params: &Params,
    filter: &Filter,
) -> ApiResult<Page> {
    let sdef = &api.storage_def(def);
    let prefix = prefix(sdef, ns);
    if let Some(token) = &params.continue_token {
        let (rev, start) = decode_token(token)?;
        return page_from_store(api, &prefix, rev, &start, params.limit, filter).await;
    }
    let rv = params.resource_version.as_deref();
    let exact = params.resource_version_match.as_deref() == Some("Exact");
    match rv {
        None => {
            api.cache.sync().await?;
        }
        Some("0") if !exact => {}
        Some(rv) => {
            let rev = parse_rv(rv)?;
            if exact && rev != api.cache.revision() {
                return page_from_store(api, &prefix, rev, "", params.limit, filter).await;
            }
            api.cache.wait_for(rev).await?;
        }
    }
    let (snapshot, revision) = api.cache.snapshot();
    let mut items = Vec::new();
    let mut iter = cache::range(&snapshot, &prefix, None).filter(|o| filter.matches(o));
    let limit = if params.limit == 0 {
        usize::MAX
    } else {
        params.limit
    };
    for obj in iter.by_ref() {
        items.push(obj.clone());
        if items.len() >= limit {
            break;
        }
    }
    let mut continue_token = None;
    let mut remaining = None;
    if items.len() >= limit {
        let rest = iter.count();
        if rest > 0 {
            let last = items.last().map(|o| o.key.clone()).unwrap_or_default();
            continue_token = Some(encode_token(revision, &last));
            if params.label_selector.is_none() && params.field_selector.is_none() {
                remaining = Some(rest as i64);
            }
        }
    }
    Ok(Page {
        items,
        revision,
        continue_token,
        remaining,
    })
}

async fn page_from_store(
    api: &ApiServer,
    prefix: &str,
    revision: i64,
    start: &str,
    limit: usize,
    filter: &Filter,
) -> ApiResult<Page> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let mut items = Vec::new();
    let mut after = (!start.is_empty()).then(|| start.to_string());
    loop {
        let batch = limit.saturating_sub(items.len()).clamp(1, 1000);
        let range = match api
            .store
            .range(prefix, after.as_deref(), batch, Some(revision))
            .await
        {
            Ok(r) => r,
            Err(k8rs_store::Error::Compacted { .. }) => {
                return Err(ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                ));
            }
            Err(k8rs_store::Error::FutureRevision(r)) => {
                return Err(ApiError::Timeout(format!(
                    "Timeout: Too large resource version: {r}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        for kv in &range.kvs {
            after = Some(kv.key.clone());
            let Some(obj) =
                CachedObject::decode(api.cache.registry(), &kv.key, &kv.value, kv.mod_revision)
            else {
                continue;
            };
            if filter.matches(&obj) {
                items.push(Arc::new(obj));
            }
        }
        if !range.more {
            return Ok(Page {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        }
        if items.len() >= limit {
            let last = after.unwrap_or_default();
            return Ok(Page {
                items,
                revision,
                continue_token: Some(encode_token(revision, &last)),
                remaining: None,
            });
        }
    }
}
