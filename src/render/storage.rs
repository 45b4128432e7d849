//! Object storage as the workers see it: a normalised endpoint and region for the
//! product config, and credentials that reach the workers only as the environment
//! variables the products read themselves (runtime contract: AWS_ACCESS_KEY_ID and
//! AWS_SECRET_ACCESS_KEY, used when the config names no key), so no credential is ever
//! substituted into a configuration file (ADR 6).

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};

use super::RenderError;
use crate::api::S3Storage;
use crate::product::Product;

/// The standard AWS variables every product's S3 client reads when its configuration
/// sets no key (runtime contract).
pub const ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

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
    let from_secret = |name: &str, key: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s3.credentials_secret.name.clone(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env = vec![
        from_secret(ACCESS_KEY_ID_ENV, &s3.credentials_secret.access_key_id_key),
        from_secret(
            SECRET_ACCESS_KEY_ENV,
            &s3.credentials_secret.secret_access_key_key,
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
    let volume = Volume {
        name: CA_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(ca.name.clone()),
            items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                key: ca.key.clone(),
                path: "ca.crt".into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: CA_VOLUME.into(),
        mount_path: CA_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
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
