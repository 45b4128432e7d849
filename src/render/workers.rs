//! A WorkerPool's objects: its StatefulSet (one per zone for a zoned pool), its
//! headless Service and, where a StatefulSet has two or more workers, a
//! PodDisruptionBudget for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CONFIG_FILE, DATA_DIR, RUNTIME_OVERRIDES_DIR};
use super::labels::{child_meta, pool_labels, pool_selector, role_label};
use super::pod::{
    config_map_volume, container_port, disruption_budget, empty_dir_volume, http_probe, mount,
    restricted_container, restricted_pod, spread_over, spread_over_zones,
};
use super::zones::{PoolLayout, TOPOLOGY_ZONE, ZONE};
use super::{
    APPLIED_REPLICAS, CONFIG_CHECKSUM, ClusterView, RenderError, SECRETS_CHECKSUM, pod_overrides,
    storage,
};
use crate::api::{PoolZone, WorkerPoolSpec};
use crate::product::{Catalogue, RouteTo, expand, target_arg};

/// UID and GID the workers run as (the Grafana images' own user).
const WORKER_USER: i64 = 10001;
/// The OS temp dir of every worker: an emptyDir, since the root filesystem is read-only
/// and some roles' code writes there (runtime contract: Loki's retention sweeper, Mimir's
/// alertmanager and compactor).
pub const TEMP_DIR: &str = "/tmp";

/// A pool as the builders see it.
#[derive(Debug, Clone)]
pub struct PoolView<'a> {
    pub name: String,
    pub spec: &'a WorkerPoolSpec,
    pub owner: Option<OwnerReference>,
    /// The pool's role toggles that are true (catalogue names).
    pub toggles: Vec<&'static str>,
}

/// What the pod template depends on besides the specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    /// Of the shared product configuration the workers run.
    pub config: String,
    /// Of the Secret data the workers read (credentials, CA bundle).
    pub secrets: String,
}

/// Name of a pool's headless Service, which gives its pods stable DNS names. Not the
/// pool's own name: that is often `<cluster>-<role>` (`logs-read`), the name of the role
/// Service the cluster keeps.
pub fn headless_service_name(pool: &str) -> String {
    format!("{pool}-headless")
}

/// A pool's objects.
#[derive(Debug, Clone)]
pub struct Workers {
    pub layout: PoolLayout,
    /// One, or one per zone in zone order.
    pub statefulsets: Vec<StatefulSet>,
    pub service: Service,
    /// One per StatefulSet of two or more workers (of one or more, in a zoned pool).
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Builds a pool's objects. Fails only when `podOverrides` does not give a valid pod
/// template.
pub fn build(
    cluster: &ClusterView,
    pool: &PoolView,
    checksums: &Checksums,
) -> Result<Workers, RenderError> {
    let product = cluster.product();
    let layout = PoolLayout::new(&pool.name, pool.spec.zone_names());
    let labels = pool_labels(product, &cluster.name, &pool.name);
    let selector = pool_selector(&cluster.name, &pool.name);
    let zones: Vec<Option<&PoolZone>> = match pool.spec.zones.as_slice() {
        [] => vec![None],
        zones => zones.iter().map(Some).collect(),
    };
    let mut statefulsets = Vec::new();
    for zone in zones {
        let name = layout.statefulset(zone.map(|z| z.name.as_str()));
        let mut labels = labels.clone();
        let mut selector = selector.clone();
        if let Some(zone) = zone {
            labels.insert(ZONE.into(), zone.name.clone());
            selector.insert(ZONE.into(), zone.name.clone());
        }
        let template = pod_template(cluster, pool, zone, checksums, &labels, &selector);
        let template = match &pool.spec.pod_overrides {
            Some(overrides) => pod_overrides::apply(&pool.name, &template, overrides)?,
            None => template,
        };
        let meta = child_meta(
            &name,
            &cluster.namespace,
            labels.clone(),
            pool.owner.as_ref(),
        );
        statefulsets.push(statefulset(pool, zone, meta, &selector, template, &labels));
    }
    let mut workers = Workers {
        service: headless_service(cluster, pool, &labels, &selector),
        layout,
        statefulsets,
        pdbs: Vec::new(),
    };
    workers.set_replicas(pool.spec.replicas);
    Ok(workers)
}

impl Workers {
    /// The operator's own gate on voluntary disruptions of a zoned pool: while any
    /// zone is `disrupted` (a worker missing, going or not Ready, or being replaced),
    /// the budgets of the other zones allow none, so a drain cannot take a second zone
    /// down. Budgets are
    /// independent in Kubernetes: this narrows, but cannot close, the window in which
    /// two drains in two zones each pass their own zone's budget (ADR 14).
    pub fn gate_disruptions(&mut self, disrupted: &[String]) {
        if disrupted.is_empty() {
            return;
        }
        for pdb in &mut self.pdbs {
            let zone = pdb.metadata.labels.as_ref().and_then(|l| l.get(ZONE));
            if zone.is_some_and(|z| !disrupted.contains(z))
                && let Some(spec) = pdb.spec.as_mut()
            {
                spec.max_unavailable = Some(IntOrString::Int(0));
            }
        }
    }

