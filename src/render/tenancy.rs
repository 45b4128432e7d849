//! A cluster's tenancy children (ADR 15): the runtime-overrides ConfigMap every worker
//! mounts (per-tenant limits, reloaded by the products on their own period), and the
//! gateway's auth Secret (the files nginx authenticates with).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Map, Value, json};

use super::config::{Duration, GENERATOR_PROCESSORS, RUNTIME_OVERRIDES_FILE};
use super::labels::{Component, child_meta, cluster_labels};
use super::{ClusterView, checksum};
use crate::api::TenantLimits;
use crate::product::Product;

/// One tenant's limits, checked, for the runtime-overrides file.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantEntry {
    pub id: String,
    pub limits: TenantLimits,
    pub retention: Option<Duration>,
}

/// The files nginx reads to authenticate (mounted from a Secret, never a ConfigMap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// `user:{SSHA}…` lines for `auth_basic_user_file`.
    pub htpasswd: String,
    /// `"user:<name>" "<tenant> <scopes>";` lines, included in a map of `$remote_user`.
    pub users_map: String,
    /// `"Bearer <token>" "<tenant> <scopes>";` lines, included in a map of
    /// `$http_authorization`.
    pub bearer_map: String,
}

impl AuthFiles {
    pub const HTPASSWD: &'static str = "htpasswd";
    pub const USERS_MAP: &'static str = "users.map";
    pub const BEARER_MAP: &'static str = "bearer.map";

    /// The files by name, as the auth Secret holds them.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            (Self::HTPASSWD, &self.htpasswd),
            (Self::USERS_MAP, &self.users_map),
            (Self::BEARER_MAP, &self.bearer_map),
        ]
    }
}

/// The runtime-overrides ConfigMap, `<c>-overrides`. Its content is not in any pod
/// template, so a change of limits rolls no pod: the products read it again.
pub fn overrides_config_map(cluster: &ClusterView, text: String) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(
            cluster.child_name("overrides"),
            &cluster.namespace,
            cluster_labels(cluster.product(), &cluster.name, Component::Overrides),
            cluster.owner.as_ref(),
        ),
        data: Some(BTreeMap::from([(RUNTIME_OVERRIDES_FILE.to_string(), text)])),
        ..ConfigMap::default()
    }
}

