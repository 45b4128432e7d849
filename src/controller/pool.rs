//! Reconciles a WorkerPool: its StatefulSet, headless Service and PodDisruptionBudget,
//! built against its cluster's shared configuration and storage Secrets.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{apply, apply_status, get_opt, prune};
use super::cluster::pool_view;
use super::conditions::{self, Observed};
use super::error::{Error, Result};
use super::{Context, guarded, report_problems, retry, secrets};
use crate::api::{GrafanaCluster, WorkerPool, WorkerPoolStatus};
use crate::product::{PoolProblem, expand, validate_pool};
use crate::render::labels::POOL;
use crate::render::workers::{self, Checksums, PoolView};
use crate::render::{self, ClusterView};

pub(super) const CONTROLLER: &str = "workerpool";

/// The condition types of a WorkerPool.
pub mod condition {
    pub const ROLES_VALID: &str = "RolesValid";
    pub const READY: &str = "Ready";
}

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

/// Why a pool's workers are not (or no longer) being deployed.
enum Blocked {
    /// The pool cannot run in this cluster: its workload is removed.
    Invalid {
        reason: &'static str,
        message: String,
    },
    /// The pool is valid but must wait: its workload is left as it is.
    Waiting {
        reason: &'static str,
        message: String,
    },
}

async fn reconcile_pool(pool: &WorkerPool, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let ns = pool.namespace().unwrap_or_default();
    let view = pool_view(pool);

    // Fetch and validate.
    let cluster: Option<GrafanaCluster> = get_opt(client, &ns, &pool.spec.cluster_ref).await?;
    let mut statefulset: Option<StatefulSet> = get_opt(client, &ns, &view.name).await?;
    let paused = cluster.as_ref().is_some_and(|c| c.spec.paused);
    let blocked = match &cluster {
        None => Some(Blocked::Invalid {
            reason: "ClusterNotFound",
            message: format!(
                "GrafanaCluster {:?} does not exist in namespace {ns}: create it, or recreate this pool with the right clusterRef",
                pool.spec.cluster_ref
            ),
        }),
        Some(cluster) => match validate_pool(cluster.spec.product, &view) {
            Err(problem) => Some(Blocked::Invalid {
                reason: match problem {
                    PoolProblem::ProductMismatch { .. } => "ProductMismatch",
                    _ => "InvalidRoles",
                },
                message: problem.to_string(),
            }),
            // Build and apply.
            Ok(()) => deploy(ctx, pool, cluster, view.toggles.clone(), &mut statefulset).await?,
        },
    };
    if let Some(Blocked::Invalid { .. }) = &blocked
        && !paused
    {
        // Nothing of a pool that cannot run stays; its volumes do.
        prune_workload(ctx, pool, &BTreeSet::new(), true).await?;
        statefulset = None;
    }

    // Status.
    let status = status(
        pool,
        cluster.as_ref(),
        statefulset.as_ref(),
        blocked.as_ref(),
        &Time(Timestamp::now()),
    );
    write_status(ctx, pool, status).await?;
    Ok(Action::await_change())
}

/// Deploys a valid pool against its cluster's shared configuration and storage Secrets,
/// replacing `statefulset` with what was applied; or says why the pool waits, leaving
/// any running workload as it is.
async fn deploy(
    ctx: &Context,
    pool: &WorkerPool,
    cluster: &GrafanaCluster,
    toggles: Vec<&'static str>,
    statefulset: &mut Option<StatefulSet>,
) -> Result<Option<Blocked>> {
    let client = &ctx.client;
    let cluster_view = ClusterView::new(cluster);
    let ns = &cluster_view.namespace;
    let config: Option<ConfigMap> = get_opt(client, ns, &cluster_view.child_name("config")).await?;
    let Some(config) = config else {
        return Ok(Some(Blocked::Waiting {
            reason: "WaitingForClusterConfig",
            message: format!(
                "cluster {} has no configuration yet: it is written once every required role has a pool (see the cluster's Consistent condition); workers start then",
                cluster_view.name
            ),
        }));
    };
    let storage =
        secrets::storage(client, ns, cluster.spec.product, &cluster.spec.storage.s3).await?;
    if let Some(problem) = storage.problem {
        return Ok(Some(Blocked::Waiting {
            reason: "StorageNotReady",
            message: format!("{}; workers start once it is fixed", problem.message),
        }));
    }
    if cluster.spec.paused {
        return Ok(None);
    }
    let checksums = Checksums {
        config: render::config_checksum(&config),
        secrets: storage.checksum,
    };
    let pool_view = PoolView {
        name: pool.name_any(),
        spec: &pool.spec,
        owner: pool.controller_owner_ref(&()),
        toggles,
    };
    let built = match workers::build(&cluster_view, &pool_view, &checksums) {
        Ok(built) => built,
        Err(error) => {
            return Ok(Some(Blocked::Waiting {
                reason: error.reason(),
                message: error.to_string(),
            }));
        }
    };
    *statefulset = Some(apply(client, &built.statefulset).await?);
    let mut keep = BTreeSet::from([pool_view.name.clone()]);
    keep.insert(apply(client, &built.service).await?.name_any());
    if let Some(pdb) = &built.pdb {
        keep.insert(apply(client, pdb).await?.name_any());
    }
    prune_workload(ctx, pool, &keep, false).await?;
    Ok(None)
}