    /// Sets the pool's replicas: split over its StatefulSets, each annotated with the
    /// pool's total (what the scale-down reads back), and their PodDisruptionBudgets.
    pub fn set_replicas(&mut self, replicas: i32) {
        self.pdbs.clear();
        for (sts, share) in self
            .statefulsets
            .iter_mut()
            .zip(self.layout.split(replicas))
        {
            if let Some(spec) = sts.spec.as_mut() {
                spec.replicas = Some(share);
            }
            sts.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(APPLIED_REPLICAS.to_string(), replicas.to_string());
            // A zone may lose one of its workers to a drain; an unzoned pool one of two.
            let budgeted = if self.layout.is_zoned() {
                share > 0
            } else {
                share > 1
            };
            if budgeted {
                let selector = sts
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.clone())
                    .unwrap_or_default();
                let mut meta = sts.metadata.clone();
                meta.annotations = None;
                self.pdbs.push(disruption_budget(meta, selector));
            }
        }
    }
}

/// The worker pod, before the pool's `podOverrides`: labelled with every role it runs,
/// annotated with what it depends on, locked down and spread over zones.
fn pod_template(
    cluster: &ClusterView,
    pool: &PoolView,
    zone: Option<&PoolZone>,
    checksums: &Checksums,
    labels: &BTreeMap<String, String>,
    selector: &BTreeMap<String, String>,
) -> PodTemplateSpec {
    let product = cluster.product();
    let roles: BTreeSet<&str> = expand(product, &pool.toggles);
    let mut pod_labels = labels.clone();
    for role in &roles {
        pod_labels.insert(role_label(role), "true".into());
    }
    let (container, volumes) = container(cluster, pool, zone, &roles);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(BTreeMap::from([
                (CONFIG_CHECKSUM.to_string(), checksums.config.clone()),
                (SECRETS_CHECKSUM.to_string(), checksums.secrets.clone()),
            ])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            // Workers never call the Kubernetes API.
            automount_service_account_token: Some(false),
            // As long as the slowest of its roles needs to leave (runtime contract).
            termination_grace_period_seconds: Some(
                product
                    .contract()
                    .grace_seconds(&roles.iter().copied().collect::<Vec<_>>()),
            ),
            security_context: Some(restricted_pod(WORKER_USER)),
            node_selector: pool.spec.node_selector.clone(),
            tolerations: pool.spec.tolerations.clone(),
            affinity: match zone {
                Some(zone) => Some(pinned_to(zone, pool.spec.affinity.clone())),
                None => pool.spec.affinity.clone(),
            },
            // Pinned to a zone, a zone's pods spread over its nodes instead.
            topology_spread_constraints: Some(vec![match zone {
                Some(_) => spread_over("kubernetes.io/hostname", selector.clone()),
                None => spread_over_zones(selector.clone()),
            }]),
            ..PodSpec::default()
        }),
    }
}

