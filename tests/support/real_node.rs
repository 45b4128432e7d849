//! What tests need to put pods on the real node (e2e/node.sh): the images built here, the
//! node's selector, toleration and StorageClass, and manifests rewritten to use them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use lgtm_operator::product::Product;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::repo_root;

/// The label (and taint key) that keeps every other pod off the real node.
pub const REAL_NODE_LABEL: &str = "lgtm.coordinated.dev/real-node";
/// The StorageClass whose volumes are directories on the real node.
pub const REAL_NODE_STORAGE_CLASS: &str = "real-node-local";

/// The nodeSelector and tolerations that put a pod on the real node.
pub fn placement() -> (Value, Value) {
    (
        json!({ REAL_NODE_LABEL: "true" }),
        json!([{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]),
    )
}

/// The reference of an image of `e2e/images.sh` (pause, busybox, gateway, exporter).
pub fn image_ref(name: &str) -> String {
    let out = std::process::Command::new(repo_root().join("e2e/images.sh"))
        .args(["ref", name])
        .output()
        .expect("e2e/images.sh runs");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Runs a script of the repository, failing the test with its output when it fails.
pub fn script(path: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(repo_root().join(path))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{path} runs: {e}"));
    assert!(
        out.status.success(),
        "{path} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packs `binary` with `e2e/images.sh KIND` and loads it into the real node's containerd.
pub fn build_and_load(kind: &str, binary: &Path, extra: &str, reference: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let archive = dir.path().join("image.tar");
    let mut args: Vec<&std::ffi::OsStr> = vec![kind.as_ref(), binary.as_os_str()];
    if !extra.is_empty() {
        args.push(extra.as_ref());
    }
    args.extend([archive.as_os_str(), reference.as_ref()]);
    script("e2e/images.sh", &args);
    script(
        "e2e/cluster.sh",
        &["load-image".as_ref(), archive.as_os_str()],
    );
}

/// The repository (a GrafanaCluster's `spec.image`) of `product`'s contract worker.
pub fn contract_worker_repository(product: Product) -> String {
    format!("lgtm.local/contract-worker-{product}")
}

/// The contract worker's image for `product` (src/bin/contract-worker.rs), from this
/// test build, loaded into the real node once per test binary; returns its repository.
pub async fn contract_worker_image(product: Product) -> String {
    static LOADED: [OnceCell<String>; 3] = [
        OnceCell::const_new(),
        OnceCell::const_new(),
        OnceCell::const_new(),
    ];
    let index = Product::ALL
        .iter()
        .position(|p| *p == product)
        .expect("a product");
    LOADED[index]
        .get_or_init(|| async move {
            // Tagged with the product's version: a cluster's `image` is a repository,
            // and the operator adds the version as the tag.
            let repository = contract_worker_repository(product);
            let reference = format!("{repository}:{}", product.catalogue().version);
            let binary = Path::new(env!("CARGO_BIN_EXE_contract-worker")).to_path_buf();
            let for_task = reference.clone();
            tokio::task::spawn_blocking(move || {
                build_and_load("contract-worker", &binary, product.as_str(), &for_task);
            })
            .await
            .expect("the image builds");
            repository
        })
        .await
        .clone()
}

/// A manifest (one document, as JSON) moved onto the real node: a GrafanaCluster runs
/// `worker_image` (a repository) and its gateway from the local images there, without
/// the agent sidecar (no Alloy image is built here); a WorkerPool's pods go there with
/// volumes of [`REAL_NODE_STORAGE_CLASS`].
pub fn onto_real_node(mut doc: Value, worker_image: &str) -> Value {
    let (node_selector, tolerations) = placement();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let spec = &mut doc["spec"];
    match kind.as_str() {
        "GrafanaCluster" => {
            spec["image"] = json!(worker_image);
            spec["gateway"]["image"] = json!(image_ref("gateway"));
            spec["gateway"]["exporterImage"] = json!(image_ref("exporter"));
            spec["gateway"]["nodeSelector"] = node_selector;
            spec["gateway"]["tolerations"] = tolerations;
            spec["selfMonitoring"] = json!({"enabled": false});
            // The samples name a MinIO the real node does not have, and the contract
            // worker reads no bucket: nothing to probe (tests/storage.rs probes a real one).
            spec["storage"]["probe"] = json!(false);
        }
        "WorkerPool" => {
            spec["nodeSelector"] = node_selector;
            spec["tolerations"] = tolerations;
            spec["storage"] = json!({"size": "1Gi", "storageClassName": REAL_NODE_STORAGE_CLASS});
        }
        _ => {}
    }
    doc
}

/// The documents of a YAML file of `deploy/samples/`, as JSON.
pub fn sample_documents(file: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/samples").join(file)).expect("the sample");
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("the sample parses")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Waits until Deployment `name` has rolled out: every replica updated, Ready, and no
/// old pod left (the gateway rolls once right after its pools appear, so "one Ready
/// replica" may still be the old pod while the new one has no address yet). Returns its
/// Ready pods.
pub async fn rolled_out(
    env: &super::OperatorNamespace,
    name: &str,
) -> Vec<k8s_openapi::api::core::v1::Pod> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let what = format!("Deployment {name} rolled out on the real node");
    super::wait_for(&what, super::TIMEOUT, || async {
        let d: Deployment = env.api::<Deployment>().get(name).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation;
        let status = d.status.unwrap_or_default();
        let selector = d
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Vec<Pod> = env
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let ready = |p: &Pod| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().is_some_and(|s| {
                    s.pod_ip.is_some()
                        && s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        };
        let done = status.observed_generation == generation
            && status.updated_replicas == Some(want)
            && status.ready_replicas == Some(want)
            && status.replicas == Some(want)
            && pods.len() == want as usize
            && pods.iter().all(ready);
        Ok(if done {
            super::Check::Done(pods)
        } else {
            super::Check::Pending(format!("{status:?}; {} pods", pods.len()))
        })
    })
    .await
}

/// Applies `docs` moved onto the real node ([`onto_real_node`]) and waits until every
/// pool among them is Ready.
pub async fn apply_on_real_node(
    env: &super::OperatorNamespace,
    docs: Vec<Value>,
    product: Product,
) {
    let image = contract_worker_image(product).await;
    let docs: Vec<Value> = docs
        .into_iter()
        .map(|doc| onto_real_node(doc, &image))
        .collect();
    env.apply(&to_yaml(&docs)).await;
    for pool in docs.iter().filter(|d| d["kind"] == "WorkerPool") {
        let name = pool["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = pool["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
        pool_ready(env, name, replicas).await;
    }
}

pub fn from_yaml(doc: &str) -> Value {
    serde_saphyr::from_str(doc).expect("YAML")
}

pub fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_saphyr::to_string(d).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Waits until `pool`'s StatefulSet has rolled out `replicas` Ready pods of its latest
/// template, and no more pods (a configuration written after the pods first started
/// rolls them once more: a test must not start while that goes on).
pub async fn pool_ready(env: &super::OperatorNamespace, pool: &str, replicas: i32) {
    let what = format!("pool {pool}: {replicas} contract workers Ready on the real node");
    super::wait_for(&what, super::TIMEOUT, || async {
        let (ready, updated, rolled_out) = rollout_of(env, pool, replicas).await?;
        let pods = env
            .api::<k8s_openapi::api::core::v1::Pod>()
            .list(
                &kube::api::ListParams::default()
                    .labels(&format!("lgtm.coordinated.dev/pool={pool}")),
            )
            .await?
            .items;
        Ok(
            if ready == replicas && rolled_out && pods.len() == replicas as usize {
                super::Check::Done(())
            } else {
                super::Check::Pending(format!(
                    "{ready} ready, {updated} updated, rolled out: {rolled_out}; pods: {}",
                    describe_pods(&pods)
                ))
            },
        )
    })
    .await;
}

/// A pool's ready and updated workers, and whether its rollout is over: from its
/// StatefulSet, or for a zoned pool (whose zone StatefulSets roll `OnDelete`, so their
/// current revision never moves) from the pool's own status.
async fn rollout_of(
    env: &super::OperatorNamespace,
    pool: &str,
    replicas: i32,
) -> anyhow::Result<(i32, i32, bool)> {
    let worker_pool: lgtm_operator::api::WorkerPool = env.api().get(pool).await?;
    if !worker_pool.spec.zones.is_empty() {
        let status = worker_pool.status.unwrap_or_default();
        let settled = status.conditions.iter().any(|c| {
            (c.type_ == "Progressing" && c.reason == "ZonesRolledOut")
                && c.observed_generation == worker_pool.metadata.generation
        }) && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        return Ok((status.ready_replicas, status.updated_replicas, settled));
    }
    let sts = env
        .api::<k8s_openapi::api::apps::v1::StatefulSet>()
        .get(pool)
        .await?;
    let generation = sts.metadata.generation;
    let status = sts.status.unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let rolled_out = status.observed_generation == generation
        && updated == replicas
        && status.current_revision == status.update_revision;
    Ok((status.ready_replicas.unwrap_or(0), updated, rolled_out))
}

/// One line per pod: name, node, phase, restarts and the last termination message.
pub fn describe_pods(pods: &[k8s_openapi::api::core::v1::Pod]) -> String {
    pods.iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let container = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .next();
            let restarts = container.as_ref().map_or(0, |c| c.restart_count);
            let last = container
                .and_then(|c| c.last_state)
                .and_then(|s| s.terminated)
                .map(|t| format!(" last exit {} {:?}", t.exit_code, t.message))
                .unwrap_or_default();
            format!(
                "{} on {:?} {:?} restarts {restarts}{last}",
                p.metadata.name.clone().unwrap_or_default(),
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                status.phase
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line of a contract worker's record: `<millis> <phase> <pod> <METHOD> <uri>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub millis: u128,
    pub phase: String,
    pub pod: String,
    pub call: String,
}

pub fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The record of pod `pod`, read from its volume on the real node (the pod may be gone:
/// its claim stays, and the volume is a directory of this machine).
pub async fn record_of(env: &super::OperatorNamespace, pod: &str) -> Vec<Record> {
    let claim: PersistentVolumeClaim = env.get(&format!("data-{pod}")).await;
    let volume = claim
        .spec
        .and_then(|s| s.volume_name)
        .unwrap_or_else(|| panic!("data-{pod} is bound"));
    let pv: PersistentVolume = Api::all(env.client().clone())
        .get(&volume)
        .await
        .expect("the claim's volume");
    let spec = pv.spec.expect("a volume spec");
    let dir = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .expect("a local volume");
    let text =
        std::fs::read_to_string(format!("{dir}/contract-worker-lifecycle.log")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            Some(Record {
                millis: parts.next()?.parse().ok()?,
                phase: parts.next()?.to_string(),
                pod: parts.next()?.to_string(),
                call: parts.next()?.to_string(),
            })
        })
        .collect()
}
