//! Object storage as the workers see it: a normalised endpoint and region for the
//! product config, and credentials that reach the workers only as the environment
//! variables the products read themselves (runtime contract: AWS_ACCESS_KEY_ID and
//! AWS_SECRET_ACCESS_KEY, used when the config names no key), so no credential is ever
//! substituted into a configuration file (ADR 6).

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};

use super::RenderError;
use crate::api::{AzureStorage, Backend, GcsStorage, S3Storage, StorageSpec};
use crate::product::Product;

/// The standard AWS variables every product's S3 client reads when its configuration
/// sets no key (runtime contract).
pub const ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// Google's Application Default Credentials: the path of a service-account key file.
/// All three products read it when their configuration names no key (runtime contract).
pub const GOOGLE_CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The Azure storage account key. Tempo reads it itself; Mimir and Loki get it through
/// their `-common.storage.azure.account-key` flag, which Kubernetes fills from this
/// variable (`$(AZURE_STORAGE_KEY)` in the arguments), so it is never in a file.
pub const AZURE_KEY_ENV: &str = "AZURE_STORAGE_KEY";
const GCS_DIR: &str = "/etc/lgtm/gcs";
const GCS_VOLUME: &str = "gcs-key";

/// Where the filesystem backend keeps objects: on the worker's own volume.
pub const FILESYSTEM_DIR: &str = "/data/objects";

/// What a worker needs to reach its cluster's storage, besides the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStorage {
    pub env: Vec<EnvVar>,
    pub volumes: Vec<(Volume, VolumeMount)>,
    pub args: Vec<String>,
}

/// The environment, volumes and arguments of `product`'s workers for `storage`.
/// Credentials reach them only from the Secret: as variables, or a mounted key file.
pub fn for_workers(product: Product, storage: &StorageSpec) -> WorkerStorage {
    match storage.backend() {
        Backend::S3(s3) => WorkerStorage {
            env: worker_env(s3),
            volumes: ca_volume(s3).into_iter().collect(),
            args: Vec::new(),
        },
        Backend::Gcs(gcs) => gcs_worker(gcs),
        Backend::Azure(azure) => azure_worker(product, azure),
        Backend::Filesystem(_) => WorkerStorage::default(),
    }
}

fn gcs_worker(gcs: &GcsStorage) -> WorkerStorage {
    let file = "key.json";
    let credentials = &gcs.credentials_secret;
    let (volume, mount) = secret_file(
        GCS_VOLUME,
        &credentials.name,
        &credentials.key,
        GCS_DIR,
        file,
    );
    WorkerStorage {
        env: vec![EnvVar {
            name: GOOGLE_CREDENTIALS_ENV.into(),
            value: Some(format!("{GCS_DIR}/{file}")),
            ..EnvVar::default()
        }],
        volumes: vec![(volume, mount)],
        args: Vec::new(),
    }
}

fn azure_worker(product: Product, azure: &AzureStorage) -> WorkerStorage {
    let credentials = &azure.credentials_secret;
    let key = env_from_secret(
        AZURE_KEY_ENV,
        &credentials.name,
        &credentials.account_key_key,
    );
    let args = match product {
        Product::Tempo => Vec::new(),
        Product::Mimir | Product::Loki => {
            vec![format!(
                "-common.storage.azure.account-key=$({AZURE_KEY_ENV})"
            )]
        }
    };
    WorkerStorage {
        env: vec![key],
        volumes: Vec::new(),
        args,
    }
}

/// The Blob service URL of an Azure container's account: `https://<account>.<suffix>`,
/// or, for a suffix that is not `blob.…` (an emulator; Tempo only, which admission
/// enforces), `http://<suffix>/<account>` as Tempo builds it (runtime contract).
pub fn azure_url(azure: &AzureStorage) -> String {
    let suffix = azure
        .endpoint_suffix
        .as_deref()
        .unwrap_or(AZURE_DEFAULT_SUFFIX);
    if suffix.starts_with("blob.") {
        format!("https://{}.{suffix}", azure.account_name)
    } else {
        format!("http://{suffix}/{}", azure.account_name)
    }
}

/// Azure's public cloud.
pub const AZURE_DEFAULT_SUFFIX: &str = "blob.core.windows.net";

