//! From a raw recommendation to the replica count the HPA sets, as upstream normalizes it:
//! stabilization windows over recent recommendations, then rate limits (the behavior's
//! policies, or without a behavior the legacy limit of doubling, at least to 4) and the
//! min/max bounds, with the AbleToScale and ScalingLimited reasons upstream reports.
//!
//! The per-HPA memory (recent recommendations, recent scale events) is a plain value the
//! controller keeps between syncs; time is passed in, so everything here is pure.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

/// How policies combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// One rate policy: `Pods` (absolute) or `Percent`, per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub percent: bool,
    pub value: i32,
    pub period_s: i32,
}

/// Resolved scaling rules for one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub window_s: i32,
    pub select: Select,
    pub policies: Vec<Policy>,
}

/// Both directions' rules, defaults filled in as upstream's API defaulting does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Behavior {
    /// `None` when the HPA has no behavior (the legacy normalization applies).
    pub fn resolve(
        b: Option<&HorizontalPodAutoscalerBehavior>,
        down_window_s: i32,
    ) -> Option<Self> {
        let b = b?;
        let up_default = vec![
            Policy {
                percent: false,
                value: 4,
                period_s: 15,
            },
            Policy {
                percent: true,
                value: 100,
                period_s: 15,
            },
        ];
        let down_default = vec![Policy {
            percent: true,
            value: 100,
            period_s: 15,
        }];
        Some(Behavior {
            up: rules(b.scale_up.as_ref(), 0, up_default),
            down: rules(b.scale_down.as_ref(), down_window_s, down_default),
        })
    }

    fn longest_period_s(&self, up: bool) -> i32 {
        let rules = if up { &self.up } else { &self.down };
        rules.policies.iter().map(|p| p.period_s).max().unwrap_or(0)
    }
}

fn rules(r: Option<&HPAScalingRules>, window_s: i32, default: Vec<Policy>) -> Rules {
    let policies: Vec<Policy> = r
        .and_then(|r| r.policies.as_ref())
        .map(|ps| {
            ps.iter()
                .map(|p| Policy {
                    percent: p.type_ == "Percent",
                    value: p.value,
                    period_s: p.period_seconds,
                })
                .collect()
        })
        .unwrap_or(default);
    let select = match r.and_then(|r| r.select_policy.as_deref()) {
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        _ => Select::Max,
    };
    Rules {
        window_s: r
            .and_then(|r| r.stabilization_window_seconds)
            .unwrap_or(window_s),
        select,
        policies,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScaleEvent {
    change: i32,
    ts_ms: i64,
    outdated: bool,
}

/// What the controller remembers of one HPA between syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Recent recommendations: replicas and when.
    recommendations: Vec<(i32, i64)>,
    ups: Vec<ScaleEvent>,
    downs: Vec<ScaleEvent>,
}

/// A condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub status: bool,
    pub reason: &'static str,
    pub message: &'static str,
}

/// The normalized count and the conditions it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Cond,
    pub scaling_limited: Cond,
}

/// The bounds and counts one normalization works with.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub current: i32,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
}

const READY: Cond = Cond {
    status: true,
    reason: "ReadyForNewScale",
    message: "recommended size matches current size",
};
const DOWN_STABILIZED: Cond = Cond {
    status: true,
    reason: "ScaleDownStabilized",
    message: "recent recommendations were higher than current one, applying the highest recent recommendation",
};
const UP_STABILIZED: Cond = Cond {
    status: true,
    reason: "ScaleUpStabilized",
    message: "recent recommendations were lower than current one, applying the lowest recent recommendation",
};
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

impl Memory {
    /// Normalizes `c.desired` as upstream: with `behavior` when the HPA has one, else with
    /// the legacy rules and a `down_window_s` scale-down stabilization.
    pub fn normalize(
        &mut self,
        behavior: Option<&Behavior>,
        c: Counts,
        down_window_s: i32,
        now_ms: i64,
    ) -> Normalized {
        let (stabilized, stabilized_cond) = match behavior {
            None => self.stabilize_legacy(c.desired, down_window_s, now_ms),
            Some(b) => self.stabilize(b, c, now_ms),
        };
        let able_to_scale = if stabilized != c.desired {
            stabilized_cond
        } else {
            READY
        };
        let (replicas, (reason, message)) = match behavior {
            None => legacy_limits(c.current, stabilized, c.min, c.max),
            Some(b) => self.rate_limits(
                b,
                Counts {
                    desired: stabilized,
                    ..c
                },
                now_ms,
            ),
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: Cond {
                status: replicas != stabilized,
                reason,
                message,
            },
        }
    }

