//! Reads: what a reconcile needs besides the object itself, fetched before the plan.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::{Client, Resource, ResourceExt};

use super::Context;
use super::apply::get_opt;
use super::error::{Error, Result};
use crate::api::{Tenant, WorkerPool};
use crate::plan::secrets::Secrets;
use crate::render::labels::POOL;

/// The cluster's pools: WorkerPools of its namespace that name it (malformed ones are
/// left out; their own reconciler reports them, and so are those being deleted). Read
/// from the watch cache; listed through the API only before the caches have filled.
pub async fn pools_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<WorkerPool>> {
    if let Some(pools) = ctx.cached_pools(ns, name) {
        return Ok(pools);
    }
    let api: Api<DeserializeGuard<WorkerPool>> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::read(format!("WorkerPools in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .filter(|pool| pool.spec.cluster_ref == name && pool.meta().deletion_timestamp.is_none())
        .collect())
}

/// The cluster's Tenants (malformed ones and those being deleted are left out), from the
/// watch cache; listed through the API only before the caches have filled.
pub async fn tenants_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<Tenant>> {
    if let Some(tenants) = ctx.cached_tenants(ns, name) {
        return Ok(tenants);
    }
    let api: Api<DeserializeGuard<Tenant>> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::read(format!("Tenants in {ns}")))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .filter(|t| t.spec.cluster_ref == name && t.meta().deletion_timestamp.is_none())
        .collect())
}

/// The Secrets named `names` in `namespace`, each read once.
pub async fn secrets(client: &Client, namespace: &str, names: &[&str]) -> Result<Secrets> {
    let mut secrets = Secrets::new();
    for name in names {
        if !secrets.contains_key(*name) {
            secrets.insert(
                name.to_string(),
                get_opt::<Secret>(client, namespace, name).await?,
            );
        }
    }
    Ok(secrets)
}

/// The pool's pods, every zone's, listed through the API (pods are not cached: only a
/// scale-down or a zoned rollout under way reads them).
pub async fn pool_pods(client: &Client, pool: &WorkerPool) -> Result<Vec<Pod>> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{POOL}={name}")))
        .await
        .map_err(Error::read(format!("the pods of WorkerPool {ns}/{name}")))?;
    Ok(list.items)
}
