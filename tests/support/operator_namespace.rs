//! The opening most operator tests share: a namespace of their own on the shared control
//! plane, the CRDs installed, and an operator running in this process that watches only
//! that namespace (so tests run in parallel). [`OperatorNamespace`] then applies manifests
//! as a user would and waits for what the operator reports.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::{Client, Resource};
use lgtm_operator::api::{GrafanaCluster, WorkerPool};
use lgtm_operator::controller::{self, Options, RunError};
use lgtm_operator::telemetry::Health;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::{Check, KubectlOutput, TestNamespace, kubectl, kubectl_ok, wait_for};

/// How long any wait of these helpers may take before it fails the test; it only guards
/// against hanging, it asserts nothing about speed.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The Secret the cluster manifests of [`cluster_yaml`] refer to.
pub const CREDENTIALS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: s3-credentials}\nstringData: {access-key-id: id, secret-access-key: secret}\n";

/// A GrafanaCluster of `product` storing into S3 with [`CREDENTIALS`]; `extra` is added to
/// its spec (indented two spaces, ending with a newline). Its bucket is not probed: there
/// is none at that endpoint here (tests/storage.rs probes a real S3 server).
pub fn cluster_yaml(name: &str, product: &str, extra: &str) -> String {
    format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {{name: {name}}}\nspec:\n  product: {product}\n  storage:\n    probe: false\n    s3:\n      endpoint: minio.minio.svc:9000\n      bucket: {product}\n      credentialsSecret: {{name: s3-credentials}}\n{extra}"
    )
}

/// A sample manifest with its storage probe off: the samples name a MinIO the local
/// control plane does not have.
pub fn without_probe(manifest: &str) -> String {
    manifest.replace("\n  storage:\n", "\n  storage:\n    probe: false\n")
}

/// Sample `file` of `deploy/samples/`, [`without_probe`], written to a file of its own
/// (kept until the process ends) for `kubectl apply -f`.
pub fn sample_without_probe(file: &str) -> std::path::PathBuf {
    let manifest = std::fs::read_to_string(super::repo_root().join("deploy/samples").join(file))
        .expect("read sample");
    let dir = std::env::temp_dir().join(super::unique_name("sample"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(file);
    std::fs::write(&path, without_probe(&manifest)).expect("write sample");
    path
}

/// A WorkerPool of `cluster`; `roles` is the flow-style YAML of `spec.roles`.
pub fn pool_yaml(name: &str, cluster: &str, replicas: i32, roles: &str) -> String {
    format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}}}\nspec:\n  clusterRef: {cluster}\n  replicas: {replicas}\n  roles: {roles}\n"
    )
}

/// Installs the CRDs on the shared control plane once per test binary.
pub async fn install_crds_once(client: &Client) {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED.get_or_init(|| super::install_crds(client)).await;
}

