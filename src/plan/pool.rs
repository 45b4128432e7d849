//! A WorkerPool's plan: its StatefulSet, headless Service and PodDisruptionBudget,
//! built against its cluster's shared configuration and storage Secrets; or why not.
//! Its status follows from the plan and the StatefulSet ([`PoolPlan::status`]).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::Reason;
use super::cluster::summarize;
use super::conditions::{self, Observed};
use super::scale_down::Decision;
use super::secrets::StorageSecrets;
use super::zone_rollout::RolloutDecision;
use crate::api::{GrafanaCluster, WorkerPool, WorkerPoolStatus, ZoneStatus};
use crate::product::{PoolProblem, expand, validate_pool};
use crate::render::workers::{self, Checksums, PoolView, Workers};
use crate::render::zones::PoolLayout;
use crate::render::{self, ClusterView};

/// The condition types of a WorkerPool.
pub mod condition {
    pub const ROLES_VALID: &str = "RolesValid";
    pub const READY: &str = "Ready";
    pub use crate::plan::scale_down::SCALING_DOWN;
    pub use crate::plan::zone_rollout::PROGRESSING;
}
use condition::*;

/// What the plan of a pool is made from.
pub struct PoolInputs<'a> {
    pub pool: &'a WorkerPool,
    /// The GrafanaCluster the pool names, if it exists.
    pub cluster: Option<&'a GrafanaCluster>,
    /// The cluster's shared configuration, if written yet.
    pub config: Option<&'a ConfigMap>,
    /// The cluster's storage Secrets, checked.
    pub storage: &'a StorageSecrets,
    /// The other pools of the namespace, whose StatefulSet names this pool's must not take.
    pub siblings: &'a [WorkerPool],
}

/// Why a pool's workers are not (or no longer) being deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The pool cannot run in this cluster: its workload is removed.
    Invalid { reason: Reason, message: String },
    /// The pool is valid but must wait: its workload is left as it is.
    Waiting { reason: Reason, message: String },
}

/// What to do with the pool's workload.
#[derive(Debug, Clone)]
pub enum PoolAction {
    /// Apply these objects, and delete the pool's other children but the StatefulSet
    /// and the Service (a PodDisruptionBudget no longer wanted).
    Apply(Box<Workers>),
    /// Delete the StatefulSet, Services and PodDisruptionBudget; the volumes stay.
    Remove,
    /// Leave everything as it is (waiting, or the cluster is paused).
    Leave,
}

/// What should happen to a pool, and why.
#[derive(Debug, Clone)]
pub struct PoolPlan {
    pub blocked: Option<Blocked>,
    pub action: PoolAction,
}

/// Plans a pool.
pub fn plan(inputs: &PoolInputs) -> PoolPlan {
    let pool = inputs.pool;
    let Some(cluster) = inputs.cluster else {
        return PoolPlan {
            blocked: Some(Blocked::Invalid {
                reason: Reason::ClusterNotFound,
                message: format!(
                    "GrafanaCluster {:?} does not exist in namespace {}: create it, or recreate this pool with the right clusterRef",
                    pool.spec.cluster_ref,
                    pool.namespace().unwrap_or_default()
                ),
            }),
            action: PoolAction::Remove,
        };
    };
    let summary = summarize(pool);
    if let Err(problem) = validate_pool(cluster.spec.product, &summary) {
        return PoolPlan {
            blocked: Some(Blocked::Invalid {
                reason: match problem {
                    PoolProblem::ProductMismatch { .. } => Reason::ProductMismatch,
                    _ => Reason::InvalidRoles,
                },
                message: problem.to_string(),
            }),
            // Nothing of a pool that cannot run stays; its volumes do.
            action: if cluster.spec.paused {
                PoolAction::Leave
            } else {
                PoolAction::Remove
            },
        };
    }
    let leave = |blocked| PoolPlan {
        blocked,
        action: PoolAction::Leave,
    };
    // The older pool keeps a contested name; this one waits, and nothing of either goes.
    if let Some(message) = name_clash(pool, inputs.siblings) {
        return leave(Some(Blocked::Waiting {
            reason: Reason::NameClash,
            message,
        }));
    }
    let checksums = match checksums(inputs, cluster) {
        Ok(checksums) => checksums,
        Err(blocked) => return leave(Some(blocked)),
    };
    if cluster.spec.paused {
        return leave(None);
    }
    let view = PoolView {
        name: pool.name_any(),
        spec: &pool.spec,
        owner: pool.controller_owner_ref(&()),
        toggles: summary.toggles,
    };
    match workers::build(&ClusterView::new(cluster), &view, &checksums) {
        Ok(workers) => PoolPlan {
            blocked: None,
            action: PoolAction::Apply(Box::new(workers)),
        },
        Err(error) => leave(Some(Blocked::Waiting {
            reason: error.reason(),
            message: error.to_string(),
        })),
    }
}

