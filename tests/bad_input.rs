//! Bad input, against the real API server and the operator binary: the corpus in
//! `tests/corpus/` (malformed, hostile, conflicting manifests; each file says what must
//! happen in its `# expect:` lines), and the races a user can start (a pool before its
//! cluster, a cluster deleted mid-rollout). Each manifest is refused at admission or
//! explained in status; the operator never panics, writes nothing but its own children
//! and never shows a Secret's value.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use lgtm_operator::api::{GrafanaCluster, WorkerPool};
use support::{Check, OperatorProcess, TIMEOUT, kubectl, wait_for};

/// The corpus's Secret; its value must never show up anywhere.
const SECRET_VALUE: &str = "corpus-secret-value-5f1c";
const CREDENTIALS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: corpus-credentials}\nstringData: {access-key-id: corpus-id, secret-access-key: corpus-secret-value-5f1c}\n";
/// The label every child carries, naming its cluster.
const CLUSTER_LABEL: &str = "lgtm.coordinated.dev/cluster";

/// What one `# expect:` line asks.
#[derive(Debug)]
enum Expect {
    /// The API server refuses the manifest, its message containing this.
    Refused(String),
    /// Accepted, and `kind/name` gets condition `type_` with `status` and `reason`.
    Condition {
        kind: String,
        name: String,
        type_: String,
        status: String,
        reason: String,
    },
    /// Accepted, and the gateway configuration of `cluster` never contains `text`.
    GatewayConfigWithout { cluster: String, text: String },
}

fn expectations(manifest: &str) -> Vec<Expect> {
    manifest
        .lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(|line| {
            let (what, rest) = line.split_once(": ").expect("`what: details`");
            match what {
                "refused" => Expect::Refused(rest.to_string()),
                "condition" => {
                    let [object, condition, reason] = rest
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .try_into()
                        .expect("`kind/name Type=Status Reason`");
                    let (kind, name) = object.split_once('/').expect("kind/name");
                    let (type_, status) = condition.split_once('=').expect("Type=Status");
                    Expect::Condition {
                        kind: kind.into(),
                        name: name.into(),
                        type_: type_.into(),
                        status: status.into(),
                        reason: reason.into(),
                    }
                }
                "gateway-config-without" => {
                    let (cluster, text) = rest.split_once(' ').expect("`cluster text`");
                    Expect::GatewayConfigWithout {
                        cluster: cluster.into(),
                        text: text.into(),
                    }
                }
                other => panic!("unknown expectation {other}"),
            }
        })
        .collect()
}

async fn conditions(ns: &str, kind: &str, name: &str) -> Option<Vec<Condition>> {
    let client = support::client().await;
    match kind {
        "GrafanaCluster" => Api::<GrafanaCluster>::namespaced(client, ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.status)
            .map(|s| s.conditions),
        "WorkerPool" => Api::<WorkerPool>::namespaced(client, ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.status)
            .map(|s| s.conditions),
        other => panic!("no conditions on {other}"),
    }
}

