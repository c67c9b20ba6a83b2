//! etcd-specific behaviour beyond the conformance suite: prefixes, compaction coordination
//! between API servers, bookkeeping keys, and what callers see when etcd is gone.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8rs_store::{Error, Store};
use k8rs_store_etcd::testing::{EtcdProcess, fresh_store};
use k8rs_store_etcd::{EtcdConfig, EtcdStore};

async fn connect(config: EtcdConfig) -> EtcdStore {
    EtcdStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn prefixed(etcd: &EtcdProcess, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        prefix: Some(prefix.to_owned()),
        ..etcd.config()
    }
}

async fn raw_client(etcd: &EtcdProcess) -> etcd_client::Client {
    let client = etcd_client::Client::connect([etcd.endpoint()], None).await;
    client.unwrap_or_else(|e| panic!("raw client: {e}"))
}

#[tokio::test]
async fn prefixes_keep_clusters_apart() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let one = connect(prefixed(&etcd, "/one")).await;
    let two = connect(prefixed(&etcd, "/two")).await;
    let mut watch_two = two
        .watch("/", 0)
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"));
    let a = one
        .create("/a", Bytes::from_static(b"1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.key, "/a", "keys come back without the prefix");
    assert_eq!(two.get("/a").await.ok(), Some(None));
    assert_eq!(two.count("").await.ok(), Some(0));
    let b = two
        .create("/a", Bytes::from_static(b"2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.mod_revision,
        a.mod_revision + 1,
        "one etcd, one revision sequence"
    );
    let range = one
        .range("", None, 0, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(range.kvs, vec![a]);
    let event = tokio::time::timeout(Duration::from_secs(5), watch_two.next()).await;
    match event {
        Ok(Some(Ok(event))) => assert_eq!(event.key(), "/a"),
        other => panic!("expected two's create, got {other:?}"),
    }

    let mut raw = raw_client(&etcd).await;
    let stored = raw
        .get("/one/a", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.kvs().first().map(|kv| kv.value()), Some(&b"1"[..]));
}

#[tokio::test]
async fn api_servers_sharing_etcd_compact_once() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = connect(etcd.config()).await;
    let second = connect(etcd.config()).await;
    let mut kv = first
        .create("/k", Bytes::from_static(b"0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 1..4u8 {
        let value = Bytes::from(vec![i]);
        kv = first
            .update("/k", value, kv.mod_revision)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let target = kv.mod_revision - 1;
    first
        .compact(target)
        .await
        .unwrap_or_else(|e| panic!("compact: {e}"));
    assert!(matches!(
        second.compact(target).await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(second.compacted_revision().await.ok(), Some(target));

    let mut raw = raw_client(&etcd).await;
    let record = raw
        .get(&b"\xffcompact_rev_key"[..], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = record
        .kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.version()));
    assert_eq!(
        record,
        Some((target.to_string().into_bytes(), 1)),
        "one compaction recorded"
    );
    let past = raw
        .get(
            "/k",
            Some(etcd_client::GetOptions::new().with_revision(target - 1)),
        )
        .await;
    assert!(past.is_err(), "etcd itself compacted");
}

#[tokio::test]
async fn the_compaction_record_is_invisible_without_a_prefix() {
    let (store, _etcd) = fresh_store().await;
    let mut everything = store
        .watch("", 0)
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"));
    let kv = store
        .create("a", Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .compact(kv.mod_revision)
        .await
        .unwrap_or_else(|e| panic!("compact: {e}"));
    let later = store
        .create("b", Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let range = store
        .range("", None, 0, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(store.count("").await.ok(), Some(2));
    for expected in [&kv, &later] {
        match tokio::time::timeout(Duration::from_secs(5), everything.next()).await {
            Ok(Some(Ok(event))) => assert_eq!(event.key(), expected.key),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn requests_fail_as_backend_errors_when_etcd_is_gone() {
    let (store, mut etcd) = fresh_store().await;
    let mut watch = store
        .watch("/", 0)
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"));
    etcd.kill();
    let started = std::time::Instant::now();
    assert!(matches!(store.get("/x").await, Err(Error::Backend(_))));
    let create = store.create("/x", Bytes::new()).await;
    assert!(matches!(create, Err(Error::Backend(_))), "{create:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    match tokio::time::timeout(Duration::from_secs(60), watch.next()).await {
        Ok(Some(Err(Error::Backend(_)))) => {}
        other => panic!("the watch should end with a backend error, got {other:?}"),
    }
    assert!(
        watch.next().await.is_none(),
        "the stream ends after its error"
    );
}

#[tokio::test]
async fn connecting_to_nothing_fails_quickly_and_names_the_endpoint() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = etcd.config();
    drop(etcd);
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(config.clone())
        .await
        .err()
        .map(|e| e.to_string());
    let err = err.unwrap_or_else(|| panic!("connected to a dead etcd"));
    assert!(err.contains(&config.endpoints[0]), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
