//! Faults of the control plane under a running operator. For each fault, a change made
//! after recovery (a pool scaled, the cluster's gateway scaled) must reach the StatefulSet,
//! the Deployment and the pool's status; the time it took is printed
//! (`converged … after recovery`). After each, no volume claim of the workers is lost
//! and the Secret's value shows in no object but its Secret.
//!
//! These tests stop and restart kube-apiserver and etcd, so they use a control plane of
//! their own (`e2e/faults.env`: another state dir and other ports) and run one at a time.
//! The operator runs as a child process, as Kubernetes would run it, with a watch timeout
//! of 10 seconds so that an outage can outlast it within a short test.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use lgtm_operator::api::{GrafanaCluster, WorkerPool};
use support::{Check, ControlPlane, OperatorProcess, TestNamespace, kubectl_at, wait_for};
use tokio::sync::Mutex;

const TIMEOUT: Duration = Duration::from_secs(180);
/// The operator's watch timeout in these tests, in seconds.
const WATCH_TIMEOUT: u64 = 10;
const CLUSTER: &str = "logs";
const POOL: &str = "logs-all";
/// The sample credentials' secret key (deploy/samples/s3-credentials.yaml).
const SAMPLE_SECRET: &str = "lgtm-sample-secret";

/// One test at a time: each breaks the control plane they share.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A namespace on the fault control plane with the Loki sample in it, Available, and an
/// operator process watching it.
struct Scenario {
    plane: &'static ControlPlane,
    kubeconfig: PathBuf,
    client: Client,
    ns: TestNamespace,
    operator: OperatorProcess,
}

