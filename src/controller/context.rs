//! What every reconcile shares ([`Context`]), and the wrapper each reconcile runs in:
//! timing, progress for the health endpoints, and the retry backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use super::Error;
use super::children::Child;
use super::children::Children;
use super::probes::Probes;
use super::scale_down::Leaves;
use super::zone_rollout::Rollouts;
use crate::api::{GrafanaCluster, OfCluster, Tenant, WorkerPool};
use crate::render::Settings;
use crate::telemetry::{ControllerProgress, Health, Metrics, Progress, backoff};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The progress of each controller, by name, for the health endpoints.
    controllers: HashMap<&'static str, Arc<ControllerProgress>>,
    pub(super) recorder: Recorder,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Whether the PrometheusRule CRD is installed, and when that was last looked up.
    prometheus_rules: Mutex<Option<(std::time::Instant, bool)>>,
    /// Every WorkerPool, reflected by the watch that triggers cluster reconciles: a
    /// cluster reads its pools here rather than listing them on each reconcile.
    pools: Store<DeserializeGuard<WorkerPool>>,
    /// Every Tenant, reflected by the watch that triggers cluster reconciles.
    tenants: Store<DeserializeGuard<Tenant>>,
    /// The children's metadata caches and what was last applied to each.
    pub(super) children: Arc<Children>,
    /// Whether every watch cache has filled (until then, pools and children are listed).
    progress: Arc<Progress>,
    /// What each cluster's storage probe last found.
    pub(super) probes: Probes,
    /// The calls made to leaving workers, and the replicas applied to each pool.
    pub(super) leaves: Arc<Leaves>,
    /// The rollout status last written to each zoned pool.
    pub(super) rollouts: Rollouts,
}

