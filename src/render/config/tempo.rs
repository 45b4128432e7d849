//! Tempo's configuration, for the version in the catalogue.

use serde::Serialize;

use super::{
    ConfigInputs, DATA_DIR, GcsBucket, Memberlist, RUNTIME_OVERRIDES_PERIOD, Server, seconds,
};
use crate::api::Backend;
use crate::render::REQUEST_TIMEOUTS;
use crate::render::storage::{Endpoint, FILESYSTEM_DIR};

#[derive(Serialize)]
pub(super) struct Config {
    multitenancy_enabled: bool,
    usage_report: UsageReport,
    server: Server,
    memberlist: Memberlist,
    distributor: Distributor,
    ingester: Ingester,
    storage: Storage,
    compactor: Compactor,
    query_frontend: QueryFrontend,
    querier: Querier,
    metrics_generator: MetricsGenerator,
    overrides: Overrides,
}

#[derive(Serialize)]
struct UsageReport {
    reporting_enabled: bool,
}

#[derive(Serialize)]
struct Distributor {
    receivers: Receivers,
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<Inet6>,
}

/// A ring that registers IPv6 addresses (Tempo's rings skip them by default).
#[derive(Serialize)]
struct Inet6 {
    enable_inet6: bool,
}

#[derive(Serialize)]
struct QueryFrontend {
    api_timeout: String,
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    enable_inet6: bool,
}

#[derive(Serialize)]
struct Ring {
    replication_factor: u32,
    /// One copy per zone: on when every ingester is zoned (runtime contract).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    zone_awareness_enabled: bool,
}

#[derive(Serialize)]
struct Storage {
    trace: Trace,
}

#[derive(Serialize)]
struct Trace {
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3: Option<S3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gcs: Option<GcsBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    azure: Option<Azure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<Path>,
    wal: Path,
}

/// No `storage_account_key`: Tempo reads AZURE_STORAGE_KEY itself (runtime contract).
#[derive(Serialize)]
struct Azure {
    storage_account_name: String,
    container_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_suffix: Option<String>,
}

#[derive(Serialize)]
struct S3 {
    bucket: String,
    endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    insecure: bool,
    forcepathstyle: bool,
}

#[derive(Serialize)]
struct Path {
    path: String,
}

#[derive(Serialize)]
struct Compactor {
    ring: CompactorRing,
    #[serde(skip_serializing_if = "Option::is_none")]
    compaction: Option<Compaction>,
}

#[derive(Serialize)]
struct CompactorRing {
    kvstore: KvStore,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    enable_inet6: bool,
}

#[derive(Serialize)]
struct KvStore {
    store: &'static str,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    ring: Option<Inet6>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    defaults: Option<OverrideDefaults>,
    per_tenant_override_config: String,
    per_tenant_override_period: &'static str,
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
    // Every querier connects to every address the query-frontend Service resolves to:
    // it is headless, publishes not-ready pods (a frontend is ready only once a querier
    // connected) and selects every pod running a frontend, `all` pods included, so no
    // frontend is left without queriers (runtime contract).
    let frontend_host = inputs.service_host("query-frontend");
    let (metrics_generator, overrides) = metrics_generator(inputs);
    Config {
        multitenancy_enabled: inputs.multi_tenant,
        usage_report: UsageReport {
            reporting_enabled: inputs.usage_reporting,
        },
        server: inputs.server(),
        memberlist: inputs.memberlist(),
        distributor: distributor(inputs.ipv6),
        ingester: Ingester {
            lifecycler: Lifecycler {
                ring: Ring {
                    replication_factor: topology.replication_factor("ingester"),
                    zone_awareness_enabled: topology.zone_aware("ingester"),
                },
                enable_inet6: inputs.ipv6,
            },
        },
        storage: storage(inputs),
        // Sharded over memberlist, so that two compactors do not both compact every
        // block (unsharded is the default outside scalable-single-binary).
        compactor: Compactor {
            ring: CompactorRing {
                kvstore: KvStore {
                    store: "memberlist",
                },
                enable_inet6: inputs.ipv6,
            },
            compaction: inputs.retention.map(|r| Compaction {
                block_retention: r.to_string(),
            }),
        },
        query_frontend: QueryFrontend {
            api_timeout: seconds(REQUEST_TIMEOUTS.query),
        },
        querier: Querier {
            frontend_worker: FrontendWorker {
                frontend_address: format!("{frontend_host}:{}", ports.grpc),
            },
        },
        metrics_generator,
        overrides,
    }
}

