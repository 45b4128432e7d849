//! Small CR fixtures for unit tests, written as users write manifests.

use crate::api::{GrafanaCluster, WorkerPool};
use crate::product::{PoolSummary, Product, Topology};

/// A GrafanaCluster `metrics` in namespace `obs` from a YAML spec.
pub fn cluster(spec_yaml: &str) -> GrafanaCluster {
    let yaml = format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {{name: metrics, namespace: obs, uid: 11111111-1111-1111-1111-111111111111}}\nspec:\n{}",
        indent(spec_yaml)
    );
    serde_saphyr::from_str(&yaml).expect("fixture cluster parses")
}

/// The minimal cluster of a product, with S3 storage.
pub fn minimal_cluster(product: Product) -> GrafanaCluster {
    cluster(&format!(
        "product: {product}\nstorage:\n  s3:\n    endpoint: minio.minio.svc:9000\n    bucket: {product}\n    credentialsSecret: {{name: s3-credentials}}\n"
    ))
}

/// A WorkerPool of cluster `metrics` from a YAML spec (without clusterRef).
pub fn pool(name: &str, spec_yaml: &str) -> WorkerPool {
    let yaml = format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}, namespace: obs, uid: 22222222-2222-2222-2222-222222222222}}\nspec:\n  clusterRef: metrics\n{}",
        indent(spec_yaml)
    );
    serde_saphyr::from_str(&yaml).expect("fixture pool parses")
}

/// A pool as (name, toggles, replicas).
pub type PoolSpec<'a> = (&'a str, &'a [&'static str], i32);

/// The topology of some pools.
pub fn topology(product: Product, pools: &[PoolSpec]) -> Topology {
    zoned_topology(product, pools, &[])
}

/// The topology of some pools, those named in `zoned` spread over three zones.
pub fn zoned_topology(product: Product, pools: &[PoolSpec], zoned: &[&str]) -> Topology {
    let views: Vec<PoolSummary> = pools
        .iter()
        .map(|(name, toggles, replicas)| PoolSummary {
            name: name.to_string(),
            product: Some(product),
            toggles: toggles.to_vec(),
            replicas: *replicas,
            ready_replicas: *replicas,
            zones: if zoned.contains(name) {
                ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec()
            } else {
                Vec::new()
            },
        })
        .collect();
    Topology::new(product, &views)
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("  {l}\n")).collect()
}

/// A WorkerPool of cluster `metrics` running `toggles` (catalogue names) of `product`,
/// with every replica ready.
pub fn ready_pool(name: &str, product: Product, toggles: &[&str], replicas: i32) -> WorkerPool {
    let toggles: Vec<String> = toggles
        .iter()
        .map(|t| format!("{}: true", crate::api::json_name(t)))
        .collect();
    let mut pool = pool(
        name,
        &format!(
            "replicas: {replicas}\nroles: {{{product}: {{{}}}}}",
            toggles.join(", ")
        ),
    );
    pool.status = Some(crate::api::WorkerPoolStatus {
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        ..Default::default()
    });
    pool
}

/// The Secrets `minimal_cluster` references, with every key it reads.
pub fn storage_secrets()
-> std::collections::BTreeMap<String, Option<k8s_openapi::api::core::v1::Secret>> {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s3-credentials", "namespace": "obs"},
        "stringData": {"access-key-id": "id", "secret-access-key": "key"},
    }))
    .expect("fixture secret");
    std::collections::BTreeMap::from([("s3-credentials".to_string(), Some(secret))])
}
