//! Runtime wiring: the watches, the controllers built on them, leader election, and
//! when the process stops.
//!
//! Every watch is built here rather than by `Controller::new`/`owns`/`watches`, for one
//! reason: kube-runtime backs off a controller's *merged* trigger stream as a whole. One
//! failing watch then pauses every other watch of that controller for up to a minute, and
//! nothing polls their connection attempts meanwhile, so those attempts outlive the
//! client's 30-second connect timeout and fail in turn. After an API-server restart the
//! errors kept each other going and the operator never reconciled again. Here each watch
//! has its own backoff ([`WatchBackoff`], through kube-runtime's `StreamBackoff`), records
//! its progress for the health endpoints, and logs and drops its own errors, so no error
//! reaches a controller.

use std::fmt::Debug;
use std::future::ready;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::children::Children;
use super::{Context, Options, RunError, cluster, leader, pool, tenant};
use crate::api::{GrafanaCluster, OfCluster, Tenant, WorkerPool};
use crate::plan::secrets::{read_by_workers, referenced};
use crate::render::labels::{CLUSTER, COMPONENT, Component, MANAGED_BY, MANAGER};
use crate::telemetry::{ControllerProgress, FAILING_WINDOW, Health, Watch};

/// The longest a failing watch waits before it tries again, before jitter (which adds up
/// to as much again). kube-runtime's default grows to 30 seconds: after an outage of a
/// minute, changes then waited up to a minute more to be seen. Twenty-one watches retrying
/// every few seconds are no load for an API server.
const WATCH_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(8);
const WATCH_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(500);
// A watch that still fails errors again within the window in which it counts as failing.
const _: () = assert!(2 * WATCH_RETRY_MAX.as_secs() < FAILING_WINDOW.as_secs());

/// A watch's own retry schedule: exponential from [`WATCH_RETRY_MIN`] to
/// [`WATCH_RETRY_MAX`] with jitter, started afresh by any event it delivers.
struct WatchBackoff(backon::ExponentialBackoff);

