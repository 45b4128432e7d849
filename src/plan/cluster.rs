//! A GrafanaCluster's plan: from what was read about it to the children that should
//! exist. Its status follows from the plan and the gateway ([`ClusterPlan::status`]).

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::ToSpan;
use k8s_openapi::jiff::civil::Date;
use kube::ResourceExt;

use super::Reason;
use super::secrets::{self, BucketCheck, SecretProblem, Secrets, StorageSecrets};
use super::tenants::{self, TenantsPlan};
use crate::api::{Backend, GrafanaCluster, Tenant, WorkerPool};
use crate::product::{PoolSummary, Product, Topology};
use crate::render::config::{ConfigError, ConfigInputs, Duration};
use crate::render::{self, ClusterChildren, ClusterView, LOKI_SCHEMA_FROM, Settings};

/// What the plan of a cluster is made from: everything read, nothing fetched here.
pub struct ClusterInputs<'a> {
    pub cluster: &'a GrafanaCluster,
    /// The WorkerPools that name the cluster, except those being deleted.
    pub pools: &'a [WorkerPool],
    /// The Tenants that name the cluster, except those being deleted.
    pub tenants: &'a [Tenant],
    /// A random key for the gateway's auth Secret, used only when it holds none yet.
    pub fresh_key: &'a [u8],
    /// The Secrets the cluster and its Tenants reference ([`secrets::referenced`],
    /// [`tenants::referenced`]), as read.
    pub secrets: &'a Secrets,
    /// What the storage probe found with these Secrets.
    pub bucket: &'a BucketCheck,
    /// The shared configuration ConfigMap as it is, if it exists.
    pub current_config: Option<&'a ConfigMap>,
    /// The pods get IPv6 addresses only (read from the gossip Service's IP families).
    pub ipv6: bool,
    /// The Prometheus Operator's PrometheusRule CRD is installed.
    pub prometheus_rules: bool,
    pub settings: &'a Settings,
    /// Today (UTC), from which a new Loki cluster's schema date is chosen.
    pub today: Date,
}

/// Why the spec gives no valid product configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `InvalidRetention` or `InvalidConfigOverrides`.
    pub reason: Reason,
    pub message: String,
}

/// Loki's schema start date, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiSchema {
    pub from: String,
    /// Chosen by this plan (no status or configuration recorded one yet).
    pub new: bool,
}

/// What should exist for a cluster, and what was found on the way.
pub struct ClusterPlan<'a> {
    pub view: ClusterView<'a>,
    pub topology: Topology,
    pub children: ClusterChildren,
    pub storage: StorageSecrets,
    /// Set when the cluster asks for TLS and its Secret is not usable.
    pub tls_problem: Option<SecretProblem>,
    /// Set when a self-monitoring destination names a credential its Secret lacks.
    pub agent_auth_problem: Option<SecretProblem>,
    pub config_problem: Option<ConfigProblem>,
    pub loki_schema: Option<LokiSchema>,
    /// Checksum of the configuration the workers run once the plan is applied.
    pub config_hash: Option<String>,
    pub tenants: TenantsPlan,
}

/// A pool summed up for the topology: its roles, replicas, and the readiness its own
/// reconciler reported.
pub fn summarize(pool: &WorkerPool) -> PoolSummary {
    let selected = pool.spec.roles.selected();
    PoolSummary {
        name: pool.name_any(),
        product: selected.as_ref().map(|(product, _)| *product),
        toggles: selected.map(|(_, toggles)| toggles).unwrap_or_default(),
        replicas: counted_replicas(pool),
        ready_replicas: pool.status.as_ref().map_or(0, |s| s.ready_replicas),
        zones: pool.spec.zone_names(),
    }
}

/// The replicas a pool counts for: as asked, but a pool scaling down counts its workers
/// until every one has left (those that still run, and the size a scale-down under way
/// began from). The replication factor, and so the shared configuration, stay as they
/// are while workers leave; they change, and roll the workers, once it is done.
fn counted_replicas(pool: &WorkerPool) -> i32 {
    let status = pool.status.as_ref();
    let running = status.map_or(0, |s| s.replicas);
    let leaving_from = status
        .and_then(|s| s.scale_down.as_ref())
        .map_or(0, |d| d.from_replicas);
    pool.spec.replicas.max(running).max(leaving_from)
}

/// `today` minus a week: Loki rejects samples older than a week by default, so any
/// sample it accepts falls after the schema's start.
pub fn new_loki_schema_date(today: Date) -> String {
    today.checked_sub(7.days()).unwrap_or(today).to_string()
}

