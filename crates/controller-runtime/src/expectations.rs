//! Expectations, as upstream's `ControllerExpectations` with UID tracking: after a sync creates
//! or deletes pods it records how many creations and which deletions it expects to observe
//! through its informer, and does not act again for that owner until they are seen (or five
//! minutes passed, in case a watch event was lost).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long expectations are trusted before a sync goes ahead anyway (upstream's).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Expectations of every owner, by owner key; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<String, Expected>>>,
}

impl Expectations {
    /// Whether the owner may act: nothing is pending, or what is pending is too old.
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Expects `n` creations (replacing what was expected).
    pub fn expect_creations(&self, owner: &str, n: usize) {
        self.set(owner, n, HashSet::new());
    }

    /// Expects the deletion of the pods with these keys (replacing what was expected).
    pub fn expect_deletions(&self, owner: &str, pods: impl IntoIterator<Item = String>) {
        self.set(owner, 0, pods.into_iter().collect());
    }

    /// Expects `adds` creations and the deletion of these pods at once (a sync doing both).
    pub fn expect(&self, owner: &str, adds: usize, pods: impl IntoIterator<Item = String>) {
        self.set(owner, adds, pods.into_iter().collect());
    }

    /// One creation was observed (or will never be: it failed).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// The deletion of the pod `pod` was observed (or will never be).
    pub fn deletion_observed(&self, owner: &str, pod: &str) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.deletes.remove(pod);
        }
    }

    /// Forgets the owner (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }

    fn set(&self, owner: &str, adds: usize, deletes: HashSet<String>) {
        let adds = i64::try_from(adds).unwrap_or(i64::MAX);
        self.lock().insert(
            owner.to_string(),
            Expected {
                adds,
                deletes,
                since: Instant::now(),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_write_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["ns/p1".to_string()]);
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/other");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/p1");
        assert!(e.satisfied("ns/rs"));
    }
}