impl WatchBackoff {
    fn new() -> Self {
        use backon::BackoffBuilder;
        Self(
            backon::ExponentialBuilder::default()
                .with_min_delay(WATCH_RETRY_MIN)
                .with_max_delay(WATCH_RETRY_MAX)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// Runs the operator until SIGTERM or Ctrl-C. With leader election, waits (ready, as a
/// healthy standby) until it holds the lease, and stops with [`RunError::Lost`] if it
/// loses it.
pub async fn run(client: Client, options: Options, health: Health) -> Result<(), RunError> {
    let Some(election) = options.leader_election.clone() else {
        return run_controllers(client, options, health).await;
    };
    let mut campaign = leader::Campaign::start(&election).await?;
    health.progress.set_synced(true);
    tracing::info!(lease = %election.lease_name, identity = %election.identity, "waiting to lead");
    tokio::select! {
        elected = campaign.elected() => elected?,
        _ = shutdown_signal() => {
            campaign.resign().await;
            return Ok(());
        }
    }
    tracing::info!(identity = %election.identity, "leading");
    health.progress.set_synced(false);
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

/// Builds the watches of one controller: each with its own backoff and progress record.
struct Watches<'a> {
    client: &'a Client,
    options: &'a Options,
    health: &'a Health,
    controller: &'static str,
    progress: Arc<ControllerProgress>,
    /// What the operator applied, to drop the echoes of its own writes.
    children: Arc<Children>,
}

/// What a watched kind must be: namespaced, readable, and movable across tasks.
trait Watched:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

impl Watches<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.options.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    fn config(&self, config: watcher::Config) -> watcher::Config {
        config.timeout(self.options.watch_timeout_seconds)
    }

    fn record(&self, kind: &str) -> Arc<Watch> {
        self.health
            .progress
            .watch(&self.health.metrics, self.controller, kind)
    }

    /// The controller's own kind, reflected into `writer`'s store: an object triggers a
    /// reconcile when it appears, or its spec or metadata changed. The controller's own
    /// status writes do not: they would each cost a reconcile that finds nothing to do.
    fn main<K>(
        &self,
        writer: reflector::store::Writer<K>,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Watched,
    {
        let progress = self.progress.clone();
        only_changes(self.reflected_events(writer), |object: &K| {
            let meta = object.meta();
            fingerprint((
                meta.generation,
                &meta.labels,
                &meta.annotations,
                meta.deletion_timestamp.is_some(),
            ))
        })
        .applied_objects()
        .inspect_ok(move |_| progress.triggered(Instant::now()))
    }

    /// Every event of kind `K`, applied to `writer`'s store before it is passed on.
    fn reflected_events<K>(
        &self,
        writer: reflector::store::Writer<K>,
    ) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
    where
        K: Watched,
    {
        let events = watcher(self.api::<K>(), self.config(watcher::Config::default()))
            .backoff(WatchBackoff::new())
            .modify(forget_bookkeeping)
            .reflect(writer);
        tracked(events, self.record(&K::kind(&())))
    }

    /// Children of kind `K` (metadata only, labelled as ours) that `Owner` controls,
    /// reflected into `writer`'s store first.
    fn owned<K, Owner>(
        &self,
        writer: reflector::store::Writer<PartialObjectMeta<K>>,
    ) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Watched,
        PartialObjectMeta<K>: Watched,
        Owner: Resource<DynamicType = ()>,
    {
        let progress = self.progress.clone();
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
        let events = watcher(self.api::<PartialObjectMeta<K>>(), self.config(config))
            .backoff(WatchBackoff::new())
            .modify(forget_bookkeeping);
        // Services and PodDisruptionBudgets belong to clusters and to pools: each
        // controller takes (and caches) only its own, so that every event it gets is work
        // for it.
        let events = events.try_filter(|event| ready(event_of::<Owner>(event)));
        let events = events.reflect(writer);
        let children = self.children.clone();
        tracked(events, self.record(&K::kind(&())))
            .touched_objects()
            .try_filter(|child| ready(controlled_by::<Owner>(child)))
            .try_filter(move |child| ready(!children.is_echo::<K>(&child.metadata)))
            .inspect_ok(move |_| progress.triggered(Instant::now()))
    }

    /// [`owned`](Self::owned) for workloads whose status the owner reads: watched whole,
    /// so that only changes to what `reads` hashes trigger the owner (a StatefulSet's
    /// status changes a dozen times while its pods start; the owner reads four fields of
    /// it). Their metadata is reflected into `writer`'s store.
    fn owned_workload<K, Owner>(
        &self,
        writer: reflector::store::Writer<PartialObjectMeta<K>>,
        reads: fn(&K) -> u64,
    ) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
    where
        K: Watched,
        PartialObjectMeta<K>: Watched,
        Owner: Resource<DynamicType = ()>,
    {
        use kube::core::PartialObjectMetaExt;
        let progress = self.progress.clone();
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
        let events = watcher(self.api::<K>(), self.config(config))
            .backoff(WatchBackoff::new())
            .try_filter(|event| ready(event_of::<Owner>(event)));
        // The key covers what the metadata cache is read for too (generation, labels,
        // annotations, deletion), so the cache misses no change it needs.
        let events = only_changes(events, move |child: &K| {
            let meta = child.meta();
            fingerprint((
                meta.generation,
                &meta.labels,
                &meta.annotations,
                meta.deletion_timestamp.is_some(),
                reads(child),
            ))
        })
        .map_ok(|event| {
            let meta = |child: K| {
                let mut meta = child.meta().clone();
                meta.managed_fields = None;
                meta.into_response_partial::<K>()
            };
            match event {
                watcher::Event::Apply(child) => watcher::Event::Apply(meta(child)),
                watcher::Event::InitApply(child) => watcher::Event::InitApply(meta(child)),
                watcher::Event::Delete(child) => watcher::Event::Delete(meta(child)),
                watcher::Event::Init => watcher::Event::Init,
                watcher::Event::InitDone => watcher::Event::InitDone,
            }
        })
        .reflect(writer);
        let children = self.children.clone();
        tracked(events, self.record(&K::kind(&())))
            .touched_objects()
            .try_filter(move |child| ready(!children.is_echo::<K>(&child.metadata)))
            .inspect_ok(move |_| progress.triggered(Instant::now()))
    }

    /// Objects of kind `K` (`PartialObjectMeta` for metadata only), for a mapper to
    /// turn into the objects they concern.
    fn related<K>(
        &self,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Watched,
    {
        let events = watcher(self.api::<K>(), self.config(config)).backoff(WatchBackoff::new());
        tracked(events, self.record(&K::kind(&()))).touched_objects()
    }

    /// Clusters whose spec changed (a new generation), that appeared or were deleted;
    /// status and metadata updates are dropped. Each is recorded as the trigger of its
    /// pools (see [`Children::cluster`]) before it is passed on.
    fn cluster_spec_changes(
        &self,
    ) -> impl Stream<Item = Result<PartialObjectMeta<GrafanaCluster>, watcher::Error>> + Send + 'static
    {
        let children = self.children.clone();
        let events = watcher(
            self.api::<PartialObjectMeta<GrafanaCluster>>(),
            self.config(watcher::Config::default()),
        )
        .backoff(WatchBackoff::new());
        only_changes(tracked(events, self.record("GrafanaCluster")), |cluster| {
            fingerprint(cluster.meta().generation)
        })
        .inspect_ok(move |event| match event {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                let ns = c.namespace().unwrap_or_default();
                children.cluster_triggered(&ns, &c.name_any(), c.metadata.generation);
            }
            watcher::Event::Delete(c) => {
                let ns = c.namespace().unwrap_or_default();
                children.cluster_triggered(&ns, &c.name_any(), None);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        })
        .touched_objects()
    }

    /// Clusters that appeared or were deleted; every other change is dropped.
    fn clusters_coming_and_going(
        &self,
    ) -> impl Stream<Item = Result<PartialObjectMeta<GrafanaCluster>, watcher::Error>> + Send + 'static
    {
        let events = watcher(
            self.api::<PartialObjectMeta<GrafanaCluster>>(),
            self.config(watcher::Config::default()),
        )
        .backoff(WatchBackoff::new());
        only_changes(tracked(events, self.record("GrafanaCluster")), |cluster| {
            fingerprint(&cluster.meta().uid)
        })
        .touched_objects()
    }

    /// How each controller schedules its reconciles.
    fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default()
            .concurrency(self.options.concurrency)
            .debounce(self.options.debounce)
    }

    /// The clusters' shared configurations (ConfigMaps labelled `labels`), whole, and
    /// reflected into `writer`'s store before they are passed on.
    fn shared_configs(
        &self,
        labels: &str,
        writer: reflector::store::Writer<ConfigMap>,
    ) -> impl Stream<Item = Result<ConfigMap, watcher::Error>> + Send + 'static {
        let config = self.config(watcher::Config::default().labels(labels));
        let events = watcher(self.api::<ConfigMap>(), config)
            .backoff(WatchBackoff::new())
            .modify(forget_bookkeeping)
            .reflect(writer);
        tracked(events, self.record("ConfigMap")).touched_objects()
    }

    /// Tenants, reflected into `writer`'s store before they trigger, like the pools.
    /// Only a Tenant's spec, or its coming and going, concerns its cluster: its status is
    /// the cluster's own write.
    fn tenants(
        &self,
        writer: reflector::store::Writer<DeserializeGuard<Tenant>>,
    ) -> impl Stream<Item = Result<DeserializeGuard<Tenant>, watcher::Error>> + Send + 'static {
        only_changes(self.reflected_events(writer), |tenant| {
            let meta = tenant.meta();
            // The uid too: a Tenant deleted and created again is a new one, younger.
            fingerprint((
                &meta.uid,
                meta.generation,
                meta.deletion_timestamp.is_some(),
            ))
        })
        .touched_objects()
    }

    /// Secrets, by metadata only: their data is read when a reconcile needs it.
    fn secrets(
        &self,
    ) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
    {
        self.related(watcher::Config::default())
    }

    /// `mapper`, noting each non-empty answer as a trigger of this controller.
    fn counted<T, I>(
        &self,
        mapper: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> impl Fn(T) -> Vec<I::Item> + Send + Sync + 'static
    where
        I: IntoIterator,
    {
        let progress = self.progress.clone();
        move |object| {
            let requests: Vec<_> = mapper(object).into_iter().collect();
            if !requests.is_empty() {
                progress.triggered(Instant::now());
            }
            requests
        }
    }
}

/// Drops what no reconcile reads and what makes up most of a cached object: the managed
/// fields, and kubectl's copy of the whole object in an annotation.
fn forget_bookkeeping<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// A hash of what a watch's consumer reads of an object.
fn fingerprint(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Passes an object's event on only when `key` of the object changed since its last
/// event (or it is new, or deleted); the list markers pass too.
fn only_changes<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    key: impl Fn(&K) -> u64 + Send + 'static,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + 'static,
{
    let mut seen: std::collections::HashMap<ObjectRef<K>, u64> = std::collections::HashMap::new();
    events.try_filter(move |event| {
        let pass = match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                seen.insert(ObjectRef::from(object), key(object)) != Some(key(object))
            }
            watcher::Event::Delete(object) => {
                seen.remove(&ObjectRef::from(object));
                true
            }
            watcher::Event::Init | watcher::Event::InitDone => true,
        };
        ready(pass)
    })
}

/// Records a watch's events and errors in `watch`. Errors are logged with the kind that
/// failed and dropped: the watch itself retries after its own backoff.
fn tracked<K>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    watch: Arc<Watch>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Send + 'static,
{
    events.filter_map(move |item| {
        let now = Instant::now();
        ready(match item {
            Ok(event) => {
                watch.saw_event(matches!(event, watcher::Event::InitDone), now);
                Some(Ok(event))
            }
            Err(error) => {
                let error = error.to_string();
                tracing::warn!(watch = %watch.name(), %error, "watch failed; retrying after a backoff");
                watch.saw_error(&error, now);
                None
            }
        })
    })
}

/// Whether a watch event concerns children of `Owner`'s kind: an applied child that
/// `Owner` controls, or any other event (a deletion, the list markers).
fn event_of<Owner: Resource<DynamicType = ()>>(event: &watcher::Event<impl Resource>) -> bool {
    match event {
        watcher::Event::Apply(child) | watcher::Event::InitApply(child) => {
            controlled_by::<Owner>(child)
        }
        _ => true,
    }
}

/// Whether `Owner` controls `child` (its controller owner reference is of that kind).
fn controlled_by<Owner: Resource<DynamicType = ()>>(child: &impl Resource) -> bool {
    child.meta().owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == Owner::kind(&())
            && owner.api_version == Owner::api_version(&())
    })
}

