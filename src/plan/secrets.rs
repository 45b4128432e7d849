//! The Secrets a cluster references: whether they are usable, and a checksum of the
//! data the workers read, so a change rolls them. Secret values never leave here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::Reason;
use crate::api::{
    Backend, DestinationAuth, GrafanaClusterSpec, PASSWORD_KEY, SelfMonitoringSpec, StorageSpec,
    TOKEN_KEY, USERNAME_KEY,
};
use crate::probe::{PROBE_PREFIX, ProbeBackend, ProbeFailure, ProbeTarget};
use crate::product::Product;
use crate::render::agent::{Credential, Credentials};
use crate::render::checksum;
use crate::render::storage::Endpoint;

/// The Secrets of a namespace as read, by name; `None` for one that does not exist.
pub type Secrets = BTreeMap<String, Option<Secret>>;

/// Why a referenced Secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// `SecretNotFound`, `SecretKeyMissing` or `RegionRequired`.
    pub reason: Reason,
    pub message: String,
}

/// The state of the Secrets a cluster's workers read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSecrets {
    pub problem: Option<SecretProblem>,
    /// Checksum of the keys the workers read (empty input when a problem exists).
    pub checksum: String,
    /// The storage probe connected with these settings (false when it is turned off).
    pub probed: bool,
}

/// What the storage probe found, for a cluster whose Secrets are usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketCheck {
    /// The probe wrote, read, listed and deleted its object.
    Verified,
    /// `storage.probe` is false, or nothing can probe (`lgtm-operator render`).
    NotChecked,
    Failed(ProbeFailure),
}

impl StorageSecrets {
    /// These Secrets as the bucket check leaves them: a failed probe is the problem.
    pub fn with_bucket(mut self, bucket: &BucketCheck) -> Self {
        if self.problem.is_some() {
            return self;
        }
        match bucket {
            BucketCheck::Verified => self.probed = true,
            BucketCheck::NotChecked => self.probed = false,
            BucketCheck::Failed(failure) => {
                self.problem = Some(SecretProblem {
                    reason: failure.reason,
                    message: failure.message.clone(),
                })
            }
        }
        self
    }
}

/// The probe object of a cluster: one per cluster, named by its UID.
pub fn probe_object(uid: &str) -> String {
    format!("{PROBE_PREFIX}/{uid}")
}

/// What the probe connects to for `spec`, with the values of its Secrets; `None` when a
/// Secret or key is missing (the Secrets' own check reports that).
pub fn probe_target(
    product: Product,
    spec: &GrafanaClusterSpec,
    secrets: &Secrets,
    uid: &str,
) -> Option<ProbeTarget> {
    let text = |name: &str, key: &str| {
        value(secrets, name, key).map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    let (backend, ca_pem) = match spec.storage.backend() {
        Backend::S3(s3) => {
            let credentials = &s3.credentials_secret;
            let endpoint = Endpoint::new(s3);
            let scheme = if endpoint.insecure { "http" } else { "https" };
            let region = crate::render::storage::region(product, s3).ok().flatten();
            let ca_pem = match &s3.ca_secret {
                Some(ca) => Some(value(secrets, &ca.name, &ca.key)?),
                None => None,
            };
            let backend = ProbeBackend::S3 {
                endpoint: format!("{scheme}://{}", endpoint.host_port),
                bucket: s3.bucket.clone(),
                // Any region signs for S3-compatible servers; AWS names its own.
                region: region.unwrap_or_else(|| "us-east-1".into()),
                access_key_id: text(&credentials.name, &credentials.access_key_id_key)?,
                secret_access_key: text(&credentials.name, &credentials.secret_access_key_key)?,
            };
            (backend, ca_pem)
        }
        Backend::Gcs(gcs) => {
            let credentials = &gcs.credentials_secret;
            let backend = ProbeBackend::Gcs {
                bucket: gcs.bucket.clone(),
                service_account_key: text(&credentials.name, &credentials.key)?,
            };
            (backend, None)
        }
        Backend::Azure(azure) => {
            let credentials = &azure.credentials_secret;
            let backend = ProbeBackend::Azure {
                endpoint: crate::render::storage::azure_url(azure),
                account: azure.account_name.clone(),
                container: azure.container.clone(),
                access_key: text(&credentials.name, &credentials.account_key_key)?,
            };
            (backend, None)
        }
        // The objects live on the worker's own volume, which the operator cannot reach.
        Backend::Filesystem(_) => return None,
    };
    Some(ProbeTarget {
        backend,
        ca_pem,
        object: probe_object(uid),
    })
}

/// What decides a probe's answer: the storage spec and the Secret values it uses. A new
/// key probes again at once.
pub fn probe_key(spec: &GrafanaClusterSpec, storage: &StorageSecrets) -> String {
    let settings = serde_json::to_vec(&spec.storage).unwrap_or_default();
    checksum([settings.as_slice(), storage.checksum.as_bytes()])
}

/// The value of `key` in Secret `name`, from `data` or `stringData`.
pub(crate) fn value(secrets: &Secrets, name: &str, key: &str) -> Option<Vec<u8>> {
    let secret = secrets.get(name)?.as_ref()?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
}

/// A secret name and the keys of it that are used.
struct Needed<'a> {
    what: &'a str,
    name: &'a str,
    keys: Vec<&'a str>,
}

