//! The storage probe against real servers on loopback (e2e/storage-servers.sh): moto's
//! S3 server from PyPI, with its IAM authentication on, so a wrong or powerless key is
//! refused by the server itself; and Azurite, Microsoft's Azure Blob Storage server, from
//! npm. Nothing here is a mock of either.
//!
//! Each failure the probe names is provoked for real, and fixed again with no operator
//! restart: a key without rights (`AccessDenied`), a bucket that does not exist
//! (`BucketNotFound`), a server that is not there (`EndpointUnreachable`), a CA that did
//! not sign the server's certificate (`TLSError`). While the storage fails, a running
//! cluster's configuration and its workers' pod template stay as they were.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::{OperatorNamespace, pool_yaml, wait_for};
use tokio::io::AsyncBufReadExt;

const SECRETS_CHECKSUM: &str = "checksum.lgtm.coordinated.dev/secrets";

/// An access key of the S3 server's IAM.
#[derive(Debug, Clone, serde::Deserialize)]
struct Key {
    id: String,
    secret: String,
}

/// The keys `e2e/tools/storage/s3_setup.py` made: two allowed every S3 action, one none.
#[derive(Debug, Clone, serde::Deserialize)]
struct Keys {
    allowed: Key,
    rotated: Key,
    denied: Key,
}

/// A moto server of this test's own, killed when dropped.
struct S3Server {
    _child: tokio::process::Child,
    endpoint: String,
    keys: Keys,
    _dir: tempfile::TempDir,
}

/// A CA and a server certificate it signed for 127.0.0.1.
struct Tls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Tls {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "storage test CA");
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA cert").pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server cert");
        Self {
            ca_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The virtualenv's python that runs moto (installed on first use).
fn python() -> PathBuf {
    storage_tool("python")
}

/// `e2e/storage-servers.sh <what>`: the path of a tool, installed on first use.
fn storage_tool(what: &str) -> PathBuf {
    let out = std::process::Command::new(support::repo_root().join("e2e/storage-servers.sh"))
        .arg(what)
        .stderr(Stdio::inherit())
        .output()
        .expect("run e2e/storage-servers.sh");
    assert!(out.status.success(), "e2e/storage-servers.sh {what} failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

/// Waits for the line of `child`'s `stream` that holds `marker`, and returns what
/// follows it; keeps draining the stream afterwards.
async fn listening_at(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    marker: &str,
) -> String {
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read the server's log") {
            if let Some(rest) = line.split(marker).nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("the server exited before it listened");
    })
    .await
    .expect("the server listens within a minute");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

impl S3Server {
    /// Starts moto on a port of its own choosing (it binds port 0 and says which), with
    /// TLS when `tls` is given, then makes the bucket `probe` and the keys.
    async fn start(tls: Option<&Tls>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let python = python();
        let mut command = tokio::process::Command::new(&python);
        command.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"]);
        if let Some(tls) = tls {
            let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert, &tls.cert_pem).expect("write cert");
            std::fs::write(&key, &tls.key_pem).expect("write key");
            command.arg("-c").arg(&cert).arg("-k").arg(&key);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto");
        let stderr = child.stderr.take().expect("stderr");
        let endpoint = listening_at(stderr, "Running on ").await;
        let ca_file = dir.path().join("ca.crt");
        let mut setup = std::process::Command::new(&python);
        setup
            .arg(support::repo_root().join("e2e/tools/storage/s3_setup.py"))
            .arg(&endpoint);
        if let Some(tls) = tls {
            std::fs::write(&ca_file, &tls.ca_pem).expect("write CA");
            setup.arg(&ca_file);
        }
        let out = setup.output().expect("run setup.py");
        assert!(
            out.status.success(),
            "setup.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys: Keys = serde_json::from_slice(&out.stdout).expect("keys as JSON");
        Self {
            _child: child,
            endpoint,
            keys,
            _dir: dir,
        }
    }
}

/// A loopback port a server just left: nothing listens there.
fn stopped_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A Mimir cluster `name` on `endpoint`'s bucket `bucket`, with the probe on, and its
/// credentials Secret holding `key` (plus the CA, when given).
fn cluster(name: &str, endpoint: &str, bucket: &str, ca: bool) -> String {
    let ca = if ca {
        "      caSecret: {name: storage-ca}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {{name: {name}}}\nspec:\n  product: mimir\n  storage:\n    s3:\n      endpoint: {endpoint}\n      bucket: {bucket}\n      credentialsSecret: {{name: s3-credentials}}\n{ca}"
    )
}

async fn set_secret(env: &OperatorNamespace, name: &str, data: serde_json::Value) {
    env.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("storage-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name},
                "stringData": data,
            })),
        )
        .await
        .expect("apply the Secret");
}