/// Resolves once SIGTERM or Ctrl-C arrived; every clone resolves.
type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// The GrafanaCluster controller. A cluster reacts to its children, its pools (roles
/// and routes follow them) and the Secrets it names.
fn cluster_controller(
    w: &Watches,
    writer: reflector::store::Writer<DeserializeGuard<GrafanaCluster>>,
    store: &reflector::Store<DeserializeGuard<GrafanaCluster>>,
    (pools, tenants): (
        reflector::store::Writer<DeserializeGuard<WorkerPool>>,
        reflector::store::Writer<DeserializeGuard<Tenant>>,
    ),
    children: ClusterChildWriters,
) -> Controller<DeserializeGuard<GrafanaCluster>> {
    let cluster_store = store.clone();
    let tenants_by_secret = tenants.as_reader();
    Controller::for_stream(w.main(writer), store.clone())
        .with_config(w.controller_config())
        .owns_stream(w.owned_workload::<Deployment, GrafanaCluster>(
            children.deployments,
            |deployment| {
                let status = deployment.status.as_ref();
                fingerprint(status.map(|s| {
                    (
                        s.observed_generation,
                        s.replicas,
                        s.ready_replicas,
                        s.updated_replicas,
                        s.available_replicas,
                    )
                }))
            },
        ))
        .owns_stream(w.owned::<ConfigMap, GrafanaCluster>(children.config_maps))
        .owns_stream(w.owned::<Service, GrafanaCluster>(children.services))
        .owns_stream(w.owned::<PodDisruptionBudget, GrafanaCluster>(children.pdbs))
        .owns_stream(w.owned::<ServiceAccount, GrafanaCluster>(children.service_accounts))
        .owns_stream(w.owned::<Role, GrafanaCluster>(children.roles))
        .owns_stream(w.owned::<RoleBinding, GrafanaCluster>(children.role_bindings))
        .owns_stream(w.owned::<Secret, GrafanaCluster>(children.secrets))
        .watches_stream(
            w.tenants(tenants),
            w.counted(|tenant: DeserializeGuard<Tenant>| {
                let tenant = tenant.0.ok()?;
                Some(ObjectRef::new(&tenant.spec.cluster_ref).within(&tenant.namespace()?))
            }),
        )
        .watches_stream(
            // Reflected before it triggers, so a reconcile reads pools at least as new as
            // its trigger; and only what a cluster reads of its pools triggers: spec,
            // deletion, replica counts and the zone being rolled.
            only_changes(
                w.reflected_events(pools),
                |pool: &DeserializeGuard<WorkerPool>| {
                    let status = pool.0.as_ref().ok().and_then(|p| p.status.as_ref());
                    fingerprint((
                        pool.meta().generation,
                        pool.meta().deletion_timestamp.is_some(),
                        status.map(|s| (s.replicas, s.ready_replicas, s.updated_replicas)),
                        status.map(|s| s.observed_generation),
                        status.and_then(|s| s.scale_down.as_ref().map(|d| d.from_replicas)),
                        // The zone a rollout is on, which the cluster's Progressing names.
                        status.and_then(|s| s.rollout.as_ref().map(|r| r.zone.clone())),
                    ))
                },
            )
            .touched_objects(),
            w.counted(|pool: DeserializeGuard<WorkerPool>| {
                let pool = pool.0.ok()?;
                let ns = pool.namespace()?;
                Some(ObjectRef::new(&pool.spec.cluster_ref).within(&ns))
            }),
        )
        .watches_stream(
            w.secrets(),
            w.counted(move |secret: PartialObjectMeta<Secret>| {
                let mut clusters = clusters_using_secret(&cluster_store, &secret.metadata);
                clusters.extend(tenant_clusters(&tenants_by_secret, &secret.metadata));
                clusters
            }),
        )
}

