//! Carries out a zoned pool's rollout ([`crate::plan::zone_rollout`] decides): reads
//! which pods of each zone are still on an earlier template, and deletes a whole zone's
//! when the decision says so; their StatefulSet (`OnDelete`) recreates them on the new
//! one.
//!
//! Pods are read only while some zone is not rolled out: a settled pool costs no read.

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
use crate::api::WorkerPool;
use crate::plan::zone_rollout::{
    DEFAULT_ZONE_TIMEOUT, RolloutDecision, RolloutInputs, ZoneSeen, decide,
};
use crate::render::zones::ZONE;

/// The label the StatefulSet controller puts on each pod: the revision it was made from.
const REVISION: &str = "controller-revision-hash";

/// One step of the rollout of `statefulsets` (as just applied, in zone order).
pub(super) async fn step(
    ctx: &Context,
    pool: &WorkerPool,
    statefulsets: &[StatefulSet],
    scaling_down: bool,
) -> Result<RolloutDecision> {
    let mut zones: Vec<ZoneSeen> = statefulsets.iter().map(zone_seen).collect();
    let settled = zones
        .iter()
        .all(|z| z.current && z.updated >= z.replicas && z.ready >= z.replicas);
    if !settled {
        mark_outdated(ctx, pool, statefulsets, &mut zones).await?;
    }
    let timeout = pool
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.zone_timeout_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_ZONE_TIMEOUT, Duration::from_secs);
    let decision = decide(&RolloutInputs {
        zones: &zones,
        previous: pool.status.as_ref().and_then(|s| s.rollout.as_ref()),
        scaling_down,
        timeout,
        now: &Time(Timestamp::now()),
    });
    if let Some((zone, pods)) = &decision.replace {
        replace(ctx, pool, zone, pods).await?;
    }
    Ok(decision)
}

fn zone_seen(sts: &StatefulSet) -> ZoneSeen {
    let status = sts.status.clone().unwrap_or_default();
    ZoneSeen {
        name: sts.labels().get(ZONE).cloned().unwrap_or_default(),
        replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        current: status.observed_generation == sts.metadata.generation
            && status.update_revision.is_some(),
        outdated: Vec::new(),
    }
}

/// Fills each zone's pods that run an earlier revision than its StatefulSet's latest.
async fn mark_outdated(
    ctx: &Context,
    pool: &WorkerPool,
    statefulsets: &[StatefulSet],
    zones: &mut [ZoneSeen],
) -> Result<()> {
    let pods = read::pool_pods(&ctx.client, pool).await?;
    for (zone, sts) in zones.iter_mut().zip(statefulsets) {
        let Some(latest) = sts.status.as_ref().and_then(|s| s.update_revision.clone()) else {
            continue;
        };
        let mut outdated: Vec<String> = pods
            .iter()
            .filter(|p| p.labels().get(ZONE) == Some(&zone.name))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.labels().get(REVISION).is_some_and(|r| *r != latest))
            .map(ResourceExt::name_any)
            .collect();
        outdated.sort();
        zone.outdated = outdated;
    }
    Ok(())
}

/// Deletes a zone's outdated pods together, each only as the incarnation that was read
/// (a pod already recreated on the new template is left alone).
async fn replace(ctx: &Context, pool: &WorkerPool, zone: &str, pods: &[String]) -> Result<()> {
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for pod in pods {
        let Some(found) = api
            .get_opt(pod)
            .await
            .map_err(Error::read(format!("pod {ns}/{pod}")))?
        else {
            continue;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: found.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(pod, &params).await {
            Ok(_) => {}
            // Gone already, or replaced since it was read: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(source) => {
                return Err(Error::Delete {
                    kind: "Pod".into(),
                    name: format!("{ns}/{pod}"),
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
            pods.join(", ")
        ),
    )
    .await;
    Ok(())
}
