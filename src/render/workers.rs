//! A WorkerPool's objects: its StatefulSet, its headless Service and, with two or more
//! workers, a PodDisruptionBudget.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, Service, ServicePort,
    ServiceSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{CONFIG_FILE, DATA_DIR};
use super::gateway::{container_port, http_probe, mount, restricted_container, spread_over_zones};
use super::labels::{child_meta, pool_labels, pool_selector, role_label};
use super::{CONFIG_CHECKSUM, ClusterView, SECRETS_CHECKSUM, pod_overrides, storage};
use crate::api::WorkerPoolSpec;
use crate::product::{RouteTo, expand, target_arg};

/// UID and GID the workers run as (the Grafana images' own user).
const WORKER_USER: i64 = 10001;
/// Ingesters flush and hand over on shutdown; give them time.
const TERMINATION_GRACE_SECONDS: i64 = 300;

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

/// A pool's objects.
#[derive(Debug, Clone)]
pub struct Workers {
    pub statefulset: StatefulSet,
    pub service: Service,
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds a pool's objects. Fails only when `podOverrides` does not give a valid pod
/// template.
pub fn build(
    cluster: &ClusterView,
    pool: &PoolView,
    checksums: &Checksums,
) -> Result<Workers, String> {
    let product = cluster.product();
    let catalogue = cluster.catalogue();
    let roles: BTreeSet<&str> = expand(product, &pool.toggles);
    let labels = pool_labels(product, &cluster.name, &pool.name);
    let selector = pool_selector(&cluster.name, &pool.name);
    let meta = || {
        child_meta(
            &pool.name,
            &cluster.namespace,
            labels.clone(),
            pool.owner.as_ref(),
        )
    };

    let mut pod_labels = labels.clone();
    for role in &roles {
        pod_labels.insert(role_label(role), "true".into());
    }

    let mut ports = vec![
        container_port("http", catalogue.ports.http),
        container_port("grpc", catalogue.ports.grpc),
        container_port("memberlist", catalogue.ports.memberlist),
    ];
    // Ports the gateway forwards to roles of this pool (Tempo's receivers).
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

    let s3 = &cluster.spec.storage.s3;
    let mut env = storage::worker_env(s3);
    env.extend(tracing_env(cluster, &pool.name));
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cluster.child_name("config"),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![
        mount("config", catalogue.config_dir, true),
        mount("data", DATA_DIR, false),
    ];
    if let Some((volume, volume_mount)) = storage::ca_volume(s3) {
        volumes.push(volume);
        mounts.push(volume_mount);
    }

    let container = Container {
        name: product.to_string(),
        image: Some(cluster.image()),
        args: Some(vec![
            format!("-config.file={}/{CONFIG_FILE}", catalogue.config_dir),
            "-config.expand-env=true".into(),
            format!("-target={}", target_arg(product, &pool.toggles)),
        ]),
        env: Some(env),
        ports: Some(ports),
        readiness_probe: Some(http_probe("/ready", catalogue.ports.http)),
        resources: pool.spec.resources.clone(),
        security_context: Some(restricted_container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let template = PodTemplateSpec {
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
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(WORKER_USER),
                run_as_group: Some(WORKER_USER),
                fs_group: Some(WORKER_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            node_selector: pool.spec.node_selector.clone(),
            tolerations: pool.spec.tolerations.clone(),
            affinity: pool.spec.affinity.clone(),
            topology_spread_constraints: Some(vec![spread_over_zones(selector.clone())]),
            ..PodSpec::default()
        }),
    };
    let template = match &pool.spec.pod_overrides {
        Some(overrides) => pod_overrides::apply(&template, overrides)?,
        None => template,
    };

    let storage = &pool.spec.storage;
    let claim = PersistentVolumeClaim {
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
    };

    let statefulset = StatefulSet {
        metadata: meta(),
        spec: Some(StatefulSetSpec {
            replicas: Some(pool.spec.replicas),
            service_name: Some(pool.name.clone()),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
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
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };

    let service = Service {
        metadata: meta(),
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
    };

    let pdb = (pool.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    });

    Ok(Workers {
        statefulset,
        service,
        pdb,
    })
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        ..ServicePort::default()
    }
}

/// OpenTelemetry environment for the workers' own traces, when a destination is set.
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
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    })
    .collect()
}
