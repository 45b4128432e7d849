//! A GrafanaCluster's status: one pure function per condition, each from what the plan
//! found and what the cluster's objects report.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::Reason;
use super::cluster::{ClusterInputs, ClusterPlan, ConfigProblem};
use super::conditions::{self, Observed};
use super::secrets::{SecretProblem, StorageSecrets};
use crate::api::{GrafanaClusterSpec, GrafanaClusterStatus, RoleStatus, WorkerPool};
use crate::product::{Product, Topology};
use crate::render::ClusterView;

/// The condition types of a GrafanaCluster.
pub mod condition {
    pub const CONSISTENT: &str = "Consistent";
    pub const STORAGE_READY: &str = "StorageReady";
    pub const AVAILABLE: &str = "Available";
    pub const DEGRADED: &str = "Degraded";
    pub const PROGRESSING: &str = "Progressing";
    pub const PAUSED: &str = "ReconciliationPaused";
    pub const CONFIG_VALID: &str = "ConfigValid";
    pub const TLS_READY: &str = "TLSReady";
    pub const SELF_MONITORING_READY: &str = "SelfMonitoringReady";
}
use condition::*;

impl ClusterPlan<'_> {
    /// The status once the plan is applied. `gateway` is the gateway Deployment as the
    /// API server last returned it.
    pub fn status(
        &self,
        inputs: &ClusterInputs,
        gateway: Option<&Deployment>,
        now: &Time,
    ) -> GrafanaClusterStatus {
        let cluster = inputs.cluster;
        let spec = &cluster.spec;
        let previous = cluster.status.clone().unwrap_or_default();
        let topology = &self.topology;
        let mut observed = vec![
            consistent(&self.view, topology, inputs.pools),
            storage_ready(&self.storage),
            config_valid(self.config_problem.as_ref()),
        ];
        observed.extend(tls_ready(spec, self.tls_problem.as_ref()));
        observed.extend(self_monitoring_ready(
            spec,
            self.agent_auth_problem.as_ref(),
        ));
        observed.extend([
            available(&self.view, gateway, topology),
            degraded(topology, inputs.pools),
            progressing(&self.view, gateway, inputs.pools),
            paused(spec),
        ]);
        let generation = cluster.meta().generation;
        let missing = topology.missing_roles();
        GrafanaClusterStatus {
            observed_generation: generation,
            product: Some(self.view.product()),
            version: Some(self.view.version().to_string()),
            gateway_url: Some(self.view.gateway_url(inputs.settings)),
            roles: role_statuses(topology),
            missing_roles: missing.iter().map(|r| r.to_string()).collect(),
            missing_roles_summary: missing.join(","),
            recommendations: recommendations(self.view.product(), spec, topology),
            loki_schema_from: self
                .loki_schema
                .as_ref()
                .map(|s| s.from.clone())
                .or(previous.loki_schema_from.clone()),
            config_hash: self.config_hash.clone(),
            conditions: conditions::merge(&previous.conditions, observed, generation, now),
        }
    }
}

fn role_statuses(topology: &Topology) -> Vec<RoleStatus> {
    topology
        .roles
        .iter()
        .map(|(role, p)| RoleStatus {
            name: role.to_string(),
            required: p.required,
            pools: p.pools.clone(),
            replicas: p.replicas,
            ready_replicas: p.ready_replicas,
        })
        .collect()
}

/// `Consistent`: every role the product needs has a valid pool with replicas.
pub fn consistent(view: &ClusterView, topology: &Topology, pools: &[WorkerPool]) -> Observed {
    let missing = topology.missing_roles();
    if pools.is_empty() {
        Observed::new(
            CONSISTENT,
            false,
            Reason::NoWorkerPools,
            format!(
                "no WorkerPool names this cluster: create pools with clusterRef: {} (a single pool with roles.{}.all: true is enough)",
                view.name,
                view.product()
            ),
        )
    } else if !missing.is_empty() {
        Observed::new(
            CONSISTENT,
            false,
            Reason::MissingRoles,
            format!(
                "no valid pool with replicas provides the required roles {}: add or scale up pools with them; the last consistent configuration keeps running",
                missing.join(", ")
            ),
        )
    } else {
        Observed::new(
            CONSISTENT,
            true,
            Reason::AllRequiredRolesPresent,
            "every required role has a pool",
        )
    }
}

