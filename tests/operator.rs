//! The operator against the real control plane: each test runs its own operator (scoped
//! to the test's namespace, so tests run in parallel), applies manifests with kubectl as
//! a user would, and checks the objects, conditions and printer columns users rely on.
//!
//! The shared opening (namespace, CRDs, operator, applying manifests, waiting for
//! conditions) is [`support::OperatorNamespace`].

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use lgtm_operator::api::{GrafanaCluster, WorkerPool};
use lgtm_operator::controller::{self, Options};
use lgtm_operator::telemetry::Health;
use support::{
    CREDENTIALS, Check, OperatorNamespace, OperatorProcess, TIMEOUT, cluster_yaml, kubectl_ok,
    namespace_with_crds, pool_yaml, wait_for,
};

fn annotation(template_of: &StatefulSet, key: &str) -> String {
    template_of
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

fn controlled_by(meta: &kube::api::ObjectMeta, kind: &str, name: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == kind && o.name == name)
}

/// Checks the documented children of a cluster and its pools, and the printer columns.
async fn check_sample(
    env: &OperatorNamespace,
    cluster: &str,
    product: &str,
    pools: &[(&str, &[&str])],
) {
    let ready = env.cluster_condition(cluster, "Available", "True").await;
    let status = ready.status.clone().expect("status");
    assert_eq!(status.missing_roles_summary, "");
    assert!(
        status
            .gateway_url
            .as_deref()
            .is_some_and(|u| u.contains(&format!("{cluster}-gateway.{}.svc", env.name())))
    );

    for name in [format!("{cluster}-gateway"), format!("{cluster}-config")] {
        let cm: ConfigMap = env.get(&name).await;
        assert!(
            controlled_by(&cm.metadata, "GrafanaCluster", cluster),
            "{name} owner"
        );
        let labels = cm.labels();
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/managed-by",
        ] {
            assert!(labels.contains_key(key), "{name} lacks label {key}");
        }
        assert_eq!(
            labels.get("app.kubernetes.io/name").map(String::as_str),
            Some(product)
        );
    }
    let gateway: Deployment = env.get(&format!("{cluster}-gateway")).await;
    assert!(controlled_by(&gateway.metadata, "GrafanaCluster", cluster));
    let containers: Vec<String> = gateway
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert!(
        containers.contains(&"nginx".to_string()) && containers.contains(&"exporter".to_string()),
        "{containers:?}"
    );
    for service in [format!("{cluster}-gateway"), format!("{cluster}-gossip")] {
        let svc: Service = env.get(&service).await;
        assert!(
            controlled_by(&svc.metadata, "GrafanaCluster", cluster),
            "{service}"
        );
    }
    let gossip: Service = env.get(&format!("{cluster}-gossip")).await;
    assert_eq!(
        gossip
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses),
        Some(true)
    );

    for (pool, roles) in pools {
        let sts: StatefulSet = env.get(pool).await;
        assert!(
            controlled_by(&sts.metadata, "WorkerPool", pool),
            "{pool} owner"
        );
        let headless: Service = env.get(&format!("{pool}-headless")).await;
        assert!(
            controlled_by(&headless.metadata, "WorkerPool", pool),
            "{pool}-headless owner"
        );
        assert_eq!(
            sts.spec.as_ref().and_then(|s| s.service_name.clone()),
            Some(format!("{pool}-headless"))
        );
        let template = sts.spec.clone().expect("spec").template;
        let labels = template
            .metadata
            .clone()
            .expect("meta")
            .labels
            .expect("labels");
        for role in *roles {
            assert_eq!(
                labels
                    .get(&format!("role.lgtm.coordinated.dev/{role}"))
                    .map(String::as_str),
                Some("true"),
                "{pool}: {role}"
            );
            let svc: Service = env.get(&format!("{cluster}-{role}")).await;
            assert!(controlled_by(&svc.metadata, "GrafanaCluster", cluster));
        }
        let args = template.spec.expect("pod").containers[0]
            .args
            .clone()
            .unwrap_or_default();
        assert!(args.iter().any(|a| a.starts_with("-target=")), "{args:?}");
        // Nothing is substituted into the configuration (ADR 6).
        assert!(
            !args.iter().any(|a| a.starts_with("-config.expand-env")),
            "{args:?}"
        );
        let pool_status = env
            .pool_condition(pool, "Ready", "True")
            .await
            .status
            .expect("status");
        let mut expected: Vec<&str> = roles.to_vec();
        expected.sort();
        assert_eq!(pool_status.targets, expected);
    }

    let table = kubectl_ok(["get", "grafanaclusters", "-n", env.name(), cluster]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PRODUCT",
            "VERSION",
            "CONSISTENT",
            "AVAILABLE",
            "MISSING",
            "ROLES",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..5], [cluster, product, row[2], "True", "True"]);
    let pools_table = kubectl_ok(["get", "wp", "-n", env.name()]).await;
    assert!(pools_table.starts_with("NAME"), "{pools_table}");
    assert!(pools_table.contains("ROLES"), "{pools_table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimir_sample_yields_its_documented_children() {
    let env = OperatorNamespace::start("mimir-sample").await;
    env.apply_sample("mimir-read-write-backend.yaml").await;
    check_sample(
        &env,
        "metrics",
        "mimir",
        &[
            ("metrics-read", &["querier", "query-frontend"]),
            ("metrics-write", &["distributor", "ingester"]),
            (
                "metrics-backend",
                &[
                    "alertmanager",
                    "compactor",
                    "overrides-exporter",
                    "query-scheduler",
                    "ruler",
                    "store-gateway",
                ],
            ),
        ],
    )
    .await;
    // Self-monitoring is on in the sample: the agent's objects, the dashboards (for
    // Grafana's sidecar) and the alert rules (a ConfigMap: no PrometheusRule CRD here).
    assert!(env.exists::<ConfigMap>("metrics-agent").await);
    let dashboard: ConfigMap = env.get("metrics-dashboard-overview").await;
    assert_eq!(
        dashboard
            .labels()
            .get("grafana_dashboard")
            .map(String::as_str),
        Some("1")
    );
    assert!(controlled_by(
        &dashboard.metadata,
        "GrafanaCluster",
        "metrics"
    ));
    let rules: ConfigMap = env.get("metrics-alerts").await;
    assert!(rules.data.expect("data")["rules.yaml"].contains("MimirServerErrors"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_sample_yields_its_documented_children() {
    let env = OperatorNamespace::start("loki-sample").await;
    env.wait_until_ready().await;
    env.apply_sample("loki-monolithic.yaml").await;
    check_sample(
        &env,
        "logs",
        "loki",
        &[("logs-all", &["backend", "read", "write"])],
    )
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_sample_yields_its_documented_children() {
    let env = OperatorNamespace::start("tempo-sample").await;
    env.apply_sample("tempo-microservices.yaml").await;
    check_sample(
        &env,
        "traces",
        "tempo",
        &[
            ("traces-querier", &["querier"]),
            ("traces-query-frontend", &["query-frontend"]),
            ("traces-ingester", &["ingester"]),
            ("traces-distributor", &["distributor"]),
            ("traces-compactor", &["compactor"]),
            ("traces-metrics-generator", &["metrics-generator"]),
        ],
    )
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimir_without_backend_misses_roles_and_config_stays_frozen_while_inconsistent() {
    let env = OperatorNamespace::start("mimir-missing").await;
    env.apply(CREDENTIALS).await;
    env.apply_cluster("m", "mimir", "").await;
    env.apply_pool("read", "m", "{mimir: {read: true}}").await;
    env.apply_pool("write", "m", "{mimir: {write: true}}").await;

    env.wait_until(
        "m",
        "only the backend roles missing",
        |c: GrafanaCluster| {
            let summary = c.status.unwrap_or_default().missing_roles_summary;
            if summary == "compactor,ruler,store-gateway" {
                Check::Done(())
            } else {
                Check::Pending(summary)
            }
        },
    )
    .await;
    let consistent = env.cluster_reason("m", "Consistent", "MissingRoles").await;
    assert_eq!(consistent.status, "False");
    for role in ["compactor", "ruler", "store-gateway"] {
        assert!(consistent.message.contains(role), "{}", consistent.message);
    }
    let status = env.get::<GrafanaCluster>("m").await.status.expect("status");
    assert_eq!(
        status.missing_roles,
        ["compactor", "ruler", "store-gateway"]
    );
    assert_eq!(
        status.missing_roles_summary,
        "compactor,ruler,store-gateway"
    );
    let waiting = env
        .pool_reason("read", "Ready", "WaitingForClusterConfig")
        .await;
    assert!(
        waiting.message.contains("Consistent"),
        "{}",
        waiting.message
    );
    assert!(
        !env.exists::<StatefulSet>("read").await,
        "no workers before the cluster is consistent"
    );

    env.apply_pool("backend", "m", "{mimir: {backend: true}}")
        .await;
    env.cluster_condition("m", "Consistent", "True").await;
    env.pool_condition("read", "Ready", "True").await;
    env.pool_condition("write", "Ready", "True").await;
    let sts = env.api::<StatefulSet>();
    let before_read = sts.get("read").await.expect("read");
    let before_write = sts.get("write").await.expect("write");
    let config_before: ConfigMap = env.get("m-config").await;

    // Losing the backend pool makes the cluster inconsistent: the configuration and the
    // other pools stay exactly as they were.
    env.api::<WorkerPool>()
        .delete("backend", &DeleteParams::default())
        .await
        .expect("delete");
    env.cluster_condition("m", "Consistent", "False").await;
    let config_frozen: ConfigMap = env.get("m-config").await;
    assert_eq!(
        config_frozen.resource_version(),
        config_before.resource_version()
    );
    // The Services of roles no pool provides any more go; the others stay.
    env.gone::<Service>("m-compactor").await;
    assert!(env.exists::<Service>("m-querier").await);
    // Re-adding it restores consistency with the same configuration: nothing rolls.
    env.apply_pool("backend", "m", "{mimir: {backend: true}}")
        .await;
    env.cluster_condition("m", "Consistent", "True").await;
    env.pool_condition("backend", "Ready", "True").await;
    let config_after: ConfigMap = env.get("m-config").await;
    assert_eq!(config_after.data, config_before.data);
    for (before, name) in [(before_read, "read"), (before_write, "write")] {
        let after = sts.get(name).await.expect(name);
        assert_eq!(
            after.metadata.generation, before.metadata.generation,
            "{name} was changed"
        );
        assert_eq!(
            after.spec.expect("spec").template,
            before.spec.expect("spec").template
        );
    }
    env.finish().await;
}

/// The CRD's CEL rules admit exactly the role combinations the runtime contract says one
/// process can run, and a refusal says why: every Loki and Tempo combination, and for
/// Mimir every single toggle, flusher beside each other toggle and a fixed sample of
/// larger sets (server-side dry runs, so nothing is created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_accepts_exactly_the_combinations_the_runtime_contract_allows() {
    use lgtm_operator::api::{LokiRoles, MimirRoles, TempoRoles};
    use lgtm_operator::product::Product;

    fn camel(role: &str) -> String {
        let mut parts = role.split('-');
        let mut name = parts.next().unwrap_or_default().to_string();
        for part in parts {
            let mut chars = part.chars();
            name.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            name.push_str(chars.as_str());
        }
        name
    }
    fn subsets(toggles: &[&'static str]) -> Vec<Vec<&'static str>> {
        (0u32..(1 << toggles.len()))
            .map(|bits| {
                toggles
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, t)| *t)
                    .collect()
            })
            .collect()
    }

    let env = OperatorNamespace::start("admission").await;
    let pools: Api<WorkerPool> = env.api();
    let mimir = MimirRoles::TOGGLES;
    let mut sets: Vec<(Product, Vec<&'static str>)> = Vec::new();
    sets.extend(
        subsets(LokiRoles::TOGGLES)
            .into_iter()
            .map(|s| (Product::Loki, s)),
    );
    sets.extend(
        subsets(TempoRoles::TOGGLES)
            .into_iter()
            .map(|s| (Product::Tempo, s)),
    );
    sets.extend(mimir.iter().map(|t| (Product::Mimir, vec![*t])));
    sets.extend(
        mimir
            .iter()
            .filter(|t| **t != "flusher")
            .map(|t| (Product::Mimir, vec!["flusher", *t])),
    );
    // A fixed pseudo-random sample of larger Mimir sets (a linear congruential walk).
    let mut state: u32 = 12345;
    for _ in 0..40 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let bits = state >> 8;
        let set: Vec<&'static str> = mimir
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect();
        sets.push((Product::Mimir, set));
    }
    let mut wrong = Vec::new();
    for (i, (product, set)) in sets.iter().enumerate() {
        let roles: serde_json::Map<String, serde_json::Value> = set
            .iter()
            .map(|t| (camel(t), serde_json::Value::Bool(true)))
            .collect();
        let pool: WorkerPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "lgtm.coordinated.dev/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": format!("p{i}")},
            "spec": {"clusterRef": "c", "roles": {product.as_str(): roles}},
        }))
        .expect("a pool");
        let admitted = pools
            .create(
                &kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &pool,
            )
            .await;
        let allowed = product.contract().allows(set);
        match (&admitted, &allowed) {
            (Ok(_), Ok(())) => {}
            (Err(kube::Error::Api(status)), Err(_)) if status.code == 422 => {
                // The refusal gives the contract's reason, not just "invalid".
                let why = match product.contract().combinations {
                    lgtm_operator::product::contract::Combinations::ExactlyOne(f) => f.what,
                    lgtm_operator::product::contract::Combinations::AnyBut(r) => {
                        if set.is_empty() {
                            "at least one"
                        } else {
                            r[0].why.what
                        }
                    }
                };
                let head: String = why.chars().take(40).collect();
                if !status.message.contains(&head) {
                    wrong.push(format!(
                        "{product} {set:?}: refused without the reason: {}",
                        status.message
                    ));
                }
            }
            (Ok(_), Err(why)) => wrong.push(format!("{product} {set:?}: admitted, but {why}")),
            (Err(e), Ok(())) => wrong.push(format!("{product} {set:?}: refused: {e}")),
            (Err(e), Err(_)) => wrong.push(format!("{product} {set:?}: refused oddly: {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} combinations disagree:\n{}",
        wrong.len(),
        sets.len(),
        wrong.join("\n")
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_invalid_manifests_naming_the_field_or_rule() {
    let env = OperatorNamespace::start("invalid").await;
    let typo = env
        .try_apply(&pool_yaml("typo", "c", 1, "{mimir: {quorier: true}}"))
        .await;
    assert!(!typo.success);
    assert!(typo.stderr.contains("quorier"), "{}", typo.stderr);

    // `image` is a repository: a tag there would render `repo:tag:version`, which no
    // runtime can pull. A registry's port is not a tag.
    let tagged = env
        .try_apply(&cluster_yaml(
            "tagged",
            "mimir",
            "  image: grafana/mimir:2.17.0\n",
        ))
        .await;
    assert!(!tagged.success);
    assert!(
        tagged.stderr.contains("the tag is spec.version"),
        "{}",
        tagged.stderr
    );
    let with_port = env
        .try_apply(&cluster_yaml(
            "port",
            "mimir",
            "  image: registry:5000/grafana/mimir\n",
        ))
        .await;
    assert!(with_port.success, "{}", with_port.stderr);

    let two_tempo = env
        .try_apply(&pool_yaml(
            "two",
            "c",
            1,
            "{tempo: {querier: true, ingester: true}}",
        ))
        .await;
    assert!(!two_tempo.success);
    assert!(
        two_tempo.stderr.contains("exactly one role toggle"),
        "{}",
        two_tempo.stderr
    );

    let two_blocks = env
        .try_apply(&pool_yaml(
            "both",
            "c",
            1,
            "{mimir: {all: true}, loki: {all: true}}",
        ))
        .await;
    assert!(!two_blocks.success);
    assert!(
        two_blocks
            .stderr
            .contains("exactly one of roles.mimir, roles.loki, roles.tempo"),
        "{}",
        two_blocks.stderr
    );

    let none_true = env
        .try_apply(&pool_yaml("none", "c", 1, "{mimir: {read: false}}"))
        .await;
    assert!(!none_true.success);
    assert!(
        none_true.stderr.contains("at least one role toggle"),
        "{}",
        none_true.stderr
    );

    env.apply(CREDENTIALS).await;
    env.apply_cluster("c", "mimir", "").await;
    let change = env.try_apply(&cluster_yaml("c", "loki", "")).await;
    assert!(!change.success);
    assert!(
        change.stderr.contains("product is immutable"),
        "{}",
        change.stderr
    );

    let pool = env
        .try_apply(&pool_yaml("p", "c", 1, "{mimir: {all: true}}"))
        .await;
    assert!(pool.success, "{}", pool.stderr);
    let moved = env
        .try_apply(&pool_yaml("p", "other", 1, "{mimir: {all: true}}"))
        .await;
    assert!(
        moved.stderr.contains("clusterRef is immutable"),
        "{}",
        moved.stderr
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_of_the_wrong_product_or_without_a_cluster_are_not_deployed() {
    let env = OperatorNamespace::start("wrong-product").await;
    env.apply(CREDENTIALS).await;
    env.apply_cluster("m", "mimir", "").await;
    env.apply_pool("all", "m", "{mimir: {all: true}}").await;
    env.apply_pool("lokipool", "m", "{loki: {all: true}}").await;
    env.apply_pool("orphan", "nothere", "{mimir: {all: true}}")
        .await;

    let condition = env
        .pool_reason("lokipool", "RolesValid", "ProductMismatch")
        .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("roles.mimir"),
        "{}",
        condition.message
    );
    let condition = env
        .pool_reason("orphan", "RolesValid", "ClusterNotFound")
        .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("nothere"),
        "{}",
        condition.message
    );

    let degraded = env.cluster_reason("m", "Degraded", "InvalidPools").await;
    assert_eq!(degraded.status, "True");
    assert!(degraded.message.contains("lokipool"));
    env.pool_condition("all", "Ready", "True").await;
    assert!(!env.exists::<StatefulSet>("lokipool").await);
    assert!(!env.exists::<StatefulSet>("orphan").await);

    // A Warning Event says what to do.
    let events = kubectl_ok([
        "get",
        "events",
        "-n",
        env.name(),
        "--field-selector",
        "involvedObject.name=lokipool",
        "-o",
        "jsonpath={.items[*].reason}",
    ])
    .await;
    assert!(events.contains("ProductMismatch"), "{events}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_removes_its_children_and_pool_workloads_but_keeps_volumes() {
    let env = OperatorNamespace::start("delete-cluster").await;
    env.apply_sample("loki-monolithic.yaml").await;
    env.cluster_condition("logs", "Available", "True").await;
    let pvcs: Api<PersistentVolumeClaim> = env.api();
    let claims = wait_for("the worker's PVC", TIMEOUT, || {
        let pvcs = pvcs.clone();
        async move {
            let list = pvcs.list(&ListParams::default()).await?;
            Ok(if list.items.is_empty() {
                Check::Pending("none".into())
            } else {
                Check::Done(list.items)
            })
        }
    })
    .await;

    env.api::<GrafanaCluster>()
        .delete("logs", &DeleteParams::foreground())
        .await
        .expect("delete");
    env.gone::<Deployment>("logs-gateway").await;
    env.gone::<ConfigMap>("logs-config").await;
    env.gone::<Service>("logs-gateway").await;
    env.gone::<StatefulSet>("logs-all").await;
    let orphan = env.pool_condition("logs-all", "RolesValid", "False").await;
    assert!(
        orphan
            .status
            .expect("status")
            .conditions
            .iter()
            .any(|c| c.reason == "ClusterNotFound")
    );
    for claim in claims {
        assert!(
            pvcs.get_opt(&claim.name_any())
                .await
                .expect("get")
                .is_some(),
            "PVC {} was deleted",
            claim.name_any()
        );
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_with_nothing_changed_writes_nothing() {
    let env = OperatorNamespace::start("no-writes").await;
    env.apply_sample("loki-monolithic.yaml").await;
    env.cluster_condition("logs", "Available", "True").await;
    env.cluster_condition("logs", "Progressing", "False").await;
    env.pool_condition("logs-all", "Ready", "True").await;

    /// Adds `kind/name -> resourceVersion` for every object of kind `K` in the namespace.
    async fn record<K>(env: &OperatorNamespace, kind: &str, into: &mut BTreeMap<String, String>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let list = env
            .api::<K>()
            .list(&ListParams::default())
            .await
            .expect("list");
        for object in list.items {
            let version = object.resource_version().unwrap_or_default();
            into.insert(format!("{kind}/{}", object.name_any()), version);
        }
    }

    async fn versions(env: &OperatorNamespace) -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        record::<ConfigMap>(env, "cm", &mut v).await;
        record::<Service>(env, "svc", &mut v).await;
        record::<Deployment>(env, "deploy", &mut v).await;
        record::<StatefulSet>(env, "sts", &mut v).await;
        let pool: WorkerPool = env.get("logs-all").await;
        v.insert(
            "wp/logs-all".into(),
            pool.resource_version().unwrap_or_default(),
        );
        v
    }
    // Let the last status writes settle, then take a snapshot.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = versions(&env).await;
    let cluster_before: GrafanaCluster = env.get("logs").await;

    // An annotation changes nothing the operator reads, but triggers a full reconcile.
    let done = env.cluster_reconciles();
    kubectl_ok([
        "annotate",
        "-n",
        env.name(),
        "grafanacluster",
        "logs",
        "touched=1",
    ])
    .await;
    wait_for("a reconcile after the touch", TIMEOUT, || async {
        Ok(if env.cluster_reconciles() > done {
            Check::Done(())
        } else {
            Check::Pending("no reconcile yet".into())
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = versions(&env).await;
    assert_eq!(
        before, after,
        "a reconcile with nothing changed wrote something"
    );
    let cluster_after: GrafanaCluster = env.get("logs").await;
    assert_eq!(
        cluster_after.status, cluster_before.status,
        "status was rewritten"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_edits_are_reverted_and_deleted_children_recreated() {
    let env = OperatorNamespace::start("drift").await;
    env.apply_sample("loki-monolithic.yaml").await;
    env.cluster_condition("logs", "Available", "True").await;

    env.merge_patch("deployment", "logs-gateway", r#"{"spec":{"replicas":5}}"#)
        .await;
    env.wait_until(
        "logs-gateway",
        "gateway replicas reverted to 1",
        |d: Deployment| {
            let replicas = d.spec.and_then(|s| s.replicas);
            if replicas == Some(1) {
                Check::Done(())
            } else {
                Check::Pending(format!("{replicas:?}"))
            }
        },
    )
    .await;

    env.api::<Service>()
        .delete("logs-read", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_until("logs-read", "role Service recreated", |s: Service| {
        if s.metadata.deletion_timestamp.is_none() {
            Check::Done(())
        } else {
            Check::Pending(format!("{:?} (deleting)", s.name_any()))
        }
    })
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_wait_for_a_missing_secret_start_when_it_appears_and_roll_when_it_changes() {
    let env = OperatorNamespace::start("secret").await;
    env.apply_cluster("logs", "loki", "").await;
    env.apply_pool("all", "logs", "{loki: {all: true}}").await;
    let storage = env
        .cluster_reason("logs", "StorageReady", "SecretNotFound")
        .await;
    assert_eq!(storage.status, "False");
    assert!(
        storage.message.contains("s3-credentials"),
        "{}",
        storage.message
    );
    let ready = env.pool_reason("all", "Ready", "StorageNotReady").await;
    assert!(
        ready.message.contains("s3-credentials"),
        "{}",
        ready.message
    );
    assert!(
        !env.exists::<StatefulSet>("all").await,
        "workers started without credentials"
    );

    env.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s3-credentials}\nstringData: {access-key-id: id}\n").await;
    let storage = env
        .cluster_reason("logs", "StorageReady", "SecretKeyMissing")
        .await;
    assert!(
        storage.message.contains("secret-access-key"),
        "{}",
        storage.message
    );

    env.apply(CREDENTIALS).await;
    env.cluster_condition("logs", "StorageReady", "True").await;
    env.pool_condition("all", "Ready", "True").await;
    let before: StatefulSet = env.get("all").await;
    let checksum_before = annotation(&before, "checksum.lgtm.coordinated.dev/secrets");

    env.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s3-credentials}\nstringData: {access-key-id: id, secret-access-key: rotated}\n").await;
    let after = env
        .wait_until("all", "the secrets checksum to change", |s: StatefulSet| {
            if annotation(&s, "checksum.lgtm.coordinated.dev/secrets") != checksum_before {
                Check::Done(s)
            } else {
                Check::Pending("unchanged".into())
            }
        })
        .await;
    assert!(
        after.metadata.generation > before.metadata.generation,
        "the pod template changed, so pods roll"
    );
    // The value never lands in the StatefulSet, only a reference to the Secret.
    let text = serde_json::to_string(&after).expect("json");
    assert!(!text.contains("rotated"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_pool_changes_neither_the_config_nor_any_other_pool() {
    let env = OperatorNamespace::start("scale").await;
    env.apply_sample("mimir-read-write-backend.yaml").await;
    env.cluster_condition("metrics", "Available", "True").await;
    let sts: Api<StatefulSet> = env.api();
    let write = sts.get("metrics-write").await.expect("write");
    let backend = sts.get("metrics-backend").await.expect("backend");
    let config: ConfigMap = env.get("metrics-config").await;
    let read_template = sts
        .get("metrics-read")
        .await
        .expect("read")
        .spec
        .expect("spec")
        .template;

    env.merge_patch("workerpool", "metrics-read", r#"{"spec":{"replicas":4}}"#)
        .await;
    env.wait_until(
        "metrics-read",
        "the read pool at 4 ready workers",
        |s: StatefulSet| {
            let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready == 4 {
                Check::Done(())
            } else {
                Check::Pending(format!("{ready} ready"))
            }
        },
    )
    .await;
    let cluster = env.cluster_condition("metrics", "Available", "True").await;
    let querier = cluster
        .status
        .expect("status")
        .roles
        .into_iter()
        .find(|r| r.name == "querier")
        .expect("querier");
    assert_eq!(querier.replicas, 4);

    assert_eq!(
        env.get::<ConfigMap>("metrics-config")
            .await
            .resource_version(),
        config.resource_version()
    );
    for (before, name) in [(write, "metrics-write"), (backend, "metrics-backend")] {
        let after = sts.get(name).await.expect(name);
        assert_eq!(
            after.metadata.generation, before.metadata.generation,
            "{name} changed"
        );
    }
    let read_after = sts
        .get("metrics-read")
        .await
        .expect("read")
        .spec
        .expect("spec")
        .template;
    assert_eq!(
        read_after, read_template,
        "scaling does not roll the scaled pool either"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_overrides_and_retention_reach_the_shared_config() {
    let env = OperatorNamespace::start("overrides").await;
    env.apply(CREDENTIALS).await;
    env.apply_cluster("logs", "loki", "  retention: 14d\n")
        .await;
    env.apply_pool("all", "logs", "{loki: {all: true}}").await;
    env.pool_condition("all", "Ready", "True").await;
    env.cluster_condition("logs", "ConfigValid", "True").await;
    let schema_from = env
        .wait_until(
            "logs",
            "Loki's schema date in status",
            |c: GrafanaCluster| match c.status.and_then(|s| s.loki_schema_from) {
                Some(date) => Check::Done(date),
                None => Check::Pending("no date yet".into()),
            },
        )
        .await;
    let configs: Api<ConfigMap> = env.api();
    let config = configs.get("logs-config").await.expect("config");
    let text = config.data.clone().expect("data")["config.yaml"].clone();
    assert!(text.contains("retention_period: 336h"), "{text}");
    assert!(text.contains(&schema_from), "{text}");
    let checksum_before = annotation(
        &env.get("all").await,
        "checksum.lgtm.coordinated.dev/config",
    );

    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"configOverrides":{"server":{"log_level":"debug"}}}}"#,
    )
    .await;
    let text = env
        .wait_until(
            "logs-config",
            "the override in the shared config",
            |c: ConfigMap| {
                let text = c
                    .data
                    .unwrap_or_default()
                    .get("config.yaml")
                    .cloned()
                    .unwrap_or_default();
                if text.contains("log_level: debug") {
                    Check::Done(text)
                } else {
                    Check::Pending("not yet".into())
                }
            },
        )
        .await;
    assert!(
        text.contains("http_listen_port: 3100"),
        "overrides merge, they do not replace: {text}"
    );
    assert!(text.contains(&schema_from), "the schema date never moves");
    env.wait_until(
        "all",
        "workers to roll onto the new config",
        |s: StatefulSet| {
            if annotation(&s, "checksum.lgtm.coordinated.dev/config") != checksum_before {
                Check::Done(())
            } else {
                Check::Pending("same checksum".into())
            }
        },
    )
    .await;

    // A bad retention is a condition, and the last valid configuration stays.
    let good = configs.get("logs-config").await.expect("config");
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"retention":"forever"}}"#,
    )
    .await;
    let condition = env
        .cluster_reason("logs", "ConfigValid", "InvalidRetention")
        .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("forever"),
        "{}",
        condition.message
    );
    assert_eq!(
        configs.get("logs-config").await.expect("config").data,
        good.data
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_its_secret_is_reported_and_the_gateway_mounts_it() {
    let env = OperatorNamespace::start("tls").await;
    env.apply(CREDENTIALS).await;
    env.apply_cluster("logs", "loki", "  tls: {secretName: logs-tls}\n")
        .await;
    env.apply_pool("all", "logs", "{loki: {all: true}}").await;
    let tls = env
        .cluster_reason("logs", "TLSReady", "SecretNotFound")
        .await;
    assert_eq!(tls.status, "False");
    assert!(tls.message.contains("plain HTTP"), "{}", tls.message);
    let gateway: Deployment = env.get("logs-gateway").await;
    let volumes = gateway
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .volumes
        .expect("volumes");
    let tls_volume = volumes
        .iter()
        .find(|v| v.name == "tls")
        .expect("tls volume");
    assert_eq!(
        tls_volume.secret.as_ref().and_then(|s| s.optional),
        Some(false)
    );
    let conf = env
        .get::<ConfigMap>("logs-gateway")
        .await
        .data
        .expect("data")["nginx.conf"]
        .clone();
    assert!(conf.contains("listen 3100 ssl;"), "{conf}");

    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("logs-tls".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_string(), "cert".to_string()),
            ("tls.key".to_string(), "key".to_string()),
        ])),
        ..Default::default()
    };
    env.api::<Secret>()
        .create(&Default::default(), &secret)
        .await
        .expect("create");
    env.cluster_condition("logs", "TLSReady", "True").await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_reports_status_and_changes_nothing() {
    let env = OperatorNamespace::start("paused").await;
    env.apply_sample("loki-monolithic.yaml").await;
    env.cluster_condition("logs", "Available", "True").await;
    env.merge_patch("grafanacluster", "logs", r#"{"spec":{"paused":true}}"#)
        .await;
    env.cluster_condition("logs", "ReconciliationPaused", "True")
        .await;

    env.merge_patch("workerpool", "logs-all", r#"{"spec":{"replicas":2}}"#)
        .await;
    // Status still follows the spec: the pool's roles now want 2 replicas...
    env.wait_until(
        "logs",
        "the roles table to show 2 desired replicas",
        |c: GrafanaCluster| {
            let roles = c.status.unwrap_or_default().roles;
            let read = roles.iter().find(|r| r.name == "read").map(|r| r.replicas);
            if read == Some(2) {
                Check::Done(())
            } else {
                Check::Pending(format!("{read:?}"))
            }
        },
    )
    .await;
    // ...but nothing is changed.
    let replicas = env
        .get::<StatefulSet>("logs-all")
        .await
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(1), "a paused cluster's pools are not scaled");

    env.merge_patch("grafanacluster", "logs", r#"{"spec":{"paused":false}}"#)
        .await;
    env.statefulset_replicas("logs-all", 2, "the pool scaled once unpaused")
        .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    /// Waits until `identity` holds the operator's leader Lease.
    async fn lease_held_by(env: &OperatorNamespace, identity: &str, what: &str) {
        env.wait_until("lgtm-operator", what, |lease: Lease| {
            let holder = lease.spec.and_then(|s| s.holder_identity);
            match holder.as_deref() {
                Some(h) if h == identity => Check::Done(()),
                other => Check::Pending(format!("holder {other:?}")),
            }
        })
        .await;
    }

    let env = OperatorNamespace::without_operator("leader").await;
    let kubeconfig = support::kubeconfig_path();
    let args = ["--leader-elect", "--lease-namespace", env.name()];
    let reconciles = |controller: &'static str| format!("controller=\"{controller}\"");
    let mut first = OperatorProcess::start_as(kubeconfig, env.name(), "first", &args).await;
    // Let the first replica take the lease before the second joins.
    lease_held_by(&env, "first", "the first replica to hold the lease").await;
    let second = OperatorProcess::start_as(kubeconfig, env.name(), "second", &args).await;

    env.apply_sample("loki-monolithic.yaml").await;
    env.cluster_condition("logs", "Available", "True").await;
    let total = "lgtm_operator_reconciles_total";
    first
        .metric_counted(
            total,
            &[&reconciles("grafanacluster")],
            "the leader to count its cluster reconciles",
        )
        .await;
    assert_eq!(
        second.metric(total, &[]).await,
        0.0,
        "the standby reconciled:\n{}",
        second.log()
    );
    let (status, _) = second.get("/readyz").await.expect("the standby answers");
    assert_eq!(
        status, 200,
        "a standby is ready: it is healthy, only not leading"
    );

    // The leader is killed as a crash kills it (SIGKILL: nothing of it runs on, and it
    // does not give the lease up); the standby takes over once the lease expires.
    first.signal("KILL").await;
    lease_held_by(&env, "second", "the second replica to hold the lease").await;
    env.merge_patch("workerpool", "logs-all", r#"{"spec":{"replicas":2}}"#)
        .await;
    env.statefulset_replicas("logs-all", 2, "the new leader to scale the pool")
        .await;
    // The first replica is dead, so the new leader scaled the pool; its count shows it.
    second
        .metric_counted(
            total,
            &[&reconciles("workerpool")],
            "the new leader to count the pool reconcile that scaled the pool",
        )
        .await;
    drop(second);
    env.finish().await;
}

/// Split-brain made impossible rather than unlikely: a leader cut off from the API server
/// (its renewals hang, as under a partition or an overloaded server) stops reconciling
/// before its lease expires as the other replicas compute it, so before any of them can
/// take it, whatever its lease library still believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_stops_before_its_lease_can_pass_to_another() {
    use k8s_openapi::api::coordination::v1::Lease;
    use std::time::SystemTime;

    let env = OperatorNamespace::without_operator("fence").await;
    let partition = support::Partition::start(support::kubeconfig_path()).await;
    let args = ["--leader-elect", "--lease-namespace", env.name()];
    let mut first =
        OperatorProcess::start_as(partition.kubeconfig(), env.name(), "first", &args).await;
    // The Lease as the API server has it: holder, renewTime, leaseDurationSeconds.
    // Absent until the first replica creates it: read as an empty Lease meanwhile.
    let lease = || async {
        let lease: Lease = env
            .api::<Lease>()
            .get_opt("lgtm-operator")
            .await
            .expect("read the Lease")
            .unwrap_or_default();
        let spec = lease.spec.unwrap_or_default();
        (
            spec.holder_identity.unwrap_or_default(),
            spec.renew_time.map(|t| SystemTime::from(t.0)),
            spec.acquire_time.map(|t| SystemTime::from(t.0)),
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0) as u64),
        )
    };
    // Cut it off once it has renewed the lease at least once (a renewal, not only the
    // acquisition, is what the fence counts from in the steady state).
    let acquired = wait_for("the first replica to hold the lease", TIMEOUT, || async {
        let (holder, renewed, acquired, _) = lease().await;
        Ok(match (holder.as_str(), renewed, acquired) {
            ("first", Some(r), Some(a)) => Check::Done((r, a)),
            other => Check::Pending(format!("{other:?}")),
        })
    })
    .await;
    wait_for("a renewal after the acquisition", TIMEOUT, || async {
        let (_, renewed, _, _) = lease().await;
        Ok(if renewed > Some(acquired.1) {
            Check::Done(())
        } else {
            Check::Pending(format!("renewed {renewed:?}"))
        })
    })
    .await;
    let second =
        OperatorProcess::start_as(support::kubeconfig_path(), env.name(), "second", &args).await;
    partition.cut();

    // The last renewal of the first replica that the API server accepted, and when the
    // lease expires for everyone else.
    let (holder, last_renewal, _, duration) = lease().await;
    assert_eq!(holder, "first");
    let expiry = last_renewal.expect("renewTime") + duration;

    let status = first.exited(duration + Duration::from_secs(10)).await;
    let status =
        status.unwrap_or_else(|| panic!("still running after the lease expired:\n{}", first.log()));
    assert!(
        !status.success(),
        "it stops with an error, so that Kubernetes restarts it"
    );
    // It stops reconciling when it logs why (the controllers are dropped at once); the
    // release of the lease that follows may wait on the dead connection a little.
    let log = first.log();
    let stopped_at: SystemTime = log
        .lines()
        .filter(|line| line.contains("not renewed in time"))
        .find_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            let at: k8s_openapi::jiff::Timestamp = line["timestamp"].as_str()?.parse().ok()?;
            Some(SystemTime::from(at))
        })
        .unwrap_or_else(|| panic!("the log says why it stopped:\n{log}"));
    let margin = expiry.duration_since(stopped_at).unwrap_or_else(|_| {
        panic!(
            "stopped {:?} after its lease expired",
            stopped_at.duration_since(expiry)
        )
    });
    println!("the cut-off leader stopped {margin:?} before its lease expired");

    let taken_at = wait_for("the second replica to take the lease", TIMEOUT, || async {
        let (holder, _, acquired, _) = lease().await;
        Ok(match (holder.as_str(), acquired) {
            ("second", Some(at)) => Check::Done(at),
            other => Check::Pending(format!("{other:?}")),
        })
    })
    .await;
    assert!(
        taken_at > stopped_at,
        "the second replica took the lease before the first stopped"
    );
    drop(second);
    env.finish().await;
}

/// An operator whose watches can never fill (here: an account without any rights) must not
/// idle unready forever: it stops with an error naming the cause, so that Kubernetes
/// restarts it and its logs say what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_that_never_fill_stop_the_operator_with_an_error() {
    let (_, ns) = namespace_with_crds("nosync").await;
    let without_rights =
        support::client_with_token(&ns.service_account_token("no-rights").await).await;

    let health = Health::default();
    let options = Options {
        namespace: Some(ns.name().to_string()),
        cache_sync_timeout: Duration::from_secs(3),
        ..Options::default()
    };
    let outcome = tokio::time::timeout(
        TIMEOUT,
        controller::run(without_rights, options, health.clone()),
    )
    .await
    .expect("the operator gives up on its own");
    let error = outcome.expect_err("caches cannot fill without list rights");
    assert!(
        matches!(error, controller::RunError::CachesNotSynced(d) if d == Duration::from_secs(3)),
        "{error}"
    );
    assert!(
        error.to_string().contains("RBAC"),
        "says what to check: {error}"
    );
    assert!(!health.ready(), "never ready");
    ns.cleanup().await;
}

/// SIGTERM while the caches are still filling (a rollout right after a start) ends the
/// process at once and cleanly; kube-runtime's own graceful shutdown would wait for caches
/// that no longer fill, until the kubelet kills the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_the_caches_filled_stops_the_operator_at_once() {
    let (_, ns) = namespace_with_crds("sigterm").await;
    let token = ns.service_account_token("no-rights").await;

    // The operator binary, as that account: same server and CA as the admin kubeconfig.
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    let view = |path: &str| {
        let path = path.to_string();
        async move {
            kubectl_ok([
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ])
            .await
        }
    };
    let server = view(".clusters[0].cluster.server").await;
    let ca = view(".clusters[0].cluster.certificate-authority-data").await;
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: {server}, certificate-authority-data: {}}}}}]\nusers: [{{name: u, user: {{token: {token}}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
            ca.trim()
        ),
    )
    .expect("write kubeconfig");
    let mut operator = OperatorProcess::start(&kubeconfig, ns.name(), &[]).await;
    wait_for("the operator's watches refused", TIMEOUT, || {
        // Its watches are being refused: the controllers run and the caches cannot fill.
        let log = operator.log();
        async move {
            Ok(if log.contains("forbidden") {
                Check::Done(())
            } else {
                Check::Pending(format!("operator log so far:\n{log}"))
            })
        }
    })
    .await;

    let status = tokio::time::timeout(Duration::from_secs(10), operator.signal("TERM"))
        .await
        .unwrap_or_else(|_| panic!("still running 10s after SIGTERM:\n{}", operator.log()));
    assert!(status.success(), "{status}:\n{}", operator.log());
    assert!(
        operator.log().contains("stopping before the caches filled"),
        "{}",
        operator.log()
    );
    ns.cleanup().await;
}

/// Pruning keys on (kind, name): children of different kinds share names (the gateway's
/// ConfigMap, Service and PodDisruptionBudget are all `<c>-gateway`; a pool's
/// StatefulSet and PodDisruptionBudget are both `<p>`), and a PodDisruptionBudget no
/// longer wanted must still go. So must the agent's objects once self-monitoring is off.
#[tokio::test]
async fn children_no_longer_wanted_are_deleted_whatever_their_names() {
    let env = OperatorNamespace::start("prune").await;
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml(
        "metrics",
        "mimir",
        "  gateway: {replicas: 2}\n  selfMonitoring:\n    metrics: {remoteWriteUrl: 'http://prometheus:9090/api/v1/write'}\n",
    ))
    .await;
    env.apply(&pool_yaml(
        "metrics-all",
        "metrics",
        2,
        "{mimir: {all: true}}",
    ))
    .await;
    env.cluster_condition("metrics", "Available", "True").await;
    for pdb in ["metrics-gateway", "metrics-all"] {
        assert!(env.exists::<PodDisruptionBudget>(pdb).await, "{pdb} exists");
    }
    for (exists, what) in [
        (
            env.exists::<ServiceAccount>("metrics-agent").await,
            "ServiceAccount",
        ),
        (env.exists::<Role>("metrics-agent").await, "Role"),
        (
            env.exists::<RoleBinding>("metrics-agent").await,
            "RoleBinding",
        ),
        (env.exists::<Service>("metrics-agent").await, "peer Service"),
        (env.exists::<ConfigMap>("metrics-agent").await, "ConfigMap"),
    ] {
        assert!(exists, "the agent's {what} exists");
    }

    // Scale the gateway and the pool to one replica: their PDBs go, the objects that share
    // their names stay.
    env.merge_patch(
        "grafanacluster",
        "metrics",
        r#"{"spec":{"gateway":{"replicas":1}}}"#,
    )
    .await;
    // On kwok nodes no worker answers a leave call: the scale-down is forced.
    env.merge_patch(
        "workerpool",
        "metrics-all",
        r#"{"metadata":{"annotations":{"lgtm.coordinated.dev/force-scale-down":"true"}},"spec":{"replicas":1}}"#,
    )
    .await;
    env.gone::<PodDisruptionBudget>("metrics-gateway").await;
    env.gone::<PodDisruptionBudget>("metrics-all").await;
    assert!(env.exists::<ConfigMap>("metrics-gateway").await);
    assert!(env.exists::<Service>("metrics-gateway").await);
    assert!(env.exists::<StatefulSet>("metrics-all").await);

    // Self-monitoring off: the agent's objects go; the gateway stays.
    env.merge_patch(
        "grafanacluster",
        "metrics",
        r#"{"spec":{"selfMonitoring":null}}"#,
    )
    .await;
    env.gone::<ServiceAccount>("metrics-agent").await;
    env.gone::<Role>("metrics-agent").await;
    env.gone::<RoleBinding>("metrics-agent").await;
    env.gone::<Service>("metrics-agent").await;
    env.gone::<ConfigMap>("metrics-agent").await;
    assert!(env.exists::<Service>("metrics-gateway").await);
    env.finish().await;
}

/// The gateway as the operator renders it runs as a real pod on the real node
/// (e2e/node.sh), from images built here (e2e/images.sh: Debian's nginx and exporter): its
/// securityContext, mounts, start script and probes hold up in a real container, it turns
/// Ready by its own probes, and it answers on its pod address — `GET /` 200, and 503
/// naming a role no pool provides.
#[tokio::test]
async fn the_rendered_gateway_runs_as_a_real_pod() {
    let image = support::real_node::image_ref;
    let env = OperatorNamespace::start("real-gateway").await;
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml(
        "logs",
        "loki",
        &format!(
            "  gateway:\n    image: {}\n    exporterImage: {}\n    nodeSelector: {{lgtm.coordinated.dev/real-node: 'true'}}\n    tolerations: [{{key: lgtm.coordinated.dev/real-node, operator: Exists, effect: NoSchedule}}]\n",
            image("gateway"),
            image("exporter")
        ),
    ))
    .await;
    env.apply(&pool_yaml("logs-read", "logs", 1, "{loki: {read: true}}"))
        .await;
    let pods = support::real_node::rolled_out(&env, "logs-gateway").await;
    let pod = pods.first().expect("a gateway pod");
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("real-node"));
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let curl = |url: String| async move {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg(url)
            .output()
            .await
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let root = curl(format!("http://{ip}:3100/")).await;
    assert!(root.ends_with("\n200"), "GET / answers 200: {root}");
    let push = curl(format!("http://{ip}:3100/loki/api/v1/push")).await;
    assert!(
        push.ends_with("\n503") && push.contains("write"),
        "no pool runs write: {push}"
    );
    let health = curl(format!("http://{ip}:8081/healthz")).await;
    assert!(health.ends_with("\n200"), "{health}");
    env.finish().await;
}

/// The operator image (`e2e/images.sh operator`, what `make image` packs from the release
/// binary; here from the test build) runs on the real node as its non-root user with a
/// read-only root: `lgtm-operator render` over the samples, mounted from a ConfigMap,
/// prints the children. In-cluster `run` needs a routed `kubernetes` Service, which the
/// local cluster lacks until kube-proxy (the real-node issue).
#[tokio::test]
async fn the_operator_image_runs_on_the_real_node() {
    let env = OperatorNamespace::start("operator-image").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = dir.path().join("operator.tar");
    let reference = "lgtm.local/lgtm-operator:test";
    let built = std::process::Command::new(support::repo_root().join("e2e/images.sh"))
        .arg("operator")
        .arg(env!("CARGO_BIN_EXE_lgtm-operator"))
        .arg("docker-archive")
        .arg(&archive)
        .arg(reference)
        .output()
        .expect("e2e/images.sh runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let loaded = std::process::Command::new(support::repo_root().join("e2e/cluster.sh"))
        .arg("load-image")
        .arg(&archive)
        .output()
        .expect("e2e/cluster.sh runs");
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let samples = support::repo_root().join("deploy/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).expect("sample");
    let config: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "samples"},
        "data": {
            "s3-credentials.yaml": read("s3-credentials.yaml"),
            "loki-monolithic.yaml": read("loki-monolithic.yaml"),
        }
    }))
    .expect("ConfigMap");
    env.api::<ConfigMap>()
        .create(&Default::default(), &config)
        .await
        .expect("create the samples");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "render"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"lgtm.coordinated.dev/real-node": "true"},
            "tolerations": [{"key": "lgtm.coordinated.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true},
            "containers": [{
                "name": "operator",
                "image": reference,
                "imagePullPolicy": "Never",
                "args": ["render", "-n", "obs", "-f", "/samples/s3-credentials.yaml", "-f", "/samples/loki-monolithic.yaml"],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "samples", "mountPath": "/samples"}]
            }],
            "volumes": [{"name": "samples", "configMap": {"name": "samples"}}]
        }
    }))
    .expect("Pod");
    env.api::<k8s_openapi::api::core::v1::Pod>()
        .create(&Default::default(), &pod)
        .await
        .expect("create the pod");
    env.wait_until(
        "render",
        "the operator image to finish",
        |p: k8s_openapi::api::core::v1::Pod| match p.status.and_then(|s| s.phase).as_deref() {
            Some("Succeeded") => Check::Done(()),
            other => Check::Pending(format!("phase {other:?}")),
        },
    )
    .await;
    let logs = kubectl_ok(["logs", "-n", env.name(), "render"]).await;
    assert!(
        logs.contains("kind: StatefulSet") && logs.contains("name: logs-all"),
        "{logs}"
    );
    env.finish().await;
}

