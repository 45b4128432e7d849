//! lgtm-operator runs Grafana Mimir, Loki and Tempo on Kubernetes as a coordinator
//! (`GrafanaCluster`) and pools of workers (`WorkerPool`).
//!
//! - [`api`]: the custom resources;
//! - [`product`]: the catalogue of roles, ports and routes, and the consistency rules;
//! - [`render`]: pure builders of every object and file the operator writes;
//! - [`controller`]: the reconcile loops that fetch, validate, build, apply and report;
//! - [`probe`]: the storage probe that checks a cluster's bucket for real.

pub mod api;
pub mod controller;
pub mod offline;
pub mod plan;
pub mod probe;
pub mod product;
pub mod render;
#[cfg(test)]
mod render_fuzz;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod fixtures;
