//! Product configuration per product, for monolithic, split and scaled layouts.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::fixtures;
use crate::product::Topology;

fn inputs<'a>(cluster: &'a crate::api::GrafanaCluster, topology: &'a Topology) -> ConfigInputs<'a> {
    ConfigInputs {
        cluster: "metrics",
        namespace: "obs",
        cluster_domain: "cluster.local",
        topology,
        storage: cluster.spec.storage.backend(),
        retention: None,
        loki_schema_from: Some("2026-11-18"),
        remote_write_url: None,
        overrides: None,
        usage_reporting: false,
        ipv6: false,
        multi_tenant: false,
        tenant_retention: false,
    }
}

/// Renders and parses back, so tests assert on structure, not text.
pub(crate) fn rendered(inputs: &ConfigInputs) -> Value {
    let yaml = render(inputs).expect("renders");
    serde_saphyr::from_str(&yaml).expect("rendered config is YAML")
}

fn at<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

#[test]
fn every_product_joins_memberlist_through_the_gossip_service() {
    for product in Product::ALL {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let config = rendered(&inputs(&cluster, &topology));
        assert_eq!(
            at(&config, "memberlist.join_members"),
            &serde_json::json!(["dns+metrics-gossip.obs.svc.cluster.local:7946"]),
            "{product}"
        );
    }
}

#[test]
fn no_credential_and_nothing_to_substitute_is_in_the_config() {
    // The products read AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY themselves (runtime
    // contract), so the file needs no substitution: an odd secret cannot break it, and
    // workers run without -config.expand-env.
    for product in Product::ALL {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let yaml = render(&inputs(&cluster, &topology)).expect("renders");
        assert!(!yaml.contains('$'), "{product}:\n{yaml}");
        for key in ["access_key", "secret", "password"] {
            assert!(!yaml.contains(key), "{product} writes a {key} key:\n{yaml}");
        }
    }
}

#[test]
fn a_dollar_in_overrides_stays_a_dollar() {
    // Mimir's -config.expand-env has no escape ($1 and $$ become empty: runtime
    // contract); with nothing to substitute the workers run without it.
    let mut cluster = fixtures::minimal_cluster(Product::Mimir);
    cluster.spec.config_overrides = Some(serde_json::json!({
        "limits": {"metric_relabel_configs": [{"replacement": "$1", "target_label": "x"}]}
    }));
    let topology = fixtures::topology(Product::Mimir, &[("all", &["all"], 1)]);
    let mut inputs = inputs(&cluster, &topology);
    inputs.overrides = cluster.spec.config_overrides.as_ref();
    let config = rendered(&inputs);
    assert_eq!(
        at(&config, "limits.metric_relabel_configs.0.replacement"),
        "$1"
    );
}

#[test]
fn mimir_monolithic_has_replication_factor_one_and_queriers_reach_frontends() {
    let cluster = fixtures::minimal_cluster(Product::Mimir);
    let topology = fixtures::topology(Product::Mimir, &[("all", &["all"], 1)]);
    let config = rendered(&inputs(&cluster, &topology));
    assert_eq!(at(&config, "ingester.ring.replication_factor"), 1);
    assert_eq!(
        at(&config, "store_gateway.sharding_ring.replication_factor"),
        1
    );
    assert_eq!(
        at(&config, "frontend_worker.frontend_address"),
        "metrics-query-frontend.obs.svc.cluster.local:9095"
    );
    assert!(at(&config, "frontend").is_null());
    assert_eq!(
        at(&config, "common.storage.s3.endpoint"),
        "minio.minio.svc:9000"
    );
    assert_eq!(at(&config, "common.storage.s3.insecure"), true);
    assert_eq!(at(&config, "blocks_storage.storage_prefix"), "blocks");
    assert_eq!(at(&config, "ruler_storage.storage_prefix"), "rules");
    assert_eq!(at(&config, "alertmanager_storage.storage_prefix"), "alerts");
    assert_eq!(at(&config, "no_auth_tenant"), "anonymous");
}