/// Why this pool's StatefulSets cannot take their names: an older pool of the namespace
/// has one of them (`<pool>-<zone>` of a zoned pool can be another pool's own name).
pub fn name_clash(pool: &WorkerPool, siblings: &[WorkerPool]) -> Option<String> {
    let names = |p: &WorkerPool| -> Vec<String> {
        PoolLayout::new(&p.name_any(), p.spec.zone_names())
            .statefulsets()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    };
    let age = |p: &WorkerPool| (p.metadata.creation_timestamp.clone(), p.name_any());
    let mine = names(pool);
    siblings
        .iter()
        .filter(|other| other.name_any() != pool.name_any() && age(other) < age(pool))
        .find_map(|other| {
            let taken = names(other).into_iter().find(|n| mine.contains(n))?;
            Some(format!(
                "StatefulSet {taken} would also be WorkerPool {}'s (StatefulSets are named <pool> or <pool>-<zone>): rename this pool, or its zones",
                other.name_any()
            ))
        })
}

/// What the workers' pods depend on besides the specs, or why they must wait for it.
fn checksums(inputs: &PoolInputs, cluster: &GrafanaCluster) -> Result<Checksums, Blocked> {
    // Unusable Secrets first: they also hold the configuration back, and say more.
    if let Some(problem) = &inputs.storage.problem {
        return Err(Blocked::Waiting {
            reason: Reason::StorageNotReady,
            message: format!("{}; workers start once it is fixed", problem.message),
        });
    }
    let Some(config) = inputs.config else {
        return Err(Blocked::Waiting {
            reason: Reason::WaitingForClusterConfig,
            message: format!(
                "cluster {} has no configuration yet: it is written once every required role has a pool and its storage is usable (see the cluster's Consistent and StorageReady conditions); workers start then",
                cluster.name_any()
            ),
        });
    };
    // The configuration names the storage Secrets the cluster verified with it (ADR 11).
    // Until the cluster has verified the Secrets as they are now, the workers stay on
    // the last verified ones. A configuration written before the probe names none.
    if let Some(verified) = config.annotations().get(render::SECRETS_CHECKSUM)
        && *verified != inputs.storage.checksum
    {
        return Err(Blocked::Waiting {
            reason: Reason::StorageNotReady,
            message: format!(
                "cluster {} has not verified its storage with the Secrets as they are now (see its StorageReady condition); workers keep their last verified settings",
                cluster.name_any()
            ),
        });
    }
    Ok(Checksums {
        config: render::config_checksum(config),
        secrets: inputs.storage.checksum.clone(),
    })
}

/// What a pool's StatefulSets report, summed over its zones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkloadSeen {
    /// Each has seen its latest spec (false when there is none).
    pub current: bool,
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
}

impl WorkloadSeen {
    pub fn of(statefulsets: &[StatefulSet]) -> Self {
        let mut seen = WorkloadSeen {
            current: !statefulsets.is_empty(),
            ..WorkloadSeen::default()
        };
        for sts in statefulsets {
            let status = sts.status.clone().unwrap_or_default();
            seen.current &= status.observed_generation == sts.metadata.generation;
            seen.replicas += status.replicas;
            seen.ready += status.ready_replicas.unwrap_or(0);
            seen.updated += status.updated_replicas.unwrap_or(0);
        }
        seen
    }
}

