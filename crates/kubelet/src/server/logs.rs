//! Container logs as upstream's kubelet serves them: CRI log files (`<RFC3339Nano> <stream>
//! <P|F> <message>` per line, `P` for a partial line continued on the next) read with
//! `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps` and `limitBytes`, and followed as they
//! grow, across rotation and on into the next restart's file.
//!
//! Parsing and filtering are pure ([`parse_line`], [`LogFilter`], [`tail_start`]); the file
//! reading is in [`stream_log`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::cri::{ContainerState, Cri, labels};

/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a followed container is checked for having exited.
const FOLLOW_CHECK: Duration = Duration::from_secs(1);

/// The query parameters of `/containerLogs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?}")),
    }
}

fn number(name: &str, v: &str) -> Result<i64, String> {
    v.parse()
        .map_err(|_| format!("invalid value {v:?} for {name}"))
}

impl LogOptions {
    /// Parses a query string; `sinceSeconds` is counted back from `now`.
    pub fn from_query(query: &str, now: DateTime<Utc>) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "follow" => o.follow = flag(&v)?,
                "previous" => o.previous = flag(&v)?,
                "timestamps" => o.timestamps = flag(&v)?,
                "tailLines" => {
                    let n = number("tailLines", &v)?;
                    o.tail_lines = Some(u64::try_from(n).map_err(|_| "tailLines must be >= 0")?);
                }
                "limitBytes" => {
                    let n = number("limitBytes", &v)?;
                    o.limit_bytes = Some(
                        u64::try_from(n)
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or("limitBytes must be greater than zero")?,
                    );
                }
                "sinceSeconds" => {
                    let n = number("sinceSeconds", &v)?;
                    if n < 1 {
                        return Err("sinceSeconds must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(&v)
                        .map_err(|_| format!("invalid value {v:?} for sinceTime"))?;
                    since_time = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        o.since = since_time.or_else(|| {
            since_seconds.map(|s| now - chrono::Duration::seconds(s.min(i64::MAX / 1000)))
        });
        Ok(o)
    }
}

/// The decoded `key=value` pairs of a query string.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed CRI log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: DateTime<FixedOffset>,
    pub time_text: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub message: &'a [u8],
}

/// Parses one line (without its newline); `None` when it is not in the CRI format.
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time_text = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let message = parts.next().unwrap_or_default();
    let time = DateTime::parse_from_rfc3339(time_text).ok()?;
    Some(LogLine {
        time,
        time_text,
        stream,
        partial: tag.split(|b| *b == b':').next() == Some(b"P"),
        message,
    })
}

/// Turns parsed lines into the bytes a client gets, applying `since`, `timestamps` and
/// `limitBytes`.
#[derive(Clone, Debug)]
pub struct LogFilter {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    remaining: Option<u64>,
}

impl LogFilter {
    pub fn new(o: &LogOptions) -> LogFilter {
        LogFilter {
            since: o.since,
            timestamps: o.timestamps,
            remaining: o.limit_bytes,
        }
    }

