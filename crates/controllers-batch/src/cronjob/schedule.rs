//! Schedule arithmetic over [`k8rs_api::cron`] schedules: the next activation after a time (as
//! `robfig/cron`'s `SpecSchedule.Next`, in a time zone) and upstream's most recent unmet
//! activation with its missed-start count.

use std::time::Duration;

use k8rs_api::cron::{CronFields, CronSchedule};
use k8s_openapi::jiff::civil::{DateTime, date};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, ToSpan};

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub spec: CronSchedule,
    pub tz: TimeZone,
}

/// All days of the month (1..=31) and of the week (0..=6): the fields a `*` gives.
const ALL_DOM: u64 = 0xFFFF_FFFE;
const ALL_DOW: u64 = 0x7F;

/// The time zone a `CRON_TZ=`/`TZ=` prefix of a schedule names.
pub fn prefix_time_zone(schedule: &str) -> Option<&str> {
    let rest = schedule
        .strip_prefix("CRON_TZ=")
        .or_else(|| schedule.strip_prefix("TZ="))?;
    rest.split_whitespace().next()
}

fn has(bits: u64, n: i8) -> bool {
    u32::try_from(n).is_ok_and(|n| n < 64 && bits & (1 << n) != 0)
}

/// robfig's `dayMatches`: when either day field is `*` both must match, otherwise either.
fn day_matches(f: &CronFields, dt: DateTime) -> bool {
    let dom = has(f.day_of_month, dt.day());
    let dow = has(f.day_of_week, dt.weekday().to_sunday_zero_offset());
    if f.day_of_month & ALL_DOM == ALL_DOM || f.day_of_week & ALL_DOW == ALL_DOW {
        dom && dow
    } else {
        dom || dow
    }
}

impl Schedule {
    /// The first activation strictly after `after`; `None` if none within five years.
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match self.spec {
            CronSchedule::Every(secs) => {
                let secs = i64::try_from(secs).ok()?;
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(SignedDuration::from_secs(secs)).ok()
            }
            CronSchedule::Fields(f) => self.next_fields(&f, after),
        }
    }

    fn next_fields(&self, f: &CronFields, after: Timestamp) -> Option<Timestamp> {
        let local = after.to_zoned(self.tz.clone()).datetime();
        let mut dt = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = dt.year().saturating_add(5);
        // Bounded: each step moves to the next month, day, hour or minute.
        for _ in 0..200_000 {
            if dt.year() > limit {
                return None;
            }
            if !has(f.month, dt.month()) {
                dt = date(dt.year(), dt.month(), 1)
                    .at(0, 0, 0, 0)
                    .checked_add(1.month())
                    .ok()?;
                continue;
            }
            if !day_matches(f, dt) {
                dt = dt.start_of_day().checked_add(1.day()).ok()?;
                continue;
            }
            if !has(f.hour, dt.hour()) {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(f.minute, dt.minute()) {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = self.tz.to_zoned(dt).ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// Upstream's `mostRecentScheduleTime`: the latest activation in `(earliest, now]` and
    /// roughly how many were missed (upstream's estimate, for the "too many missed" warning).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, i64) {
        let Some(t1) = self.next(earliest).filter(|t| *t <= now) else {
            return (None, 0);
        };
        let Some(t2) = self.next(t1).filter(|t| *t <= now) else {
            return (Some(t1), 1);
        };
        let between = t1.duration_until(t2).as_secs().max(1);
        let missed = t1.duration_until(now).as_secs() / between + 1;
        (Some(self.latest_until(t1, now, between)), missed)
    }

    /// The last activation at or before `now`, knowing `t1` is one: searched forward from ever
    /// wider windows before `now`.
    fn latest_until(&self, t1: Timestamp, now: Timestamp, between: i64) -> Timestamp {
        let mut window = between.saturating_mul(2);
        loop {
            let start = now
                .checked_sub(SignedDuration::from_secs(window))
                .unwrap_or(t1)
                .max(t1);
            let mut latest = None;
            let mut t = if start == t1 {
                Some(t1)
            } else {
                self.next(start)
            };
            while let Some(cur) = t.filter(|c| *c <= now) {
                latest = Some(cur);
                t = self.next(cur);
            }
            match latest {
                Some(found) => return found,
                None if start == t1 => return t1,
                None => window = window.saturating_mul(2),
            }
        }
    }

    /// How long from `now` until the next activation, plus upstream's 100 ms margin.
    pub fn until_next(&self, now: Timestamp) -> Option<Duration> {
        let next = self.next(now)?;
        let wait = Duration::try_from(now.duration_until(next)).unwrap_or_default();
        Some(wait + Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8rs_api::cron::parse;

    fn sched(spec: &str, tz: &str) -> Schedule {
        Schedule {
            spec: parse(spec).expect("schedule"),
            tz: TimeZone::get(tz).expect("tz"),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn next_follows_fields_descriptors_and_zones() {
        let cases = [
            (
                "*/15 * * * *",
                "UTC",
                "2024-01-01T00:07:10Z",
                "2024-01-01T00:15:00Z",
            ),
            (
                "@hourly",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-01T01:00:00Z",
            ),
            (
                "@daily",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            (
                "@weekly",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-07T00:00:00Z",
            ),
            (
                "@monthly",
                "UTC",
                "2024-01-15T00:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "@yearly",
                "UTC",
                "2024-01-15T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "0 9 * * mon-fri",
                "UTC",
                "2024-01-05T10:00:00Z",
                "2024-01-08T09:00:00Z",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            (
                "0 0 13 * 5",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-05T00:00:00Z",
            ),
            (
                "0 0 29 2 *",
                "UTC",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2024-01-01T00:00:00Z",
                "2024-01-01T14:00:00Z",
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                "Asia/Tokyo",
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            (
                "@every 90s",
                "UTC",
                "2024-01-01T00:00:00.5Z",
                "2024-01-01T00:01:30Z",
            ),
        ];
        for (spec, tz, after, want) in cases {
            assert_eq!(
                sched(spec, tz).next(ts(after)),
                Some(ts(want)),
                "{spec} after {after}"
            );
        }
        assert_eq!(
            sched("0 0 30 2 *", "UTC").next(ts("2024-01-01T00:00:00Z")),
            None
        );
        assert_eq!(
            prefix_time_zone("CRON_TZ=Asia/Tokyo 0 9 * * *"),
            Some("Asia/Tokyo")
        );
    }

    #[test]
    fn most_recent_counts_missed_starts() {
        let s = sched("*/5 * * * *", "UTC");
        let earliest = ts("2024-01-01T00:00:00Z");
        assert_eq!(
            s.most_recent(earliest, ts("2024-01-01T00:04:59Z")),
            (None, 0)
        );
        assert_eq!(
            s.most_recent(earliest, ts("2024-01-01T00:05:00Z")),
            (Some(ts("2024-01-01T00:05:00Z")), 1)
        );
        assert_eq!(
            s.most_recent(earliest, ts("2024-01-01T10:02:00Z")),
            (Some(ts("2024-01-01T10:00:00Z")), 120)
        );
        let irregular = sched("0 5,17 * * *", "UTC");
        assert_eq!(
            irregular
                .most_recent(earliest, ts("2024-01-03T16:00:00Z"))
                .0,
            Some(ts("2024-01-03T05:00:00Z"))
        );
    }
}