#[test]
fn mimir_split_with_schedulers_routes_queries_through_them() {
    let cluster = fixtures::minimal_cluster(Product::Mimir);
    let topology = fixtures::topology(
        Product::Mimir,
        &[
            ("read", &["read"], 2),
            ("write", &["write"], 3),
            ("backend", &["backend"], 3),
        ],
    );
    let config = rendered(&inputs(&cluster, &topology));
    let scheduler = "metrics-query-scheduler.obs.svc.cluster.local:9095";
    assert_eq!(at(&config, "frontend_worker.scheduler_address"), scheduler);
    assert_eq!(at(&config, "frontend.scheduler_address"), scheduler);
    assert!(at(&config, "frontend_worker.frontend_address").is_null());
    assert_eq!(at(&config, "ingester.ring.replication_factor"), 3);
    assert_eq!(
        at(&config, "store_gateway.sharding_ring.replication_factor"),
        3
    );
    assert_eq!(
        at(&config, "ruler.alertmanager_url"),
        "http://metrics-alertmanager.obs.svc.cluster.local:8080/alertmanager"
    );
}

#[test]
fn scaling_within_a_replication_band_leaves_the_config_unchanged() {
    for product in Product::ALL {
        let cluster = fixtures::minimal_cluster(product);
        let small = fixtures::topology(product, &[("all", &["all"], 3)]);
        let big = fixtures::topology(product, &[("all", &["all"], 7)]);
        assert_eq!(
            render(&inputs(&cluster, &small)),
            render(&inputs(&cluster, &big)),
            "{product}"
        );
    }
}

#[test]
fn loki_uses_the_fixed_schema_date_and_path_style_s3() {
    let cluster = fixtures::minimal_cluster(Product::Loki);
    let topology = fixtures::topology(
        Product::Loki,
        &[
            ("read", &["read"], 3),
            ("write", &["write"], 3),
            ("backend", &["backend"], 1),
        ],
    );
    let config = rendered(&inputs(&cluster, &topology));
    assert_eq!(at(&config, "schema_config.configs.0.from"), "2026-11-18");
    assert_eq!(at(&config, "schema_config.configs.0.schema"), "v13");
    assert_eq!(at(&config, "schema_config.configs.0.store"), "tsdb");
    assert_eq!(at(&config, "schema_config.configs.0.index.period"), "24h");
    assert_eq!(at(&config, "common.storage.s3.s3forcepathstyle"), true);
    assert_eq!(at(&config, "common.replication_factor"), 3);
    assert_eq!(at(&config, "common.path_prefix"), "/data");
    // Rollouts replay the WAL (ADR 5).
    assert_eq!(at(&config, "ingester.wal.flush_on_shutdown"), false);
    assert_eq!(
        at(&config, "common.compactor_address"),
        "http://metrics-backend.obs.svc.cluster.local:3100"
    );
}

#[test]
fn retention_reaches_each_product_in_its_own_key() {
    for (product, key) in [
        (Product::Mimir, "limits.compactor_blocks_retention_period"),
        (Product::Loki, "limits_config.retention_period"),
        (Product::Tempo, "compactor.compaction.block_retention"),
    ] {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let mut inputs = inputs(&cluster, &topology);
        inputs.retention = Some(Duration::parse("30d").expect("valid"));
        assert_eq!(at(&rendered(&inputs), key), "720h", "{product}");
    }
}

#[test]
fn loki_retention_must_be_whole_days() {
    let cluster = fixtures::minimal_cluster(Product::Loki);
    let topology = fixtures::topology(Product::Loki, &[("all", &["all"], 1)]);
    let mut inputs = inputs(&cluster, &topology);
    inputs.retention = Some(Duration::parse("36h").expect("valid"));
    let error = render(&inputs).expect_err("not whole days");
    assert!(
        error.to_string().contains("whole number of days"),
        "{error}"
    );
}

