//! The Job's pod failure policy and success policy, as upstream's `matchPodFailurePolicy` and
//! `matchSuccessPolicy`.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

use super::{indexes, pods};

/// What a failure policy rule says about a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched, or a `Count` rule: the failure counts towards the backoff limit.
    Count,
    /// `Ignore`: the failure does not count.
    Ignore,
    /// `FailJob`, with the condition message.
    FailJob(String),
    /// `FailIndex`: the pod's index fails at once.
    FailIndex,
}

/// Applies the Job's pod failure policy to a failed pod.
pub fn judge_failure(job: &Job, pod: &Pod) -> Verdict {
    let Some(policy) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    else {
        return Verdict::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(what) = rule_matches(rule, pod) else {
            continue;
        };
        let message = match what {
            Match::Exit(container, code) => format!(
                "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                rule.action
            ),
            Match::Condition(type_) => format!(
                "Pod {ns}/{name} has condition {type_} matching {} rule at index {i}",
                rule.action
            ),
        };
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(message),
            "Ignore" => Verdict::Ignore,
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

enum Match {
    Exit(String, i32),
    Condition(String),
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<Match> {
    if let Some(req) = &rule.on_exit_codes {
        let codes = pods::exit_codes(pod);
        let hit = codes.into_iter().find(|(container, code)| {
            let right_container = req.container_name.as_ref().is_none_or(|n| n == container);
            let listed = req.values.contains(code);
            let op = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            right_container && *code != 0 && op
        });
        return hit.map(|(c, code)| Match::Exit(c, code));
    }
    let conditions = pods::conditions(pod);
    rule.on_pod_conditions.iter().flatten().find_map(|pattern| {
        let want = pattern.status.as_str();
        (conditions.get(&pattern.type_).map(String::as_str) == Some(want))
            .then(|| Match::Condition(pattern.type_.clone()))
    })
}

/// The first success policy rule `succeeded` meets, with upstream's condition message.
pub fn success_policy_met(job: &Job, succeeded: &BTreeSet<i32>) -> Option<String> {
    let spec = job.spec.as_ref()?;
    let completions = spec.completions.unwrap_or(0);
    let policy = spec.success_policy.as_ref()?;
    policy.rules.iter().enumerate().find_map(|(i, rule)| {
        let wanted: BTreeSet<i32> = match rule.succeeded_indexes.as_deref() {
            Some(s) => indexes::parse(Some(s), completions),
            None => (0..completions).collect(),
        };
        let done = wanted.intersection(succeeded).count();
        let met = match rule.succeeded_count {
            Some(n) => done >= usize::try_from(n).unwrap_or(usize::MAX),
            None => done == wanted.len(),
        };
        met.then(|| format!("Matched rules at index {i}"))
    })
}
