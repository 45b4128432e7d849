//! Grafana Mimir 2.17.0, read at tag `mimir-2.17.0` (commit e150acbc8f60).

use super::*;

const fn fact(what: &'static str, reference: &'static str) -> Fact {
    Fact { what, reference }
}

pub(super) static CONTRACT: Contract = Contract {
    version: "2.17.0",
    source: "github.com/grafana/mimir tag mimir-2.17.0 (commit e150acbc8f6061b1995bff5105f786843c6a5277)",
    other_sources: &[
        "dskit@d916df8a: github.com/grafana/dskit v0.0.0-20250805180558-d916df8a1fad, as go.mod@mimir-2.17.0 pins it",
        "mimir-distributed-5.8.0: the Helm chart for 2.17.0 (commit 195852d3c194), operations/helm/charts/mimir-distributed/ in the same repository",
        "refdoc: docs/sources/mimir/configure/configuration-parameters/index.md",
    ],
    image: Image {
        workdir: "/",
        user: fact(
            "no USER: the distroless static base runs as root from `/`; pods here run as uid 10001 with a read-only root filesystem",
            "cmd/mimir/Dockerfile@mimir-2.17.0:5-14",
        ),
        reference: "cmd/mimir/Dockerfile@mimir-2.17.0:5-14",
    },
    combinations: Combinations::AnyBut(&[Refused {
        toggle: "flusher",
        why: fact(
            "the flusher replays the WAL, flushes, and then stops the process (-flusher.exit-after-flush defaults to true), so in a StatefulSet it restarts for ever and takes every role of its pod down with it; run it as a one-off Job",
            "pkg/flusher/flusher.go@mimir-2.17.0:31,92-93; pkg/mimir/mimir.go@mimir-2.17.0:1011-1021",
        ),
    }]),
    writes: &[
        Write {
            key: "activity_tracker.filepath",
            default: "./metrics-activity.log",
            roles: &[],
            persistent: false,
            what: fact(
                "every target opens and mmaps the activity file at start, and exits with status 1 when it cannot (\"failed to create activity file\")",
                "pkg/util/activitytracker/activity_tracker.go@mimir-2.17.0:50,174-177; pkg/mimir/modules.go@mimir-2.17.0:179-182,1312",
            ),
        },
        Write {
            key: "blocks_storage.tsdb.dir",
            default: "./tsdb/",
            roles: &["ingester"],
            persistent: true,
            what: fact(
                "the ingester's TSDB: WAL, head and blocks not yet shipped, and the shutdown marker",
                "refdoc@mimir-2.17.0:4799; pkg/util/shutdownmarker/shutdown_marker.go@mimir-2.17.0:16,58",
            ),
        },
        Write {
            key: "blocks_storage.bucket_store.sync_dir",
            default: "./tsdb-sync/",
            roles: &["store-gateway"],
            persistent: false,
            what: fact(
                "the store-gateway's index headers (rebuilt from the bucket when lost)",
                "refdoc@mimir-2.17.0:4519; pkg/storegateway/bucket_stores.go@mimir-2.17.0:440",
            ),
        },
        Write {
            key: "compactor.data_dir",
            default: "./data-compactor/",
            roles: &["compactor"],
            persistent: false,
            what: fact(
                "the compactor's scratch space: blocks being compacted and block uploads",
                "refdoc@mimir-2.17.0:5003; pkg/compactor/compactor.go@mimir-2.17.0:841; pkg/compactor/block_upload.go@mimir-2.17.0:532",
            ),
        },
        Write {
            key: "ruler.rule_path",
            default: "./data-ruler/",
            roles: &["ruler"],
            persistent: false,
            what: fact(
                "the ruler's per-tenant rule files",
                "refdoc@mimir-2.17.0:1992; pkg/ruler/mapper.go@mimir-2.17.0:89,167",
            ),
        },
        Write {
            key: "alertmanager.data_dir",
            default: "./data-alertmanager/",
            roles: &["alertmanager"],
            persistent: true,
            what: fact(
                "the alertmanager's per-tenant state (silences, notification log); start fails when it cannot be created",
                "refdoc@mimir-2.17.0:2333; pkg/alertmanager/multitenant.go@mimir-2.17.0:363-366",
            ),
        },
    ],
    temp_dir: &[
        TempDirUse {
            roles: &["alertmanager"],
            what: fact(
                "configuration uploads are validated with their templates in os.MkdirTemp(\"\")",
                "pkg/alertmanager/api.go@mimir-2.17.0:242",
            ),
        },
        TempDirUse {
            roles: &["compactor"],
            what: fact(
                "block repair (Prometheus issue 347) works in os.MkdirTemp(\"\")",
                "pkg/compactor/bucket_compactor.go@mimir-2.17.0:657",
            ),
        },
    ],
    ports: &[
        Port {
            name: "http",
            port: 8080,
            key: "server.http_listen_port",
            what: fact(
                "HTTP API, /ready and /metrics (Mimir's default)",
                "pkg/mimir/mimir.go@mimir-2.17.0:597",
            ),
        },
        Port {
            name: "grpc",
            port: 9095,
            key: "server.grpc_listen_port",
            what: fact(
                "gRPC between components",
                "server/server.go@dskit@d916df8a:196",
            ),
        },
        Port {
            name: "memberlist",
            port: 7946,
            key: "memberlist.bind_port",
            what: fact(
                "ring gossip; there is no alertmanager cluster port since 2.0",
                "kv/memberlist/tcp_transport.go@dskit@d916df8a:77; CHANGELOG.md@mimir-2.17.0:3413-3422",
            ),
        },
    ],
    readiness: fact(
        "GET /ready: 503 after SIGTERM or while a module is not running; an ingester also waits for its ring (every member ACTIVE, then min_ready_duration 15s); a query-frontend without a scheduler waits for a querier to connect",
        "pkg/mimir/mimir.go@mimir-2.17.0:1027-1069; pkg/frontend/v1/frontend.go@mimir-2.17.0:372-382",
    ),
    env: &[
        EnvVar {
            name: "GOOGLE_APPLICATION_CREDENTIALS",
            what: fact(
                "a service-account key file for GCS, read through Google's default credentials when gcs.service_account is empty (read at a later commit than the tag: the tag's tree is not stored)",
                "pkg/storage/bucket/gcs/config.go@054ea7a:107-110; vendor/github.com/thanos-io/objstore/providers/gcs/gcs.go@40fdf04:90-97",
            ),
        },
        EnvVar {
            name: "AZURE_STORAGE_KEY",
            what: fact(
                "not read by Mimir, which takes an Azure account key only from its configuration or flags: Kubernetes expands $(AZURE_STORAGE_KEY) in the container's arguments into -common.storage.azure.account-key, and command-line common flags apply to the blocks, ruler and alertmanager stores (read at a later commit than the tag)",
                "pkg/storage/bucket/azure/config.go@096dc67:37-43; docs/sources/mimir/configure/about-configurations.md@0d4371c:43-48",
            ),
        },
        EnvVar {
            name: "OTEL_EXPORTER_OTLP_ENDPOINT",
            what: fact(
                "turns OTLP trace export on (as do OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), unless a JAEGER_AGENT_HOST, JAEGER_ENDPOINT or JAEGER_SAMPLER_MANAGER_HOST_PORT is set",
                "cmd/mimir/main.go@mimir-2.17.0:199; tracing/otel_jaeger.go@dskit@d916df8a:53-66; tracing/otel.go@dskit@d916df8a:37-47",
            ),
        },
        EnvVar {
            name: "OTEL_EXPORTER_OTLP_PROTOCOL",
            what: fact(
                "read by the OpenTelemetry autoexport exporter Mimir uses",
                "tracing/otel.go@dskit@d916df8a:37-47",
            ),
        },
        EnvVar {
            name: "OTEL_TRACES_EXPORTER",
            what: fact(
                "chooses the exporter (otlp)",
                "tracing/otel.go@dskit@d916df8a:38",
            ),
        },
        EnvVar {
            name: "OTEL_SERVICE_NAME",
            what: fact(
                "the traces' service name (else mimir-<target>)",
                "cmd/mimir/main.go@mimir-2.17.0:186-197",
            ),
        },
        EnvVar {
            name: "OTEL_RESOURCE_ATTRIBUTES",
            what: fact(
                "resource attributes, through the SDK's default resource (its fromEnv detector)",
                "tracing/otel.go@dskit@d916df8a:153-161; vendor/go.opentelemetry.io/otel/sdk/resource/resource.go@mimir-2.17.0:234-241",
            ),
        },
        EnvVar {
            name: "AWS_ACCESS_KEY_ID",
            what: fact(
                "S3 access key, read when common.storage.s3.access_key_id is empty",
                "vendor/github.com/thanos-io/objstore/providers/s3/s3.go@mimir-2.17.0:234-244; vendor/github.com/minio/minio-go/v7/pkg/credentials/env_aws.go@mimir-2.17.0:43",
            ),
        },
        EnvVar {
            name: "AWS_SECRET_ACCESS_KEY",
            what: fact(
                "S3 secret key, likewise",
                "vendor/github.com/minio/minio-go/v7/pkg/credentials/env_aws.go@mimir-2.17.0:48",
            ),
        },
        EnvVar {
            name: "SSL_CERT_DIR",
            what: fact(
                "directories of trusted CA certificates, read by Go's crypto/x509 (the image is a static Go binary)",
                "src/crypto/x509/root_unix.go@go1.24:19,25",
            ),
        },
    ],
    expand_env: fact(
        "-config.expand-env (default false) runs os.Expand over the raw file: $VAR and ${VAR} (and ${VAR:default}) are replaced, unset ones by nothing; there is no escape: $$ and $1 become empty",
        "cmd/mimir/main.go@mimir-2.17.0:110,282-296,318-337",
    ),
    timeouts: Timeouts {
        query: &[Timeout {
            key: "querier.timeout",
            default: "2m",
            what: fact(
                "how long a query may run; the query-frontend's engine uses the same setting",
                "refdoc@mimir-2.17.0:1627; pkg/querier/engine/config.go@mimir-2.17.0:47",
            ),
        }],
        server_write: Timeout {
            key: "server.http_server_write_timeout",
            default: "2m",
            what: fact(
                "Mimir raises dskit's 30s default to 2m",
                "pkg/mimir/mimir.go@mimir-2.17.0:598",
            ),
        },
        enforced: Some(fact(
            "start fails when querier.timeout exceeds server.http_server_write_timeout",
            "pkg/mimir/mimir.go@mimir-2.17.0:287-290",
        )),
    },
    shutdown: &[
        Shutdown {
            roles: &["ingester"],
            grace_seconds: 1200,
            what: fact(
                "leaves the ring (unregister_on_shutdown true) and closes its TSDB; it flushes blocks only after /ingester/prepare-shutdown, which can take long: the chart gives 1200s",
                "refdoc@mimir-2.17.0:1153,4876; pkg/ingester/ingester.go@mimir-2.17.0:692-717; values.yaml@mimir-distributed-5.8.0:1123",
            ),
        },
        Shutdown {
            roles: &["compactor"],
            grace_seconds: 900,
            what: fact(
                "finishes or abandons a compaction; the chart gives 900s",
                "values.yaml@mimir-distributed-5.8.0:2521",
            ),
        },
        Shutdown {
            roles: &["alertmanager"],
            grace_seconds: 900,
            what: fact(
                "the chart gives the alertmanager 900s",
                "values.yaml@mimir-distributed-5.8.0:732",
            ),
        },
        Shutdown {
            roles: &["ruler"],
            grace_seconds: 600,
            what: fact(
                "the chart gives the ruler 600s",
                "values.yaml@mimir-distributed-5.8.0:1455",
            ),
        },
        Shutdown {
            roles: &["query-frontend"],
            grace_seconds: 390,
            what: fact(
                "lets running queries finish; the chart gives 390s",
                "values.yaml@mimir-distributed-5.8.0:2040",
            ),
        },
        Shutdown {
            roles: &["querier", "query-scheduler"],
            grace_seconds: 180,
            what: fact(
                "the chart gives 180s",
                "values.yaml@mimir-distributed-5.8.0:1921,2131",
            ),
        },
        Shutdown {
            roles: &["store-gateway"],
            grace_seconds: 120,
            what: fact(
                "leaves the ring; the chart gives 120s",
                "values.yaml@mimir-distributed-5.8.0:2280",
            ),
        },
        Shutdown {
            roles: &["distributor"],
            grace_seconds: 100,
            what: fact(
                "the chart gives 100s",
                "values.yaml@mimir-distributed-5.8.0:975",
            ),
        },
        Shutdown {
            roles: &[],
            grace_seconds: 30,
            what: fact(
                "SIGTERM makes /ready answer 503, waits shutdown_delay (0) and stops every module",
                "pkg/mimir/mimir.go@mimir-2.17.0:986-997",
            ),
        },
    ],
    lifecycle: &[
        Lifecycle {
            roles: &["ingester"],
            method: "POST",
            path: "/ingester/prepare-shutdown",
            what: fact(
                "writes a marker so that the next shutdown leaves the ring and flushes its blocks; 204; GET answers set/unset, DELETE undoes it",
                "pkg/ingester/ingester.go@mimir-2.17.0:3816-3884",
            ),
        },
        Lifecycle {
            roles: &["ingester"],
            method: "POST",
            path: "/ingester/shutdown",
            what: fact(
                "flushes, leaves the ring and stops the ingester; answers 204 once done (the process keeps running)",
                "pkg/ingester/ingester.go@mimir-2.17.0:4035-4050",
            ),
        },
        Lifecycle {
            roles: &["store-gateway"],
            method: "POST",
            path: "/store-gateway/prepare-shutdown",
            what: fact(
                "makes the next shutdown leave the ring; 204",
                "pkg/storegateway/gateway_prepare_shutdown_http.go@mimir-2.17.0:26-87",
            ),
        },
    ],
    leave: &[
        // The store-gateway's marker first: the ingester's shutdown call is the long one.
        Leave {
            roles: &["store-gateway"],
            calls: &[Call {
                method: "POST",
                path: "/store-gateway/prepare-shutdown",
            }],
            undo: &[Call {
                method: "DELETE",
                path: "/store-gateway/prepare-shutdown",
            }],
            done: Done::Answered,
            stops: false,
            what: fact(
                "POST writes a marker so that the SIGTERM of the pod's removal also leaves the ring, and the blocks it served are resharded at once; DELETE undoes it; 503 unless Running",
                "pkg/storegateway/gateway_prepare_shutdown_http.go@mimir-2.17.0:26-86; pkg/api/api.go@mimir-2.17.0 (RegisterStoreGateway)",
            ),
        },
        Leave {
            roles: &["ingester"],
            calls: &[
                Call {
                    method: "POST",
                    path: "/ingester/prepare-shutdown",
                },
                Call {
                    method: "POST",
                    path: "/ingester/shutdown",
                },
            ],
            undo: &[Call {
                method: "DELETE",
                path: "/ingester/prepare-shutdown",
            }],
            done: Done::Answered,
            stops: true,
            what: fact(
                "prepare-shutdown makes any later stop flush and leave the ring (kept as a marker on the volume); shutdown then stops the ingester service with StopAndAwaitTerminated, shipping its TSDB blocks, and answers 204 once terminated (its error ignored: a 204 does not prove the shipping worked), again at once when repeated; the process keeps running (only a failed service stops it)",
                "pkg/ingester/ingester.go@mimir-2.17.0:3816-3896,4035-4051; pkg/mimir/mimir.go@mimir-2.17.0 (serviceFailed)",
            ),
        },
    ],
    zones: &[
        ZoneRing {
            role: "ingester",
            awareness: "ingester.ring.zone_awareness_enabled",
            zone_flag: "ingester.ring.instance-availability-zone",
            replication_factor: "ingester.ring.replication_factor",
            readers: &["distributor", "querier", "ruler", "ingester"],
            what: fact(
                "needs setting on ingesters, distributors, queriers and rulers (the shared file reaches them all); RF defaults to 3 and counts zones; no check fails on an ingester without a zone (it escapes the per-zone cap)",
                "pkg/ingester/ingester_ring.go (zone-awareness-enabled, instance-availability-zone, replication-factor flags): UNVERIFIED at mimir-2.17.0, read at commit 015cdb17; docs/sources/mimir/configure/configure-zone-aware-replication.md",
            ),
        },
        ZoneRing {
            role: "store-gateway",
            awareness: "store_gateway.sharding_ring.zone_awareness_enabled",
            zone_flag: "store-gateway.sharding-ring.instance-availability-zone",
            replication_factor: "store_gateway.sharding_ring.replication_factor",
            readers: &["querier", "ruler", "store-gateway"],
            what: fact(
                "the querier and ruler build their store-gateway ring client from this ring's config; RF defaults to 3",
                "pkg/storegateway/gateway_ring.go (needs setting on store-gateways, queriers and rulers); pkg/querier/blocks_store_queryable.go: UNVERIFIED at mimir-2.17.0, read at commit 90aa4cfb",
            ),
        },
        ZoneRing {
            role: "alertmanager",
            awareness: "alertmanager.sharding_ring.zone_awareness_enabled",
            zone_flag: "alertmanager.sharding-ring.instance-availability-zone",
            replication_factor: "alertmanager.sharding_ring.replication_factor",
            readers: &["alertmanager"],
            what: fact(
                "an alertmanager with zone awareness on and no zone fails validation (errZoneAwarenessEnabledWithoutZoneInfo); the check runs only in processes whose target is alertmanager, so other targets may read the same file",
                "pkg/alertmanager/multitenant.go; pkg/alertmanager/alertmanager_ring.go; pkg/mimir/mimir.go Config.Validate: UNVERIFIED at mimir-2.17.0, read at commit 0010b536",
            ),
        },
    ],
    single_tenant_id: "anonymous",
    single_tenant: fact(
        "with multitenancy_enabled false every request belongs to no_auth_tenant, `anonymous` by default, whatever X-Scope-OrgID says",
        "refdoc@mimir-2.17.0:114-118; pkg/mimir/mimir.go@mimir-2.17.0:173-174",
    ),
    tenancy: Tenancy {
        switch: "multitenancy_enabled",
        switch_default: true,
        runtime_file: "runtime_config.file",
        runtime_period: "runtime_config.period",
        reload: fact(
            "dskit's runtime-config manager: a missing or bad file at start fails the process; on each period (default 10s) a bad file is logged and the last good one kept; the loader is strict (unknown keys reject the whole file)",
            "pkg/mimir/runtime_config.go load (KnownFields); dskit runtimeconfig/manager.go@f8bdf464:47: UNVERIFIED at mimir-2.17.0",
        ),
        inheritance: fact(
            "a tenant's entry starts from the `limits` block (SetDefaultLimitsForYAMLUnmarshalling), so keys it leaves out keep their defaults",
            "pkg/util/validation/limits.go UnmarshalYAML; pkg/mimir/runtime_config.go NewRuntimeManager: UNVERIFIED at mimir-2.17.0",
        ),
        no_tenant: fact(
            "401 `no org id` (dskit middleware.AuthenticateUser) once multitenancy_enabled is true, its default",
            "pkg/util/noauth/no_auth.go:21-44 at commit 11a795ba: UNVERIFIED at mimir-2.17.0",
        ),
        limits: &[
            LimitKey {
                field: "ingestionRate",
                key: "ingestion_rate",
                what: fact(
                    "samples per second, float, default 10000",
                    "pkg/util/validation/limits.go RegisterFlags: UNVERIFIED at mimir-2.17.0",
                ),
            },
            LimitKey {
                field: "ingestionBurst",
                key: "ingestion_burst_size",
                what: fact(
                    "samples, default 200000",
                    "pkg/util/validation/limits.go RegisterFlags: UNVERIFIED at mimir-2.17.0",
                ),
            },
            LimitKey {
                field: "maxActive",
                key: "max_global_series_per_user",
                what: fact(
                    "in-memory series across the cluster before replication, default 150000",
                    "pkg/util/validation/limits.go RegisterFlags: UNVERIFIED at mimir-2.17.0",
                ),
            },
            LimitKey {
                field: "retention",
                key: "compactor_blocks_retention_period",
                what: fact(
                    "duration, default 0 (keep forever)",
                    "pkg/util/validation/limits.go RegisterFlags: UNVERIFIED at mimir-2.17.0",
                ),
            },
        ],
    },
    notes: &[
        fact(
            "limits.alertmanager_receivers_firewall_block_private_addresses (default false) makes receivers refuse private (RFC 1918, fc00::/7), loopback and link-local addresses; a multi-tenant cluster turns it on so that a tenant's webhook reaches neither the cluster's own endpoints nor a metadata service",
            "pkg/util/validation/limits.go Limits.AlertmanagerReceiversBlockPrivateAddresses; the firewall dialer's isPrivate || isLocal as in Cortex pkg/util/net/firewall_dialer.go: UNVERIFIED at mimir-2.17.0",
        ),
        fact(
            "the HTTP router matches the still-encoded path (UseEncodedPath) and the ruler unescapes the namespace, so a percent-encoded dot segment routes differently from nginx's normalised path (a multi-tenant gateway refuses dot segments); GET /api/v1/alerts returns the tenant's Alertmanager configuration with its receivers' secrets (the gateway asks for write)",
            "pkg/api/api.go New; pkg/ruler/api.go parseNamespace; pkg/alertmanager/api.go GetUserConfig: UNVERIFIED at mimir-2.17.0, read by a review helper",
        ),
        fact(
            "usage_stats.enabled defaults to true: a seed object in the bucket and a report to stats.grafana.org every 4h, retried each minute without internet",
            "pkg/usagestats/reporter.go@mimir-2.17.0:58,174-197",
        ),
        fact(
            "ruler and alertmanager storage in the blocks bucket need a storage_prefix of their own, else start fails",
            "pkg/mimir/mimir.go@mimir-2.17.0:379-431",
        ),
        fact(
            "the data directories (tsdb, sync, compactor, ruler, alertmanager) must not overlap, else start fails",
            "pkg/mimir/mimir.go@mimir-2.17.0:434-566,570-581",
        ),
        fact(
            "ring addresses skip IPv6 unless <ring>.instance_enable_ipv6 is true (ingester, distributor, store_gateway.sharding_ring, compactor.sharding_ring, ruler, alertmanager.sharding_ring, query_scheduler, overrides_exporter, and frontend.instance_enable_ipv6); memberlist binds 0.0.0.0 unless memberlist.bind_addr is set",
            "netutil/netutil.go@dskit@d916df8a:62-124; kv/memberlist/tcp_transport.go@dskit@d916df8a:36,133",
        ),
        fact(
            "with no scheduler address, a querier running in a query-frontend's process connects to 127.0.0.1 only: a read pool's queriers serve their own frontend",
            "pkg/mimir/modules.go@mimir-2.17.0:649-657",
        ),
    ],
};
