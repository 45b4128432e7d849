//! The reconcile's pure middle: from what was read about an object (a cluster, its
//! pools, the Secrets, the current configuration) to the children that should exist and
//! the status that follows. No client and no clock: the controllers and
//! `lgtm-operator render` both call it, so they cannot disagree.
//!
//! - [`cluster`]: a GrafanaCluster's children, and [`cluster_status`] its conditions;
//! - [`pool`]: a WorkerPool's workload and conditions;
//! - [`secrets`]: whether referenced Secrets are usable;
//! - [`tenants`]: a cluster's Tenants: the gateway's auth files, their limits, their status;
//! - [`Reason`] (defined in `api`, as reasons are part of the API): every condition
//!   reason, with the Event it deserves.

pub mod cluster;
pub mod cluster_status;
pub mod conditions;
pub mod pool;
pub mod scale_down;
pub mod secrets;
pub mod tenants;
pub mod zone_rollout;

#[cfg(test)]
mod status_tests;

pub use crate::api::{Reason, Severity};
