//! Reconciles a GrafanaCluster: read what it references, plan (pure, in
//! [`crate::plan::cluster`]), apply the planned children and prune the others, write the
//! status the plan gives.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

use super::apply::{
    Kept, Owner, apply, apply_dynamic, apply_kept, apply_kept_read, apply_status, get_opt, prune,
    prune_dynamic,
};
use super::context::{guarded, retry};
use super::error::{Error, Result};
use super::events::report_problems;
use super::{Context, read};
use crate::api::{GrafanaCluster, GrafanaClusterStatus, TenancyMode, Tenant};
use crate::plan::cluster::{ClusterInputs, plan};
use crate::plan::cluster_status::condition;
use crate::plan::secrets::{self, BucketCheck};
use crate::plan::tenants::{self, TenantsPlan};
use crate::render::agent::Agent;
use crate::render::gateway::Gateway;
use crate::render::labels::CLUSTER;
use crate::render::{self, Alerts, ClusterChildren, ClusterView, observability};

pub(super) const CONTROLLER: &str = "grafanacluster";

pub async fn reconcile(
    guard: Arc<DeserializeGuard<GrafanaCluster>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    guarded(&guard, &ctx, CONTROLLER, |cluster| {
        reconcile_cluster(cluster, &ctx)
    })
    .await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<GrafanaCluster>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    retry(&guard, error, &ctx, CONTROLLER)
}