    /// Whether `limitBytes` has been reached: nothing more is to be sent.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The output of one raw line (appended to `out`); lines not in the CRI format are
    /// skipped.
    pub fn push(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if self.done() {
            return;
        }
        let Some(line) = parse_line(raw) else {
            return;
        };
        if self
            .since
            .is_some_and(|s| line.time.with_timezone(&Utc) < s)
        {
            return;
        }
        let mut text = Vec::with_capacity(line.message.len() + 40);
        if self.timestamps {
            text.extend_from_slice(line.time_text.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(line.message);
        if !line.partial {
            text.push(b'\n');
        }
        if let Some(left) = self.remaining.as_mut() {
            let take = usize::try_from(*left).unwrap_or(usize::MAX).min(text.len());
            text.truncate(take);
            *left -= take as u64;
        }
        out.extend_from_slice(&text);
    }

    /// The output of every complete line of `content` (a trailing unterminated line is
    /// ignored); returns how many bytes of `content` were consumed.
    pub fn push_all(&mut self, content: &[u8], out: &mut Vec<u8>) -> usize {
        let mut consumed = 0;
        while let Some(nl) = content[consumed..].iter().position(|b| *b == b'\n') {
            self.push(&content[consumed..consumed + nl], out);
            consumed += nl + 1;
        }
        consumed
    }
}

/// The offset in `content` where its last `n` complete lines begin.
pub fn tail_start(content: &[u8], n: u64) -> usize {
    if n == 0 {
        return content.len();
    }
    let mut seen = 0;
    let end = content.len();
    // A trailing newline ends the last line; it does not start another.
    let search_end = if content.ends_with(b"\n") {
        end - 1
    } else {
        end
    };
    for i in (0..search_end).rev() {
        if content[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Why a container's log cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// No such container (or no previous one): the client's mistake, 404/400.
    #[error("{0}")]
    NotFound(String),
    /// The runtime failed; retry.
    #[error("{0}")]
    Runtime(String),
}

/// One container instance whose log is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub container_id: String,
    pub created_at: i64,
    pub path: PathBuf,
}

/// The instances of container `name` in pod `ns/pod`, newest first.
async fn instances(
    cri: &dyn Cri,
    ns: &str,
    pod: &str,
    name: &str,
) -> Result<Vec<crate::cri::Container>, LogError> {
    let filter = [
        (labels::POD_NAMESPACE, ns),
        (labels::POD_NAME, pod),
        (labels::CONTAINER_NAME, name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut found = cri
        .list_containers(filter)
        .await
        .map_err(|e| LogError::Runtime(e.message()))?;
    found.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(found)
}

/// The log of the current (or, with `previous`, the previous) instance of a container.
pub async fn find_target(
    cri: &dyn Cri,
    ns: &str,
    pod: &str,
    name: &str,
    previous: bool,
) -> Result<LogTarget, LogError> {
    let found = instances(cri, ns, pod, name).await?;
    let chosen = if previous {
        found.get(1)
    } else {
        found.first()
    };
    let Some(c) = chosen else {
        return Err(LogError::NotFound(if previous {
            format!("previous terminated container \"{name}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{name}\" in pod \"{pod}\" is not available")
        }));
    };
    let status = cri
        .container_status(&c.id)
        .await
        .map_err(|e| LogError::Runtime(e.message()))?;
    Ok(LogTarget {
        container_id: c.id.clone(),
        created_at: c.created_at,
        path: PathBuf::from(status.log_path),
    })
}

/// Where a followed log goes next once its container has exited: the next instance's log,
/// if one was created.
async fn next_target(
    cri: &dyn Cri,
    ns: &str,
    pod: &str,
    name: &str,
    after: &LogTarget,
) -> Option<LogTarget> {
    let found = instances(cri, ns, pod, name).await.ok()?;
    let next = found
        .iter()
        .filter(|c| c.created_at > after.created_at)
        .min_by_key(|c| c.created_at)?;
    let status = cri.container_status(&next.id).await.ok()?;
    Some(LogTarget {
        container_id: next.id.clone(),
        created_at: next.created_at,
        path: PathBuf::from(status.log_path),
    })
}

async fn running(cri: &dyn Cri, id: &str) -> bool {
    match cri.container_status(id).await {
        Ok(s) => {
            s.state == ContainerState::ContainerRunning as i32
                || s.state == ContainerState::ContainerCreated as i32
        }
        Err(_) => false,
    }
}

/// What a log stream is about.
#[derive(Clone)]
pub struct LogRequest {
    pub cri: Arc<dyn Cri>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub options: LogOptions,
}

/// Sends the log of `target` as `req.options` ask, chunk by chunk, until done (or, when
/// following, until the container exited with no next instance, or the receiver is gone).
pub async fn stream_log(req: LogRequest, target: LogTarget, tx: mpsc::Sender<Bytes>) {
    let mut filter = LogFilter::new(&req.options);
    let content = tokio::fs::read(&target.path).await.unwrap_or_default();
    let start = req
        .options
        .tail_lines
        .map_or(0, |n| tail_start(&content, n));
    let mut out = Vec::new();
    let consumed = start + filter.push_all(&content[start..], &mut out);
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return;
    }
    if !req.options.follow || filter.done() {
        return;
    }
    follow(req, target, consumed as u64, filter, tx).await;
}

/// Follows `target` from `offset` on.
async fn follow(
    req: LogRequest,
    mut target: LogTarget,
    offset: u64,
    mut filter: LogFilter,
    tx: mpsc::Sender<Bytes>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut file = open_at(&target.path, offset).await;
    let mut last_check = tokio::time::Instant::now();
    loop {
        let mut chunk = Vec::new();
        if let Some(f) = file.as_mut() {
            let _ = f.read_to_end(&mut chunk).await;
        }
        if !chunk.is_empty() {
            pending.extend_from_slice(&chunk);
            let mut out = Vec::new();
            let used = filter.push_all(&pending, &mut out);
            pending.drain(..used);
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            if filter.done() {
                return;
            }
            continue;
        }
        if rotated(&target.path, file.as_ref()).await {
            file = open_at(&target.path, 0).await;
            pending.clear();
            continue;
        }
        if last_check.elapsed() >= FOLLOW_CHECK {
            last_check = tokio::time::Instant::now();
            if !running(req.cri.as_ref(), &target.container_id).await {
                let cri = req.cri.as_ref();
                match next_target(cri, &req.namespace, &req.pod, &req.container, &target).await {
                    Some(next) => {
                        target = next;
                        file = open_at(&target.path, 0).await;
                        pending.clear();
                        continue;
                    }
                    None => return,
                }
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

async fn open_at(path: &std::path::Path, offset: u64) -> Option<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await.ok()?;
    f.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    Some(f)
}

/// Whether the file at `path` is no longer the one open (renamed away by rotation, or it
/// appeared since).
async fn rotated(path: &std::path::Path, open: Option<&tokio::fs::File>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(now) = tokio::fs::metadata(path).await else {
        return false;
    };
    let Some(f) = open else {
        return true;
    };
    match f.metadata().await {
        Ok(m) => m.ino() != now.ino() || m.dev() != now.dev(),
        Err(_) => true,
    }
}