async fn set_key(env: &OperatorNamespace, key: &Key) {
    set_secret(
        env,
        "s3-credentials",
        json!({"access-key-id": key.id, "secret-access-key": key.secret}),
    )
    .await;
}

async fn patch_storage(env: &OperatorNamespace, name: &str, s3: serde_json::Value) {
    let patch = json!({"spec": {"storage": {"s3": s3}}}).to_string();
    env.merge_patch("grafanacluster", name, &patch).await;
}

impl Keys {
    /// Every key id and secret: none may appear in a condition.
    fn secrets(&self) -> Vec<&str> {
        [&self.allowed, &self.rotated, &self.denied]
            .into_iter()
            .flat_map(|k| [k.id.as_str(), k.secret.as_str()])
            .collect()
    }
}

/// The `StorageReady` condition once it has `reason`; its message holds none of
/// `secrets`.
async fn storage_reason(
    env: &OperatorNamespace,
    name: &str,
    reason: &str,
    secrets: &[&str],
) -> String {
    let condition = env.cluster_reason(name, "StorageReady", reason).await;
    eprintln!("StorageReady {reason}: {}", condition.message);
    for secret in secrets {
        assert!(
            !condition.message.contains(secret),
            "a key in the condition: {}",
            condition.message
        );
    }
    condition.message
}

/// The secrets checksum the shared configuration names, and the one in the pool's pod
/// template.
async fn checksums(env: &OperatorNamespace, cluster: &str, pool: &str) -> (String, String) {
    let config: ConfigMap = env.get(&format!("{cluster}-config")).await;
    let statefulset: StatefulSet = env.get(pool).await;
    let template = statefulset
        .spec
        .and_then(|s| s.template.metadata)
        .map(|m| m.annotations.unwrap_or_default())
        .unwrap_or_default();
    (
        config
            .annotations()
            .get(SECRETS_CHECKSUM)
            .cloned()
            .unwrap_or_default(),
        template.get(SECRETS_CHECKSUM).cloned().unwrap_or_default(),
    )
}

/// Waits until the pool's pod template names `checksum`.
async fn template_checksum(env: &OperatorNamespace, cluster: &str, pool: &str, checksum: &str) {
    wait_for(
        &format!("{pool}'s pod template on the verified Secrets"),
        support::TIMEOUT,
        || async {
            let (_, template) = checksums(env, cluster, pool).await;
            Ok(if template == checksum {
                support::Check::Done(())
            } else {
                support::Check::Pending(template)
            })
        },
    )
    .await;
}

