//! The one product configuration every worker of a cluster runs with (the `<c>-config`
//! ConfigMap). Typed models of what the operator writes, per product, serialised to
//! YAML, with the user's `configOverrides` merged last. No secrets: credentials reach
//! the workers from their Secret as variables, a mounted key file or a flag Kubernetes
//! fills (`render::storage`), so nothing is substituted into the file ([ADR 6],
//! [ADR 12]).
//!
//! [ADR 6]: ../../../docs/decisions/0006-credentials-from-the-products-own-variables.md
//! [ADR 12]: ../../../docs/decisions/0012-storage-backends-and-their-credentials.md

mod duration;
mod loki;
mod mimir;
mod overrides;
mod tempo;

use serde::Serialize;

pub use duration::{Duration, DurationError};
pub use overrides::merge;
pub use tempo::GENERATOR_PROCESSORS;

use crate::api::{AzureStorage, Backend, GcsStorage};
use crate::product::{Product, Topology};
use crate::render::REQUEST_TIMEOUTS;

/// The file name of the configuration inside the ConfigMap and the worker's config dir.
pub const CONFIG_FILE: &str = "config.yaml";
/// Where workers keep their data (the PVC).
pub const DATA_DIR: &str = "/data";

/// Everything the product configuration depends on. Nothing here may depend on a
/// pool's name or replica count beyond the replication-factor rule, so scaling a pool
/// leaves the configuration, and every other pool, untouched.
#[derive(Debug, Clone)]
pub struct ConfigInputs<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub cluster_domain: &'a str,
    pub topology: &'a Topology,
    pub storage: Backend<'a>,
    pub retention: Option<Duration>,
    /// Loki's schema start date (YYYY-MM-DD), fixed once per cluster.
    pub loki_schema_from: Option<&'a str>,
    /// Where Tempo's metrics-generator writes span metrics.
    pub remote_write_url: Option<&'a str>,
    pub overrides: Option<&'a serde_json::Value>,
    /// Whether the product may send usage statistics to Grafana Labs.
    pub usage_reporting: bool,
    /// Whether pods have IPv6 addresses only (rings must then register them).
    pub ipv6: bool,
    /// Multi-tenancy on in the product (`spec.tenancy.mode: MultiTenant`).
    pub multi_tenant: bool,
    /// Some Tenant sets its own retention (Loki's compactor then applies retention).
    pub tenant_retention: bool,
}

impl<'a> ConfigInputs<'a> {
    /// The inputs of a cluster's configuration: its spec, the topology of its pools,
    /// the retention parsed from the spec and the Loki schema date fixed for it.
    pub fn for_cluster(
        cluster: &'a crate::render::ClusterView<'a>,
        topology: &'a Topology,
        settings: &'a crate::render::Settings,
        retention: Option<Duration>,
        loki_schema_from: Option<&'a str>,
        ipv6: bool,
    ) -> Self {
        let spec = cluster.spec;
        Self {
            cluster: &cluster.name,
            namespace: &cluster.namespace,
            cluster_domain: &settings.cluster_domain,
            topology,
            storage: spec.storage.backend(),
            retention,
            loki_schema_from,
            remote_write_url: spec
                .self_monitoring
                .metrics
                .as_ref()
                .map(|m| m.remote_write_url.as_str()),
            overrides: spec.config_overrides.as_ref(),
            usage_reporting: spec.usage_reporting,
            ipv6,
            multi_tenant: spec.tenancy.mode == crate::api::TenancyMode::MultiTenant,
            tenant_retention: false,
        }
    }

    /// In-cluster DNS name of a cluster Service.
    pub fn service_host(&self, service: &str) -> String {
        format!(
            "{}-{service}.{}.svc.{}",
            self.cluster, self.namespace, self.cluster_domain
        )
    }

    /// The `server` block: the product's ports from the catalogue, and a write timeout
    /// longer than any query (see [`crate::render::REQUEST_TIMEOUTS`]).
    fn server(&self) -> Server {
        let ports = self.topology.product.catalogue().ports;
        Server {
            http_listen_port: ports.http,
            grpc_listen_port: ports.grpc,
            http_server_write_timeout: seconds(REQUEST_TIMEOUTS.server_write),
        }
    }

