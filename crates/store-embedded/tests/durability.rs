//! Durability: acknowledged writes survive `kill -9` of the process, and a store reopened after
//! a clean close continues where it stopped.
//!
//! The crash test re-runs this test binary as a child (`crash_child`, selected by an environment
//! variable) that writes continuously and prints every acknowledged write; the parent kills it
//! with SIGKILL at a random moment, reopens the file and checks every printed write.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use k8rs_store::{Event, Revision, Store};
use k8rs_store_embedded::{EmbeddedStore, Options};
use rand::Rng;

/// Set (to the store path) only in the child process.
const CHILD_PATH_ENV: &str = "K8RS_STORE_EMBEDDED_CRASH_CHILD";
/// Which run the child is, so that its keys differ from earlier runs'.
const CHILD_RUN_ENV: &str = "K8RS_STORE_EMBEDDED_CRASH_RUN";
const CHILD_WRITERS: usize = 8;
/// The child stops by itself after this long, should the parent fail to kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// The value written for a key: its length varies, its bytes are checkable.
fn value_for(key: &str, i: usize) -> Bytes {
    Bytes::from(key.repeat(1 + i % 64))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The child's body; a no-op unless run by `acknowledged_writes_survive_sigkill`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_PATH_ENV) else {
        return;
    };
    let run: usize = std::env::var(CHILD_RUN_ENV)
        .ok()
        .and_then(|run| run.parse().ok())
        .expect("run number");
    runtime().block_on(write_until_killed(Path::new(&path), run));
}

async fn write_until_killed(path: &Path, run: usize) {
    let store = Arc::new(EmbeddedStore::open(path, Options::default()).expect("store opens"));
    let deadline = Instant::now() + CHILD_LIFETIME;
    let writers = (0..CHILD_WRITERS).map(|writer| {
        let store = store.clone();
        tokio::spawn(async move {
            let counter = format!("/counter/{writer}");
            let mut i = 0;
            while Instant::now() < deadline {
                let key = format!("/crash/{run}/{writer}/{i}");
                let kv = store
                    .create(&key, value_for(&key, i))
                    .await
                    .expect("create");
                println!("ACK {} {key} {i}", kv.mod_revision);
                if i % 4 == 0 {
                    let revision = bump_counter(&store, &counter, &format!("{run}:{i}")).await;
                    println!("COUNTER {revision} {counter} {run}:{i}");
                }
                i += 1;
            }
        })
    });
    futures::future::join_all(writers).await;
}

async fn bump_counter(store: &EmbeddedStore, key: &str, value: &str) -> Revision {
    let value = Bytes::copy_from_slice(value.as_bytes());
    match store.get(key).await.expect("get counter") {
        None => {
            store
                .create(key, value)
                .await
                .expect("create counter")
                .mod_revision
        }
        Some(kv) => {
            store
                .update(key, value, kv.mod_revision)
                .await
                .expect("update counter")
                .mod_revision
        }
    }
}

/// What the parent saw acknowledged.
#[derive(Default)]
struct Acked {
    /// Revision -> (key, i) of every acknowledged create.
    creates: BTreeMap<Revision, (String, usize)>,
    /// Counter key -> (revision, value) of its last acknowledged update.
    counters: BTreeMap<String, (Revision, String)>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (kind, revision, key, value) = match fields.as_slice() {
            [kind, revision, key, value] => (*kind, *revision, *key, *value),
            _ => return,
        };
        let Ok(revision) = revision.parse::<Revision>() else {
            return;
        };
        match kind {
            "ACK" => {
                let i = value.parse().expect("write index");
                self.creates.insert(revision, (key.to_owned(), i));
            }
            "COUNTER" => {
                self.counters
                    .insert(key.to_owned(), (revision, value.to_owned()));
            }
            _ => {}
        }
    }

    fn max_revision(&self) -> Revision {
        let counters = self.counters.values().map(|(revision, _)| *revision);
        self.creates
            .keys()
            .copied()
            .chain(counters)
            .max()
            .unwrap_or(1)
    }
}

/// Runs one child, kills it after a random delay, and records what it acknowledged.
fn run_child_and_kill(path: &Path, run: usize, acked: &mut Acked) {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_PATH_ENV, path)
        .env(CHILD_RUN_ENV, run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the first acknowledgement, then let it write for a random while.
    let first = lines_rx.recv_timeout(Duration::from_secs(30));
    let Ok(first) = first else {
        let _ = child.kill();
        panic!("child acknowledged nothing in time");
    };
    acked.record(&first);
    std::thread::sleep(Duration::from_millis(rand::rng().random_range(20..400)));
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("child exit status");
    assert!(
        !status.success(),
        "the child must have been killed, not finished: {status}"
    );
    reader.join().expect("stdout reader");
    for line in lines_rx.try_iter() {
        acked.record(&line);
    }
}

