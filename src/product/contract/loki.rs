//! Grafana Loki 3.5.0, read at tag `v3.5.0` (commit 4b16bc4fa823).

use super::*;

const fn fact(what: &'static str, reference: &'static str) -> Fact {
    Fact { what, reference }
}

pub(super) static CONTRACT: Contract = Contract {
    version: "3.5.0",
    source: "github.com/grafana/loki tag v3.5.0 (commit 4b16bc4fa823)",
    other_sources: &[
        "dskit@9cdd36a91f10: github.com/grafana/dskit v0.0.0-20250317084829-9cdd36a91f10, as go.mod@v3.5.0:55 pins it",
        "the Helm chart at production/helm/loki in the same tag",
    ],
    image: Image {
        workdir: "/",
        user: fact(
            "runs as uid 10001 from `/`, which it cannot write; /loki belongs to it",
            "cmd/loki/Dockerfile@v3.5.0:19-35",
        ),
        reference: "cmd/loki/Dockerfile@v3.5.0:19-35",
    },
    combinations: Combinations::ExactlyOne(fact(
        "a process whose targets include write runs its index shipper write-only, so a querier, ruler or index gateway beside it never sees the index other ingesters shipped; Loki supports all, or read, write and backend as processes of their own",
        "pkg/loki/modules.go@v3.5.0:1013-1074; pkg/storage/stores/shipper/indexshipper/shipper.go@v3.5.0:187-224; docs/sources/get-started/deployment-modes.md@v3.5.0:19,47-53",
    )),
    writes: &[
        Write {
            key: "ingester.wal.dir",
            default: "{common.path_prefix}/wal",
            roles: &["write"],
            persistent: true,
            what: fact(
                "the ingester's WAL, replayed at start (relative `wal` without a path prefix)",
                "pkg/loki/config_wrapper.go@v3.5.0:435-437; pkg/ingester/wal.go@v3.5.0:44-45",
            ),
        },
        Write {
            key: "storage_config.tsdb_shipper.active_index_directory",
            default: "{common.path_prefix}/tsdb-shipper-active",
            roles: &["write"],
            persistent: true,
            what: fact(
                "TSDB heads and indexes not yet shipped; every target fails validation without it",
                "pkg/loki/config_wrapper.go@v3.5.0:658-670; pkg/loki/validation.go@v3.5.0:56-89",
            ),
        },
        Write {
            key: "storage_config.tsdb_shipper.cache_location",
            default: "{common.path_prefix}/tsdb-shipper-cache",
            roles: &["read", "backend"],
            persistent: false,
            what: fact(
                "downloaded index files (read pools skip it when they use the index gateway)",
                "pkg/loki/config_wrapper.go@v3.5.0:658-670; pkg/storage/store.go@v3.5.0:255-286",
            ),
        },
        Write {
            key: "compactor.working_directory",
            default: "{common.path_prefix}/compactor",
            roles: &["backend"],
            persistent: true,
            what: fact(
                "compacted tables, the delete-request database and retention markers",
                "pkg/loki/config_wrapper.go@v3.5.0:439-441; pkg/compactor/compactor.go@v3.5.0:295,326,385",
            ),
        },
        Write {
            key: "ruler.rule_path",
            default: "{common.path_prefix}/rules-temp",
            roles: &["backend"],
            persistent: false,
            what: fact(
                "rule files the ruler evaluates",
                "pkg/loki/config_wrapper.go@v3.5.0:431-433",
            ),
        },
    ],
    temp_dir: &[TempDirUse {
        roles: &["backend"],
        what: fact(
            "the retention and deletion sweeper copies each marker file with os.CreateTemp(\"\") on every pass; when it cannot, it logs a warning and retries every minute for ever, and nothing is ever deleted",
            "pkg/compactor/retention/marker.go@v3.5.0:182-191,212-215,255-258",
        ),
    }],
    ports: &[
        Port {
            name: "http",
            port: 3100,
            key: "server.http_listen_port",
            what: fact(
                "HTTP API, /ready and /metrics",
                "pkg/loki/loki.go@v3.5.0:229-230",
            ),
        },
        Port {
            name: "grpc",
            port: 9095,
            key: "server.grpc_listen_port",
            what: fact(
                "gRPC between components",
                "server/server.go@dskit@9cdd36a91f10:188",
            ),
        },
        Port {
            name: "memberlist",
            port: 7946,
            key: "memberlist.bind_port",
            what: fact(
                "ring gossip",
                "kv/memberlist/tcp_transport.go@dskit@9cdd36a91f10:78",
            ),
        },
    ],
    readiness: fact(
        "GET /ready: 503 after SIGTERM or while a service is not running; an ingester also waits for every ring member to be ACTIVE and 15s more; a query-frontend waits for a scheduler or querier",
        "pkg/loki/loki.go@v3.5.0:648-714",
    ),
    env: &[
        EnvVar {
            name: "GOOGLE_APPLICATION_CREDENTIALS",
            what: fact(
                "a service-account key file for GCS, read through Google's default credentials when gcs.service_account is empty",
                "pkg/storage/chunk/client/gcp/gcs_object_client.go@v3.5.0:364-372; vendor/google.golang.org/api/internal/creds.go@v3.5.0:146-166",
            ),
        },
        EnvVar {
            name: "AZURE_STORAGE_KEY",
            what: fact(
                "not read by Loki, which takes an Azure account key only from its configuration or flags: Kubernetes expands $(AZURE_STORAGE_KEY) in the container's arguments into -common.storage.azure.account-key, applied before common.storage is copied to the stores",
                "pkg/storage/chunk/client/azure/blob_storage_client.go@v3.5.0:123-127,420-427; pkg/util/cfg/dynamic.go@v3.5.0:18-41",
            ),
        },
        EnvVar {
            name: "AWS_ACCESS_KEY_ID",
            what: fact(
                "S3 access key through the AWS SDK's default chain, used when the config sets no keys",
                "pkg/storage/chunk/client/aws/s3_storage_client.go@v3.5.0:221-229; vendor/github.com/aws/aws-sdk-go/aws/session/env_config.go@v3.5.0:195-287",
            ),
        },
        EnvVar {
            name: "AWS_SECRET_ACCESS_KEY",
            what: fact(
                "S3 secret key, likewise",
                "vendor/github.com/aws/aws-sdk-go/aws/session/env_config.go@v3.5.0:195-287",
            ),
        },
        EnvVar {
            name: "SSL_CERT_DIR",
            what: fact(
                "directories of trusted CA certificates, read by Go's crypto/x509 (Loki's S3 transport uses the system roots when no CA file is set)",
                "src/crypto/x509/root_unix.go@go1.24:19,25; pkg/storage/chunk/client/aws/s3_storage_client.go@v3.5.0:231-242",
            ),
        },
    ],
    expand_env: fact(
        "-config.expand-env runs drone/envsubst over the file: only ${VAR} is expanded (unset ones become empty), $$ is a literal $, and a backslash before \\ or / is dropped",
        "pkg/util/cfg/files.go@v3.5.0:43-55; vendor/github.com/drone/envsubst/parse/scan.go@v3.5.0:156-197",
    ),
    timeouts: Timeouts {
        query: &[Timeout {
            key: "limits_config.query_timeout",
            default: "1m",
            what: fact(
                "how long a query may run (querier.query_timeout is gone since 3.0)",
                "pkg/validation/limits.go@v3.5.0:58,336-337; docs/sources/setup/upgrade/_index.md@v3.5.0:290-294",
            ),
        }],
        server_write: Timeout {
            key: "server.http_server_write_timeout",
            default: "30s",
            what: fact(
                "dskit's default, which Loki keeps: a query running past it ends in a dropped connection (a 502 at the gateway)",
                "server/server.go@dskit@9cdd36a91f10:109,195; docs/sources/operations/troubleshooting.md@v3.5.0:49-62",
            ),
        },
        enforced: None,
    },
    shutdown: &[
        Shutdown {
            roles: &["write"],
            grace_seconds: 300,
            what: fact(
                "the ingester leaves the ring; with the WAL on (the default) it does not flush unless ingester.wal.flush_on_shutdown, the WAL is replayed at the next start; the chart gives write 300s",
                "pkg/ingester/ingester.go@v3.5.0:358,693-731; pkg/ingester/wal.go@v3.5.0:31,47; production/helm/loki/values.yaml@v3.5.0:1524-1527",
            ),
        },
        Shutdown {
            roles: &["backend"],
            grace_seconds: 300,
            what: fact(
                "the chart gives backend 300s",
                "production/helm/loki/values.yaml@v3.5.0:1749",
            ),
        },
        Shutdown {
            roles: &[],
            grace_seconds: 30,
            what: fact(
                "SIGTERM makes /ready answer 503, waits shutdown_delay (0) and stops every service; the chart gives read 30s",
                "pkg/loki/loki.go@v3.5.0:168,609-620; production/helm/loki/values.yaml@v3.5.0:1641",
            ),
        },
    ],
    lifecycle: &[
        Lifecycle {
            roles: &["write"],
            method: "POST",
            path: "/ingester/shutdown?flush=true&terminate=true",
            what: fact(
                "flushes every chunk, leaves the ring and stops the process; answers 204 once the flush is done",
                "pkg/ingester/ingester.go@v3.5.0:954-991,726-729",
            ),
        },
        Lifecycle {
            roles: &["write"],
            method: "POST",
            path: "/ingester/prepare_shutdown",
            what: fact(
                "makes the next SIGTERM flush, leave the ring and terminate; 204; GET answers set/unset",
                "pkg/ingester/ingester.go@v3.5.0:798-884",
            ),
        },
        Lifecycle {
            roles: &["write"],
            method: "POST",
            path: "/flush",
            what: fact(
                "queues a flush of every chunk and answers 204 at once, before it is done",
                "pkg/ingester/flush.go@v3.5.0:139-144",
            ),
        },
    ],
    leave: &[Leave {
        roles: &["write"],
        // terminate=false: the process keeps running, so the StatefulSet does not
        // restart it before the operator removes the pod.
        calls: &[Call {
            method: "POST",
            path: "/ingester/shutdown?flush=true&delete_ring_tokens=true&terminate=false",
        }],
        undo: &[],
        done: Done::Listed {
            path: "/services",
            line: "ingester => Terminated",
        },
        stops: true,
        what: fact(
            "flushes every chunk, deletes the ring tokens file, leaves the ring and stops the ingester service, answering 204 once done (500 if the stop failed); refused with 503 when the ingester is not Running (a second call); with terminate=false the process keeps running; GET /services lists each module as `name => state`, `ingester => Terminated` shortly after the 204 (`Failed` after a failed stop)",
            "pkg/ingester/ingester.go@v3.5.0:956-991,693-731; pkg/loki/modules.go@v3.5.0:798-800; pkg/loki/status.go@v3.5.0:8-18; pkg/loki/loki.go@v3.5.0:537,587-606",
        ),
    }],
    zones: &[ZoneRing {
        role: "write",
        awareness: "ingester.lifecycler.ring.zone_awareness_enabled",
        zone_flag: "ingester.availability-zone",
        replication_factor: "common.replication_factor",
        readers: &["write", "read", "backend"],
        what: fact(
            "the distributor, querier and ruler read the ingester ring from the ingester's lifecycler config; merging common.ring copies its zone fields over the ingester's, but the file and the flags are applied again after that merge, so both survive (common.ring.zone_awareness_enabled would also turn it on for the scheduler, compactor and index-gateway rings, whose members have no zone); common.replication_factor is copied into the ingester ring; write and all run the ingester",
            "pkg/util/cfg/dynamic.go@v3.5.0:18-41; pkg/loki/config_wrapper.go@v3.5.0:203-208,234-248,728-730; pkg/loki/modules.go@v3.5.0:270-271; pkg/loki/loki.go@v3.5.0:783-820; vendor/github.com/grafana/dskit/ring/lifecycler.go@v3.5.0:47,102; vendor/github.com/grafana/dskit/ring/ring.go@v3.5.0:189,211,526-581",
        ),
    }],
    single_tenant_id: "fake",
    single_tenant: fact(
        "with auth_enabled false every request belongs to tenant `fake`, whatever X-Scope-OrgID says",
        "pkg/loki/loki.go@v3.5.0:85,154-157; pkg/util/fakeauth/fake_auth.go@v3.5.0:53-64",
    ),
    tenancy: Tenancy {
        switch: "auth_enabled",
        switch_default: true,
        runtime_file: "runtime_config.file",
        runtime_period: "runtime_config.period",
        reload: fact(
            "dskit's runtime-config manager: a missing or bad file at start fails the process (the module is a dependency of every target); on each period (default 10s) a bad file is only logged and the last good one kept; the loader is strict, so an unknown key or one bad tenant rejects the whole file; an empty file is fine",
            "vendor/github.com/grafana/dskit/runtimeconfig/manager.go@v3.5.0:32-43,92-98,140-147,160-165,186-219; pkg/loki/runtime_config.go@v3.5.0:20-51; pkg/loki/loki.go@v3.5.0:124,777-781",
        ),
        inheritance: fact(
            "a tenant's entry starts from limits_config (SetDefaultLimitsForYAMLUnmarshalling), so keys it leaves out keep their defaults",
            "pkg/loki/modules.go@v3.5.0:298-299; pkg/validation/limits.go@v3.5.0:489-514,579-586,1236-1244",
        ),
        no_tenant: fact(
            "401 `no org id` on every HTTP API, push included, once auth_enabled is true (its default)",
            "pkg/util/fakeauth/fake_auth.go@v3.5.0:16-40; vendor/github.com/grafana/dskit/middleware/http_auth.go@v3.5.0:14-23; vendor/github.com/grafana/dskit/user/id.go@v3.5.0:22",
        ),
        limits: &[
            LimitKey {
                field: "ingestionRate",
                key: "ingestion_rate_mb",
                what: fact(
                    "MB per second, float, MB = 1<<20 bytes; default 4",
                    "pkg/validation/limits.go@v3.5.0:52,76,279,626-634",
                ),
            },
            LimitKey {
                field: "ingestionBurst",
                key: "ingestion_burst_size_mb",
                what: fact(
                    "MB, float; default 6",
                    "pkg/validation/limits.go@v3.5.0:52,77,280,626-634",
                ),
            },
            LimitKey {
                field: "maxActive",
                key: "max_global_streams_per_user",
                what: fact(
                    "active streams across the cluster; default 5000",
                    "pkg/validation/limits.go@v3.5.0:102,319",
                ),
            },
            LimitKey {
                field: "retention",
                key: "retention_period",
                what: fact(
                    "duration, applied only with compactor.retention_enabled (which needs compactor.delete_request_store); default 0 (keep forever)",
                    "pkg/validation/limits.go@v3.5.0:194,386-387; pkg/compactor/compactor.go@v3.5.0:79,105,146-149",
                ),
            },
        ],
    },
    notes: &[
        fact(
            "tracing.enabled defaults to true and installs a Jaeger client only (JAEGER_* variables; it sends to localhost:6831 when none is set); Loki reads no OTEL_* variable, so OTLP traces are not available",
            "cmd/loki/main.go@v3.5.0:91-107; pkg/tracing/config.go@v3.5.0:13; tracing/tracing.go@dskit@9cdd36a91f10:43-54",
        ),
        fact(
            "without common.storage.s3.region Loki signs every request for region `dummy` (AWS_REGION is not read then), which AWS rejects; S3-compatible servers accept it",
            "pkg/storage/chunk/client/aws/s3_storage_client.go@v3.5.0:193-201,217-219",
        ),
        fact(
            "the delete API (/loki/api/v1/delete) and /loki/api/v1/cache/generation_numbers are served by the compactor (backend, all), only with compactor.retention_enabled",
            "pkg/loki/modules.go@v3.5.0:1679-1685",
        ),
        fact(
            "the legacy /api/prom/push (distributor), /api/prom/query, label, series (query-frontend), /api/prom/tail (querier) and /api/prom/rules (ruler) are still served; the chart routes them to write, read, read and backend",
            "pkg/loki/modules.go@v3.5.0:400-408,667-729,1359-1384,1441-1498; production/helm/loki/templates/_helpers.tpl@v3.5.0:887-994",
        ),
        fact(
            "read pools use the backend's index gateway with storage_config.tsdb_shipper.index_gateway_client.server_address (the chart: dns+<backend>:9095) and index_gateway.mode simple; `all` runs no index gateway",
            "pkg/storage/store.go@v3.5.0:255-266; pkg/loki/loki.go@v3.5.0:816-820; production/helm/loki/templates/_helpers.tpl@v3.5.0:1072-1083",
        ),
        fact(
            "analytics.reporting_enabled defaults to true: a seed object in the bucket and a report to stats.grafana.org every 4h",
            "pkg/analytics/reporter.go@v3.5.0:48-62,301-321",
        ),
        fact(
            "IPv6 ring addresses need ingester.lifecycler.enable_inet6 and instance_enable_ipv6 on each ring (common.ring's is not copied to the others); memberlist binds 0.0.0.0 unless memberlist.bind_addr is set",
            "ring/lifecycler.go@dskit@9cdd36a91f10:41,105; pkg/util/ring/ring_config.go@v3.5.0:41,76,81; pkg/loki/config_wrapper.go@v3.5.0:230-357",
        ),
        fact(
            "setting anything under common.ring makes its kvstore (consul by default) every ring's, so common.ring.kvstore.store must say memberlist",
            "pkg/loki/config_wrapper.go@v3.5.0:100-104,203-221",
        ),
        fact(
            "a read process needs common.compactor_address when retention is on",
            "pkg/loki/modules.go@v3.5.0:1246-1264,2139-2147",
        ),
    ],
};
