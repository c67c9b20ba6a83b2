//! The conformance suite: the [`Store`] contract as etcd v3 behaves, one case per function.
//!
//! A backend runs it from a test module with [`conformance_suite!`](crate::conformance_suite),
//! which expands into one `#[tokio::test]` per case, each given a fresh, empty store:
//!
//! ```ignore
//! mod conformance {
//!     k8rs_store::conformance_suite!(async { MyStore::in_memory().unwrap() });
//! }
//! ```
//!
//! The expression may produce anything that implements [`AsStore`]: a type that implements
//! [`Store`], a `Box<dyn Store>`, an `Arc<dyn Store>`, or a `(store, guard)` pair whose guard
//! keeps a helper (such as a test etcd process) alive for the duration of the case. The calling
//! crate must depend on `tokio` with the `macros` and `rt-multi-thread` features.
//!
//! Every case is a plain `pub async fn case(store: &dyn Store)` that panics with a message naming
//! what broke, so a failure names its case. Cases assume nothing about the backend beyond the
//! trait: an empty store is at revision 1 (as a fresh etcd is) and every write adds one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, KeyValue, Revision, Store, WatchStream};

mod watch;
pub use watch::*;

/// Expands into one `#[tokio::test]` per conformance case, each run on a fresh store produced by
/// the given `async` expression. Attributes written before the expression (such as `#[ignore]`)
/// are put on every generated test.
#[macro_export]
macro_rules! conformance_suite {
    ($(#[$attr:meta])* $make:expr $(,)?) => {
        $crate::conformance_suite!(@cases [$(#[$attr])*] $make;
            revisions_start_at_one_and_grow_by_one,
            create_then_get,
            create_existing_key_fails,
            recreate_after_delete_gets_new_create_revision,
            update_compares_mod_revision,
            update_missing_key_is_not_found,
            delete_unconditionally,
            delete_compares_mod_revision,
            delete_missing_key_is_not_found,
            values_are_binary_safe,
            range_prefix_is_pure_string_prefix,
            range_paginates_with_start_after_and_limit,
            range_at_past_revision_sees_old_snapshot,
            range_at_past_revision_paginates,
            range_rejects_future_and_compacted_revisions,
            count_counts_keys_under_prefix,
            watch_from_zero_sees_only_future_changes,
            watch_from_old_revision_replays_then_goes_live,
            watch_filters_by_prefix,
            watch_from_future_revision_waits_for_it,
            watch_from_compacted_revision_fails,
            slow_watcher_sees_every_event,
            concurrent_writers_get_distinct_revisions,
            compact_discards_history_but_keeps_current_values,
            compact_rejects_future_and_already_compacted_revisions,
        );
    };
    (@cases $attrs:tt $make:expr; $($case:ident),* $(,)?) => {
        $( $crate::conformance_suite!(@case $attrs $make; $case); )*
    };
    (@case [$(#[$attr:meta])*] $make:expr; $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $case() {
            let store = $make.await;
            $crate::conformance::$case($crate::conformance::AsStore::as_store(&store)).await;
        }
    };
}

/// What a conformance test may be handed: a store, or a store with something kept alive beside it.
pub trait AsStore {
    fn as_store(&self) -> &dyn Store;
}

impl<S: Store> AsStore for S {
    fn as_store(&self) -> &dyn Store {
        self
    }
}

impl AsStore for Box<dyn Store> {
    fn as_store(&self) -> &dyn Store {
        self.as_ref()
    }
}

impl AsStore for Arc<dyn Store> {
    fn as_store(&self) -> &dyn Store {
        self.as_ref()
    }
}

impl<S: Store, G> AsStore for (S, G) {
    fn as_store(&self) -> &dyn Store {
        &self.0
    }
}

/// How long a case waits for a watch event that must come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a case waits to be sure that no further watch event comes.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

// ----- helpers -----

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn rev(store: &dyn Store) -> Revision {
    store
        .current_revision()
        .await
        .unwrap_or_else(|e| panic!("current_revision failed: {e}"))
}

async fn create(store: &dyn Store, key: &str, value: &str) -> KeyValue {
    store
        .create(key, val(value))
        .await
        .unwrap_or_else(|e| panic!("create {key:?} failed: {e}"))
}

async fn update(store: &dyn Store, key: &str, value: &str, expected: Revision) -> KeyValue {
    store
        .update(key, val(value), expected)
        .await
        .unwrap_or_else(|e| panic!("update {key:?} at {expected} failed: {e}"))
}

async fn delete(store: &dyn Store, key: &str, expected: Option<Revision>) -> (KeyValue, Revision) {
    store
        .delete(key, expected)
        .await
        .unwrap_or_else(|e| panic!("delete {key:?} failed: {e}"))
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key:?} failed: {e}"))
}

async fn keys(
    store: &dyn Store,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<Revision>,
) -> (Vec<String>, bool) {
    let range = store
        .range(prefix, start_after, limit, revision)
        .await
        .unwrap_or_else(|e| panic!("range {prefix:?} after {start_after:?} failed: {e}"));
    (range.kvs.into_iter().map(|kv| kv.key).collect(), range.more)
}

async fn assert_page(
    store: &dyn Store,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<Revision>,
    want: &[&str],
    want_more: bool,
) {
    let (got, more) = keys(store, prefix, start_after, limit, revision).await;
    let got: Vec<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        (got, more),
        (want.to_vec(), want_more),
        "page of {prefix:?} after {start_after:?}, limit {limit}, at {revision:?} (keys, more)"
    );
}

async fn compact(store: &dyn Store, revision: Revision) {
    store
        .compact(revision)
        .await
        .unwrap_or_else(|e| panic!("compact {revision} failed: {e}"));
}

async fn watch(store: &dyn Store, prefix: &str, from: Revision) -> WatchStream {
    store
        .watch(prefix, from)
        .await
        .unwrap_or_else(|e| panic!("watch {prefix:?} from {from} failed: {e}"))
}

async fn next_event(watch: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
        Ok(None) => panic!("watch ended while an event was expected"),
        Ok(Some(Err(e))) => panic!("watch failed while an event was expected: {e}"),
        Ok(Some(Ok(event))) => event,
    }
}

async fn expect_quiet(watch: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(QUIET_PERIOD, watch.next()).await {
        panic!("expected no further watch item, got {item:?}");
    }
}

fn put(kv: &KeyValue, prev: Option<&KeyValue>) -> Event {
    Event::Put {
        kv: kv.clone(),
        prev: prev.cloned(),
    }
}

fn deleted(prev: &KeyValue, revision: Revision) -> Event {
    Event::Delete {
        prev: prev.clone(),
        revision,
    }
}

fn assert_compacted<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::Compacted { .. }) => {}
        other => panic!("{what}: expected Compacted, got {other:?}"),
    }
}