async fn reconcile_cluster(cluster: &GrafanaCluster, ctx: &Context) -> Result<Action> {
    let client = &ctx.client;
    let view = ClusterView::new(cluster);
    let ns = &view.namespace;

    // Read.
    let pools = read::pools_of(ctx, ns, &view.name).await?;
    let tenant_list = read::tenants_of(ctx, ns, &view.name).await?;
    let mut secret_names = secrets::referenced(&cluster.spec);
    secret_names.extend(tenants::referenced(&tenant_list));
    let auth_secret = tenants::auth_secret_name(&view.name);
    if cluster.spec.tenancy.mode == TenancyMode::MultiTenant {
        secret_names.push(&auth_secret);
    }
    let secrets = read::secrets(client, ns, &secret_names).await?;
    let fresh_key = fresh_key()?;
    let (bucket, recheck_after) = check_bucket(ctx, cluster, &secrets).await;
    let current_config: Option<ConfigMap> = get_opt(client, ns, &view.child_name("config")).await?;
    let ipv6 = ipv6_pods(ctx, cluster, &view).await?;
    let inputs = ClusterInputs {
        cluster,
        pools: &pools,
        tenants: &tenant_list,
        fresh_key: &fresh_key,
        secrets: &secrets,
        bucket: &bucket,
        current_config: current_config.as_ref(),
        ipv6,
        prometheus_rules: ctx.prometheus_rules_installed().await,
        settings: &ctx.settings,
        today: Timestamp::now().to_zoned(TimeZone::UTC).date(),
    };

    // Plan.
    let plan = plan(&inputs);

    // Apply, unless paused.
    let gateway: Option<Deployment> = if cluster.spec.paused {
        get_opt(client, ns, &view.child_name("gateway")).await?
    } else {
        let (kept, gateway) = apply_children(ctx, &view, &plan.children).await?;
        prune_children(ctx, cluster, &kept, inputs.prometheus_rules).await?;
        Some(gateway)
    };

    // Status.
    let now = Time(Timestamp::now());
    let status = plan.status(&inputs, gateway.as_ref(), &now);
    write_status(ctx, cluster, status).await?;
    let planned = &plan.children.gateway.deployment;
    let live = gateway
        .as_ref()
        .is_some_and(|g| tenants::gateway_serves(g, planned));
    write_tenant_statuses(ctx, cluster, &tenant_list, &plan.tenants, live, &now).await?;
    Ok(match recheck_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Random bytes for a new auth Secret's key (used only when it has none yet).
fn fresh_key() -> Result<Vec<u8>> {
    let mut key = vec![0; tenants::KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| Error::Random(e.to_string()))?;
    Ok(key)
}

/// What the storage probe finds with the cluster's settings and Secrets, and when to
/// probe again. Not probed when it is turned off, or when a Secret or key is missing
/// (the Secrets' own check says which).
async fn check_bucket(
    ctx: &Context,
    cluster: &GrafanaCluster,
    found: &secrets::Secrets,
) -> (BucketCheck, Option<std::time::Duration>) {
    let spec = &cluster.spec;
    let unchecked = (BucketCheck::NotChecked, None);
    if !spec.storage.probe {
        return unchecked;
    }
    let storage = secrets::check_storage(spec.product, &spec.storage, found);
    let uid = cluster.uid().unwrap_or_default();
    let target = secrets::probe_target(spec.product, spec, found, &uid);
    match target {
        Some(target) if storage.problem.is_none() => {
            let key = secrets::probe_key(spec, &storage);
            let checked = ctx.probes.check(&uid, &key, &target, &ctx.metrics).await;
            (checked.bucket, Some(checked.recheck_after))
        }
        _ => unchecked,
    }
}

/// Whether the pods get IPv6 addresses only, which decides the rings' address settings.
/// The gossip Service shows it, so a new cluster gets that Service before its first
/// configuration.
async fn ipv6_pods(
    ctx: &Context,
    cluster: &GrafanaCluster,
    view: &ClusterView<'_>,
) -> Result<bool> {
    // A Service's IP families are fixed when it is created: read once per cluster.
    let uid = cluster.uid().unwrap_or_default();
    if let Some(ipv6) = ctx.children.ipv6(&uid) {
        return Ok(ipv6);
    }
    let gossip: Option<Service> =
        match get_opt(&ctx.client, &view.namespace, &view.child_name("gossip")).await? {
            None if !cluster.spec.paused => {
                Some(apply(&ctx.client, &render::services::gossip(view)).await?)
            }
            observed => observed,
        };
    let Some(gossip) = gossip else {
        return Ok(false);
    };
    let ipv6 = render::services::ipv6_primary(&gossip);
    ctx.children.set_ipv6(&uid, ipv6);
    Ok(ipv6)
}

/// Applies every planned child. Destructured without `..`: a child added to
/// [`ClusterChildren`] does not compile until it is applied here. Returns what to keep
/// and the gateway Deployment as applied.
async fn apply_children(
    ctx: &Context,
    view: &ClusterView<'_>,
    children: &ClusterChildren,
) -> Result<(Kept, Deployment)> {
    let client = &ctx.client;
    let ClusterChildren {
        gateway,
        agent,
        gossip,
        role_services,
        shared_config,
        dashboards,
        alerts,
        runtime_overrides,
        gateway_auth,
    } = children;
    let mut kept = Kept::of::<GrafanaCluster>();
    // Before the workers' and the gateway's pods, which do not start without them.
    apply_kept(ctx, &mut kept, runtime_overrides).await?;
    if let Some(auth) = gateway_auth {
        apply_kept(ctx, &mut kept, auth).await?;
    }
    // The shared config is never pruned: while frozen it is not in the plan.
    kept.add_named::<ConfigMap>(view.child_name("config"));
    if let Some(config) = shared_config {
        apply_kept(ctx, &mut kept, config).await?;
    }
    let Gateway {
        config,
        deployment,
        service,
        pdb,
    } = gateway;
    apply_kept(ctx, &mut kept, config).await?;
    let deployment = apply_kept_read(ctx, &mut kept, deployment).await?;
    apply_kept(ctx, &mut kept, service).await?;
    if let Some(pdb) = pdb {
        apply_kept(ctx, &mut kept, pdb).await?;
    }
    apply_kept(ctx, &mut kept, gossip).await?;
    for service in role_services {
        apply_kept(ctx, &mut kept, service).await?;
    }
    if let Some(Agent {
        config,
        service_account,
        role,
        role_binding,
        peers,
    }) = agent
    {
        apply_kept(ctx, &mut kept, config).await?;
        apply_kept(ctx, &mut kept, service_account).await?;
        apply_kept(ctx, &mut kept, role).await?;
        apply_kept(ctx, &mut kept, role_binding).await?;
        apply_kept(ctx, &mut kept, peers).await?;
    }
    for dashboard in dashboards {
        apply_kept(ctx, &mut kept, dashboard).await?;
    }
    match alerts {
        Some(Alerts::ConfigMap(rules)) => {
            apply_kept(ctx, &mut kept, rules).await?;
        }
        Some(Alerts::PrometheusRule(rule)) => {
            let resource = observability::prometheus_rule_resource();
            apply_dynamic(client, &mut kept, rule, &resource).await?;
        }
        None => {}
    }
    Ok((kept, deployment))
}

/// Deletes the cluster's children of every kind it creates that the plan no longer has.
async fn prune_children(
    ctx: &Context,
    cluster: &GrafanaCluster,
    kept: &Kept,
    prometheus_rules: bool,
) -> Result<()> {
    let client = &ctx.client;
    let namespace = cluster.namespace().unwrap_or_default();
    let uid = cluster.uid().unwrap_or_default();
    let name = cluster.name_any();
    let owner = Owner {
        namespace: &namespace,
        label: (CLUSTER, &name),
        uid: &uid,
    };
    prune::<Service>(ctx, &owner, kept).await?;
    prune::<PodDisruptionBudget>(ctx, &owner, kept).await?;
    prune::<ConfigMap>(ctx, &owner, kept).await?;
    prune::<Secret>(ctx, &owner, kept).await?;
    prune::<ServiceAccount>(ctx, &owner, kept).await?;
    prune::<Role>(ctx, &owner, kept).await?;
    prune::<RoleBinding>(ctx, &owner, kept).await?;
    if prometheus_rules {
        let resource = observability::prometheus_rule_resource();
        prune_dynamic(client, &resource, &owner, kept).await?;
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    cluster: &GrafanaCluster,
    status: GrafanaClusterStatus,
) -> Result<()> {
    let name = cluster.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    ctx.metrics
        .set_conditions("GrafanaCluster", &ns, &name, &status.conditions);
    let previous = cluster.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    report_problems(
        ctx,
        cluster,
        &previous.conditions,
        &status.conditions,
        &[condition::DEGRADED],
    )
    .await;
    apply_status(&ctx.client, cluster, &status).await
}

/// Each Tenant's status: what the plan made of it, and whether the gateway serves it.
/// Written only where it changed; a Tenant whose condition turns bad gets its Event.
async fn write_tenant_statuses(
    ctx: &Context,
    cluster: &GrafanaCluster,
    tenant_list: &[Tenant],
    plan: &TenantsPlan,
    gateway_live: bool,
    now: &Time,
) -> Result<()> {
    let multi_tenant = cluster.spec.tenancy.mode == TenancyMode::MultiTenant;
    for outcome in &plan.outcomes {
        let Some(tenant) = tenant_list.iter().find(|t| t.name_any() == outcome.name) else {
            continue;
        };
        let observed = tenants::ready(outcome, multi_tenant, gateway_live);
        super::tenant::write_status(ctx, tenant, outcome.served, observed, now).await?;
    }
    Ok(())
}
