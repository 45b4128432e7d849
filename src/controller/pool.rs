//! Reconciles a WorkerPool: read its cluster, configuration and Secrets, plan (pure, in
//! [`crate::plan::pool`]), apply or remove its workload, write the status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

use super::apply::{Kept, Owner, apply_kept, apply_kept_read, apply_status, get_opt, prune};
use super::context::{guarded, retry};
use super::error::{Error, Result};
use super::events::report_problems;
use super::{Context, read, scale_down, zone_rollout};
use crate::api::{GrafanaCluster, Reason, WorkerPool, WorkerPoolStatus};
use crate::plan::pool::condition::{PROGRESSING, SCALING_DOWN};
use crate::plan::pool::{Blocked, PoolAction, PoolInputs, plan};
use crate::plan::secrets::{self, StorageSecrets};
use crate::plan::zone_rollout::RolloutDecision;
use crate::render::ClusterView;
use crate::render::labels::POOL;
use crate::render::workers::Workers;
use crate::render::zones::PoolLayout;

pub(super) const CONTROLLER: &str = "workerpool";
/// How often a pool waiting on a name clash looks again.
const NAME_CLASH_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn reconcile(
    guard: Arc<DeserializeGuard<WorkerPool>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    guarded(&guard, &ctx, CONTROLLER, |pool| reconcile_pool(pool, &ctx)).await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<WorkerPool>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    retry(&guard, error, &ctx, CONTROLLER)
}

