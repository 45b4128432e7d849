//! Loki's configuration (simple scalable targets), for the version in the catalogue.

use serde::Serialize;

use super::{
    AzureContainer, ConfigError, ConfigInputs, DATA_DIR, Duration, GcsBucket, Memberlist,
    RuntimeConfig, Server, seconds,
};
use crate::api::Backend;
use crate::render::REQUEST_TIMEOUTS;
use crate::render::storage::{self, Endpoint};

#[derive(Serialize)]
pub(super) struct Config {
    auth_enabled: bool,
    runtime_config: RuntimeConfig,
    analytics: Analytics,
    tracing: Tracing,
    server: Server,
    common: Common,
    memberlist: Memberlist,
    schema_config: SchemaConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_config: Option<StorageConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index_gateway: Option<IndexGateway>,
    ingester: Ingester,
    #[serde(skip_serializing_if = "Option::is_none")]
    distributor: Option<RingHolder>,
    compactor: Compactor,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_scheduler: Option<SchedulerRing>,
    ruler: Ruler,
    limits_config: Limits,
}

#[derive(Serialize)]
struct Analytics {
    reporting_enabled: bool,
}

#[derive(Serialize)]
struct Tracing {
    enabled: bool,
}

#[derive(Serialize)]
struct StorageConfig {
    tsdb_shipper: TsdbShipper,
}

#[derive(Serialize)]
struct TsdbShipper {
    index_gateway_client: IndexGatewayClient,
}

#[derive(Serialize)]
struct IndexGatewayClient {
    server_address: String,
}

#[derive(Serialize)]
struct IndexGateway {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<Ipv6Ring>,
}

/// A Loki ring that only needs IPv6 turned on (common.ring's is not copied to the
/// others: runtime contract).
#[derive(Serialize)]
struct Ipv6Ring {
    instance_enable_ipv6: bool,
}

#[derive(Serialize)]
struct RingHolder {
    ring: Ipv6Ring,
}

#[derive(Serialize)]
struct SchedulerRing {
    scheduler_ring: Ipv6Ring,
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    instance_enable_ipv6: bool,
}

#[derive(Serialize)]
struct KvStore {
    store: &'static str,
}

/// Loki has no `backend` key: the one block set is the backend (runtime contract).
#[derive(Serialize)]
struct Storage {
    #[serde(skip_serializing_if = "Option::is_none")]
    s3: Option<S3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gcs: Option<GcsBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azure: Option<AzureContainer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filesystem: Option<Filesystem>,
}

#[derive(Serialize)]
struct Filesystem {
    chunks_directory: String,
    rules_directory: String,
}

#[derive(Serialize)]
struct S3 {
    endpoint: String,
    bucketnames: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
    s3forcepathstyle: bool,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycler: Option<Lifecycler>,
}

#[derive(Serialize)]
struct Lifecycler {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    enable_inet6: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<ZoneAwareRing>,
}

/// Set on the ingester's own ring, not `common.ring`: that would turn zone awareness
/// on for the scheduler, compactor and index-gateway rings too, whose members have no
/// zone (runtime contract).
#[derive(Serialize)]
struct ZoneAwareRing {
    zone_awareness_enabled: bool,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    compactor_ring: Option<Ipv6Ring>,
}

#[derive(Serialize)]
struct Ruler {
    rule_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<Ipv6Ring>,
}

#[derive(Serialize)]
struct Limits {
    query_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_period: Option<String>,
}

/// Loki's index (and so its retention) works in whole periods of this length.
const INDEX_PERIOD: Duration = Duration::from_seconds(Duration::DAY);

pub(super) fn config(inputs: &ConfigInputs) -> Result<Config, ConfigError> {
    check_retention(inputs.retention)?;
    // The schema date is chosen once by the controller; a rendering without it would
    // silently pick another and break reads of existing data.
    let from = inputs
        .loki_schema_from
        .expect("the controller fixes Loki's schema date before rendering")
        .to_string();
    let ipv6 = inputs.ipv6;
    let retention = inputs.retention.is_some() || inputs.tenant_retention;
    let (storage_config, index_gateway) = index_gateways(inputs);
    Ok(Config {
        auth_enabled: inputs.multi_tenant,
        runtime_config: RuntimeConfig::new(),
        analytics: Analytics {
            reporting_enabled: inputs.usage_reporting,
        },
        // Loki traces through Jaeger only, never OTLP (runtime contract): its tracer
        // would only send to a localhost agent that is not there.
        tracing: Tracing { enabled: false },
        server: inputs.server(),
        common: common(inputs),
        memberlist: inputs.memberlist(),
        schema_config: schema_config(from, inputs.storage.name()),
        storage_config,
        index_gateway,
        ingester: Ingester {
            wal: Wal {
                dir: data("wal"),
                // Rollouts replay the WAL instead of flushing (ADR 5).
                flush_on_shutdown: false,
            },
            lifecycler: {
                let zoned = inputs.topology.zone_aware("write");
                (ipv6 || zoned).then_some(Lifecycler {
                    enable_inet6: ipv6,
                    ring: zoned.then_some(ZoneAwareRing {
                        zone_awareness_enabled: true,
                    }),
                })
            },
        },
        distributor: ipv6.then_some(RingHolder {
            ring: Ipv6Ring {
                instance_enable_ipv6: true,
            },
        }),
        compactor: Compactor {
            working_directory: data("compactor"),
            // A tenant's own retention needs the compactor's retention on too.
            retention_enabled: retention,
            delete_request_store: retention.then(|| inputs.storage.name()),
            compactor_ring: ipv6_ring(ipv6),
        },
        query_scheduler: ipv6.then_some(SchedulerRing {
            scheduler_ring: Ipv6Ring {
                instance_enable_ipv6: true,
            },
        }),
        ruler: Ruler {
            rule_path: data("rules-temp"),
            ring: ipv6_ring(ipv6),
        },
        limits_config: Limits {
            query_timeout: seconds(REQUEST_TIMEOUTS.query),
            retention_period: inputs.retention.map(|r| r.to_string()),
        },
    })
}