/// The gateway's auth Secret, `<c>-gateway-auth`.
pub fn auth_secret(cluster: &ClusterView, files: &AuthFiles) -> Secret {
    Secret {
        metadata: child_meta(
            auth_secret_name(cluster),
            &cluster.namespace,
            cluster_labels(cluster.product(), &cluster.name, Component::Gateway),
            cluster.owner.as_ref(),
        ),
        type_: Some("Opaque".into()),
        string_data: None,
        data: Some(
            files
                .files()
                .into_iter()
                .map(|(name, text)| {
                    (
                        name.to_string(),
                        k8s_openapi::ByteString(text.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Secret::default()
    }
}

pub fn auth_secret_name(cluster: &ClusterView) -> String {
    cluster.child_name("gateway-auth")
}

/// Checksum of the auth files: the gateway's pods carry it, so that they roll onto new
/// credentials (nginx reads its maps only when it starts).
pub fn auth_checksum(files: &AuthFiles) -> String {
    checksum(files.files().iter().map(|(_, text)| text.as_bytes()))
}

/// The runtime-overrides file: `overrides:` with one entry per tenant that sets a limit,
/// in the product's own keys (runtime contract). `span_metrics`: Tempo's
/// metrics-generator processors are on by default, which its entries must repeat.
pub fn runtime_overrides(product: Product, entries: &[TenantEntry], span_metrics: bool) -> String {
    let mut overrides = Map::new();
    for entry in entries {
        let limits = match product {
            Product::Mimir => mimir_limits(entry),
            Product::Loki => loki_limits(entry),
            Product::Tempo => tempo_limits(entry, span_metrics),
        };
        if let Some(limits) = limits {
            overrides.insert(entry.id.clone(), limits);
        }
    }
    let file = json!({ "overrides": overrides });
    serde_saphyr::to_string(&file).expect("a JSON value always serializes to YAML")
}

/// The object of `pairs` that are set, `None` when none is.
fn set_only(pairs: Vec<(&str, Option<Value>)>) -> Option<Value> {
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

/// Mimir's entries inherit the `limits` block for every key they leave out.
fn mimir_limits(entry: &TenantEntry) -> Option<Value> {
    let l = &entry.limits;
    set_only(vec![
        ("ingestion_rate", l.ingestion_rate.map(|r| json!(r as f64))),
        ("ingestion_burst_size", l.ingestion_burst.map(|b| json!(b))),
        ("max_global_series_per_user", l.max_active.map(|m| json!(m))),
        (
            "compactor_blocks_retention_period",
            entry.retention.map(|r| json!(r.to_string())),
        ),
    ])
}

/// Loki's rates are in MB (2^20 bytes); its entries inherit `limits_config`.
fn loki_limits(entry: &TenantEntry) -> Option<Value> {
    let l = &entry.limits;
    let mb = |bytes: i64| json!(bytes as f64 / (1u64 << 20) as f64);
    set_only(vec![
        ("ingestion_rate_mb", l.ingestion_rate.map(mb)),
        ("ingestion_burst_size_mb", l.ingestion_burst.map(mb)),
        (
            "max_global_streams_per_user",
            l.max_active.map(|m| json!(m)),
        ),
        (
            "retention_period",
            entry.retention.map(|r| json!(r.to_string())),
        ),
    ])
}

/// Tempo's defaults for the keys the operator writes (runtime contract): a tenant entry
/// does not inherit the defaults, so each entry writes every one of them.
pub const TEMPO_DEFAULT_RATE_LIMIT_BYTES: i64 = 15_000_000;
pub const TEMPO_DEFAULT_BURST_SIZE_BYTES: i64 = 20_000_000;
pub const TEMPO_DEFAULT_MAX_TRACES_PER_USER: i64 = 10_000;
pub const TEMPO_DEFAULT_MAX_BYTES_PER_TRACE: i64 = 5_000_000;

fn tempo_limits(entry: &TenantEntry, span_metrics: bool) -> Option<Value> {
    let l = &entry.limits;
    let any = l.ingestion_rate.is_some()
        || l.ingestion_burst.is_some()
        || l.max_active.is_some()
        || entry.retention.is_some();
    if !any {
        return None;
    }
    let mut value = json!({
        "ingestion": {
            "rate_limit_bytes": l.ingestion_rate.unwrap_or(TEMPO_DEFAULT_RATE_LIMIT_BYTES),
            "burst_size_bytes": l.ingestion_burst.unwrap_or(TEMPO_DEFAULT_BURST_SIZE_BYTES),
            "max_traces_per_user": l.max_active.unwrap_or(TEMPO_DEFAULT_MAX_TRACES_PER_USER),
        },
        "global": { "max_bytes_per_trace": TEMPO_DEFAULT_MAX_BYTES_PER_TRACE },
    });
    // Left out, block_retention is 0: the compactor's own retention applies.
    if let Some(retention) = entry.retention {
        value["compaction"] = json!({ "block_retention": retention.to_string() });
    }
    if span_metrics {
        value["metrics_generator"] = json!({ "processors": GENERATOR_PROCESSORS });
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, limits: TenantLimits) -> TenantEntry {
        let retention = limits
            .retention
            .as_deref()
            .map(|r| Duration::parse(r).expect("duration"));
        TenantEntry {
            id: id.into(),
            limits,
            retention,
        }
    }

    fn limited() -> TenantLimits {
        TenantLimits {
            ingestion_rate: Some(2 << 20),
            ingestion_burst: Some(4 << 20),
            max_active: Some(1000),
            retention: Some("30d".into()),
        }
    }

    fn parsed(product: Product, entries: &[TenantEntry], span_metrics: bool) -> Value {
        serde_saphyr::from_str(&runtime_overrides(product, entries, span_metrics)).expect("YAML")
    }

    #[test]
    fn each_product_gets_its_own_keys() {
        let entries = [
            entry("team-a", limited()),
            entry("quiet", TenantLimits::default()),
        ];
        assert_eq!(
            parsed(Product::Mimir, &entries, false),
            json!({"overrides": {"team-a": {
                "ingestion_rate": 2097152.0,
                "ingestion_burst_size": 4194304,
                "max_global_series_per_user": 1000,
                "compactor_blocks_retention_period": "720h",
            }}})
        );
        assert_eq!(
            parsed(Product::Loki, &entries, false),
            json!({"overrides": {"team-a": {
                "ingestion_rate_mb": 2.0,
                "ingestion_burst_size_mb": 4.0,
                "max_global_streams_per_user": 1000,
                "retention_period": "720h",
            }}})
        );
    }

    #[test]
    fn a_tempo_entry_writes_every_default_it_would_otherwise_zero() {
        let only_traces = TenantLimits {
            max_active: Some(5),
            ..TenantLimits::default()
        };
        assert_eq!(
            parsed(Product::Tempo, &[entry("t", only_traces)], true),
            json!({"overrides": {"t": {
                "ingestion": {
                    "rate_limit_bytes": TEMPO_DEFAULT_RATE_LIMIT_BYTES,
                    "burst_size_bytes": TEMPO_DEFAULT_BURST_SIZE_BYTES,
                    "max_traces_per_user": 5,
                },
                "global": {"max_bytes_per_trace": TEMPO_DEFAULT_MAX_BYTES_PER_TRACE},
                "metrics_generator": {"processors": ["service-graphs", "span-metrics"]},
            }}})
        );
    }

    #[test]
    fn no_tenant_gives_an_empty_file_the_products_accept() {
        for product in Product::ALL {
            assert_eq!(parsed(product, &[], false), json!({"overrides": {}}));
        }
    }
}
