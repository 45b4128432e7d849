//! What the operator knows of its children without asking the API server: the watch
//! caches of their metadata, and what it last applied to each.
//!
//! Two costs go with it. A reconcile that changes nothing sends no write: an object is
//! applied again only when what the operator wants of it changed, or when the object
//! changed since the operator last applied it (an edit to revert, or a deletion).
//! Pruning reads the cache instead of listing every kind on every reconcile.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::core::NamespaceResourceScope;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::GrafanaCluster;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Kinds the operator applies and prunes.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Which version of a child the operator last applied: its generation where the kind
/// has one (status updates do not change it, spec edits do), else its resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    Generation(i64),
    Resource(String),
}

impl Version {
    fn of(meta: &kube::api::ObjectMeta) -> Option<Self> {
        match meta.generation {
            Some(generation) => Some(Self::Generation(generation)),
            None => meta.resource_version.clone().map(Self::Resource),
        }
    }
}

/// What the operator last applied to one child.
#[derive(Debug, Clone)]
struct Applied {
    /// A hash of the object as the operator wanted it.
    wanted: u64,
    /// The object's version just after that apply.
    version: Version,
    /// Its resourceVersion then: a watch event of exactly that version is the echo of
    /// the operator's own write.
    resource_version: Option<String>,
}

type Key = (String, String, String);

fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Key {
    (K::kind(&()).to_string(), namespace.into(), name.into())
}

/// Which cache holds children of kind `K` of owners of kind `owner`. Kinds that both
/// owners create (Services, PodDisruptionBudgets) have a cache per owner, each filled
/// by the watch that triggers that owner's reconciles: a reconcile then never reads a
/// cache older than its trigger.
fn cache_key<K: Resource<DynamicType = ()>>(owner: &str) -> String {
    format!("{}/{owner}", K::kind(&()))
}

/// One kind's metadata cache, with its type erased.
struct Cache {
    /// A `Store<PartialObjectMeta<K>>`.
    store: Box<dyn Any + Send + Sync>,
    /// Resolves once the store has filled: true, or false if it was dropped.
    ready: Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
}

/// The children's metadata caches, by kind, and the record of what was applied.
pub struct Children {
    stores: HashMap<String, Cache>,
    applied: Mutex<HashMap<Key, Applied>>,
    /// The clusters' shared configurations, whole: every pool reconcile reads one.
    shared_configs: Store<k8s_openapi::api::core::v1::ConfigMap>,
    /// Whether each cluster's pods get IPv6 addresses only, by cluster UID: fixed for
    /// a cluster's life, and read from its gossip Service once.
    ipv6: Mutex<HashMap<String, bool>>,
    /// The clusters, whole, as the cluster controller's watch reflects them.
    clusters: Store<DeserializeGuard<GrafanaCluster>>,
    /// The newest generation of each cluster (namespace, name) that triggered its pools,
    /// [`DELETED`] once deleted: a cached cluster older than that is not read.
    triggered: Mutex<HashMap<(String, String), i64>>,
}