/// The WorkerPool controller. A pool reacts to its own children, its cluster, the
/// cluster's shared config and the Secrets its workers read.
fn pool_controller(
    w: &Watches,
    writer: reflector::store::Writer<DeserializeGuard<WorkerPool>>,
    store: &reflector::Store<DeserializeGuard<WorkerPool>>,
    clusters: &reflector::Store<DeserializeGuard<GrafanaCluster>>,
    children: PoolChildWriters,
) -> Controller<DeserializeGuard<WorkerPool>> {
    let (pools_by_cluster, pools_by_config, pools_by_secret) =
        (store.clone(), store.clone(), store.clone());
    let clusters_for_pools = clusters.clone();
    let config_label = format!(
        "{MANAGED_BY}={MANAGER},{COMPONENT}={}",
        Component::Config.as_str()
    );
    Controller::for_stream(w.main(writer), store.clone())
        .with_config(w.controller_config())
        .owns_stream(w.owned_workload::<StatefulSet, WorkerPool>(
            children.statefulsets,
            |statefulset| {
                let status = statefulset.status.as_ref();
                fingerprint(status.map(|s| {
                    (
                        s.observed_generation,
                        s.replicas,
                        s.ready_replicas,
                        s.updated_replicas,
                    )
                }))
            },
        ))
        .owns_stream(w.owned::<Service, WorkerPool>(children.services))
        .owns_stream(w.owned::<PodDisruptionBudget, WorkerPool>(children.pdbs))
        .watches_stream(
            // A pool reads its cluster's spec, never its status: a cluster's own status
            // writes would otherwise reconcile every one of its pools.
            w.cluster_spec_changes(),
            w.counted(move |cluster: PartialObjectMeta<GrafanaCluster>| {
                let ns = cluster.namespace().unwrap_or_default();
                pools_of(&pools_by_cluster, &ns, &cluster.name_any())
            }),
        )
        .watches_stream(
            // Whole, and reflected before they trigger: pools read them from this cache.
            w.shared_configs(&config_label, children.shared_configs),
            w.counted(move |config: ConfigMap| {
                let ns = config.namespace().unwrap_or_default();
                let cluster = config.labels().get(CLUSTER).cloned().unwrap_or_default();
                pools_of(&pools_by_config, &ns, &cluster)
            }),
        )
        .watches_stream(
            w.secrets(),
            w.counted(move |secret: PartialObjectMeta<Secret>| {
                // Only the Secrets the workers read: the agent's or the TLS Secret's
                // rotation is no pool's business.
                clusters_whose_workers_read(&clusters_for_pools, &secret.metadata)
                    .into_iter()
                    .flat_map(|cluster| {
                        pools_of(
                            &pools_by_secret,
                            cluster.namespace.as_deref().unwrap_or_default(),
                            &cluster.name,
                        )
                    })
                    .collect::<Vec<_>>()
            }),
        )
}