/// Checks that each Secret exists and holds its keys; hashes the used values in order.
fn check(needed: &[Needed], secrets: &Secrets) -> StorageSecrets {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for need in needed {
        let Some(Some(_)) = secrets.get(need.name) else {
            return StorageSecrets {
                problem: Some(SecretProblem {
                    reason: Reason::SecretNotFound,
                    message: format!(
                        "{} Secret {:?} does not exist: create it in this namespace",
                        need.what, need.name
                    ),
                }),
                checksum: String::new(),
                probed: false,
            };
        };
        for key in &need.keys {
            match value(secrets, need.name, key) {
                Some(value) => {
                    parts.push(format!("{}/{key}", need.name).into_bytes());
                    parts.push(value);
                }
                None => {
                    return StorageSecrets {
                        problem: Some(SecretProblem {
                            reason: Reason::SecretKeyMissing,
                            message: format!(
                                "{} Secret {:?} has no key {key:?}: add it, or name the right key in the GrafanaCluster",
                                need.what, need.name
                            ),
                        }),
                        checksum: String::new(),
                        probed: false,
                    };
                }
            }
        }
    }
    StorageSecrets {
        problem: None,
        checksum: checksum(parts.iter().map(Vec::as_slice)),
        probed: false,
    }
}

fn storage_needs(storage: &StorageSpec) -> Vec<Needed<'_>> {
    match storage.backend() {
        Backend::S3(s3) => {
            let mut needed = vec![Needed {
                what: "S3 credentials",
                name: &s3.credentials_secret.name,
                keys: vec![
                    &s3.credentials_secret.access_key_id_key,
                    &s3.credentials_secret.secret_access_key_key,
                ],
            }];
            if let Some(ca) = &s3.ca_secret {
                needed.push(Needed {
                    what: "S3 CA bundle",
                    name: &ca.name,
                    keys: vec![&ca.key],
                });
            }
            needed
        }
        Backend::Gcs(gcs) => vec![Needed {
            what: "GCS service-account key",
            name: &gcs.credentials_secret.name,
            keys: vec![&gcs.credentials_secret.key],
        }],
        Backend::Azure(azure) => vec![Needed {
            what: "Azure account key",
            name: &azure.credentials_secret.name,
            keys: vec![&azure.credentials_secret.account_key_key],
        }],
        Backend::Filesystem(_) => Vec::new(),
    }
}

/// [`check`] of the storage Secrets, then of the settings the product needs beyond them
/// (Loki needs a region to sign for on AWS).
pub fn check_storage(product: Product, storage: &StorageSpec, secrets: &Secrets) -> StorageSecrets {
    let mut checked = check(&storage_needs(storage), secrets);
    if checked.problem.is_none()
        && let Backend::S3(s3) = storage.backend()
        && let Err(error) = crate::render::storage::region(product, s3)
    {
        checked.problem = Some(SecretProblem {
            reason: error.reason(),
            message: error.to_string(),
        });
    }
    checked
}

/// Checks the gateway's TLS Secret `name`.
pub fn check_tls(name: &str, secrets: &Secrets) -> Option<SecretProblem> {
    let needed = [Needed {
        what: "TLS",
        name,
        keys: vec!["tls.crt", "tls.key"],
    }];
    check(&needed, secrets).problem
}

/// Names of the Secrets the workers read (for the watch that maps a Secret change to the
/// pools using it).
pub fn read_by_workers(spec: &GrafanaClusterSpec) -> Vec<&str> {
    storage_needs(&spec.storage)
        .into_iter()
        .map(|need| need.name)
        .collect()
}

