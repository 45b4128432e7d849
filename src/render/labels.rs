//! Names, labels and owner references shared by every child object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::GROUP;
use crate::product::Product;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "lgtm-operator";

/// The cluster an object belongs to; the label every selector and prune starts from.
pub const CLUSTER: &str = "lgtm.coordinated.dev/cluster";
/// The pool a worker object belongs to.
pub const POOL: &str = "lgtm.coordinated.dev/pool";

/// The label a worker pod carries for each concrete role it runs.
pub fn role_label(role: &str) -> String {
    format!("role.{GROUP}/{role}")
}

/// What a child object is, as its `app.kubernetes.io/component` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Gateway,
    Agent,
    Config,
    Gossip,
    RoleService,
    Worker,
    /// A Grafana dashboard ConfigMap.
    Dashboard,
    /// The alert rules (a PrometheusRule or its ConfigMap stand-in).
    Alerts,
    /// The per-tenant runtime-overrides file.
    Overrides,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Agent => "agent",
            Component::Config => "config",
            Component::Gossip => "gossip",
            Component::RoleService => "role",
            Component::Worker => "worker",
            Component::Dashboard => "dashboard",
            Component::Alerts => "alerts",
            Component::Overrides => "overrides",
        }
    }
}

/// The standard labels of an object of `cluster`.
pub fn cluster_labels(
    product: Product,
    cluster: &str,
    component: Component,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), product.to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
        (COMPONENT.to_string(), component.as_str().to_string()),
        (PART_OF.to_string(), "lgtm".to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (CLUSTER.to_string(), cluster.to_string()),
    ])
}

/// The standard labels of an object of `pool`.
pub fn pool_labels(product: Product, cluster: &str, pool: &str) -> BTreeMap<String, String> {
    let mut labels = cluster_labels(product, cluster, Component::Worker);
    labels.insert(POOL.to_string(), pool.to_string());
    labels
}

/// Selects a pool's pods (the StatefulSet selector: immutable, so minimal and stable).
pub fn pool_selector(cluster: &str, pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER.to_string(), cluster.to_string()),
        (POOL.to_string(), pool.to_string()),
    ])
}

/// `selector` as a label-selector string (`k=v,k=v`, sorted), as the scale subresource
/// gives it to autoscalers.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selects every worker pod of a cluster.
pub fn workers_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER.to_string(), cluster.to_string()),
        (
            COMPONENT.to_string(),
            Component::Worker.as_str().to_string(),
        ),
    ])
}

/// Selects a cluster's gateway pods (the gateway's and its agent's peer Service's).
pub fn gateway_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER.to_string(), cluster.to_string()),
        (
            COMPONENT.to_string(),
            Component::Gateway.as_str().to_string(),
        ),
    ])
}

/// Selects a cluster's worker pods that run `role`.
pub fn role_selector(cluster: &str, role: &str) -> BTreeMap<String, String> {
    let mut selector = workers_selector(cluster);
    selector.insert(role_label(role), "true".to_string());
    selector
}

/// Metadata of a child: name, namespace, labels and the controller reference.
pub fn child_meta(
    name: impl Into<String>,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}
