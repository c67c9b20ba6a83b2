//! Watch streams: newline-delimited JSON `WatchEvent`s from the watch cache, with upstream's
//! resourceVersion semantics, selector transitions (an object that stops matching is DELETED
//! for the watcher), bookmarks, streaming lists (`sendInitialEvents`) and timeouts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::ApiServer;
use crate::cache::{CacheEvent, CachedObject, EventType};
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Filter, served_value};
use crate::registry::Def;
use crate::request::{Output, Params, RequestInfo};
use crate::table;

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Who receives the events of one watch, and in what form.
struct Watcher {
    api: Arc<ApiServer>,
    def: Def,
    prefix: String,
    name: Option<String>,
    filter: Filter,
    output: Output,
    include_object: Option<String>,
    tx: mpsc::Sender<Bytes>,
}

pub async fn serve(
    api: Arc<ApiServer>,
    def: Def,
    info: &RequestInfo,
    params: Params,
    output: Output,
) -> ApiResult<Response> {
    let sdef = &api.storage_def(&def);
    let filter = Filter::new(sdef, &params)?;
    let ns = info.namespace.as_deref();
    let prefix = crate::list::prefix(sdef, ns);
    let initial_events = params.send_initial_events == Some(true);
    if initial_events && params.resource_version_match.as_deref() != Some("NotOlderThan") {
        return Err(ApiError::UnprocessableEntity {
            message: "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
        });
    }
    let rv = params.resource_version.clone();
    let legacy_initial =
        matches!(rv.as_deref(), None | Some("0")) && params.send_initial_events.is_none();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (api_version, kind) = def.types();
    let output = match output {
        Output::Protobuf if !api.codec.knows(api_version, kind) => Output::Json,
        other => other,
    };
    let watcher = Watcher {
        api: api.clone(),
        def,
        prefix,
        name: info.name.clone(),
        filter,
        output,
        include_object: params.include_object.clone(),
        tx,
    };
    if rv.is_none() {
        api.cache.sync().await?;
    }
    let start = match rv.as_deref() {
        Some(rv) if rv != "0" => {
            let rev = rv
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?;
            if initial_events {
                api.cache.wait_for(rev).await?;
                Start::Initial { bookmark: true }
            } else {
                Start::From(rev)
            }
        }
        _ if initial_events => Start::Initial { bookmark: true },
        _ if legacy_initial => Start::Initial { bookmark: false },
        _ => Start::Now,
    };
    let timeout = params
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs(1800 + rand::random_range(0..1800)));
    let bookmarks = params.allow_bookmarks;
    tokio::spawn(async move { watcher.run(start, timeout, bookmarks).await });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let content_type = if output == Output::Protobuf {
        k8rs_protobuf::WATCH_MEDIA_TYPE
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

enum Start {
    /// Every existing object as ADDED, then changes (and, for streaming lists, a bookmark
    /// marking the end of the initial events).
    Initial { bookmark: bool },
    /// Changes after this revision.
    From(i64),
    /// Changes from now on.
    Now,
}

impl Watcher {
    async fn run(self, start: Start, timeout: Duration, bookmarks: bool) {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let (mut live, mut revision) = match self.begin(start).await {
            Some(x) => x,
            None => return,
        };
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let rev = self.api.cache.revision().max(revision);
                    if !self.send_bookmark(rev, false).await {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.revision <= revision {
                            continue;
                        }
                        revision = ev.revision;
                        if !self.send_event(&ev).await {
                            return;
                        }
                    }
                    // Too slow, or the cache re-listed: the client re-watches.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    async fn begin(&self, start: Start) -> Option<(broadcast::Receiver<Arc<CacheEvent>>, i64)> {
        match start {
            Start::Initial { bookmark } => {
                let (snapshot, revision, live) = self.api.cache.snapshot_and_subscribe();
                for obj in crate::cache::range(&snapshot, &self.prefix, None) {
                    if self.selects(obj) && !self.send(EventType::Added, obj).await {
                        return None;
                    }
                }
                if bookmark && !self.send_bookmark(revision, true).await {
                    return None;
                }
                Some((live, revision))
            }
            Start::From(rev) => match self.api.cache.watch(&self.prefix, Some(rev)) {
                Ok(w) => {
                    for ev in &w.backlog {
                        if !self.send_event(ev).await {
                            return None;
                        }
                    }
                    Some((w.live, w.revision.max(rev)))
                }
                Err(err) => {
                    let _ = self.tx.send(self.frame("ERROR", &err.to_status())).await;
                    None
                }
            },
            Start::Now => match self.api.cache.watch(&self.prefix, None) {
                Ok(w) => Some((w.live, w.revision)),
                Err(_) => None,
            },
        }
    }

    fn in_scope(&self, obj: &CachedObject) -> bool {
        obj.key.starts_with(&self.prefix) && self.name.as_deref().is_none_or(|n| obj.name == n)
    }

    fn selects(&self, obj: &CachedObject) -> bool {
        self.in_scope(obj) && self.filter.matches(obj)
    }

    async fn send_event(&self, ev: &CacheEvent) -> bool {
        if !self.in_scope(&ev.obj) {
            return true;
        }
        let now = self.filter.matches(&ev.obj);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match (ev.kind, before, now) {
            (EventType::Deleted, true, _) | (EventType::Deleted, _, true) => EventType::Deleted,
            (EventType::Deleted, false, false) => return true,
            (_, true, true) => EventType::Modified,
            (_, false, true) => EventType::Added,
            (_, true, false) => EventType::Deleted,
            (_, false, false) => return true,
        };
        self.send(kind, &ev.obj).await
    }

    async fn send(&self, kind: EventType, obj: &CachedObject) -> bool {
        let line = match self.output {
            Output::Table => {
                let v = served_value(&self.def, obj);
                let t = table::table(
                    &self.def,
                    std::iter::once(v),
                    None,
                    "",
                    self.include_object.as_deref(),
                );
                line_bytes(&json!({"type": kind.as_str(), "object": t}))
            }
            Output::PartialMetadata => {
                let v = table::partial(&served_value(&self.def, obj));
                line_bytes(&json!({"type": kind.as_str(), "object": v}))
            }
            Output::Protobuf => self.frame(kind.as_str(), &served_value(&self.def, obj)),
            _ if self.def.converts() => {
                let v = served_value(&self.def, obj);
                line_bytes(&json!({"type": kind.as_str(), "object": v}))
            }
            _ => {
                let mut out = Vec::with_capacity(obj.json.len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_str().as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(&obj.json);
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            }
        };
        self.tx.send(line).await.is_ok()
    }

    async fn send_bookmark(&self, revision: i64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.def.kind,
            "apiVersion": self.def.api_version(),
            "metadata": meta,
        });
        self.tx.send(self.frame("BOOKMARK", &object)).await.is_ok()
    }

    /// One event in the stream's encoding: a JSON line, or a length-prefixed protobuf frame.
    fn frame(&self, event_type: &str, object: &Value) -> Bytes {
        if self.output == Output::Protobuf {
            match self.api.codec.encode_watch_event(event_type, object) {
                Ok(frame) => return Bytes::from(frame),
                Err(err) => tracing::warn!(%err, "encoding a watch event as protobuf failed"),
            }
        }
        line_bytes(&json!({"type": event_type, "object": object}))
    }
}

fn line_bytes(v: &Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}