/// `StorageReady`: the storage Secrets hold every key the workers read, and the probe
/// reached the bucket with them (unless it is turned off).
pub fn storage_ready(storage: &StorageSecrets) -> Observed {
    match &storage.problem {
        Some(problem) => Observed::new(
            STORAGE_READY,
            false,
            problem.reason,
            format!(
                "{}; workers keep their last verified storage settings",
                problem.message
            ),
        ),
        None if storage.probed => Observed::new(
            STORAGE_READY,
            true,
            Reason::BucketVerified,
            "the operator wrote, read, listed and deleted a probe object with the workers' credentials",
        ),
        None => Observed::new(
            STORAGE_READY,
            true,
            Reason::NotChecked,
            "the storage Secrets hold every key the workers read; the bucket was not checked (storage.probe is false, or the filesystem backend, which lives on the worker's own volume)",
        ),
    }
}

/// `ConfigValid`: the spec gives a valid product configuration.
pub fn config_valid(problem: Option<&ConfigProblem>) -> Observed {
    match problem {
        Some(problem) => Observed::new(
            CONFIG_VALID,
            false,
            problem.reason,
            format!(
                "{}; the last valid configuration keeps running",
                problem.message
            ),
        ),
        None => Observed::new(
            CONFIG_VALID,
            true,
            Reason::Valid,
            "the spec gives a valid product configuration",
        ),
    }
}

/// `TLSReady`, only when the cluster asks for TLS.
pub fn tls_ready(spec: &GrafanaClusterSpec, problem: Option<&SecretProblem>) -> Option<Observed> {
    spec.tls.as_ref()?;
    Some(match problem {
        Some(problem) => Observed::new(
            TLS_READY,
            false,
            problem.reason,
            format!(
                "{}; the gateway does not serve plain HTTP meanwhile",
                problem.message
            ),
        ),
        None => Observed::new(
            TLS_READY,
            true,
            Reason::SecretFound,
            "the gateway serves TLS",
        ),
    })
}

/// `SelfMonitoringReady`, only when the agent runs and a destination names a credential.
pub fn self_monitoring_ready(
    spec: &GrafanaClusterSpec,
    problem: Option<&SecretProblem>,
) -> Option<Observed> {
    let monitoring = &spec.self_monitoring;
    let with_auth = super::secrets::agent_auth(monitoring)
        .iter()
        .any(|(_, auth)| auth.is_some());
    if !monitoring.is_enabled() || !with_auth {
        return None;
    }
    Some(match problem {
        Some(problem) => Observed::new(
            SELF_MONITORING_READY,
            false,
            problem.reason,
            format!(
                "{}; that destination refuses the agent meanwhile",
                problem.message
            ),
        ),
        None => Observed::new(
            SELF_MONITORING_READY,
            true,
            Reason::SecretFound,
            "the agent sends each destination the credential it names",
        ),
    })
}

/// `Available`: a gateway pod and a worker of every required role are ready.
pub fn available(
    view: &ClusterView,
    gateway: Option<&Deployment>,
    topology: &Topology,
) -> Observed {
    let gateway_ready = gateway
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let unready_roles = topology.unready_required_roles();
    if gateway_ready == 0 {
        Observed::new(
            AVAILABLE,
            false,
            Reason::GatewayNotReady,
            format!(
                "no gateway pod is ready (Deployment {})",
                view.child_name("gateway")
            ),
        )
    } else if !unready_roles.is_empty() {
        Observed::new(
            AVAILABLE,
            false,
            Reason::RolesNotReady,
            format!("no ready worker runs {}", unready_roles.join(", ")),
        )
    } else {
        Observed::new(
            AVAILABLE,
            true,
            Reason::Available,
            "the gateway and every required role have a ready pod",
        )
    }
}

