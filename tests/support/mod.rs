//! Shared harness for tests that run against the local control plane (`e2e/cluster.sh`).
//!
//! - [`client`] makes sure the control plane is up (starting it when it is not) and returns a
//!   client for its admin kubeconfig; never `~/.kube/config`.
//! - [`TestNamespace`] gives each test a namespace of its own, deleted afterwards.
//! - [`OperatorNamespace`] is the operator tests' opening: such a namespace, the CRDs, and an
//!   operator running in the test's process for it, with the waits on what it reports.
//! - [`wait_for`] polls until a condition holds; on timeout it panics naming what it waited
//!   for and the last state it saw.
//! - [`kubectl`] runs kubectl against the same control plane.
//!
//! Set `LGTM_KEEP_TEST_NAMESPACES=1` to keep namespaces (and cluster-scoped objects guarded by
//! [`DeleteOnDrop`]) after a test, for debugging.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod operator_namespace;
mod operator_process;
mod partition;
pub mod real_node;
#[allow(unused_imports)] // not every test binary runs the operator in its process
pub use operator_namespace::{
    CREDENTIALS, InProcessOperator, OperatorNamespace, TIMEOUT, WithConditions, cluster_yaml,
    install_crds_once, namespace_with_crds, pool_yaml, sample_without_probe, without_probe,
};
#[allow(unused_imports)] // not every test binary runs the operator as a process
pub use operator_process::OperatorProcess;
#[allow(unused_imports)] // only the leader-election tests cut an operator off
pub use partition::Partition;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Label put on every namespace the harness creates.
pub const TEST_LABEL: &str = "lgtm-operator.test/harness";

/// The repository root (where `e2e/cluster.sh` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A local control plane started by `e2e/cluster.sh`: the shared one, or one of its own
/// (another state dir and other ports) for tests that break it.
pub struct ControlPlane {
    /// `LGTM_*` variables for `cluster.sh`; empty for the shared control plane.
    env: Vec<(String, String)>,
    kubeconfig: OnceLock<Result<PathBuf, String>>,
}

impl ControlPlane {
    /// The control plane every test binary shares.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| ControlPlane {
            env: Vec::new(),
            kubeconfig: OnceLock::new(),
        })
    }

    /// The fault tests' own control plane, as `e2e/faults.env` sets it.
    pub fn faults() -> &'static ControlPlane {
        static FAULTS: OnceLock<ControlPlane> = OnceLock::new();
        FAULTS.get_or_init(|| {
            let path = repo_root().join("e2e/faults.env");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let env = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| {
                    let v = if k == "LGTM_STATE_DIR" {
                        repo_root().join(v).display().to_string()
                    } else {
                        v.to_string()
                    };
                    (k.to_string(), v)
                })
                .collect();
            ControlPlane {
                env,
                kubeconfig: OnceLock::new(),
            }
        })
    }

    /// Runs `e2e/cluster.sh ARGS` against this control plane and returns its stdout; its
    /// stderr (progress, and on failure the log to read) goes to the test's output.
    pub fn cluster_sh(&self, args: &[&str]) -> Result<String, String> {
        let script = repo_root().join("e2e/cluster.sh");
        let out = Command::new(&script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`{} {}` failed ({}); its messages above say why and name the log to read",
                script.display(),
                args.join(" "),
                out.status
            ))
        }
    }

    /// Starts the control plane (or whatever part of it is not running: `up` is
    /// idempotent) and returns its kubeconfig path; panics when it cannot.
    pub fn up(&self) -> PathBuf {
        let stdout = self
            .cluster_sh(&["up"])
            .unwrap_or_else(|e| panic!("the local control plane is not available: {e}"));
        stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .map(|p| PathBuf::from(p.trim()))
            .unwrap_or_else(|| {
                panic!("`cluster.sh up` printed no `export KUBECONFIG=` line:\n{stdout}")
            })
    }

    /// The kubeconfig, starting the control plane once per test binary if needed (the
    /// first caller starts it; the others wait).
    pub fn kubeconfig(&self) -> &Path {
        let result = self.kubeconfig.get_or_init(|| {
            std::panic::catch_unwind(|| self.up()).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "cluster.sh up failed".into())
            })
        });
        match result {
            Ok(path) => path,
            Err(e) => panic!("{e}"),
        }
    }

    /// A client for this control plane as cluster admin.
    pub async fn client(&self) -> Client {
        let path = self.kubeconfig();
        let kubeconfig = Kubeconfig::read_from(path)
            .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
        Client::try_from(config).expect("cannot build a kube client from the kubeconfig")
    }
}

/// Starts the shared control plane if it is not running (`e2e/cluster.sh up`: fast, and
/// locked so that parallel test binaries don't race) and returns its kubeconfig path.
pub fn ensure_control_plane() -> &'static Path {
    ControlPlane::shared().kubeconfig()
}

/// The admin kubeconfig of the local control plane (starting it if needed).
pub fn kubeconfig_path() -> &'static Path {
    ensure_control_plane()
}

/// Client configuration read from the control plane's kubeconfig file.
pub async fn config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()))
}

/// A client for the local control plane as cluster admin, starting it if needed.
pub async fn client() -> Client {
    ControlPlane::shared().client().await
}