/// Plans a cluster. The shared configuration is in the plan only for a consistent
/// cluster with a valid spec; otherwise the last one keeps running (ADR 2).
pub fn plan<'a>(inputs: &ClusterInputs<'a>) -> ClusterPlan<'a> {
    let cluster = inputs.cluster;
    let view = ClusterView::new(cluster);
    let product = view.product();
    let summaries: Vec<PoolSummary> = inputs.pools.iter().map(summarize).collect();
    let topology = Topology::new(product, &summaries);
    let loki_schema = (product == Product::Loki).then(|| loki_schema(inputs));
    let storage = secrets::check_storage(product, &cluster.spec.storage, inputs.secrets)
        .with_bucket(inputs.bucket);
    let tenants = tenants::plan(cluster, inputs.tenants, inputs.secrets, inputs.fresh_key);
    let (shared_config, config_problem) = shared_config(
        inputs,
        &view,
        &topology,
        &storage,
        (
            loki_schema.as_ref().map(|s| s.from.as_str()),
            tenants.any_retention(),
        ),
    );
    let config_hash = match (&shared_config, cluster.spec.paused) {
        (Some(config), false) => Some(render::config_checksum(config)),
        _ => inputs.current_config.map(render::config_checksum),
    };
    let (agent_credentials, agent_auth_problem) =
        secrets::check_agent_auth(&cluster.spec.self_monitoring, inputs.secrets);
    let children = render::cluster_children(
        &view,
        &topology,
        shared_config,
        (tenants.auth.as_ref(), &tenants.entries),
        &agent_credentials,
        inputs.settings,
        inputs.prometheus_rules,
    );
    let tls_problem = cluster
        .spec
        .tls
        .as_ref()
        .and_then(|tls| secrets::check_tls(&tls.secret_name, inputs.secrets));
    ClusterPlan {
        storage,
        view,
        topology,
        children,
        tls_problem,
        agent_auth_problem,
        config_problem,
        // Recorded once a configuration using it exists.
        loki_schema: loki_schema.filter(|_| config_hash.is_some()),
        config_hash,
        tenants,
    }
}

/// The schema date: kept in status, else in the configuration's annotation (should the
/// status be lost), else chosen now.
fn loki_schema(inputs: &ClusterInputs) -> LokiSchema {
    let recorded = inputs
        .cluster
        .status
        .as_ref()
        .and_then(|s| s.loki_schema_from.clone())
        .or_else(|| {
            inputs
                .current_config
                .and_then(|c| c.annotations().get(LOKI_SCHEMA_FROM).cloned())
        });
    match recorded {
        Some(from) => LokiSchema { from, new: false },
        None => LokiSchema {
            from: new_loki_schema_date(inputs.today),
            new: true,
        },
    }
}

/// The shared configuration to write, or why there is none to write. None while the
/// cluster is inconsistent or its storage is not usable: the last one keeps running
/// (ADR 2, ADR 11). It records the storage Secrets it was verified with, which the
/// pools roll onto.
fn shared_config(
    inputs: &ClusterInputs,
    view: &ClusterView,
    topology: &Topology,
    storage: &StorageSecrets,
    (loki_schema_from, tenant_retention): (Option<&str>, bool),
) -> (Option<ConfigMap>, Option<ConfigProblem>) {
    let problem = |reason, message| Some(ConfigProblem { reason, message });
    let retention = match view
        .spec
        .retention
        .as_deref()
        .map(Duration::parse)
        .transpose()
    {
        Ok(retention) => retention,
        Err(error) => {
            return (
                None,
                problem(Reason::InvalidRetention, format!("spec.retention: {error}")),
            );
        }
    };
    if !topology.is_consistent() {
        return (None, None);
    }
    if let Some(message) = filesystem_problem(inputs) {
        return (None, problem(Reason::FilesystemNeedsOneWorker, message));
    }
    let config_inputs = ConfigInputs {
        tenant_retention,
        ..ConfigInputs::for_cluster(
            view,
            topology,
            inputs.settings,
            retention,
            loki_schema_from,
            inputs.ipv6,
        )
    };
    match render::shared_config(view, &config_inputs) {
        // Rendered all the same, so that ConfigValid still speaks for the spec.
        Ok(_) if storage.problem.is_some() => (None, None),
        Ok(mut config) => {
            config
                .annotations_mut()
                .insert(render::SECRETS_CHECKSUM.into(), storage.checksum.clone());
            (Some(config), None)
        }
        Err(error) => {
            let reason = match error {
                ConfigError::Retention(_) => Reason::InvalidRetention,
                ConfigError::Overrides(_) => Reason::InvalidConfigOverrides,
            };
            (None, problem(reason, error.to_string()))
        }
    }
}