/// `Degraded` (True is the problem): pools not deployed, or below their replicas.
pub fn degraded(topology: &Topology, pools: &[WorkerPool]) -> Observed {
    let invalid: Vec<String> = topology
        .invalid_pools
        .iter()
        .map(|(pool, problem)| format!("{pool} ({problem})"))
        .collect();
    let not_ready: Vec<String> = pools
        .iter()
        .filter(|p| {
            !topology
                .invalid_pools
                .iter()
                .any(|(name, _)| *name == p.name_any())
        })
        .filter_map(|p| {
            let ready = p.status.as_ref().map_or(0, |s| s.ready_replicas);
            (ready < p.spec.replicas)
                .then(|| format!("{} ({ready}/{})", p.name_any(), p.spec.replicas))
        })
        .collect();
    if !invalid.is_empty() {
        Observed::new(
            DEGRADED,
            true,
            Reason::InvalidPools,
            format!("pools not deployed: {}", invalid.join("; ")),
        )
    } else if let mixed = topology.mixed_zones()
        && !mixed.is_empty()
    {
        Observed::new(
            DEGRADED,
            true,
            Reason::ZonesMixed,
            format!(
                "{}: zone awareness stays off for them, so a zone's loss can lose data; scale the unzoned pools to 0 (their workers flush and leave one by one) or give up the zoned ones",
                mixed.join("; ")
            ),
        )
    } else if !not_ready.is_empty() {
        Observed::new(
            DEGRADED,
            true,
            Reason::PoolsNotReady,
            format!("pools below their replicas: {}", not_ready.join(", ")),
        )
    } else {
        Observed::new(
            DEGRADED,
            false,
            Reason::AsExpected,
            "everything runs as asked",
        )
    }
}

/// `Progressing`: the gateway or some pools roll out.
pub fn progressing(
    view: &ClusterView,
    gateway: Option<&Deployment>,
    pools: &[WorkerPool],
) -> Observed {
    let gateway_rolling = gateway.is_some_and(|d| {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        status.observed_generation < d.metadata.generation
            || status.updated_replicas.unwrap_or(0) < desired
            || status.replicas.unwrap_or(0) > desired
    });
    let mut rolling: Vec<String> = pools
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation < p.metadata.generation || s.updated_replicas < s.replicas
            })
        })
        .map(
            |p| match p.status.as_ref().and_then(|s| s.rollout.as_ref()) {
                // A zoned pool rolls one zone at a time: say which.
                Some(rollout) => format!("{} (zone {})", p.name_any(), rollout.zone),
                None => p.name_any(),
            },
        )
        .collect();
    if gateway_rolling {
        rolling.insert(0, view.child_name("gateway"));
    }
    if rolling.is_empty() {
        Observed::new(PROGRESSING, false, Reason::Settled, "no rollout under way")
    } else {
        Observed::new(
            PROGRESSING,
            true,
            Reason::RollingOut,
            format!("rolling out: {}", rolling.join(", ")),
        )
    }
}

/// `ReconciliationPaused`: `spec.paused`.
pub fn paused(spec: &GrafanaClusterSpec) -> Observed {
    if spec.paused {
        Observed::new(
            PAUSED,
            true,
            Reason::Paused,
            "spec.paused is true: status is kept up to date, nothing is changed",
        )
    } else {
        Observed::new(PAUSED, false, Reason::Reconciling, "changes are applied")
    }
}

/// Advice for the user: roles below their recommended replicas, and settings that leave
/// something without effect for this product.
pub fn recommendations(
    product: Product,
    spec: &GrafanaClusterSpec,
    topology: &Topology,
) -> Vec<String> {
    let mut recommendations = topology.recommendations();
    if product == Product::Tempo
        && topology.has_role("metrics-generator")
        && spec.self_monitoring.metrics.is_none()
    {
        recommendations.push(
            "metrics-generator: set spec.selfMonitoring.metrics.remoteWriteUrl, or it has nowhere to write span metrics"
                .into(),
        );
    }
    // Loki traces only through Jaeger variables (runtime contract): say so rather than
    // leave a destination that silently receives nothing.
    if product == Product::Loki
        && spec.self_monitoring.traces.is_some()
        && spec.self_monitoring.is_enabled()
    {
        recommendations.push(
            "selfMonitoring.traces: Loki 3.5 exports its own traces only to a Jaeger agent or collector (JAEGER_* variables), not over OTLP, so its workers send none there; the gateway's and agent's telemetry still flows"
                .into(),
        );
    }
    recommendations
}