/// The Tenant controller: a Tenant reacts to its own spec, and to its cluster appearing
/// or going (a cluster that exists reports on its Tenants itself).
fn tenant_controller(
    w: &Watches,
    writer: reflector::store::Writer<DeserializeGuard<Tenant>>,
    store: &reflector::Store<DeserializeGuard<Tenant>>,
) -> Controller<DeserializeGuard<Tenant>> {
    let tenants_by_cluster = store.clone();
    Controller::for_stream(w.main(writer), store.clone())
        .with_config(w.controller_config())
        .watches_stream(
            w.clusters_coming_and_going(),
            w.counted(move |cluster: PartialObjectMeta<GrafanaCluster>| {
                let ns = cluster.namespace().unwrap_or_default();
                tenants_of(&tenants_by_cluster, &ns, &cluster.name_any())
            }),
        )
}

/// What the controllers' reconciles share; Events name this pod as their reporter.
fn context(
    client: &Client,
    options: &Options,
    health: &Health,
    caches: (
        reflector::Store<DeserializeGuard<WorkerPool>>,
        reflector::Store<DeserializeGuard<Tenant>>,
    ),
    children: Arc<Children>,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Arc::new(Context::new(
        client.clone(),
        options.settings.clone(),
        health.clone(),
        Recorder::new(client.clone(), reporter),
        &[cluster::CONTROLLER, pool::CONTROLLER, tenant::CONTROLLER],
        caches,
        children,
    ))
}

/// Runs the controllers until SIGTERM or Ctrl-C, marking `health` synced once every
/// watch cache has filled; gives up when that takes longer than the options allow.
async fn run_controllers(client: Client, options: Options, health: Health) -> Result<(), RunError> {
    // Filled by the cluster controller's pool watch before it triggers (see `reflected`).
    let (cluster_pools, cluster_pools_writer) = reflector::store::<DeserializeGuard<WorkerPool>>();
    let (cluster_store, cluster_writer) = reflector::store::<DeserializeGuard<GrafanaCluster>>();
    let (tenants, cluster_tenants_writer) = reflector::store::<DeserializeGuard<Tenant>>();
    let (children, child_writers) = child_caches(cluster_store.clone());
    let ctx = context(
        &client,
        &options,
        &health,
        (cluster_pools.clone(), tenants.clone()),
        Arc::new(children),
    );
    let [cluster_watches, pool_watches, tenant_watches] = watches(&client, &options, &health, &ctx);
    // One signal stops every controller gracefully, and tells a requested stop from one
    // that nobody asked for.
    let shutdown: Shutdown = shutdown_signal().boxed().shared();
    let (pool_store, pool_writer) = reflector::store::<DeserializeGuard<WorkerPool>>();
    // Its own Tenant cache: the cluster controller's is filled by a watch that triggers
    // clusters.
    let (tenant_store, tenant_writer) = reflector::store::<DeserializeGuard<Tenant>>();
    let controllers = Controllers {
        clusters: cluster_controller(
            &cluster_watches,
            cluster_writer,
            &cluster_store,
            (cluster_pools_writer, cluster_tenants_writer),
            child_writers.cluster,
        )
        .graceful_shutdown_on(shutdown.clone()),
        pools: pool_controller(
            &pool_watches,
            pool_writer,
            &pool_store,
            &cluster_store,
            child_writers.pool,
        )
        .graceful_shutdown_on(shutdown.clone()),
        tenants: tenant_controller(&tenant_watches, tenant_writer, &tenant_store)
            .graceful_shutdown_on(shutdown.clone()),
    };
    let controllers = reconcile_all(controllers, ctx.clone());
    let mut controllers = std::pin::pin!(controllers);
    // Awaited in the controllers' own task, never in another: a store's readiness keeps a
    // single waker (kube-runtime's DelayedInit), so a waiter in a second task would take
    // the wake-up from the controller that also waits for it, or lose its own.
    let synced = tokio::time::timeout(
        options.cache_sync_timeout,
        filled(
            cluster_store,
            [pool_store, cluster_pools],
            [tenants, tenant_store],
            &ctx,
        ),
    );
    tokio::select! {
        _ = &mut controllers => return stopped(&ctx, shutdown.peek().is_some()),
        // No reconcile runs before the caches filled, so there is nothing to finish; and
        // kube-runtime's graceful shutdown would wait for caches that stopped filling.
        _ = shutdown.clone() => {
            tracing::info!("stopping before the caches filled");
            return Ok(());
        }
        synced = synced => match synced {
            Ok(true) => {
                health.progress.set_synced(true);
                tracing::info!("watch caches synced; ready");
            }
            // The controllers dropped their stores: they are stopping.
            Ok(false) => {}
            Err(_) => return Err(RunError::CachesNotSynced(options.cache_sync_timeout)),
        },
    }
    controllers.await;
    stopped(&ctx, shutdown.peek().is_some())
}

