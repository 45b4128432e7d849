//! Mimir's configuration (classic architecture), for the version in the catalogue.

use serde::Serialize;

use super::{
    AzureContainer, ConfigInputs, DATA_DIR, GcsBucket, Memberlist, RuntimeConfig, Server, seconds,
};
use crate::api::Backend;
use crate::render::REQUEST_TIMEOUTS;
use crate::render::storage::{Endpoint, FILESYSTEM_DIR};

#[derive(Serialize)]
pub(super) struct Config {
    multitenancy_enabled: bool,
    no_auth_tenant: &'static str,
    runtime_config: RuntimeConfig,
    usage_stats: UsageStats,
    activity_tracker: ActivityTracker,
    server: Server,
    querier: Querier,
    common: Common,
    blocks_storage: BlocksStorage,
    ruler_storage: Prefixed,
    alertmanager_storage: Prefixed,
    memberlist: Memberlist,
    ingester: Ingester,
    store_gateway: StoreGateway,
    alertmanager: Alertmanager,
    compactor: Compactor,
    ruler: Ruler,
    #[serde(skip_serializing_if = "Option::is_none")]
    distributor: Option<RingHolder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_scheduler: Option<RingHolder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overrides_exporter: Option<RingHolder>,
    #[serde(skip_serializing_if = "Frontend::is_empty")]
    frontend: Frontend,
    frontend_worker: FrontendWorker,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
}

#[derive(Serialize)]
struct UsageStats {
    enabled: bool,
}

#[derive(Serialize)]
struct ActivityTracker {
    filepath: String,
}

#[derive(Serialize)]
struct Querier {
    timeout: String,
}

#[derive(Serialize)]
struct Common {
    storage: Bucket,
}

#[derive(Serialize)]
struct Bucket {
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3: Option<S3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gcs: Option<GcsBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azure: Option<AzureContainer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filesystem: Option<Dir>,
}

#[derive(Serialize)]
struct S3 {
    endpoint: String,
    bucket_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
}

#[derive(Serialize)]
struct BlocksStorage {
    storage_prefix: &'static str,
    tsdb: Dir,
    bucket_store: SyncDir,
}

#[derive(Serialize)]
struct Dir {
    dir: String,
}

#[derive(Serialize)]
struct SyncDir {
    sync_dir: String,
}

#[derive(Serialize)]
struct Prefixed {
    storage_prefix: &'static str,
}

#[derive(Serialize)]
struct Ingester {
    ring: Ring,
}

/// A ring's settings: its replication factor where it replicates, and IPv6 addresses
/// where the pods have no other (rings skip IPv6 by default: runtime contract).
#[derive(Serialize, Default)]
struct Ring {
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_factor: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    instance_enable_ipv6: bool,
    /// One copy per zone: on when every member is zoned (runtime contract).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    zone_awareness_enabled: bool,
}

/// A component whose only setting here is its `ring`.
#[derive(Serialize)]
struct RingHolder {
    ring: Ring,
}

#[derive(Serialize)]
struct StoreGateway {
    sharding_ring: Ring,
}

#[derive(Serialize)]
struct Alertmanager {
    data_dir: String,
    sharding_ring: Ring,
}

#[derive(Serialize)]
struct Compactor {
    data_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sharding_ring: Option<Ring>,
}

#[derive(Serialize)]
struct Ruler {
    rule_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    alertmanager_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<Ring>,
}

#[derive(Serialize, Default)]
struct Frontend {
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduler_address: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    instance_enable_ipv6: bool,
}

impl Frontend {
    fn is_empty(&self) -> bool {
        self.scheduler_address.is_none() && !self.instance_enable_ipv6
    }
}

/// `frontend_address` exists in the pinned 2.17; Mimir 3.0 removes it and requires the
/// query-scheduler (CHANGELOG 3.0.0, #12200), so a version bump must drop that branch.
#[derive(Serialize)]
struct FrontendWorker {
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduler_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frontend_address: Option<String>,
}

#[derive(Serialize)]
struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    compactor_blocks_retention_period: Option<String>,
    /// Multi-tenant: a tenant's Alertmanager receivers may not reach private, loopback
    /// or link-local addresses, or its webhooks could call the cluster's own endpoints
    /// (an ingester's shutdown) or a cloud's metadata service.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    alertmanager_receivers_firewall_block_private_addresses: bool,
}

