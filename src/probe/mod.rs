//! The storage probe: connects to a cluster's bucket with the workers' own credentials,
//! endpoint and CA, and writes, reads, lists and deletes one object under a reserved
//! prefix. What it finds becomes the cluster's `StorageReady` condition; a failure keeps
//! the workers on their last verified settings (ADR 11).
//!
//! The client is the `object_store` crate; nothing here talks HTTP by hand. Secret
//! values live only in [`ProbeTarget`] and never reach a message ([`classify`]).

mod classify;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

pub use classify::{ProbeFailure, classify};

use crate::api::Reason;

/// Where probe objects go: one per cluster, deleted again by the probe. Outside every
/// prefix the products write (Mimir's `blocks/`, `rules/`, `alerts/`; Loki's and
/// Tempo's tenant directories never start with a dot).
pub const PROBE_PREFIX: &str = ".lgtm-operator-probe";

/// How long one probe may take, connection and every request included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a probe connects to, with the credentials it uses. Built from the cluster's spec
/// and Secrets by [`crate::plan::secrets`]; its `Debug` shows no secret.
#[derive(Clone)]
pub struct ProbeTarget {
    pub backend: ProbeBackend,
    /// PEM CA bundle the endpoint's certificate must chain to; it replaces the system
    /// roots, as it does for the workers.
    pub ca_pem: Option<Vec<u8>>,
    /// The object this probe writes, e.g. `.lgtm-operator-probe/<cluster uid>`.
    pub object: String,
}

/// The backends the probe speaks.
#[derive(Clone)]
pub enum ProbeBackend {
    S3 {
        /// `http://` or `https://` and host[:port].
        endpoint: String,
        bucket: String,
        region: String,
        access_key_id: String,
        secret_access_key: String,
    },
    Gcs {
        bucket: String,
        /// The service-account JSON key, as the workers read it.
        service_account_key: String,
    },
    Azure {
        /// The Blob service URL of the account (`render::storage::azure_url`).
        endpoint: String,
        account: String,
        container: String,
        access_key: String,
    },
}

impl ProbeBackend {
    /// The backend's name, as the metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeBackend::S3 { .. } => "s3",
            ProbeBackend::Gcs { .. } => "gcs",
            ProbeBackend::Azure { .. } => "azure",
        }
    }

    /// Values that must never appear in a message.
    fn secrets(&self) -> Vec<&str> {
        match self {
            ProbeBackend::S3 {
                access_key_id,
                secret_access_key,
                ..
            } => vec![access_key_id, secret_access_key],
            ProbeBackend::Gcs {
                service_account_key,
                ..
            } => {
                // The whole key, and its private key's lines one by one.
                let mut secrets = vec![service_account_key.as_str()];
                secrets.extend(service_account_key.lines().filter(|l| l.len() >= 16));
                secrets
            }
            ProbeBackend::Azure { access_key, .. } => vec![access_key],
        }
    }
}

impl std::fmt::Debug for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("backend", &self.backend.name())
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// Probes `target`: put, get (and compare), list, delete. The first step that fails
/// decides the answer; the whole probe is bounded by [`PROBE_TIMEOUT`].
pub async fn probe(target: &ProbeTarget) -> Result<(), ProbeFailure> {
    let secrets = target.backend.secrets();
    let store = build(target).map_err(|e| classify("connect", &e, &secrets))?;
    match tokio::time::timeout(PROBE_TIMEOUT, steps(store.as_ref(), &target.object)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err((step, error))) => Err(classify(step, &error, &secrets)),
        Err(_) => Err(ProbeFailure {
            reason: Reason::EndpointUnreachable,
            message: format!(
                "the storage endpoint did not finish answering within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
        }),
    }
}

type StepError = (&'static str, object_store::Error);

async fn steps(store: &dyn ObjectStore, object: &str) -> Result<(), StepError> {
    let path = Path::from(object);
    let body = format!("written by lgtm-operator to check {object}; deleted right after");
    store
        .put(&path, PutPayload::from(body.clone().into_bytes()))
        .await
        .map_err(|e| ("write", e))?;
    let read = store
        .get(&path)
        .await
        .map_err(|e| ("read", e))?
        .bytes()
        .await
        .map_err(|e| ("read", e))?;
    if read.as_ref() != body.as_bytes() {
        return Err((
            "read",
            object_store::Error::Generic {
                store: "probe",
                source: "the object read back differs from the one written".into(),
            },
        ));
    }
    let listed: Vec<_> = store
        .list(Some(&Path::from(PROBE_PREFIX)))
        .try_collect()
        .await
        .map_err(|e| ("list", e))?;
    if !listed.iter().any(|meta| meta.location == path) {
        return Err((
            "list",
            object_store::Error::Generic {
                store: "probe",
                source: "the object written is missing from the listing".into(),
            },
        ));
    }
    store.delete(&path).await.map_err(|e| ("delete", e))?;
    Ok(())
}

fn build(target: &ProbeTarget) -> object_store::Result<Arc<dyn ObjectStore>> {
    let mut options = ClientOptions::new()
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(3))
        .with_allow_http(true);
    if let Some(pem) = &target.ca_pem {
        for certificate in Certificate::from_pem_bundle(pem)? {
            options = options.with_root_certificate(certificate);
        }
        options = options.with_no_system_certificates(true);
    }
    // One retry: a probe answers fast, the reconcile's backoff does the waiting.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: PROBE_TIMEOUT,
    };
    Ok(match &target.backend {
        ProbeBackend::S3 {
            endpoint,
            bucket,
            region,
            access_key_id,
            secret_access_key,
        } => Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(endpoint)
                .with_bucket_name(bucket)
                .with_region(region)
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key)
                .with_client_options(options)
                .with_retry(retry)
                .build()?,
        ),
        ProbeBackend::Gcs {
            bucket,
            service_account_key,
        } => Arc::new(
            GoogleCloudStorageBuilder::new()
                .with_bucket_name(bucket)
                .with_service_account_key(service_account_key)
                .with_client_options(options)
                .with_retry(retry)
                .build()?,
        ),
        ProbeBackend::Azure {
            endpoint,
            account,
            container,
            access_key,
        } => Arc::new(
            MicrosoftAzureBuilder::new()
                .with_endpoint(endpoint.clone())
                .with_account(account)
                .with_container_name(container)
                .with_access_key(access_key)
                .with_client_options(options)
                .with_retry(retry)
                .build()?,
        ),
    })
}
