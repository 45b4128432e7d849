//! Reconciles a GrafanaCluster: its gateway, agent, Services and the shared product
//! configuration, and its status (consistency, availability and the rest).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{Timestamp, ToSpan, tz::TimeZone};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{apply, apply_dynamic, apply_status, get_opt, prune, prune_dynamic};
use super::conditions::{self, Observed};
use super::error::{Error, Result};
use super::{Context, guarded, report_problems, retry, secrets};
use crate::api::{
    GrafanaCluster, GrafanaClusterSpec, GrafanaClusterStatus, RoleStatus, WorkerPool,
};
use crate::product::{PoolView, Product, Topology};
use crate::render::config::{ConfigInputs, Duration};
use crate::render::labels::CLUSTER;
use crate::render::{self, Alerts, ClusterView, LOKI_SCHEMA_FROM, Settings, observability};

pub(super) const CONTROLLER: &str = "grafanacluster";

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
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<GrafanaCluster>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    guarded(&guard, &ctx, CONTROLLER, |cluster| {
        reconcile_cluster(cluster, &ctx)
    })
    .await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<GrafanaCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    retry(&guard, error, &ctx, CONTROLLER)
}

/// Everything observed about a cluster, from which its status follows.
struct Observation<'a> {
    cluster: &'a GrafanaCluster,
    topology: Topology,
    storage: secrets::StorageSecrets,
    tls_problem: Option<secrets::SecretProblem>,
    config_problem: Option<(&'static str, String)>,
    config_hash: Option<String>,
    loki_schema_from: Option<String>,
    gateway: Option<Deployment>,
    pools: Vec<WorkerPool>,
}