/// A client that authenticates with a bearer token (for example a ServiceAccount token)
/// instead of the admin certificate; same server and CA.
pub async fn client_with_token(token: &str) -> Client {
    let mut config = config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    Client::try_from(config).expect("cannot build a token client")
}

/// Installs (or upgrades) the operator's CRDs with server-side apply and waits until the
/// API server serves them.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::{CustomResourceExt, ResourceExt};
    use lgtm_operator::api::{GrafanaCluster, Tenant, WorkerPool};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [GrafanaCluster::crd(), WorkerPool::crd(), Tenant::crd()] {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("lgtm-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {name}: {e}"));
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(120),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    Ok(if established {
                        Check::Done(())
                    } else {
                        Check::Pending("not established".into())
                    })
                }
            },
        )
        .await;
    }
}

/// A name unique across tests, test binaries and runs: `prefix-<pid><time><counter>`,
/// valid as a DNS label (at most 63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let suffix = format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        (nanos / 1_000_000) & 0xff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(62 - suffix.len())
        .collect();
    format!("{}-{suffix}", prefix.trim_matches('-'))
}

fn keep_objects() -> bool {
    std::env::var_os("LGTM_KEEP_TEST_NAMESPACES").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A namespace that belongs to one test. Deleted by [`TestNamespace::cleanup`] or, if the
/// test ends early (panics), on drop.
pub struct TestNamespace {
    name: String,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
            deleted: false,
        }
    }

    /// Creates ServiceAccount `name` in this namespace, granted nothing, and returns a
    /// token for it (valid ten minutes).
    pub async fn service_account_token(&self, name: &str) -> String {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;

        let accounts = self.api::<ServiceAccount>();
        let mut account = ServiceAccount::default();
        account.metadata.name = Some(name.into());
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap_or_else(|e| panic!("create ServiceAccount {name}: {e}"));
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {name}: {e}"))
            .status
            .expect("token in status")
            .token
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A namespaced API for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (without waiting for its finalization).
    pub async fn cleanup(mut self) {
        self.deleted = true;
        if keep_objects() {
            eprintln!("keeping test namespace {}", self.name);
            return;
        }
        match Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("cannot delete test namespace {}: {e}", self.name),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !self.deleted {
            delete_with_kubectl("namespace", &self.name);
        }
    }
}

/// Deletes a cluster-scoped object (a CRD, a ClusterRole…) with kubectl when dropped, so it
/// goes away even when the test panics. `kind` is what kubectl accepts (`crd`, `clusterrole`).
pub struct DeleteOnDrop {
    kind: String,
    name: String,
}

impl DeleteOnDrop {
    pub fn new(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        delete_with_kubectl(&self.kind, &self.name);
    }
}

fn delete_with_kubectl(kind: &str, name: &str) {
    if keep_objects() {
        eprintln!("keeping {kind}/{name}");
        return;
    }
    // Synchronous on purpose: Drop cannot await, and the test's runtime may be shutting down.
    let result = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["delete", kind, name, "--ignore-not-found", "--wait=false"])
        .output();
    match result {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "could not delete {kind}/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("could not run kubectl to delete {kind}/{name}: {e}"),
    }
}

/// What one poll of [`wait_for`] saw.
pub enum Check<T> {
    /// The condition holds; `wait_for` returns this value.
    Done(T),
    /// Not yet; the text describes the state seen (shown if the wait times out).
    Pending(String),
}

/// Polls `poll` until it returns [`Check::Done`], and returns its value. Errors are treated
/// as "not yet" (the API may be catching up) and remembered as the last state. Panics after
/// `timeout` with a message naming `what` and the last state observed; the timeout only
/// guards against hanging, it asserts nothing about speed.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut poll: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let start = Instant::now();
    let mut interval = Duration::from_millis(100);
    let mut last: String;
    loop {
        match poll().await {
            Ok(Check::Done(value)) => return value,
            Ok(Check::Pending(state)) => last = state,
            Err(e) => last = format!("error: {e:#}"),
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last observed state: {last}");
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_secs(1));
    }
}

/// Output of a kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kubectl against the local control plane (its kubeconfig, never `~/.kube/config`).
pub async fn kubectl<I, S>(args: I) -> anyhow::Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    kubectl_at(kubeconfig_path(), args).await
}

/// Runs kubectl against the control plane of `kubeconfig`.
pub async fn kubectl_at<I, S>(kubeconfig: &Path, args: I) -> anyhow::Result<KubectlOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .context("cannot run kubectl")?;
    Ok(KubectlOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs kubectl and returns its stdout; panics with its stderr when it fails.
pub async fn kubectl_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = kubectl(&args).await.expect("kubectl could not be run");
    assert!(
        out.success,
        "kubectl {args:?} failed:\n{}{}",
        out.stderr, out.stdout
    );
    out.stdout
}

/// The version of `module` that `e2e/tools/<tools_dir>/go.mod` pins (the single source of
/// truth for tool versions).
pub fn pinned_go_module_version(tools_dir: &str, module: &str) -> String {
    let path = repo_root().join("e2e/tools").join(tools_dir).join("go.mod");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("require ")
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .find(|f| f.len() >= 2 && f[0] == module && f[1].starts_with('v'))
        .map(|f| f[1].to_owned())
        .unwrap_or_else(|| panic!("{} does not require {module}", path.display()))
}