/// The product's container running the pool's `roles`, and the pod volumes it mounts
/// besides the data volume (the claim).
fn container(
    cluster: &ClusterView,
    pool: &PoolView,
    zone: Option<&PoolZone>,
    roles: &BTreeSet<&str>,
) -> (Container, Vec<Volume>) {
    let product = cluster.product();
    let catalogue = cluster.catalogue();
    let storage = storage::for_workers(product, &cluster.spec.storage);
    let mut env = storage.env;
    env.extend(tracing_env(cluster, &pool.name));
    let mut volumes = vec![
        config_map_volume("config", cluster.child_name("config")),
        // Per-tenant limits: a directory mount, which sees the ConfigMap's updates.
        config_map_volume("overrides", cluster.child_name("overrides")),
        empty_dir_volume("tmp"),
    ];
    let mut mounts = vec![
        mount("config", catalogue.config_dir, true),
        mount("overrides", RUNTIME_OVERRIDES_DIR, true),
        mount("data", DATA_DIR, false),
        mount("tmp", TEMP_DIR, false),
    ];
    for (volume, volume_mount) in storage.volumes {
        volumes.push(volume);
        mounts.push(volume_mount);
    }
    let mut args = vec![
        format!("-config.file={}/{CONFIG_FILE}", catalogue.config_dir),
        format!("-target={}", target_arg(product, &pool.toggles)),
    ];
    args.extend(storage.args);
    // Each ring of the pool's roles learns the worker's zone (runtime contract).
    if let Some(zone) = zone {
        let roles: Vec<&str> = roles.iter().copied().collect();
        for ring in product.contract().zone_rings_of(&roles) {
            let arg = format!("-{}={}", ring.zone_flag, zone.name);
            if !args.contains(&arg) {
                args.push(arg);
            }
        }
    }
    let container = Container {
        name: product.to_string(),
        image: Some(cluster.image()),
        // No -config.expand-env: nothing in the configuration is substituted (ADR 6),
        // so a `$` in it stays a `$`.
        args: Some(args),
        env: Some(env),
        ports: Some(container_ports(catalogue, roles)),
        readiness_probe: Some(http_probe("/ready", catalogue.ports.http)),
        resources: pool.spec.resources.clone(),
        security_context: Some(restricted_container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    (container, volumes)
}

/// The product's own ports, and those the gateway forwards to roles of this pool
/// (Tempo's receivers).
fn container_ports(catalogue: &Catalogue, roles: &BTreeSet<&str>) -> Vec<ContainerPort> {
    let mut ports = vec![
        container_port("http", catalogue.ports.http),
        container_port("grpc", catalogue.ports.grpc),
        container_port("memberlist", catalogue.ports.memberlist),
    ];
    for listener in catalogue.listeners {
        let served_here = listener
            .routes
            .iter()
            .any(|r| matches!(r.to, RouteTo::Role(role) if roles.contains(role)));
        if served_here
            && !ports
                .iter()
                .any(|p| p.container_port == i32::from(listener.upstream_port))
        {
            ports.push(container_port(listener.name, listener.upstream_port));
        }
    }
    ports
}

/// A required node affinity to `zone`, added to every term of the pool's own (terms
/// are alternatives: each must place the pod in the zone).
fn pinned_to(zone: &PoolZone, affinity: Option<Affinity>) -> Affinity {
    let in_zone: Vec<NodeSelectorRequirement> = match &zone.node_selector {
        Some(labels) => labels
            .iter()
            .map(|(key, value)| requirement(key, value))
            .collect(),
        None => vec![requirement(TOPOLOGY_ZONE, &zone.name)],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .extend(in_zone.iter().cloned());
    }
    affinity
}

fn requirement(key: &str, value: &str) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: "In".into(),
        values: Some(vec![value.into()]),
    }
}