/// A directory on the data volume.
fn data(dir: &str) -> String {
    format!("{DATA_DIR}/{dir}")
}

/// The ring setting of a component whose ring is not `common.ring`'s, when on IPv6.
fn ipv6_ring(ipv6: bool) -> Option<Ipv6Ring> {
    ipv6.then_some(Ipv6Ring {
        instance_enable_ipv6: true,
    })
}

/// Loki deletes data by whole index periods, so a retention must be a number of them.
fn check_retention(retention: Option<Duration>) -> Result<(), ConfigError> {
    if let Some(retention) = retention
        && retention.seconds() % INDEX_PERIOD.seconds() != 0
    {
        return Err(ConfigError::Retention(format!(
            "Loki retention must be a whole number of days (its index period is 24h), not {retention}"
        )));
    }
    Ok(())
}

/// Readers ask the backend's index gateways instead of downloading the whole index,
/// but only when every pool running backend runs the gateway: `all` runs none
/// (runtime contract), and a reader sent to one would fail. On IPv6 the gateway's
/// ring is written either way.
fn index_gateways(inputs: &ConfigInputs) -> (Option<StorageConfig>, Option<IndexGateway>) {
    let topology = inputs.topology;
    let ipv6 = inputs.ipv6;
    let backend_pools = topology
        .roles
        .get("backend")
        .map(|p| p.pools.as_slice())
        .unwrap_or_default();
    let gateways_everywhere = !backend_pools.is_empty()
        && backend_pools
            .iter()
            .all(|pool| topology.pool_toggles(pool) == ["backend"]);
    if gateways_everywhere {
        let grpc = topology.product.catalogue().ports.grpc;
        (
            Some(StorageConfig {
                tsdb_shipper: TsdbShipper {
                    index_gateway_client: IndexGatewayClient {
                        server_address: format!("dns+{}:{grpc}", inputs.service_host("backend")),
                    },
                },
            }),
            Some(IndexGateway {
                mode: "simple",
                ring: ipv6_ring(ipv6),
            }),
        )
    } else {
        (
            None,
            ipv6.then(|| IndexGateway {
                mode: "simple",
                ring: ipv6_ring(ipv6),
            }),
        )
    }
}

/// The `common` block: data path, replication, the compactor's address, the ring over
/// memberlist and the bucket.
fn common(inputs: &ConfigInputs) -> Common {
    let topology = inputs.topology;
    let http = topology.product.catalogue().ports.http;
    Common {
        path_prefix: DATA_DIR.to_string(),
        // The write path's ingesters are what replicate; `all` includes write.
        replication_factor: topology.replication_factor("write"),
        compactor_address: topology
            .has_role("backend")
            .then(|| format!("http://{}:{http}", inputs.service_host("backend"))),
        ring: CommonRing {
            kvstore: KvStore {
                store: "memberlist",
            },
            instance_enable_ipv6: inputs.ipv6,
        },
        storage: bucket(inputs),
    }
}

/// The one storage block of the backend.
fn bucket(inputs: &ConfigInputs) -> Storage {
    let mut bucket = Storage {
        s3: None,
        gcs: None,
        azure: None,
        filesystem: None,
    };
    match inputs.storage {
        Backend::S3(s3) => {
            let endpoint = Endpoint::new(s3);
            bucket.s3 = Some(S3 {
                endpoint: endpoint.host_port.clone(),
                bucketnames: s3.bucket.clone(),
                // An AWS endpoint's region where the spec names none; the
                // controller holds workers back when there is neither.
                region: storage::region(inputs.topology.product, s3).ok().flatten(),
                insecure: endpoint.insecure,
                s3forcepathstyle: true,
            });
        }
        Backend::Gcs(gcs) => bucket.gcs = Some(gcs.into()),
        Backend::Azure(azure) => bucket.azure = Some(azure.into()),
        Backend::Filesystem(_) => {
            bucket.filesystem = Some(Filesystem {
                chunks_directory: format!("{}/chunks", storage::FILESYSTEM_DIR),
                rules_directory: format!("{}/rules", storage::FILESYSTEM_DIR),
            })
        }
    }
    bucket
}

/// One schema period from the cluster's fixed date: TSDB in the backend, v13, daily index.
fn schema_config(from: String, object_store: &'static str) -> SchemaConfig {
    SchemaConfig {
        configs: vec![PeriodConfig {
            from,
            store: "tsdb",
            object_store,
            schema: "v13",
            index: Index {
                prefix: "index_",
                period: "24h",
            },
        }],
    }
}
