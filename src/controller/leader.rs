//! Lease-based leader election: several replicas of the operator may run, and only the
//! holder of a `coordination.k8s.io` Lease reconciles. A replica that loses the lease
//! stops, so that a fresh start competes again from a clean state.

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::watch;

use super::RunError;

/// Which Lease decides, and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    /// Unique among the replicas (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal; a crashed leader is replaced this fast.
    pub duration_seconds: u64,
    /// How long before expiry the holder renews it.
    pub grace_seconds: u64,
}

impl LeaderElection {
    pub fn new(lease_name: &str, lease_namespace: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            duration_seconds: 15,
            grace_seconds: 5,
        }
    }
}

/// A running election: whether this replica leads, and the task that keeps the lease.
pub struct Campaign {
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Campaign {
    /// Joins the election (the Lease is created when missing).
    pub async fn start(client: Client, election: &LeaderElection) -> Result<Self, RunError> {
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
        Ok(Self { leading, task })
    }

    /// Waits until this replica holds the lease.
    pub async fn elected(&mut self) -> Result<(), RunError> {
        loop {
            if *self.leading.borrow_and_update() {
                return Ok(());
            }
            if self.leading.changed().await.is_err() {
                return Err(RunError::Lost);
            }
        }
    }

    /// Resolves when this replica no longer holds the lease.
    pub async fn lost(&mut self) {
        loop {
            if !*self.leading.borrow_and_update() || self.leading.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up, so another replica takes over at once.
    pub async fn resign(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the leader lease"),
            Err(error) => tracing::warn!(%error, "the leader lease task failed"),
        }
    }
}
