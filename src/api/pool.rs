use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::product::Product;

/// A group of identical workers of one GrafanaCluster, run as one StatefulSet (one per
/// zone when `zones` is set). Its roles
/// are boolean toggles, so any role or combination the product allows scales on its own.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lgtm.coordinated.dev",
    version = "v1alpha1",
    kind = "WorkerPool",
    namespaced,
    status = "WorkerPoolStatus",
    shortname = "wp",
    category = "lgtm",
    derive = "PartialEq",
    doc = "A group of identical workers (one StatefulSet, or one per zone) of a GrafanaCluster.",
    // A StatefulSet's name takes at most 52 characters: its pods' revision label adds 11
    // to it and is limited to 63.
    validation = Rule::new("!has(self.spec.zones) || self.spec.zones.all(z, size(self.metadata.name) + size(z.name) <= 51)").message("a zoned pool's name and each zone's name make its StatefulSet's name (<pool>-<zone>), at most 52 characters: shorten them"),
    // `kubectl scale`, HorizontalPodAutoscalers and KEDA drive spec.replicas through it.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".status.targetsSummary"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.zones) ? self.zones.map(z, z.name) : []) == (has(oldSelf.zones) ? oldSelf.zones.map(z, z.name) : [])").message("zones are fixed at creation: create a zoned pool beside this one and scale this one down (docs: Migrating to zones)"))]
pub struct WorkerPoolSpec {
    /// Name of the GrafanaCluster (same namespace) these workers belong to. Fixed at
    /// creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable: create a new WorkerPool for another cluster"))]
    #[x_kube(validation = Rule::new("self != ''").message("clusterRef must name a GrafanaCluster"))]
    #[schemars(
        length(max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub cluster_ref: String,

    /// Number of workers.
    #[serde(default = "default_one")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,

    /// The roles every worker of this pool runs, as toggles of exactly one product block.
    pub roles: PoolRoles,

    /// The data volume of each worker (WAL, caches, local blocks). Fixed at creation:
    /// the volume claim template of a StatefulSet cannot change.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable: a StatefulSet's volume claim template cannot change; create a new pool and scale this one down"))]
    pub storage: PoolStorage,

    /// Compute resources of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::resources")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the workers must run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::node_selector")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// A pod template merged last onto the one the operator builds, with Kubernetes'
    /// strategic-merge rules: maps merge; containers, volumes, env, ports and the like
    /// merge by their key (name, mountPath, containerPort); other lists replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::free_form_object")]
    pub pod_overrides: Option<serde_json::Value>,

    /// How workers leave when `replicas` goes down. Workers whose roles hold data
    /// (ingesters, store-gateways, Loki's write) leave one at a time: each is asked to
    /// flush and leave its ring through the product's own endpoint before its pod goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDownSpec>,

    /// Availability zones the workers run in: one StatefulSet per zone
    /// (`<pool>-<zone>`), pinned to it, with `replicas` split evenly, and the rings of
    /// the pool's roles told each worker's zone so that every piece of data has a copy
    /// in each of three zones. Config and image changes roll one zone at a time. At
    /// least three zones; fixed at creation (ADR 14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("size(self) == 0 || size(self) >= 3").message("a zoned pool needs at least three zones: the replication factor is 3 and each zone holds one copy of every piece of data"))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub zones: Vec<PoolZone>,

    /// How zone-by-zone rollouts proceed (zoned pools only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
}

/// One zone of a zoned pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolZone {
    /// The zone's name: the value of the nodes' `topology.kubernetes.io/zone` label,
    /// and the suffix of its StatefulSet's name.
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Node labels that place a pod in this zone, instead of
    /// `topology.kubernetes.io/zone: <name>` (nodes labelled some other way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::node_selector")]
    pub node_selector: Option<BTreeMap<String, String>>,
}

/// How a zoned pool rolls out a new pod template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long one zone may take to be Ready again before the rollout stops there
    /// with a Warning (`Progressing` reason `ZoneRolloutStalled`). Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 86400))]
    pub zone_timeout_seconds: Option<i64>,
}

impl WorkerPoolSpec {
    /// The zone names, in the order the rollout visits them (empty: unzoned).
    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }
}

/// How workers leave on a scale-down.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownSpec {
    /// How long one worker may take to leave before the scale-down stops with a
    /// Warning (`ScalingDown` reason `LeaveTimedOut`). Defaults to the termination grace
    /// period of the pool's roles (Mimir ingesters: 1200 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 86400))]
    pub timeout_seconds: Option<i64>,
}

fn default_one() -> i32 {
    1
}

/// The role toggles of a pool: exactly one product block.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.mimir), has(self.loki), has(self.tempo)].filter(p, p).size() == 1").message("set exactly one of roles.mimir, roles.loki, roles.tempo"))]
pub struct PoolRoles {
    /// Grafana Mimir roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mimir: Option<MimirRoles>,
    /// Grafana Loki roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<LokiRoles>,
    /// Grafana Tempo roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<TempoRoles>,
}

impl PoolRoles {
    /// The product of the block that is set, with the names of its toggles set to true
    /// (as the product catalogue names roles and meta-roles). `None` when no block, or
    /// more than one, is set; the CRD's CEL rule keeps that from reaching the API.
    pub fn selected(&self) -> Option<(Product, Vec<&'static str>)> {
        match (&self.mimir, &self.loki, &self.tempo) {
            (Some(m), None, None) => Some((Product::Mimir, m.enabled())),
            (None, Some(l), None) => Some((Product::Loki, l.enabled())),
            (None, None, Some(t)) => Some((Product::Tempo, t.enabled())),
            _ => None,
        }
    }
}

