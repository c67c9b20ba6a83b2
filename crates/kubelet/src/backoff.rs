//! Crash-loop back-off per container, as upstream's `flowcontrol.Backoff`: the first restart is
//! immediate, then the delay doubles from the base up to the maximum, and an entry untouched for
//! twice the maximum starts over.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last_update: DateTime<Utc>,
}

/// Back-off state per key (a pod's container).
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, now: DateTime<Utc>) -> bool {
        let max2 = chrono::Duration::from_std(self.max * 2).unwrap_or(chrono::TimeDelta::MAX);
        now - e.last_update > max2
    }

    /// How long `key` still has to wait at `now` when its last run ended at `since`; `None` when
    /// it may start.
    pub fn remaining(
        &self,
        key: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(e, now) {
            return None;
        }
        let until = since + chrono::Duration::from_std(e.delay).unwrap_or(chrono::TimeDelta::MAX);
        (now < until).then(|| (until - now).to_std().unwrap_or_default())
    }

    /// The delay `key` is in now (for messages), if any.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Records a (re)start of `key` at `now`: the next wait doubles.
    pub fn next(&mut self, key: &str, now: DateTime<Utc>) {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, now) => (e.delay * 2).min(self.max),
            _ => self.base,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    /// Forgets every key that starts with `prefix` (a removed pod's containers).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn doubles_to_the_max_and_resets_after_twice_the_max() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(40));
        assert_eq!(
            b.remaining("c", t(0), t(0)),
            None,
            "first restart is immediate"
        );
        b.next("c", t(0));
        assert_eq!(b.remaining("c", t(1), t(5)), Some(Duration::from_secs(6)));
        assert_eq!(b.remaining("c", t(1), t(11)), None);
        b.next("c", t(11));
        assert_eq!(b.delay("c"), Some(Duration::from_secs(20)));
        b.next("c", t(40));
        b.next("c", t(90));
        assert_eq!(b.delay("c"), Some(Duration::from_secs(40)), "capped");
        b.next("c", t(200));
        assert_eq!(
            b.delay("c"),
            Some(Duration::from_secs(10)),
            "reset after 2x max"
        );
    }
}
