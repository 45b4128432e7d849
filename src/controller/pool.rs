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
use super::{Context, read, scale_down};
use crate::api::{GrafanaCluster, WorkerPool, WorkerPoolStatus};
use crate::plan::pool::condition::SCALING_DOWN;
use crate::plan::pool::{PoolAction, PoolInputs, plan};
use crate::plan::secrets::{self, StorageSecrets};
use crate::render::ClusterView;
use crate::render::labels::POOL;
use crate::render::workers::Workers;

pub(super) const CONTROLLER: &str = "workerpool";

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
    let mut plan = plan(&PoolInputs {
        pool,
        cluster: cluster.as_ref(),
        config: config.as_ref(),
        storage: &storage,
    });

    // Apply: the StatefulSet gets the replicas the scale-down step decides.
    let mut scale = None;
    let statefulset = match &mut plan.action {
        PoolAction::Apply(workers) => {
            let decision = scale_down::step(ctx, pool).await?;
            workers.set_replicas(decision.replicas);
            let applied = apply_workers(ctx, pool, workers).await?;
            ctx.leaves
                .applied(&pool.uid().unwrap_or_default(), decision.replicas);
            scale = Some(decision);
            Some(applied)
        }
        PoolAction::Remove => {
            prune_workload(ctx, pool, &Kept::of::<WorkerPool>(), true).await?;
            None
        }
        // Only a workload left as it is needs reading: the other actions know theirs.
        PoolAction::Leave => get_opt(client, &ns, &pool.name_any()).await?,
    };

    // Status.
    let status = plan.status(
        pool,
        cluster.as_ref(),
        statefulset.as_ref(),
        scale.as_ref(),
        &Time(Timestamp::now()),
    );
    write_status(ctx, pool, status).await?;
    Ok(match scale.and_then(|s| s.requeue) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
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
    let names = secrets::referenced(&cluster.spec);
    let found = read::secrets(&ctx.client, ns, &names).await?;
    Ok((
        config,
        secrets::check_storage(cluster.spec.product, &cluster.spec.storage, &found),
    ))
}

/// Applies the pool's objects and deletes a PodDisruptionBudget no longer wanted.
/// Destructured without `..`: an object added to [`Workers`] does not compile until it
/// is applied here. Returns the StatefulSet as applied.
async fn apply_workers(ctx: &Context, pool: &WorkerPool, workers: &Workers) -> Result<StatefulSet> {
    let Workers {
        statefulset,
        service,
        pdb,
    } = workers;
    let mut kept = Kept::of::<WorkerPool>();
    let statefulset = apply_kept_read(ctx, &mut kept, statefulset).await?;
    apply_kept(ctx, &mut kept, service).await?;
    if let Some(pdb) = pdb {
        apply_kept(ctx, &mut kept, pdb).await?;
    }
    prune_workload(ctx, pool, &kept, false).await?;
    Ok(statefulset)
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
        &[SCALING_DOWN],
    )
    .await;
    apply_status(&ctx.client, pool, &status).await
}
