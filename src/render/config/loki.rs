//! Loki's configuration (simple scalable targets), for the version in the catalogue.

use serde::Serialize;

use super::{ConfigError, ConfigInputs, DATA_DIR, Duration, Memberlist, Server, env_ref};
use crate::render::storage::{ACCESS_KEY_ID_ENV, Endpoint, SECRET_ACCESS_KEY_ENV};

#[derive(Serialize)]
pub(super) struct Config {
    auth_enabled: bool,
    server: Server,
    common: Common,
    memberlist: Memberlist,
    schema_config: SchemaConfig,
    ingester: Ingester,
    compactor: Compactor,
    ruler: Ruler,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits_config: Option<Limits>,
}

#[derive(Serialize)]
struct Common {
    path_prefix: String,
    replication_factor: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    compactor_address: Option<String>,
    ring: CommonRing,
    storage: Storage,
}

#[derive(Serialize)]
struct CommonRing {
    kvstore: KvStore,
}

#[derive(Serialize)]
struct KvStore {
    store: &'static str,
}

#[derive(Serialize)]
struct Storage {
    s3: S3,
}

#[derive(Serialize)]
struct S3 {
    endpoint: String,
    bucketnames: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
    s3forcepathstyle: bool,
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Serialize)]
struct SchemaConfig {
    configs: Vec<PeriodConfig>,
}

#[derive(Serialize)]
struct PeriodConfig {
    from: String,
    store: &'static str,
    object_store: &'static str,
    schema: &'static str,
    index: Index,
}

#[derive(Serialize)]
struct Index {
    prefix: &'static str,
    period: &'static str,
}

#[derive(Serialize)]
struct Ingester {
    wal: Wal,
}

#[derive(Serialize)]
struct Wal {
    dir: String,
    flush_on_shutdown: bool,
}

#[derive(Serialize)]
struct Compactor {
    working_directory: String,
    retention_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_request_store: Option<&'static str>,
}

#[derive(Serialize)]
struct Ruler {
    rule_path: String,
}

#[derive(Serialize)]
struct Limits {
    retention_period: String,
}

/// Loki's index (and so its retention) works in whole periods of this length.
const INDEX_PERIOD: Duration = Duration::from_seconds(Duration::DAY);

pub(super) fn config(inputs: &ConfigInputs) -> Result<Config, ConfigError> {
    let topology = inputs.topology;
    let ports = topology.product.catalogue().ports;
    let endpoint = Endpoint::new(inputs.s3);
    let data = |dir: &str| format!("{DATA_DIR}/{dir}");
    if let Some(retention) = inputs.retention
        && retention.seconds() % INDEX_PERIOD.seconds() != 0
    {
        return Err(ConfigError::Retention(format!(
            "Loki retention must be a whole number of days (its index period is 24h), not {retention}"
        )));
    }
    // The schema date is chosen once by the controller; a rendering without it would
    // silently pick another and break reads of existing data.
    let from = inputs
        .loki_schema_from
        .expect("the controller fixes Loki's schema date before rendering")
        .to_string();
    Ok(Config {
        auth_enabled: false,
        server: inputs.server(),
        common: Common {
            path_prefix: DATA_DIR.to_string(),
            // The write path's ingesters are what replicate; `all` includes write.
            replication_factor: topology.replication_factor("write"),
            compactor_address: topology
                .has_role("backend")
                .then(|| format!("http://{}:{}", inputs.service_host("backend"), ports.http)),
            ring: CommonRing {
                kvstore: KvStore {
                    store: "memberlist",
                },
            },
            storage: Storage {
                s3: S3 {
                    endpoint: endpoint.host_port.clone(),
                    bucketnames: inputs.s3.bucket.clone(),
                    region: inputs.s3.region.clone(),
                    insecure: endpoint.insecure,
                    s3forcepathstyle: true,
                    access_key_id: env_ref(ACCESS_KEY_ID_ENV),
                    secret_access_key: env_ref(SECRET_ACCESS_KEY_ENV),
                },
            },
        },
        memberlist: inputs.memberlist(),
        schema_config: SchemaConfig {
            configs: vec![PeriodConfig {
                from,
                store: "tsdb",
                object_store: "s3",
                schema: "v13",
                index: Index {
                    prefix: "index_",
                    period: "24h",
                },
            }],
        },
        ingester: Ingester {
            wal: Wal {
                dir: data("wal"),
                flush_on_shutdown: true,
            },
        },
        compactor: Compactor {
            working_directory: data("compactor"),
            retention_enabled: inputs.retention.is_some(),
            delete_request_store: inputs.retention.map(|_| "s3"),
        },
        ruler: Ruler {
            rule_path: data("rules-temp"),
        },
        limits_config: inputs.retention.map(|r| Limits {
            retention_period: r.to_string(),
        }),
    })
}