/// The three controllers, built and not yet run.
struct Controllers {
    clusters: Controller<DeserializeGuard<GrafanaCluster>>,
    pools: Controller<DeserializeGuard<WorkerPool>>,
    tenants: Controller<DeserializeGuard<Tenant>>,
}

/// Runs every controller's reconciles, each outcome reported to its controller's progress.
async fn reconcile_all(
    Controllers {
        clusters,
        pools,
        tenants,
    }: Controllers,
    ctx: Arc<Context>,
) {
    let cluster_progress = ctx.controller(cluster::CONTROLLER);
    let pool_progress = ctx.controller(pool::CONTROLLER);
    let tenant_progress = ctx.controller(tenant::CONTROLLER);
    futures::join!(
        clusters
            .run(cluster::reconcile, cluster::error_policy, ctx.clone())
            .for_each(|result| {
                report(&cluster_progress, result);
                ready(())
            }),
        pools
            .run(pool::reconcile, pool::error_policy, ctx.clone())
            .for_each(|result| {
                report(&pool_progress, result);
                ready(())
            }),
        tenants
            .run(tenant::reconcile, tenant::error_policy, ctx.clone())
            .for_each(|result| {
                report(&tenant_progress, result);
                ready(())
            }),
    );
}

/// Whether every store filled; false when one was dropped (its controller is stopping).
async fn filled(
    clusters: reflector::Store<DeserializeGuard<GrafanaCluster>>,
    pools: [reflector::Store<DeserializeGuard<WorkerPool>>; 2],
    tenants: [reflector::Store<DeserializeGuard<Tenant>>; 2],
    ctx: &Context,
) -> bool {
    let [pools, cluster_pools] = pools;
    let [cluster_tenants, tenants] = tenants;
    clusters.wait_until_ready().await.is_ok()
        && pools.wait_until_ready().await.is_ok()
        && cluster_pools.wait_until_ready().await.is_ok()
        && cluster_tenants.wait_until_ready().await.is_ok()
        && tenants.wait_until_ready().await.is_ok()
        && ctx.children.filled().await
}

/// The watches of each controller.
fn watches<'a>(
    client: &'a Client,
    options: &'a Options,
    health: &'a Health,
    ctx: &Context,
) -> [Watches<'a>; 3] {
    let cluster_watches = Watches {
        client,
        options,
        health,
        controller: cluster::CONTROLLER,
        progress: ctx.controller(cluster::CONTROLLER),
        children: ctx.children.clone(),
    };
    let of = |controller| Watches {
        controller,
        progress: ctx.controller(controller),
        children: ctx.children.clone(),
        ..cluster_watches
    };
    let (pool_watches, tenant_watches) = (of(pool::CONTROLLER), of(tenant::CONTROLLER));
    [cluster_watches, pool_watches, tenant_watches]
}

/// The writers of the children's metadata caches, one per kind, for the watches that
/// fill them.
struct ChildWriters {
    cluster: ClusterChildWriters,
    pool: PoolChildWriters,
}

/// The caches the pool controller's watches fill.
struct PoolChildWriters {
    shared_configs: reflector::store::Writer<ConfigMap>,
    statefulsets: reflector::store::Writer<PartialObjectMeta<StatefulSet>>,
    services: reflector::store::Writer<PartialObjectMeta<Service>>,
    pdbs: reflector::store::Writer<PartialObjectMeta<PodDisruptionBudget>>,
}

/// The caches the cluster controller's watches fill.
struct ClusterChildWriters {
    deployments: reflector::store::Writer<PartialObjectMeta<Deployment>>,
    config_maps: reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
    services: reflector::store::Writer<PartialObjectMeta<Service>>,
    pdbs: reflector::store::Writer<PartialObjectMeta<PodDisruptionBudget>>,
    service_accounts: reflector::store::Writer<PartialObjectMeta<ServiceAccount>>,
    roles: reflector::store::Writer<PartialObjectMeta<Role>>,
    role_bindings: reflector::store::Writer<PartialObjectMeta<RoleBinding>>,
    secrets: reflector::store::Writer<PartialObjectMeta<Secret>>,
}