/// A client for the shared control plane, with the CRDs installed, and a namespace of the
/// test's own: the opening of a test that runs the operator its own way.
pub async fn namespace_with_crds(prefix: &str) -> (Client, TestNamespace) {
    let client = super::client().await;
    install_crds_once(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    (client, ns)
}

/// `lgtm_operator::controller::run` in a task of the test's runtime; aborted when dropped.
pub struct InProcessOperator {
    health: Health,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl InProcessOperator {
    /// An operator watching namespace `ns` (leader election is tested with processes,
    /// in tests/operator.rs and tests/faults.rs).
    pub fn start(client: &Client, ns: &str) -> Self {
        let health = Health::default();
        let options = Options {
            namespace: Some(ns.to_string()),
            ..Options::default()
        };
        let task = tokio::spawn(controller::run(client.clone(), options, health.clone()));
        Self { health, task }
    }

    /// What it reports on /readyz and /metrics.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Reconciles of `controller` (`grafanacluster`, `workerpool`) finished so far.
    pub fn reconciles_finished(&self, controller: &'static str) -> u64 {
        self.health.metrics.reconciles_finished(controller)
    }

    /// Stops it at once, as a process killed without a chance to clean up (it does not
    /// give up a Lease it holds).
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The custom resources, as far as the condition waits need them.
pub trait WithConditions:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    fn conditions(&self) -> Vec<Condition>;
}

impl WithConditions for GrafanaCluster {
    fn conditions(&self) -> Vec<Condition> {
        self.status.clone().unwrap_or_default().conditions
    }
}

impl WithConditions for lgtm_operator::api::Tenant {
    fn conditions(&self) -> Vec<Condition> {
        self.status.clone().unwrap_or_default().conditions
    }
}

impl WithConditions for WorkerPool {
    fn conditions(&self) -> Vec<Condition> {
        self.status.clone().unwrap_or_default().conditions
    }
}

/// A namespace of the test's own with an operator running in this process for it; see the
/// module documentation. [`OperatorNamespace::finish`] stops the operator and deletes the
/// namespace (a test that panics leaves the namespace to [`TestNamespace`]'s drop).
pub struct OperatorNamespace {
    client: Client,
    ns: TestNamespace,
    /// `None` for tests that run the operator as processes of their own.
    operator: Option<InProcessOperator>,
}

impl OperatorNamespace {
    /// A fresh namespace named after `prefix` and an operator for it.
    pub async fn start(prefix: &str) -> Self {
        Self::start_operator(prefix).await
    }

    /// A fresh namespace without an operator: the test runs its own
    /// ([`super::OperatorProcess`]).
    pub async fn without_operator(prefix: &str) -> Self {
        let (client, ns) = namespace_with_crds(prefix).await;
        Self {
            client,
            ns,
            operator: None,
        }
    }

    async fn start_operator(prefix: &str) -> Self {
        let (client, ns) = namespace_with_crds(prefix).await;
        let operator = InProcessOperator::start(&client, ns.name());
        Self {
            client,
            ns,
            operator: Some(operator),
        }
    }

    /// Kills the in-process operator at once (no cleanup, as a crash) and starts a new one.
    pub fn restart_operator(&mut self) {
        if let Some(operator) = &self.operator {
            operator.abort();
        }
        self.operator = Some(InProcessOperator::start(&self.client, self.ns.name()));
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// The admin client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The operator started with the namespace.
    pub fn operator(&self) -> &InProcessOperator {
        self.operator
            .as_ref()
            .expect("started without an in-process operator")
    }

    /// A namespaced API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        self.ns.api()
    }

    /// Object `name` of kind `K`; panics when it cannot be read.
    pub async fn get<K>(&self, name: &str) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get {} {name}: {e}", K::kind(&Default::default())))
    }

    /// Whether object `name` of kind `K` exists.
    pub async fn exists<K>(&self, name: &str) -> bool
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.api::<K>().get_opt(name).await.expect("get").is_some()
    }

    /// `kubectl apply` of a manifest, as a user would; panics when kubectl refuses it.
    pub async fn apply(&self, yaml: &str) {
        let out = self.try_apply(yaml).await;
        assert!(
            out.success,
            "kubectl apply failed:\n{}{}",
            out.stderr, out.stdout
        );
    }

    /// `kubectl apply` of a manifest, whatever the outcome.
    pub async fn try_apply(&self, yaml: &str) -> KubectlOutput {
        let dir = std::env::temp_dir().join(super::unique_name("manifest"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("manifest.yaml");
        std::fs::write(&file, yaml).expect("write manifest");
        let out = kubectl([
            "apply",
            "-n",
            self.name(),
            "-f",
            file.to_str().expect("utf-8 path"),
        ])
        .await
        .expect("kubectl runs");
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    /// Applies [`cluster_yaml`].
    pub async fn apply_cluster(&self, name: &str, product: &str, extra: &str) {
        self.apply(&cluster_yaml(name, product, extra)).await;
    }

    /// Applies a pool of one replica ([`pool_yaml`]).
    pub async fn apply_pool(&self, name: &str, cluster: &str, roles: &str) {
        self.apply(&pool_yaml(name, cluster, 1, roles)).await;
    }

    /// Applies the sample credentials and sample `file` from `deploy/samples/`.
    pub async fn apply_sample(&self, file: &str) {
        let root = super::repo_root().join("deploy/samples");
        for f in ["s3-credentials.yaml", file] {
            let manifest = std::fs::read_to_string(root.join(f)).expect("read sample");
            self.apply(&without_probe(&manifest)).await;
        }
    }

    /// `kubectl patch --type=merge` of object `name` of `kind` (as kubectl names it) with
    /// the JSON `patch`, as a user would.
    pub async fn merge_patch(&self, kind: &str, name: &str, patch: &str) {
        kubectl_ok([
            "patch",
            "-n",
            self.name(),
            kind,
            name,
            "--type=merge",
            "-p",
            patch,
        ])
        .await;
    }

    /// Polls object `name` of kind `K` until `check` says [`Check::Done`] and returns its
    /// value; `what` names the wait in the timeout's message. A failed read counts as
    /// "not yet".
    pub async fn wait_until<K, T>(&self, name: &str, what: &str, check: impl Fn(K) -> Check<T>) -> T
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let api = self.api::<K>();
        let check = &check;
        wait_for(what, TIMEOUT, || {
            let api = api.clone();
            async move { Ok(check(api.get(name).await?)) }
        })
        .await
    }

    /// Waits until the operator reports ready (/readyz): its caches are filled.
    pub async fn wait_until_ready(&self) {
        let health = self.operator().health();
        wait_for(
            "the operator to report ready (/readyz)",
            TIMEOUT,
            || async {
                Ok(if health.ready() {
                    Check::Done(())
                } else {
                    Check::Pending("caches not synced".into())
                })
            },
        )
        .await;
    }

    /// Waits until condition `type_` of custom resource `name` satisfies `wanted`;
    /// returns the object and the condition.
    pub async fn wait_condition<K: WithConditions>(
        &self,
        name: &str,
        type_: &str,
        what: &str,
        wanted: impl Fn(&Condition) -> bool,
    ) -> (K, Condition) {
        self.wait_until(
            name,
            &format!("{} {name} {type_} {what}", K::kind(&())),
            |object: K| {
                let found = object.conditions().into_iter().find(|c| c.type_ == type_);
                match found {
                    Some(c) if wanted(&c) => Check::Done((object, c)),
                    other => Check::Pending(format!("{other:?}")),
                }
            },
        )
        .await
    }

    /// Waits until a condition of a GrafanaCluster has `status`; returns the cluster.
    pub async fn cluster_condition(&self, name: &str, type_: &str, status: &str) -> GrafanaCluster {
        self.wait_condition(name, type_, &format!("={status}"), |c| c.status == status)
            .await
            .0
    }

    /// Waits until a condition of a WorkerPool has `status`; returns the pool.
    pub async fn pool_condition(&self, name: &str, type_: &str, status: &str) -> WorkerPool {
        self.wait_condition(name, type_, &format!("={status}"), |c| c.status == status)
            .await
            .0
    }

    /// Waits until a condition of a GrafanaCluster has `reason`; returns the condition.
    pub async fn cluster_reason(&self, name: &str, type_: &str, reason: &str) -> Condition {
        self.wait_condition::<GrafanaCluster>(name, type_, &format!("for {reason}"), |c| {
            c.reason == reason
        })
        .await
        .1
    }

    /// Waits until a condition of a WorkerPool has `reason`; returns the condition.
    pub async fn pool_reason(&self, name: &str, type_: &str, reason: &str) -> Condition {
        self.wait_condition::<WorkerPool>(name, type_, &format!("for {reason}"), |c| {
            c.reason == reason
        })
        .await
        .1
    }

    /// Waits until StatefulSet `name` asks for `replicas` (`why` names the wait).
    pub async fn statefulset_replicas(&self, name: &str, replicas: i32, why: &str) {
        self.wait_until(name, why, |sts: StatefulSet| {
            let asked = sts.spec.and_then(|s| s.replicas);
            if asked == Some(replicas) {
                Check::Done(())
            } else {
                Check::Pending(format!("{asked:?}"))
            }
        })
        .await;
    }

    /// Waits until object `name` of kind `K` is gone.
    pub async fn gone<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let api = self.api::<K>();
        wait_for(
            &format!("{} {name} deleted", K::kind(&Default::default())),
            TIMEOUT,
            || {
                let api = api.clone();
                async move {
                    Ok(match api.get_opt(name).await? {
                        None => Check::Done(()),
                        Some(o) => Check::Pending(format!(
                            "still there (deleting: {})",
                            o.meta().deletion_timestamp.is_some()
                        )),
                    })
                }
            },
        )
        .await;
    }

    /// GrafanaCluster reconciles the operator finished so far.
    pub fn cluster_reconciles(&self) -> u64 {
        self.operator().reconciles_finished("grafanacluster")
    }

    /// Stops the operator and deletes the namespace.
    pub async fn finish(self) {
        if let Some(operator) = &self.operator {
            operator.abort();
        }
        self.ns.cleanup().await;
    }
}