impl PoolPlan {
    /// The status once the plan is applied; `statefulsets` as the API server last
    /// returned them (none once removed), `scale` the scale-down step decided with them,
    /// `rollout` the zone-by-zone rollout's decision (zoned pools).
    pub fn status(
        &self,
        pool: &WorkerPool,
        cluster: Option<&GrafanaCluster>,
        statefulsets: &[StatefulSet],
        scale: Option<&Decision>,
        rollout: Option<&RolloutDecision>,
        now: &Time,
    ) -> WorkerPoolStatus {
        let previous = pool.status.clone().unwrap_or_default();
        let selected = pool.spec.roles.selected();
        let targets: Vec<String> = match &selected {
            Some((product, toggles)) => expand(*product, toggles)
                .into_iter()
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        let seen = WorkloadSeen::of(statefulsets);
        let (scaling, scale_down) = match scale {
            Some(decision) => (decision.condition.clone(), decision.status.clone()),
            // Nothing applied: a leave under way (in a paused cluster) stays recorded.
            None => (
                Observed::new(
                    SCALING_DOWN,
                    false,
                    Reason::NoScaleDown,
                    "no scale-down under way",
                ),
                match self.action {
                    PoolAction::Leave => previous.scale_down.clone(),
                    _ => None,
                },
            ),
        };
        let mut observed = vec![
            roles_valid(self.blocked.as_ref(), &targets, cluster),
            ready(self.blocked.as_ref(), pool.spec.replicas, statefulsets),
            scaling,
        ];
        let zoned = !pool.spec.zones.is_empty();
        let progressing = progressing(&previous, rollout);
        observed.extend(progressing.filter(|_| zoned));
        let generation = pool.meta().generation;
        WorkerPoolStatus {
            observed_generation: generation,
            product: selected.map(|(product, _)| product),
            targets_summary: targets.join(","),
            targets,
            replicas: seen.replicas,
            ready_replicas: seen.ready,
            updated_replicas: seen.updated,
            selector: render::labels::selector_string(&render::labels::pool_selector(
                &pool.spec.cluster_ref,
                &pool.name_any(),
            )),
            scale_down,
            zones: if zoned {
                zone_statuses(statefulsets)
            } else {
                Vec::new()
            },
            rollout: match rollout {
                Some(decision) => decision.status.clone(),
                None => previous.rollout.clone().filter(|_| zoned),
            },
            conditions: conditions::merge(&previous.conditions, observed, generation, now),
        }
    }
}

/// `Progressing` (zoned pools): the rollout's word, or when it was not looked at this
/// time (a paused cluster, a pool waiting), the last one.
fn progressing(previous: &WorkerPoolStatus, rollout: Option<&RolloutDecision>) -> Option<Observed> {
    match rollout {
        Some(decision) => Some(decision.condition.clone()),
        None => previous
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRESSING)
            .and_then(|c| {
                Some(Observed::new(
                    PROGRESSING,
                    c.status == "True",
                    Reason::parse(&c.reason)?,
                    c.message.clone(),
                ))
            }),
    }
}

/// Each zone's workers, from its StatefulSet's zone label.
fn zone_statuses(statefulsets: &[StatefulSet]) -> Vec<ZoneStatus> {
    statefulsets
        .iter()
        .filter_map(|sts| {
            let zone = sts.labels().get(render::zones::ZONE)?;
            let status = sts.status.clone().unwrap_or_default();
            Some(ZoneStatus {
                name: zone.clone(),
                replicas: status.replicas,
                ready_replicas: status.ready_replicas.unwrap_or(0),
                updated_replicas: status.updated_replicas.unwrap_or(0),
            })
        })
        .collect()
}

/// `RolesValid`: the pool's roles run in its cluster.
pub fn roles_valid(
    blocked: Option<&Blocked>,
    targets: &[String],
    cluster: Option<&GrafanaCluster>,
) -> Observed {
    match blocked {
        Some(Blocked::Invalid { reason, message }) => {
            Observed::new(ROLES_VALID, false, *reason, message.clone())
        }
        _ => Observed::new(
            ROLES_VALID,
            true,
            Reason::Valid,
            format!(
                "runs {} in cluster {}",
                targets.join(", "),
                cluster.map(|c| c.name_any()).unwrap_or_default()
            ),
        ),
    }
}

/// `Ready`: every worker runs the latest pod template and is ready.
pub fn ready(blocked: Option<&Blocked>, replicas: i32, statefulsets: &[StatefulSet]) -> Observed {
    if let Some(Blocked::Invalid { reason, message } | Blocked::Waiting { reason, message }) =
        blocked
    {
        return Observed::new(READY, false, *reason, message.clone());
    }
    let WorkloadSeen {
        current,
        ready,
        updated,
        ..
    } = WorkloadSeen::of(statefulsets);
    if !current {
        Observed::new(
            READY,
            false,
            Reason::Updating,
            "the StatefulSets have not yet seen their latest spec",
        )
    } else if ready >= replicas && updated >= replicas {
        Observed::new(
            READY,
            true,
            Reason::AllReplicasReady,
            format!("{ready}/{replicas} workers ready"),
        )
    } else {
        Observed::new(
            READY,
            false,
            if updated < replicas {
                Reason::RollingUpdate
            } else {
                Reason::ReplicasNotReady
            },
            format!("{ready}/{replicas} workers ready, {updated} updated"),
        )
    }
}