/// Where the CA bundle is mounted. Go programs add every file of the directories in
/// `SSL_CERT_DIR` to their trusted roots, so the products trust it without any
/// product-specific TLS setting.
const CA_DIR: &str = "/etc/lgtm/s3-ca";
const SYSTEM_CERT_DIR: &str = "/etc/ssl/certs";
const CA_VOLUME: &str = "s3-ca";

/// The S3 endpoint in the forms the products want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// host[:port], scheme stripped.
    pub host_port: String,
    /// Plain HTTP rather than TLS.
    pub insecure: bool,
}

impl Endpoint {
    pub fn new(s3: &S3Storage) -> Self {
        let raw = s3.endpoint.trim();
        let (https, rest) = match raw.split_once("://") {
            Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
            None => (false, raw),
        };
        let host_port = rest.trim_end_matches('/').to_string();
        // Plain HTTP only when nothing says TLS: no https:// and no CA bundle.
        let insecure = s3.insecure.unwrap_or(!https && s3.ca_secret.is_none());
        Self {
            host_port,
            insecure,
        }
    }

    /// host[:port] without the scheme's default port, which Tempo misparses.
    pub fn without_default_port(&self) -> String {
        let default = if self.insecure { ":80" } else { ":443" };
        self.host_port
            .strip_suffix(default)
            .unwrap_or(&self.host_port)
            .to_string()
    }
}

/// The worker environment that carries the credentials (and trusts the CA).
pub fn worker_env(s3: &S3Storage) -> Vec<EnvVar> {
    let credentials = &s3.credentials_secret;
    let mut env = vec![
        env_from_secret(
            ACCESS_KEY_ID_ENV,
            &credentials.name,
            &credentials.access_key_id_key,
        ),
        env_from_secret(
            SECRET_ACCESS_KEY_ENV,
            &credentials.name,
            &credentials.secret_access_key_key,
        ),
    ];
    if s3.ca_secret.is_some() {
        env.push(EnvVar {
            name: "SSL_CERT_DIR".into(),
            value: Some(format!("{SYSTEM_CERT_DIR}:{CA_DIR}")),
            ..EnvVar::default()
        });
    }
    env
}