impl Context {
    pub(super) fn new(
        client: Client,
        settings: Settings,
        health: Health,
        recorder: Recorder,
        controllers: &[&'static str],
        (pools, tenants): (
            Store<DeserializeGuard<WorkerPool>>,
            Store<DeserializeGuard<Tenant>>,
        ),
        children: Arc<Children>,
    ) -> Self {
        let controllers = controllers
            .iter()
            .copied()
            .map(|name| (name, health.progress.controller(name)))
            .collect();
        Self {
            client,
            settings,
            metrics: health.metrics,
            controllers,
            recorder,
            failures: Mutex::default(),
            prometheus_rules: Mutex::default(),
            pools,
            tenants,
            children,
            progress: health.progress,
            probes: Probes::default(),
            leaves: Arc::default(),
            rollouts: Rollouts::default(),
        }
    }

    /// The live pools of namespace `ns` whose StatefulSet names could be `pool`'s, from
    /// the watch cache: every other pool when `pool` is zoned, else the zoned ones (two
    /// unzoned pools never share a name). Only those are cloned, so an unzoned pool
    /// among many costs no copy. Empty until every cache has filled.
    pub(super) fn cached_clash_candidates(&self, ns: &str, pool: &WorkerPool) -> Vec<WorkerPool> {
        if !self.progress.synced() {
            return Vec::new();
        }
        let zoned = !pool.spec.zones.is_empty();
        self.pools
            .state()
            .iter()
            .filter_map(|guard| guard.0.as_ref().ok())
            .filter(|other| {
                other.namespace().as_deref() == Some(ns)
                    && other.meta().deletion_timestamp.is_none()
                    && (zoned || !other.spec.zones.is_empty())
            })
            .cloned()
            .collect()
    }

    /// The live pools of cluster `name` in `ns` from the watch cache; `None` until every
    /// cache has filled.
    pub(super) fn cached_pools(&self, ns: &str, name: &str) -> Option<Vec<WorkerPool>> {
        self.cached_of_cluster(&self.pools, ns, name)
    }

    /// The live Tenants of cluster `name` in `ns` from the watch cache; `None` until
    /// every cache has filled.
    pub(super) fn cached_tenants(&self, ns: &str, name: &str) -> Option<Vec<Tenant>> {
        self.cached_of_cluster(&self.tenants, ns, name)
    }

    /// The live members of cluster `name` in `ns` in `store`, sorted by name as a list
    /// returns them; `None` until every cache has filled.
    fn cached_of_cluster<K: OfCluster<DynamicType = ()> + Clone>(
        &self,
        store: &Store<DeserializeGuard<K>>,
        ns: &str,
        name: &str,
    ) -> Option<Vec<K>> {
        if !self.progress.synced() {
            return None;
        }
        let mut members: Vec<K> = store
            .state()
            .iter()
            .filter_map(|guard| guard.0.as_ref().ok())
            .filter(|member| member.belongs_to(ns, name))
            .cloned()
            .collect();
        members.sort_by_key(|member| member.name_any());
        Some(members)
    }

    /// The children of kind `K` of an `owner` kind in `ns` labelled `label`, from the
    /// watch cache; `None`
    /// until every cache has filled, or for a kind without a cache.
    pub(super) fn cached_children<K: Child>(
        &self,
        owner: &str,
        ns: &str,
        label: (&str, &str),
    ) -> Option<Vec<PartialObjectMeta<K>>> {
        if !self.progress.synced() {
            return None;
        }
        self.children.labelled(owner, ns, label)
    }

    /// Cluster `ns/name` from the watch cache when it is at least as new as what last
    /// triggered its pools (`Some(None)`: there is none); `None` until every cache has
    /// filled, or when the cache may be behind.
    pub(super) fn cached_cluster(&self, ns: &str, name: &str) -> Option<Option<GrafanaCluster>> {
        if !self.progress.synced() {
            return None;
        }
        self.children.cluster(ns, name)
    }

    /// The shared configuration `ns/name` from the watch cache (`Some(None)`: there is
    /// none); `None` until every cache has filled.
    pub(super) fn cached_shared_config(&self, ns: &str, name: &str) -> Option<Option<ConfigMap>> {
        self.progress
            .synced()
            .then(|| self.children.shared_config(ns, name))
    }

    /// The progress record of `controller` (one of the controllers' names).
    pub(super) fn controller(&self, controller: &'static str) -> Arc<ControllerProgress> {
        self.controllers
            .get(controller)
            .cloned()
            .unwrap_or_else(|| panic!("no controller named {controller}"))
    }

    /// Marks every controller stopped, so `/healthz` fails until the process exits.
    pub(super) fn controllers_stopped(&self) {
        for progress in self.controllers.values() {
            progress.stopped();
        }
    }

    /// Whether the Prometheus Operator's PrometheusRule kind is served, looked up through
    /// API discovery at most once a minute (CRDs come and go rarely).
    pub(super) async fn prometheus_rules_installed(&self) -> bool {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(60);
        let cached = *self
            .prometheus_rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, installed)) = cached
            && at.elapsed() < FRESH
        {
            return installed;
        }
        let resource = crate::render::observability::prometheus_rule_resource();
        let installed = match self
            .client
            .list_api_group_resources(&resource.api_version)
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == resource.plural),
            Err(kube::Error::Api(e)) if e.code == 404 => false,
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether PrometheusRules are served");
                cached.is_some_and(|(_, installed)| installed)
            }
        };
        *self
            .prometheus_rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((std::time::Instant::now(), installed));
        installed
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }

    fn retry_after_failure(&self, key: String) -> Action {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key).or_default();
        let delay = backoff(*count);
        *count = count.saturating_add(1);
        Action::requeue(delay)
    }
}

/// Runs `reconcile` on an object read through a [`DeserializeGuard`], timing it. An
/// object that cannot be read as its kind is logged and waits for an edit; a success
/// resets the object's retry backoff.
pub(super) async fn guarded<'a, K, F, Fut>(
    guard: &'a DeserializeGuard<K>,
    ctx: &'a Context,
    controller: &'static str,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(&'a K) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let _timer = ctx.metrics.reconcile_started(controller);
    let _under_way = ctx.controller(controller).reconciling(
        format!(
            "{}/{}",
            guard.meta().namespace.as_deref().unwrap_or_default(),
            guard.meta().name.as_deref().unwrap_or_default()
        ),
        std::time::Instant::now(),
    );
    let object = match &guard.0 {
        Ok(object) => object,
        Err(invalid) => {
            tracing::warn!(controller, error = %invalid.error, "cannot read the object; waiting for an edit");
            return Ok(Action::await_change());
        }
    };
    let action = reconcile(object).await?;
    ctx.succeeded(&backoff_key(object));
    Ok(action)
}

/// The error policy of every controller: count the failure, retry with growing backoff.
pub(super) fn retry<K: Resource<DynamicType = ()>>(
    guard: &DeserializeGuard<K>,
    error: &Error,
    ctx: &Context,
    controller: &'static str,
) -> Action {
    ctx.metrics.failed(controller, error.metric_label());
    match &guard.0 {
        Ok(object) => ctx.retry_after_failure(backoff_key(object)),
        Err(_) => Action::await_change(),
    }
}

/// The key the retry backoff is counted under.
fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}
