//! Fuzzing: `render`, fed arbitrary specs (any JSON the types accept, with hostile
//! strings in every string field), returns objects or an error and never panics.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::api::{GrafanaCluster, WorkerPool};
use crate::offline::{Inputs, Target, render};

/// Strings as users and attackers write them: empty, huge, unicode, nginx and YAML
/// syntax, control characters.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,20}",
        "\\PC{0,40}",
        Just("} server { listen 81; location / { return 200; } }".to_string()),
        Just("a\nb: c\n  - d".to_string()),
        Just("${LGTM_S3_SECRET_ACCESS_KEY}".to_string()),
        Just("x".repeat(10_000)),
        Just("\u{0}\u{7}\u{1b}[31m".to_string()),
        Just("日本語 ✓ Ünïcødé".to_string()),
        Just("999999999999999999999d".to_string()),
    ]
}

/// Any JSON value, a few levels deep, with hostile strings.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn product() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("mimir"), Just("loki"), Just("tempo")]
}

fn toggles() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just("all"),
        Just("read"),
        Just("write"),
        Just("backend"),
        Just("querier"),
        Just("ingester"),
        Just("distributor"),
        Just("compactor"),
        Just("store-gateway"),
        Just("metrics-generator"),
        Just("query-frontend"),
        Just("ruler"),
    ];
    prop::collection::btree_map(role, any::<bool>(), 0..5).prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    })
}

fn cluster(product: &'static str) -> impl Strategy<Value = Value> {
    (
        hostile_string(),
        hostile_string(),
        hostile_string(),
        prop::option::of(hostile_string()),
        prop::option::of(any_json()),
        any::<bool>(),
        -2i32..5,
        prop::option::of(hostile_string()),
    )
        .prop_map(
            move |(endpoint, bucket, version, retention, overrides, paused, gateway, url)| {
                json!({
                    "apiVersion": "lgtm.coordinated.dev/v1alpha1",
                    "kind": "GrafanaCluster",
                    "metadata": {"name": "fuzz", "namespace": "fuzz"},
                    "spec": {
                        "product": product,
                        "version": version,
                        "storage": {"s3": {
                            "endpoint": endpoint, "bucket": bucket,
                            "credentialsSecret": {"name": "creds"}
                        }},
                        "retention": retention,
                        "configOverrides": overrides,
                        "paused": paused,
                        "gateway": {"replicas": gateway},
                        "selfMonitoring": {"metrics": url.map(|u| json!({"remoteWriteUrl": u}))},
                    }
                })
            },
        )
}

fn pool(product: &'static str, index: usize) -> impl Strategy<Value = Value> {
    (
        toggles(),
        -3i32..6,
        prop::option::of(any_json()),
        hostile_string(),
    )
        .prop_map(move |(toggles, replicas, overrides, cluster_ref)| {
            let cluster_ref = if index == 0 {
                "fuzz".to_string()
            } else {
                cluster_ref
            };
            json!({
                "apiVersion": "lgtm.coordinated.dev/v1alpha1",
                "kind": "WorkerPool",
                "metadata": {"name": format!("fuzz-{index}"), "namespace": "fuzz"},
                "spec": {
                    "clusterRef": cluster_ref,
                    "replicas": replicas,
                    "roles": {product: toggles},
                    "podOverrides": overrides,
                }
            })
        })
}

fn inputs() -> impl Strategy<Value = (Value, Vec<Value>)> {
    product().prop_flat_map(|product| {
        (
            cluster(product),
            (0usize..4)
                .prop_flat_map(move |n| (0..n).map(|i| pool(product, i)).collect::<Vec<_>>()),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn render_never_panics_on_any_spec((cluster, pools) in inputs(), ipv6: bool, rules: bool) {
        let mut inputs = Inputs::new("fuzz");
        // What the types refuse, the API server refuses too: only accepted specs matter.
        if let Ok(cluster) = serde_json::from_value::<GrafanaCluster>(cluster) {
            inputs.clusters.push(cluster);
        }
        inputs.pools.extend(pools.into_iter().filter_map(|p| serde_json::from_value::<WorkerPool>(p).ok()));
        let target = Target { ipv6, prometheus_rules: rules, ..Target::default() };
        // Objects or an error; a panic fails the test.
        let _ = render(&inputs, &target);
    }
}
