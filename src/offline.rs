//! `lgtm-operator render`: what the operator would create for some manifests, without a
//! cluster, as YAML that `kubectl apply` accepts. For review, GitOps and debugging.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::jiff::{Timestamp, tz::TimeZone};

use crate::api::{GrafanaCluster, Tenant, WorkerPool};
use crate::plan::{
    self,
    cluster::ClusterInputs,
    pool::{Blocked, PoolAction, PoolInputs},
    secrets::Secrets,
};
use crate::render::agent::Agent;
use crate::render::gateway::Gateway;
use crate::render::workers::Workers;
use crate::render::{Alerts, CREDENTIALS_CHECKSUM, ClusterChildren, Settings};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{source_name}: document {index}: {message}")]
    Parse {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The key the auth files are rendered with offline (the operator's is random). Known to
/// all, so the checksum it gives is not printed ([`hide_credentials_checksum`]).
const OFFLINE_AUTH_KEY: &[u8] = b"offline render, not the operator's key";

/// Replaces the gateway's credentials checksum: keyed with a public key, it would let a
/// reader of the output test guesses at the passwords given as input.
fn hide_credentials_checksum(children: &mut ClusterChildren) {
    let template = children
        .gateway
        .deployment
        .spec
        .as_mut()
        .map(|s| &mut s.template);
    let annotations = template
        .and_then(|t| t.metadata.as_mut())
        .and_then(|m| m.annotations.as_mut());
    if let Some(checksum) = annotations.and_then(|a| a.get_mut(CREDENTIALS_CHECKSUM)) {
        *checksum = "(the operator's, keyed with its auth Secret's key)".into();
    }
}

/// The manifests read: clusters, pools, Tenants and Secrets (other kinds are skipped).
pub struct Inputs {
    /// Namespace given to manifests that name none.
    namespace: String,
    pub clusters: Vec<GrafanaCluster>,
    pub pools: Vec<WorkerPool>,
    pub tenants: Vec<Tenant>,
    pub secrets: Vec<Secret>,
}

impl Inputs {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            clusters: Vec::new(),
            pools: Vec::new(),
            tenants: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// Adds the documents of one YAML stream; `source_name` names it in errors.
    pub fn add(&mut self, source_name: &str, yaml: &str) -> Result<Vec<String>, OfflineError> {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| OfflineError::Parse {
                source_name: source_name.to_string(),
                index: 0,
                message: e.to_string(),
            })?;
        let mut notes = Vec::new();
        for (index, mut document) in documents.into_iter().enumerate() {
            if document.is_null() {
                continue;
            }
            if let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata
                    .entry("namespace")
                    .or_insert_with(|| Value::String(self.namespace.clone()));
            }
            let error = |e: serde_json::Error| OfflineError::Parse {
                source_name: source_name.to_string(),
                index: index + 1,
                message: e.to_string(),
            };
            match document.get("kind").and_then(Value::as_str) {
                Some("GrafanaCluster") => self
                    .clusters
                    .push(serde_json::from_value(document).map_err(error)?),
                Some("WorkerPool") => self
                    .pools
                    .push(serde_json::from_value(document).map_err(error)?),
                Some("Tenant") => self
                    .tenants
                    .push(serde_json::from_value(document).map_err(error)?),
                Some("Secret") => self
                    .secrets
                    .push(serde_json::from_value(document).map_err(error)?),
                Some(other) => notes.push(format!("{source_name}: skipped a {other}")),
                None => notes.push(format!(
                    "{source_name}: skipped document {} without a kind",
                    index + 1
                )),
            }
        }
        Ok(notes)
    }
}

/// The rendering: YAML documents on `manifests`, and notes for a human on `notes`.
pub struct Rendered {
    pub manifests: String,
    pub notes: Vec<String>,
}

fn namespace_of(namespace: Option<String>) -> String {
    namespace.unwrap_or_default()
}

