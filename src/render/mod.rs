//! Pure builders of every object and file the operator writes. They take plain values
//! and return `k8s-openapi` objects or strings: no client, no clock, no randomness.

pub mod agent;
pub mod config;
mod error;
pub mod gateway;
pub mod labels;
pub mod nginx;
pub mod observability;
mod pod;
pub mod pod_overrides;
pub mod services;
pub mod storage;
pub mod tenancy;
pub mod workers;
pub mod zones;

#[cfg(test)]
mod contract_tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

pub use error::RenderError;

use crate::api::{GrafanaCluster, GrafanaClusterSpec};
use crate::product::{Catalogue, Product};

/// Settings of the Kubernetes cluster the operator runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// DNS domain of Services (`cluster.local` on most clusters).
    pub cluster_domain: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// A GrafanaCluster as the builders see it.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    pub name: String,
    pub namespace: String,
    pub spec: &'a GrafanaClusterSpec,
    /// The controller reference its children carry; `None` for objects read from files
    /// (no UID), whose children then carry none.
    pub owner: Option<OwnerReference>,
}

impl<'a> ClusterView<'a> {
    pub fn new(cluster: &'a GrafanaCluster) -> Self {
        Self {
            name: cluster.name_any(),
            namespace: cluster.namespace().unwrap_or_else(|| "default".into()),
            spec: &cluster.spec,
            owner: cluster.controller_owner_ref(&()),
        }
    }

    pub fn product(&self) -> Product {
        self.spec.product
    }

    pub fn catalogue(&self) -> &'static Catalogue {
        self.spec.product.catalogue()
    }

    /// Name of a cluster-level child: `<cluster>-<suffix>`.
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    pub fn version(&self) -> &str {
        self.spec
            .version
            .as_deref()
            .unwrap_or(self.catalogue().version)
    }

    /// The product image workers run.
    pub fn image(&self) -> String {
        let repository = self.spec.image.as_deref().unwrap_or(self.catalogue().image);
        format!("{repository}:{}", self.version())
    }

    /// In-cluster URL of the gateway's first (API) port.
    pub fn gateway_url(&self, settings: &Settings) -> String {
        let scheme = if self.spec.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let port = self.catalogue().listeners[0].port;
        format!(
            "{scheme}://{}.{}.svc.{}:{port}",
            self.child_name("gateway"),
            self.namespace,
            settings.cluster_domain
        )
    }
}

/// Hex SHA-256 of the given parts, each length-prefixed so that no two different
/// sequences hash alike. Used for the checksum annotations that roll pods on change.
pub fn checksum<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The timeouts on the request path, in seconds, nested so that each layer gives up
/// after the one below it: a query ends before the product's HTTP server stops writing
/// its answer, and that before the gateway stops waiting. The runtime contract names the
/// product keys each sets; `render::contract_tests` checks the nesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// How long a query may run in the product.
    pub query: u32,
    /// The product's HTTP server write timeout.
    pub server_write: u32,
    /// The gateway's `proxy_read_timeout` and `grpc_read_timeout`.
    pub gateway: u32,
}

pub const REQUEST_TIMEOUTS: RequestTimeouts = RequestTimeouts {
    query: 120,
    server_write: 180,
    gateway: 300,
};

/// Annotation on pod templates with the checksum of the configuration they run.
pub const CONFIG_CHECKSUM: &str = "checksum.lgtm.coordinated.dev/config";
/// Pod-template annotation of the gateway: checksum of its auth files, so that its pods
/// roll onto new credentials.
pub const CREDENTIALS_CHECKSUM: &str = "checksum.lgtm.coordinated.dev/credentials";
/// Annotation on worker pod templates with the checksum of the Secret data they use.
/// On a pool's StatefulSet: the replicas the operator applied, readable from the
/// metadata cache (a scale-down compares `spec.replicas` with it, without a read).
pub const APPLIED_REPLICAS: &str = "lgtm.coordinated.dev/replicas";
pub const SECRETS_CHECKSUM: &str = "checksum.lgtm.coordinated.dev/secrets";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_separates_parts() {
        assert_ne!(
            checksum([b"ab".as_slice(), b"c".as_slice()]),
            checksum([b"a".as_slice(), b"bc".as_slice()])
        );
        assert_eq!(checksum([b"x".as_slice()]).len(), 64);
    }
}

/// Annotation on the shared config ConfigMap recording Loki's schema date, so the date
/// survives even if the status that also records it is lost.
pub const LOKI_SCHEMA_FROM: &str = "lgtm.coordinated.dev/loki-schema-from";