pub(super) fn config(inputs: &ConfigInputs) -> Config {
    let topology = inputs.topology;
    let ipv6 = inputs.ipv6;
    let replicated = |role: &str| Ring {
        replication_factor: Some(topology.replication_factor(role)),
        instance_enable_ipv6: ipv6,
        zone_awareness_enabled: topology.zone_aware(role),
    };
    // Rings that carry nothing but the IPv6 switch are written only when it is on.
    let ipv6_ring = || ipv6.then(|| RingHolder { ring: ring(ipv6) });
    let (frontend, frontend_worker) = query_path(inputs);
    Config {
        multitenancy_enabled: inputs.multi_tenant,
        no_auth_tenant: topology.product.contract().single_tenant_id,
        runtime_config: RuntimeConfig::new(),
        usage_stats: UsageStats {
            enabled: inputs.usage_reporting,
        },
        // Every target opens it at start and exits when it cannot (runtime contract);
        // on the data volume it survives a crash, which is what it is for.
        activity_tracker: ActivityTracker {
            filepath: data("metrics-activity.log"),
        },
        server: inputs.server(),
        querier: Querier {
            timeout: seconds(REQUEST_TIMEOUTS.query),
        },
        common: common(inputs),
        blocks_storage: BlocksStorage {
            storage_prefix: "blocks",
            tsdb: Dir { dir: data("tsdb") },
            bucket_store: SyncDir {
                sync_dir: data("tsdb-sync"),
            },
        },
        ruler_storage: Prefixed {
            storage_prefix: "rules",
        },
        alertmanager_storage: Prefixed {
            storage_prefix: "alerts",
        },
        memberlist: inputs.memberlist(),
        ingester: Ingester {
            ring: replicated("ingester"),
        },
        store_gateway: StoreGateway {
            sharding_ring: replicated("store-gateway"),
        },
        alertmanager: Alertmanager {
            data_dir: data("alertmanager"),
            sharding_ring: replicated("alertmanager"),
        },
        compactor: Compactor {
            data_dir: data("compactor"),
            sharding_ring: ipv6.then(|| ring(ipv6)),
        },
        ruler: ruler(inputs),
        distributor: ipv6_ring(),
        query_scheduler: ipv6_ring(),
        overrides_exporter: ipv6_ring(),
        frontend,
        frontend_worker,
        limits: (inputs.retention.is_some() || inputs.multi_tenant).then(|| Limits {
            compactor_blocks_retention_period: inputs.retention.map(|r| r.to_string()),
            alertmanager_receivers_firewall_block_private_addresses: inputs.multi_tenant,
        }),
    }
}

/// A directory on the data volume.
fn data(dir: &str) -> String {
    format!("{DATA_DIR}/{dir}")
}

/// A ring that does not replicate: only its IPv6 switch.
fn ring(ipv6: bool) -> Ring {
    Ring {
        replication_factor: None,
        instance_enable_ipv6: ipv6,
        zone_awareness_enabled: false,
    }
}

/// Queriers pull work from the query-schedulers when there are any, else straight
/// from the query-frontends (which then queue the queries themselves).
fn query_path(inputs: &ConfigInputs) -> (Frontend, FrontendWorker) {
    let grpc_port = inputs.topology.product.catalogue().ports.grpc;
    let grpc = |role: &str| format!("{}:{grpc_port}", inputs.service_host(role));
    let ipv6 = inputs.ipv6;
    if inputs.topology.has_role("query-scheduler") {
        let scheduler = grpc("query-scheduler");
        (
            Frontend {
                scheduler_address: Some(scheduler.clone()),
                instance_enable_ipv6: ipv6,
            },
            FrontendWorker {
                scheduler_address: Some(scheduler),
                frontend_address: None,
            },
        )
    } else {
        (
            Frontend {
                scheduler_address: None,
                instance_enable_ipv6: ipv6,
            },
            FrontendWorker {
                scheduler_address: None,
                frontend_address: Some(grpc("query-frontend")),
            },
        )
    }
}

/// The bucket every component stores in, under its own prefix.
fn common(inputs: &ConfigInputs) -> Common {
    let mut bucket = Bucket {
        backend: inputs.storage.name(),
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
                bucket_name: s3.bucket.clone(),
                region: s3.region.clone(),
                insecure: endpoint.insecure,
            });
        }
        Backend::Gcs(gcs) => bucket.gcs = Some(gcs.into()),
        Backend::Azure(azure) => bucket.azure = Some(azure.into()),
        Backend::Filesystem(_) => {
            bucket.filesystem = Some(Dir {
                dir: FILESYSTEM_DIR.into(),
            })
        }
    }
    Common { storage: bucket }
}

/// The ruler, sending to the cluster's alertmanagers when a pool runs them.
fn ruler(inputs: &ConfigInputs) -> Ruler {
    let http = inputs.topology.product.catalogue().ports.http;
    Ruler {
        rule_path: data("ruler"),
        alertmanager_url: inputs.topology.has_role("alertmanager").then(|| {
            format!(
                "http://{}:{http}/alertmanager",
                inputs.service_host("alertmanager"),
            )
        }),
        ring: inputs.ipv6.then(|| ring(inputs.ipv6)),
    }
}