impl Scenario {
    async fn new(prefix: &str) -> Self {
        let plane = ControlPlane::faults();
        let kubeconfig = plane.up();
        let client = plane.client().await;
        support::install_crds(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        let operator = start_operator(&kubeconfig, ns.name()).await;
        let scenario = Self {
            plane,
            kubeconfig,
            client,
            ns,
            operator,
        };
        for sample in ["s3-credentials.yaml", "loki-monolithic.yaml"] {
            scenario.kubectl_apply_sample(sample).await;
        }
        scenario
            .wait_until_converged(1, 1, "the sample to be Available")
            .await;
        scenario
    }

    async fn kubectl_apply_sample(&self, sample: &str) {
        let path = support::sample_without_probe(sample);
        let out = kubectl_at(
            &self.kubeconfig,
            [
                "apply",
                "-n",
                self.ns.name(),
                "-f",
                path.to_str().expect("utf-8"),
            ],
        )
        .await
        .expect("kubectl runs");
        assert!(out.success, "kubectl apply {sample}: {}", out.stderr);
    }

    /// Brings every stopped component back with one `cluster.sh up`: it must not need a
    /// second try, even while a stopped component is still shutting down.
    fn recover(&self) -> Instant {
        self.plane.up();
        Instant::now()
    }

    /// Scales the pool and the gateway by one (a change a user makes after the fault) and
    /// waits until both reach the workloads and the pool's status; prints how long that
    /// took after `recovered`.
    async fn change_and_converge(&self, fault: &str, recovered: Instant) {
        let pools: Api<WorkerPool> = Api::namespaced(self.client.clone(), self.ns.name());
        let clusters: Api<GrafanaCluster> = Api::namespaced(self.client.clone(), self.ns.name());
        let replicas = current_replicas(&pools).await + 1;
        let gateway = replicas; // the gateway follows, so each step is a real change
        merge_patch(&pools, POOL, serde_json::json!({ "replicas": replicas })).await;
        merge_patch(
            &clusters,
            CLUSTER,
            serde_json::json!({ "gateway": { "replicas": gateway } }),
        )
        .await;
        let changed = Instant::now();
        let applied = self
            .wait_until_converged(replicas, gateway, &format!("the change after {fault}"))
            .await;
        println!(
            "fault {fault}: change applied by the operator {:.1}s after it was made ({:.1}s after recovery); converged, pods ready and status reported, {:.1}s after recovery",
            applied.duration_since(changed).as_secs_f64(),
            applied.duration_since(recovered).as_secs_f64(),
            recovered.elapsed().as_secs_f64()
        );
    }

    /// Waits until the pool's StatefulSet asks for and has `replicas` ready workers, the
    /// pool's status says so, and the gateway Deployment asks for `gateway` replicas.
    /// Returns when the operator had written both workloads' specs (the rest is the
    /// control plane's: pods created and made ready).
    async fn wait_until_converged(&self, replicas: i32, gateway: i32, what: &str) -> Instant {
        let applied = std::sync::Mutex::new(None::<Instant>);
        let applied = &applied;
        let ns = self.ns.name();
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let pools: Api<WorkerPool> = Api::namespaced(self.client.clone(), ns);
        wait_for(what, TIMEOUT, || {
            let (statefulsets, deployments, pools) =
                (statefulsets.clone(), deployments.clone(), pools.clone());
            async move {
                let sts = statefulsets.get(POOL).await?;
                let asked = sts.spec.as_ref().and_then(|s| s.replicas);
                let ready = sts.status.as_ref().and_then(|s| s.ready_replicas);
                let pool = pools.get(POOL).await?;
                let reported = pool.status.as_ref().map(|s| s.ready_replicas);
                let gw = deployments
                    .get(&format!("{CLUSTER}-gateway"))
                    .await?
                    .spec
                    .and_then(|s| s.replicas);
                let state = format!(
                    "StatefulSet asks {asked:?} has {ready:?} ready; pool reports {reported:?}; gateway asks {gw:?}"
                );
                if asked == Some(replicas) && gw == Some(gateway) {
                    let mut applied = applied.lock().unwrap_or_else(|p| p.into_inner());
                    applied.get_or_insert_with(Instant::now);
                }
                Ok(
                    if asked == Some(replicas)
                        && ready == Some(replicas)
                        && reported == Some(replicas)
                        && gw == Some(gateway)
                    {
                        Check::Done(())
                    } else {
                        Check::Pending(state)
                    },
                )
            }
        })
        .await;
        let applied = *applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.unwrap_or_else(Instant::now)
    }

    /// What no fault may do: lose a volume claim of the pool's workers, or let the
    /// sample Secret's value show in any object of the namespace.
    async fn nothing_lost(&self) {
        let ns = self.ns.name();
        let pools: Api<WorkerPool> = Api::namespaced(self.client.clone(), ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        // Replicas only grow in these tests: every ordinal up to now has had a claim.
        for ordinal in 0..current_replicas(&pools).await {
            let name = format!("data-{POOL}-{ordinal}");
            let claim = claims.get_opt(&name).await.expect("read the claim");
            assert!(
                claim.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
                "volume claim {name} lost"
            );
        }
        let everything = kubectl_at(
            &self.kubeconfig,
            [
                "get",
                "configmaps,statefulsets,deployments,services,events,grafanaclusters,workerpools",
                "-n",
                ns,
                "-o",
                "yaml",
            ],
        )
        .await
        .expect("kubectl runs");
        assert!(everything.success, "{}", everything.stderr);
        assert!(
            !everything.stdout.contains(SAMPLE_SECRET),
            "the Secret's value shows outside its Secret"
        );
    }

    async fn finish(self) {
        self.nothing_lost().await;
        self.ns.cleanup().await;
    }
}

async fn start_operator(kubeconfig: &std::path::Path, ns: &str) -> OperatorProcess {
    OperatorProcess::start(
        kubeconfig,
        ns,
        &["--watch-timeout-seconds", &WATCH_TIMEOUT.to_string()],
    )
    .await
}

/// Merges `spec` into object `name`, retrying while the API server is still warming up.
async fn merge_patch<K>(api: &Api<K>, name: &str, spec: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "spec": spec });
    wait_for(&format!("{name} to take {spec}"), TIMEOUT, || {
        let (api, patch) = (api.clone(), patch.clone());
        async move {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Check::Done(()))
        }
    })
    .await;
}

async fn current_replicas(pools: &Api<WorkerPool>) -> i32 {
    pools.get(POOL).await.expect("the pool").spec.replicas
}