/// A crash in the middle of a burst: the operator is killed (SIGKILL) while it reconciles
/// 50 new clusters, and restarted. Afterwards the namespace holds exactly the children
/// the operator renders for those manifests (offline, `lgtm-operator render`): each
/// once, none missing, none left over, every one controlled by its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_fifty_clusters_leaves_each_child_exactly_once() {
    const CLUSTERS: usize = 50;
    let env = OperatorNamespace::without_operator("kill-burst").await;
    let mut manifests = String::from(CREDENTIALS);
    for i in 0..CLUSTERS {
        let name = format!("l{i:02}");
        manifests.push_str("---\n");
        manifests.push_str(&cluster_yaml(&name, "loki", ""));
        manifests.push_str("---\n");
        manifests.push_str(&pool_yaml(
            &format!("{name}-all"),
            &name,
            1,
            "{loki: {all: true}}",
        ));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("clusters.yaml");
    std::fs::write(&file, &manifests).expect("write");
    let file = file.to_str().expect("utf-8");

    let kubeconfig = support::kubeconfig_path();
    let mut first = OperatorProcess::start(kubeconfig, env.name(), &[]).await;
    kubectl_ok(["apply", "--server-side", "-n", env.name(), "-f", file]).await;
    // Killed once it is well into the burst, not before and not after.
    wait_for("a fifth of the reconciles", TIMEOUT, || async {
        let done = first.metric("lgtm_operator_reconciles_total", &[]).await;
        Ok(if done >= (CLUSTERS / 5) as f64 {
            Check::Done(())
        } else {
            Check::Pending(format!("{done} reconciles"))
        })
    })
    .await;
    first.signal("KILL").await;
    let _second = OperatorProcess::start(kubeconfig, env.name(), &[]).await;
    wait_for(
        "every cluster Available",
        Duration::from_secs(300),
        || async {
            let clusters = env
                .api::<GrafanaCluster>()
                .list(&ListParams::default())
                .await?;
            let available = clusters
                .items
                .iter()
                .filter(|c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|k| k.type_ == "Available" && k.status == "True")
                    })
                })
                .count();
            Ok(if available == CLUSTERS {
                Check::Done(())
            } else {
                Check::Pending(format!("{available} of {CLUSTERS} Available"))
            })
        },
    )
    .await;

    // What should exist, by kind and name: the offline rendering of the same manifests.
    // Alert rules are a PrometheusRule where that kind is served (the e2e layer installs
    // its CRD on the shared control plane), else a ConfigMap: render as the operator saw.
    let rules_served = support::kubectl(["get", "crd", "prometheusrules.monitoring.coreos.com"])
        .await
        .is_ok_and(|out| out.success);
    let mut render = vec!["render", "-n", env.name(), "-f", file];
    if rules_served {
        render.push("--prometheus-rules");
    }
    let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_lgtm-operator"))
        .args(&render)
        .output()
        .expect("render");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut wanted: Vec<String> = vec![];
    let (mut kind, mut in_metadata) = (String::new(), false);
    for line in String::from_utf8_lossy(&rendered.stdout).lines() {
        if let Some(k) = line.strip_prefix("kind: ") {
            kind = k.trim().to_string();
        } else if line == "metadata:" {
            in_metadata = true;
        } else if in_metadata && let Some(name) = line.strip_prefix("  name: ") {
            wanted.push(format!("{kind}/{}", name.trim()));
            in_metadata = false;
        } else if !line.starts_with(' ') {
            in_metadata = false;
        }
    }
    wanted.sort();

    /// `kind/name` of every object of kind `K` the operator manages in the namespace,
    /// failing on any not controlled by a GrafanaCluster or WorkerPool that exists.
    async fn managed<K>(env: &OperatorNamespace, owners: &[String], into: &mut Vec<String>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let selector = "app.kubernetes.io/managed-by=lgtm-operator";
        let list = env
            .api::<K>()
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list");
        for object in list.items {
            let controller = object
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone());
            assert!(
                controller.is_some_and(|uid| owners.contains(&uid)),
                "{} {} has no living owner",
                K::kind(&()),
                object.name_any()
            );
            into.push(format!("{}/{}", K::kind(&()), object.name_any()));
        }
    }
    let mut owners: Vec<String> = vec![];
    for c in env
        .api::<GrafanaCluster>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        owners.extend(c.uid());
    }
    for p in env
        .api::<WorkerPool>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        owners.extend(p.uid());
    }
    let mut found = vec![];
    managed::<ConfigMap>(&env, &owners, &mut found).await;
    managed::<Service>(&env, &owners, &mut found).await;
    managed::<Deployment>(&env, &owners, &mut found).await;
    managed::<StatefulSet>(&env, &owners, &mut found).await;
    managed::<PodDisruptionBudget>(&env, &owners, &mut found).await;
    managed::<ServiceAccount>(&env, &owners, &mut found).await;
    managed::<Role>(&env, &owners, &mut found).await;
    managed::<RoleBinding>(&env, &owners, &mut found).await;
    found.sort();
    let kinds = [
        "ConfigMap",
        "Service",
        "Deployment",
        "StatefulSet",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ];
    wanted.retain(|w| kinds.iter().any(|k| w.starts_with(&format!("{k}/"))));
    assert_eq!(
        found.len(),
        wanted.len(),
        "children after the restart vs rendered"
    );
    assert_eq!(
        found, wanted,
        "children after the restart differ from the rendering"
    );
    env.finish().await;
}