/// Defines a block of role toggles: the struct users write, and the mapping from each
/// field to the role or meta-role name of the product catalogue.
macro_rules! role_toggles {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$field_meta:meta])* $field:ident => $role:literal, )+
        }
    ) => {
        #[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
        #[serde(rename_all = "camelCase")]
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<bool>,
            )+
        }

        impl $name {
            /// Role and meta-role names of every toggle, in declaration order.
            pub const TOGGLES: &'static [&'static str] = &[$($role),+];

            /// Role and meta-role names of the toggles set to true.
            pub fn enabled(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.$field == Some(true) { names.push($role); } )+
                names
            }
        }
    };
}

role_toggles! {
    /// Mimir role toggles. Several may be true; meta-roles (read, write, backend, all)
    /// stand for their groups of roles. `flusher` is refused: it is a one-off job.
    #[schemars(transform = crate::api::schema::mimir_toggles)]
    MimirRoles {
        /// Compacts blocks in object storage and applies retention.
        compactor => "compactor",
        /// Receives writes and spreads them over the ingesters.
        distributor => "distributor",
        /// Keeps recent samples in memory and writes blocks.
        ingester => "ingester",
        /// Evaluates PromQL queries.
        querier => "querier",
        /// Splits, caches and queues queries.
        query_frontend => "query-frontend",
        /// Serves blocks from object storage to queriers.
        store_gateway => "store-gateway",
        /// Evaluates recording and alerting rules.
        ruler => "ruler",
        /// Multi-tenant Alertmanager (optional).
        alertmanager => "alertmanager",
        /// Exports per-tenant limits as metrics (optional).
        overrides_exporter => "overrides-exporter",
        /// Queues queries between frontends and queriers (optional).
        query_scheduler => "query-scheduler",
        /// Refused in pools: the flusher flushes an ingester's WAL once and then stops
        /// its process, so run it as a Job.
        flusher => "flusher",
        /// Meta-role: querier and query-frontend.
        read => "read",
        /// Meta-role: distributor and ingester.
        write => "write",
        /// Meta-role: alertmanager, compactor, overrides-exporter, query-scheduler,
        /// ruler and store-gateway.
        backend => "backend",
        /// Meta-role: every required role in one process (monolithic).
        all => "all",
    }
}

role_toggles! {
    /// Loki role toggles (the simple scalable targets). Exactly one is true: a process
    /// that runs write beside read or backend sees only its own part of the index.
    #[schemars(transform = crate::api::schema::loki_toggles)]
    LokiRoles {
        /// The read path: queriers and query frontends.
        read => "read",
        /// The write path: distributors and ingesters.
        write => "write",
        /// Compactor, index gateway, query scheduler and ruler.
        backend => "backend",
        /// Meta-role: read, write and backend in one process (monolithic).
        all => "all",
    }
}

role_toggles! {
    /// Tempo role toggles. Exactly one is true: a Tempo worker runs one target.
    #[schemars(transform = crate::api::schema::tempo_toggles)]
    TempoRoles {
        /// Searches and fetches traces.
        querier => "querier",
        /// Splits queries and serves the query API.
        query_frontend => "query-frontend",
        /// Keeps recent traces and writes blocks.
        ingester => "ingester",
        /// Receives spans (OTLP, Zipkin, Jaeger) and spreads them over the ingesters.
        distributor => "distributor",
        /// Compacts blocks and applies retention.
        compactor => "compactor",
        /// Derives span metrics and service graphs (optional; needs a remote-write URL).
        metrics_generator => "metrics-generator",
        /// Meta-role: every role in one process (monolithic).
        all => "all",
    }
}

/// The volume claim template of a pool's workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolStorage {
    /// Size of each worker's volume.
    #[serde(default = "default_volume_size")]
    #[schemars(schema_with = "crate::api::schema::quantity")]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for PoolStorage {
    fn default() -> Self {
        Self {
            size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_volume_size() -> Quantity {
    Quantity("10Gi".into())
}

/// What the operator observed of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The product of the pool's role block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Product>,
    /// The concrete roles the workers run, after meta-role expansion, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `targets` joined with commas, for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub targets_summary: String,
    /// Workers the pool's StatefulSets run.
    #[serde(default)]
    pub replicas: i32,
    /// Workers that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Workers running the latest pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// The label selector of the pool's pods, for the scale subresource (an autoscaler
    /// reads their metrics through it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// The worker leaving in the scale-down under way, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDownStatus>,
    /// Each zone's workers (zoned pools only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,
    /// The zone being rolled out, if any (zoned pools only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<ZoneRolloutStatus>,
    /// RolesValid, Ready, ScalingDown and, for zoned pools, Progressing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The worker leaving in a scale-down: what the operator has done so far, so that a
/// restarted operator goes on where it stopped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownStatus {
    /// The StatefulSet's replicas when the scale-down began.
    pub from_replicas: i32,
    /// The pod asked to leave (the highest).
    pub pod: String,
    /// Its UID and restart count: calls made to one incarnation are not made again, a
    /// new incarnation is asked again.
    pub pod_uid: String,
    #[serde(default)]
    pub pod_restarts: i32,
    /// How many of the leave calls it answered.
    #[serde(default)]
    pub calls_answered: u32,
    /// When it was first asked.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// One zone's workers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    pub name: String,
    /// Workers its StatefulSet runs.
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Workers running the latest pod template.
    #[serde(default)]
    pub updated_replicas: i32,
}

/// The zone a rollout is on, and since when: a restarted operator goes on there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneRolloutStatus {
    pub zone: String,
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}
