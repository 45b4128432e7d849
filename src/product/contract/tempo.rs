//! Grafana Tempo 2.8.1, read at tag `v2.8.1`.

use super::*;

const fn fact(what: &'static str, reference: &'static str) -> Fact {
    Fact { what, reference }
}

/// The tempo-distributed chart as far as it was stored: revisions from the Tempo 2.4 era
/// (no revision for 2.8 was found), cited by value path.
const CHART: &str = "charts/tempo-distributed/values.yaml@d64e44be (grafana/helm-charts)";

pub(super) static CONTRACT: Contract = Contract {
    version: "2.8.1",
    source: "github.com/grafana/tempo tag v2.8.1",
    other_sources: &[
        "dskit@9cdd36a: github.com/grafana/dskit v0.0.0-20250317084829-9cdd36a91f10, as go.mod@v2.8.1:27 pins it",
        "charts/tempo-distributed in grafana/helm-charts, at the revisions the search index stores (Tempo 2.4 era)",
    ],
    image: Image {
        workdir: "/",
        user: fact(
            "runs as uid 10001; /var/tempo is 0700 and its own",
            "cmd/tempo/Dockerfile@v2.8.1:9-20",
        ),
        reference: "cmd/tempo/Dockerfile@v2.8.1:1-20",
    },
    combinations: Combinations::ExactlyOne(fact(
        "-target is one module name, not a list (`a,b` fails as unrecognised); the monolith is the composite target scalable-single-binary",
        "cmd/tempo/app/config.go@v2.8.1:76,79; cmd/tempo/app/app.go@v2.8.1:176; modules/modules.go@dskit@9cdd36a:116-118",
    )),
    writes: &[
        Write {
            key: "storage.trace.wal.path",
            default: "/var/tempo/wal",
            roles: &[
                "ingester",
                "querier",
                "query-frontend",
                "compactor",
                "metrics-generator",
            ],
            persistent: false,
            what: fact(
                "every role that opens the trace store creates the WAL directory at start; the ingester keeps its WAL and local blocks there (persistent for it, see below)",
                "modules/storage/config.go@v2.8.1:38; tempodb/tempodb.go@v2.8.1:220; tempodb/wal/wal.go@v2.8.1:49-64",
            ),
        },
        Write {
            key: "storage.trace.wal.path",
            default: "/var/tempo/wal",
            roles: &["ingester"],
            persistent: true,
            what: fact(
                "on SIGTERM the ingester only cuts live traces into this WAL (flush_all_on_shutdown false); it is replayed at the next start",
                "modules/ingester/ingester.go@v2.8.1:159-168,211-235; modules/ingester/config.go@v2.8.1:31,52",
            ),
        },
        Write {
            key: "metrics_generator.storage.path",
            default: "",
            roles: &["metrics-generator"],
            persistent: false,
            what: fact(
                "the generator's Prometheus WAL under <path>/<tenant>, wiped at start; without a path the metrics-generator target fails to start",
                "modules/generator/generator.go@v2.8.1:54,93-103; modules/generator/storage/instance.go@v2.8.1:68-86",
            ),
        },
        Write {
            key: "metrics_generator.traces_storage.path",
            default: "",
            roles: &["metrics-generator"],
            persistent: false,
            what: fact(
                "local blocks of the local-blocks processor, replayed at start",
                "modules/generator/generator.go@v2.8.1:347-356",
            ),
        },
    ],
    temp_dir: &[],
    ports: &[
        Port {
            name: "http",
            port: 3200,
            key: "server.http_listen_port",
            what: fact(
                "HTTP API, /ready and /metrics",
                "cmd/tempo/app/config.go@v2.8.1:107",
            ),
        },
        Port {
            name: "grpc",
            port: 9095,
            key: "server.grpc_listen_port",
            what: fact(
                "gRPC between components; 9095 is the default and the operator sets 9096, which the rings advertise",
                "cmd/tempo/app/config.go@v2.8.1:108; cmd/tempo/app/modules.go@v2.8.1:284,311",
            ),
        },
        Port {
            name: "memberlist",
            port: 7946,
            key: "memberlist.bind_port",
            what: fact("ring gossip", "cmd/tempo/app/config.go@v2.8.1:122"),
        },
        Port {
            name: "otlp-grpc",
            port: 4317,
            key: "distributor.receivers.otlp.protocols.grpc.endpoint",
            what: fact(
                "receivers listen on localhost unless an endpoint says 0.0.0.0 (since 2.7)",
                "vendor/go.opentelemetry.io/collector/receiver/otlpreceiver/factory.go@v2.8.1:44; CHANGELOG.md@v2.8.1:176",
            ),
        },
    ],
    readiness: fact(
        "GET /ready: 503 after SIGTERM or while a service is not running; an ingester waits for every ring member to be ACTIVE and 15s more; a query-frontend waits for a querier to connect",
        "cmd/tempo/app/app.go@v2.8.1:318-367; modules/frontend/v1/frontend.go@v2.8.1:381-391",
    ),
    env: &[
        EnvVar {
            name: "GOOGLE_APPLICATION_CREDENTIALS",
            what: fact(
                "a service-account key file for GCS: Tempo has no key setting and always takes Google's default credentials, which read this file first",
                "tempodb/backend/gcs/config.go@v2.8.1:10-21; tempodb/backend/gcs/gcs.go@v2.8.1:514-522; vendor/google.golang.org/api/internal/creds.go@v2.8.1:146-166",
            ),
        },
        EnvVar {
            name: "AZURE_STORAGE_KEY",
            what: fact(
                "the Azure storage account key, read when storage.trace.azure.storage_account_key is empty (shared-key authentication is the default)",
                "tempodb/backend/azure/azure_helpers.go@v2.8.1:117-127,151-167",
            ),
        },
        EnvVar {
            name: "OTEL_EXPORTER_OTLP_ENDPOINT",
            what: fact(
                "installs the OpenTelemetry tracer (as do OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); the service name is fixed to tempo-<target> and OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are not read",
                "cmd/tempo/main.go@v2.8.1:92-100,224-240",
            ),
        },
        EnvVar {
            name: "OTEL_EXPORTER_OTLP_PROTOCOL",
            what: fact(
                "autoexport's protocol (http/protobuf by default, or grpc)",
                "vendor/go.opentelemetry.io/contrib/exporters/autoexport/spans.go@v2.8.1:35-45,69-88",
            ),
        },
        EnvVar {
            name: "OTEL_TRACES_EXPORTER",
            what: fact("chooses the exporter (otlp)", "cmd/tempo/main.go@v2.8.1:93"),
        },
        EnvVar {
            name: "AWS_ACCESS_KEY_ID",
            what: fact(
                "S3 access key, read when storage.trace.s3.access_key is empty; Tempo fails to start when no credential is found",
                "tempodb/backend/s3/s3.go@v2.8.1:614-649; vendor/github.com/minio/minio-go/v7/pkg/credentials/env_aws.go@v2.8.1:43-62",
            ),
        },
        EnvVar {
            name: "AWS_SECRET_ACCESS_KEY",
            what: fact(
                "S3 secret key, likewise",
                "vendor/github.com/minio/minio-go/v7/pkg/credentials/env_aws.go@v2.8.1:43-62",
            ),
        },
        EnvVar {
            name: "SSL_CERT_DIR",
            what: fact(
                "directories of trusted CA certificates, read by Go's crypto/x509",
                "src/crypto/x509/root_unix.go@go1.24:19,25",
            ),
        },
    ],
    expand_env: fact(
        "-config.expand-env runs drone/envsubst over the file (and over the overrides file): only ${VAR} is expanded, $$ is a literal $, and a backslash before \\ or / is dropped",
        "cmd/tempo/main.go@v2.8.1:185-201; vendor/github.com/drone/envsubst/parse/scan.go@v2.8.1:156-198",
    ),
    timeouts: Timeouts {
        query: &[
            Timeout {
                key: "query_frontend.api_timeout",
                default: "0s",
                what: fact(
                    "bounds the query-frontend's HTTP API; 0 is no bound at all",
                    "modules/frontend/config.go@v2.8.1:26-30; cmd/tempo/app/modules.go@v2.8.1:120-125,509-513",
                ),
            },
            Timeout {
                key: "querier.search.query_timeout",
                default: "30s",
                what: fact(
                    "one search job on a querier",
                    "modules/querier/config.go@v2.8.1:29,54",
                ),
            },
            Timeout {
                key: "querier.trace_by_id.query_timeout",
                default: "10s",
                what: fact(
                    "one trace lookup on a querier",
                    "modules/querier/config.go@v2.8.1:33,50",
                ),
            },
        ],
        server_write: Timeout {
            key: "server.http_server_write_timeout",
            default: "30s",
            what: fact(
                "dskit's default, which Tempo keeps and which cuts long searches; its docs suggest more at scale",
                "server/server.go@dskit@9cdd36a:109,195; docs/sources/tempo/operations/backend_search.md@v2.8.1:124-129",
            ),
        },
        enforced: None,
    },
    shutdown: &[
        Shutdown {
            roles: &["ingester"],
            grace_seconds: 300,
            what: fact(
                "leaves the ring and cuts live traces into its WAL; the chart gives 300s",
                CHART,
            ),
        },
        Shutdown {
            roles: &["metrics-generator"],
            grace_seconds: 300,
            what: fact(
                "leaves the ring, sleeps 5s and flushes remote write for up to 1m; the chart gives 300s",
                "modules/generator/generator.go@v2.8.1:237-268; modules/generator/storage/config.go@v2.8.1:18-19",
            ),
        },
        Shutdown {
            roles: &[],
            grace_seconds: 30,
            what: fact(
                "SIGTERM makes /ready answer 503, waits shutdown_delay (0) and stops every module; receivers get up to 30s",
                "cmd/tempo/app/app.go@v2.8.1:236-249; modules/distributor/receiver/shim.go@v2.8.1:320-322",
            ),
        },
    ],
    lifecycle: &[
        Lifecycle {
            roles: &["ingester"],
            method: "GET",
            path: "/flush",
            what: fact(
                "cuts every trace and block and queues their upload; answers 204 at once, the upload goes on (watch tempo_ingester_flush_queue_length)",
                "modules/ingester/flush.go@v2.8.1:100-119,180-204",
            ),
        },
        Lifecycle {
            roles: &["ingester"],
            method: "GET",
            path: "/shutdown",
            what: fact(
                "answers 200 at once, then leaves the ring, flushes everything and stops the ingester (not the process); done when /ready answers 503",
                "modules/ingester/flush.go@v2.8.1:75-98; cmd/tempo/app/app.go@v2.8.1:326-337",
            ),
        },
    ],
    leave: &[Leave {
        roles: &["ingester"],
        calls: &[Call {
            method: "GET",
            path: "/shutdown",
        }],
        undo: &[],
        done: Done::Unready,
        stops: true,
        what: fact(
            "answers 200 at once (any method); in the background it leaves the ring, cuts and uploads every block, waits for the flush queue to empty and stops the ingester, after which /ready answers 503 (its ready check latches once passed, which a readiness probe has done)",
            "modules/ingester/flush.go@v2.8.1:75-98; modules/ingester/ingester.go@v2.8.1:243-248; cmd/tempo/app/modules.go@v2.8.1:301; cmd/tempo/app/app.go@v2.8.1:201,318-337",
        ),
    }],
    zones: &[ZoneRing {
        role: "ingester",
        awareness: "ingester.lifecycler.ring.zone_awareness_enabled",
        zone_flag: "ingester.availability-zone",
        replication_factor: "ingester.lifecycler.ring.replication_factor",
        readers: &["distributor", "querier", "ingester"],
        what: fact(
            "YAML only (Tempo registers no ring flags, so nothing overrides the file; its RF defaults to 1); the distributor and querier build the ingester ring from the same lifecycler config; each key then gets one replica per zone, RF counting zones; an instance with no zone escapes the per-zone cap. scalable-single-binary runs the ingester with these settings (the `all` target would force RF 1 in memory)",
            "modules/ingester/config.go@v2.8.1:42-45,59; cmd/tempo/main.go@v2.8.1:176-214; cmd/tempo/app/modules.go@v2.8.1:158-160,801,805,812-813; vendor/github.com/grafana/dskit/ring/ring.go@v2.8.1:189,526-581",
        ),
    }],
    single_tenant_id: "single-tenant",
    single_tenant: fact(
        "with multitenancy_enabled false (the default) every request belongs to tenant `single-tenant`, whatever X-Scope-OrgID says",
        "cmd/tempo/app/config.go@v2.8.1:81; pkg/util/auth.go@v2.8.1:5; cmd/tempo/app/fake_auth.go@v2.8.1:13-31",
    ),
    tenancy: Tenancy {
        switch: "multitenancy_enabled",
        switch_default: false,
        runtime_file: "overrides.per_tenant_override_config",
        runtime_period: "overrides.per_tenant_override_period",
        reload: fact(
            "dskit's runtime-config manager: a missing or bad file at start fails the process (the module is a dependency of every target); on each period (default 10s) a bad file is only logged and the last good one kept; the loader is strict, so an unknown key or one bad tenant rejects the whole file; an empty file is fine; the format (nested or legacy) is detected per file, and a mismatch with the main config's only logs a warning",
            "modules/overrides/config.go@v2.8.1:216-217,225-262,283-285; modules/overrides/runtime_config_overrides.go@v2.8.1:38-58,88-111,136-148,170-178; vendor/github.com/grafana/dskit/runtimeconfig/manager.go@v2.8.1 (identical to Loki's)",
        ),
        inheritance: fact(
            "a tenant's entry does NOT inherit the defaults: the whole entry replaces them, and a key it leaves out is zero (rate_limit_bytes and burst_size_bytes 0 reject every push), so the operator writes every limit it knows into each entry",
            "modules/overrides/runtime_config_overrides.go@v2.8.1:32-58,72,298-343,556-570; modules/distributor/distributor.go@v2.8.1:378",
        ),
        no_tenant: fact(
            "401 `no org id` on the HTTP APIs once multitenancy_enabled is true (default false); the receivers answer `no org id` as Unavailable (OTLP/HTTP 503), which clients retry",
            "cmd/tempo/app/app.go@v2.8.1:125-167; modules/distributor/receiver/middleware.go@v2.8.1:55-81; vendor/go.opentelemetry.io/collector/receiver/otlpreceiver/internal/errors/errors.go@v2.8.1:15-38",
        ),
        limits: &[
            LimitKey {
                field: "ingestionRate",
                key: "ingestion.rate_limit_bytes",
                what: fact(
                    "bytes per second; default 15e6",
                    "modules/overrides/config.go@v2.8.1:72,271",
                ),
            },
            LimitKey {
                field: "ingestionBurst",
                key: "ingestion.burst_size_bytes",
                what: fact(
                    "bytes; default 20e6",
                    "modules/overrides/config.go@v2.8.1:73,272",
                ),
            },
            LimitKey {
                field: "maxActive",
                key: "ingestion.max_traces_per_user",
                what: fact(
                    "live traces per ingester; default 10000",
                    "modules/overrides/config.go@v2.8.1:76,275",
                ),
            },
            LimitKey {
                field: "retention",
                key: "compaction.block_retention",
                what: fact(
                    "duration; 0 leaves the compactor's compaction.block_retention (default 336h)",
                    "modules/overrides/config.go@v2.8.1:173; tempodb/retention.go@v2.8.1:65-68; modules/compactor/config.go@v2.8.1:18",
                ),
            },
            LimitKey {
                field: "(default, written to every entry)",
                key: "global.max_bytes_per_trace",
                what: fact(
                    "bytes; default 5e6",
                    "modules/overrides/config.go@v2.8.1:181,277",
                ),
            },
            LimitKey {
                field: "(span metrics on, written to every entry)",
                key: "metrics_generator.processors",
                what: fact(
                    "the generator processors a tenant runs; an entry replaces the defaults whole, so one without it runs none",
                    "modules/overrides/config.go@v2.8.1:145,202",
                ),
            },
        ],
    },
    notes: &[
        fact(
            "the query-frontend's gRPC port serves clients' tempopb.StreamingQuerier and the queriers' frontend.Frontend/Process, whose one stream carries every tenant's queries (a multi-tenant gateway routes only the first); its HTTP port serves the API under /api/ and, beside it, status pages and (in scalable-single-binary) the ingester's /flush and /shutdown",
            "pkg/tempopb/tempo.proto@v2.8.1 (package tempopb, service StreamingQuerier); cmd/tempo/app/modules.go@v2.8.1:298-299,499,502",
        ),
        fact(
            "outside scalable-single-binary the compactor ring is unsharded (kvstore.store empty): with two compactors or more each compacts every block; scalable-single-binary sets memberlist itself",
            "modules/compactor/config.go@v2.8.1:27-28; modules/compactor/compactor.go@v2.8.1:189-193,270-272; cmd/tempo/app/modules.go@v2.8.1:553-555",
        ),
        fact(
            "a querier connects to every address querier.frontend_worker.frontend_address resolves to (re-resolved every 10s); scalable-single-binary fails to start without it",
            "modules/querier/worker/worker.go@v2.8.1:171-194,253-264; cmd/tempo/app/modules.go@v2.8.1:415-422",
        ),
        fact(
            "usage_report.reporting_enabled defaults to true and then makes every target, even the distributor, build a storage client at start",
            "pkg/usagestats/config.go@v2.8.1:11,18; cmd/tempo/app/modules.go@v2.8.1:632-669",
        ),
        fact(
            "IPv6 ring addresses need enable_inet6 on ingester.lifecycler, compactor.ring, metrics_generator.ring and distributor.ring; memberlist binds 0.0.0.0 unless memberlist.bind_addr is set",
            "modules/compactor/compactor_ring.go@v2.8.1:30-34,62; modules/generator/generator_ring.go@v2.8.1:23-27; modules/distributor/distributor_ring.go@v2.8.1:26-30",
        ),
    ],
};