/// Polls `/readyz` and `/healthz` until readiness reads `ready`; returns the last answers.
async fn wait_readiness(
    operator: &OperatorProcess,
    ready: bool,
    timeout: Duration,
) -> ((u16, String), (u16, String)) {
    let want = if ready { 200 } else { 503 };
    wait_for(&format!("/readyz to answer {want}"), timeout, || async {
        let readyz = operator.get("/readyz").await?;
        let healthz = operator.get("/healthz").await?;
        Ok(if readyz.0 == want {
            Check::Done((readyz, healthz))
        } else {
            Check::Pending(format!("/readyz {readyz:?}, /healthz {healthz:?}"))
        })
    })
    .await
}

/// The issue that started this file: kube-apiserver stopped with SIGTERM under a running
/// operator, and `up` run at once, while the old process still drains (about a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_the_api_server_restarts() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scenario = Scenario::new("apiserver-restart").await;
    let pid = std::fs::read_to_string(
        scenario
            .kubeconfig
            .parent()
            .expect("state dir")
            .join("run/kube-apiserver.pid"),
    )
    .expect("kube-apiserver pid");
    std::process::Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .expect("SIGTERM kube-apiserver");
    let recovered = scenario.recover();
    scenario
        .change_and_converge("kube-apiserver restarted", recovered)
        .await;
    scenario.finish().await;
}

/// An outage longer than the watch timeout: every watch request is gone and must be
/// started anew. Readiness drops while the API server is away; liveness does not, since a
/// restart would not bring the API server back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_an_outage_longer_than_the_watch_timeout() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scenario = Scenario::new("apiserver-outage").await;
    let (readyz, _) = wait_readiness(&scenario.operator, true, TIMEOUT).await;
    assert_eq!(readyz.1, "ok");
    scenario
        .plane
        .cluster_sh(&["stop", "kube-apiserver", "KILL"])
        .expect("stop kube-apiserver");
    let down = Instant::now();
    let (readyz, healthz) = wait_readiness(&scenario.operator, false, TIMEOUT).await;
    assert!(readyz.1.contains("watches failing"), "{readyz:?}");
    assert_eq!(healthz, (200, "ok".to_string()), "liveness holds");
    // A minute, as the issue asks, and at least twice the watch timeout, so that every
    // watch request outlives its timeout while the server is away.
    let outage = Duration::from_secs(60.max(WATCH_TIMEOUT * 2));
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    println!(
        "fault kube-apiserver down {:.0}s (watch timeout {WATCH_TIMEOUT}s)",
        down.elapsed().as_secs_f64()
    );
    let recovered = scenario.recover();
    scenario
        .change_and_converge("kube-apiserver down past the watch timeout", recovered)
        .await;
    let (readyz, healthz) = wait_readiness(&scenario.operator, true, TIMEOUT).await;
    println!(
        "fault kube-apiserver down past the watch timeout: ready again {:.1}s after recovery",
        recovered.elapsed().as_secs_f64()
    );
    assert_eq!((readyz.0, healthz.0), (200, 200));
    scenario.finish().await;
}

/// A watch that cannot resume (410 Gone): etcd's history is compacted past every
/// resource version the operator holds and the API server restarts with an empty watch
/// cache. The operator relists and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_a_watch_expires() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scenario = Scenario::new("watch-expired").await;
    let lists_before = scenario
        .operator
        .metric("lgtm_operator_watch_lists_total", &["kind=\"WorkerPool\""])
        .await;
    scenario
        .plane
        .cluster_sh(&["stop", "kube-apiserver", "KILL"])
        .expect("stop kube-apiserver");
    scenario
        .plane
        .cluster_sh(&["compact"])
        .expect("compact etcd");
    let recovered = scenario.recover();
    scenario
        .change_and_converge("watch expired (410 Gone)", recovered)
        .await;
    let lists_after = scenario
        .operator
        .metric("lgtm_operator_watch_lists_total", &["kind=\"WorkerPool\""])
        .await;
    assert!(
        lists_after > lists_before,
        "the WorkerPool watches relisted: {lists_before} lists before, {lists_after} after\n{}",
        scenario.operator.log()
    );
    assert!(
        scenario.operator.log().contains("410")
            || scenario.operator.log().contains("Expired")
            || scenario.operator.log().contains("compacted"),
        "the operator saw its watches expire:\n{}",
        scenario.operator.log()
    );
    scenario.finish().await;
}