/// The generation recorded for a deleted cluster: newer than any cached copy.
const DELETED: i64 = i64::MAX;

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field("kinds", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A hash of what the operator wants of `object`.
pub fn wanted<K: Child>(object: &K) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(object)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl Children {
    /// No cache yet but that of the shared configurations.
    pub fn new(
        shared_configs: Store<k8s_openapi::api::core::v1::ConfigMap>,
        clusters: Store<DeserializeGuard<GrafanaCluster>>,
    ) -> Self {
        Self {
            stores: HashMap::new(),
            applied: Mutex::default(),
            shared_configs,
            ipv6: Mutex::default(),
            clusters,
            triggered: Mutex::default(),
        }
    }

    /// Records that cluster `ns/name` at `generation` (`None`: deleted) triggered its
    /// pools.
    pub fn cluster_triggered(&self, ns: &str, name: &str, generation: Option<i64>) {
        self.triggered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((ns.into(), name.into()), generation.unwrap_or(DELETED));
    }

    /// Cluster `ns/name` from the cache when the cache is at least as new as what
    /// triggered its pools: `Some(None)` when it does not exist, `None` when the cache
    /// may be behind (then it is read from the API server).
    pub fn cluster(&self, ns: &str, name: &str) -> Option<Option<GrafanaCluster>> {
        let triggered = self
            .triggered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(ns.to_string(), name.to_string()))
            .copied();
        let cached = self
            .clusters
            .get(&ObjectRef::new(name).within(ns))
            .and_then(|guard| guard.0.as_ref().ok().cloned());
        match (cached, triggered) {
            (Some(cluster), Some(generation))
                if cluster.metadata.generation.unwrap_or(0) >= generation =>
            {
                Some(Some(cluster))
            }
            (Some(cluster), None) => Some(Some(cluster)),
            (None, None) => Some(None),
            _ => None,
        }
    }

    /// The cached shared configuration `ns/name`.
    pub fn shared_config(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
        self.shared_configs
            .get(&ObjectRef::new(name).within(ns))
            .map(|config| (*config).clone())
    }

    /// Whether the pods of the cluster with `uid` have IPv6 addresses only, once known.
    pub fn ipv6(&self, uid: &str) -> Option<bool> {
        self.ipv6
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(uid)
            .copied()
    }

    /// Records whether the pods of the cluster with `uid` have IPv6 addresses only.
    pub fn set_ipv6(&self, uid: &str, ipv6: bool) {
        self.ipv6
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(uid.to_string(), ipv6);
    }

    /// Adds the metadata cache of kind `K` for owners of kind `owner`.
    pub fn register<K: Child>(&mut self, owner: &str, store: Store<PartialObjectMeta<K>>) {
        let ready = {
            let store = store.clone();
            Box::new(move || {
                let store = store.clone();
                async move { store.wait_until_ready().await.is_ok() }.boxed()
            })
        };
        let cache = Cache {
            store: Box::new(store),
            ready,
        };
        self.stores.insert(cache_key::<K>(owner), cache);
    }

    fn store<K: Child>(&self, owner: &str) -> Option<&Store<PartialObjectMeta<K>>> {
        self.stores
            .get(&cache_key::<K>(owner))?
            .store
            .downcast_ref()
    }

    /// Whether applying `object` now would change nothing: the operator applied the same
    /// object before, and the cache shows the object as it was just after, with every
    /// label and annotation the operator sets.
    pub fn unchanged<K: Child>(&self, owner: &str, object: &K, wanted: u64) -> bool {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let Some(applied) = self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key::<K>(&namespace, &name))
            .cloned()
        else {
            return false;
        };
        let Some(live) = self
            .store::<K>(owner)
            .and_then(|store| store.get(&ObjectRef::new(&name).within(&namespace)))
        else {
            return false;
        };
        applied.wanted == wanted
            && Version::of(&live.metadata).as_ref() == Some(&applied.version)
            && live.metadata.deletion_timestamp.is_none()
            && contains(live.labels(), object.labels())
            && contains(live.annotations(), object.annotations())
    }

    /// Records that `applied` is what the API server answered to applying a wanted
    /// object whose hash is `wanted`.
    pub fn remember<K: Child>(&self, applied: &K, wanted: u64) {
        let Some(version) = Version::of(applied.meta()) else {
            return;
        };
        let namespace = applied.namespace().unwrap_or_default();
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                key::<K>(&namespace, &applied.name_any()),
                Applied {
                    wanted,
                    version,
                    resource_version: applied.meta().resource_version.clone(),
                },
            );
    }

    /// Whether `child` is exactly what the operator's last apply of it left: the watch
    /// event of the operator's own write, which tells its owner nothing new.
    pub fn is_echo<K: Resource<DynamicType = ()>>(&self, child: &kube::api::ObjectMeta) -> bool {
        let (Some(name), Some(namespace), Some(version)) =
            (&child.name, &child.namespace, &child.resource_version)
        else {
            return false;
        };
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key::<K>(namespace, name))
            .is_some_and(|applied| applied.resource_version.as_ref() == Some(version))
    }

    /// Forgets a child, once deleted.
    pub fn forget<K: Child>(&self, namespace: &str, name: &str) {
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&key::<K>(namespace, name));
    }

    /// The cached children of kind `K` of `owner`'s kind in `namespace` labelled
    /// `label`; `None` when there is no such cache.
    pub fn labelled<K: Child>(
        &self,
        owner: &str,
        namespace: &str,
        label: (&str, &str),
    ) -> Option<Vec<PartialObjectMeta<K>>> {
        let store = self.store::<K>(owner)?;
        Some(
            store
                .state()
                .iter()
                .filter(|meta| meta.namespace().as_deref() == Some(namespace))
                .filter(|meta| meta.labels().get(label.0).map(String::as_str) == Some(label.1))
                .map(|meta| (**meta).clone())
                .collect(),
        )
    }

    /// Waits until every cache has filled; false when one was dropped.
    pub async fn filled(&self) -> bool {
        if self.shared_configs.wait_until_ready().await.is_err() {
            return false;
        }
        for cache in self.stores.values() {
            if !(cache.ready)().await {
                return false;
            }
        }
        true
    }
}

/// Whether every key of `wanted` is in `live` with the same value.
fn contains(live: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| live.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn cluster(generation: i64) -> DeserializeGuard<GrafanaCluster> {
        let mut cluster = GrafanaCluster::new("c", serde_json::from_value(serde_json::json!({
            "product": "loki",
            "storage": {"s3": {"endpoint": "e", "bucket": "b", "credentialsSecret": {"name": "s"}}}
        })).expect("spec"));
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.generation = Some(generation);
        DeserializeGuard(Ok(cluster))
    }

    #[test]
    fn a_cached_cluster_older_than_its_trigger_is_not_read() {
        let (configs, _configs_writer) = kube::runtime::reflector::store();
        let (clusters, mut writer) = kube::runtime::reflector::store();
        let children = Children::new(configs, clusters);
        let generation =
            |c: Option<Option<GrafanaCluster>>| c.map(|c| c.map(|c| c.metadata.generation));

        assert_eq!(
            generation(children.cluster("ns", "c")),
            Some(None),
            "unknown: none"
        );
        writer.apply_watcher_event(&Event::Apply(cluster(1)));
        assert_eq!(generation(children.cluster("ns", "c")), Some(Some(Some(1))));
        children.cluster_triggered("ns", "c", Some(2));
        assert_eq!(
            generation(children.cluster("ns", "c")),
            None,
            "the cache is behind"
        );
        writer.apply_watcher_event(&Event::Apply(cluster(2)));
        assert_eq!(generation(children.cluster("ns", "c")), Some(Some(Some(2))));
        children.cluster_triggered("ns", "c", None);
        assert_eq!(
            generation(children.cluster("ns", "c")),
            None,
            "deleted: read it"
        );
        writer.apply_watcher_event(&Event::Delete(cluster(2)));
        assert_eq!(
            generation(children.cluster("ns", "c")),
            None,
            "deleted: read it"
        );
    }
}
