//! Zone-by-zone rollouts of a zoned pool (ADR 14), decided as a pure function of what
//! the zones' StatefulSets and pods show.
//!
//! Each zone's StatefulSet has the `OnDelete` strategy: a new pod template changes no
//! pod until the operator deletes it. The operator takes the zones in order and
//! replaces all the outdated pods of one zone at once, but only while every other zone
//! is Ready, and goes to the next zone only once that one is Ready again on the new
//! template. So at most one zone is ever down for a rollout, and with one copy of each
//! piece of data per zone, no data and no write is lost.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Reason;
use super::conditions::Observed;
use super::scale_down::elapsed;
use crate::api::ZoneRolloutStatus;

/// The condition of a zoned pool's rollout: True while one is under way.
pub const PROGRESSING: &str = "Progressing";
/// How long a zone may take to be Ready again, unless the pool says otherwise.
pub const DEFAULT_ZONE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a rollout under way is looked at besides the StatefulSets' own changes.
pub const POLL: Duration = Duration::from_secs(5);

/// One zone as its StatefulSet and pods show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSeen {
    pub name: String,
    /// The StatefulSet's desired workers.
    pub replicas: i32,
    pub ready: i32,
    /// Workers on the latest pod template.
    pub updated: i32,
    /// The StatefulSet controller has seen the latest spec (else its revisions are stale).
    pub current: bool,
    /// Pods still on an earlier template and not already going.
    pub outdated: Vec<String>,
}

impl ZoneSeen {
    fn is_ready(&self) -> bool {
        self.ready >= self.replicas
    }

    fn is_rolled_out(&self) -> bool {
        self.current && self.is_ready() && self.updated >= self.replicas && self.outdated.is_empty()
    }
}

/// What to do in one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutDecision {
    /// The zone whose pods to delete now, and the pods.
    pub replace: Option<(String, Vec<String>)>,
    pub status: Option<ZoneRolloutStatus>,
    pub condition: Observed,
    pub requeue: Option<Duration>,
}

/// What a decision is made from.
#[derive(Debug, Clone)]
pub struct RolloutInputs<'a> {
    /// In rollout order.
    pub zones: &'a [ZoneSeen],
    pub previous: Option<&'a ZoneRolloutStatus>,
    /// A scale-down is under way: no pod is replaced until it is over.
    pub scaling_down: bool,
    pub timeout: Duration,
    pub now: &'a Time,
}

pub fn decide(inputs: &RolloutInputs) -> RolloutDecision {
    let zones = inputs.zones;
    let Some(index) = zone_to_roll(inputs) else {
        let unready: Vec<String> = zones
            .iter()
            .filter(|z| !z.is_ready())
            .map(|z| format!("{} {}/{} Ready", z.name, z.ready, z.replicas))
            .collect();
        let message = if unready.is_empty() {
            format!(
                "all {} zones run the latest pod template and are Ready",
                zones.len()
            )
        } else {
            format!(
                "all {} zones run the latest pod template; not a rollout: {}",
                zones.len(),
                unready.join(", ")
            )
        };
        return RolloutDecision {
            replace: None,
            status: None,
            condition: Observed::new(PROGRESSING, false, Reason::ZonesRolledOut, message),
            requeue: None,
        };
    };
    let zone = &zones[index];
    let started_at = match inputs.previous {
        Some(p) if p.zone == zone.name => p.started_at.clone(),
        _ => inputs.now.clone(),
    };
    let elapsed = elapsed(&started_at, inputs.now);
    let (replace, waiting_for) = next_move(inputs, index);
    let stalled = replace.is_none() && elapsed >= inputs.timeout;
    let condition = if stalled {
        Observed::new(
            PROGRESSING,
            true,
            Reason::ZoneRolloutStalled,
            // No elapsed time in the message: a status that changes every poll would be
            // rewritten every poll (the condition's lastTransitionTime says since when).
            format!(
                "{waiting_for}, past the zone timeout of {} s: the rollout stops there until it is Ready; the other zones keep their template",
                inputs.timeout.as_secs()
            ),
        )
    } else {
        Observed::new(PROGRESSING, true, Reason::RollingZone, waiting_for)
    };
    RolloutDecision {
        replace,
        status: Some(ZoneRolloutStatus {
            zone: zone.name.clone(),
            started_at,
        }),
        condition,
        requeue: Some(if stalled {
            POLL * 6
        } else {
            POLL.min(
                inputs
                    .timeout
                    .saturating_sub(elapsed)
                    .max(Duration::from_secs(1)),
            )
        }),
    }
}

/// The zone to work on, `None` when no rollout is under way (every zone on its latest
/// template, Ready or not: a lost node is not a rollout). A zone that is down and still
/// has outdated pods comes first when it is the only one down: its pods can only come
/// back on the new template, and replacing them takes no second zone down. Else the zone
/// the rollout is on, else the first one not rolled out.
fn zone_to_roll(inputs: &RolloutInputs) -> Option<usize> {
    let zones = inputs.zones;
    let rolling = zones
        .iter()
        .any(|z| !z.current || !z.outdated.is_empty() || z.updated < z.replicas);
    if !rolling {
        return None;
    }
    let down: Vec<usize> = (0..zones.len()).filter(|&i| !zones[i].is_ready()).collect();
    if let [only] = down[..]
        && zones[only].current
        && !zones[only].outdated.is_empty()
    {
        return Some(only);
    }
    inputs
        .previous
        .and_then(|p| zones.iter().position(|z| z.name == p.zone))
        .filter(|&i| !zones[i].is_rolled_out())
        .or_else(|| zones.iter().position(|z| !z.is_rolled_out()))
}

/// Whether zone `index`'s outdated pods go now, and what the rollout waits for.
fn next_move(inputs: &RolloutInputs, index: usize) -> (Option<(String, Vec<String>)>, String) {
    let zones = inputs.zones;
    let zone = &zones[index];
    let position = format!("zone {} ({} of {})", zone.name, index + 1, zones.len());
    let unready_other = zones
        .iter()
        .filter(|z| z.name != zone.name && !z.is_ready())
        .map(|z| z.name.as_str())
        .collect::<Vec<_>>();
    if !zone.current || zone.outdated.is_empty() {
        let state = format!(
            "{position}: {}/{} workers Ready, {} on the latest template",
            zone.ready, zone.replicas, zone.updated
        );
        (None, state)
    } else if inputs.scaling_down {
        (
            None,
            format!("{position} waits for the scale-down under way to end"),
        )
    } else if !unready_other.is_empty() {
        let state = format!(
            "{position} waits for zone {} to be Ready: two zones are never down at once",
            unready_other.join(", ")
        );
        (None, state)
    } else {
        let state = format!(
            "{position}: replacing {} worker(s) on the previous template",
            zone.outdated.len()
        );
        (Some((zone.name.clone(), zone.outdated.clone())), state)
    }
}

#[cfg(test)]
#[path = "zone_rollout_tests.rs"]
pub(crate) mod tests;