/// The scale subresource: `kubectl scale` drives a pool, and a HorizontalPodAutoscaler
/// reads the pool's replicas and pod selector through it (kube-controller-manager's HPA
/// controller reports `AbleToScale` and the current replicas; with no metrics server here
/// it cannot compute a recommendation, which it says in `ScalingActive`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_scales_through_its_scale_subresource_for_kubectl_and_an_autoscaler() {
    let env = OperatorNamespace::start("scale").await;
    env.apply(CREDENTIALS).await;
    env.apply_cluster("traces", "tempo", "").await;
    env.apply_pool("traces-all", "traces", "{tempo: {all: true}}")
        .await;
    env.pool_condition("traces-all", "Ready", "True").await;

    kubectl_ok([
        "scale",
        "-n",
        env.name(),
        "workerpool/traces-all",
        "--replicas=3",
    ])
    .await;
    env.statefulset_replicas("traces-all", 3, "the StatefulSet scaled by kubectl scale")
        .await;
    let scale_path = format!(
        "/apis/lgtm.coordinated.dev/v1alpha1/namespaces/{}/workerpools/traces-all/scale",
        env.name()
    );
    let selector = "lgtm.coordinated.dev/cluster=traces,lgtm.coordinated.dev/pool=traces-all";
    wait_for(
        "the scale subresource to report 3 replicas",
        TIMEOUT,
        || {
            let path = scale_path.clone();
            async move {
                let out = kubectl_ok(["get", "--raw", &path]).await;
                let scale: serde_json::Value = serde_json::from_str(&out)?;
                Ok(
                    if scale["spec"]["replicas"] == 3
                        && scale["status"]["replicas"] == 3
                        && scale["status"]["selector"] == selector
                    {
                        Check::Done(())
                    } else {
                        Check::Pending(out)
                    },
                )
            }
        },
    )
    .await;

    env.apply(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: traces-all}\nspec:\n  scaleTargetRef: {apiVersion: lgtm.coordinated.dev/v1alpha1, kind: WorkerPool, name: traces-all}\n  minReplicas: 2\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n",
    )
    .await;
    wait_for(
        "the autoscaler to read the pool through its scale",
        TIMEOUT,
        || async {
            let out = kubectl_ok(["get", "-n", env.name(), "hpa/traces-all", "-o", "json"]).await;
            let hpa: serde_json::Value = serde_json::from_str(&out)?;
            let able = hpa["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "AbleToScale" && c["status"] == "True");
            Ok(if able && hpa["status"]["currentReplicas"] == 3 {
                Check::Done(())
            } else {
                Check::Pending(hpa["status"].to_string())
            })
        },
    )
    .await;
    env.finish().await;
}