async fn reconcile_cluster(cluster: &GrafanaCluster, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let view = ClusterView::new(cluster);
    let ns = view.namespace.clone();
    let name = view.name.clone();
    let product = view.product();

    // Fetch.
    let pools = pools_of(ctx, &ns, &name).await?;
    let storage = secrets::storage(client, &ns, product, &cluster.spec.storage.s3).await?;
    let tls_problem = match &cluster.spec.tls {
        Some(tls) => secrets::tls(client, &ns, &tls.secret_name).await?,
        None => None,
    };
    let existing_config: Option<ConfigMap> =
        get_opt(client, &ns, &view.child_name("config")).await?;
    // The pods' IP family decides the rings' address settings; the gossip Service shows
    // it, so a new cluster gets that Service before its first configuration.
    let gossip: Option<Service> = match get_opt(client, &ns, &view.child_name("gossip")).await? {
        None if !cluster.spec.paused => {
            Some(apply(client, &render::services::gossip(&view)).await?)
        }
        observed => observed,
    };
    let ipv6 = gossip.as_ref().is_some_and(render::services::ipv6_primary);

    // Validate.
    let views: Vec<PoolView> = pools.iter().map(pool_view).collect();
    let topology = Topology::new(product, &views);
    let retention = cluster
        .spec
        .retention
        .as_deref()
        .map(Duration::parse)
        .transpose();
    let loki_schema_from = (product == Product::Loki).then(|| {
        cluster
            .status
            .as_ref()
            .and_then(|s| s.loki_schema_from.clone())
            .or_else(|| {
                existing_config
                    .as_ref()
                    .and_then(|c| c.annotations().get(LOKI_SCHEMA_FROM).cloned())
            })
            .unwrap_or_else(new_loki_schema_date)
    });

    // Build. The shared config is (re)written only for a consistent cluster with a
    // valid spec; otherwise the last one keeps running.
    let mut config_problem = None;
    let shared_config = match &retention {
        Err(error) => {
            config_problem = Some(("InvalidRetention", format!("spec.retention: {error}")));
            None
        }
        Ok(_) if !topology.is_consistent() => None,
        Ok(retention) => {
            let inputs = ConfigInputs::for_cluster(
                &view,
                &topology,
                &ctx.settings,
                *retention,
                loki_schema_from.as_deref(),
                ipv6,
            );
            match render::shared_config(&view, &inputs) {
                Ok(config) => Some(config),
                Err(error) => {
                    let reason = match error {
                        render::config::ConfigError::Retention(_) => "InvalidRetention",
                        render::config::ConfigError::Overrides(_) => "InvalidConfigOverrides",
                    };
                    config_problem = Some((reason, error.to_string()));
                    None
                }
            }
        }
    };
    let prometheus_rules = ctx.prometheus_rules_installed().await;
    let children = render::cluster_children(
        &view,
        &topology,
        shared_config,
        &ctx.settings,
        prometheus_rules,
    );

    // Apply, unless paused.
    let mut config_hash = existing_config.as_ref().map(render::config_checksum);
    let gateway: Option<Deployment>;
    if cluster.spec.paused {
        gateway = get_opt(client, &ns, &view.child_name("gateway")).await?;
    } else {
        let mut keep = BTreeSet::new();
        if let Some(config) = &children.shared_config {
            let applied = apply(client, config).await?;
            config_hash = Some(render::config_checksum(&applied));
        }
        // The shared config is never pruned: while frozen it is not in the plan.
        keep.insert(view.child_name("config"));
        keep.insert(apply(client, &children.gateway.config).await?.name_any());
        gateway = Some(apply(client, &children.gateway.deployment).await?);
        keep.insert(apply(client, &children.gateway.service).await?.name_any());
        keep.insert(apply(client, &children.gossip).await?.name_any());
        for service in &children.role_services {
            keep.insert(apply(client, service).await?.name_any());
        }
        if let Some(pdb) = &children.gateway.pdb {
            keep.insert(apply(client, pdb).await?.name_any());
        }
        if let Some(agent) = &children.agent {
            keep.insert(apply(client, &agent.config).await?.name_any());
            apply(client, &agent.service_account).await?;
            apply(client, &agent.role).await?;
            apply(client, &agent.role_binding).await?;
            apply(client, &agent.peers).await?;
        }
        for dashboard in &children.dashboards {
            keep.insert(apply(client, dashboard).await?.name_any());
        }
        let rule_resource = observability::prometheus_rule_resource();
        let mut rules_kept = BTreeSet::new();
        match &children.alerts {
            Some(Alerts::ConfigMap(rules)) => {
                keep.insert(apply(client, rules).await?.name_any());
            }
            Some(Alerts::PrometheusRule(rule)) => {
                rules_kept.insert(
                    apply_dynamic(client, rule, &rule_resource)
                        .await?
                        .name_any(),
                );
            }
            None => {}
        }
        prune_children(ctx, cluster, &keep, children.agent.is_some()).await?;
        if prometheus_rules {
            let selector = format!("{CLUSTER}={}", cluster.name_any());
            let uid = cluster.uid().unwrap_or_default();
            prune_dynamic(client, &ns, &rule_resource, &selector, &uid, &rules_kept).await?;
        }
    }

    // Status.
    let observation = Observation {
        cluster,
        topology,
        storage,
        tls_problem,
        config_problem,
        // Recorded once a configuration using it exists.
        loki_schema_from: loki_schema_from.filter(|_| config_hash.is_some()),
        config_hash,
        gateway,
        pools,
    };
    let status = status(&observation, &view, &ctx.settings, &Time(Timestamp::now()));
    write_status(ctx, cluster, status).await?;
    Ok(Action::await_change())
}

