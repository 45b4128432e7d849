//! Carries out a zoned pool's rollout ([`crate::plan::zone_rollout`] decides): reads
//! which pods of each zone are still on an earlier template, and deletes a whole zone's
//! when the decision says so; their StatefulSet (`OnDelete`) recreates them on the new
//! one.
//!
//! The pool's pods are read on each step of a zoned pool (one list).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::events::EventType;

use super::error::{Error, Result};
use super::events::event;
use super::{Context, read};
use crate::api::{WorkerPool, ZoneRolloutStatus};
use crate::plan::zone_rollout::{
    DEFAULT_ZONE_TIMEOUT, RolloutDecision, RolloutInputs, ZoneSeen, decide,
};
use crate::render::zones::ZONE;

/// The label the StatefulSet controller puts on each pod: the revision it was made from.
const REVISION: &str = "controller-revision-hash";

/// The rollout status each pool was last written with, by pool UID: the operator's own
/// memory, fresher than the watch cache. A reconcile that read the pool from a cache
/// still behind its previous status write took the rollout for not started, chose zone
/// a while zone b was being rolled, and stayed on zone a waiting for zone b for good
/// (seen once in `make test`).
#[derive(Default)]
pub struct Rollouts(Mutex<HashMap<String, Option<ZoneRolloutStatus>>>);

impl Rollouts {
    /// Records the rollout status `pool` was just written with.
    pub(super) fn written(&self, pool: &WorkerPool, rollout: Option<&ZoneRolloutStatus>) {
        let mut written = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        written.insert(pool.uid().unwrap_or_default(), rollout.cloned());
    }

    /// The rollout status `pool` was last written with by this process, if it wrote one.
    fn last(&self, pool: &WorkerPool) -> Option<Option<ZoneRolloutStatus>> {
        let written = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        written.get(&pool.uid().unwrap_or_default()).cloned()
    }
}

/// What one step of a zoned pool's rollout decided and saw.
pub(super) struct RolloutStep {
    pub decision: RolloutDecision,
    /// Zones with a worker missing, going or not Ready, and the zone being replaced:
    /// the others' disruption budgets must allow none.
    pub disrupted: Vec<String>,
}

/// One step of the rollout of `statefulsets` (as just applied, in zone order). The
/// pods are read every time: a StatefulSet counts a pod that is going as Ready until
/// its readiness probe fails, which would hide a zone being drained.
pub(super) async fn step(
    ctx: &Context,
    pool: &WorkerPool,
    statefulsets: &[StatefulSet],
    scaling_down: bool,
) -> Result<RolloutStep> {
    let pods = read::pool_pods(&ctx.client, pool).await?;
    let zones: Vec<ZoneSeen> = statefulsets
        .iter()
        .map(|sts| zone_seen(sts, &pods))
        .collect();
    let timeout = pool
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.zone_timeout_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_ZONE_TIMEOUT, Duration::from_secs);
    let remembered = ctx.rollouts.last(pool);
    let previous = match &remembered {
        Some(written) => written.as_ref(),
        None => pool.status.as_ref().and_then(|s| s.rollout.as_ref()),
    };
    let decision = decide(&RolloutInputs {
        zones: &zones,
        previous,
        scaling_down,
        timeout,
        now: &Time(Timestamp::now()),
    });
    let mut disrupted: Vec<String> = zones
        .iter()
        .filter(|z| z.ready < z.replicas)
        .map(|z| z.name.clone())
        .collect();
    if let Some((zone, names)) = &decision.replace {
        let doomed: Vec<&Pod> = pods
            .iter()
            .filter(|p| names.contains(&p.name_any()))
            .collect();
        replace(ctx, pool, zone, &doomed).await?;
        disrupted.push(zone.clone());
    }
    Ok(RolloutStep {
        decision,
        disrupted,
    })
}

/// A zone as its StatefulSet and its pods show it: Ready pods that are not going, and
/// pods of an earlier revision than the StatefulSet's latest (none while its status is
/// stale).
fn zone_seen(sts: &StatefulSet, pods: &[Pod]) -> ZoneSeen {
    let status = sts.status.clone().unwrap_or_default();
    let name = sts.labels().get(ZONE).cloned().unwrap_or_default();
    let in_zone: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.labels().get(ZONE) == Some(&name))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = in_zone.iter().filter(|p| is_ready(p)).count();
    let mut outdated: Vec<String> = match &status.update_revision {
        Some(latest) => in_zone
            .iter()
            .filter(|p| p.labels().get(REVISION).is_some_and(|r| r != latest))
            .map(|p| p.name_any())
            .collect(),
        None => Vec::new(),
    };
    outdated.sort();
    ZoneSeen {
        replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
        updated: status.updated_replicas.unwrap_or(0),
        current: status.observed_generation == sts.metadata.generation
            && status.update_revision.is_some(),
        outdated,
        name,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes a zone's outdated pods together, each only as the incarnation that was read
/// (a pod already recreated on the new template is left alone).
async fn replace(ctx: &Context, pool: &WorkerPool, zone: &str, pods: &[&Pod]) -> Result<()> {
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for pod in pods {
        let name = pod.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            // Gone already, or replaced since it was read: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: "Pod".into(),
                    name: format!("{ns}/{name}"),
                    source,
                });
            }
        }
    }
    event(
        ctx,
        pool,
        EventType::Normal,
        "ZoneRolling",
        "Rollout",
        format!(
            "zone {zone}: replacing {} on the previous pod template",
            pods.iter()
                .map(|p| p.name_any())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await;
    Ok(())
}