/// The region of an AWS S3 endpoint (`s3.eu-west-1.amazonaws.com`,
/// `bucket.s3-us-west-2.amazonaws.com`, `s3.amazonaws.com` for us-east-1); `None` for
/// any other endpoint.
pub fn aws_region(endpoint: &Endpoint) -> Option<String> {
    let host = endpoint
        .host_port
        .rsplit_once(':')
        .map_or(endpoint.host_port.as_str(), |(host, _)| host);
    let labels: Vec<&str> = host.split('.').collect();
    let aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    if !aws {
        return None;
    }
    if host == "s3.amazonaws.com" || host.ends_with(".s3.amazonaws.com") {
        return Some("us-east-1".into());
    }
    labels.iter().find_map(|label| {
        let candidate = label.strip_prefix("s3-").unwrap_or(label);
        is_region(candidate).then(|| candidate.to_string())
    })
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`…
fn is_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

/// The region a product signs its S3 requests for: the spec's, else one the endpoint
/// names. Loki signs for `dummy` when none is set, which AWS rejects (runtime contract),
/// so an AWS endpoint without a known region is an error for Loki.
pub fn region(product: Product, s3: &S3Storage) -> Result<Option<String>, RenderError> {
    if let Some(region) = s3.region.as_ref().filter(|r| !r.is_empty()) {
        return Ok(Some(region.clone()));
    }
    let endpoint = Endpoint::new(s3);
    match aws_region(&endpoint) {
        Some(region) => Ok(Some(region)),
        None if product == Product::Loki && (endpoint.host_port.contains(".amazonaws.com")) => {
            Err(RenderError::RegionRequired {
                endpoint: endpoint.host_port,
            })
        }
        None => Ok(None),
    }
}

/// The CA bundle volume and its mount, when a CA Secret is named.
pub fn ca_volume(s3: &S3Storage) -> Option<(Volume, VolumeMount)> {
    let ca = s3.ca_secret.as_ref()?;
    Some(secret_file(CA_VOLUME, &ca.name, &ca.key, CA_DIR, "ca.crt"))
}

/// Variable `name` read from key `key` of Secret `secret`; the pod does not start
/// without it.
fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Key `key` of Secret `secret` as the read-only file `<dir>/<file>`, in volume
/// `volume`.
fn secret_file(
    volume: &str,
    secret: &str,
    key: &str,
    dir: &str,
    file: &str,
) -> (Volume, VolumeMount) {
    let volume_source = Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: file.into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: volume.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume_source, mount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CredentialsSecretRef, SecretKeyRef};

    fn s3(endpoint: &str) -> S3Storage {
        S3Storage {
            endpoint: endpoint.into(),
            bucket: "b".into(),
            region: None,
            insecure: None,
            credentials_secret: CredentialsSecretRef {
                name: "creds".into(),
                access_key_id_key: "id".into(),
                secret_access_key_key: "secret".into(),
            },
            ca_secret: None,
        }
    }

    #[test]
    fn scheme_is_stripped_and_decides_insecure() {
        let plain = Endpoint::new(&s3("minio.minio.svc:9000"));
        assert_eq!(plain.host_port, "minio.minio.svc:9000");
        assert!(plain.insecure);
        let http = Endpoint::new(&s3("http://minio:9000/"));
        assert_eq!(http.host_port, "minio:9000");
        assert!(http.insecure);
        let https = Endpoint::new(&s3("https://s3.amazonaws.com"));
        assert_eq!(https.host_port, "s3.amazonaws.com");
        assert!(!https.insecure);
    }

    #[test]
    fn a_ca_bundle_means_tls_and_an_explicit_insecure_wins() {
        let mut with_ca = s3("minio:9000");
        with_ca.ca_secret = Some(SecretKeyRef {
            name: "ca".into(),
            key: "ca.crt".into(),
        });
        assert!(!Endpoint::new(&with_ca).insecure);
        let mut explicit = s3("https://minio:9000");
        explicit.insecure = Some(true);
        assert!(Endpoint::new(&explicit).insecure);
    }

    #[test]
    fn default_ports_are_dropped_for_tempo() {
        assert_eq!(
            Endpoint::new(&s3("http://minio:80")).without_default_port(),
            "minio"
        );
        assert_eq!(
            Endpoint::new(&s3("https://s3.example.com:443")).without_default_port(),
            "s3.example.com"
        );
        assert_eq!(
            Endpoint::new(&s3("https://s3.example.com:80")).without_default_port(),
            "s3.example.com:80"
        );
        assert_eq!(
            Endpoint::new(&s3("minio:9000")).without_default_port(),
            "minio:9000"
        );
    }

    #[test]
    fn aws_endpoints_give_their_region() {
        let region = |endpoint: &str| aws_region(&Endpoint::new(&s3(endpoint)));
        assert_eq!(
            region("https://s3.eu-west-1.amazonaws.com"),
            Some("eu-west-1".into())
        );
        assert_eq!(
            region("s3-us-west-2.amazonaws.com"),
            Some("us-west-2".into())
        );
        assert_eq!(
            region("https://bucket.s3.dualstack.ap-southeast-2.amazonaws.com:443"),
            Some("ap-southeast-2".into())
        );
        assert_eq!(region("s3.amazonaws.com"), Some("us-east-1".into()));
        assert_eq!(
            region("s3.us-gov-west-1.amazonaws.com"),
            Some("us-gov-west-1".into())
        );
        assert_eq!(
            region("s3.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1".into())
        );
        assert_eq!(region("minio.minio.svc:9000"), None);
        assert_eq!(region("eu-west-1.example.com"), None);
    }

    #[test]
    fn loki_needs_a_region_on_aws_and_gets_one_where_it_can() {
        let mut aws = s3("https://s3.eu-west-1.amazonaws.com");
        assert_eq!(region(Product::Loki, &aws), Ok(Some("eu-west-1".into())));
        aws.endpoint = "https://bucket.s3-accelerate.amazonaws.com".into();
        let error = region(Product::Loki, &aws)
            .expect_err("no region to sign for")
            .to_string();
        assert!(
            error.contains("spec.storage.s3.region") && error.contains("dummy"),
            "{error}"
        );
        assert_eq!(
            region(Product::Mimir, &aws),
            Ok(None),
            "Mimir asks the bucket"
        );
        aws.region = Some("eu-central-1".into());
        assert_eq!(region(Product::Loki, &aws), Ok(Some("eu-central-1".into())));
        assert_eq!(
            region(Product::Loki, &s3("minio:9000")),
            Ok(None),
            "S3-compatible servers accept dummy"
        );
    }

    fn spec(storage: serde_json::Value) -> StorageSpec {
        serde_json::from_value(storage).expect("storage spec")
    }

    #[test]
    fn a_gcs_key_is_a_mounted_file_that_google_credentials_name() {
        let storage = spec(serde_json::json!({"gcs": {"bucket": "b",
            "credentialsSecret": {"name": "gcs", "key": "sa.json"}}}));
        for product in [Product::Mimir, Product::Loki, Product::Tempo] {
            let worker = for_workers(product, &storage);
            assert_eq!(worker.env.len(), 1);
            assert_eq!(worker.env[0].name, GOOGLE_CREDENTIALS_ENV);
            assert_eq!(
                worker.env[0].value.as_deref(),
                Some("/etc/lgtm/gcs/key.json")
            );
            let (volume, mount) = &worker.volumes[0];
            let secret = volume.secret.as_ref().expect("a Secret volume");
            assert_eq!(secret.secret_name.as_deref(), Some("gcs"));
            let items = secret.items.as_ref().expect("one item");
            assert_eq!(
                (items[0].key.as_str(), items[0].path.as_str()),
                ("sa.json", "key.json")
            );
            assert_eq!(mount.read_only, Some(true));
            assert!(worker.args.is_empty());
        }
    }

    #[test]
    fn an_azure_key_is_a_variable_from_the_secret_and_a_flag_for_mimir_and_loki() {
        let storage = spec(serde_json::json!({"azure": {"accountName": "acct",
            "container": "c", "credentialsSecret": {"name": "azure"}}}));
        for product in [Product::Mimir, Product::Loki, Product::Tempo] {
            let worker = for_workers(product, &storage);
            let selector = worker.env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("from the Secret");
            assert_eq!(
                (worker.env[0].name.as_str(), selector.key.as_str()),
                (AZURE_KEY_ENV, "account-key")
            );
            let expected: Vec<String> = match product {
                // Tempo reads AZURE_STORAGE_KEY itself.
                Product::Tempo => vec![],
                _ => vec!["-common.storage.azure.account-key=$(AZURE_STORAGE_KEY)".into()],
            };
            assert_eq!(worker.args, expected, "{product}");
        }
    }

    #[test]
    fn the_filesystem_needs_nothing_but_the_data_volume() {
        let storage = spec(serde_json::json!({"filesystem": {}}));
        assert_eq!(
            for_workers(Product::Loki, &storage),
            WorkerStorage::default()
        );
    }

    #[test]
    fn azure_urls_are_the_account_host_or_an_emulator_path() {
        let azure = |suffix: Option<&str>| AzureStorage {
            account_name: "acct".into(),
            container: "c".into(),
            endpoint_suffix: suffix.map(String::from),
            credentials_secret: crate::api::AzureCredentialsRef {
                name: "a".into(),
                account_key_key: "k".into(),
            },
        };
        assert_eq!(
            azure_url(&azure(None)),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            azure_url(&azure(Some("blob.core.chinacloudapi.cn"))),
            "https://acct.blob.core.chinacloudapi.cn"
        );
        assert_eq!(
            azure_url(&azure(Some("127.0.0.1:10000"))),
            "http://127.0.0.1:10000/acct"
        );
    }

    #[test]
    fn credentials_come_only_from_the_secret() {
        let env = worker_env(&s3("minio:9000"));
        assert_eq!(env.len(), 2);
        for var in &env {
            assert!(var.value.is_none(), "{} has an inline value", var.name);
            let selector = var
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("from a secret");
            assert_eq!(selector.name, "creds");
        }
        assert_eq!(env[0].name, ACCESS_KEY_ID_ENV);
        assert_eq!(
            env[1]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| s.key.as_str()),
            Some("secret")
        );
    }
}