/// A metadata cache for each kind of child, registered for the reconciles to read.
fn child_caches(
    clusters: reflector::Store<DeserializeGuard<GrafanaCluster>>,
) -> (Children, ChildWriters) {
    fn cache<K: super::children::Child, Owner: Resource<DynamicType = ()>>(
        children: &mut Children,
    ) -> reflector::store::Writer<PartialObjectMeta<K>> {
        let (store, writer) = reflector::store();
        children.register::<K>(&Owner::kind(&()), store);
        writer
    }
    let (shared_configs, shared_configs_writer) = reflector::store();
    let mut children = Children::new(shared_configs, clusters);
    let c = &mut children;
    let writers = ChildWriters {
        cluster: ClusterChildWriters {
            deployments: cache::<_, GrafanaCluster>(c),
            config_maps: cache::<_, GrafanaCluster>(c),
            services: cache::<_, GrafanaCluster>(c),
            pdbs: cache::<_, GrafanaCluster>(c),
            service_accounts: cache::<_, GrafanaCluster>(c),
            roles: cache::<_, GrafanaCluster>(c),
            role_bindings: cache::<_, GrafanaCluster>(c),
            secrets: cache::<_, GrafanaCluster>(c),
        },
        pool: PoolChildWriters {
            shared_configs: shared_configs_writer,
            statefulsets: cache::<_, WorkerPool>(c),
            services: cache::<_, WorkerPool>(c),
            pdbs: cache::<_, WorkerPool>(c),
        },
    };
    (children, writers)
}

/// The controllers' streams ended: a clean stop when a signal asked for it, else an error
/// that ends the process, so that Kubernetes restarts it.
fn stopped(ctx: &Context, signalled: bool) -> Result<(), RunError> {
    if signalled {
        return Ok(());
    }
    ctx.controllers_stopped();
    Err(RunError::ControllersStopped)
}

/// Logs the outcome of one reconcile and notes that the controller answered.
fn report<K: Resource, E: std::error::Error, Q: std::error::Error>(
    progress: &ControllerProgress,
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, Q>>,
) {
    use kube::runtime::controller::Error as Run;
    match result {
        Ok((object, _)) => {
            progress.answered();
            tracing::debug!(controller = progress.name(), %object, "reconciled");
        }
        // A child's event arrived after its owner was deleted: nothing to do.
        Err(Run::ObjectNotFound(object)) => {
            progress.answered();
            tracing::debug!(controller = progress.name(), %object, "gone");
        }
        Err(Run::ReconcilerFailed(error, object)) => {
            progress.answered();
            tracing::warn!(controller = progress.name(), %object, %error, "reconcile failed");
        }
        Err(error) => tracing::warn!(controller = progress.name(), %error, "controller error"),
    }
}

