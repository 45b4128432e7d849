//! Every reason a condition can give, in one table (part of the API users read): its name (the `reason` field of the
//! condition and of its Event), the Event it deserves, and what it means.

/// The Event a condition reason deserves when its condition turns bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something the user must fix: an Event of type Warning.
    Warning,
    /// Something the user should know, which fixes itself or needs a choice: Normal.
    Notice,
    /// A passing state (readiness, a rollout): no Event.
    Quiet,
}

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident: $severity:ident,)+) => {
        /// Why a condition has its status. `as_str()` is the reason Kubernetes shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The reason as Kubernetes shows it, e.g. `MissingRoles`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)+
                }
            }

            /// The Event this reason deserves when its condition turns bad.
            pub fn severity(self) -> Severity {
                match self {
                    $(Reason::$variant => Severity::$severity,)+
                }
            }

            /// What the reason means, from its documentation.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Reason::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

reasons! {
    // Consistent
    /// No WorkerPool names the cluster.
    NoWorkerPools: Notice,
    /// Some role the product needs has no valid pool with replicas.
    MissingRoles: Notice,
    /// Every role the product needs has a pool.
    AllRequiredRolesPresent: Quiet,
    // StorageReady, TLSReady
    /// A referenced Secret does not exist.
    SecretNotFound: Warning,
    /// A referenced Secret lacks a key the workers or the gateway read.
    SecretKeyMissing: Warning,
    /// Loki on AWS S3 needs `storage.s3.region`, and the endpoint names none.
    RegionRequired: Warning,
    /// The bucket (or container) does not exist, or the credentials cannot see it.
    BucketNotFound: Warning,
    /// The bucket refused the credentials: a wrong key, or a key without the right to
    /// write, read, list and delete.
    AccessDenied: Warning,
    /// The storage endpoint did not answer: a wrong host or port, DNS, a network policy,
    /// or a server that is down.
    EndpointUnreachable: Warning,
    /// The TLS handshake with the storage endpoint failed: a CA that does not match the
    /// server's certificate, or TLS spoken to a plain-HTTP endpoint.
    TLSError: Warning,
    /// The storage probe failed for another reason; the message gives the server's answer.
    StorageProbeFailed: Warning,
    /// The operator wrote, read, listed and deleted a probe object with the workers'
    /// credentials.
    BucketVerified: Quiet,
    /// `storage.probe` is false: the Secrets hold every key, but the bucket was not checked.
    NotChecked: Quiet,
    /// The TLS Secret holds a certificate and a key.
    SecretFound: Quiet,
    // ConfigValid
    /// `spec.retention` cannot be read, or is not whole days for Loki.
    InvalidRetention: Warning,
    /// `spec.configOverrides` does not merge into a valid configuration.
    InvalidConfigOverrides: Warning,
    /// The filesystem backend takes a single `all` pool of at most one replica.
    FilesystemNeedsOneWorker: Warning,
    /// The spec gives a valid product configuration (ConfigValid), or the pool's roles
    /// run in its cluster (RolesValid).
    Valid: Quiet,
    // Available
    /// No gateway pod is ready.
    GatewayNotReady: Quiet,
    /// Some required role has no ready worker.
    RolesNotReady: Quiet,
    /// The gateway and every required role have a ready pod.
    Available: Quiet,
    // Degraded (True is the problem)
    /// Some pools are not deployed: wrong product, or roles the product refuses.
    InvalidPools: Warning,
    /// A ring has zoned and unzoned pools with replicas (the middle of a migration to
    /// zones): its zone awareness stays off until the unzoned pools are scaled to 0.
    ZonesMixed: Warning,
    /// Some pools run fewer ready workers than asked.
    PoolsNotReady: Quiet,
    /// Everything runs as asked.
    AsExpected: Quiet,
    // Progressing
    /// The gateway or some pools are rolling out.
    RollingOut: Quiet,
    /// No rollout is under way.
    Settled: Quiet,
    // ReconciliationPaused
    /// `spec.paused` is true: status is kept, nothing is changed.
    Paused: Quiet,
    /// Changes are applied.
    Reconciling: Quiet,
    // RolesValid
    /// The pool's roles are for another product than its cluster's.
    ProductMismatch: Warning,
    /// The pool's `clusterRef` names no GrafanaCluster in its namespace.
    ClusterNotFound: Warning,
    /// The pool has no role block, or toggles the product refuses.
    InvalidRoles: Warning,
    // Ready
    /// The cluster has no configuration yet (it is not consistent): workers wait.
    WaitingForClusterConfig: Notice,
    /// The cluster's storage is not usable, or not yet verified with its Secrets as they
    /// are now: workers wait, or keep their last verified settings.
    StorageNotReady: Warning,
    /// `podOverrides` does not give a valid pod template.
    InvalidPodOverrides: Warning,
    /// One of the pool's StatefulSet names (`<pool>-<zone>`) is an older pool's: this
    /// pool waits until one of them is renamed.
    NameClash: Warning,
    /// The StatefulSet has not yet seen its latest spec.
    Updating: Quiet,
    /// Every worker is ready and updated.
    AllReplicasReady: Quiet,
    /// Some workers still run the previous pod template.
    RollingUpdate: Quiet,
    /// Some workers are updated but not ready.
    ReplicasNotReady: Quiet,
    // ScalingDown (True while a scale-down is under way)
    /// No scale-down is under way: the StatefulSet runs the replicas asked.
    NoScaleDown: Quiet,
    /// The highest worker is asked to flush and leave its ring before its pod goes.
    WorkerLeaving: Quiet,
    /// The next worker leaves once every other worker is ready.
    WaitingForWorkers: Quiet,
    /// A worker did not leave within `spec.scaleDown.timeoutSeconds`: the scale-down
    /// stopped there. Read the worker's log; scale back up, or annotate the pool with
    /// `lgtm.coordinated.dev/force-scale-down: "true"` to remove it unflushed.
    LeaveTimedOut: Warning,
    // Progressing (zoned pools; True while a zone-by-zone rollout is under way)
    /// Every zone runs the latest pod template and is Ready.
    ZonesRolledOut: Quiet,
    /// One zone is being replaced, or waited for; the message names it.
    RollingZone: Quiet,
    /// A zone has not become Ready within the pool's zone timeout: the rollout stops
    /// there until it does.
    ZoneRolloutStalled: Warning,
    // Ready (Tenants)
    /// The gateway serves every credential of the Tenant, and its limits are in the
    /// runtime-overrides file.
    CredentialsLive: Quiet,
    /// The gateway is rolling out onto the Tenant's current credentials.
    CredentialsRollingOut: Quiet,
    /// The cluster runs `SingleTenant`: its gateway asks for no credentials.
    SingleTenantCluster: Notice,
    /// A credential's value is outside what the gateway accepts (the message says which
    /// Secret, key and rule); the Tenant's other credentials are served.
    InvalidCredential: Warning,
    /// A username or token already belongs to an older Tenant of the cluster: it is not
    /// served for this one.
    DuplicateCredential: Warning,
    /// An older Tenant of the cluster has the same tenant id: this one is not served.
    DuplicateTenantId: Warning,
    /// The tenant id (the Tenant's name when `id` is unset) is longer than the products
    /// take (150): the Tenant is not served.
    InvalidTenantId: Warning,
    /// `limits` cannot be applied (a retention that cannot be read); the credentials are
    /// served, the limits keep their last values.
    InvalidLimits: Warning,
}

impl Reason {
    /// The reason named `name`, if it is one of ours.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_every_reason_is_documented() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
            assert!(!reason.meaning().is_empty(), "{reason}");
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    #[test]
    fn what_the_user_must_fix_is_a_warning_and_passing_states_are_quiet() {
        assert_eq!(Reason::SecretNotFound.severity(), Severity::Warning);
        assert_eq!(Reason::MissingRoles.severity(), Severity::Notice);
        assert_eq!(Reason::RollingOut.severity(), Severity::Quiet);
        assert_eq!(Reason::MissingRoles.as_str(), "MissingRoles");
    }
}