/// etcd restarted under a running API server and operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_etcd_restarts() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scenario = Scenario::new("etcd-restart").await;
    scenario
        .plane
        .cluster_sh(&["stop", "etcd", "TERM"])
        .expect("stop etcd");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recovered = scenario.recover();
    scenario
        .change_and_converge("etcd restarted", recovered)
        .await;
    scenario.finish().await;
}

/// The operator killed with SIGKILL in the middle of its work, then started again: it
/// converges, and every child exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_the_operator_is_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut scenario = Scenario::new("operator-killed").await;
    // A change, and the kill before the operator can have finished with it.
    let pools: Api<WorkerPool> = Api::namespaced(scenario.client.clone(), scenario.ns.name());
    let replicas = current_replicas(&pools).await + 2;
    merge_patch(&pools, POOL, serde_json::json!({ "replicas": replicas })).await;
    let status = scenario.operator.signal("KILL").await;
    assert!(!status.success(), "killed: {status}");
    scenario.operator = start_operator(&scenario.kubeconfig, scenario.ns.name()).await;
    let recovered = Instant::now();
    scenario
        .wait_until_converged(replicas, 1, "the change made before the kill")
        .await;
    scenario
        .change_and_converge("operator killed with SIGKILL", recovered)
        .await;
    let statefulsets: Api<StatefulSet> =
        Api::namespaced(scenario.client.clone(), scenario.ns.name());
    let names: Vec<String> = statefulsets
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(names, [POOL], "one StatefulSet, the pool's");
    scenario.finish().await;
}

/// The CRDs upgraded under a running operator, as a new release's chart does: the API
/// server ends every watch of the kinds whose CRD changed. A change made after the
/// upgrade still converges, and the operator stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_converges_after_the_crds_are_upgraded() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceColumnDefinition, CustomResourceDefinition,
    };
    use kube::CustomResourceExt;
    let _turn = ONE_AT_A_TIME.lock().await;
    let scenario = Scenario::new("crd-upgrade").await;
    let crds: Api<CustomResourceDefinition> = Api::all(scenario.client.clone());
    // The same kinds with one more printer column: what a release adds most often.
    for mut crd in [GrafanaCluster::crd(), WorkerPool::crd()] {
        for version in &mut crd.spec.versions {
            version
                .additional_printer_columns
                .get_or_insert_default()
                .push(CustomResourceColumnDefinition {
                    name: "UID".into(),
                    type_: "string".into(),
                    json_path: ".metadata.uid".into(),
                    priority: Some(1),
                    ..Default::default()
                });
        }
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("lgtm-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("upgrade the CRD");
    }
    let upgraded = Instant::now();
    scenario
        .change_and_converge("CRDs upgraded", upgraded)
        .await;
    let (readyz, healthz) = wait_readiness(&scenario.operator, true, TIMEOUT).await;
    assert_eq!((readyz.0, healthz.0), (200, 200));
    // The next test installs the CRDs as they are.
    support::install_crds(&scenario.client).await;
    scenario.finish().await;
}

