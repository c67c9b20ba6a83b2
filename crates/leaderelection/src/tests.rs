use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// An in-memory lease with resource versions; `fail` makes every call fail (an unreachable API).
#[derive(Clone, Default)]
struct FakeStore {
    lease: Arc<Mutex<Option<(LeaderRecord, u64)>>>,
    fail: Arc<Mutex<bool>>,
}

impl FakeStore {
    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .ok()?
            .as_ref()
            .map(|(r, _)| r.holder.clone())
    }
    fn record(&self) -> Option<LeaderRecord> {
        self.lease.lock().ok()?.as_ref().map(|(r, _)| r.clone())
    }
    fn set_failing(&self, f: bool) {
        if let Ok(mut g) = self.fail.lock() {
            *g = f;
        }
    }
    fn failing(&self) -> bool {
        self.fail.lock().map(|g| *g).unwrap_or(true)
    }
}

impl LeaseStore for FakeStore {
    fn get(&self) -> BoxFuture<'_, Result<Option<Versioned>, LeaseError>> {
        Box::pin(async move {
            if self.failing() {
                return Err(LeaseError::Api("down".into()));
            }
            let g = self
                .lease
                .lock()
                .map_err(|_| LeaseError::Api("poisoned".into()))?;
            Ok(g.as_ref().map(|(r, v)| (r.clone(), v.to_string())))
        })
    }
    fn create(&self, record: LeaderRecord) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async move {
            if self.failing() {
                return Err(LeaseError::Api("down".into()));
            }
            let mut g = self
                .lease
                .lock()
                .map_err(|_| LeaseError::Api("poisoned".into()))?;
            if g.is_some() {
                return Err(LeaseError::Conflict);
            }
            *g = Some((record, 1));
            Ok("1".into())
        })
    }
    fn update(
        &self,
        record: LeaderRecord,
        rv: String,
    ) -> BoxFuture<'_, Result<String, LeaseError>> {
        Box::pin(async move {
            if self.failing() {
                return Err(LeaseError::Api("down".into()));
            }
            let mut g = self
                .lease
                .lock()
                .map_err(|_| LeaseError::Api("poisoned".into()))?;
            let next = match g.as_ref() {
                Some((_, v)) if v.to_string() == rv => v + 1,
                _ => return Err(LeaseError::Conflict),
            };
            *g = Some((record, next));
            Ok(next.to_string())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn first_candidate_acquires_and_the_other_waits() {
    let store = FakeStore::default();
    let mut a = LeaderElection::new(store.clone(), ElectionConfig::new("a"));
    let mut b = LeaderElection::new(store.clone(), ElectionConfig::new("b"));
    assert_eq!(a.step().await, Transition::Acquired);
    assert_eq!(b.step().await, Transition::Unchanged);
    assert_eq!(store.holder().as_deref(), Some("a"));
    // a keeps renewing; b never gets it.
    for _ in 0..20 {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(a.step().await, Transition::Unchanged);
        assert_eq!(b.step().await, Transition::Unchanged);
    }
    assert_eq!(store.record().map(|r| r.transitions), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_stale_lease_is_taken_over_after_its_duration() {
    let store = FakeStore::default();
    let mut a = LeaderElection::new(store.clone(), ElectionConfig::new("a"));
    let mut b = LeaderElection::new(store.clone(), ElectionConfig::new("b"));
    assert_eq!(a.step().await, Transition::Acquired);
    assert_eq!(b.step().await, Transition::Unchanged);
    // a stops renewing (crashed). b observed the record at t=0: it must wait 15 s.
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(b.step().await, Transition::Unchanged);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(b.step().await, Transition::Acquired);
    let r = store.record().unwrap_or_default();
    assert_eq!((r.holder.as_str(), r.transitions), ("b", 1));
    // a comes back 16 s after its last renewal: past the deadline, it steps down.
    assert_eq!(a.step().await, Transition::Lost);
    assert_eq!(a.phase(), Phase::Candidate);
}

#[tokio::test(start_paused = true)]
async fn leader_gives_up_when_it_cannot_renew_for_the_deadline() {
    let store = FakeStore::default();
    let mut a = LeaderElection::new(store.clone(), ElectionConfig::new("a"));
    assert_eq!(a.step().await, Transition::Acquired);
    store.set_failing(true);
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            a.step().await,
            Transition::Unchanged,
            "within the 10 s deadline"
        );
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(a.step().await, Transition::Lost);
    store.set_failing(false);
    assert_eq!(
        a.step().await,
        Transition::Acquired,
        "our own record is still there"
    );
}

#[tokio::test(start_paused = true)]
async fn run_publishes_leadership_and_releases_on_shutdown() {
    let store = FakeStore::default();
    let (tx, mut rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        LeaderElection::new(store.clone(), ElectionConfig::new("a")).run(tx, cancel.clone()),
    );
    let _ = rx.wait_for(|l| *l).await;
    cancel.cancel();
    let _ = task.await;
    assert!(!*rx.borrow());
    let r = store.record().unwrap_or_default();
    assert_eq!((r.holder.as_str(), r.lease_duration_seconds), ("", 1));
    // A released lease is taken at once.
    let mut b = LeaderElection::new(store.clone(), ElectionConfig::new("b"));
    assert_eq!(b.step().await, Transition::Acquired);
}
