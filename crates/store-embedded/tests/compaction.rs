//! Compaction specific to the embedded store: automatic compaction keeps the file bounded, and
//! a watcher that lags past a compaction ends with `Compacted` instead of missing changes.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8rs_store::{Error, Store};
use k8rs_store_embedded::{AutoCompact, EmbeddedStore, Options};

const WRITERS: usize = 32;
const VALUE_LEN: usize = 2048;

/// Rewrites the same few keys (one per writer) `rounds` times in all, from concurrent writers.
async fn churn(store: &EmbeddedStore, rounds: usize) {
    let value = Bytes::from(vec![b'x'; VALUE_LEN]);
    let writers = (0..WRITERS).map(|writer| {
        let value = value.clone();
        async move {
            let key = format!("/churn/{writer}");
            for _ in 0..rounds / WRITERS {
                match store.get(&key).await.expect("get") {
                    None => store.create(&key, value.clone()).await.expect("create"),
                    Some(kv) => store
                        .update(&key, value.clone(), kv.mod_revision)
                        .await
                        .expect("update"),
                };
            }
        }
    });
    futures::future::join_all(writers).await;
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("store file").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let options = Options {
        auto_compact: Some(AutoCompact {
            interval: Duration::from_millis(20),
            retain_revisions: 200,
        }),
        ..Options::default()
    };
    let store = EmbeddedStore::open(&path, options).expect("open");
    churn(&store, 3_000).await;
    let warm = file_len(&path);
    churn(&store, 12_000).await;
    let after = file_len(&path);
    let revision = store.current_revision().await.expect("revision");
    let compacted = store.compacted_revision().await.expect("compacted");
    eprintln!("file: {warm} bytes after warm-up, {after} bytes after {revision} revisions");
    assert!(revision > 14_000, "the churn wrote too little: {revision}");
    assert!(
        compacted > revision - 2_000,
        "auto compaction lags: {compacted} of {revision}"
    );
    // Without compaction the file reaches ~140 MB here (~2 values of history per revision).
    assert!(
        after <= warm.max(1 << 20) * 2,
        "file grew from {warm} to {after} bytes"
    );
    assert!(after < 16 << 20, "file is {after} bytes for {WRITERS} keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_purges_in_chunks_without_losing_current_values() {
    let options = Options {
        compaction_chunk: 7,
        ..Options::default()
    };
    let store = EmbeddedStore::in_memory_with(options).expect("open");
    churn(&store, 640).await;
    let current = store.current_revision().await.expect("revision");
    let before = store.range("/churn/", None, 0, None).await.expect("range");
    store.compact(current - 1).await.expect("compact");
    let after = store.range("/churn/", None, 0, None).await.expect("range");
    assert_eq!(after.kvs, before.kvs);
    assert!(matches!(
        store.range("/churn/", None, 0, Some(current - 1)).await,
        Err(Error::Compacted { .. })
    ));
    let last = store
        .range("/churn/", None, 0, Some(current))
        .await
        .expect("range at current");
    assert_eq!(last.kvs, before.kvs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_past_a_compaction_gets_compacted() {
    let options = Options {
        watch_buffer: 1,
        ..Options::default()
    };
    let store = EmbeddedStore::in_memory_with(options).expect("open");
    let mut stream = store.watch("/", 0).await.expect("watch");
    let first = store
        .create("/lag/first", Bytes::new())
        .await
        .expect("create");
    let event = stream.next().await.expect("open").expect("event");
    assert_eq!(event.revision(), first.mod_revision);
    for i in 0..20 {
        store
            .create(&format!("/lag/{i}"), Bytes::new())
            .await
            .expect("create");
    }
    let current = store.current_revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    // The watcher may still hold the last live batch; after it comes the error.
    loop {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("item in time")
            .expect("stream open");
        match item {
            Ok(event) => assert_eq!(event.revision(), current, "only the buffered batch"),
            Err(Error::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!((requested, compacted), (first.mod_revision + 1, current));
                break;
            }
            Err(other) => panic!("expected Compacted, got {other}"),
        }
    }
    assert!(
        stream.next().await.is_none(),
        "the stream ends after its error"
    );
}
