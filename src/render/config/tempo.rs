//! Tempo's configuration, for the version in the catalogue.

use serde::Serialize;

use super::{ConfigInputs, DATA_DIR, Memberlist, Server, env_ref};
use crate::render::storage::{ACCESS_KEY_ID_ENV, Endpoint, SECRET_ACCESS_KEY_ENV};

#[derive(Serialize)]
pub(super) struct Config {
    multitenancy_enabled: bool,
    usage_report: UsageReport,
    server: Server,
    memberlist: Memberlist,
    distributor: Distributor,
    ingester: Ingester,
    storage: Storage,
    #[serde(skip_serializing_if = "Option::is_none")]
    compactor: Option<Compactor>,
    querier: Querier,
    metrics_generator: MetricsGenerator,
    #[serde(skip_serializing_if = "Option::is_none")]
    overrides: Option<Overrides>,
}

#[derive(Serialize)]
struct UsageReport {
    reporting_enabled: bool,
}

#[derive(Serialize)]
struct Distributor {
    receivers: Receivers,
}

#[derive(Serialize)]
struct Receivers {
    otlp: Protocols<OtlpProtocols>,
    zipkin: ListenAddress,
    jaeger: Protocols<JaegerProtocols>,
}

#[derive(Serialize)]
struct Protocols<P> {
    protocols: P,
}

#[derive(Serialize)]
struct OtlpProtocols {
    grpc: ListenAddress,
    http: ListenAddress,
}

#[derive(Serialize)]
struct JaegerProtocols {
    thrift_http: ListenAddress,
    grpc: ListenAddress,
}

/// A receiver's listen address.
#[derive(Serialize)]
struct ListenAddress {
    endpoint: String,
}

fn listen(port: u16) -> ListenAddress {
    ListenAddress {
        endpoint: format!("0.0.0.0:{port}"),
    }
}

#[derive(Serialize)]
struct Ingester {
    lifecycler: Lifecycler,
}

#[derive(Serialize)]
struct Lifecycler {
    ring: Ring,
}

#[derive(Serialize)]
struct Ring {
    replication_factor: u32,
}

#[derive(Serialize)]
struct Storage {
    trace: Trace,
}

#[derive(Serialize)]
struct Trace {
    backend: &'static str,
    s3: S3,
    wal: Path,
    local: Path,
}

#[derive(Serialize)]
struct S3 {
    bucket: String,
    endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
    forcepathstyle: bool,
    access_key: String,
    secret_key: String,
}

#[derive(Serialize)]
struct Path {
    path: String,
}

#[derive(Serialize)]
struct Compactor {
    compaction: Compaction,
}

#[derive(Serialize)]
struct Compaction {
    block_retention: String,
}

#[derive(Serialize)]
struct Querier {
    frontend_worker: FrontendWorker,
}

#[derive(Serialize)]
struct FrontendWorker {
    frontend_address: String,
}

#[derive(Serialize)]
struct MetricsGenerator {
    storage: GeneratorStorage,
    traces_storage: Path,
}

#[derive(Serialize)]
struct GeneratorStorage {
    path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remote_write: Vec<RemoteWrite>,
}

#[derive(Serialize)]
struct RemoteWrite {
    url: String,
    send_exemplars: bool,
}

#[derive(Serialize)]
struct Overrides {
    defaults: OverrideDefaults,
}

#[derive(Serialize)]
struct OverrideDefaults {
    metrics_generator: GeneratorOverrides,
}

#[derive(Serialize)]
struct GeneratorOverrides {
    processors: Vec<&'static str>,
}

pub(super) fn config(inputs: &ConfigInputs) -> Config {
    let topology = inputs.topology;
    let ports = topology.product.catalogue().ports;
    let endpoint = Endpoint::new(inputs.s3);
    let data = |dir: &str| format!("{DATA_DIR}/{dir}");

    // A querier that runs in the same process as a query-frontend (`all`) talks to it
    // locally; otherwise through the query-frontend Service.
    let queriers_are_frontends = topology.roles.get("querier").is_some_and(|querier| {
        let frontends = topology.roles.get("query-frontend");
        querier
            .pools
            .iter()
            .all(|pool| frontends.is_some_and(|f| f.pools.contains(pool)))
    });
    let frontend_host = if queriers_are_frontends {
        "127.0.0.1".to_string()
    } else {
        inputs.service_host("query-frontend")
    };

    // The metrics-generator only has a job when it can remote-write what it derives.
    let remote_write: Vec<RemoteWrite> = inputs
        .remote_write_url
        .map(|url| RemoteWrite {
            url: url.to_string(),
            send_exemplars: true,
        })
        .into_iter()
        .collect();
    let overrides = (!remote_write.is_empty()).then(|| Overrides {
        defaults: OverrideDefaults {
            metrics_generator: GeneratorOverrides {
                processors: vec!["service-graphs", "span-metrics"],
            },
        },
    });

    Config {
        multitenancy_enabled: false,
        usage_report: UsageReport {
            reporting_enabled: false,
        },
        server: inputs.server(),
        memberlist: inputs.memberlist(),
        distributor: Distributor {
            receivers: Receivers {
                otlp: Protocols {
                    protocols: OtlpProtocols {
                        grpc: listen(4317),
                        http: listen(4318),
                    },
                },
                zipkin: listen(9411),
                jaeger: Protocols {
                    protocols: JaegerProtocols {
                        thrift_http: listen(14268),
                        grpc: listen(14250),
                    },
                },
            },
        },
        ingester: Ingester {
            lifecycler: Lifecycler {
                ring: Ring {
                    replication_factor: topology.replication_factor("ingester"),
                },
            },
        },
        storage: Storage {
            trace: Trace {
                backend: "s3",
                s3: S3 {
                    bucket: inputs.s3.bucket.clone(),
                    endpoint: endpoint.without_default_port(),
                    region: inputs.s3.region.clone(),
                    insecure: endpoint.insecure,
                    forcepathstyle: true,
                    access_key: env_ref(ACCESS_KEY_ID_ENV),
                    secret_key: env_ref(SECRET_ACCESS_KEY_ENV),
                },
                wal: Path { path: data("wal") },
                local: Path {
                    path: data("blocks"),
                },
            },
        },
        compactor: inputs.retention.map(|r| Compactor {
            compaction: Compaction {
                block_retention: r.to_string(),
            },
        }),
        querier: Querier {
            frontend_worker: FrontendWorker {
                frontend_address: format!("{frontend_host}:{}", ports.grpc),
            },
        },
        metrics_generator: MetricsGenerator {
            storage: GeneratorStorage {
                path: data("generator/wal"),
                remote_write,
            },
            traces_storage: Path {
                path: data("generator/traces"),
            },
        },
        overrides,
    }
}
