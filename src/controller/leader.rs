//! Lease-based leader election: several replicas of the operator may run, and only the
//! holder of a `coordination.k8s.io` Lease reconciles. A replica that loses the lease
//! stops, so that a fresh start competes again from a clean state.
//!
//! Split-brain is prevented by this replica's own clock, not by hearing that the lease
//! was lost. The lease library renews in the background and only reports a *change* of
//! holder: when renewals fail (an API server too loaded to answer, a partition), it keeps
//! reporting "leading" while the lease runs out and another replica takes it. So every
//! renewal the API server accepts is witnessed on the lease's own connection
//! ([`Renewed`]), and the replica stops [`FENCE_MARGIN`] before the last accepted
//! renewal expires ([`Campaign::lost`]), whatever the library believes.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::watch;

use super::RunError;

/// How long before the lease's expiry, as the other replicas compute it, this replica
/// stops reconciling: room for clock skew between replicas and for stopping.
pub const FENCE_MARGIN: Duration = Duration::from_secs(2);

/// Which Lease decides, and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    /// Unique among the replicas (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal; a crashed leader is replaced this fast.
    pub duration_seconds: u64,
    /// How long before expiry the holder renews it.
    pub grace_seconds: u64,
    /// The API server the lease is kept on. The lease gets a connection of its own, so
    /// that its renewals never queue behind reconciles and are witnessed.
    pub api: kube::Config,
}

impl LeaderElection {
    pub fn new(lease_name: &str, lease_namespace: &str, identity: &str, api: kube::Config) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            // Renewed every 5 seconds: two renewals may fail before the fence stops
            // this replica, 2 seconds before another one could take the lease.
            duration_seconds: 15,
            grace_seconds: 10,
            api,
        }
    }

    fn path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
            self.lease_namespace, self.lease_name
        )
    }
}

/// A running election: whether this replica leads, and the task that keeps the lease.
pub struct Campaign {
    leading: watch::Receiver<bool>,
    renewed: Renewed,
    duration: Duration,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Campaign {
    /// Joins the election (the Lease is created when missing).
    pub async fn start(election: &LeaderElection) -> Result<Self, RunError> {
        let renewed = Renewed::default();
        let client = kube::client::ClientBuilder::try_from(election.api.clone())
            .map_err(RunError::LeaseClient)?
            .with_layer(&WitnessRenewals {
                path: election.path(),
                renewed: renewed.clone(),
            })
            .build();
        // Checked here so the library's own panics on bad values cannot happen.
        let grace = election
            .grace_seconds
            .clamp(1, election.duration_seconds.max(2) - 1);
        let params = LeaseParams::new(&election.identity, election.duration_seconds.max(2), grace)
            .with_field_manager(format!("lgtm-operator-{}", election.identity));
        let manager = LeaseManager::new(
            client,
            &election.lease_name,
            &election.lease_namespace,
            params,
            LeaseCreateMode::AutoCreate,
        )
        .await
        .map_err(|source| RunError::Lease {
            namespace: election.lease_namespace.clone(),
            name: election.lease_name.clone(),
            source,
        })?;
        let (leading, task) = manager.watch().await;
        Ok(Self {
            leading,
            renewed,
            duration: Duration::from_secs(election.duration_seconds.max(2)),
            task,
        })
    }

    /// Waits until this replica holds the lease and has seen a renewal of its own
    /// accepted (a restarted replica may find itself holder without having written).
    pub async fn elected(&mut self) -> Result<(), RunError> {
        loop {
            if *self.leading.borrow_and_update() && self.fence().is_some() {
                return Ok(());
            }
            let changed = tokio::time::timeout(Duration::from_millis(200), self.leading.changed());
            if let Ok(Err(_)) = changed.await {
                return Err(RunError::Lost);
            }
        }
    }

    /// When this replica must stop reconciling: [`FENCE_MARGIN`] before its last
    /// accepted renewal expires. `None` before any renewal was accepted.
    fn fence(&self) -> Option<SystemTime> {
        fence(self.renewed.last()?, self.duration)
    }

    /// Resolves when this replica no longer holds the lease: the library says so, or
    /// the fence passed without an accepted renewal.
    pub async fn lost(&mut self) {
        let mut leading = self.leading.clone();
        let library_says_lost = async move {
            loop {
                if !*leading.borrow_and_update() || leading.changed().await.is_err() {
                    return;
                }
            }
        };
        let fence_passed = async {
            loop {
                let now = SystemTime::now();
                let Some(fence) = self.fence() else { return };
                match fence.duration_since(now) {
                    // Checked often: the wall clock is what the other replicas use.
                    Ok(left) => tokio::time::sleep(left.min(Duration::from_millis(250))).await,
                    Err(_) => {
                        tracing::error!(
                            renewed = ?self.renewed.last(),
                            "the leader lease was not renewed in time; stopping before another replica may take it"
                        );
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = library_says_lost => {}
            _ = fence_passed => {}
        }
    }

    /// Gives the lease up, so another replica takes over at once.
    /// Bounded: an API server that does not answer must not keep the process from
    /// stopping (the lease then simply expires).
    pub async fn resign(self) {
        const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);
        drop(self.leading);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader lease task failed"),
            Err(_) => {
                abort.abort();
                tracing::warn!(
                    "the API server did not answer the release of the leader lease; it will expire"
                );
            }
        }
    }
}

/// [`FENCE_MARGIN`] before a lease renewed at `renewed` for `duration` expires.
fn fence(renewed: SystemTime, duration: Duration) -> Option<SystemTime> {
    (renewed + duration).checked_sub(FENCE_MARGIN)
}

/// The `renewTime` of the last write to the lease that the API server accepted.
#[derive(Clone, Default, Debug)]
struct Renewed(Arc<Mutex<Option<SystemTime>>>);

impl Renewed {
    fn last(&self) -> Option<SystemTime> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, renew_time: SystemTime) {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|last| last < renew_time) {
            *last = Some(renew_time);
        }
    }
}