/// A permission the operator needs revoked while it runs (here: StatefulSets): readiness
/// says which watch is forbidden, liveness holds (a restart would not mend it, so no
/// crash loop), the log names it; granted back, the operator goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_permission_is_reported_and_recovered_from_when_granted_back() {
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    let _turn = ONE_AT_A_TIME.lock().await;
    let plane = ControlPlane::faults();
    let admin_kubeconfig = plane.up();
    let client = plane.client().await;
    support::install_crds(&client).await;
    let ns = TestNamespace::new(&client, "rbac-revoked").await;
    let rule = |groups: &[&str], resources: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["*".into()],
        ..Default::default()
    };
    let everything = vec![rule(&["*"], &["*"])];
    // Everything the operator touches but StatefulSets.
    let without_statefulsets = vec![
        rule(
            &[""],
            &[
                "configmaps",
                "services",
                "secrets",
                "serviceaccounts",
                "events",
                "pods",
            ],
        ),
        rule(&["apps"], &["deployments"]),
        rule(&["policy"], &["poddisruptionbudgets"]),
        rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"]),
        rule(&["events.k8s.io"], &["events"]),
        rule(&["lgtm.coordinated.dev"], &["*"]),
    ];
    let roles: Api<Role> = ns.api();
    let set_rules = |rules: Vec<PolicyRule>| {
        let roles = roles.clone();
        async move {
            let role = Role {
                metadata: kube::api::ObjectMeta {
                    name: Some("operator".into()),
                    ..Default::default()
                },
                rules: Some(rules),
            };
            roles
                .patch(
                    "operator",
                    &PatchParams::apply("lgtm-operator-tests").force(),
                    &Patch::Apply(&role),
                )
                .await
                .expect("apply the Role");
        }
    };
    set_rules(everything.clone()).await;
    let token = ns.service_account_token("operator").await;
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("operator".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "operator".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "operator".into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        }]),
    };
    ns.api::<RoleBinding>()
        .patch(
            "operator",
            &PatchParams::apply("lgtm-operator-tests").force(),
            &Patch::Apply(&binding),
        )
        .await
        .expect("bind the Role");

    // The admin's kubeconfig (server, CA, and the user name its context names) with the
    // ServiceAccount's token as the user.
    let admin = std::fs::read_to_string(&admin_kubeconfig).expect("kubeconfig");
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut in_user = false;
    let mut as_operator = String::new();
    for line in admin.lines() {
        if line.starts_with("users:") {
            in_user = true;
            as_operator.push_str(&format!(
                "users:\n- name: kubernetes-admin\n  user:\n    token: {token}\n"
            ));
            continue;
        }
        if in_user && (line.starts_with("- ") || line.starts_with("  ")) {
            continue;
        }
        in_user = false;
        as_operator.push_str(line);
        as_operator.push('\n');
    }
    std::fs::write(&kubeconfig, &as_operator).expect("write kubeconfig");
    let operator = start_operator(&kubeconfig, ns.name()).await;
    for sample in ["s3-credentials.yaml", "loki-monolithic.yaml"] {
        let path = support::sample_without_probe(sample);
        let out = kubectl_at(
            &admin_kubeconfig,
            [
                "apply",
                "-n",
                ns.name(),
                "-f",
                path.to_str().expect("utf-8"),
            ],
        )
        .await
        .expect("kubectl");
        assert!(out.success, "{}", out.stderr);
    }
    let (readyz, _) = wait_readiness(&operator, true, TIMEOUT).await;
    assert_eq!(
        readyz.0,
        200,
        "ready with every permission:\n{}",
        operator.log()
    );

    set_rules(without_statefulsets).await;
    let (readyz, healthz) = wait_readiness(&operator, false, TIMEOUT).await;
    println!("fault permission revoked: /readyz {readyz:?}");
    assert!(
        readyz.1.contains("StatefulSet"),
        "readiness names the watch: {readyz:?}"
    );
    assert_eq!(
        healthz.0, 200,
        "liveness holds: a restart would not mend a permission"
    );
    assert!(
        operator.log().contains("forbidden"),
        "the log says forbidden:\n{}",
        operator.log()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        operator.get("/healthz").await.expect("healthz").0,
        200,
        "still live"
    );

    set_rules(everything).await;
    let granted = Instant::now();
    let (readyz, _) = wait_readiness(&operator, true, TIMEOUT).await;
    println!(
        "fault permission revoked: ready again {:.1}s after it was granted back",
        granted.elapsed().as_secs_f64()
    );
    assert_eq!(readyz.0, 200);
    // And it works again: a pool change reaches the StatefulSet.
    let pools: Api<WorkerPool> = ns.api();
    let replicas = current_replicas(&pools).await + 1;
    merge_patch(&pools, POOL, serde_json::json!({ "replicas": replicas })).await;
    let statefulsets: Api<StatefulSet> = ns.api();
    wait_for("the StatefulSet to follow the pool", TIMEOUT, || async {
        let asked = statefulsets.get(POOL).await?.spec.and_then(|s| s.replicas);
        Ok(if asked == Some(replicas) {
            Check::Done(())
        } else {
            Check::Pending(format!("asks {asked:?}"))
        })
    })
    .await;
    drop(operator);
    ns.cleanup().await;
}