/// The cluster's pools: WorkerPools of its namespace that name it (malformed ones are
/// left out; their own reconciler reports them).
async fn pools_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<WorkerPool>> {
    let api: Api<DeserializeGuard<WorkerPool>> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::read(format!("WorkerPools in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .filter(|pool| pool.spec.cluster_ref == name && pool.meta().deletion_timestamp.is_none())
        .collect())
}

/// A pool as the topology sees it: its spec, and the readiness its own reconciler
/// reported.
pub(crate) fn pool_view(pool: &WorkerPool) -> PoolView {
    let selected = pool.spec.roles.selected();
    PoolView {
        name: pool.name_any(),
        product: selected.as_ref().map(|(product, _)| *product),
        toggles: selected.map(|(_, toggles)| toggles).unwrap_or_default(),
        replicas: pool.spec.replicas,
        ready_replicas: pool.status.as_ref().map_or(0, |s| s.ready_replicas),
    }
}

/// Today minus a week (UTC): Loki rejects samples older than a week by default, so any
/// sample it accepts falls after the schema's start.
pub(crate) fn new_loki_schema_date() -> String {
    let today = Timestamp::now().to_zoned(TimeZone::UTC).date();
    today.checked_sub(7.days()).unwrap_or(today).to_string()
}

async fn prune_children(
    ctx: &Context,
    cluster: &GrafanaCluster,
    keep: &BTreeSet<String>,
    agent: bool,
) -> Result<()> {
    let client = &ctx.client;
    let ns = cluster.namespace().unwrap_or_default();
    let uid = cluster.uid().unwrap_or_default();
    let selector = format!("{CLUSTER}={}", cluster.name_any());
    prune::<Service>(client, &ns, &selector, &uid, keep).await?;
    prune::<PodDisruptionBudget>(client, &ns, &selector, &uid, keep).await?;
    prune::<ConfigMap>(client, &ns, &selector, &uid, keep).await?;
    if !agent {
        let none = BTreeSet::new();
        prune::<ServiceAccount>(client, &ns, &selector, &uid, &none).await?;
        prune::<Role>(client, &ns, &selector, &uid, &none).await?;
        prune::<RoleBinding>(client, &ns, &selector, &uid, &none).await?;
    }
    Ok(())
}

/// The status an observation gives.
fn status(
    o: &Observation,
    view: &ClusterView,
    settings: &Settings,
    now: &Time,
) -> GrafanaClusterStatus {
    use condition::*;
    let spec = &o.cluster.spec;
    let previous = o.cluster.status.clone().unwrap_or_default();
    let topology = &o.topology;
    let missing = topology.missing_roles();
    let mut observed = Vec::new();

    observed.push(if o.pools.is_empty() {
        Observed::new(
            CONSISTENT,
            false,
            "NoWorkerPools",
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
            "MissingRoles",
            format!(
                "no valid pool with replicas provides the required roles {}: add or scale up pools with them; the last consistent configuration keeps running",
                missing.join(", ")
            ),
        )
    } else {
        Observed::new(CONSISTENT, true, "AllRequiredRolesPresent", "every required role has a pool")
    });

    observed.push(match &o.storage.problem {
        Some(problem) => Observed::new(
            STORAGE_READY,
            false,
            problem.reason,
            problem.message.clone(),
        ),
        None => Observed::new(
            STORAGE_READY,
            true,
            "SecretsFound",
            "the storage Secrets hold every key the workers read",
        ),
    });

    observed.push(match &o.config_problem {
        Some((reason, message)) => Observed::new(
            CONFIG_VALID,
            false,
            reason,
            format!("{message}; the last valid configuration keeps running"),
        ),
        None => Observed::new(
            CONFIG_VALID,
            true,
            "Valid",
            "the spec gives a valid product configuration",
        ),
    });

    if spec.tls.is_some() {
        observed.push(match &o.tls_problem {
            Some(problem) => Observed::new(
                TLS_READY,
                false,
                problem.reason,
                format!(
                    "{}; the gateway does not serve plain HTTP meanwhile",
                    problem.message
                ),
            ),
            None => Observed::new(TLS_READY, true, "SecretFound", "the gateway serves TLS"),
        });
    }

    let gateway_ready = o
        .gateway
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let unready_roles = topology.unready_required_roles();
    observed.push(if gateway_ready == 0 {
        Observed::new(
            AVAILABLE,
            false,
            "GatewayNotReady",
            format!(
                "no gateway pod is ready (Deployment {})",
                view.child_name("gateway")
            ),
        )
    } else if !unready_roles.is_empty() {
        Observed::new(
            AVAILABLE,
            false,
            "RolesNotReady",
            format!("no ready worker runs {}", unready_roles.join(", ")),
        )
    } else {
        Observed::new(
            AVAILABLE,
            true,
            "Available",
            "the gateway and every required role have a ready pod",
        )
    });

    let invalid: Vec<String> = topology
        .invalid_pools
        .iter()
        .map(|(pool, problem)| format!("{pool} ({problem})"))
        .collect();
    let not_ready: Vec<String> = o
        .pools
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
    observed.push(if !invalid.is_empty() {
        Observed::new(
            DEGRADED,
            true,
            "InvalidPools",
            format!("pools not deployed: {}", invalid.join("; ")),
        )
    } else if !not_ready.is_empty() {
        Observed::new(
            DEGRADED,
            true,
            "PoolsNotReady",
            format!("pools below their replicas: {}", not_ready.join(", ")),
        )
    } else {
        Observed::new(DEGRADED, false, "AsExpected", "everything runs as asked")
    });

    let gateway_rolling = o.gateway.as_ref().is_some_and(|d| {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        status.observed_generation < d.metadata.generation
            || status.updated_replicas.unwrap_or(0) < desired
            || status.replicas.unwrap_or(0) > desired
    });
    let pools_rolling: Vec<String> = o
        .pools
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.observed_generation < p.metadata.generation || s.updated_replicas < s.replicas
            })
        })
        .map(|p| p.name_any())
        .collect();
    observed.push(if gateway_rolling || !pools_rolling.is_empty() {
        let mut what = pools_rolling;
        if gateway_rolling {
            what.insert(0, view.child_name("gateway"));
        }
        Observed::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("rolling out: {}", what.join(", ")),
        )
    } else {
        Observed::new(PROGRESSING, false, "Settled", "no rollout under way")
    });

    observed.push(if spec.paused {
        Observed::new(
            PAUSED,
            true,
            "Paused",
            "spec.paused is true: status is kept up to date, nothing is changed",
        )
    } else {
        Observed::new(PAUSED, false, "Reconciling", "changes are applied")
    });

    let generation = o.cluster.meta().generation;
    let recommendations = recommendations(view.product(), spec, topology);
    GrafanaClusterStatus {
        observed_generation: generation,
        product: Some(view.product()),
        version: Some(view.version().to_string()),
        gateway_url: Some(view.gateway_url(settings)),
        roles: topology
            .roles
            .iter()
            .map(|(role, p)| RoleStatus {
                name: role.to_string(),
                required: p.required,
                pools: p.pools.clone(),
                replicas: p.replicas,
                ready_replicas: p.ready_replicas,
            })
            .collect(),
        missing_roles: missing.iter().map(|r| r.to_string()).collect(),
        missing_roles_summary: missing.join(","),
        recommendations,
        loki_schema_from: o
            .loki_schema_from
            .clone()
            .or(previous.loki_schema_from.clone()),
        config_hash: o.config_hash.clone(),
        conditions: conditions::merge(&previous.conditions, observed, generation, now),
    }
}