/// The filesystem backend keeps objects on one worker's own volume, which no other
/// worker sees: it takes one pool of the `all` role and at most one replica (upstream
/// calls it non-production: Mimir's object-storage docs; Loki's filesystem docs, not
/// clusterable without a shared filesystem; Tempo's `local` backend, monolithic only;
/// see the runtime contract). CRD validation sees one object at a time, so this is
/// judged here rather than at admission.
fn filesystem_problem(inputs: &ClusterInputs) -> Option<String> {
    if !matches!(
        inputs.cluster.spec.storage.backend(),
        Backend::Filesystem(_)
    ) {
        return None;
    }
    let pools: Vec<PoolSummary> = inputs.pools.iter().map(summarize).collect();
    let one_monolith = matches!(
        pools.as_slice(),
        [only] if only.toggles == ["all"] && only.replicas <= 1
    );
    (!one_monolith).then(|| {
        format!(
            "the filesystem backend keeps objects on one worker's own volume: it takes a single pool with only the all role and at most one replica (found {}); use s3, gcs or azure to scale out",
            pools
                .iter()
                .map(|p| format!("{} ({} × {})", p.name, p.toggles.join("+"), p.replicas))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// Plans `cluster` with `pools`, its Secrets present and its bucket verified, on
    /// 2026-12-01.
    fn plan_of<T>(
        cluster: &GrafanaCluster,
        pools: &[WorkerPool],
        then: impl FnOnce(&ClusterPlan) -> T,
    ) -> T {
        plan_with_bucket(cluster, pools, &BucketCheck::Verified, then)
    }

    fn plan_with_bucket<T>(
        cluster: &GrafanaCluster,
        pools: &[WorkerPool],
        bucket: &BucketCheck,
        then: impl FnOnce(&ClusterPlan) -> T,
    ) -> T {
        let secrets = fixtures::storage_secrets();
        let settings = Settings::default();
        let plan = plan(&ClusterInputs {
            cluster,
            pools,
            tenants: &[],
            fresh_key: &[],
            secrets: &secrets,
            bucket,
            current_config: None,
            ipv6: false,
            prometheus_rules: false,
            settings: &settings,
            today: Date::constant(2026, 12, 1),
        });
        then(&plan)
    }

    #[test]
    fn a_verified_bucket_writes_the_configuration_naming_the_secrets_it_was_verified_with() {
        let cluster = fixtures::minimal_cluster(Product::Mimir);
        let pools = [fixtures::ready_pool("m", Product::Mimir, &["all"], 1)];
        plan_of(&cluster, &pools, |plan| {
            let config = plan.children.shared_config.as_ref().expect("config");
            assert_eq!(
                config.annotations().get(render::SECRETS_CHECKSUM),
                Some(&plan.storage.checksum)
            );
            assert!(!plan.storage.checksum.is_empty() && plan.storage.probed);
        });
    }

    #[test]
    fn a_failing_bucket_freezes_the_configuration_but_the_spec_is_still_judged() {
        let failed = BucketCheck::Failed(crate::probe::ProbeFailure {
            reason: Reason::AccessDenied,
            message: "write failed".into(),
        });
        let mut cluster = fixtures::minimal_cluster(Product::Mimir);
        let pools = [fixtures::ready_pool("m", Product::Mimir, &["all"], 1)];
        plan_with_bucket(&cluster, &pools, &failed, |plan| {
            assert!(plan.children.shared_config.is_none(), "frozen");
            assert_eq!(plan.config_hash, None, "no configuration ran yet");
            assert_eq!(
                plan.storage.problem.as_ref().map(|p| p.reason),
                Some(Reason::AccessDenied)
            );
            assert_eq!(plan.config_problem, None);
        });
        cluster.spec.config_overrides = Some(serde_json::json!(["not", "a", "map"]));
        plan_with_bucket(&cluster, &pools, &failed, |plan| {
            assert_eq!(
                plan.config_problem.as_ref().map(|p| p.reason),
                Some(Reason::InvalidConfigOverrides),
                "a bad spec is reported whatever the bucket says"
            );
        });
    }

    #[test]
    fn a_new_loki_cluster_starts_its_schema_a_week_ago() {
        let cluster = fixtures::minimal_cluster(Product::Loki);
        let pools = [fixtures::ready_pool("logs-all", Product::Loki, &["all"], 1)];
        plan_of(&cluster, &pools, |plan| {
            assert_eq!(
                plan.loki_schema,
                Some(LokiSchema {
                    from: "2026-11-24".into(),
                    new: true
                })
            );
            assert!(plan.children.shared_config.is_some());
        });
    }

    #[test]
    fn an_inconsistent_cluster_plans_no_configuration_and_records_no_schema() {
        let cluster = fixtures::minimal_cluster(Product::Loki);
        plan_of(&cluster, &[], |plan| {
            assert!(plan.children.shared_config.is_none());
            assert_eq!(plan.loki_schema, None);
            assert_eq!(plan.config_hash, None);
            assert_eq!(plan.config_problem, None);
        });
    }

    #[test]
    fn a_bad_retention_is_a_config_problem_even_without_pools() {
        let mut cluster = fixtures::minimal_cluster(Product::Mimir);
        cluster.spec.retention = Some("forever".into());
        let problem =
            plan_of(&cluster, &[], |plan| plan.config_problem.clone()).expect("a problem");
        assert_eq!(problem.reason, Reason::InvalidRetention);
        assert!(
            problem.message.starts_with("spec.retention: "),
            "{problem:?}"
        );
    }
}