/// How the target cluster looks, as far as rendering depends on it.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub settings: Settings,
    /// The Prometheus Operator's PrometheusRule CRD is installed: alert rules become a
    /// PrometheusRule rather than a ConfigMap.
    pub prometheus_rules: bool,
    /// Pods get IPv6 addresses only (the operator reads it from its Services' families).
    pub ipv6: bool,
}

/// Renders every child the operator would create for `inputs`, through the same plan
/// as the controllers. Offline, every pool is taken to be fully ready.
pub fn render(inputs: &Inputs, options: &Target) -> Result<Rendered, OfflineError> {
    let mut documents: Vec<Value> = Vec::new();
    let mut notes = Vec::new();
    for pool in &inputs.pools {
        let ns = namespace_of(pool.namespace());
        if !inputs
            .clusters
            .iter()
            .any(|c| c.name_any() == pool.spec.cluster_ref && namespace_of(c.namespace()) == ns)
        {
            notes.push(format!(
                "WorkerPool {ns}/{}: GrafanaCluster {:?} is not among the inputs; nothing rendered for it",
                pool.name_any(),
                pool.spec.cluster_ref
            ));
        }
    }
    for cluster in &inputs.clusters {
        render_cluster(inputs, options, cluster, &mut documents, &mut notes)?;
    }
    let manifests = serde_saphyr::to_string_multiple(&documents)
        .map_err(|e| OfflineError::Invalid(format!("cannot write YAML: {e}")))?;
    Ok(Rendered { manifests, notes })
}