/// The shared product configuration ConfigMap, `<c>-config`.
pub fn shared_config(
    cluster: &ClusterView,
    inputs: &config::ConfigInputs,
) -> Result<k8s_openapi::api::core::v1::ConfigMap, config::ConfigError> {
    let text = config::render(inputs)?;
    let mut metadata = labels::child_meta(
        cluster.child_name("config"),
        &cluster.namespace,
        labels::cluster_labels(cluster.product(), &cluster.name, labels::Component::Config),
        cluster.owner.as_ref(),
    );
    if let Some(from) = inputs.loki_schema_from {
        metadata.annotations = Some(std::collections::BTreeMap::from([(
            LOKI_SCHEMA_FROM.to_string(),
            from.to_string(),
        )]));
    }
    Ok(k8s_openapi::api::core::v1::ConfigMap {
        metadata,
        data: Some(std::collections::BTreeMap::from([(
            config::CONFIG_FILE.to_string(),
            text,
        )])),
        ..Default::default()
    })
}

/// Checksum of a shared config ConfigMap's content: what worker pod templates carry.
pub fn config_checksum(config: &k8s_openapi::api::core::v1::ConfigMap) -> String {
    let text = config
        .data
        .as_ref()
        .and_then(|d| d.get(config::CONFIG_FILE))
        .map(String::as_str)
        .unwrap_or_default();
    checksum([text.as_bytes()])
}

/// Every cluster-level child the operator keeps.
#[derive(Debug, Clone)]
pub struct ClusterChildren {
    pub gateway: gateway::Gateway,
    pub agent: Option<agent::Agent>,
    pub gossip: k8s_openapi::api::core::v1::Service,
    pub role_services: Vec<k8s_openapi::api::core::v1::Service>,
    /// `None` when the configuration must stay as it is (the cluster is not consistent,
    /// or the spec does not give a valid configuration).
    pub shared_config: Option<k8s_openapi::api::core::v1::ConfigMap>,
    /// Grafana dashboards (sidecar ConfigMaps), when the agent ships metrics.
    pub dashboards: Vec<k8s_openapi::api::core::v1::ConfigMap>,
    /// Alert rules, when the agent ships metrics.
    pub alerts: Option<Alerts>,
    /// The per-tenant runtime-overrides file every worker mounts.
    pub runtime_overrides: k8s_openapi::api::core::v1::ConfigMap,
    /// The gateway's credentials, for a multi-tenant cluster.
    pub gateway_auth: Option<k8s_openapi::api::core::v1::Secret>,
}

/// Where a cluster's alert rules go.
#[derive(Debug, Clone)]
pub enum Alerts {
    /// A Prometheus Operator `PrometheusRule`, when that CRD is installed.
    PrometheusRule(kube::api::DynamicObject),
    /// A ConfigMap holding a rule file, for any other rule loader.
    ConfigMap(k8s_openapi::api::core::v1::ConfigMap),
}

/// Builds the cluster-level children for a topology. `prometheus_rules` says whether the
/// PrometheusRule CRD is installed.
pub fn cluster_children(
    cluster: &ClusterView,
    topology: &crate::product::Topology,
    shared_config: Option<k8s_openapi::api::core::v1::ConfigMap>,
    (auth, tenants): (Option<&tenancy::AuthFiles>, &[tenancy::TenantEntry]),
    agent_credentials: &agent::Credentials,
    settings: &Settings,
    prometheus_rules: bool,
) -> ClusterChildren {
    // Dashboards and alerts read what the agent ships; without it they would show nothing.
    let monitored = agent::enabled(cluster) && cluster.spec.self_monitoring.metrics.is_some();
    let alerts = monitored.then(|| {
        if prometheus_rules {
            Alerts::PrometheusRule(observability::prometheus_rule(cluster))
        } else {
            Alerts::ConfigMap(observability::rules_config_map(cluster))
        }
    });
    ClusterChildren {
        dashboards: if monitored {
            observability::dashboards(cluster)
        } else {
            Vec::new()
        },
        alerts,
        gateway: gateway::build(
            cluster,
            &topology.present_roles(),
            settings,
            (auth, agent_credentials),
        ),
        agent: agent::enabled(cluster).then(|| agent::build(cluster, agent_credentials)),
        gossip: services::gossip(cluster),
        role_services: services::roles(cluster, topology),
        shared_config,
        runtime_overrides: tenancy::overrides_config_map(
            cluster,
            tenancy::runtime_overrides(
                cluster.product(),
                tenants,
                &tenancy::tempo_entry_base(
                    cluster.spec.self_monitoring.metrics.is_some(),
                    cluster.spec.config_overrides.as_ref(),
                ),
            ),
        ),
        gateway_auth: auth.map(|files| tenancy::auth_secret(cluster, files)),
    }
}
