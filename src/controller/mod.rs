//! The reconcile loops. Each runs the same pipeline: read what the object references
//! ([`read`]), plan (pure, in [`crate::plan`]), apply the planned children and prune the
//! others ([`apply`]), and write the status the plan gives.
//!
//! - [`cluster`]: a GrafanaCluster's gateway, agent, Services and shared configuration;
//! - [`pool`]: a WorkerPool's StatefulSet, Service and PodDisruptionBudget;
//! - [`tenant`]: the status of a Tenant whose cluster does not exist (a cluster writes
//!   its own Tenants' statuses);
//! - [`runtime`]: the watches and the three controllers, with leader election;
//! - [`context`]: what every reconcile shares, and its retry backoff;
//! - [`children`]: the children's watch caches, and what was last applied to each;
//! - [`events`]: an Event per condition that turns bad;
//! - [`probes`]: what each cluster's storage probe last found, and when to probe again;
//! - [`scale_down`]: a pool's scale-down, one worker asked to leave at a time.

mod apply;
mod children;
mod cluster;
mod context;
mod error;
mod events;
mod leader;
mod pool;
mod probes;
mod read;
mod runtime;
mod scale_down;
mod tenant;
mod zone_rollout;

use std::time::Duration;

pub use context::Context;
pub use error::Error;
pub use leader::LeaderElection;
pub use runtime::run;

use crate::render::Settings;

/// Reconciles each controller runs at once: enough to keep a busy API server's latency
/// hidden, few enough that a burst of clusters cannot starve other clients.
pub const DEFAULT_CONCURRENCY: u16 = 16;
/// The wait after a change for more changes to the same object.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

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
    /// How many objects each controller reconciles at once (0: no bound).
    pub concurrency: u16,
    /// How long a controller waits for more changes to an object before it reconciles
    /// it, so that a burst of changes costs one reconcile.
    pub debounce: Duration,
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
            concurrency: DEFAULT_CONCURRENCY,
            debounce: DEFAULT_DEBOUNCE,
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
    #[error("cannot build the leader lease's API client: {0}")]
    LeaseClient(#[source] kube::Error),
    #[error("lost the leader lease; stopping so a fresh start competes again")]
    Lost,
    #[error(
        "the watch caches did not fill within {0:?}; stopping so a fresh start connects again (is the API server reachable, and does the operator's RBAC allow list and watch?)"
    )]
    CachesNotSynced(Duration),
    #[error("the controllers stopped unasked; stopping so a fresh start watches again")]
    ControllersStopped,
}