/// Checks one expectation of an accepted manifest; the failure, if any.
async fn check(ns: &str, expect: &Expect) -> Result<(), String> {
    match expect {
        Expect::Refused(_) => unreachable!("checked on apply"),
        Expect::Condition {
            kind,
            name,
            type_,
            status,
            reason,
        } => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut last = None;
            while tokio::time::Instant::now() < deadline {
                last = conditions(ns, kind, name).await;
                let met = last
                    .iter()
                    .flatten()
                    .any(|c| &c.type_ == type_ && &c.status == status && &c.reason == reason);
                if met {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(format!(
                "{kind}/{name}: no {type_}={status} {reason}; conditions: {last:?}"
            ))
        }
        Expect::GatewayConfigWithout { cluster, text } => {
            let configs: Api<ConfigMap> = Api::namespaced(support::client().await, ns);
            let name = format!("{cluster}-gateway");
            let config = wait_for(&format!("ConfigMap {name}"), TIMEOUT, || async {
                Ok(match configs.get_opt(&name).await? {
                    Some(config) => Check::Done(config),
                    None => Check::Pending("absent".into()),
                })
            })
            .await;
            let data = serde_json::to_string(&config.data).unwrap_or_default();
            if data.contains(text) {
                Err(format!("{name} contains {text:?}: {data}"))
            } else {
                Ok(())
            }
        }
    }
}

/// Applies one corpus file and checks what it expects; the failures.
async fn run_case(ns: &str, path: &std::path::Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(path).expect("read the case");
    let expects = expectations(&manifest);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // The corpus names a MinIO this control plane does not have: its storage is not
    // probed (tests/storage.rs probes a real S3 server).
    let dir = tempfile::tempdir().expect("temporary directory");
    let applied = dir.path().join(name.as_ref());
    std::fs::write(&applied, support::without_probe(&manifest)).expect("write the case");
    let out = kubectl(["apply", "-n", ns, "-f", applied.to_str().expect("utf-8")])
        .await
        .expect("run kubectl");
    let mut failures = vec![];
    for expect in &expects {
        match expect {
            Expect::Refused(text) => {
                if out.success {
                    failures.push(format!("{name}: accepted, expected refused ({text})"));
                } else if !out.stderr.contains(text.as_str()) {
                    failures.push(format!(
                        "{name}: refused without {text:?}: {}",
                        out.stderr.chars().take(600).collect::<String>()
                    ));
                }
            }
            _ if !out.success => failures.push(format!("{name}: refused: {}", out.stderr)),
            other => {
                if let Err(why) = check(ns, other).await {
                    failures.push(format!("{name}: {why}"));
                }
            }
        }
    }
    failures
}

/// Every object of kind `K` in `ns` carries the label of a cluster that was applied,
/// and is controlled by an object of this namespace: nothing outside the operator's
/// own children was written.
async fn only_children<K>(ns: &str, clusters: &[String]) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(support::client().await, ns);
    let list = api.list(&ListParams::default()).await.expect("list");
    list.items
        .iter()
        .filter(|o| !o.name_any().starts_with("kube-root-ca"))
        .filter(|o| {
            let labelled = o
                .labels()
                .get(CLUSTER_LABEL)
                .is_some_and(|c| clusters.contains(c));
            let owned = o
                .owner_references()
                .iter()
                .any(|r| r.controller == Some(true));
            !(labelled && owned)
        })
        .map(|o| {
            format!(
                "{} {} is not a child of a corpus cluster",
                K::kind(&()),
                o.name_any()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_manifest_is_refused_or_explained_and_nothing_else_is_written() {
    let (client, ns) = support::namespace_with_crds("corpus").await;
    let ns_name = ns.name().to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let credentials = dir.path().join("credentials.yaml");
    std::fs::write(&credentials, CREDENTIALS).expect("write");
    let out = kubectl([
        "apply",
        "-n",
        &ns_name,
        "-f",
        credentials.to_str().expect("utf-8"),
    ])
    .await
    .expect("kubectl");
    assert!(out.success, "{}", out.stderr);
    let mut operator = OperatorProcess::start(support::kubeconfig_path(), &ns_name, &[]).await;

    let corpus = support::repo_root().join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .expect("tests/corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus holds {} cases", cases.len());
    let mut failures = vec![];
    for case in &cases {
        failures.extend(run_case(&ns_name, case).await);
    }

    // Nothing panicked, and the operator still runs.
    assert!(
        operator.exited(Duration::ZERO).await.is_none(),
        "the operator stopped:\n{}",
        operator.log()
    );
    let log = operator.log();
    assert!(!log.contains("panicked"), "the operator panicked:\n{log}");

    // Only its own children were written.
    let clusters: Vec<String> = Api::<GrafanaCluster>::namespaced(client.clone(), &ns_name)
        .list(&ListParams::default())
        .await
        .expect("list clusters")
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    failures.extend(only_children::<ConfigMap>(&ns_name, &clusters).await);
    failures.extend(only_children::<Service>(&ns_name, &clusters).await);
    failures.extend(only_children::<Deployment>(&ns_name, &clusters).await);
    failures.extend(only_children::<StatefulSet>(&ns_name, &clusters).await);

    // The Secret's value is nowhere: not in a ConfigMap, a status, an Event or the log.
    let mut shown = String::new();
    for config in Api::<ConfigMap>::namespaced(client.clone(), &ns_name)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        shown.push_str(&serde_json::to_string(&config).unwrap_or_default());
    }
    for event in Api::<Event>::namespaced(client.clone(), &ns_name)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        shown.push_str(&serde_json::to_string(&event).unwrap_or_default());
    }
    for cluster in Api::<GrafanaCluster>::namespaced(client.clone(), &ns_name)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        shown.push_str(&serde_json::to_string(&cluster.status).unwrap_or_default());
    }
    shown.push_str(&log);
    if shown.contains(SECRET_VALUE) {
        failures.push("the Secret's value was shown".into());
    }
    drop(operator);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    ns.cleanup().await;
}

/// Racing: a pool applied before its cluster is explained, then deployed once the
/// cluster exists, with no restart or edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_applied_before_its_cluster_is_deployed_once_the_cluster_exists() {
    use support::{CREDENTIALS, OperatorNamespace, cluster_yaml, pool_yaml};
    let env = OperatorNamespace::start("pool-first").await;
    env.apply(CREDENTIALS).await;
    env.apply(&pool_yaml("early-all", "early", 1, "{loki: {all: true}}"))
        .await;
    env.pool_condition("early-all", "RolesValid", "False").await;
    env.apply(&cluster_yaml("early", "loki", "")).await;
    env.pool_condition("early-all", "RolesValid", "True").await;
    env.pool_condition("early-all", "Ready", "True").await;
    env.cluster_condition("early", "Available", "True").await;
    env.finish().await;
}