    /// The `memberlist` block: peers found through the gossip Service (every worker,
    /// ready or not), and a label that keeps two clusters' rings from merging if their
    /// pods ever meet.
    fn memberlist(&self) -> Memberlist {
        let port = self.topology.product.catalogue().ports.memberlist;
        Memberlist {
            join_members: vec![format!("dns+{}:{port}", self.service_host("gossip"))],
            cluster_label: format!("{}.{}", self.cluster, self.namespace),
            // Memberlist binds 0.0.0.0 unless told otherwise (runtime contract).
            bind_addr: self.ipv6.then(|| vec!["::".to_string()]),
        }
    }
}

/// Where the workers read the per-tenant runtime-overrides file: its ConfigMap mounted
/// as a directory, since a `subPath` mount never sees an update.
pub const RUNTIME_OVERRIDES_DIR: &str = "/etc/lgtm-overrides";
/// The runtime-overrides file's name in its ConfigMap and directory.
pub const RUNTIME_OVERRIDES_FILE: &str = "overrides.yaml";
/// How often the products read the runtime-overrides file again.
pub const RUNTIME_OVERRIDES_PERIOD: &str = "10s";

/// The runtime-overrides file's path in a worker.
pub fn runtime_overrides_path() -> String {
    format!("{RUNTIME_OVERRIDES_DIR}/{RUNTIME_OVERRIDES_FILE}")
}

/// Mimir's and Loki's `runtime_config` block (dskit's runtime-config manager).
#[derive(Serialize)]
struct RuntimeConfig {
    file: String,
    period: &'static str,
}

impl RuntimeConfig {
    fn new() -> Self {
        Self {
            file: runtime_overrides_path(),
            period: RUNTIME_OVERRIDES_PERIOD,
        }
    }
}

/// A duration in seconds as the products write it (`120s`).
fn seconds(seconds: u32) -> String {
    format!("{seconds}s")
}

/// The `server` block every product shares.
#[derive(Serialize)]
struct Server {
    http_listen_port: u16,
    grpc_listen_port: u16,
    http_server_write_timeout: String,
}

/// The `memberlist` block every product shares.
#[derive(Serialize)]
struct Memberlist {
    join_members: Vec<String>,
    cluster_label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind_addr: Option<Vec<String>>,
}

/// A GCS bucket, as all three products spell it. No credential key: each product then
/// takes Google's default credentials, the key file GOOGLE_APPLICATION_CREDENTIALS names
/// (runtime contract).
#[derive(Serialize)]
struct GcsBucket {
    bucket_name: String,
}

impl From<&GcsStorage> for GcsBucket {
    fn from(gcs: &GcsStorage) -> Self {
        Self {
            bucket_name: gcs.bucket.clone(),
        }
    }
}

/// An Azure container, as Mimir and Loki spell it. No `account_key`: it comes as a flag
/// filled from the Secret (`render::storage`).
#[derive(Serialize)]
struct AzureContainer {
    account_name: String,
    container_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_suffix: Option<String>,
}

impl From<&AzureStorage> for AzureContainer {
    fn from(azure: &AzureStorage) -> Self {
        Self {
            account_name: azure.account_name.clone(),
            container_name: azure.container.clone(),
            endpoint_suffix: azure.endpoint_suffix.clone(),
        }
    }
}

/// Why a configuration cannot be rendered. Each is the user's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("spec.retention: {0}")]
    Retention(String),
    #[error("spec.configOverrides: {0}")]
    Overrides(String),
}

/// Renders the shared configuration file.
pub fn render(inputs: &ConfigInputs) -> Result<String, ConfigError> {
    let mut value = match inputs.topology.product {
        Product::Mimir => to_value(mimir::config(inputs)),
        Product::Loki => to_value(loki::config(inputs)?),
        Product::Tempo => to_value(tempo::config(inputs)),
    };
    if let Some(overrides) = inputs.overrides {
        merge(&mut value, overrides).map_err(ConfigError::Overrides)?;
    }
    Ok(serde_saphyr::to_string(&value).expect("a JSON value always serializes to YAML"))
}

fn to_value(config: impl Serialize) -> serde_json::Value {
    serde_json::to_value(config).expect("config models always serialize")
}

#[cfg(test)]
pub(crate) mod tests;