/// The right key verifies; a powerless key, a missing bucket and a stopped server are
/// each named, freeze the running workers, and turn True again once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_storage_failure_is_named_freezes_the_workers_and_recovers_once_fixed() {
    let s3 = S3Server::start(None).await;
    let keys = &s3.keys;
    let env = OperatorNamespace::start("storage-s3").await;
    set_key(&env, &keys.allowed).await;
    env.apply(&cluster("metrics", &s3.endpoint, "probe", false))
        .await;
    env.apply(&pool_yaml(
        "metrics-all",
        "metrics",
        1,
        "{mimir: {all: true}}",
    ))
    .await;
    storage_reason(&env, "metrics", "BucketVerified", &keys.secrets()).await;
    env.pool_condition("metrics-all", "Ready", "True").await;
    let (verified, template) = checksums(&env, "metrics", "metrics-all").await;
    assert!(!verified.is_empty(), "the configuration names its Secrets");
    assert_eq!(template, verified, "workers run on the verified Secrets");

    // A key the server knows but that may do nothing: refused by its IAM.
    set_key(&env, &keys.denied).await;
    let message = storage_reason(&env, "metrics", "AccessDenied", &keys.secrets()).await;
    assert!(
        message.contains("AccessDenied"),
        "the server's words: {message}"
    );
    // Frozen: nothing rolls onto the refused key while the probe fails.
    env.pool_reason("metrics-all", "Ready", "StorageNotReady")
        .await;
    assert_eq!(
        checksums(&env, "metrics", "metrics-all").await,
        (verified.clone(), verified.clone()),
        "a failing storage leaves the configuration and the workers as they were"
    );

    // Another good key: verified at once, and the workers roll onto it.
    set_key(&env, &keys.rotated).await;
    storage_reason(&env, "metrics", "BucketVerified", &keys.secrets()).await;
    let (rotated, _) = checksums(&env, "metrics", "metrics-all").await;
    assert_ne!(rotated, verified, "the rotated key is in the checksum");
    template_checksum(&env, "metrics", "metrics-all", &rotated).await;

    // A bucket that does not exist.
    patch_storage(&env, "metrics", json!({"bucket": "absent"})).await;
    let message = storage_reason(&env, "metrics", "BucketNotFound", &keys.secrets()).await;
    assert!(
        message.contains("NoSuchBucket"),
        "the server's words: {message}"
    );
    patch_storage(&env, "metrics", json!({"bucket": "probe"})).await;
    storage_reason(&env, "metrics", "BucketVerified", &keys.secrets()).await;

    // A server that is not there: a port nothing listens on any more.
    let stopped = stopped_port();
    patch_storage(
        &env,
        "metrics",
        json!({"endpoint": format!("http://127.0.0.1:{stopped}")}),
    )
    .await;
    storage_reason(&env, "metrics", "EndpointUnreachable", &keys.secrets()).await;
    patch_storage(&env, "metrics", json!({"endpoint": s3.endpoint})).await;
    storage_reason(&env, "metrics", "BucketVerified", &keys.secrets()).await;
    env.pool_condition("metrics-all", "Ready", "True").await;
    env.finish().await;
}

/// Over TLS: a CA that did not sign the server's certificate is a `TLSError`; the right
/// one verifies, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_tls_error_and_the_right_one_verifies() {
    let tls = Tls::new();
    let s3 = S3Server::start(Some(&tls)).await;
    assert!(s3.endpoint.starts_with("https://"), "{}", s3.endpoint);
    let env = OperatorNamespace::start("storage-tls").await;
    set_key(&env, &s3.keys.allowed).await;
    set_secret(&env, "storage-ca", json!({"ca.crt": Tls::new().ca_pem})).await;
    env.apply(&cluster("metrics", &s3.endpoint, "probe", true))
        .await;
    env.apply(&pool_yaml(
        "metrics-all",
        "metrics",
        1,
        "{mimir: {all: true}}",
    ))
    .await;
    storage_reason(&env, "metrics", "TLSError", &s3.keys.secrets()).await;
    env.pool_reason("metrics-all", "Ready", "WaitingForClusterConfig")
        .await;
    assert!(
        !env.exists::<StatefulSet>("metrics-all").await,
        "a new cluster's workers wait for verified storage"
    );
    set_secret(&env, "storage-ca", json!({"ca.crt": tls.ca_pem})).await;
    storage_reason(&env, "metrics", "BucketVerified", &s3.keys.secrets()).await;
    env.pool_condition("metrics-all", "Ready", "True").await;
    env.finish().await;
}

