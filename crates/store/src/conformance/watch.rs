//! The watch and compaction cases of the conformance suite.

use std::collections::BTreeSet;

use futures::future::join_all;

use super::{
    assert_compacted, assert_watch_compacted, compact, create, delete, deleted, expect_quiet, get,
    keys, next_event, put, rev, update, watch,
};
use crate::{Error, Event, Revision, Store};

// ----- watch -----

/// A watch from 0 delivers only changes made after it started.
pub async fn watch_from_zero_sees_only_future_changes(store: &dyn Store) {
    create(store, "/w/old", "x").await;
    let mut stream = watch(store, "/w/", 0).await;
    let kv = create(store, "/w/new", "y").await;
    assert_eq!(next_event(&mut stream).await, put(&kv, None));
    expect_quiet(&mut stream).await;
}

/// A watch from an old revision replays the history in order (with `prev` for updates and
/// deletes), then continues live without gap or duplicate.
pub async fn watch_from_old_revision_replays_then_goes_live(store: &dyn Store) {
    let a1 = create(store, "/h/a", "1").await;
    let a2 = update(store, "/h/a", "2", a1.mod_revision).await;
    let b1 = create(store, "/h/b", "1").await;
    let (_, b_gone) = delete(store, "/h/b", None).await;
    let mut stream = watch(store, "/h/", a1.mod_revision).await;
    let c1 = create(store, "/h/c", "1").await;
    let (_, a_gone) = delete(store, "/h/a", Some(a2.mod_revision)).await;
    let expected = [
        put(&a1, None),
        put(&a2, Some(&a1)),
        put(&b1, None),
        deleted(&b1, b_gone),
        put(&c1, None),
        deleted(&a2, a_gone),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&next_event(&mut stream).await, want, "event {i}");
    }
    expect_quiet(&mut stream).await;

    let mut from_middle = watch(store, "/h/", b1.mod_revision).await;
    assert_eq!(next_event(&mut from_middle).await, put(&b1, None));
    assert_eq!(next_event(&mut from_middle).await, deleted(&b1, b_gone));
}

/// A watch sees only the keys under its prefix (a plain string prefix).
pub async fn watch_filters_by_prefix(store: &dyn Store) {
    let before = rev(store).await;
    let mut stream = watch(store, "/f/a", before + 1).await;
    create(store, "/f/b", "x").await;
    let a = create(store, "/f/a", "x").await;
    create(store, "/g/a", "x").await;
    let ab = create(store, "/f/ab", "x").await;
    let a_sub = create(store, "/f/a/1", "x").await;
    assert_eq!(next_event(&mut stream).await, put(&a, None));
    assert_eq!(next_event(&mut stream).await, put(&ab, None));
    assert_eq!(next_event(&mut stream).await, put(&a_sub, None));
    expect_quiet(&mut stream).await;
}

/// A watch from a revision not yet reached delivers changes from that revision on.
pub async fn watch_from_future_revision_waits_for_it(store: &dyn Store) {
    let current = rev(store).await;
    let mut stream = watch(store, "/fw/", current + 2).await;
    create(store, "/fw/a", "x").await;
    let b = create(store, "/fw/b", "x").await;
    assert_eq!(b.mod_revision, current + 2);
    assert_eq!(next_event(&mut stream).await, put(&b, None));
    expect_quiet(&mut stream).await;
}

/// A watch from a compacted revision fails with `Compacted`; just above it, it replays.
pub async fn watch_from_compacted_revision_fails(store: &dyn Store) {
    let a1 = create(store, "/wc/a", "1").await;
    let a2 = update(store, "/wc/a", "2", a1.mod_revision).await;
    let a3 = update(store, "/wc/a", "3", a2.mod_revision).await;
    compact(store, a2.mod_revision).await;
    assert_watch_compacted(store, "/wc/", a1.mod_revision).await;
    assert_watch_compacted(store, "/wc/", a2.mod_revision).await;
    let mut stream = watch(store, "/wc/", a3.mod_revision).await;
    assert_eq!(
        next_event(&mut stream).await,
        put(&a3, Some(&a2)),
        "prev survives compaction of its own revision"
    );
}

/// A watcher that reads nothing while many changes happen still gets every one, in order.
pub async fn slow_watcher_sees_every_event(store: &dyn Store) {
    const WRITERS: usize = 16;
    const WRITES: usize = 25;
    let start = rev(store).await + 1;
    let mut stream = watch(store, "/slow/", start).await;
    // Read one event first, so the watcher is following live changes when the burst comes.
    let first = create(store, "/slow/first", "v").await;
    assert_eq!(next_event(&mut stream).await, put(&first, None));
    let writes = (0..WRITERS).map(|w| async move {
        for i in 0..WRITES {
            create(store, &format!("/slow/{w}/{i}"), "v").await;
        }
    });
    join_all(writes).await;
    let end = rev(store).await;
    for expected in start + 1..=end {
        assert_eq!(next_event(&mut stream).await.revision(), expected);
    }
    expect_quiet(&mut stream).await;
}