/// Writes the status when it changed, with an Event for each condition that turned bad.
async fn write_status(
    ctx: &Context,
    cluster: &GrafanaCluster,
    status: GrafanaClusterStatus,
) -> Result<()> {
    let name = cluster.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    ctx.metrics
        .set_conditions("GrafanaCluster", &ns, &name, &status.conditions);
    let previous = cluster.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    report_problems(
        ctx,
        cluster,
        &previous.conditions,
        &status.conditions,
        &[condition::DEGRADED],
    )
    .await;
    apply_status(&ctx.client, cluster, &status).await
}

/// Advice for the user: roles below their recommended replicas, and settings that leave
/// something without effect for this product.
fn recommendations(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn loki_says_its_workers_send_no_traces_over_otlp() {
        let traces_advice = |product: Product| {
            let mut cluster = fixtures::minimal_cluster(product);
            cluster.spec.self_monitoring.traces = Some(
                serde_json::from_value(serde_json::json!({"otlpEndpoint": "tempo.obs.svc:4317"}))
                    .expect("traces spec"),
            );
            let topology = fixtures::topology(product, &[("all", &["all"], 3)]);
            recommendations(product, &cluster.spec, &topology)
                .into_iter()
                .filter(|r| r.starts_with("selfMonitoring.traces"))
                .count()
        };
        assert_eq!(traces_advice(Product::Loki), 1);
        assert_eq!(traces_advice(Product::Mimir), 0);
        assert_eq!(traces_advice(Product::Tempo), 0);
    }
}
