//! What the Job controller wrote and its informer caches have not shown yet (upstream's
//! `ControllerExpectations` plus its `finalizerExpectations`): a Job is not synced again until
//! the caches show its pod creations, deletions and finalizer removals and its last status
//! write, or it would create pods twice or count finished pods twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::pods::TRACKING_FINALIZER;

/// How long unobserved writes hold a Job's sync back (upstream: 5 min).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One write the caches must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A pod was created with this name.
    Created(String),
    /// A pod was deleted.
    Deleted(String),
    /// A pod's tracking finalizer was removed.
    Unfinalized(String),
    /// The Job's status was written over this resourceVersion.
    StatusWritten { over: String },
}

#[derive(Default)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    unfinalized: HashSet<String>,
    stale_rv: Option<String>,
    since: Option<Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.deleted.is_empty()
            && self.unfinalized.is_empty()
            && self.stale_rv.is_none()
    }
}

/// The pending writes of every Job, by key.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

impl Expectations {
    pub fn expect(&self, key: &str, what: Expect) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let pending = map.entry(key.to_string()).or_default();
        pending.since.get_or_insert_with(Instant::now);
        match what {
            Expect::Created(name) => pending.created.insert(name),
            Expect::Deleted(name) => pending.deleted.insert(name),
            Expect::Unfinalized(name) => pending.unfinalized.insert(name),
            Expect::StatusWritten { over } => {
                // Only the first write of a run matters: later ones were made over newer ones.
                pending.stale_rv.get_or_insert(over);
                true
            }
        };
    }

    /// Whether the caches (`job`, and pods by name through `pod`) show every pending write;
    /// the writes they show are forgotten.
    pub fn satisfied<F>(&self, key: &str, job: &Job, pod: F) -> bool
    where
        F: Fn(&str) -> Option<std::sync::Arc<Pod>>,
    {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pending) = map.get_mut(key) else {
            return true;
        };
        pending.created.retain(|name| pod(name).is_none());
        pending
            .deleted
            .retain(|name| pod(name).is_some_and(|p| p.metadata.deletion_timestamp.is_none()));
        pending
            .unfinalized
            .retain(|name| pod(name).is_some_and(|p| has_finalizer(&p)));
        if pending.stale_rv.is_some() && pending.stale_rv != job.metadata.resource_version {
            pending.stale_rv = None;
        }
        let expired = pending.since.is_some_and(|s| s.elapsed() > TIMEOUT);
        if pending.is_empty() || expired {
            map.remove(key);
            return true;
        }
        false
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::testutil::{JobBuilder, PodBuilder};

    #[test]
    fn waits_until_the_caches_show_every_write() {
        let job = JobBuilder::new("j").build();
        let tracked = Arc::new(PodBuilder::of(&job, "a").build());
        let released = Arc::new(PodBuilder::of(&job, "a").untracked().build());
        let e = Expectations::default();
        e.expect("default/j", Expect::Created("new".into()));
        e.expect("default/j", Expect::Unfinalized("a".into()));
        e.expect("default/j", Expect::StatusWritten { over: "1".into() });
        let mut cache: BTreeMap<&str, Arc<Pod>> = BTreeMap::from([("a", tracked)]);
        assert!(!e.satisfied("default/j", &job, |n| cache.get(n).cloned()));
        cache.insert("new", Arc::new(PodBuilder::of(&job, "new").build()));
        cache.insert("a", released);
        // The Job in the cache is still the one the status was written over.
        assert!(!e.satisfied("default/j", &job, |n| cache.get(n).cloned()));
        let mut newer = job.clone();
        newer.metadata.resource_version = Some("2".into());
        assert!(e.satisfied("default/j", &newer, |n| cache.get(n).cloned()));
        assert!(e.satisfied("default/other", &job, |_| None));
    }
}
