//! Reads: what a reconcile needs besides the object itself, fetched before the plan.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};

use super::Context;
use super::apply::get_opt;
use super::error::{Error, Result};
use crate::api::{OfCluster, Tenant, WorkerPool};
use crate::plan::secrets::Secrets;
use crate::render::labels::POOL;

/// The cluster's pools: WorkerPools of its namespace that name it (malformed ones are
/// left out; their own reconciler reports them, and so are those being deleted). Read
/// from the watch cache; listed through the API only before the caches have filled.
pub async fn pools_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<WorkerPool>> {
    match ctx.cached_pools(ns, name) {
        Some(pools) => Ok(pools),
        None => listed_of_cluster(&ctx.client, ns, name).await,
    }
}

/// The cluster's Tenants (malformed ones and those being deleted are left out), from the
/// watch cache; listed through the API only before the caches have filled.
pub async fn tenants_of(ctx: &Context, ns: &str, name: &str) -> Result<Vec<Tenant>> {
    match ctx.cached_tenants(ns, name) {
        Some(tenants) => Ok(tenants),
        None => listed_of_cluster(&ctx.client, ns, name).await,
    }
}

/// The live members of kind `K` of cluster `name` in `ns`, listed through the API.
async fn listed_of_cluster<K>(client: &Client, ns: &str, name: &str) -> Result<Vec<K>>
where
    K: OfCluster<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<DeserializeGuard<K>> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::read(format!("{}s in {ns}", K::kind(&()))))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .filter(|member| member.belongs_to(ns, name))
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