/// A watch from a compacted revision may fail at once or as the stream's first item.
async fn assert_watch_compacted(store: &dyn Store, prefix: &str, from: Revision) {
    let mut stream = match store.watch(prefix, from).await {
        Err(Error::Compacted { .. }) => return,
        Err(e) => panic!("watch from compacted {from}: expected Compacted, got {e}"),
        Ok(stream) => stream,
    };
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Err(Error::Compacted { .. }))) => {}
        Err(_) => panic!("watch from compacted {from}: no Compacted error in time"),
        Ok(other) => panic!("watch from compacted {from}: expected Compacted, got {other:?}"),
    }
}

// ----- revisions and single-key writes -----

/// An empty store is at revision 1; each successful write adds exactly one, failed ones nothing.
pub async fn revisions_start_at_one_and_grow_by_one(store: &dyn Store) {
    assert_eq!(rev(store).await, 1, "an empty store is at revision 1");
    let a = create(store, "/r/a", "1").await;
    assert_eq!((a.create_revision, a.mod_revision), (2, 2), "first write");
    assert_eq!(rev(store).await, 2);

    let failures = [
        store.create("/r/a", val("x")).await.err(),
        store.update("/r/a", val("x"), 1).await.err(),
        store.update("/r/missing", val("x"), 2).await.err(),
        store.delete("/r/missing", None).await.err(),
        store.delete("/r/a", Some(99)).await.err(),
    ];
    for failure in failures {
        assert!(failure.is_some(), "a failing write succeeded");
    }
    assert_eq!(
        rev(store).await,
        2,
        "failed writes must not advance the revision"
    );

    let a2 = update(store, "/r/a", "2", 2).await;
    assert_eq!((a2.create_revision, a2.mod_revision), (2, 3));
    let b = create(store, "/r/b", "1").await;
    assert_eq!(b.mod_revision, 4);
    let (_, deleted_at) = delete(store, "/r/a", None).await;
    assert_eq!(deleted_at, 5);
    assert_eq!(rev(store).await, 5);
}