/// A directory on the data volume.
fn data(dir: &str) -> String {
    format!("{DATA_DIR}/{dir}")
}

/// A ring's IPv6 switch, written only when it is on.
fn inet6(ipv6: bool) -> Option<Inet6> {
    ipv6.then_some(Inet6 { enable_inet6: true })
}

/// The distributors and every receiver they run, on the ports the gateway forwards to.
fn distributor(ipv6: bool) -> Distributor {
    Distributor {
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
        ring: inet6(ipv6),
    }
}

/// Traces in the bucket, the write-ahead log on the data volume.
fn storage(inputs: &ConfigInputs) -> Storage {
    let mut trace = Trace {
        backend: match inputs.storage {
            // Tempo calls the filesystem backend `local`.
            Backend::Filesystem(_) => "local",
            other => other.name(),
        },
        s3: None,
        gcs: None,
        azure: None,
        local: None,
        wal: Path { path: data("wal") },
    };
    match inputs.storage {
        Backend::S3(s3) => {
            let endpoint = Endpoint::new(s3);
            trace.s3 = Some(S3 {
                bucket: s3.bucket.clone(),
                endpoint: endpoint.without_default_port(),
                region: s3.region.clone(),
                insecure: endpoint.insecure,
                forcepathstyle: true,
            });
        }
        // Tempo has no key setting for GCS at all.
        Backend::Gcs(gcs) => trace.gcs = Some(gcs.into()),
        Backend::Azure(azure) => {
            trace.azure = Some(Azure {
                storage_account_name: azure.account_name.clone(),
                container_name: azure.container.clone(),
                endpoint_suffix: azure.endpoint_suffix.clone(),
            })
        }
        // Not under the WAL's own `<wal>/blocks` (runtime contract).
        Backend::Filesystem(_) => {
            trace.local = Some(Path {
                path: FILESYSTEM_DIR.into(),
            })
        }
    }
    Storage { trace }
}

/// The metrics-generator, and the overrides that give it work: it only has a job when
/// it can remote-write what it derives.
/// The metrics-generator's processors, turned on when span metrics have somewhere to go.
/// A tenant's runtime entry repeats them: Tempo's entries do not inherit the defaults.
pub const GENERATOR_PROCESSORS: [&str; 2] = ["service-graphs", "span-metrics"];

fn metrics_generator(inputs: &ConfigInputs) -> (MetricsGenerator, Overrides) {
    let remote_write: Vec<RemoteWrite> = inputs
        .remote_write_url
        .map(|url| RemoteWrite {
            url: url.to_string(),
            send_exemplars: true,
        })
        .into_iter()
        .collect();
    let overrides = Overrides {
        defaults: (!remote_write.is_empty()).then(|| OverrideDefaults {
            metrics_generator: GeneratorOverrides {
                processors: GENERATOR_PROCESSORS.to_vec(),
            },
        }),
        per_tenant_override_config: super::runtime_overrides_path(),
        per_tenant_override_period: RUNTIME_OVERRIDES_PERIOD,
    };
    let generator = MetricsGenerator {
        storage: GeneratorStorage {
            path: data("generator/wal"),
            remote_write,
        },
        traces_storage: Path {
            path: data("generator/traces"),
        },
        ring: inet6(inputs.ipv6),
    };
    (generator, overrides)
}