/// Racing: a cluster deleted while its first rollout is under way leaves none of its
/// children behind, its pool explains why it is not deployed, and volumes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_deleted_mid_rollout_leaves_no_child_behind() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::DeleteParams;
    use support::OperatorNamespace;
    let env = OperatorNamespace::start("delete-mid-rollout").await;
    env.apply_sample("loki-monolithic.yaml").await;
    // The rollout has started: the StatefulSet exists, its pods are not all ready yet.
    env.wait_until("logs-all", "the StatefulSet", |_: StatefulSet| {
        Check::Done(())
    })
    .await;
    let claims_before = names(
        env.api::<PersistentVolumeClaim>()
            .list(&ListParams::default())
            .await,
    );
    env.api::<GrafanaCluster>()
        .delete("logs", &DeleteParams::background())
        .await
        .expect("delete");
    env.gone::<Deployment>("logs-gateway").await;
    env.gone::<StatefulSet>("logs-all").await;
    env.pool_condition("logs-all", "RolesValid", "False").await;
    // Give a late reconcile the chance to recreate something, then look.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let labelled = ListParams::default().labels(&format!("{CLUSTER_LABEL}=logs"));
    let left: Vec<String> = [
        names(env.api::<ConfigMap>().list(&labelled).await),
        names(env.api::<Service>().list(&labelled).await),
        names(env.api::<Deployment>().list(&labelled).await),
        names(env.api::<StatefulSet>().list(&labelled).await),
    ]
    .concat();
    assert!(left.is_empty(), "children left behind: {left:?}");
    // Volumes outlive their cluster: every claim made before the deletion is still there.
    let claims_after = names(
        env.api::<PersistentVolumeClaim>()
            .list(&ListParams::default())
            .await,
    );
    for claim in &claims_before {
        assert!(
            claims_after.contains(claim),
            "volume claim {claim} was deleted"
        );
    }
    env.finish().await;
}

/// Names of listed objects that are not being deleted.
fn names<K: kube::Resource + Clone>(list: kube::Result<kube::api::ObjectList<K>>) -> Vec<String> {
    list.expect("list")
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}
