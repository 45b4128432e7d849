//! Small CR fixtures for unit tests, written as users write manifests.

use crate::api::{GrafanaCluster, WorkerPool};
use crate::product::{PoolView, Product, Topology};

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
    let views: Vec<PoolView> = pools
        .iter()
        .map(|(name, toggles, replicas)| PoolView {
            name: name.to_string(),
            product: Some(product),
            toggles: toggles.to_vec(),
            replicas: *replicas,
            ready_replicas: *replicas,
        })
        .collect();
    Topology::new(product, &views)
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("  {l}\n")).collect()
}