async fn reconcile_pool(pool: &WorkerPool, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = pool.namespace().unwrap_or_default();

    // Read.
    let cluster: Option<GrafanaCluster> = match ctx.cached_cluster(&ns, &pool.spec.cluster_ref) {
        Some(cached) => cached,
        None => get_opt(client, &ns, &pool.spec.cluster_ref).await?,
    };
    let (config, storage) = match &cluster {
        Some(cluster) => read_cluster_inputs(ctx, cluster).await?,
        None => (None, StorageSecrets::default()),
    };

    // Plan.
    let siblings = ctx.cached_clash_candidates(&ns, pool);
    let mut plan = plan(&PoolInputs {
        pool,
        cluster: cluster.as_ref(),
        config: config.as_ref(),
        storage: &storage,
        siblings: &siblings,
    });

    // Apply: the StatefulSets get the replicas the scale-down step decides; a zoned
    // pool's rollout step then replaces the pods of at most one zone.
    let mut scale = None;
    let mut rollout = None;
    let statefulsets = match &mut plan.action {
        PoolAction::Apply(workers) => {
            let decision = scale_down::step(ctx, pool).await?;
            workers.set_replicas(decision.replicas);
            let scaling_down = decision.status.is_some();
            let (applied, rolled) = apply_workers(ctx, pool, workers, scaling_down).await?;
            ctx.leaves
                .applied(&pool.uid().unwrap_or_default(), decision.replicas);
            rollout = rolled;
            scale = Some(decision);
            applied
        }
        PoolAction::Remove => {
            prune_workload(ctx, pool, &Kept::of::<WorkerPool>(), true).await?;
            Vec::new()
        }
        // Only a workload left as it is needs reading: the other actions know theirs.
        PoolAction::Leave => read_statefulsets(ctx, pool).await?,
    };

    // Status.
    let status = plan.status(
        pool,
        cluster.as_ref(),
        &statefulsets,
        scale.as_ref(),
        rollout.as_ref(),
        &Time(Timestamp::now()),
    );
    let rollout_written = status.rollout.clone();
    write_status(ctx, pool, status).await?;
    ctx.rollouts.written(pool, rollout_written.as_ref());
    let requeue = [
        scale.and_then(|s| s.requeue),
        rollout.and_then(|r| r.requeue),
        // Nothing triggers a pool when the pool it clashes with goes: look again.
        matches!(
            plan.blocked,
            Some(Blocked::Waiting {
                reason: Reason::NameClash,
                ..
            })
        )
        .then_some(NAME_CLASH_RECHECK),
    ];
    Ok(match requeue.into_iter().flatten().min() {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The pool's StatefulSets as they are, in zone order.
async fn read_statefulsets(ctx: &Context, pool: &WorkerPool) -> Result<Vec<StatefulSet>> {
    let ns = pool.namespace().unwrap_or_default();
    let layout = PoolLayout::new(&pool.name_any(), pool.spec.zone_names());
    let mut found = Vec::new();
    for (_, name) in layout.statefulsets() {
        found.extend(get_opt::<StatefulSet>(&ctx.client, &ns, &name).await?);
    }
    Ok(found)
}

/// The cluster's shared configuration and its storage Secrets, checked.
async fn read_cluster_inputs(
    ctx: &Context,
    cluster: &GrafanaCluster,
) -> Result<(Option<ConfigMap>, StorageSecrets)> {
    let view = ClusterView::new(cluster);
    let ns = &view.namespace;
    let config = match ctx.cached_shared_config(ns, &view.child_name("config")) {
        Some(cached) => cached,
        None => get_opt(&ctx.client, ns, &view.child_name("config")).await?,
    };
    let names = secrets::read_by_workers(&cluster.spec);
    let found = read::secrets(&ctx.client, ns, &names).await?;
    Ok((
        config,
        secrets::check_storage(cluster.spec.product, &cluster.spec.storage, &found),
    ))
}

/// Applies the pool's objects and deletes a PodDisruptionBudget no longer wanted; for a
/// zoned pool, between the StatefulSets and the budgets, the rollout's step, whose
/// disrupted zones gate the budgets. Destructured without `..`: an object added to
/// [`Workers`] does not compile until it is applied here. Returns the StatefulSets as
/// applied, in zone order, and the rollout's decision.
async fn apply_workers(
    ctx: &Context,
    pool: &WorkerPool,
    workers: &mut Workers,
    scaling_down: bool,
) -> Result<(Vec<StatefulSet>, Option<RolloutDecision>)> {
    let mut kept = Kept::of::<WorkerPool>();
    let mut applied = Vec::with_capacity(workers.statefulsets.len());
    for statefulset in &workers.statefulsets {
        applied.push(apply_kept_read(ctx, &mut kept, statefulset).await?);
    }
    let mut rollout = None;
    if workers.layout.is_zoned() {
        let step = zone_rollout::step(ctx, pool, &applied, scaling_down).await?;
        workers.gate_disruptions(&step.disrupted);
        rollout = Some(step.decision);
    }
    let Workers {
        layout: _,
        statefulsets: _,
        service,
        pdbs,
    } = workers;
    apply_kept(ctx, &mut kept, service).await?;
    for pdb in pdbs.iter() {
        apply_kept(ctx, &mut kept, pdb).await?;
    }
    prune_workload(ctx, pool, &kept, false).await?;
    Ok((applied, rollout))
}

/// Deletes the pool's children that `kept` does not name: its PodDisruptionBudget, and
/// with `with_statefulset` its StatefulSet and Service too. Volumes are never deleted.
async fn prune_workload(
    ctx: &Context,
    pool: &WorkerPool,
    kept: &Kept,
    with_statefulset: bool,
) -> Result<()> {
    let namespace = pool.namespace().unwrap_or_default();
    let uid = pool.uid().unwrap_or_default();
    let name = pool.name_any();
    let owner = Owner {
        namespace: &namespace,
        label: (POOL, &name),
        uid: &uid,
    };
    if with_statefulset {
        prune::<StatefulSet>(ctx, &owner, kept).await?;
        prune::<Service>(ctx, &owner, kept).await?;
    }
    prune::<PodDisruptionBudget>(ctx, &owner, kept).await?;
    Ok(())
}

async fn write_status(ctx: &Context, pool: &WorkerPool, status: WorkerPoolStatus) -> Result<()> {
    let name = pool.name_any();
    let ns = pool.namespace().unwrap_or_default();
    ctx.metrics
        .set_conditions("WorkerPool", &ns, &name, &status.conditions);
    let previous = pool.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    report_problems(
        ctx,
        pool,
        &previous.conditions,
        &status.conditions,
        &[SCALING_DOWN, PROGRESSING],
    )
    .await;
    apply_status(&ctx.client, pool, &status).await
}