/// Many concurrent writers are all acknowledged with distinct, gapless revisions, and a
/// concurrent watcher sees each write exactly once, in revision order.
pub async fn concurrent_writers_get_distinct_revisions(store: &dyn Store) {
    const WRITERS: usize = 32;
    const WRITES: usize = 20;
    let start = rev(store).await + 1;
    let total = WRITERS * WRITES;
    let mut stream = watch(store, "/cw/", start).await;
    let writer = |w: usize| async move {
        let key = format!("/cw/{w}");
        let mut kv = create(store, &key, "0").await;
        let mut revisions = vec![kv.mod_revision];
        for i in 1..WRITES {
            kv = update(store, &key, &i.to_string(), kv.mod_revision).await;
            revisions.push(kv.mod_revision);
        }
        revisions
    };
    let watcher = async {
        let mut seen = Vec::with_capacity(total);
        for _ in 0..total {
            seen.push(next_event(&mut stream).await);
        }
        seen
    };
    let (acked, seen) = futures::join!(join_all((0..WRITERS).map(writer)), watcher);

    let acked: Vec<Revision> = acked.into_iter().flatten().collect();
    let distinct: BTreeSet<Revision> = acked.iter().copied().collect();
    assert_eq!(distinct.len(), total, "every write got its own revision");
    let expected: BTreeSet<Revision> = (start..start + total as Revision).collect();
    assert_eq!(distinct, expected, "revisions are gapless");
    let seen_revisions: Vec<Revision> = seen.iter().map(Event::revision).collect();
    let in_order: Vec<Revision> = expected.into_iter().collect();
    assert_eq!(
        seen_revisions, in_order,
        "the watcher saw every write once, in order"
    );
    for event in &seen {
        if let Event::Put {
            kv,
            prev: Some(prev),
        } = event
        {
            assert!(prev.mod_revision < kv.mod_revision);
            assert_eq!(prev.key, kv.key);
        }
    }
    expect_quiet(&mut stream).await;
}

// ----- compaction -----

/// After `compact(r)`, `compacted_revision` is `r`, current values survive, and history just
/// above `r` is still readable and watchable.
pub async fn compact_discards_history_but_keeps_current_values(store: &dyn Store) {
    let compacted = store
        .compacted_revision()
        .await
        .unwrap_or_else(|e| panic!("compacted_revision: {e}"));
    assert_eq!(compacted, 0, "a fresh store has compacted nothing");
    let keep = create(store, "/k/keep", "v").await;
    let mut a = create(store, "/k/a", "0").await;
    for i in 1..5 {
        a = update(store, "/k/a", &i.to_string(), a.mod_revision).await;
    }
    let target = a.mod_revision - 1;
    compact(store, target).await;
    let compacted = store
        .compacted_revision()
        .await
        .unwrap_or_else(|e| panic!("compacted_revision: {e}"));
    assert_eq!(compacted, target);
    assert_eq!(
        get(store, "/k/keep").await,
        Some(keep.clone()),
        "current values survive"
    );
    let (now, _) = keys(store, "/k/", None, 0, None).await;
    assert_eq!(now, ["/k/a", "/k/keep"]);
    let (past, _) = keys(store, "/k/", None, 0, Some(a.mod_revision)).await;
    assert_eq!(past, ["/k/a", "/k/keep"]);

    let mut stream = watch(store, "/k/", a.mod_revision).await;
    match next_event(&mut stream).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(kv, a);
            assert_eq!(prev.mod_revision, target);
        }
        other => panic!("expected the last update with its prev, got {other:?}"),
    }

    compact(store, rev(store).await).await;
    assert_eq!(
        get(store, "/k/a").await,
        Some(a),
        "compacting everything keeps current values"
    );
    let later = create(store, "/k/later", "x").await;
    let mut stream = watch(store, "/k/", later.mod_revision).await;
    assert_eq!(next_event(&mut stream).await, put(&later, None));
}

/// `compact` to a revision not yet reached fails with `FutureRevision`; to one already compacted
/// with `Compacted`.
pub async fn compact_rejects_future_and_already_compacted_revisions(store: &dyn Store) {
    for i in 0..4 {
        create(store, &format!("/cr/{i}"), "x").await;
    }
    let current = rev(store).await;
    match store.compact(current + 1).await {
        Err(Error::FutureRevision(r)) => assert_eq!(r, current + 1),
        other => panic!("compact in the future: expected FutureRevision, got {other:?}"),
    }
    compact(store, current - 1).await;
    assert_compacted(
        store.compact(current - 1).await,
        "compact to the compacted revision",
    );
    assert_compacted(
        store.compact(current - 2).await,
        "compact below the compacted revision",
    );
    compact(store, current).await;
    let compacted = store
        .compacted_revision()
        .await
        .unwrap_or_else(|e| panic!("compacted_revision: {e}"));
    assert_eq!(compacted, current);
}
