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

/// The auth Secret's key: random, made once per cluster; it salts the password hashes
/// and keys the gateway's credentials checksum, which pods show to anyone who may read
/// them.
pub const AUTH_KEY: &str = "key";
/// The key's length in bytes.
pub const KEY_BYTES: usize = 32;

/// The files nginx reads to authenticate (mounted from a Secret, never a ConfigMap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    /// The auth Secret's key ([`AUTH_KEY`]), kept with the files; nginx does not read it.
    pub key: Vec<u8>,
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
    pub const NAMES: [&'static str; 3] = [Self::HTPASSWD, Self::USERS_MAP, Self::BEARER_MAP];

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
            auth_secret_name(&cluster.name),
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
                .map(|(name, text)| (name, text.as_bytes()))
                .chain([(AUTH_KEY, files.key.as_slice())])
                .map(|(name, bytes)| (name.to_string(), k8s_openapi::ByteString(bytes.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The auth Secret's name for cluster `cluster`.
pub fn auth_secret_name(cluster: &str) -> String {
    format!("{cluster}-gateway-auth")
}

/// Checksum of the auth files, keyed: the gateway's pods carry it, so that they roll
/// onto new credentials (nginx reads its maps only when it starts), and without the key
/// it tells nothing about a password.
pub fn auth_checksum(files: &AuthFiles) -> String {
    let texts = files.files().map(|(_, text)| text.as_bytes());
    checksum([files.key.as_slice()].into_iter().chain(texts))
}

/// The runtime-overrides file: `overrides:` with one entry per tenant that sets a limit,
/// in the product's own keys (runtime contract). `tempo_base`: what a Tempo entry starts
/// from ([`tempo_entry_base`]); Mimir's and Loki's entries inherit the defaults instead.
pub fn runtime_overrides(product: Product, entries: &[TenantEntry], tempo_base: &Value) -> String {
    let mut overrides = Map::new();
    for entry in entries {
        let limits = match product {
            Product::Mimir => mimir_limits(entry),
            Product::Loki => loki_limits(entry),
            Product::Tempo => tempo_limits(entry, tempo_base),
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

/// What every Tempo tenant entry starts from, since an entry replaces the defaults
/// whole: Tempo's defaults for the keys the operator knows, the span-metrics processors
/// when they are on (`span_metrics`), and the cluster's own `overrides.defaults` from
/// `configOverrides` over them.
pub fn tempo_entry_base(span_metrics: bool, config_overrides: Option<&Value>) -> Value {
    let mut base = json!({
        "ingestion": {
            "rate_limit_bytes": TEMPO_DEFAULT_RATE_LIMIT_BYTES,
            "burst_size_bytes": TEMPO_DEFAULT_BURST_SIZE_BYTES,
            "max_traces_per_user": TEMPO_DEFAULT_MAX_TRACES_PER_USER,
        },
        "global": { "max_bytes_per_trace": TEMPO_DEFAULT_MAX_BYTES_PER_TRACE },
    });
    if span_metrics {
        base["metrics_generator"] = json!({ "processors": GENERATOR_PROCESSORS });
    }
    let cluster_defaults = config_overrides
        .and_then(|o| o.pointer("/overrides/defaults"))
        .filter(|d| d.is_object());
    if let Some(defaults) = cluster_defaults {
        // A bad one is the configuration's problem (ConfigValid), reported there.
        let _ = super::config::merge(&mut base, defaults);
    }
    base
}

fn tempo_limits(entry: &TenantEntry, base: &Value) -> Option<Value> {
    let l = &entry.limits;
    let any = l.ingestion_rate.is_some()
        || l.ingestion_burst.is_some()
        || l.max_active.is_some()
        || entry.retention.is_some();
    if !any {
        return None;
    }
    let mut value = base.clone();
    let set = [
        ("rate_limit_bytes", l.ingestion_rate),
        ("burst_size_bytes", l.ingestion_burst),
        ("max_traces_per_user", l.max_active),
    ];
    for (key, limit) in set {
        if let Some(limit) = limit {
            value["ingestion"][key] = json!(limit);
        }
    }
    // Left out, block_retention is 0: the compactor's own retention applies.
    if let Some(retention) = entry.retention {
        value["compaction"]["block_retention"] = json!(retention.to_string());
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
        let base = tempo_entry_base(span_metrics, None);
        serde_saphyr::from_str(&runtime_overrides(product, entries, &base)).expect("YAML")
    }

    #[test]
    fn a_tempo_entry_starts_from_the_clusters_own_defaults() {
        let overrides = json!({"overrides": {"defaults": {
            "ingestion": {"rate_limit_bytes": 1},
            "read": {"max_bytes_per_tag_values_query": 7},
        }}});
        let base = tempo_entry_base(false, Some(&overrides));
        let only_retention = TenantLimits {
            retention: Some("48h".into()),
            ..TenantLimits::default()
        };
        let text = runtime_overrides(Product::Tempo, &[entry("t", only_retention)], &base);
        let file: Value = serde_saphyr::from_str(&text).expect("YAML");
        let t = &file["overrides"]["t"];
        assert_eq!(t["ingestion"]["rate_limit_bytes"], json!(1));
        assert_eq!(
            t["ingestion"]["burst_size_bytes"],
            json!(TEMPO_DEFAULT_BURST_SIZE_BYTES)
        );
        assert_eq!(t["read"]["max_bytes_per_tag_values_query"], json!(7));
        assert_eq!(t["compaction"]["block_retention"], json!("48h"));
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
