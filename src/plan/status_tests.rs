//! Every condition reason, each reached from the state that gives it.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, StatefulSet, StatefulSetStatus,
};
use k8s_openapi::jiff::civil::Date;
use serde_json::json;

use super::cluster::{ClusterInputs, ConfigProblem, plan as plan_cluster};
use super::cluster_status::*;
use super::conditions::Observed;
use super::pool::{self, Blocked, PoolInputs, ready, roles_valid};
use super::secrets::{BucketCheck, SecretProblem, Secrets, StorageSecrets};
use super::{Reason, Severity};
use crate::api::{GrafanaCluster, WorkerPool};
use crate::fixtures;
use crate::product::Product;
use crate::render::{ClusterView, Settings};

const MIMIR: Product = Product::Mimir;

fn gateway(ready: i32, generation: i64, observed: i64, updated: i32) -> Deployment {
    let mut d = Deployment {
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            replicas: Some(1),
            updated_replicas: Some(updated),
            observed_generation: Some(observed),
            ..Default::default()
        }),
        ..Default::default()
    };
    d.metadata.generation = Some(generation);
    d
}

fn statefulset(ready: i32, updated: i32, current: bool) -> StatefulSet {
    let mut s = StatefulSet {
        status: Some(StatefulSetStatus {
            replicas: 3,
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            observed_generation: Some(if current { 2 } else { 1 }),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.metadata.generation = Some(2);
    s
}

/// The Mimir monolith: one `all` pool.
fn monolith(ready: i32) -> Vec<WorkerPool> {
    let mut pool = fixtures::ready_pool("metrics-all", MIMIR, &["all"], 3);
    pool.status.get_or_insert_default().ready_replicas = ready;
    vec![pool]
}

fn with_plan<T>(
    cluster: &GrafanaCluster,
    pools: &[WorkerPool],
    secrets: &Secrets,
    check: impl FnOnce(&super::cluster::ClusterPlan, &ClusterInputs) -> T,
) -> T {
    let settings = Settings::default();
    let inputs = ClusterInputs {
        cluster,
        pools,
        tenants: &[],
        fresh_key: &[],
        secrets,
        bucket: &BucketCheck::Verified,
        current_config: None,
        ipv6: false,
        prometheus_rules: false,
        settings: &settings,
        today: Date::constant(2026, 12, 1),
    };
    check(&plan_cluster(&inputs), &inputs)
}

/// Every reason the tests below reach, to check that none is left out.
fn reached() -> BTreeSet<Reason> {
    let mut reached: BTreeSet<Reason> = super::tenants::tests::reached().into_iter().collect();
    let cluster = fixtures::minimal_cluster(MIMIR);
    let view = ClusterView::new(&cluster);
    let secrets = fixtures::storage_secrets();
    let mut add = |o: Observed| {
        reached.insert(o.reason);
    };
    // Cluster conditions, through the plan where the plan decides.
    with_plan(&cluster, &[], &secrets, |plan, _| {
        add(consistent(&view, &plan.topology, &[]));
    });
    let read_only = vec![fixtures::ready_pool("r", MIMIR, &["read"], 1)];
    with_plan(&cluster, &read_only, &secrets, |plan, _| {
        add(consistent(&view, &plan.topology, &read_only));
    });
    with_plan(&cluster, &monolith(3), &secrets, |plan, inputs| {
        add(consistent(&view, &plan.topology, inputs.pools));
        add(storage_ready(&plan.storage));
        add(config_valid(plan.config_problem.as_ref()));
        add(available(&view, None, &plan.topology));
        add(available(&view, Some(&gateway(1, 1, 1, 1)), &plan.topology));
        add(degraded(&plan.topology, inputs.pools));
        add(progressing(&view, Some(&gateway(1, 1, 1, 1)), inputs.pools));
        add(progressing(&view, Some(&gateway(1, 2, 1, 1)), inputs.pools));
    });
    with_plan(&cluster, &monolith(0), &secrets, |plan, inputs| {
        add(available(&view, Some(&gateway(1, 1, 1, 1)), &plan.topology));
        add(degraded(&plan.topology, inputs.pools));
    });
    let wrong = vec![fixtures::ready_pool("l", Product::Loki, &["all"], 1)];
    with_plan(&cluster, &wrong, &secrets, |plan, inputs| {
        add(degraded(&plan.topology, inputs.pools));
    });
    with_plan(&cluster, &monolith(3), &Secrets::new(), |plan, _| {
        add(storage_ready(&plan.storage));
    });
    let mut no_key = fixtures::storage_secrets();
    if let Some(Some(secret)) = no_key.get_mut("s3-credentials") {
        secret.string_data = None;
    }
    with_plan(&cluster, &monolith(3), &no_key, |plan, _| {
        add(storage_ready(&plan.storage));
    });
    // What the storage probe finds, for Secrets that are usable.
    let failed = |reason| {
        BucketCheck::Failed(crate::probe::ProbeFailure {
            reason,
            message: "from the server".into(),
        })
    };
    for bucket in [
        BucketCheck::NotChecked,
        failed(Reason::BucketNotFound),
        failed(Reason::AccessDenied),
        failed(Reason::EndpointUnreachable),
        failed(Reason::TLSError),
        failed(Reason::StorageProbeFailed),
    ] {
        add(storage_ready(
            &StorageSecrets::default().with_bucket(&bucket),
        ));
    }
    let mut loki_on_aws = fixtures::minimal_cluster(Product::Loki);
    loki_on_aws.spec.storage.s3.as_mut().expect("s3").endpoint =
        "https://bucket.s3-accelerate.amazonaws.com".into();
    with_plan(&loki_on_aws, &[], &secrets, |plan, _| {
        add(storage_ready(&plan.storage));
    });
    let mut bad_retention = cluster.clone();
    bad_retention.spec.retention = Some("soon".into());
    with_plan(&bad_retention, &[], &secrets, |plan, _| {
        add(config_valid(plan.config_problem.as_ref()));
    });
    let mut bad_overrides = cluster.clone();
    bad_overrides.spec.config_overrides = Some(serde_json::json!(["not", "a", "map"]));
    with_plan(&bad_overrides, &monolith(3), &secrets, |plan, _| {
        add(config_valid(plan.config_problem.as_ref()));
    });
    let mut on_filesystem = cluster.clone();
    on_filesystem.spec.storage = serde_json::from_value(json!({"filesystem": {}})).expect("spec");
    with_plan(&on_filesystem, &monolith(3), &secrets, |plan, _| {
        add(config_valid(plan.config_problem.as_ref()));
    });
    let mut tls = cluster.clone();
    tls.spec.tls = serde_json::from_value(serde_json::json!({"secretName": "gw-tls"})).ok();
    with_plan(&tls, &[], &secrets, |plan, _| {
        add(tls_ready(&tls.spec, plan.tls_problem.as_ref()).expect("TLS asked for"));
        add(tls_ready(&tls.spec, None).expect("TLS asked for"));
    });
    let mut monitored = cluster.clone();
    monitored.spec.self_monitoring = serde_json::from_value(json!({
        "metrics": {"remoteWriteUrl": "http://m/api/v1/push", "auth": {"basicAuth": {"secretName": "agent"}}}
    }))
    .expect("spec");
    with_plan(&monitored, &[], &secrets, |plan, _| {
        let problem = plan.agent_auth_problem.as_ref().expect("no Secret agent");
        add(self_monitoring_ready(&monitored.spec, Some(problem)).expect("auth named"));
        add(self_monitoring_ready(&monitored.spec, None).expect("auth named"));
    });
    let mut paused_spec = cluster.spec.clone();
    add(paused(&paused_spec));
    paused_spec.paused = true;
    add(paused(&paused_spec));

    // Pool conditions.
    let targets = vec!["querier".to_string()];
    add(roles_valid(None, &targets, Some(&cluster)));
    for plan in pool_plans(&cluster) {
        if let Some(blocked) = &plan.blocked {
            add(roles_valid(Some(blocked), &targets, Some(&cluster)));
            add(ready(Some(blocked), 3, &[]));
        }
    }
    add(ready(None, 3, &[statefulset(3, 3, false)]));
    add(ready(None, 3, &[statefulset(3, 3, true)]));
    add(ready(None, 3, &[statefulset(3, 1, true)]));
    add(ready(None, 3, &[statefulset(1, 3, true)]));
    let mixed = fixtures::zoned_topology(
        MIMIR,
        &[("new", &["ingester"], 3), ("old", &["ingester"], 3)],
        &["new"],
    );
    add(degraded(&mixed, &[]));
    for reason in super::scale_down::tests::reasons_reached() {
        reached.insert(reason);
    }
    for reason in super::zone_rollout::tests::reasons_reached() {
        reached.insert(reason);
    }
    reached
}

/// Pool plans for: no cluster, the wrong product, no role block, no configuration yet,
/// unusable storage, and pod overrides that give no pod.
fn pool_plans(cluster: &GrafanaCluster) -> Vec<pool::PoolPlan> {
    let storage_ok = StorageSecrets::default();
    let storage_bad = StorageSecrets {
        problem: Some(SecretProblem {
            reason: Reason::SecretNotFound,
            message: "gone".into(),
        }),
        checksum: String::new(),
        probed: false,
    };
    let config = k8s_openapi::api::core::v1::ConfigMap::default();
    let querier = fixtures::ready_pool("q", MIMIR, &["querier"], 1);
    let loki = fixtures::ready_pool("l", Product::Loki, &["all"], 1);
    let no_roles = fixtures::pool("n", "replicas: 1\nroles: {}");
    let mut bad_overrides = querier.clone();
    bad_overrides.spec.pod_overrides =
        serde_json::from_value(serde_json::json!({"spec": {"containers": "not a list"}})).ok();
    let plan = |pool: &WorkerPool, cluster, config, storage| {
        pool::plan(&PoolInputs {
            pool,
            cluster,
            config,
            storage,
            siblings: &[],
        })
    };
    vec![
        plan(&querier, None, None, &storage_ok),
        plan(&loki, Some(cluster), Some(&config), &storage_ok),
        plan(&no_roles, Some(cluster), Some(&config), &storage_ok),
        plan(&querier, Some(cluster), None, &storage_ok),
        plan(&querier, Some(cluster), Some(&config), &storage_bad),
        plan(&bad_overrides, Some(cluster), Some(&config), &storage_ok),
        clash_plan(cluster, &config),
    ]
}

/// A zoned pool `q` created after a pool named `q-zone-a`: it waits.
fn clash_plan(
    cluster: &GrafanaCluster,
    config: &k8s_openapi::api::core::v1::ConfigMap,
) -> pool::PoolPlan {
    let mut older = fixtures::ready_pool("q-zone-a", MIMIR, &["querier"], 1);
    older.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let mut zoned = fixtures::ready_pool("q", MIMIR, &["querier"], 3);
    zoned.spec.zones = ["zone-a", "zone-b", "zone-c"]
        .map(|name| crate::api::PoolZone {
            name: name.into(),
            node_selector: None,
        })
        .to_vec();
    zoned.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(60).expect("time"),
    ));
    let siblings = [older.clone(), zoned.clone()];
    // The older pool is not held back by the newer one.
    let kept = pool::plan(&PoolInputs {
        pool: &older,
        cluster: Some(cluster),
        config: Some(config),
        storage: &StorageSecrets::default(),
        siblings: &siblings,
    });
    assert!(kept.blocked.is_none(), "{:?}", kept.blocked);
    let plan = pool::plan(&PoolInputs {
        pool: &zoned,
        cluster: Some(cluster),
        config: Some(config),
        storage: &StorageSecrets::default(),
        siblings: &siblings,
    });
    assert!(matches!(plan.action, pool::PoolAction::Leave));
    match &plan.blocked {
        Some(Blocked::Waiting {
            reason: Reason::NameClash,
            message,
        }) => {
            assert!(
                message.contains("StatefulSet q-zone-a would also be WorkerPool q-zone-a's"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    plan
}

#[test]
fn every_reason_is_reached_by_some_state() {
    let reached = reached();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !reached.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(missing.is_empty(), "reasons no test reaches: {missing:?}");
}

#[test]
fn availability_needs_the_gateway_then_every_required_role() {
    let cluster = fixtures::minimal_cluster(MIMIR);
    let view = ClusterView::new(&cluster);
    let secrets = fixtures::storage_secrets();
    with_plan(&cluster, &monolith(0), &secrets, |plan, _| {
        let o = available(&view, None, &plan.topology);
        assert_eq!(o.reason, Reason::GatewayNotReady);
        assert_eq!(
            o.message,
            "no gateway pod is ready (Deployment metrics-gateway)"
        );
        let o = available(&view, Some(&gateway(1, 1, 1, 1)), &plan.topology);
        assert_eq!(o.reason, Reason::RolesNotReady);
        assert!(
            o.message.starts_with("no ready worker runs "),
            "{}",
            o.message
        );
        assert!(!o.status);
    });
    with_plan(&cluster, &monolith(1), &secrets, |plan, _| {
        let o = available(&view, Some(&gateway(1, 1, 1, 1)), &plan.topology);
        assert_eq!((o.status, o.reason), (true, Reason::Available));
    });
}

#[test]
fn degraded_names_pools_below_their_replicas_and_invalid_pools_first() {
    let cluster = fixtures::minimal_cluster(MIMIR);
    let secrets = fixtures::storage_secrets();
    with_plan(&cluster, &monolith(1), &secrets, |plan, inputs| {
        let o = degraded(&plan.topology, inputs.pools);
        assert_eq!((o.status, o.reason), (true, Reason::PoolsNotReady));
        assert_eq!(o.message, "pools below their replicas: metrics-all (1/3)");
    });
    let mut pools = monolith(1);
    pools.push(fixtures::ready_pool("logs", Product::Loki, &["all"], 1));
    with_plan(&cluster, &pools, &secrets, |plan, inputs| {
        let o = degraded(&plan.topology, inputs.pools);
        assert_eq!(o.reason, Reason::InvalidPools);
        assert!(
            o.message.starts_with("pools not deployed: logs ("),
            "{}",
            o.message
        );
    });
}

#[test]
fn progressing_names_the_gateway_and_the_pools_rolling_out() {
    let cluster = fixtures::minimal_cluster(MIMIR);
    let view = ClusterView::new(&cluster);
    let mut pools = monolith(3);
    pools[0].status.get_or_insert_default().updated_replicas = 1;
    let o = progressing(&view, Some(&gateway(1, 2, 1, 1)), &pools);
    assert_eq!((o.status, o.reason), (true, Reason::RollingOut));
    assert_eq!(o.message, "rolling out: metrics-gateway, metrics-all");
    // A zoned pool names the zone being rolled.
    pools[0].status.get_or_insert_default().rollout = Some(crate::api::ZoneRolloutStatus {
        zone: "zone-b".into(),
        started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ),
    });
    let o = progressing(&view, Some(&gateway(1, 1, 1, 1)), &pools);
    assert_eq!(o.message, "rolling out: metrics-all (zone zone-b)");
    let o = progressing(&view, Some(&gateway(1, 1, 1, 1)), &monolith(3));
    assert_eq!((o.status, o.reason), (false, Reason::Settled));
}

#[test]
fn a_pool_is_ready_only_when_its_statefulset_saw_the_spec_and_every_worker_is_updated() {
    let o = ready(None, 3, &[statefulset(3, 3, false)]);
    assert_eq!(o.reason, Reason::Updating);
    let o = ready(None, 3, &[statefulset(3, 1, true)]);
    assert_eq!(o.reason, Reason::RollingUpdate);
    assert_eq!(o.message, "3/3 workers ready, 1 updated");
    let o = ready(None, 3, &[statefulset(2, 3, true)]);
    assert_eq!(o.reason, Reason::ReplicasNotReady);
    let o = ready(None, 3, &[statefulset(3, 3, true)]);
    assert_eq!((o.status, o.reason), (true, Reason::AllReplicasReady));
    assert_eq!(ready(None, 3, &[]).reason, Reason::Updating);
}

#[test]
fn a_blocked_pool_says_why_in_both_conditions_and_only_invalid_ones_lose_their_workload() {
    let cluster = fixtures::minimal_cluster(MIMIR);
    let reasons: Vec<(Reason, bool)> = pool_plans(&cluster)
        .iter()
        .map(|plan| {
            let blocked = plan.blocked.as_ref().expect("blocked");
            let (reason, invalid) = match blocked {
                Blocked::Invalid { reason, .. } => (*reason, true),
                Blocked::Waiting { reason, .. } => (*reason, false),
            };
            let removed = matches!(plan.action, pool::PoolAction::Remove);
            assert_eq!(removed, invalid, "{reason}");
            (reason, invalid)
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (Reason::ClusterNotFound, true),
            (Reason::ProductMismatch, true),
            (Reason::InvalidRoles, true),
            (Reason::WaitingForClusterConfig, false),
            (Reason::StorageNotReady, false),
            (Reason::InvalidPodOverrides, false),
            (Reason::NameClash, false),
        ]
    );
}

#[test]
fn a_paused_cluster_leaves_its_pools_as_they_are() {
    let mut cluster = fixtures::minimal_cluster(MIMIR);
    cluster.spec.paused = true;
    let config = k8s_openapi::api::core::v1::ConfigMap::default();
    let storage = StorageSecrets::default();
    for pool in [
        fixtures::ready_pool("q", MIMIR, &["querier"], 1),
        fixtures::ready_pool("l", Product::Loki, &["all"], 1),
    ] {
        let plan = pool::plan(&PoolInputs {
            pool: &pool,
            cluster: Some(&cluster),
            config: Some(&config),
            storage: &storage,
            siblings: &[],
        });
        assert!(matches!(plan.action, pool::PoolAction::Leave), "{plan:?}");
    }
}

#[test]
fn a_pool_rolls_only_onto_the_secrets_its_cluster_verified() {
    let cluster = fixtures::minimal_cluster(MIMIR);
    let pool = fixtures::ready_pool("q", MIMIR, &["all"], 1);
    let mut config = k8s_openapi::api::core::v1::ConfigMap::default();
    config.metadata.annotations = Some(
        [(
            crate::render::SECRETS_CHECKSUM.to_string(),
            "verified".to_string(),
        )]
        .into(),
    );
    let plan_with = |checksum: &str| {
        let storage = StorageSecrets {
            checksum: checksum.into(),
            ..StorageSecrets::default()
        };
        pool::plan(&PoolInputs {
            pool: &pool,
            cluster: Some(&cluster),
            config: Some(&config),
            storage: &storage,
            siblings: &[],
        })
    };
    let changed = plan_with("changed since");
    assert!(
        matches!(changed.action, pool::PoolAction::Leave),
        "{changed:?}"
    );
    assert!(matches!(
        changed.blocked,
        Some(Blocked::Waiting {
            reason: Reason::StorageNotReady,
            ..
        })
    ));
    assert!(matches!(
        plan_with("verified").action,
        pool::PoolAction::Apply(_)
    ));
}

#[test]
fn a_config_problem_says_the_last_configuration_keeps_running() {
    let problem = ConfigProblem {
        reason: Reason::InvalidRetention,
        message: "spec.retention: no unit".into(),
    };
    let o = config_valid(Some(&problem));
    assert_eq!(
        o.message,
        "spec.retention: no unit; the last valid configuration keeps running"
    );
    assert_eq!(Reason::InvalidRetention.severity(), Severity::Warning);
}

#[test]
fn loki_says_its_workers_send_no_traces_over_otlp() {
    let traces_advice = |product: Product| {
        let mut cluster = fixtures::minimal_cluster(product);
        cluster.spec.self_monitoring.traces = Some(
            serde_json::from_value(json!({"otlpEndpoint": "tempo.obs.svc:4317"}))
                .expect("traces spec"),
        );
        let topology = fixtures::topology(product, &[("all", &["all"], 3)]);
        recommendations(product, &cluster.spec, &topology)
            .into_iter()
            .filter(|r| r.starts_with("selfMonitoring.traces"))
            .count()
    };
    assert_eq!(traces_advice(Product::Loki), 1);
    assert_eq!(traces_advice(Product::Mimir), 0);
    assert_eq!(traces_advice(Product::Tempo), 0);
}
