//! The reconcile loops. Each runs the same pipeline: fetch what the object references,
//! validate it (pure), build the desired children (pure, in `render`), apply them, and
//! report status computed from what was observed.
//!
//! - [`cluster`]: a GrafanaCluster's gateway, agent, Services and shared configuration;
//! - [`pool`]: a WorkerPool's StatefulSet, Service and PodDisruptionBudget.

mod apply;
pub(crate) mod cluster;
mod conditions;
mod error;
mod leader;
mod pool;
mod runtime;
pub(crate) mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use std::sync::Mutex;

pub use error::Error;
pub use leader::LeaderElection;
pub use runtime::run;

use crate::api::{GrafanaCluster, WorkerPool};
use crate::render::Settings;
use crate::telemetry::{ControllerProgress, Health, Metrics, backoff};

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    pub settings: Settings,
    /// Reconcile only while holding this lease; always when `None`.
    pub leader_election: Option<LeaderElection>,
    /// How long the watch caches may take to fill before the operator gives up and
    /// exits, so that Kubernetes restarts it instead of it idling unready.
    pub cache_sync_timeout: Duration,
    /// How long the API server keeps one watch request open before the watch starts a
    /// new one from where it left off.
    pub watch_timeout_seconds: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: None,
            settings: Settings::default(),
            leader_election: None,
            cache_sync_timeout: Duration::from_secs(120),
            // kube-runtime's own default.
            watch_timeout_seconds: 290,
        }
    }
}

/// Why the operator stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot take part in leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the leader lease; stopping so a fresh start competes again")]
    Lost,
    #[error(
        "the watch caches did not fill within {0:?}; stopping so a fresh start connects again (is the API server reachable, and does the operator's RBAC allow list and watch?)"
    )]
    CachesNotSynced(Duration),
    #[error("the controllers stopped unasked; stopping so a fresh start watches again")]
    ControllersStopped,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The progress of each controller, by name, for the health endpoints.
    controllers: HashMap<&'static str, Arc<ControllerProgress>>,
    recorder: Recorder,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Whether the PrometheusRule CRD is installed, and when that was last looked up.
    prometheus_rules: Mutex<Option<(std::time::Instant, bool)>>,
}

impl Context {
    fn new(client: Client, settings: Settings, health: Health, recorder: Recorder) -> Self {
        let controllers = [cluster::CONTROLLER, pool::CONTROLLER]
            .into_iter()
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
        }
    }

    /// The progress record of `controller` (one of the two controllers' names).
    fn controller(&self, controller: &'static str) -> Arc<ControllerProgress> {
        self.controllers
            .get(controller)
            .cloned()
            .unwrap_or_else(|| panic!("no controller named {controller}"))
    }

    /// Marks every controller stopped, so `/healthz` fails until the process exits.
    fn controllers_stopped(&self) {
        for progress in self.controllers.values() {
            progress.stopped();
        }
    }

    /// Publishes an Event about `object`; a failure to do so is only logged.
    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    }

    /// Whether the Prometheus Operator's PrometheusRule kind is served, looked up through
    /// API discovery at most once a minute (CRDs come and go rarely).
    async fn prometheus_rules_installed(&self) -> bool {
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

/// Clusters (from the cache) that name the Secret.
fn clusters_using_secret(
    store: &kube::runtime::reflector::Store<DeserializeGuard<GrafanaCluster>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> std::vec::IntoIter<ObjectRef<DeserializeGuard<GrafanaCluster>>> {
    let name = secret.name.clone().unwrap_or_default();
    let ns = secret.namespace.clone().unwrap_or_default();
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|cluster| {
            cluster.namespace().as_deref() == Some(ns.as_str())
                && secrets::referenced(&cluster.spec).contains(&name.as_str())
        })
        .map(|cluster| ObjectRef::new(&cluster.name_any()).within(&ns))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Pools (from the cache) that belong to cluster `ns/name`.
fn pools_of(
    store: &kube::runtime::reflector::Store<DeserializeGuard<WorkerPool>>,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<DeserializeGuard<WorkerPool>>> {
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|pool| pool.namespace().as_deref() == Some(ns) && pool.spec.cluster_ref == name)
        .map(|pool| ObjectRef::new(&pool.name_any()).within(ns))
        .collect()
}

/// Runs `reconcile` on an object read through a [`DeserializeGuard`], timing it. An
/// object that cannot be read as its kind is logged and waits for an edit; a success
/// resets the object's retry backoff.
async fn guarded<'a, K, F, Fut>(
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

/// The error policy of both controllers: count the failure, retry with growing backoff.
fn retry<K: Resource<DynamicType = ()>>(
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

/// The Event a condition reason deserves: a Warning for what the user must fix, a
/// Normal one for what they should know, none for passing states (readiness, rollouts).
fn event_type(reason: &str) -> Option<EventType> {
    match reason {
        "MissingRoles" | "NoWorkerPools" | "WaitingForClusterConfig" => Some(EventType::Normal),
        "SecretNotFound"
        | "SecretKeyMissing"
        | "InvalidRetention"
        | "InvalidConfigOverrides"
        | "InvalidPools"
        | "ProductMismatch"
        | "ClusterNotFound"
        | "InvalidRoles"
        | "InvalidPodOverrides"
        | "StorageNotReady"
        | "RegionRequired" => Some(EventType::Warning),
        _ => None,
    }
}

/// Publishes one Event per reason among the conditions that turned bad since `previous`.
async fn report_problems<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    bad_when_true: &[&str],
) {
    let mut reported = std::collections::BTreeSet::new();
    for failing in conditions::newly_failing(previous, current, bad_when_true) {
        let Some(type_) = event_type(&failing.reason) else {
            continue;
        };
        // Two conditions often fail for one reason: one Event says it.
        if reported.insert(failing.reason.clone()) {
            ctx.event(
                object,
                type_,
                &failing.reason,
                "Reconcile",
                failing.message.clone(),
            )
            .await;
        }
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