/// Azurite's development account, and its key as Microsoft documents it (public: it
/// opens nothing but a local emulator).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An Azurite blob server of this test's own, with the container `probe`; killed when
/// dropped.
struct AzureServer {
    _child: tokio::process::Child,
    /// host:port, Tempo's emulator `endpointSuffix`.
    host_port: String,
    _dir: tempfile::TempDir,
}

impl AzureServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut child = tokio::process::Command::new(storage_tool("azurite"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(dir.path())
            // The SDK that makes the container speaks a newer API version than Azurite
            // knows; telemetry would try the network.
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start Azurite");
        let stdout = child.stdout.take().expect("stdout");
        let url = listening_at(stdout, "successfully listens on ").await;
        let host_port = url.trim_start_matches("http://").to_string();
        let out = std::process::Command::new(python())
            .arg(support::repo_root().join("e2e/tools/storage/azure_setup.py"))
            .arg(format!("{url}/{AZURITE_ACCOUNT}"))
            .args([AZURITE_ACCOUNT, AZURITE_KEY])
            .output()
            .expect("run azure_setup.py");
        assert!(
            out.status.success(),
            "azure_setup.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            _child: child,
            host_port,
            _dir: dir,
        }
    }
}

async fn patch_azure(env: &OperatorNamespace, name: &str, azure: serde_json::Value) {
    let patch = json!({"spec": {"storage": {"azure": azure}}}).to_string();
    env.merge_patch("grafanacluster", name, &patch).await;
}

/// Azure against Azurite, through a Tempo cluster (the product that can reach an
/// emulator): the right key verifies; a wrong key, a missing container and a server that
/// is not there are each named, and fixed with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_failures_against_azurite_are_named_and_recover_once_fixed() {
    let azurite = AzureServer::start().await;
    let env = OperatorNamespace::start("storage-azure").await;
    // Another account key, well-formed: Azurite refuses its signature.
    let wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let keys = [AZURITE_KEY, wrong];
    set_secret(&env, "azure-key", json!({"account-key": AZURITE_KEY})).await;
    env.apply(&format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: GrafanaCluster\nmetadata: {{name: traces}}\nspec:\n  product: tempo\n  storage:\n    azure:\n      accountName: {AZURITE_ACCOUNT}\n      container: probe\n      endpointSuffix: \"{}\"\n      credentialsSecret: {{name: azure-key}}\n",
        azurite.host_port
    ))
    .await;
    env.apply(&pool_yaml(
        "traces-all",
        "traces",
        1,
        "{tempo: {all: true}}",
    ))
    .await;
    storage_reason(&env, "traces", "BucketVerified", &keys).await;
    env.pool_condition("traces-all", "Ready", "True").await;

    set_secret(&env, "azure-key", json!({"account-key": wrong})).await;
    storage_reason(&env, "traces", "AccessDenied", &keys).await;
    set_secret(&env, "azure-key", json!({"account-key": AZURITE_KEY})).await;
    storage_reason(&env, "traces", "BucketVerified", &keys).await;

    patch_azure(&env, "traces", json!({"container": "absent"})).await;
    storage_reason(&env, "traces", "BucketNotFound", &keys).await;
    patch_azure(&env, "traces", json!({"container": "probe"})).await;
    storage_reason(&env, "traces", "BucketVerified", &keys).await;

    let stopped = stopped_port();
    patch_azure(
        &env,
        "traces",
        json!({"endpointSuffix": format!("127.0.0.1:{stopped}")}),
    )
    .await;
    storage_reason(&env, "traces", "EndpointUnreachable", &keys).await;
    patch_azure(&env, "traces", json!({"endpointSuffix": azurite.host_port})).await;
    storage_reason(&env, "traces", "BucketVerified", &keys).await;
    env.finish().await;
}