#[test]
fn tempo_queriers_reach_every_frontend_through_the_frontend_service() {
    let cluster = fixtures::minimal_cluster(Product::Tempo);
    let split = fixtures::topology(
        Product::Tempo,
        &[
            ("q", &["querier"], 1),
            ("qf", &["query-frontend"], 1),
            ("i", &["ingester"], 3),
            ("d", &["distributor"], 1),
            ("c", &["compactor"], 1),
        ],
    );
    let config = rendered(&inputs(&cluster, &split));
    assert_eq!(
        at(&config, "querier.frontend_worker.frontend_address"),
        "metrics-query-frontend.obs.svc.cluster.local:9096"
    );
    assert_eq!(
        at(&config, "ingester.lifecycler.ring.replication_factor"),
        3
    );
    // A standalone frontend beside `all` pools: the queriers of the `all` pods connect
    // to it too, since the Service selects every pod running a frontend.
    let mixed = fixtures::topology(
        Product::Tempo,
        &[("all", &["all"], 2), ("qf", &["query-frontend"], 1)],
    );
    let config = rendered(&inputs(&cluster, &mixed));
    assert_eq!(
        at(&config, "querier.frontend_worker.frontend_address"),
        "metrics-query-frontend.obs.svc.cluster.local:9096"
    );
    assert_eq!(at(&config, "compactor.ring.kvstore.store"), "memberlist");
}

#[test]
fn tempo_has_five_receivers_and_strips_default_ports() {
    let mut cluster = fixtures::minimal_cluster(Product::Tempo);
    cluster.spec.storage.s3.as_mut().expect("s3").endpoint = "https://s3.example.com:443".into();
    let topology = fixtures::topology(Product::Tempo, &[("all", &["all"], 1)]);
    let config = rendered(&inputs(&cluster, &topology));
    let receivers = at(&config, "distributor.receivers");
    assert_eq!(
        at(receivers, "otlp.protocols.grpc.endpoint"),
        "0.0.0.0:4317"
    );
    assert_eq!(
        at(receivers, "otlp.protocols.http.endpoint"),
        "0.0.0.0:4318"
    );
    assert_eq!(at(receivers, "zipkin.endpoint"), "0.0.0.0:9411");
    assert_eq!(
        at(receivers, "jaeger.protocols.thrift_http.endpoint"),
        "0.0.0.0:14268"
    );
    assert_eq!(
        at(receivers, "jaeger.protocols.grpc.endpoint"),
        "0.0.0.0:14250"
    );
    assert_eq!(at(&config, "storage.trace.s3.endpoint"), "s3.example.com");
    assert_eq!(at(&config, "storage.trace.s3.insecure"), false);
}

#[test]
fn tempo_metrics_generator_only_writes_with_a_remote_write_url() {
    let cluster = fixtures::minimal_cluster(Product::Tempo);
    let topology = fixtures::topology(Product::Tempo, &[("all", &["all"], 1)]);
    let without = rendered(&inputs(&cluster, &topology));
    assert!(at(&without, "metrics_generator.storage.remote_write").is_null());
    assert!(at(&without, "overrides.defaults").is_null());
    // The per-tenant file is read whatever the generator does.
    assert_eq!(
        at(&without, "overrides.per_tenant_override_config"),
        "/etc/lgtm-overrides/overrides.yaml"
    );
    let mut with = inputs(&cluster, &topology);
    with.remote_write_url = Some("http://prom:9090/api/v1/write");
    let with = rendered(&with);
    assert_eq!(
        at(&with, "metrics_generator.storage.remote_write.0.url"),
        "http://prom:9090/api/v1/write"
    );
    assert_eq!(
        at(&with, "overrides.defaults.metrics_generator.processors"),
        &serde_json::json!(["service-graphs", "span-metrics"])
    );
}

#[test]
fn config_overrides_win_and_bad_ones_are_an_error() {
    let cluster = fixtures::minimal_cluster(Product::Mimir);
    let topology = fixtures::topology(Product::Mimir, &[("all", &["all"], 1)]);
    let overrides = serde_json::json!({"server": {"log_level": "debug"}, "ingester": {"ring": {"replication_factor": 2}}});
    let mut with = inputs(&cluster, &topology);
    with.overrides = Some(&overrides);
    let config = rendered(&with);
    assert_eq!(at(&config, "server.log_level"), "debug");
    assert_eq!(at(&config, "server.http_listen_port"), 8080);
    assert_eq!(at(&config, "ingester.ring.replication_factor"), 2);
    let bad = serde_json::json!("log_level: debug");
    with.overrides = Some(&bad);
    assert!(matches!(render(&with), Err(ConfigError::Overrides(_))));
}