/// `create` returns the stored key-value and `get` reads it back; a missing key reads as `None`.
pub async fn create_then_get(store: &dyn Store) {
    let kv = create(store, "/g/a", "hello").await;
    assert_eq!(kv.key, "/g/a");
    assert_eq!(kv.value, val("hello"));
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(get(store, "/g/a").await, Some(kv));
    assert_eq!(get(store, "/g/b").await, None);
    assert_eq!(
        get(store, "/g/").await,
        None,
        "get is exact, not a prefix match"
    );
    assert_eq!(get(store, "/g/a/").await, None);
}

/// Creating an existing key fails with `AlreadyExists` and leaves it unchanged.
pub async fn create_existing_key_fails(store: &dyn Store) {
    let kv = create(store, "/c/a", "one").await;
    match store.create("/c/a", val("two")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, "/c/a"),
        other => panic!("create of an existing key: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(get(store, "/c/a").await, Some(kv));
}

/// A key created again after its deletion starts a new life with a new `create_revision`.
pub async fn recreate_after_delete_gets_new_create_revision(store: &dyn Store) {
    let first = create(store, "/rc/a", "1").await;
    delete(store, "/rc/a", None).await;
    let second = create(store, "/rc/a", "2").await;
    assert!(second.create_revision > first.create_revision);
    assert_eq!(second.create_revision, second.mod_revision);
    assert_eq!(get(store, "/rc/a").await, Some(second));
}

/// `update` succeeds only against the current `mod_revision`; otherwise `Conflict` carries the
/// current value.
pub async fn update_compares_mod_revision(store: &dyn Store) {
    let v1 = create(store, "/u/a", "1").await;
    let v2 = update(store, "/u/a", "2", v1.mod_revision).await;
    assert_eq!(
        v2.create_revision, v1.create_revision,
        "update keeps create_revision"
    );
    assert_eq!(v2.mod_revision, v1.mod_revision + 1);
    assert_eq!(v2.value, val("2"));
    let before = rev(store).await;
    match store.update("/u/a", val("3"), v1.mod_revision).await {
        Err(Error::Conflict { key, current }) => {
            assert_eq!(key, "/u/a");
            assert_eq!(
                current.as_deref(),
                Some(&v2),
                "Conflict carries the current value"
            );
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        rev(store).await,
        before,
        "a failed CAS must not advance the revision"
    );
    assert_eq!(get(store, "/u/a").await, Some(v2));
}

/// Updating a missing key fails with `NotFound`, also after it was deleted.
pub async fn update_missing_key_is_not_found(store: &dyn Store) {
    match store.update("/u/none", val("x"), 1).await {
        Err(Error::NotFound(key)) => assert_eq!(key, "/u/none"),
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }
    let kv = create(store, "/u/gone", "x").await;
    delete(store, "/u/gone", None).await;
    match store.update("/u/gone", val("y"), kv.mod_revision).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("update of a deleted key: expected NotFound, got {other:?}"),
    }
}

/// `delete` without an expected revision removes the key and returns its last value.
pub async fn delete_unconditionally(store: &dyn Store) {
    let kv = create(store, "/d/a", "1").await;
    let kv = update(store, "/d/a", "2", kv.mod_revision).await;
    let (prev, at) = delete(store, "/d/a", None).await;
    assert_eq!(prev, kv, "delete returns the deleted key-value");
    assert_eq!(at, kv.mod_revision + 1);
    assert_eq!(rev(store).await, at);
    assert_eq!(get(store, "/d/a").await, None);
}

/// `delete` with an expected revision removes only that version; `Conflict` carries the current.
pub async fn delete_compares_mod_revision(store: &dyn Store) {
    let v1 = create(store, "/d/b", "1").await;
    let v2 = update(store, "/d/b", "2", v1.mod_revision).await;
    let before = rev(store).await;
    match store.delete("/d/b", Some(v1.mod_revision)).await {
        Err(Error::Conflict { key, current }) => {
            assert_eq!(key, "/d/b");
            assert_eq!(current.as_deref(), Some(&v2));
        }
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    assert_eq!(rev(store).await, before);
    let (prev, at) = delete(store, "/d/b", Some(v2.mod_revision)).await;
    assert_eq!(prev, v2);
    assert_eq!(at, before + 1);
    assert_eq!(get(store, "/d/b").await, None);
}

/// Deleting a missing key fails with `NotFound`, with or without an expected revision.
pub async fn delete_missing_key_is_not_found(store: &dyn Store) {
    for expected in [None, Some(1)] {
        match store.delete("/d/none", expected).await {
            Err(Error::NotFound(key)) => assert_eq!(key, "/d/none"),
            other => panic!("delete of a missing key: expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(rev(store).await, 1);
}

/// Values are opaque bytes: empty, with zero bytes, non-UTF-8, and large values round-trip.
pub async fn values_are_binary_safe(store: &dyn Store) {
    let large: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let values = [
        Bytes::new(),
        Bytes::from_static(b"\0\0a\0"),
        Bytes::from_static(&[0xff, 0xfe, 0x80]),
        Bytes::from(large),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = format!("/bin/{i}");
        let kv = store
            .create(&key, value.clone())
            .await
            .unwrap_or_else(|e| panic!("create {key}: {e}"));
        assert_eq!(&kv.value, value);
        let read = get(store, &key)
            .await
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(&read.value, value, "value of {key} changed on the way");
    }
    let unicode = create(store, "/bin/ключ/ü", "v").await;
    assert_eq!(get(store, "/bin/ключ/ü").await, Some(unicode));
}

// ----- range and count -----

/// A prefix is a plain string prefix: `/a/b` matches `/a/bc` too, `/a/b/` does not.
pub async fn range_prefix_is_pure_string_prefix(store: &dyn Store) {
    for key in ["/a/b", "/a/bc", "/a/b/c", "/a/c", "/b", "/a/a"] {
        create(store, key, key).await;
    }
    let (got, more) = keys(store, "/a/b", None, 0, None).await;
    assert_eq!(got, ["/a/b", "/a/b/c", "/a/bc"], "keys in byte order");
    assert!(!more);
    let (got, _) = keys(store, "/a/b/", None, 0, None).await;
    assert_eq!(got, ["/a/b/c"]);
    let (got, _) = keys(store, "/a/", None, 0, None).await;
    assert_eq!(got, ["/a/a", "/a/b", "/a/b/c", "/a/bc", "/a/c"]);
    let (got, _) = keys(store, "", None, 0, None).await;
    assert_eq!(got.len(), 6, "the empty prefix selects every key");
    let (got, _) = keys(store, "/z", None, 0, None).await;
    assert!(got.is_empty());
    let range = store
        .range("/a/b", None, 0, None)
        .await
        .unwrap_or_else(|e| panic!("range: {e}"));
    assert_eq!(
        range.revision,
        rev(store).await,
        "range reports the current revision"
    );
    assert_eq!(
        range.kvs[0],
        get(store, "/a/b")
            .await
            .unwrap_or_else(|| panic!("/a/b missing"))
    );
}

/// `start_after` and `limit` page through a prefix; `more` tells exactly whether keys remain.
pub async fn range_paginates_with_start_after_and_limit(store: &dyn Store) {
    for key in ["/o/0", "/p/1", "/p/2", "/p/3", "/p/4", "/p/5", "/q/0"] {
        create(store, key, key).await;
    }
    assert_page(store, "/p/", None, 2, None, &["/p/1", "/p/2"], true).await;
    assert_page(store, "/p/", Some("/p/2"), 2, None, &["/p/3", "/p/4"], true).await;
    assert_page(store, "/p/", Some("/p/4"), 2, None, &["/p/5"], false).await;
    assert_page(
        store,
        "/p/",
        Some("/p/3"),
        2,
        None,
        &["/p/4", "/p/5"],
        false,
    )
    .await;
    let (page, more) = keys(store, "/p/", Some("/p/5"), 2, None).await;
    assert_eq!((page.len(), more), (0, false));
    let (page, _) = keys(store, "/p/", Some("/p/2x"), 0, None).await;
    assert_eq!(
        page,
        ["/p/3", "/p/4", "/p/5"],
        "start_after need not be a stored key"
    );
    let (page, _) = keys(store, "/p/", Some("/a"), 1, None).await;
    assert_eq!(
        page,
        ["/p/1"],
        "start_after before the prefix starts at the prefix"
    );
    let (page, more) = keys(store, "/p/", None, 5, None).await;
    assert_eq!((page.len(), more), (5, false));
}

/// A read at a past revision sees that snapshot: old values, and keys deleted since.
pub async fn range_at_past_revision_sees_old_snapshot(store: &dyn Store) {
    let a1 = create(store, "/s/a", "a1").await;
    let b1 = create(store, "/s/b", "b1").await;
    create(store, "/t/x", "outside").await;
    let snapshot = rev(store).await;
    let a2 = update(store, "/s/a", "a2", a1.mod_revision).await;
    delete(store, "/s/b", None).await;
    let c1 = create(store, "/s/c", "c1").await;
    create(store, "/s/0", "new").await;

    let past = store
        .range("/s/", None, 0, Some(snapshot))
        .await
        .unwrap_or_else(|e| panic!("range at {snapshot}: {e}"));
    assert_eq!(past.kvs, vec![a1.clone(), b1.clone()]);
    assert!(!past.more);
    assert_eq!(
        past.revision, snapshot,
        "a past read reports the revision it read at"
    );

    let earlier = store
        .range("/s/", None, 0, Some(a1.mod_revision))
        .await
        .unwrap_or_else(|e| panic!("range at {}: {e}", a1.mod_revision));
    assert_eq!(earlier.kvs, vec![a1]);

    let now = store
        .range("/s/", None, 0, None)
        .await
        .unwrap_or_else(|e| panic!("range: {e}"));
    let now_keys: Vec<&str> = now.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(now_keys, ["/s/0", "/s/a", "/s/c"]);
    assert_eq!(now.kvs[1], a2);
    assert_eq!(now.kvs[2], c1);
    let current = rev(store).await;
    let at_current = store
        .range("/s/", None, 0, Some(current))
        .await
        .unwrap_or_else(|e| panic!("range at current: {e}"));
    assert_eq!(
        at_current.kvs, now.kvs,
        "a read at the current revision is the current state"
    );
}

/// Pagination works on a past snapshot too, with `more` computed on that snapshot.
pub async fn range_at_past_revision_paginates(store: &dyn Store) {
    for i in 0..5 {
        create(store, &format!("/pp/{i}"), "old").await;
    }
    let snapshot = rev(store).await;
    delete(store, "/pp/1", None).await;
    create(store, "/pp/1a", "new").await;
    let kv = get(store, "/pp/3")
        .await
        .unwrap_or_else(|| panic!("/pp/3 missing"));
    update(store, "/pp/3", "new", kv.mod_revision).await;

    assert_page(
        store,
        "/pp/",
        None,
        2,
        Some(snapshot),
        &["/pp/0", "/pp/1"],
        true,
    )
    .await;
    assert_page(
        store,
        "/pp/",
        Some("/pp/1"),
        2,
        Some(snapshot),
        &["/pp/2", "/pp/3"],
        true,
    )
    .await;
    assert_page(
        store,
        "/pp/",
        Some("/pp/3"),
        2,
        Some(snapshot),
        &["/pp/4"],
        false,
    )
    .await;
    let old = store
        .range("/pp/3", None, 0, Some(snapshot))
        .await
        .unwrap_or_else(|e| panic!("range: {e}"));
    assert_eq!(old.kvs.len(), 1);
    assert_eq!(old.kvs[0].value, val("old"));
}

/// A read past the current revision fails with `FutureRevision`; one at or below the compacted
/// revision with `Compacted`.
pub async fn range_rejects_future_and_compacted_revisions(store: &dyn Store) {
    let kv = create(store, "/e/a", "1").await;
    let current = rev(store).await;
    match store.range("/e/", None, 0, Some(current + 1)).await {
        Err(Error::FutureRevision(r)) => assert_eq!(r, current + 1),
        other => panic!("range in the future: expected FutureRevision, got {other:?}"),
    }
    let kv = update(store, "/e/a", "2", kv.mod_revision).await;
    update(store, "/e/a", "3", kv.mod_revision).await;
    compact(store, kv.mod_revision).await;
    assert_compacted(
        store.range("/e/", None, 0, Some(current)).await,
        "range below compacted",
    );
    assert_compacted(
        store.range("/e/", None, 0, Some(kv.mod_revision)).await,
        "range at the compacted revision",
    );
    let after = store
        .range("/e/", None, 0, Some(kv.mod_revision + 1))
        .await
        .unwrap_or_else(|e| panic!("range just above compacted: {e}"));
    assert_eq!(after.kvs.len(), 1);
    assert_eq!(after.kvs[0].value, val("3"));
}

/// `count` counts the keys under a prefix at the current revision.
pub async fn count_counts_keys_under_prefix(store: &dyn Store) {
    let count = |prefix: &'static str| async move {
        store
            .count(prefix)
            .await
            .unwrap_or_else(|e| panic!("count {prefix}: {e}"))
    };
    assert_eq!(count("/n/").await, 0);
    for key in ["/n/a", "/n/b", "/n/bc", "/m/a"] {
        create(store, key, "x").await;
    }
    assert_eq!(count("/n/").await, 3);
    assert_eq!(count("/n/b").await, 2);
    assert_eq!(count("").await, 4);
    delete(store, "/n/a", None).await;
    assert_eq!(count("/n/").await, 2);
}