/// Checks every acknowledged write after a crash, and that the store continues.
async fn verify_after_crash(path: &Path, acked: &Acked) {
    let store = EmbeddedStore::open(path, Options::default()).expect("store reopens after SIGKILL");
    let current = store.current_revision().await.expect("current revision");
    assert!(
        current >= acked.max_revision(),
        "lost acknowledged revisions: {current} < {}",
        acked.max_revision()
    );

    // Every acknowledged create is at its revision in the history, and still readable.
    let mut history = store
        .watch("/crash/", 2)
        .await
        .expect("watch the whole history");
    let mut seen = BTreeMap::new();
    let mut next = 2;
    while next <= current {
        let event = tokio::time::timeout(Duration::from_secs(10), history.next())
            .await
            .expect("history replays in time")
            .expect("history stream open")
            .expect("history readable");
        next = event.revision() + 1;
        seen.insert(event.revision(), event);
        if seen.len() >= acked.creates.len() && acked.creates.keys().all(|r| seen.contains_key(r)) {
            break;
        }
    }
    for (revision, (key, i)) in &acked.creates {
        match seen.get(revision) {
            Some(Event::Put { kv, prev: None }) => {
                assert_eq!(&kv.key, key, "revision {revision}");
                assert_eq!(kv.value, value_for(key, *i), "value of {key}");
            }
            other => panic!("acknowledged create of {key} at {revision} missing: {other:?}"),
        }
        let stored = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(stored.mod_revision, *revision);
        assert_eq!(stored.value, value_for(key, *i), "value of {key}");
    }
    for (key, (revision, value)) in &acked.counters {
        let stored = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{key} lost"));
        assert!(
            stored.mod_revision >= *revision,
            "{key} went back before {revision}"
        );
        if stored.mod_revision == *revision {
            assert_eq!(stored.value, Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    // Every committed value, acknowledged or not, is whole.
    let all = store.range("/crash/", None, 0, None).await.expect("range");
    for kv in &all.kvs {
        let i: usize = kv
            .key
            .rsplit('/')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("index");
        assert_eq!(
            kv.value,
            value_for(&kv.key, i),
            "torn value under {}",
            kv.key
        );
    }
    let next = store
        .create("/after-crash", Bytes::from_static(b"x"))
        .await
        .expect("writes continue");
    assert_eq!(
        next.mod_revision,
        current + 1,
        "revisions continue after the crash"
    );
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let runtime = runtime();
    for run in 0..3 {
        let mut acked = Acked::default();
        run_child_and_kill(&path, run, &mut acked);
        assert!(
            !acked.creates.is_empty(),
            "run {run}: no write was acknowledged"
        );
        eprintln!(
            "run {run}: {} creates and {} counters acknowledged before SIGKILL, up to revision {}",
            acked.creates.len(),
            acked.counters.len(),
            acked.max_revision()
        );
        runtime.block_on(verify_after_crash(&path, &acked));
        // Keep the post-crash write out of the next run's view of the prefix.
        runtime.block_on(async {
            let store = EmbeddedStore::open(&path, Options::default()).expect("reopen");
            store
                .delete("/after-crash", None)
                .await
                .expect("delete marker");
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_revisions_and_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let (a1, a2, b) = {
        let store = EmbeddedStore::open(&path, Options::default()).expect("open");
        let a1 = store
            .create("/r/a", Bytes::from_static(b"1"))
            .await
            .expect("create");
        let a2 = store
            .update("/r/a", Bytes::from_static(b"2"), a1.mod_revision)
            .await
            .expect("update");
        let b = store
            .create("/r/b", Bytes::from_static(b"1"))
            .await
            .expect("create");
        store.compact(a1.mod_revision).await.expect("compact");
        (a1, a2, b)
    };
    let store = EmbeddedStore::open(&path, Options::default()).expect("reopen");
    assert_eq!(
        store.current_revision().await.expect("revision"),
        b.mod_revision
    );
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        a1.mod_revision
    );
    assert_eq!(store.get("/r/a").await.expect("get"), Some(a2.clone()));

    let mut stream = store
        .watch("/r/", a2.mod_revision)
        .await
        .expect("watch from before the restart");
    let c = store
        .create("/r/c", Bytes::from_static(b"1"))
        .await
        .expect("create after restart");
    assert_eq!(c.mod_revision, b.mod_revision + 1, "revisions continue");
    let expected = [
        Event::Put {
            kv: a2.clone(),
            prev: Some(a1.clone()),
        },
        Event::Put { kv: b, prev: None },
        Event::Put { kv: c, prev: None },
    ];
    for want in expected {
        let got = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        assert_eq!(got, want);
    }
    let past = store
        .range("/r/", None, 0, Some(a2.mod_revision))
        .await
        .expect("past read");
    assert_eq!(past.kvs, vec![a2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_end_when_the_store_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path, Options::default()).expect("open");
    let mut stream = store.watch("/", 0).await.expect("watch");
    drop(store);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("stream ends");
    assert!(end.is_none(), "expected the end of the stream, got {end:?}");
    EmbeddedStore::open(&path, Options::default()).expect("the file is free again");
}