/// Plans one cluster and its pools, pushing their children onto `documents`.
fn render_cluster(
    inputs: &Inputs,
    options: &Target,
    cluster: &GrafanaCluster,
    documents: &mut Vec<Value>,
    notes: &mut Vec<String>,
) -> Result<(), OfflineError> {
    let ns = namespace_of(cluster.namespace());
    let name = cluster.name_any();
    let label = format!("GrafanaCluster {ns}/{name}");
    let pools: Vec<WorkerPool> = inputs
        .pools
        .iter()
        .filter(|p| p.spec.cluster_ref == name && namespace_of(p.namespace()) == ns)
        .map(fully_ready)
        .collect();
    let tenants: Vec<Tenant> = inputs
        .tenants
        .iter()
        .filter(|t| t.spec.cluster_ref == name && namespace_of(t.namespace()) == ns)
        .cloned()
        .collect();
    let secrets: Secrets = inputs
        .secrets
        .iter()
        .filter(|s| namespace_of(s.namespace()) == ns)
        .map(|s| (s.name_any(), Some(s.clone())))
        .collect();
    let cluster_inputs = ClusterInputs {
        cluster,
        pools: &pools,
        tenants: &tenants,
        // Offline there is no auth Secret to read its key from: the credentials checksum
        // on the gateway differs from the operator's.
        fresh_key: OFFLINE_AUTH_KEY,
        secrets: &secrets,
        // Offline, nothing reaches the bucket.
        bucket: &plan::secrets::BucketCheck::NotChecked,
        current_config: None,
        ipv6: options.ipv6,
        prometheus_rules: options.prometheus_rules,
        settings: &options.settings,
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    };
    let mut plan = plan::cluster::plan(&cluster_inputs);
    hide_credentials_checksum(&mut plan.children);
    for (pool, problem) in &plan.topology.invalid_pools {
        notes.push(format!("WorkerPool {ns}/{pool}: not deployed: {problem}"));
    }
    if let Some(problem) = &plan.config_problem {
        return Err(OfflineError::Invalid(format!(
            "{label}: {}",
            problem.message
        )));
    }
    if let Some(schema) = plan.loki_schema.as_ref().filter(|s| s.new) {
        notes.push(format!(
            "{label}: Loki schema starts {} (the operator fixes it once, at the first consistent reconcile)",
            schema.from
        ));
    }
    for mixed in plan.topology.mixed_zones() {
        notes.push(format!(
            "{label}: {mixed}: zone awareness stays off until the unzoned pools are scaled to 0 (a migration to zones)"
        ));
    }
    push_cluster_children(&plan.children, documents);
    if let Some(auth) = &plan.children.gateway_auth {
        notes.push(format!(
            "{label}: the gateway's auth Secret {} is not printed: it holds the Tenants' credentials",
            auth.name_any()
        ));
    }
    for outcome in &plan.tenants.outcomes {
        if let Some((reason, message)) = &outcome.problem {
            notes.push(format!("Tenant {ns}/{}: {reason}: {message}", outcome.name));
        }
    }
    let Some(config) = &plan.children.shared_config else {
        let why = match &plan.storage.problem {
            Some(problem) if plan.topology.is_consistent() => problem.message.clone(),
            _ => format!(
                "not consistent (missing {})",
                plan.topology.missing_roles().join(", ")
            ),
        };
        notes.push(format!(
            "{label}: {why}: no product configuration, and its pools wait for one"
        ));
        return Ok(());
    };
    // Without the Secrets among the inputs the workers are rendered anyway, so that a
    // review needs no credentials; only their checksum annotation differs.
    let mut storage = plan.storage.clone();
    if let Some(problem) = storage.problem.take() {
        notes.push(format!(
            "{label}: {} (the checksum annotation on worker pods will differ from the operator's)",
            problem.message
        ));
    }
    for pool in &pools {
        let pool_plan = plan::pool::plan(&PoolInputs {
            pool,
            cluster: Some(cluster),
            config: Some(config),
            storage: &storage,
            siblings: &pools,
        });
        match pool_plan.action {
            PoolAction::Apply(workers) => push_workers(&workers, documents),
            PoolAction::Remove | PoolAction::Leave => {
                if let Some(Blocked::Waiting { message, .. }) = pool_plan.blocked {
                    return Err(OfflineError::Invalid(format!(
                        "WorkerPool {ns}/{}: {message}",
                        pool.name_any()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The pool as the topology sees it once all its replicas are ready.
fn fully_ready(pool: &WorkerPool) -> WorkerPool {
    let mut pool = pool.clone();
    let status = pool.status.get_or_insert_default();
    status.ready_replicas = pool.spec.replicas;
    pool
}

/// Every child of the cluster, in the order `kubectl apply` should create them.
/// Destructured without `..`, like the controller's apply set.
fn push_cluster_children(children: &ClusterChildren, documents: &mut Vec<Value>) {
    let ClusterChildren {
        gateway,
        agent,
        gossip,
        role_services,
        shared_config,
        dashboards,
        alerts,
        runtime_overrides,
        // Never printed: it holds credentials (a note names it).
        gateway_auth: _,
    } = children;
    let Gateway {
        config,
        deployment,
        service,
        pdb,
    } = gateway;
    let mut push = |object: &dyn erased::Serializable| documents.push(object.to_value());
    if let Some(config) = shared_config {
        push(config);
    }
    push(runtime_overrides);
    push(config);
    push(deployment);
    push(service);
    if let Some(pdb) = pdb {
        push(pdb);
    }
    push(gossip);
    for service in role_services {
        push(service);
    }
    for dashboard in dashboards {
        push(dashboard);
    }
    match alerts {
        Some(Alerts::PrometheusRule(rule)) => push(rule),
        Some(Alerts::ConfigMap(rules)) => push(rules),
        None => {}
    }
    if let Some(Agent {
        config,
        service_account,
        role,
        role_binding,
        peers,
    }) = agent
    {
        push(config);
        push(service_account);
        push(role);
        push(role_binding);
        push(peers);
    }
}

fn push_workers(workers: &Workers, documents: &mut Vec<Value>) {
    let Workers {
        layout: _,
        statefulsets,
        service,
        pdbs,
    } = workers;
    let mut push = |object: &dyn erased::Serializable| documents.push(object.to_value());
    for statefulset in statefulsets {
        push(statefulset);
    }
    push(service);
    for pdb in pdbs {
        push(pdb);
    }
}

/// Lets objects of different kinds go into one list.
mod erased {
    pub trait Serializable {
        fn to_value(&self) -> serde_json::Value;
    }

    impl<T: super::Serialize> Serializable for T {
        fn to_value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("Kubernetes objects always serialize")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = include_str!("../deploy/samples/s3-credentials.yaml");
    const MIMIR: &str = include_str!("../deploy/samples/mimir-read-write-backend.yaml");
    const LOKI: &str = include_str!("../deploy/samples/loki-monolithic.yaml");
    const TEMPO: &str = include_str!("../deploy/samples/tempo-microservices.yaml");

    fn rendered(sources: &[&str]) -> (Vec<Value>, Vec<String>) {
        let mut inputs = Inputs::new("obs");
        for (i, source) in sources.iter().enumerate() {
            inputs.add(&format!("input{i}"), source).expect("parses");
        }
        let out = render(&inputs, &Target::default()).expect("renders");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&out.manifests).expect("YAML");
        (documents, out.notes)
    }

    fn names_of(documents: &[Value], kind: &str) -> Vec<String> {
        documents
            .iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn every_sample_renders_its_workers_and_gateway() {
        let (documents, notes) = rendered(&[SECRET, MIMIR, LOKI, TEMPO]);
        let statefulsets = names_of(&documents, "StatefulSet");
        for pool in [
            "metrics-read",
            "metrics-write",
            "metrics-backend",
            "logs-all",
            "traces-ingester",
            "traces-metrics-generator",
        ] {
            assert!(
                statefulsets.contains(&pool.to_string()),
                "{pool} in {statefulsets:?}"
            );
        }
        let deployments = names_of(&documents, "Deployment");
        assert_eq!(
            deployments,
            ["metrics-gateway", "logs-gateway", "traces-gateway"]
        );
        assert!(
            documents
                .iter()
                .all(|d| d["metadata"]["namespace"] == "obs")
        );
        assert!(
            notes.iter().all(|n| !n.contains("not consistent")),
            "{notes:?}"
        );
    }

    #[test]
    fn monitored_clusters_get_dashboards_and_alert_rules() {
        let (documents, _) = rendered(&[SECRET, MIMIR, LOKI]);
        let config_maps = names_of(&documents, "ConfigMap");
        assert!(
            config_maps.contains(&"metrics-dashboard-overview".to_string()),
            "{config_maps:?}"
        );
        assert!(config_maps.contains(&"metrics-alerts".to_string()));
        // The Loki sample ships no metrics anywhere: dashboards would show nothing.
        assert!(!config_maps.iter().any(|n| n.starts_with("logs-dashboard")));

        let mut inputs = Inputs::new("obs");
        inputs.add("mimir", MIMIR).expect("parses");
        let target = Target {
            prometheus_rules: true,
            ..Target::default()
        };
        let out = render(&inputs, &target).expect("renders");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&out.manifests).expect("YAML");
        assert_eq!(names_of(&documents, "PrometheusRule"), ["metrics-alerts"]);
        assert!(!names_of(&documents, "ConfigMap").contains(&"metrics-alerts".to_string()));
    }

    #[test]
    fn secret_values_are_never_printed() {
        let mut inputs = Inputs::new("obs");
        inputs.add("secret", SECRET).expect("parses");
        inputs.add("loki", LOKI).expect("parses");
        let out = render(&inputs, &Target::default()).expect("renders");
        assert!(!out.manifests.contains("lgtm-sample-secret"));
        assert!(!out.manifests.contains("kind: Secret"));
    }

    #[test]
    fn an_inconsistent_cluster_renders_no_config_and_says_why() {
        let read_only = "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {name: m}\nspec: {product: mimir, storage: {s3: {endpoint: e, bucket: b, credentialsSecret: {name: s}}}}\n---\napiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: r}\nspec: {clusterRef: m, roles: {mimir: {read: true}}}\n";
        let (documents, notes) = rendered(&[read_only]);
        assert!(names_of(&documents, "StatefulSet").is_empty());
        assert!(!names_of(&documents, "ConfigMap").contains(&"m-config".to_string()));
        assert!(
            notes.iter().any(|n| n.contains("missing compactor")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_migration_to_zones_renders_each_step() {
        let cluster = "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {name: logs}\nspec: {product: loki, storage: {s3: {endpoint: e, bucket: b, credentialsSecret: {name: s}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {access-key-id: a, secret-access-key: b}\n";
        let pool = |name: &str, replicas: i32, extra: &str| {
            format!(
                "---\napiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}}}\nspec: {{clusterRef: logs, replicas: {replicas}, roles: {{loki: {{{}}}}}{extra}}}\n",
                match name {
                    "read" | "backend" => format!("{name}: true"),
                    _ => "write: true".to_string(),
                }
            )
        };
        let zones = ", zones: [{name: zone-a}, {name: zone-b}, {name: zone-c}]";
        let config_of = |documents: &[Value]| -> String {
            let config = documents
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "logs-config")
                .expect("the shared configuration");
            config["data"]["config.yaml"]
                .as_str()
                .expect("text")
                .to_string()
        };
        // Step 1: the zoned pool beside the old one; awareness stays off, and says why.
        let sources = format!(
            "{cluster}{}{}{}{}",
            pool("read", 1, ""),
            pool("backend", 1, ""),
            pool("old", 3, ""),
            pool("zoned", 3, zones)
        );
        let (documents, notes) = rendered(&[&sources]);
        let sets = names_of(&documents, "StatefulSet");
        for name in ["old", "zoned-zone-a", "zoned-zone-b", "zoned-zone-c"] {
            assert!(sets.contains(&name.to_string()), "{sets:?}");
        }
        assert!(!config_of(&documents).contains("zone_awareness_enabled"));
        assert!(
            notes
                .iter()
                .any(|n| n.contains("old") && n.contains("zoned")),
            "{notes:?}"
        );
        // Step 2, the old pool at 0: the target shape, zone-aware.
        let sources = format!(
            "{cluster}{}{}{}{}",
            pool("read", 1, ""),
            pool("backend", 1, ""),
            pool("old", 0, ""),
            pool("zoned", 3, zones)
        );
        let (documents, notes) = rendered(&[&sources]);
        assert!(config_of(&documents).contains("zone_awareness_enabled: true"));
        assert!(
            !notes.iter().any(|n| n.contains("zone awareness")),
            "{notes:?}"
        );
    }

    /// The rendering pinned, so that a refactor shows every byte it changes: the samples,
    /// a gateway with one and two replicas, TLS, and every role toggle the API allows
    /// (one pool each) plus meta-role combinations.
    mod pinned {
        use super::*;
        use crate::product::Product;

        fn manifests(sources: &[&str]) -> String {
            let mut inputs = Inputs::new("obs");
            for (i, source) in sources.iter().enumerate() {
                inputs.add(&format!("input{i}"), source).expect("parses");
            }
            // Loki's schema date is chosen from the clock for a new cluster: fix it.
            for cluster in &mut inputs.clusters {
                if cluster.spec.product == Product::Loki {
                    cluster.status.get_or_insert_default().loki_schema_from =
                        Some("2026-11-18".into());
                }
            }
            let out = render(&inputs, &Target::default()).expect("renders");
            format!("# notes: {:?}\n{}", out.notes, out.manifests)
        }

        fn cluster(name: &str, product: Product, extra: &str) -> String {
            format!(
                "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {{name: {name}}}\nspec: {{product: {product}, storage: {{s3: {{endpoint: minio.minio.svc:9000, bucket: b, credentialsSecret: {{name: s3-credentials}}}}}}{extra}}}\n"
            )
        }

        fn pool(
            cluster: &str,
            name: &str,
            product: Product,
            toggles: &[&str],
            replicas: i32,
        ) -> String {
            let roles: Vec<String> = toggles.iter().map(|t| format!("{t}: true")).collect();
            format!(
                "---\napiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}}}\nspec: {{clusterRef: {cluster}, replicas: {replicas}, roles: {{{product}: {{{}}}}}}}\n",
                roles.join(", ")
            )
        }

        #[test]
        fn zoned_pools() {
            let zones = ", zones: [{name: zone-a}, {name: zone-b}, {name: zone-c, nodeSelector: {rack: r3}}]";
            let sources = [
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s3-credentials}\nstringData: {access-key-id: a, secret-access-key: b}\n---\n".to_string(),
                cluster("metrics", Product::Mimir, ""),
                pool("metrics", "ingest", Product::Mimir, &["all"], 4)
                    .replace("}}}\n", &format!("}}}}{zones}}}\n")),
            ];
            let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
            insta::assert_snapshot!(manifests(&refs));
        }

        /// A multi-tenant cluster: the overrides file with the Tenant's limits and the
        /// gateway with its auth; the auth Secret is named in a note, never printed.
        #[test]
        fn a_multi_tenant_cluster() {
            let sources = [
                SECRET.to_string(),
                "---\napiVersion: v1\nkind: Secret\nmetadata: {name: alice, annotations: {lgtm.coordinated.dev/tenant: team-a}}\nstringData: {username: alice, password: never-printed}\n".to_string(),
                cluster("logs", Product::Loki, ", tenancy: {mode: MultiTenant}"),
                pool("logs", "logs-all", Product::Loki, &["all"], 1),
                "---\napiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: team-a}\nspec: {clusterRef: logs, credentials: [{basicAuth: {secretName: alice}}], limits: {ingestionRate: 1048576, retention: 7d}}\n".to_string(),
            ];
            let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
            let out = manifests(&refs);
            assert!(!out.contains("never-printed") && !out.contains("{SSHA}"));
            assert!(out.contains("the gateway's auth Secret logs-gateway-auth is not printed"));
            insta::assert_snapshot!(out);
        }

        #[test]
        fn the_samples() {
            insta::assert_snapshot!("samples", manifests(&[SECRET, MIMIR, LOKI, TEMPO]));
        }

        #[test]
        fn gateway_with_one_and_two_replicas_and_tls() {
            let mut yaml = cluster("one", Product::Mimir, "");
            yaml += &pool("one", "one-all", Product::Mimir, &["all"], 1);
            yaml += "---\n";
            yaml += &cluster(
                "two",
                Product::Mimir,
                ", gateway: {replicas: 2}, tls: {secretName: two-tls}",
            );
            yaml += &pool("two", "two-all", Product::Mimir, &["all"], 2);
            insta::assert_snapshot!("gateway-replicas-tls", manifests(&[SECRET, &yaml]));
        }

        #[test]
        fn every_allowed_toggle_in_a_pool_of_its_own() {
            for product in Product::ALL {
                let name = format!("{product}");
                let mut yaml = cluster(&name, product, "");
                for toggle in product.catalogue().toggle_names() {
                    if product.contract().allows(&[toggle]).is_err() {
                        continue;
                    }
                    let pool_name = format!("{name}-{toggle}");
                    yaml += &pool(
                        &name,
                        &pool_name,
                        product,
                        &[&crate::api::json_name(toggle)],
                        2,
                    );
                }
                if product == Product::Mimir {
                    // Combinations one process runs: two concrete roles, and a meta-role
                    // with an extra role.
                    yaml += &pool(
                        &name,
                        "mimir-pair",
                        product,
                        &["querier", "queryFrontend"],
                        1,
                    );
                    yaml += &pool(&name, "mimir-read-ruler", product, &["read", "ruler"], 1);
                }
                insta::assert_snapshot!(format!("toggles-{product}"), manifests(&[SECRET, &yaml]));
            }
        }
    }

    #[test]
    fn unparseable_input_names_its_source() {
        let mut inputs = Inputs::new("obs");
        let error = inputs
            .add(
                "broken.yaml",
                "kind: WorkerPool\nmetadata: {name: x}\nspec: {replicas: many}\n",
            )
            .expect_err("an error");
        assert!(error.to_string().contains("broken.yaml"), "{error}");
    }
}
