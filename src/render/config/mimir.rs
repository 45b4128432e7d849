//! Mimir's configuration (classic architecture), for the version in the catalogue.

use serde::Serialize;

use super::{ConfigInputs, DATA_DIR, Memberlist, Server, env_ref};
use crate::render::storage::{ACCESS_KEY_ID_ENV, Endpoint, SECRET_ACCESS_KEY_ENV};

#[derive(Serialize)]
pub(super) struct Config {
    multitenancy_enabled: bool,
    no_auth_tenant: &'static str,
    server: Server,
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
    frontend: Option<Frontend>,
    frontend_worker: FrontendWorker,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
}

#[derive(Serialize)]
struct Common {
    storage: Bucket,
}

#[derive(Serialize)]
struct Bucket {
    backend: &'static str,
    s3: S3,
}

#[derive(Serialize)]
struct S3 {
    endpoint: String,
    bucket_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
    access_key_id: String,
    secret_access_key: String,
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

#[derive(Serialize)]
struct Ring {
    replication_factor: u32,
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
}

#[derive(Serialize)]
struct Ruler {
    rule_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    alertmanager_url: Option<String>,
}

#[derive(Serialize)]
struct Frontend {
    scheduler_address: String,
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
    compactor_blocks_retention_period: String,
}

pub(super) fn config(inputs: &ConfigInputs) -> Config {
    let topology = inputs.topology;
    let ports = topology.product.catalogue().ports;
    let endpoint = Endpoint::new(inputs.s3);
    let data = |dir: &str| format!("{DATA_DIR}/{dir}");
    let grpc = |role: &str| format!("{}:{}", inputs.service_host(role), ports.grpc);

    // Queriers pull work from the query-schedulers when there are any, else straight
    // from the query-frontends (which then queue the queries themselves).
    let (frontend, frontend_worker) = if topology.has_role("query-scheduler") {
        let scheduler = grpc("query-scheduler");
        (
            Some(Frontend {
                scheduler_address: scheduler.clone(),
            }),
            FrontendWorker {
                scheduler_address: Some(scheduler),
                frontend_address: None,
            },
        )
    } else {
        (
            None,
            FrontendWorker {
                scheduler_address: None,
                frontend_address: Some(grpc("query-frontend")),
            },
        )
    };

    Config {
        multitenancy_enabled: false,
        no_auth_tenant: "anonymous",
        server: inputs.server(),
        common: Common {
            storage: Bucket {
                backend: "s3",
                s3: S3 {
                    endpoint: endpoint.host_port.clone(),
                    bucket_name: inputs.s3.bucket.clone(),
                    region: inputs.s3.region.clone(),
                    insecure: endpoint.insecure,
                    access_key_id: env_ref(ACCESS_KEY_ID_ENV),
                    secret_access_key: env_ref(SECRET_ACCESS_KEY_ENV),
                },
            },
        },
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
            ring: Ring {
                replication_factor: topology.replication_factor("ingester"),
            },
        },
        store_gateway: StoreGateway {
            sharding_ring: Ring {
                replication_factor: topology.replication_factor("store-gateway"),
            },
        },
        alertmanager: Alertmanager {
            data_dir: data("alertmanager"),
            sharding_ring: Ring {
                replication_factor: topology.replication_factor("alertmanager"),
            },
        },
        compactor: Compactor {
            data_dir: data("compactor"),
        },
        ruler: Ruler {
            rule_path: data("ruler"),
            alertmanager_url: topology.has_role("alertmanager").then(|| {
                format!(
                    "http://{}:{}/alertmanager",
                    inputs.service_host("alertmanager"),
                    ports.http
                )
            }),
        },
        frontend,
        frontend_worker,
        limits: inputs.retention.map(|r| Limits {
            compactor_blocks_retention_period: r.to_string(),
        }),
    }
}