/// The clusters (from the cache) that reference the Secret.
fn clusters_using_secret(
    store: &reflector::Store<DeserializeGuard<GrafanaCluster>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<ObjectRef<DeserializeGuard<GrafanaCluster>>> {
    clusters_reading(store, secret, referenced)
}

/// The clusters (from the cache) whose workers read the Secret.
fn clusters_whose_workers_read(
    store: &reflector::Store<DeserializeGuard<GrafanaCluster>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<ObjectRef<DeserializeGuard<GrafanaCluster>>> {
    clusters_reading(store, secret, read_by_workers)
}

/// The clusters (from the cache) among whose Secrets `names_in` lists this one.
fn clusters_reading(
    store: &reflector::Store<DeserializeGuard<GrafanaCluster>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    names_in: fn(&crate::api::GrafanaClusterSpec) -> Vec<&str>,
) -> Vec<ObjectRef<DeserializeGuard<GrafanaCluster>>> {
    clusters_naming_secret(store, secret, |cluster| {
        let names = names_in(&cluster.spec);
        names
            .contains(&secret_name(secret))
            .then(|| cluster.name_any())
    })
}

/// The clusters of the Tenants (from the cache) whose credentials name the Secret.
fn tenant_clusters(
    store: &reflector::Store<DeserializeGuard<Tenant>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<ObjectRef<DeserializeGuard<GrafanaCluster>>> {
    clusters_naming_secret(store, secret, |tenant| {
        let names = crate::plan::tenants::referenced(std::slice::from_ref(tenant));
        names
            .contains(&secret_name(secret))
            .then(|| tenant.spec.cluster_ref.clone())
    })
}

fn secret_name(secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    secret.name.as_deref().unwrap_or_default()
}

/// The clusters that objects of `store` in the Secret's namespace lead to: `names`
/// gives an object's cluster when the object names the Secret.
fn clusters_naming_secret<K>(
    store: &reflector::Store<DeserializeGuard<K>>,
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    names: impl Fn(&K) -> Option<String>,
) -> Vec<ObjectRef<DeserializeGuard<GrafanaCluster>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let ns = secret.namespace.as_deref().unwrap_or_default();
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|object| object.meta().namespace.as_deref() == Some(ns))
        .filter_map(|object| Some(ObjectRef::new(&names(object)?).within(ns)))
        .collect()
}

/// Pools (from the cache) that belong to cluster `ns/name`.
fn pools_of(
    store: &reflector::Store<DeserializeGuard<WorkerPool>>,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<DeserializeGuard<WorkerPool>>> {
    of_cluster(store, ns, name)
}

/// Tenants (from the cache) of cluster `ns/name`.
fn tenants_of(
    store: &reflector::Store<DeserializeGuard<Tenant>>,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<DeserializeGuard<Tenant>>> {
    of_cluster(store, ns, name)
}

/// Objects (from the cache) in `ns` whose `clusterRef` is `name`, those being deleted
/// too (their deletion concerns their cluster).
fn of_cluster<K: OfCluster<DynamicType = ()> + Clone>(
    store: &reflector::Store<DeserializeGuard<K>>,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|object| object.namespace().as_deref() == Some(ns) && object.cluster_ref() == name)
        .map(|object| ObjectRef::new(&object.name_any()).within(ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn service(owner_kind: &str, controller: bool) -> Service {
        let mut service = Service::default();
        service.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "lgtm.coordinated.dev/v1alpha1".into(),
            kind: owner_kind.into(),
            name: "x".into(),
            uid: "u".into(),
            controller: Some(controller),
            ..OwnerReference::default()
        }]);
        service
    }

    #[test]
    fn children_go_to_the_controller_of_their_owner_kind() {
        assert!(controlled_by::<GrafanaCluster>(&service(
            "GrafanaCluster",
            true
        )));
        assert!(!controlled_by::<WorkerPool>(&service(
            "GrafanaCluster",
            true
        )));
        assert!(controlled_by::<WorkerPool>(&service("WorkerPool", true)));
        assert!(!controlled_by::<WorkerPool>(&service("WorkerPool", false)));
        assert!(!controlled_by::<WorkerPool>(&Service::default()));
    }

    #[tokio::test]
    async fn a_watch_records_its_errors_and_passes_only_its_events_on() {
        let health = Health::default();
        health.progress.set_synced(true);
        let watch = health
            .progress
            .watch(&health.metrics, "workerpool", "StatefulSet");
        let events: Vec<watcher::Result<watcher::Event<Service>>> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
        ];
        let passed: Vec<_> = tracked(futures::stream::iter(events), watch)
            .collect()
            .await;
        assert_eq!(passed.len(), 2, "the error stays with the watch");
        assert!(passed.iter().all(Result::is_ok));
        let unready = health
            .progress
            .readiness(Instant::now())
            .expect_err("the watch fails now");
        assert!(unready.contains("workerpool StatefulSet"), "{unready}");
        let text = health.metrics.encode();
        assert!(
            text.contains(
                "lgtm_operator_watch_errors_total{controller=\"workerpool\",kind=\"StatefulSet\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "lgtm_operator_watch_lists_total{controller=\"workerpool\",kind=\"StatefulSet\"} 1"
        ));
    }

    #[tokio::test]
    async fn only_changes_passes_new_changed_and_deleted_objects() {
        let service = |name: &str, generation: i64| {
            let mut s = Service::default();
            s.metadata.name = Some(name.into());
            s.metadata.namespace = Some("ns".into());
            s.metadata.generation = Some(generation);
            s
        };
        let events: Vec<watcher::Result<watcher::Event<Service>>> = vec![
            Ok(watcher::Event::Apply(service("a", 1))),
            Ok(watcher::Event::Apply(service("a", 1))),
            Ok(watcher::Event::Apply(service("a", 2))),
            Ok(watcher::Event::Apply(service("b", 1))),
            Ok(watcher::Event::Delete(service("a", 2))),
            Ok(watcher::Event::Apply(service("a", 2))),
        ];
        let passed: Vec<(String, Option<i64>)> = only_changes(futures::stream::iter(events), |s| {
            fingerprint(s.metadata.generation)
        })
        .touched_objects()
        .map_ok(|s| (s.name_any(), s.metadata.generation))
        .try_collect()
        .await
        .expect("no error");
        let expected = [("a", 1), ("a", 2), ("b", 1), ("a", 2), ("a", 2)]
            .map(|(n, g)| (n.to_string(), Some(g)));
        assert_eq!(
            passed, expected,
            "the repeated generation 1 is dropped, nothing else"
        );
    }

    #[test]
    fn a_watch_retries_within_its_failing_window_and_starts_over_after_an_event() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::new();
        let delays: Vec<_> = (&mut backoff).take(20).collect();
        assert!(delays[0] >= WATCH_RETRY_MIN && delays[0] <= 2 * WATCH_RETRY_MIN);
        assert!(delays.iter().all(|d| *d <= 2 * WATCH_RETRY_MAX));
        assert!(delays[19] >= WATCH_RETRY_MAX);
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d <= 2 * WATCH_RETRY_MIN));
    }
}