    fn stabilize_legacy(&mut self, desired: i32, window_s: i32, now_ms: i64) -> (i32, Cond) {
        let cutoff = now_ms - i64::from(window_s) * 1000;
        self.recommendations.retain(|(_, ts)| *ts >= cutoff);
        let best = self
            .recommendations
            .iter()
            .map(|(r, _)| *r)
            .fold(desired, i32::max);
        self.recommendations.push((desired, now_ms));
        (best, DOWN_STABILIZED)
    }

    fn stabilize(&mut self, b: &Behavior, c: Counts, now_ms: i64) -> (i32, Cond) {
        let up = c.desired >= c.current;
        let (window_s, cond) = if up {
            (b.up.window_s, UP_STABILIZED)
        } else {
            (b.down.window_s, DOWN_STABILIZED)
        };
        let cutoff = now_ms - i64::from(window_s) * 1000;
        let mut best = c.desired;
        for (r, ts) in &self.recommendations {
            if *ts > cutoff {
                best = if up { best.min(*r) } else { best.max(*r) };
            }
        }
        let longest = i64::from(b.up.window_s.max(b.down.window_s)) * 1000;
        self.recommendations
            .retain(|(_, ts)| *ts >= now_ms - longest);
        self.recommendations.push((c.desired, now_ms));
        (best, cond)
    }

    fn rate_limits(
        &self,
        b: &Behavior,
        c: Counts,
        now_ms: i64,
    ) -> (i32, (&'static str, &'static str)) {
        if c.desired > c.current {
            let limit = self.up_limit(&b.up, c.current, now_ms).max(c.current);
            let (max, why) = if c.max > limit {
                (limit, UP_LIMIT)
            } else {
                (c.max, TOO_MANY)
            };
            if c.desired > max {
                return (max, why);
            }
        } else if c.desired < c.current {
            let limit = self.down_limit(&b.down, c.current, now_ms).min(c.current);
            let (min, why) = if c.min < limit {
                (limit, DOWN_LIMIT)
            } else {
                (c.min, TOO_FEW)
            };
            if c.desired < min {
                return (min, why);
            }
        }
        (c.desired, WITHIN)
    }

    /// Replicas at the start of a period: now's, less what was added and plus what was
    /// removed within it.
    fn period_start(&self, current: i32, period_s: i32, now_ms: i64) -> i32 {
        let cutoff = now_ms - i64::from(period_s) * 1000;
        let sum = |events: &[ScaleEvent]| -> i32 {
            events
                .iter()
                .filter(|e| e.ts_ms > cutoff && !e.outdated)
                .map(|e| e.change)
                .sum()
        };
        current - sum(&self.ups) + sum(&self.downs)
    }

    fn up_limit(&self, rules: &Rules, current: i32, now_ms: i64) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, p.period_s, now_ms);
            if p.percent {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            } else {
                start.saturating_add(p.value)
            }
        });
        match rules.select {
            Select::Disabled => current,
            Select::Min => proposals.min().unwrap_or(i32::MAX),
            Select::Max => proposals.max().unwrap_or(i32::MIN),
        }
    }

    fn down_limit(&self, rules: &Rules, current: i32, now_ms: i64) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, p.period_s, now_ms);
            if p.percent {
                (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
            } else {
                start - p.value
            }
        });
        match rules.select {
            Select::Disabled => current,
            Select::Min => proposals.max().unwrap_or(i32::MIN),
            Select::Max => proposals.min().unwrap_or(i32::MAX),
        }
    }

    /// Remembers a rescale from `prev` to `new` (only HPAs with a behavior keep events).
    pub fn record_scale(&mut self, behavior: Option<&Behavior>, prev: i32, new: i32, now_ms: i64) {
        let Some(b) = behavior else {
            return;
        };
        let up = new > prev;
        let longest = i64::from(b.longest_period_s(up)) * 1000;
        let (events, others) = if up {
            (&mut self.ups, &mut self.downs)
        } else {
            (&mut self.downs, &mut self.ups)
        };
        events.retain(|e| e.ts_ms >= now_ms - longest);
        events.push(ScaleEvent {
            change: (new - prev).abs(),
            ts_ms: now_ms,
            outdated: false,
        });
        for e in others.iter_mut() {
            e.outdated = true;
        }
    }
}

/// Without a behavior: at most double (at least 4) per sync, within min and max.
fn legacy_limits(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, (&'static str, &'static str)) {
    let scale_up_limit = current.saturating_mul(2).max(4);
    let (max_allowed, why) = if max > scale_up_limit {
        (scale_up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    if desired < min {
        (min, TOO_FEW)
    } else if desired > max_allowed {
        (max_allowed, why)
    } else {
        (desired, WITHIN)
    }
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;