/// The pool's StatefulSet (or a zone's): its pods start together and keep their
/// volumes whatever happens to the set. An unzoned pool's pods roll one by one; a
/// zone's are replaced by the operator, a whole zone at a time (`OnDelete`, ADR 14).
fn statefulset(
    pool: &PoolView,
    zone: Option<&PoolZone>,
    metadata: ObjectMeta,
    selector: &BTreeMap<String, String>,
    template: PodTemplateSpec,
    labels: &BTreeMap<String, String>,
) -> StatefulSet {
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(pool.spec.replicas),
            service_name: Some(headless_service_name(&pool.name)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some(
                    if zone.is_some() {
                        "OnDelete"
                    } else {
                        "RollingUpdate"
                    }
                    .into(),
                ),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Data outlives the workers: volumes are only ever deleted by people.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template,
            volume_claim_templates: Some(vec![data_claim(pool, labels)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The claim of each worker's data volume, as the pool's `storage` asks.
fn data_claim(pool: &PoolView, labels: &BTreeMap<String, String>) -> PersistentVolumeClaim {
    let storage = &pool.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The pool's headless Service, which gives its pods stable DNS names, ready or not.
fn headless_service(
    cluster: &ClusterView,
    pool: &PoolView,
    labels: &BTreeMap<String, String>,
    selector: &BTreeMap<String, String>,
) -> Service {
    let catalogue = cluster.catalogue();
    Service {
        metadata: child_meta(
            headless_service_name(&pool.name),
            &cluster.namespace,
            labels.clone(),
            pool.owner.as_ref(),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector.clone()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                service_port("http", catalogue.ports.http),
                service_port("grpc", catalogue.ports.grpc),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        ..ServicePort::default()
    }
}

/// OpenTelemetry environment for the workers' own traces, when a destination is set:
/// only the variables the product reads (Loki reads none: its traces are reported as
/// unavailable instead).
fn tracing_env(cluster: &ClusterView, pool: &str) -> Vec<EnvVar> {
    let Some(traces) = &cluster.spec.self_monitoring.traces else {
        return Vec::new();
    };
    if !cluster.spec.self_monitoring.is_enabled() {
        return Vec::new();
    }
    let endpoint = if traces.otlp_endpoint.contains("://") {
        traces.otlp_endpoint.clone()
    } else {
        format!("http://{}", traces.otlp_endpoint)
    };
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("OTEL_TRACES_EXPORTER", "otlp".to_string()),
        ("OTEL_SERVICE_NAME", cluster.product().to_string()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            format!(
                "k8s.namespace.name={},lgtm.cluster={},lgtm.pool={pool}",
                cluster.namespace, cluster.name
            ),
        ),
    ]
    .into_iter()
    .filter(|(name, _)| cluster.product().contract().reads_env(name))
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::product::Product;
    use k8s_openapi::api::core::v1::PodSpec;

    fn build_pool(cluster: &crate::api::GrafanaCluster, pool_yaml: &str) -> Workers {
        let pool = fixtures::pool("p", pool_yaml);
        let view = ClusterView::new(cluster);
        let (_, toggles) = pool.spec.roles.selected().expect("one block");
        let pool_view = PoolView {
            name: "p".into(),
            spec: &pool.spec,
            owner: None,
            toggles,
        };
        let checksums = Checksums {
            config: "c0nf".into(),
            secrets: "s3cr".into(),
        };
        build(&view, &pool_view, &checksums).expect("builds")
    }

    fn mimir(pool_yaml: &str) -> Workers {
        build_pool(&fixtures::minimal_cluster(Product::Mimir), pool_yaml)
    }

    fn pod(workers: &Workers) -> PodSpec {
        workers.statefulsets[0]
            .spec
            .clone()
            .expect("spec")
            .template
            .spec
            .expect("pod spec")
    }

    #[test]
    fn target_labels_and_checksums_follow_the_toggles() {
        let workers = mimir("replicas: 2\nroles: {mimir: {read: true, compactor: true}}");
        let spec = workers.statefulsets[0].spec.clone().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let meta = spec.template.metadata.clone().expect("meta");
        let labels = meta.labels.expect("labels");
        for role in ["querier", "query-frontend", "compactor"] {
            assert_eq!(
                labels.get(&role_label(role)).map(String::as_str),
                Some("true")
            );
        }
        assert!(!labels.contains_key(&role_label("ingester")));
        let annotations = meta.annotations.expect("annotations");
        assert_eq!(annotations[CONFIG_CHECKSUM], "c0nf");
        assert_eq!(annotations[SECRETS_CHECKSUM], "s3cr");
        let args = pod(&workers).containers[0].args.clone().expect("args");
        assert_eq!(
            args,
            [
                "-config.file=/etc/mimir/config.yaml",
                "-target=compactor,read"
            ]
        );
    }

    #[test]
    fn every_worker_has_a_writable_temp_dir() {
        // Loki's retention sweeper retries for ever without one (runtime contract).
        for (product, roles) in [
            (Product::Loki, "roles: {loki: {backend: true}}"),
            (Product::Mimir, "roles: {mimir: {alertmanager: true}}"),
            (Product::Tempo, "roles: {tempo: {distributor: true}}"),
        ] {
            let pod = pod(&build_pool(&fixtures::minimal_cluster(product), roles));
            let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
            let tmp = mounts
                .iter()
                .find(|m| m.mount_path == TEMP_DIR)
                .expect("a /tmp mount");
            assert_ne!(tmp.read_only, Some(true));
            let volume = pod
                .volumes
                .expect("volumes")
                .into_iter()
                .find(|v| v.name == tmp.name)
                .expect("its volume");
            assert!(volume.empty_dir.is_some(), "{product}");
        }
    }

    #[test]
    fn the_grace_period_covers_the_slowest_role() {
        let grace = |yaml: &str| pod(&mimir(yaml)).termination_grace_period_seconds;
        assert_eq!(grace("roles: {mimir: {querier: true}}"), Some(180));
        assert_eq!(grace("roles: {mimir: {write: true}}"), Some(1200));
        let loki = build_pool(
            &fixtures::minimal_cluster(Product::Loki),
            "roles: {loki: {read: true}}",
        );
        assert_eq!(pod(&loki).termination_grace_period_seconds, Some(30));
    }

    #[test]
    fn trace_variables_are_the_ones_each_product_reads() {
        let names = |product: Product, roles: &str| {
            let mut cluster = fixtures::minimal_cluster(product);
            cluster.spec.self_monitoring.traces = Some(crate::api::TracesDestination {
                otlp_endpoint: "traces-gateway.obs:4317".into(),
            });
            pod(&build_pool(&cluster, roles)).containers[0]
                .env
                .clone()
                .expect("env")
                .into_iter()
                .map(|e| e.name)
                .filter(|n| n.starts_with("OTEL_"))
                .collect::<Vec<_>>()
        };
        let mimir = names(Product::Mimir, "roles: {mimir: {all: true}}");
        assert!(
            mimir.contains(&"OTEL_SERVICE_NAME".to_string()),
            "{mimir:?}"
        );
        assert!(mimir.contains(&"OTEL_EXPORTER_OTLP_ENDPOINT".to_string()));
        let tempo = names(Product::Tempo, "roles: {tempo: {all: true}}");
        assert!(tempo.contains(&"OTEL_EXPORTER_OTLP_ENDPOINT".to_string()));
        assert!(
            !tempo.contains(&"OTEL_SERVICE_NAME".to_string()),
            "Tempo names its own service"
        );
        assert!(
            names(Product::Loki, "roles: {loki: {all: true}}").is_empty(),
            "Loki reads no OTEL_ variable"
        );
    }

    #[test]
    fn resources_are_propagated() {
        let workers =
            mimir("roles: {mimir: {all: true}}\nresources: {requests: {cpu: 500m, memory: 1Gi}}");
        let resources = pod(&workers).containers[0]
            .resources
            .clone()
            .expect("resources");
        let requests = resources.requests.expect("requests");
        assert_eq!(requests["cpu"].0, "500m");
        assert_eq!(requests["memory"].0, "1Gi");
    }

    #[test]
    fn node_selector_is_propagated() {
        let workers = mimir("roles: {mimir: {all: true}}\nnodeSelector: {disk: ssd}");
        assert_eq!(
            pod(&workers).node_selector.expect("selector")["disk"],
            "ssd"
        );
    }

    #[test]
    fn tolerations_are_propagated() {
        let workers = mimir(
            "roles: {mimir: {all: true}}\ntolerations: [{key: dedicated, operator: Equal, value: lgtm, effect: NoSchedule}]",
        );
        let tolerations = pod(&workers).tolerations.expect("tolerations");
        assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
        assert_eq!(tolerations[0].effect.as_deref(), Some("NoSchedule"));
    }

    #[test]
    fn affinity_is_propagated() {
        let workers = mimir(
            "roles: {mimir: {all: true}}\naffinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}",
        );
        let affinity = pod(&workers).affinity.expect("affinity");
        let terms = affinity
            .node_affinity
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms;
        assert_eq!(
            terms[0].match_expressions.as_ref().expect("exprs")[0].key,
            "zone"
        );
    }

    #[test]
    fn pod_overrides_are_merged_last() {
        let workers = mimir(
            "roles: {mimir: {all: true}}\npodOverrides: {metadata: {labels: {team: obs}}, spec: {priorityClassName: high, containers: [{name: mimir, env: [{name: GOMAXPROCS, value: '2'}]}, {name: sidecar, image: busybox}]}}",
        );
        let template = workers.statefulsets[0].spec.clone().expect("spec").template;
        let labels = template
            .metadata
            .clone()
            .expect("meta")
            .labels
            .expect("labels");
        assert_eq!(labels["team"], "obs");
        assert!(
            labels.contains_key(&role_label("ingester")),
            "the operator's labels stay"
        );
        let pod = template.spec.expect("pod");
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(pod.containers.len(), 2);
        let env = pod.containers[0].env.clone().expect("env");
        assert!(env.iter().any(|e| e.name == "GOMAXPROCS"));
        assert!(
            env.iter().any(|e| e.name == storage::ACCESS_KEY_ID_ENV),
            "the operator's env stays"
        );
    }

    #[test]
    fn invalid_pod_overrides_are_an_error() {
        let cluster = fixtures::minimal_cluster(Product::Mimir);
        let pool = fixtures::pool(
            "p",
            "roles: {mimir: {all: true}}\npodOverrides: {spec: {containers: oops}}",
        );
        let view = ClusterView::new(&cluster);
        let pool_view = PoolView {
            name: "p".into(),
            spec: &pool.spec,
            owner: None,
            toggles: vec!["all"],
        };
        let checksums = Checksums {
            config: String::new(),
            secrets: String::new(),
        };
        let error = build(&view, &pool_view, &checksums).expect_err("invalid");
        assert_eq!(error.reason(), crate::api::Reason::InvalidPodOverrides);
        assert!(error.to_string().contains("podOverrides"), "{error}");
    }

    #[test]
    fn volume_claim_template_has_the_requested_size_and_class_and_is_retained() {
        let workers =
            mimir("roles: {mimir: {all: true}}\nstorage: {size: 50Gi, storageClassName: fast}");
        let spec = workers.statefulsets[0].spec.clone().expect("spec");
        let claim = &spec.volume_claim_templates.expect("claims")[0];
        let claim_spec = claim.spec.clone().expect("spec");
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .expect("resources")
                .requests
                .expect("requests")["storage"]
                .0,
            "50Gi"
        );
        let retention = spec
            .persistent_volume_claim_retention_policy
            .expect("policy");
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    }

    #[test]
    fn a_pdb_exists_only_with_two_or_more_workers() {
        assert!(
            mimir("replicas: 1\nroles: {mimir: {all: true}}")
                .pdbs
                .is_empty()
        );
        let [pdb] = mimir("replicas: 2\nroles: {mimir: {all: true}}")
            .pdbs
            .try_into()
            .expect("one pdb");
        assert_eq!(
            pdb.spec.expect("spec").max_unavailable,
            Some(IntOrString::Int(1))
        );
    }

    #[test]
    fn workers_run_locked_down() {
        let pod = pod(&mimir("roles: {mimir: {all: true}}"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let security = pod.containers[0]
            .security_context
            .clone()
            .expect("security");
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            pod.security_context.expect("pod security").run_as_non_root,
            Some(true)
        );
    }

    #[test]
    fn a_ca_bundle_is_mounted_and_trusted() {
        let mut cluster = fixtures::minimal_cluster(Product::Loki);
        cluster.spec.storage.s3.as_mut().expect("s3").ca_secret = Some(crate::api::SecretKeyRef {
            name: "s3-ca".into(),
            key: "ca.pem".into(),
        });
        let workers = build_pool(&cluster, "roles: {loki: {all: true}}");
        let pod = pod(&workers);
        let volume = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "s3-ca")
            .expect("CA volume");
        assert_eq!(
            volume.secret.expect("secret").secret_name.as_deref(),
            Some("s3-ca")
        );
        let env = pod.containers[0].env.clone().expect("env");
        let cert_dir = env
            .iter()
            .find(|e| e.name == "SSL_CERT_DIR")
            .expect("SSL_CERT_DIR");
        assert_eq!(
            cert_dir.value.as_deref(),
            Some("/etc/ssl/certs:/etc/lgtm/s3-ca")
        );
    }

    #[test]
    fn tempo_distributors_expose_the_receiver_ports() {
        let cluster = fixtures::minimal_cluster(Product::Tempo);
        let distributor = build_pool(&cluster, "roles: {tempo: {distributor: true}}");
        let ports: Vec<i32> = pod(&distributor).containers[0]
            .ports
            .clone()
            .expect("ports")
            .iter()
            .map(|p| p.container_port)
            .collect();
        for port in [3200, 9096, 7946, 4317, 4318, 9411, 14268, 14250] {
            assert!(ports.contains(&port), "{port} in {ports:?}");
        }
        let querier = build_pool(&cluster, "roles: {tempo: {querier: true}}");
        let ports = pod(&querier).containers[0].ports.clone().expect("ports");
        assert!(!ports.iter().any(|p| p.container_port == 4317));
    }

    const ZONES: &str =
        "zones: [{name: zone-a}, {name: zone-b}, {name: zone-c, nodeSelector: {rack: r3}}]";

    #[test]
    fn a_zoned_pool_is_one_statefulset_per_zone_pinned_to_it() {
        let workers = mimir(&format!(
            "replicas: 5\nroles: {{mimir: {{write: true, querier: true}}}}\n{ZONES}"
        ));
        let names: Vec<String> = workers
            .statefulsets
            .iter()
            .map(|s| s.metadata.name.clone().expect("name"))
            .collect();
        assert_eq!(names, ["p-zone-a", "p-zone-b", "p-zone-c"]);
        for (sts, (zone, replicas)) in
            workers
                .statefulsets
                .iter()
                .zip([("zone-a", 2), ("zone-b", 2), ("zone-c", 1)])
        {
            let spec = sts.spec.clone().expect("spec");
            assert_eq!(spec.replicas, Some(replicas), "{zone}");
            assert_eq!(
                spec.update_strategy.and_then(|u| u.type_).as_deref(),
                Some("OnDelete")
            );
            // The pool's headless Service names every zone's pods.
            assert_eq!(spec.service_name.as_deref(), Some("p-headless"));
            let selector = spec.selector.match_labels.expect("selector");
            assert_eq!(selector.get(ZONE).map(String::as_str), Some(zone));
            let meta = spec.template.metadata.expect("meta");
            assert_eq!(
                meta.labels.expect("labels").get(ZONE).map(String::as_str),
                Some(zone)
            );
            let pod = spec.template.spec.expect("pod");
            let terms = pod
                .affinity
                .and_then(|a| a.node_affinity)
                .and_then(|n| n.required_during_scheduling_ignored_during_execution)
                .expect("required node affinity")
                .node_selector_terms;
            let wanted = if zone == "zone-c" {
                requirement("rack", "r3")
            } else {
                requirement(TOPOLOGY_ZONE, zone)
            };
            assert_eq!(terms.len(), 1);
            assert_eq!(terms[0].match_expressions.as_deref(), Some(&[wanted][..]));
            // Only the ingester ring is the pool's: its zone flag, once.
            let args = pod.containers[0].args.clone().expect("args");
            let zone_args: Vec<&String> = args
                .iter()
                .filter(|a| a.contains("availability-zone"))
                .collect();
            assert_eq!(
                zone_args,
                [&format!("-ingester.ring.instance-availability-zone={zone}")]
            );
        }
        let pdbs: Vec<String> = workers
            .pdbs
            .iter()
            .map(|p| p.metadata.name.clone().expect("name"))
            .collect();
        assert_eq!(pdbs, ["p-zone-a", "p-zone-b", "p-zone-c"]);
        let max_unavailable = |workers: &Workers| -> Vec<Option<IntOrString>> {
            workers
                .pdbs
                .iter()
                .map(|p| p.spec.clone().expect("spec").max_unavailable)
                .collect()
        };
        let one = Some(IntOrString::Int(1));
        let none = Some(IntOrString::Int(0));
        assert_eq!(
            max_unavailable(&workers),
            [one.clone(), one.clone(), one.clone()]
        );
        // Zone b is down: zone b keeps its own budget, the others allow nothing.
        let mut gated = workers.clone();
        gated.gate_disruptions(&["zone-b".to_string()]);
        assert_eq!(
            max_unavailable(&gated),
            [none.clone(), one.clone(), none.clone()]
        );
        // With no worker, a zone has no budget.
        let mut two = workers.clone();
        two.set_replicas(2);
        assert_eq!(two.pdbs.len(), 2);
    }

    #[test]
    fn the_zone_is_added_to_every_term_of_the_pools_own_node_affinity() {
        let workers = mimir(&format!(
            "roles: {{mimir: {{all: true}}}}\n{ZONES}\naffinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{{key: disk, operator: In, values: [ssd]}}]}}, {{matchExpressions: [{{key: disk, operator: In, values: [nvme]}}]}}]}}}}}}"
        ));
        let terms = pod(&workers)
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 2);
        for term in terms {
            let expressions = term.match_expressions.expect("expressions");
            assert_eq!(expressions.len(), 2);
            assert_eq!(expressions[1], requirement(TOPOLOGY_ZONE, "zone-a"));
        }
    }

    #[test]
    fn every_ring_of_the_pools_roles_learns_the_zone() {
        let workers = mimir(&format!(
            "roles: {{mimir: {{all: true, alertmanager: true}}}}\n{ZONES}"
        ));
        let args = pod(&workers).containers[0].args.clone().expect("args");
        for flag in [
            "-ingester.ring.instance-availability-zone=zone-a",
            "-store-gateway.sharding-ring.instance-availability-zone=zone-a",
            "-alertmanager.sharding-ring.instance-availability-zone=zone-a",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
        }
        let loki = build_pool(
            &fixtures::minimal_cluster(Product::Loki),
            &format!("roles: {{loki: {{write: true}}}}\n{ZONES}"),
        );
        let args = pod(&loki).containers[0].args.clone().expect("args");
        assert!(
            args.contains(&"-ingester.availability-zone=zone-a".to_string()),
            "{args:?}"
        );
        // Readers only read the ring: no zone of their own.
        let read = build_pool(
            &fixtures::minimal_cluster(Product::Loki),
            &format!("roles: {{loki: {{read: true}}}}\n{ZONES}"),
        );
        let args = pod(&read).containers[0].args.clone().expect("args");
        assert!(!args.iter().any(|a| a.contains("zone")), "{args:?}");
    }
}
