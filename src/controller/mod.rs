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
pub(crate) mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::sync::Mutex;

pub use error::Error;
pub use leader::LeaderElection;

use crate::api::{GrafanaCluster, WorkerPool};
use crate::render::Settings;
use crate::render::labels::{CLUSTER, COMPONENT, Component, MANAGED_BY, MANAGER};
use crate::telemetry::{Health, Metrics, backoff};

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: None,
            settings: Settings::default(),
            leader_election: None,
            cache_sync_timeout: Duration::from_secs(120),
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
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Whether the PrometheusRule CRD is installed, and when that was last looked up.
    prometheus_rules: Mutex<Option<(std::time::Instant, bool)>>,
}

impl Context {
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

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Children are found by the managed-by label, so the watches see only ours.
fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"))
}

/// Runs the operator until SIGTERM or Ctrl-C. With leader election, waits (ready, as a
/// healthy standby) until it holds the lease, and stops with [`RunError::Lost`] if it
/// loses it.
pub async fn run(client: Client, options: Options, health: Health) -> Result<(), RunError> {
    let Some(election) = options.leader_election.clone() else {
        return run_controllers(client, options, health).await;
    };
    let mut campaign = leader::Campaign::start(client.clone(), &election).await?;
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = %election.lease_name, identity = %election.identity, "waiting to lead");
    tokio::select! {
        elected = campaign.elected() => elected?,
        _ = shutdown_signal() => {
            campaign.resign().await;
            return Ok(());
        }
    }
    tracing::info!(identity = %election.identity, "leading");
    health.ready.store(false, Ordering::Relaxed);
    let outcome = tokio::select! {
        outcome = run_controllers(client, options, health) => outcome,
        _ = campaign.lost() => Err(RunError::Lost),
    };
    campaign.resign().await;
    outcome
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs both controllers until SIGTERM or Ctrl-C, marking `health` ready once every
/// watch cache has synced; gives up when that takes longer than the options allow.
async fn run_controllers(client: Client, options: Options, health: Health) -> Result<(), RunError> {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: options.settings.clone(),
        metrics: health.metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        failures: Mutex::default(),
        prometheus_rules: Mutex::default(),
    });
    let ns = &options.namespace;

    let clusters = Controller::new(
        scoped::<DeserializeGuard<GrafanaCluster>>(&client, ns),
        watcher::Config::default(),
    );
    let pools = Controller::new(
        scoped::<DeserializeGuard<WorkerPool>>(&client, ns),
        watcher::Config::default(),
    );
    let cluster_store = clusters.store();
    let pool_store = pools.store();
    // Secrets are watched by metadata only: their data is read when a reconcile needs it.
    let secrets = || scoped::<PartialObjectMeta<Secret>>(&client, ns);

    // A cluster reacts to its children, its pools (roles and routes follow them) and
    // the Secrets it names.
    let clusters_by_secret = cluster_store.clone();
    let clusters = clusters
        .owns(scoped::<Deployment>(&client, ns), managed())
        .owns(scoped::<ConfigMap>(&client, ns), managed())
        .owns(scoped::<Service>(&client, ns), managed())
        .owns(scoped::<PodDisruptionBudget>(&client, ns), managed())
        .owns(scoped::<ServiceAccount>(&client, ns), managed())
        .owns(scoped::<Role>(&client, ns), managed())
        .owns(scoped::<RoleBinding>(&client, ns), managed())
        .watches(
            scoped::<DeserializeGuard<WorkerPool>>(&client, ns),
            watcher::Config::default(),
            |pool| {
                let pool = pool.0.ok()?;
                let ns = pool.namespace()?;
                Some(ObjectRef::new(&pool.spec.cluster_ref).within(&ns))
            },
        )
        .watches(secrets(), watcher::Config::default(), move |secret| {
            clusters_using_secret(&clusters_by_secret, &secret.metadata)
        })
        .shutdown_on_signal();

    // A pool reacts to its own children, its cluster, the cluster's shared config and
    // the Secrets its workers read.
    let (pools_by_cluster, pools_by_config, pools_by_secret) =
        (pool_store.clone(), pool_store.clone(), pool_store.clone());
    let clusters_for_pools = cluster_store.clone();
    let pools = pools
        .owns(scoped::<StatefulSet>(&client, ns), managed())
        .owns(scoped::<Service>(&client, ns), managed())
        .owns(scoped::<PodDisruptionBudget>(&client, ns), managed())
        .watches(
            scoped::<DeserializeGuard<GrafanaCluster>>(&client, ns),
            watcher::Config::default(),
            move |cluster| {
                let ns = cluster.namespace().unwrap_or_default();
                pools_of(&pools_by_cluster, &ns, &cluster.name_any())
            },
        )
        .watches(
            scoped::<ConfigMap>(&client, ns),
            watcher::Config::default().labels(&format!(
                "{MANAGED_BY}={MANAGER},{COMPONENT}={}",
                Component::Config.as_str()
            )),
            move |config| {
                let ns = config.namespace().unwrap_or_default();
                let cluster = config.labels().get(CLUSTER).cloned().unwrap_or_default();
                pools_of(&pools_by_config, &ns, &cluster)
            },
        )
        .watches(secrets(), watcher::Config::default(), move |secret| {
            clusters_using_secret(&clusters_for_pools, &secret.metadata)
                .flat_map(|cluster| {
                    pools_of(
                        &pools_by_secret,
                        cluster.namespace.as_deref().unwrap_or_default(),
                        &cluster.name,
                    )
                })
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal();

    let controllers = async {
        futures::join!(
            clusters
                .run(cluster::reconcile, cluster::error_policy, ctx.clone())
                .for_each(|result| async move { report("grafanacluster", result) }),
            pools
                .run(pool::reconcile, pool::error_policy, ctx)
                .for_each(|result| async move { report("workerpool", result) }),
        )
    };
    let mut controllers = std::pin::pin!(controllers);
    // Awaited in the controllers' own task, never in another: a store's readiness keeps a
    // single waker (kube-runtime's DelayedInit), so a waiter in a second task would take
    // the wake-up from the controller that also waits for it, or lose its own.
    let synced = tokio::time::timeout(options.cache_sync_timeout, async {
        cluster_store.wait_until_ready().await.is_ok()
            && pool_store.wait_until_ready().await.is_ok()
    });
    tokio::select! {
        _ = &mut controllers => return Ok(()),
        // No reconcile runs before the caches filled, so there is nothing to finish; and
        // kube-runtime's graceful shutdown would wait for caches that stopped filling.
        _ = shutdown_signal() => {
            tracing::info!("stopping before the caches filled");
            return Ok(());
        }
        synced = synced => match synced {
            Ok(true) => {
                health.ready.store(true, Ordering::Relaxed);
                tracing::info!("watch caches synced; ready");
            }
            // The controllers dropped their stores: they are stopping.
            Ok(false) => {}
            Err(_) => return Err(RunError::CachesNotSynced(options.cache_sync_timeout)),
        },
    }
    controllers.await;
    Ok(())
}

/// Logs the outcome of one reconcile.
fn report<K: Resource, E: std::error::Error, Q: std::error::Error>(
    controller: &'static str,
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, Q>>,
) {
    use kube::runtime::controller::Error as Run;
    match result {
        Ok((object, _)) => tracing::debug!(controller, %object, "reconciled"),
        // A child's event arrived after its owner was deleted: nothing to do.
        Err(Run::ObjectNotFound(object)) => tracing::debug!(controller, %object, "gone"),
        Err(error) => tracing::warn!(controller, %error, "reconcile failed"),
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
        | "StorageNotReady" => Some(EventType::Warning),
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
