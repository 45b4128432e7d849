//! Object storage as the workers see it: a normalised endpoint for the product config,
//! and credentials that reach the workers only as environment variables.

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};

use crate::api::S3Storage;

/// Environment variables the product configs reference (`${...}` with
/// `-config.expand-env=true`).
pub const ACCESS_KEY_ID_ENV: &str = "LGTM_S3_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY_ENV: &str = "LGTM_S3_SECRET_ACCESS_KEY";

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
