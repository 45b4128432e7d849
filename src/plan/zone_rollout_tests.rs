use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + second).expect("time"))
}

/// A zone of two workers: `ready` Ready, `outdated` of them on the previous template.
fn zone(name: &str, ready: i32, outdated: usize) -> ZoneSeen {
    ZoneSeen {
        name: name.into(),
        replicas: 2,
        ready,
        updated: 2 - i32::try_from(outdated).expect("small"),
        current: true,
        outdated: (0..outdated).map(|i| format!("p-{name}-{i}")).collect(),
    }
}

fn decide_at(
    zones: &[ZoneSeen],
    previous: Option<&ZoneRolloutStatus>,
    now: i64,
) -> RolloutDecision {
    decide(&RolloutInputs {
        zones,
        previous,
        scaling_down: false,
        timeout: Duration::from_secs(60),
        now: &at(now),
    })
}

fn on(zone: &str, since: i64) -> ZoneRolloutStatus {
    ZoneRolloutStatus {
        zone: zone.into(),
        started_at: at(since),
    }
}

#[test]
fn a_settled_pool_does_nothing_and_says_so() {
    let zones = [zone("a", 2, 0), zone("b", 2, 0), zone("c", 2, 0)];
    let d = decide_at(&zones, None, 0);
    assert_eq!(d.replace, None);
    assert_eq!(d.status, None);
    assert!(!d.condition.status);
    assert_eq!(d.condition.reason, Reason::ZonesRolledOut);
    assert_eq!(d.requeue, None);
}

#[test]
fn a_new_template_replaces_the_whole_first_zone_at_once() {
    let zones = [zone("a", 2, 2), zone("b", 2, 2), zone("c", 2, 2)];
    let d = decide_at(&zones, None, 0);
    assert_eq!(
        d.replace,
        Some(("a".into(), vec!["p-a-0".into(), "p-a-1".into()]))
    );
    assert_eq!(d.status, Some(on("a", 0)));
    assert_eq!(d.condition.reason, Reason::RollingZone);
    assert!(
        d.condition.message.contains("zone a (1 of 3)"),
        "{}",
        d.condition.message
    );
}

#[test]
fn the_next_zone_waits_until_the_one_rolled_is_ready_again() {
    // Zone a's pods were replaced and are starting: b is not touched.
    let zones = [zone("a", 0, 0), zone("b", 2, 2), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("a", 0)), 10);
    assert_eq!(d.replace, None);
    assert_eq!(d.status, Some(on("a", 0)));
    assert!(
        d.condition.message.contains("0/2 workers Ready"),
        "{}",
        d.condition.message
    );
    // Ready again: b goes, with a new start time.
    let zones = [zone("a", 2, 0), zone("b", 2, 2), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("a", 0)), 20);
    assert_eq!(d.replace.map(|(zone, _)| zone), Some("b".into()));
    assert_eq!(d.status, Some(on("b", 20)));
}

#[test]
fn no_zone_is_replaced_while_another_is_down() {
    // Zone c lost a worker on its own (a node went; the StatefulSet made it again, on
    // the latest template): b waits, so two zones are never down at once.
    let zones = [zone("a", 2, 0), zone("b", 2, 2), zone("c", 1, 0)];
    let d = decide_at(&zones, Some(&on("b", 0)), 5);
    assert_eq!(d.replace, None);
    assert!(
        d.condition.message.contains("waits for zone c"),
        "{}",
        d.condition.message
    );
}

#[test]
fn a_zone_down_with_outdated_pods_is_replaced_first() {
    // The rollout is on a, but b is down with a pod of the previous template that only
    // the new one can bring back (a fixed nodeSelector): b goes, as it is down already.
    let zones = [zone("a", 2, 2), zone("b", 1, 1), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("a", 0)), 5);
    assert_eq!(d.replace, Some(("b".into(), vec!["p-b-0".into()])));
    // Two zones down: nothing is replaced.
    let zones = [zone("a", 1, 2), zone("b", 1, 1), zone("c", 2, 2)];
    assert_eq!(decide_at(&zones, Some(&on("a", 0)), 5).replace, None);
}

#[test]
fn a_lost_node_is_no_rollout() {
    // Every pod on the latest template, one not Ready: nothing to roll, no Warning later.
    let zones = [zone("a", 2, 0), zone("b", 1, 0), zone("c", 2, 0)];
    let d = decide_at(&zones, Some(&on("b", 0)), 10_000);
    assert_eq!(
        (d.condition.status, d.condition.reason),
        (false, Reason::ZonesRolledOut)
    );
    assert!(
        d.condition.message.contains("b 1/2 Ready"),
        "{}",
        d.condition.message
    );
    assert_eq!(d.status, None);
}

#[test]
fn a_zone_that_stays_unready_stops_the_rollout_with_a_warning() {
    let zones = [zone("a", 2, 0), zone("b", 1, 0), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("b", 0)), 59);
    assert_eq!(d.condition.reason, Reason::RollingZone);
    let d = decide_at(&zones, Some(&on("b", 0)), 61);
    assert_eq!(d.replace, None, "zone c keeps its pods");
    assert!(d.condition.status);
    assert_eq!(d.condition.reason, Reason::ZoneRolloutStalled);
    assert_eq!(
        Reason::ZoneRolloutStalled.severity(),
        crate::api::Severity::Warning
    );
    assert!(
        d.condition.message.contains("zone b (2 of 3)"),
        "{}",
        d.condition.message
    );
    // Once b is Ready, c goes on.
    let zones = [zone("a", 2, 0), zone("b", 2, 0), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("b", 0)), 300);
    assert_eq!(d.replace.map(|(zone, _)| zone), Some("c".into()));
    assert_eq!(d.condition.reason, Reason::RollingZone);
}

#[test]
fn stale_revisions_and_scale_downs_hold_the_replacement() {
    let mut zones = [zone("a", 2, 2), zone("b", 2, 0), zone("c", 2, 0)];
    zones[0].current = false;
    assert_eq!(decide_at(&zones, None, 0).replace, None);
    zones[0].current = true;
    let d = decide(&RolloutInputs {
        zones: &zones,
        previous: None,
        scaling_down: true,
        timeout: Duration::from_secs(60),
        now: &at(0),
    });
    assert_eq!(d.replace, None);
    assert!(
        d.condition.message.contains("scale-down"),
        "{}",
        d.condition.message
    );
}

#[test]
fn a_zone_rolled_before_a_restart_is_gone_on_with() {
    // The operator restarted with zone b recorded: b, not a, is the one looked at,
    // even if a shows an outdated pod (a node replaced it from an old revision).
    let zones = [zone("a", 2, 1), zone("b", 1, 0), zone("c", 2, 2)];
    let d = decide_at(&zones, Some(&on("b", 0)), 5);
    assert_eq!(d.status, Some(on("b", 0)));
    assert_eq!(d.replace, None);
}

/// Every reason `decide` gives, each from a state that gives it.
pub(crate) fn reasons_reached() -> Vec<Reason> {
    let settled = [zone("a", 2, 0), zone("b", 2, 0), zone("c", 2, 0)];
    let stuck = [zone("a", 2, 0), zone("b", 1, 0), zone("c", 2, 2)];
    vec![
        decide_at(&settled, None, 0).condition.reason,
        decide_at(&stuck, Some(&on("b", 0)), 1).condition.reason,
        decide_at(&stuck, Some(&on("b", 0)), 100).condition.reason,
    ]
}
