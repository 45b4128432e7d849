//! Events: one per condition that turns bad, typed by its reason's severity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::Context;
use crate::plan::conditions;
use crate::plan::{Reason, Severity};

/// The Event a condition reason deserves: a Warning for what the user must fix, a
/// Normal one for what they should know, none for passing states (readiness, rollouts).
fn event_type(reason: &str) -> Option<EventType> {
    match Reason::parse(reason)?.severity() {
        Severity::Warning => Some(EventType::Warning),
        Severity::Notice => Some(EventType::Normal),
        Severity::Quiet => None,
    }
}

/// Publishes one Event per reason among the conditions that turned bad since `previous`.
pub(super) async fn report_problems<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    previous: &[Condition],
    current: &[Condition],
    bad_when_true: &[&str],
) {
    let mut reported = std::collections::BTreeSet::new();
    for failing in conditions::newly_failing(previous, current, bad_when_true) {
        let Some(type_) = event_type(&failing.reason) else {
            continue;
        };
        // Two conditions often fail for one reason: one Event says it.
        if reported.insert(failing.reason.clone()) {
            event(
                ctx,
                object,
                type_,
                &failing.reason,
                "Reconcile",
                failing.message.clone(),
            )
            .await;
        }
    }
}

/// Publishes an Event about `object`; a failure to do so is only logged.
pub(super) async fn event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_for_what_to_fix_notices_for_what_to_know_nothing_for_passing_states() {
        assert_eq!(event_type("SecretNotFound"), Some(EventType::Warning));
        assert_eq!(event_type("MissingRoles"), Some(EventType::Normal));
        assert_eq!(event_type("RollingOut"), None);
        assert_eq!(event_type("SomethingElse"), None);
    }
}
