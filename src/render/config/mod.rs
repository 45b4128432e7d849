//! The one product configuration every worker of a cluster runs with (the `<c>-config`
//! ConfigMap). Typed models of what the operator writes, per product, serialised to
//! YAML, with the user's `configOverrides` merged last. No secrets: credentials are
//! `${ENV}` references that `-config.expand-env=true` fills from the Secret.

mod duration;
mod loki;
mod mimir;
mod overrides;
mod tempo;

use serde::Serialize;

pub use duration::{Duration, DurationError};
pub use overrides::merge;

use crate::api::S3Storage;
use crate::product::{Product, Topology};

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
    pub s3: &'a S3Storage,
    pub retention: Option<Duration>,
    /// Loki's schema start date (YYYY-MM-DD), fixed once per cluster.
    pub loki_schema_from: Option<&'a str>,
    /// Where Tempo's metrics-generator writes span metrics.
    pub remote_write_url: Option<&'a str>,
    pub overrides: Option<&'a serde_json::Value>,
}

impl ConfigInputs<'_> {
    /// In-cluster DNS name of a cluster Service.
    pub fn service_host(&self, service: &str) -> String {
        format!(
            "{}-{service}.{}.svc.{}",
            self.cluster, self.namespace, self.cluster_domain
        )
    }

    /// memberlist peers: the gossip Service, which lists every worker, ready or not.
    fn join_members(&self) -> Vec<String> {
        let port = self.topology.product.catalogue().ports.memberlist;
        vec![format!("dns+{}:{port}", self.service_host("gossip"))]
    }

    /// Keeps the gossip rings of two clusters from merging if their pods ever meet.
    fn memberlist_cluster_label(&self) -> String {
        format!("{}.{}", self.cluster, self.namespace)
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

/// `${VAR}` for `-config.expand-env=true`.
fn env_ref(var: &str) -> String {
    format!("${{{var}}}")
}

#[cfg(test)]
pub(crate) mod tests;