/// The `spec.renewTime` a lease write sets, if any.
fn renew_time(body: &[u8]) -> Option<SystemTime> {
    let patch: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = patch.pointer("/spec/renewTime")?.as_str()?;
    let timestamp: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(timestamp))
}

/// A tower layer on the lease's client that records, for every write to the lease at
/// `path` that the API server accepts, the `renewTime` the write set. That time, not
/// the time of sending, is what the other replicas count the lease's expiry from.
struct WitnessRenewals {
    path: String,
    renewed: Renewed,
}

impl<S> tower::Layer<S> for WitnessRenewals {
    type Service = Witnessed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Witnessed {
            inner,
            path: self.path.clone(),
            renewed: self.renewed.clone(),
        }
    }
}

struct Witnessed<S> {
    inner: S,
    path: String,
    renewed: Renewed,
}

impl<S, B> tower::Service<Request<Body>> for Witnessed<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let write = matches!(*request.method(), Method::PATCH | Method::PUT)
            && request.uri().path() == self.path;
        let body = write.then(|| request.body().try_clone()).flatten();
        let answer = self.inner.call(request);
        let renewed = self.renewed.clone();
        async move {
            let response = answer.await?;
            if let Some(body) = body
                && response.status().is_success()
            {
                use http_body_util::BodyExt;
                if let Ok(bytes) = body.collect().await
                    && let Some(time) = renew_time(&bytes.to_bytes())
                {
                    renewed.record(time);
                }
            }
            Ok(response)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_is_before_the_expiry_that_other_replicas_compute() {
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let fence = fence(renewed, Duration::from_secs(15)).expect("fence");
        assert_eq!(fence, SystemTime::UNIX_EPOCH + Duration::from_secs(1_013));
    }

    #[test]
    fn a_renewal_is_read_from_the_patch_that_set_it() {
        let body = br#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","spec":{"renewTime":"2026-12-01T10:00:00.123456Z","leaseDurationSeconds":15}}"#;
        let time = renew_time(body).expect("renewTime");
        let expected: k8s_openapi::jiff::Timestamp =
            "2026-12-01T10:00:00.123456Z".parse().expect("timestamp");
        assert_eq!(time, SystemTime::from(expected));
        assert_eq!(renew_time(br#"{"spec":{"holderIdentity":null}}"#), None);
        assert_eq!(renew_time(b"not json"), None);
    }

    #[test]
    fn only_later_renewals_move_the_fence() {
        let renewed = Renewed::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        renewed.record(t);
        renewed.record(t - Duration::from_secs(5));
        assert_eq!(renewed.last(), Some(t));
    }
}
