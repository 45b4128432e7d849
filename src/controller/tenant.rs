//! A Tenant's status. A cluster reports on its own Tenants as it plans them, since one
//! Tenant's credentials are judged beside the others'; this controller reports on a
//! Tenant whose cluster does not exist, which no cluster reconcile ever reaches.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;
use super::apply::{apply_status, get_opt};
use super::context::{guarded, retry};
use super::error::{Error, Result};
use super::events::report_problems;
use crate::api::{GrafanaCluster, Tenant, TenantStatus};
use crate::plan::conditions::{Observed, merge};
use crate::plan::tenants;

pub(super) const CONTROLLER: &str = "tenant";
/// How often a Tenant without its cluster says so again: a reconcile of the cluster that
/// was under way when it was deleted may have written over it.
const ORPHAN_RECHECK: Duration = Duration::from_secs(300);

pub async fn reconcile(guard: Arc<DeserializeGuard<Tenant>>, ctx: Arc<Context>) -> Result<Action> {
    guarded(&guard, &ctx, CONTROLLER, |tenant| {
        reconcile_tenant(tenant, &ctx)
    })
    .await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<Tenant>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    retry(&guard, error, &ctx, CONTROLLER)
}

async fn reconcile_tenant(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    if tenant.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Read from the API server, not a cache: a cache behind on a deletion would leave
    // the Tenant saying its credentials are live.
    let ns = tenant.namespace().unwrap_or_default();
    let cluster: Option<GrafanaCluster> =
        get_opt(&ctx.client, &ns, &tenant.spec.cluster_ref).await?;
    if cluster.is_some() {
        return Ok(Action::await_change());
    }
    let now = Time(Timestamp::now());
    write_status(ctx, tenant, 0, tenants::without_cluster(tenant), &now).await?;
    Ok(Action::requeue(ORPHAN_RECHECK))
}

/// Writes a Tenant's status when it changed, with an Event for a condition turned bad.
pub(super) async fn write_status(
    ctx: &Context,
    tenant: &Tenant,
    served_credentials: i32,
    ready: Observed,
    now: &Time,
) -> Result<()> {
    let previous = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let status = TenantStatus {
        observed_generation: generation,
        tenant_id: tenant.tenant_id(),
        served_credentials,
        conditions: merge(&previous.conditions, vec![ready], generation, now),
    };
    if status == previous {
        return Ok(());
    }
    report_problems(ctx, tenant, &previous.conditions, &status.conditions, &[]).await;
    apply_status(&ctx.client, tenant, &status).await
}