/// Names of the Secrets a cluster references (for the watch that maps a Secret change to
/// the clusters using it).
pub fn referenced(spec: &GrafanaClusterSpec) -> Vec<&str> {
    let mut names = read_by_workers(spec);
    names.extend(spec.tls.as_ref().map(|t| t.secret_name.as_str()));
    names.extend(
        agent_auth(&spec.self_monitoring)
            .into_iter()
            .filter_map(|(_, auth)| Some(auth?.secret_name())),
    );
    names
}

/// Each self-monitoring destination, by name, with the credential it names if any.
pub(super) fn agent_auth(
    monitoring: &SelfMonitoringSpec,
) -> [(&'static str, Option<&DestinationAuth>); 2] {
    [
        (
            "metrics",
            monitoring.metrics.as_ref().and_then(|m| m.auth.as_ref()),
        ),
        (
            "logs",
            monitoring.logs.as_ref().and_then(|l| l.auth.as_ref()),
        ),
    ]
}

/// The agent's credentials as their Secrets give them (only a basic-auth username is
/// read out: it goes into the agent's configuration), and the first Secret that cannot
/// be used. A destination whose Secret is missing keeps its credential: its requests
/// fail, and nothing is sent without one.
pub fn check_agent_auth(
    monitoring: &SelfMonitoringSpec,
    secrets: &Secrets,
) -> (Credentials, Option<SecretProblem>) {
    let [metrics, logs] = agent_auth(monitoring)
        .map(|(destination, auth)| auth.map(|auth| agent_credential(destination, auth, secrets)));
    let problem = [&metrics, &logs]
        .into_iter()
        .flatten()
        .find_map(|(_, problem)| problem.clone());
    let credentials = Credentials {
        metrics: metrics.map(|(credential, _)| credential),
        logs: logs.map(|(credential, _)| credential),
    };
    (credentials, problem)
}

/// One destination's credential, and why its Secret cannot give it, if it cannot.
fn agent_credential(
    destination: &str,
    auth: &DestinationAuth,
    secrets: &Secrets,
) -> (Credential, Option<SecretProblem>) {
    let secret = auth.secret_name().to_string();
    let (credential, keys) = match &auth.basic_auth {
        Some(_) => {
            let username = value(secrets, &secret, USERNAME_KEY)
                .map(|v| String::from_utf8_lossy(&v).trim().to_string())
                .unwrap_or_default();
            let credential = Credential::Basic {
                secret: secret.clone(),
                username,
            };
            (credential, [USERNAME_KEY, PASSWORD_KEY].as_slice())
        }
        None => (
            Credential::Bearer {
                secret: secret.clone(),
            },
            [TOKEN_KEY].as_slice(),
        ),
    };
    let what = format!("selfMonitoring.{destination}.auth");
    let problem = agent_secret_problem(&what, &secret, keys, secrets);
    (credential, problem)
}

/// The type of the Secrets that hold a ServiceAccount's API token.
const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";

/// Why Secret `name` cannot give the agent `keys`, if it cannot.
fn agent_secret_problem(
    what: &str,
    name: &str,
    keys: &[&str],
    secrets: &Secrets,
) -> Option<SecretProblem> {
    let Some(Some(secret)) = secrets.get(name) else {
        return Some(SecretProblem {
            reason: Reason::SecretNotFound,
            message: format!("{what}: Secret {name:?} does not exist: create it in this namespace"),
        });
    };
    // Whoever may edit the cluster chooses the URL: the agent never sends the namespace's
    // own API credentials there.
    if secret.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN) {
        return Some(SecretProblem {
            reason: Reason::InvalidCredential,
            message: format!(
                "{what}: Secret {name:?} is a ServiceAccount token, which the agent never sends"
            ),
        });
    }
    let missing = keys
        .iter()
        .find(|key| value(secrets, name, key).is_none_or(|v| v.is_empty()))?;
    Some(SecretProblem {
        reason: Reason::SecretKeyMissing,
        message: format!("{what}: Secret {name:?} has no {missing:?}, or it is empty"),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;
    use crate::fixtures;
    use crate::product::Product;

    fn secret(pairs: &[(&str, &str)]) -> Option<Secret> {
        Some(Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        })
    }

    #[test]
    fn missing_secret_and_missing_key_are_named() {
        let cluster = fixtures::minimal_cluster(Product::Mimir);
        let needed = storage_needs(&cluster.spec.storage);
        let none = BTreeMap::from([("s3-credentials".to_string(), None)]);
        let problem = check(&needed, &none).problem.expect("problem");
        assert_eq!(problem.reason, Reason::SecretNotFound);
        assert!(problem.message.contains("\"s3-credentials\""));
        let partial = BTreeMap::from([(
            "s3-credentials".to_string(),
            secret(&[("access-key-id", "a")]),
        )]);
        let problem = check(&needed, &partial).problem.expect("problem");
        assert_eq!(problem.reason, Reason::SecretKeyMissing);
        assert!(
            problem.message.contains("\"secret-access-key\""),
            "{}",
            problem.message
        );
        assert!(
            !problem.message.contains("\"a\""),
            "no secret value in messages"
        );
    }

    #[test]
    fn the_agents_credentials_come_from_their_secrets_and_problems_name_secret_and_key() {
        let monitoring: SelfMonitoringSpec = serde_json::from_value(serde_json::json!({
            "metrics": {"remoteWriteUrl": "http://m", "auth": {"basicAuth": {"secretName": "meta"}}},
            "logs": {"lokiPushUrl": "http://l", "auth": {"bearerToken": {"secretName": "logs-token"}}},
        }))
        .expect("spec");
        let secrets = BTreeMap::from([
            (
                "meta".to_string(),
                secret(&[("username", " agent\n"), ("password", "pw")]),
            ),
            ("logs-token".to_string(), secret(&[("token", "")])),
        ]);
        let (credentials, problem) = check_agent_auth(&monitoring, &secrets);
        assert_eq!(
            credentials,
            Credentials {
                metrics: Some(Credential::Basic {
                    secret: "meta".into(),
                    username: "agent".into()
                }),
                logs: Some(Credential::Bearer {
                    secret: "logs-token".into()
                }),
            }
        );
        let problem = problem.expect("an empty token");
        assert_eq!(
            (problem.reason, problem.message.as_str()),
            (
                Reason::SecretKeyMissing,
                "selfMonitoring.logs.auth: Secret \"logs-token\" has no \"token\", or it is empty"
            )
        );
        // A missing Secret keeps the credential (nothing is sent without one).
        let (credentials, problem) = check_agent_auth(&monitoring, &BTreeMap::new());
        assert!(credentials.metrics.is_some() && credentials.logs.is_some());
        assert_eq!(problem.map(|p| p.reason), Some(Reason::SecretNotFound));
        let spec = crate::api::GrafanaClusterSpec {
            self_monitoring: monitoring,
            ..fixtures::minimal_cluster(Product::Loki).spec
        };
        let names = referenced(&spec);
        assert!(
            names.contains(&"meta") && names.contains(&"logs-token"),
            "{names:?}"
        );
        // The workers read neither: rotating them reconciles no pool.
        assert!(!read_by_workers(&spec).contains(&"meta"));

        // A ServiceAccount token is never sent to a URL that whoever edits the cluster
        // chooses.
        let mut token = secret(&[("token", "eyJhbGciOi")]).expect("secret");
        token.type_ = Some("kubernetes.io/service-account-token".into());
        let secrets = BTreeMap::from([
            (
                "meta".to_string(),
                secret(&[("username", "agent"), ("password", "pw")]),
            ),
            ("logs-token".to_string(), Some(token)),
        ]);
        let problem = check_agent_auth(&spec.self_monitoring, &secrets)
            .1
            .expect("refused");
        assert_eq!(
            (problem.reason, problem.message.as_str()),
            (
                Reason::InvalidCredential,
                "selfMonitoring.logs.auth: Secret \"logs-token\" is a ServiceAccount token, which the agent never sends"
            )
        );
    }

    #[test]
    fn checksum_changes_with_the_values_used() {
        let cluster = fixtures::minimal_cluster(Product::Mimir);
        let needed = storage_needs(&cluster.spec.storage);
        let with = |secret_key: &str, extra: &str| {
            let secrets = BTreeMap::from([(
                "s3-credentials".to_string(),
                secret(&[
                    ("access-key-id", "a"),
                    ("secret-access-key", secret_key),
                    ("unused", extra),
                ]),
            )]);
            check(&needed, &secrets)
        };
        assert!(with("s", "x").problem.is_none());
        assert_ne!(with("s", "x").checksum, with("t", "x").checksum);
        assert_eq!(
            with("s", "x").checksum,
            with("s", "y").checksum,
            "unused keys do not roll pods"
        );
    }
}
