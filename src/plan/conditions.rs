//! Condition bookkeeping: a condition's `lastTransitionTime` moves only when its status
//! does, so an unchanged world gives an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Reason;
use crate::api::condition_status::{FALSE, TRUE};

/// What a reconcile concluded about one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The new condition list: each observed condition, keeping the previous transition
/// time when its status did not change. Conditions not observed are dropped.
pub fn merge(
    previous: &[Condition],
    observed: Vec<Observed>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|o| {
            let status = if o.status { TRUE } else { FALSE };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == o.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: o.type_.to_string(),
                status: status.to_string(),
                reason: o.reason.as_str().to_string(),
                message: o.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Conditions that turned to a problem since `previous`: the ones worth an Event.
/// `bad_when_true` names the types for which True is the problem (Degraded).
pub fn newly_failing<'a>(
    previous: &[Condition],
    current: &'a [Condition],
    bad_when_true: &[&str],
) -> Vec<&'a Condition> {
    current
        .iter()
        .filter(|c| {
            let bad = if bad_when_true.contains(&c.type_.as_str()) {
                TRUE
            } else {
                FALSE
            };
            c.status == bad
                && !previous
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid"))
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let first = merge(
            &[],
            vec![Observed::new(
                "Ready",
                false,
                Reason::ReplicasNotReady,
                "0/1",
            )],
            Some(1),
            &at(10),
        );
        let same = merge(
            &first,
            vec![Observed::new(
                "Ready",
                false,
                Reason::ReplicasNotReady,
                "0/1",
            )],
            Some(1),
            &at(20),
        );
        assert_eq!(first, same);
        let flipped = merge(
            &same,
            vec![Observed::new(
                "Ready",
                true,
                Reason::AllReplicasReady,
                "1/1",
            )],
            Some(1),
            &at(30),
        );
        assert_eq!(flipped[0].last_transition_time, at(30));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn only_new_problems_are_reported() {
        let before = merge(
            &[],
            vec![Observed::new(
                "Consistent",
                true,
                Reason::AllRequiredRolesPresent,
                "",
            )],
            None,
            &at(1),
        );
        let after = merge(
            &before,
            vec![
                Observed::new("Consistent", false, Reason::MissingRoles, "ruler"),
                Observed::new("Degraded", true, Reason::PoolsNotReady, "read"),
            ],
            None,
            &at(2),
        );
        let failing: Vec<_> = newly_failing(&before, &after, &["Degraded"])
            .into_iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(failing, ["Consistent", "Degraded"]);
        assert!(newly_failing(&after, &after, &["Degraded"]).is_empty());
    }
}