/// Deletes the pool's children not in `keep`; the StatefulSet only when `with_statefulset`.
async fn prune_workload(
    ctx: &Context,
    pool: &WorkerPool,
    keep: &BTreeSet<String>,
    with_statefulset: bool,
) -> Result<()> {
    let client = &ctx.client;
    let ns = pool.namespace().unwrap_or_default();
    let uid = pool.uid().unwrap_or_default();
    let selector = format!("{POOL}={}", pool.name_any());
    if with_statefulset {
        prune::<StatefulSet>(client, &ns, &selector, &uid, keep).await?;
        prune::<Service>(client, &ns, &selector, &uid, keep).await?;
    }
    prune::<PodDisruptionBudget>(client, &ns, &selector, &uid, keep).await?;
    Ok(())
}

fn status(
    pool: &WorkerPool,
    cluster: Option<&GrafanaCluster>,
    statefulset: Option<&StatefulSet>,
    blocked: Option<&Blocked>,
    now: &Time,
) -> WorkerPoolStatus {
    use condition::*;
    let previous = pool.status.clone().unwrap_or_default();
    let selected = pool.spec.roles.selected();
    let targets: Vec<String> = match &selected {
        Some((product, toggles)) => expand(*product, toggles)
            .into_iter()
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let sts_status = statefulset
        .and_then(|s| s.status.clone())
        .unwrap_or_default();
    let sts_current =
        statefulset.is_some_and(|s| sts_status.observed_generation == s.metadata.generation);
    let replicas = sts_status.replicas;
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let updated = sts_status.updated_replicas.unwrap_or(0);

    let mut observed = vec![match blocked {
        Some(Blocked::Invalid { reason, message }) => {
            Observed::new(ROLES_VALID, false, reason, message.clone())
        }
        _ => Observed::new(
            ROLES_VALID,
            true,
            "Valid",
            format!(
                "runs {} in cluster {}",
                targets.join(", "),
                cluster.map(|c| c.name_any()).unwrap_or_default()
            ),
        ),
    }];
    observed.push(match blocked {
        Some(Blocked::Invalid { reason, message }) | Some(Blocked::Waiting { reason, message }) => {
            Observed::new(READY, false, reason, message.clone())
        }
        None if !sts_current => Observed::new(
            READY,
            false,
            "Updating",
            "the StatefulSet has not yet seen its latest spec",
        ),
        None if ready >= pool.spec.replicas && updated >= pool.spec.replicas => Observed::new(
            READY,
            true,
            "AllReplicasReady",
            format!("{ready}/{} workers ready", pool.spec.replicas),
        ),
        None => Observed::new(
            READY,
            false,
            if updated < pool.spec.replicas {
                "RollingUpdate"
            } else {
                "ReplicasNotReady"
            },
            format!(
                "{ready}/{} workers ready, {updated} updated",
                pool.spec.replicas
            ),
        ),
    });

    let generation = pool.meta().generation;
    WorkerPoolStatus {
        observed_generation: generation,
        product: selected.map(|(product, _)| product),
        targets_summary: targets.join(","),
        targets,
        replicas,
        ready_replicas: ready,
        updated_replicas: updated,
        conditions: conditions::merge(&previous.conditions, observed, generation, now),
    }
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
    report_problems(ctx, pool, &previous.conditions, &status.conditions, &[]).await;
    apply_status(&ctx.client, pool, &status).await
}