/// The checked-in table of every key the renderers write, with its reference.
const CONFIG_KEYS: &str = include_str!("../../../docs/config-keys.md");

/// Key paths per product, from the tables under the `## <Product> <version>` headings.
fn reference_table() -> BTreeMap<Product, BTreeSet<String>> {
    let mut tables: BTreeMap<Product, BTreeSet<String>> = BTreeMap::new();
    let mut current = None;
    for line in CONFIG_KEYS.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            let heading = heading.to_lowercase();
            current = Product::ALL
                .into_iter()
                .find(|p| heading.split_whitespace().next() == Some(p.as_str()));
        } else if let (Some(product), Some(row)) = (current, line.strip_prefix("| `")) {
            let key = row.split('`').next().expect("split yields a first part");
            tables.entry(product).or_default().insert(key.to_string());
        }
    }
    tables
}

/// Every key path of a rendered config: maps joined with '.', elements of a list of maps
/// as `[]`; a scalar, a list of scalars or an empty map is one setting at its own path.
fn key_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                key_paths(child, &child_path, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                key_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {
            out.insert(path.to_string());
        }
    }
}

/// Layouts that exercise every branch of a product's renderer.
fn layouts(product: Product) -> Vec<Topology> {
    let pools: &[&[(&str, &[&'static str], i32)]] = match product {
        Product::Mimir => &[
            &[("all", &["all"], 1)],
            &[("all", &["all", "alertmanager"], 3)],
            // With query-schedulers (backend carries them) and alertmanagers.
            &[
                ("read", &["read"], 2),
                ("write", &["write"], 3),
                ("backend", &["backend"], 3),
            ],
            // Without query-schedulers: queriers reach the query-frontends.
            &[
                ("read", &["read"], 2),
                ("write", &["write"], 3),
                ("storage", &["compactor", "store-gateway", "ruler"], 1),
            ],
        ],
        Product::Loki => &[
            &[("all", &["all"], 1)],
            &[("all", &["all"], 3)],
            &[
                ("read", &["read"], 3),
                ("write", &["write"], 3),
                ("backend", &["backend"], 1),
            ],
            // No backend pool: no compactor address.
            &[("read", &["read"], 1), ("write", &["write"], 1)],
            // An `all` pool beside readers: no index gateway to send them to.
            &[("all", &["all"], 1), ("read", &["read"], 2)],
        ],
        Product::Tempo => &[
            &[("all", &["all"], 1)],
            &[
                ("q", &["querier"], 1),
                ("qf", &["query-frontend"], 1),
                ("i", &["ingester"], 3),
                ("d", &["distributor"], 1),
                ("c", &["compactor"], 1),
                ("g", &["metrics-generator"], 1),
            ],
        ],
    };
    pools
        .iter()
        .map(|pools| fixtures::topology(product, pools))
        .collect()
}

#[test]
fn the_filesystem_backend_keeps_objects_on_the_data_volume() {
    for (product, keys) in [
        (Product::Mimir, vec!["common.storage.filesystem.dir"]),
        (
            Product::Loki,
            vec![
                "common.storage.filesystem.chunks_directory",
                "common.storage.filesystem.rules_directory",
            ],
        ),
        (Product::Tempo, vec!["storage.trace.local.path"]),
    ] {
        let mut cluster = fixtures::minimal_cluster(product);
        cluster.spec.storage =
            serde_json::from_value(serde_json::json!({"filesystem": {}})).expect("spec");
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let config = rendered(&inputs(&cluster, &topology));
        for key in keys {
            let path = at(&config, key).as_str().unwrap_or_default().to_string();
            assert!(path.starts_with("/data/objects"), "{product} {key}: {path}");
        }
        if product == Product::Tempo {
            // Not the WAL's own `<wal>/blocks` (runtime contract).
            let wal = at(&config, "storage.trace.wal.path")
                .as_str()
                .unwrap_or_default();
            assert!(!format!("{wal}/blocks").starts_with("/data/objects"));
            assert_eq!(at(&config, "storage.trace.backend"), "local");
        }
    }
}

/// Object storage as users give it: S3 over plain HTTP, https with a region, with a CA
/// bundle; GCS; Azure with and without an endpoint suffix; the filesystem.
fn storages(product: Product) -> Vec<crate::api::GrafanaCluster> {
    let plain = fixtures::minimal_cluster(product);
    let with_storage = |storage: Value| {
        let mut cluster = plain.clone();
        cluster.spec.storage = serde_json::from_value(storage).expect("storage spec");
        cluster
    };
    let s3 = |extra: Value| {
        let mut s3 = serde_json::json!({"endpoint": "s3.internal:9000", "bucket": "b",
            "credentialsSecret": {"name": "s3-credentials"}});
        s3.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        with_storage(serde_json::json!({ "s3": s3 }))
    };
    let azure = |suffix: Option<&str>| {
        let mut azure = serde_json::json!({"accountName": "acct", "container": "c",
            "credentialsSecret": {"name": "azure"}});
        if let Some(suffix) = suffix {
            azure["endpointSuffix"] = suffix.into();
        }
        with_storage(serde_json::json!({ "azure": azure }))
    };
    vec![
        plain.clone(),
        s3(serde_json::json!({"endpoint": "https://s3.example.com:443", "region": "eu-west-1"})),
        s3(serde_json::json!({"region": "eu-west-1", "caSecret": {"name": "s3-ca"}})),
        with_storage(
            serde_json::json!({"gcs": {"bucket": "b", "credentialsSecret": {"name": "gcs"}}}),
        ),
        azure(None),
        azure(Some("blob.core.usgovcloudapi.net")),
        with_storage(serde_json::json!({"filesystem": {}})),
    ]
}

/// Every key the renderer writes for a product across the matrix, without overrides.
fn written_keys(product: Product) -> BTreeSet<String> {
    let retention = Duration::parse("30d").expect("valid");
    let mut keys = BTreeSet::new();
    for topology in layouts(product) {
        for cluster in storages(product) {
            for retention in [None, Some(retention)] {
                for remote_write_url in [None, Some("http://prom:9090/api/v1/write")] {
                    for (ipv6, multi_tenant) in [(false, false), (true, false), (false, true)] {
                        let mut inputs = inputs(&cluster, &topology);
                        inputs.retention = retention;
                        inputs.remote_write_url = remote_write_url;
                        inputs.ipv6 = ipv6;
                        inputs.multi_tenant = multi_tenant;
                        key_paths(&rendered(&inputs), "", &mut keys);
                    }
                }
            }
        }
    }
    keys
}

#[test]
fn every_written_key_is_in_the_reference_table() {
    let tables = reference_table();
    let mut problems = Vec::new();
    for product in Product::ALL {
        let listed = tables.get(&product).cloned().unwrap_or_default();
        let written = written_keys(product);
        for key in written.difference(&listed) {
            problems.push(format!(
                "{product}: `{key}` is written but missing from docs/config-keys.md"
            ));
        }
        for key in listed.difference(&written) {
            problems.push(format!(
                "{product}: `{key}` is listed in docs/config-keys.md but never written (stale row)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn key_paths_join_maps_and_mark_lists_of_maps() {
    let value = serde_json::json!({
        "a": {"b": 1, "list": ["x", "y"], "empty": {}},
        "configs": [{"from": "d", "index": {"period": "24h"}}],
    });
    let mut keys = BTreeSet::new();
    key_paths(&value, "", &mut keys);
    let expected: BTreeSet<String> = [
        "a.b",
        "a.list",
        "a.empty",
        "configs[].from",
        "configs[].index.period",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys, expected);
}

/// The whole file per product (split layouts, retention set), for review: a change shows up
/// as a snapshot diff; the tests above assert what matters in it.
#[test]
fn rendered_configs_for_review() {
    let layouts: [(Product, &[fixtures::PoolSpec]); 3] = [
        (
            Product::Mimir,
            &[
                ("read", &["read"], 2),
                ("write", &["write"], 3),
                ("backend", &["backend"], 1),
            ],
        ),
        (
            Product::Loki,
            &[
                ("read", &["read"], 3),
                ("write", &["write"], 3),
                ("backend", &["backend"], 3),
            ],
        ),
        (
            Product::Tempo,
            &[
                ("q", &["querier"], 1),
                ("qf", &["query-frontend"], 1),
                ("i", &["ingester"], 3),
                ("d", &["distributor"], 1),
                ("c", &["compactor"], 1),
            ],
        ),
    ];
    for (product, pools) in layouts {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, pools);
        let mut inputs = inputs(&cluster, &topology);
        inputs.retention = Some(Duration::parse("30d").expect("valid"));
        let yaml = render(&inputs).expect("renders");
        assert!(yaml.contains("dns+metrics-gossip.obs.svc.cluster.local:7946"));
        insta::assert_snapshot!(format!("config-{product}"), yaml);
    }
}

#[test]
fn loki_readers_ask_the_index_gateways_only_where_every_backend_runs_one() {
    let cluster = fixtures::minimal_cluster(Product::Loki);
    let address = "dns+metrics-backend.obs.svc.cluster.local:9095";
    let client = "storage_config.tsdb_shipper.index_gateway_client.server_address";
    let split = fixtures::topology(
        Product::Loki,
        &[
            ("read", &["read"], 2),
            ("write", &["write"], 3),
            ("backend", &["backend"], 1),
        ],
    );
    let config = rendered(&inputs(&cluster, &split));
    assert_eq!(at(&config, client), address);
    assert_eq!(at(&config, "index_gateway.mode"), "simple");
    // The backend Service also selects `all` pods, which run no index gateway: readers
    // keep downloading the index themselves rather than ask a pod that cannot answer.
    let mixed = fixtures::topology(
        Product::Loki,
        &[
            ("all", &["all"], 1),
            ("read", &["read"], 2),
            ("backend", &["backend"], 1),
        ],
    );
    assert_eq!(
        at(&rendered(&inputs(&cluster, &mixed)), client),
        &Value::Null
    );
    let monolithic = fixtures::topology(Product::Loki, &[("all", &["all"], 1)]);
    assert_eq!(
        at(&rendered(&inputs(&cluster, &monolithic)), client),
        &Value::Null
    );
}

#[test]
fn usage_reporting_is_off_unless_the_spec_turns_it_on() {
    let key = |product| match product {
        Product::Mimir => "usage_stats.enabled",
        Product::Loki => "analytics.reporting_enabled",
        Product::Tempo => "usage_report.reporting_enabled",
    };
    for product in Product::ALL {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let mut inputs = inputs(&cluster, &topology);
        assert_eq!(at(&rendered(&inputs), key(product)), false, "{product}");
        inputs.usage_reporting = true;
        assert_eq!(at(&rendered(&inputs), key(product)), true, "{product}");
    }
}

#[test]
fn on_ipv6_every_ring_registers_an_ipv6_address_and_memberlist_binds_it() {
    // The ring keys each product reads (runtime contract, IPv6 notes).
    let rings: &[(Product, &[&str])] = &[
        (
            Product::Mimir,
            &[
                "ingester.ring.instance_enable_ipv6",
                "distributor.ring.instance_enable_ipv6",
                "store_gateway.sharding_ring.instance_enable_ipv6",
                "compactor.sharding_ring.instance_enable_ipv6",
                "ruler.ring.instance_enable_ipv6",
                "alertmanager.sharding_ring.instance_enable_ipv6",
                "query_scheduler.ring.instance_enable_ipv6",
                "overrides_exporter.ring.instance_enable_ipv6",
                "frontend.instance_enable_ipv6",
            ],
        ),
        (
            Product::Loki,
            &[
                "common.ring.instance_enable_ipv6",
                "ingester.lifecycler.enable_inet6",
                "distributor.ring.instance_enable_ipv6",
            ],
        ),
        (
            Product::Tempo,
            &[
                "ingester.lifecycler.enable_inet6",
                "compactor.ring.enable_inet6",
                "metrics_generator.ring.enable_inet6",
                "distributor.ring.enable_inet6",
            ],
        ),
    ];
    for (product, keys) in rings {
        let cluster = fixtures::minimal_cluster(*product);
        let topology = fixtures::topology(*product, &[("all", &["all"], 1)]);
        let mut inputs = inputs(&cluster, &topology);
        let ipv4 = rendered(&inputs);
        inputs.ipv6 = true;
        let ipv6 = rendered(&inputs);
        for key in *keys {
            assert_eq!(at(&ipv6, key), true, "{product} {key}");
            assert_ne!(at(&ipv4, key), true, "{product} {key}");
        }
        assert_eq!(
            at(&ipv6, "memberlist.bind_addr"),
            &serde_json::json!(["::"]),
            "{product}"
        );
        assert_eq!(at(&ipv4, "memberlist.bind_addr"), &Value::Null, "{product}");
    }
}

/// Each zone-aware ring of the runtime contract: awareness on and replication factor 3
/// at the contract's keys once its role's pools are zoned, even with a single worker
/// per zone; and nothing of it while any pool of the role is unzoned.
#[test]
fn zoned_rings_turn_zone_awareness_on_at_the_contracts_keys() {
    let layouts: [(Product, &[PoolSpecOwned]); 3] = [
        (
            Product::Mimir,
            &[
                ("ingest", &["ingester"], 3),
                ("gw", &["store-gateway"], 3),
                ("am", &["alertmanager"], 3),
                ("rest", &["read", "distributor", "compactor", "ruler"], 1),
            ],
        ),
        (
            Product::Loki,
            &[("w", &["write"], 3), ("r", &["read", "backend"], 1)],
        ),
        (
            Product::Tempo,
            &[
                ("ingest", &["ingester"], 3),
                ("d", &["distributor"], 1),
                ("q", &["querier"], 1),
                ("f", &["query-frontend"], 1),
                ("c", &["compactor"], 1),
            ],
        ),
    ];
    for (product, pools) in layouts {
        let cluster = fixtures::minimal_cluster(product);
        let rings = product.contract().zones;
        assert!(!rings.is_empty(), "{product}");
        let ring_pools: Vec<&str> = pools
            .iter()
            .filter(|(_, toggles, _)| rings.iter().any(|r| toggles.contains(&r.role)))
            .map(|(name, _, _)| *name)
            .collect();
        let zoned = fixtures::zoned_topology(product, pools, &ring_pools);
        let config = rendered(&inputs(&cluster, &zoned));
        for ring in rings {
            assert_eq!(
                at(&config, ring.awareness),
                &Value::Bool(true),
                "{product} {}",
                ring.awareness
            );
            assert_eq!(
                at(&config, ring.replication_factor),
                &serde_json::json!(3),
                "{product}"
            );
        }
        // One unzoned pool of the ring's role beside the zoned ones: the ring is mixed,
        // awareness stays off, and the topology says so.
        let mut mixed: Vec<PoolSpecOwned> = pools.to_vec();
        let (_, toggles, _) = pools
            .iter()
            .find(|(n, _, _)| *n == ring_pools[0])
            .expect("a ring pool");
        mixed.push(("old", toggles, 3));
        let topology = fixtures::zoned_topology(product, &mixed, &ring_pools);
        let config = rendered(&inputs(&cluster, &topology));
        let ring = rings
            .iter()
            .find(|r| toggles.contains(&r.role))
            .expect("its ring");
        assert_ne!(at(&config, ring.awareness), &Value::Bool(true), "{product}");
        assert_eq!(topology.mixed_zones().len(), 1, "{product}");
        assert!(
            topology.mixed_zones()[0].contains("old"),
            "{:?}",
            topology.mixed_zones()
        );
    }
}

type PoolSpecOwned = (&'static str, &'static [&'static str], i32);

#[test]
fn multi_tenancy_turns_each_products_switch_on_and_fences_mimirs_receivers() {
    for product in Product::ALL {
        let cluster = fixtures::minimal_cluster(product);
        let topology = fixtures::topology(product, &[("all", &["all"], 1)]);
        let switch = product.contract().tenancy.switch;
        for multi_tenant in [false, true] {
            let mut inputs = inputs(&cluster, &topology);
            inputs.multi_tenant = multi_tenant;
            inputs.loki_schema_from = Some("2026-11-18");
            let config = rendered(&inputs);
            assert_eq!(at(&config, switch), &Value::Bool(multi_tenant), "{product}");
            let fence = at(
                &config,
                "limits.alertmanager_receivers_firewall_block_private_addresses",
            );
            let fenced = product == Product::Mimir && multi_tenant;
            assert_eq!(
                fence == &Value::Bool(true),
                fenced,
                "{product} {multi_tenant}"
            );
        }
    }
}
