//! The self-monitoring agent (Grafana Alloy) in the gateway pods: it finds the
//! cluster's workers through the Kubernetes API, scrapes their metrics and the nginx
//! exporter, tails their logs, and ships both. Replicas form an Alloy cluster that
//! shares the targets out, so every series and log line is sent once.
//!
//! Labels added: cluster, namespace, pool, pod, container. Never a role label: a pod
//! may run several roles, so a role label would mislead every panel.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, SecretVolumeSource, Service, ServiceAccount, ServicePort,
    ServiceSpec, Volume,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ClusterView;
use super::labels::{
    CLUSTER, COMPONENT, Component, POOL, child_meta, cluster_labels, gateway_selector,
};
use super::pod::{
    EXPORTER_PORT, config_map_volume, container_port, http_probe, mount, restricted_container,
};
use crate::api::{PASSWORD_KEY, TOKEN_KEY};

const HTTP_PORT: u16 = 12345;
const CONFIG_DIR: &str = "/etc/alloy";
/// Each destination's credential is mounted in `<AUTH_DIR>/<destination>/`.
const AUTH_DIR: &str = "/etc/alloy/auth";

/// The agent's credential for one destination, resolved from its Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic: the username, written into the configuration, and the Secret whose
    /// `password` is mounted.
    Basic { secret: String, username: String },
    /// A bearer token: the Secret whose `token` is mounted.
    Bearer { secret: String },
}

impl Credential {
    /// The Secret key mounted, which is also the file's name.
    fn key(&self) -> &'static str {
        match self {
            Credential::Basic { .. } => PASSWORD_KEY,
            Credential::Bearer { .. } => TOKEN_KEY,
        }
    }

    fn secret(&self) -> &str {
        match self {
            Credential::Basic { secret, .. } | Credential::Bearer { secret } => secret,
        }
    }
}

/// The agent's credentials, per destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub metrics: Option<Credential>,
    pub logs: Option<Credential>,
}

impl Credentials {
    /// Each destination with its credential, named as its mount directory.
    fn by_destination(&self) -> impl Iterator<Item = (&'static str, &Credential)> {
        [("metrics", &self.metrics), ("logs", &self.logs)]
            .into_iter()
            .filter_map(|(destination, credential)| Some((destination, credential.as_ref()?)))
    }
}

/// `value` as an Alloy string literal: quoted, and everything but printable ASCII
/// escaped. Alloy's scanner takes Go's escapes, and refuses some characters even inside
/// a string (a byte-order mark, NUL), which a username read from a file may carry.
fn alloy_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// The lines of an `endpoint` block that send `credential`, read from its mounted file on
/// each request (Alloy's `password_file` and `bearer_token_file`).
fn endpoint_auth(destination: &str, credential: Option<&Credential>) -> String {
    let Some(credential) = credential else {
        return String::new();
    };
    let file = alloy_string(&format!("{AUTH_DIR}/{destination}/{}", credential.key()));
    match credential {
        Credential::Basic { username, .. } => format!(
            "    basic_auth {{\n      username      = {}\n      password_file = {file}\n    }}\n",
            alloy_string(username)
        ),
        Credential::Bearer { .. } => format!("    bearer_token_file = {file}\n"),
    }
}

/// The agent's objects besides its container.
#[derive(Debug, Clone)]
pub struct Agent {
    pub config: ConfigMap,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// Headless Service through which the replicas find each other.
    pub peers: Service,
}

pub fn enabled(cluster: &ClusterView) -> bool {
    cluster.spec.self_monitoring.is_enabled()
}

/// `<c>-agent`: the name of every agent object.
pub fn name(cluster: &ClusterView) -> String {
    cluster.child_name("agent")
}

/// Prometheus relabelling key of a pod label.
fn meta_label(label: &str) -> String {
    let sanitized: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__meta_kubernetes_pod_label_{sanitized}")
}

/// The agent's configuration (Alloy syntax): the worker discovery, then a pipeline per
/// destination the spec names.
pub fn config(cluster: &ClusterView, credentials: &Credentials) -> String {
    let monitoring = &cluster.spec.self_monitoring;
    let cluster_label = format!("{}/{}", cluster.namespace, cluster.name);
    let mut out = discovery(cluster, &cluster_label);
    if let Some(metrics) = &monitoring.metrics {
        let endpoint = format!(
            "    url = {}\n{}",
            alloy_string(&metrics.remote_write_url),
            endpoint_auth("metrics", credentials.metrics.as_ref())
        );
        out.push_str(&metrics_pipeline(cluster, &cluster_label, &endpoint));
    }
    if let Some(logs) = &monitoring.logs {
        let endpoint = format!(
            "    url = {}\n{}",
            alloy_string(&logs.loki_push_url),
            endpoint_auth("logs", credentials.logs.as_ref())
        );
        out.push_str(&logs_pipeline(&endpoint));
    }
    out
}

/// Finds the cluster's worker pods and labels their targets as every panel and alert
/// expects them (see `render::observability`).
fn discovery(cluster: &ClusterView, cluster_label: &str) -> String {
    let ns = &cluster.namespace;
    let product = cluster.product();
    format!(
        r#"// Rendered by lgtm-operator; changes are overwritten.
discovery.kubernetes "workers" {{
  role = "pod"
  namespaces {{
    names = ["{ns}"]
  }}
  selectors {{
    role  = "pod"
    label = "{CLUSTER}={name},{COMPONENT}=worker"
  }}
}}

discovery.relabel "workers" {{
  targets = discovery.kubernetes.workers.targets
  rule {{
    source_labels = ["__meta_kubernetes_pod_container_port_name"]
    regex         = "http"
    action        = "keep"
  }}
  rule {{
    target_label = "cluster"
    replacement  = "{cluster_label}"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_namespace"]
    target_label  = "namespace"
  }}
  rule {{
    source_labels = ["{pool_label}"]
    target_label  = "pool"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_name"]
    target_label  = "pod"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_container_name"]
    target_label  = "container"
  }}
  rule {{
    target_label = "job"
    replacement  = "{product}"
  }}
}}
"#,
        name = cluster.name,
        pool_label = meta_label(POOL),
    )
}

/// Scrapes the workers, shared out over the agent cluster, and each replica's own nginx
/// exporter; ships both to `endpoint` (the lines of its block).
fn metrics_pipeline(cluster: &ClusterView, cluster_label: &str, endpoint: &str) -> String {
    let ns = &cluster.namespace;
    let product = cluster.product();
    format!(
        r#"
prometheus.scrape "workers" {{
  targets    = discovery.relabel.workers.output
  forward_to = [prometheus.remote_write.default.receiver]
  clustering {{
    enabled = true
  }}
}}

prometheus.scrape "gateway" {{
  targets = [{{
    "__address__" = "127.0.0.1:{EXPORTER_PORT}",
    // Each gateway replica scrapes its own exporter: the pod tells their series apart.
    "pod"         = env("POD_NAME"),
    "cluster"     = "{cluster_label}",
    "namespace"   = "{ns}",
    "job"         = "{product}-gateway",
  }}]
  forward_to = [prometheus.remote_write.default.receiver]
}}

prometheus.remote_write "default" {{
  endpoint {{
{endpoint}  }}
}}
"#
    )
}

/// Tails the workers' logs, shared out over the agent cluster; ships them to `endpoint`
/// (the lines of its block).
fn logs_pipeline(endpoint: &str) -> String {
    format!(
        r#"
loki.source.kubernetes "workers" {{
  targets    = discovery.relabel.workers.output
  forward_to = [loki.write.default.receiver]
  clustering {{
    enabled = true
  }}
}}

loki.write "default" {{
  endpoint {{
{endpoint}  }}
}}
"#
    )
}

/// The agent container and its volumes (its configuration, and each destination's
/// credential), for the gateway pod.
pub fn container(cluster: &ClusterView, credentials: &Credentials) -> (Container, Vec<Volume>) {
    let name = name(cluster);
    let peers = format!("{name}.{}.svc", cluster.namespace);
    let container = Container {
        name: "agent".into(),
        image: Some(cluster.spec.self_monitoring.image.clone()),
        args: Some(vec![
            "run".into(),
            format!("{CONFIG_DIR}/config.alloy"),
            format!("--server.http.listen-addr=0.0.0.0:{HTTP_PORT}"),
            "--storage.path=/tmp/alloy".into(),
            "--cluster.enabled=true".into(),
            format!("--cluster.join-addresses={peers}:{HTTP_PORT}"),
        ]),
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![container_port("agent", HTTP_PORT)]),
        readiness_probe: Some(http_probe("/-/ready", HTTP_PORT)),
        security_context: Some(restricted_container()),
        volume_mounts: Some(
            [
                mount("agent-config", CONFIG_DIR, true),
                mount("runtime", "/tmp", false),
            ]
            .into_iter()
            .chain(credentials.by_destination().map(|(destination, _)| {
                let dir = format!("{AUTH_DIR}/{destination}");
                mount(&format!("agent-auth-{destination}"), &dir, true)
            }))
            .collect(),
        ),
        ..Container::default()
    };
    let volumes = std::iter::once(config_map_volume("agent-config", name))
        .chain(credentials.by_destination().map(auth_volume))
        .collect();
    (container, volumes)
}

/// The one key of a destination's credential Secret, as a directory (kubelet updates it
/// in place when the Secret changes; a subPath mount would never see a rotation).
/// Optional: a missing Secret fails that destination's requests, never the gateway pod.
fn auth_volume((destination, credential): (&str, &Credential)) -> Volume {
    let key = credential.key();
    Volume {
        name: format!("agent-auth-{destination}"),
        secret: Some(SecretVolumeSource {
            secret_name: Some(credential.secret().to_string()),
            optional: Some(true),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: key.into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The agent's ConfigMap, identity, rights and peer Service.
pub fn build(cluster: &ClusterView, credentials: &Credentials) -> Agent {
    let name = name(cluster);
    let labels = cluster_labels(cluster.product(), &cluster.name, Component::Agent);
    let meta = || {
        child_meta(
            &name,
            &cluster.namespace,
            labels.clone(),
            cluster.owner.as_ref(),
        )
    };
    let rule = |resources: &[&str]| PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        ..PolicyRule::default()
    };
    Agent {
        config: ConfigMap {
            metadata: meta(),
            data: Some(BTreeMap::from([(
                "config.alloy".to_string(),
                config(cluster, credentials),
            )])),
            ..ConfigMap::default()
        },
        service_account: ServiceAccount {
            metadata: meta(),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(),
            // Discover the worker pods and read their logs; nothing else.
            rules: Some(vec![rule(&["pods"]), rule(&["pods/log"])]),
        },
        role_binding: RoleBinding {
            metadata: meta(),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.clone(),
                namespace: Some(cluster.namespace.clone()),
                ..Subject::default()
            }]),
        },
        peers: Service {
            metadata: meta(),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                publish_not_ready_addresses: Some(true),
                selector: Some(gateway_selector(&cluster.name)),
                ports: Some(vec![ServicePort {
                    name: Some("agent".into()),
                    port: HTTP_PORT.into(),
                    target_port: Some(IntOrString::Int(HTTP_PORT.into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn cluster(monitoring: &str) -> crate::api::GrafanaCluster {
        fixtures::cluster(&format!(
            "product: loki\nstorage: {{s3: {{endpoint: minio:9000, bucket: b, credentialsSecret: {{name: s}}}}}}\nselfMonitoring: {monitoring}"
        ))
    }

    #[test]
    fn metrics_and_logs_go_where_asked_with_cluster_and_pool_labels_but_no_role() {
        let cluster = cluster(
            "{metrics: {remoteWriteUrl: 'http://prom:9090/api/v1/write'}, logs: {lokiPushUrl: 'http://loki:3100/loki/api/v1/push'}}",
        );
        let config = config(&ClusterView::new(&cluster), &Credentials::default());
        assert!(config.contains("url = \"http://prom:9090/api/v1/write\""));
        assert!(config.contains("url = \"http://loki:3100/loki/api/v1/push\""));
        assert!(config.contains(
            "label = \"lgtm.coordinated.dev/cluster=metrics,app.kubernetes.io/component=worker\""
        ));
        for label in ["\"cluster\"", "\"namespace\"", "\"pool\"", "\"pod\""] {
            assert!(
                config.contains(&format!("target_label  = {label}"))
                    || config.contains(&format!("target_label = {label}")),
                "{label}"
            );
        }
        assert!(config.contains("__meta_kubernetes_pod_label_lgtm_coordinated_dev_pool"));
        // No role label: a pod may run several roles.
        assert!(!config.contains("\"role\""));
        assert!(!config.contains("role_lgtm"));
        assert!(
            config.contains("127.0.0.1:9113"),
            "the nginx exporter is scraped"
        );
    }

    #[test]
    fn only_configured_destinations_are_rendered() {
        let cluster = cluster("{logs: {lokiPushUrl: 'http://loki:3100/loki/api/v1/push'}}");
        let config = config(&ClusterView::new(&cluster), &Credentials::default());
        assert!(config.contains("loki.write"));
        assert!(!config.contains("prometheus.remote_write"));
    }

    #[test]
    fn each_destination_sends_its_credential_from_a_file_and_the_username_escaped() {
        let cluster = cluster(
            "{metrics: {remoteWriteUrl: 'https://m/api/v1/push'}, logs: {lokiPushUrl: 'https://l/loki/api/v1/push'}}",
        );
        let credentials = Credentials {
            metrics: Some(Credential::Basic {
                secret: "meta".into(),
                username: "ag\"ent\\".into(),
            }),
            logs: Some(Credential::Bearer {
                secret: "logs-token".into(),
            }),
        };
        let view = ClusterView::new(&cluster);
        let config = config(&view, &credentials);
        assert!(
            config.contains(
                "  endpoint {\n    url = \"https://m/api/v1/push\"\n    basic_auth {\n      username      = \"ag\\\"ent\\\\\"\n      password_file = \"/etc/alloy/auth/metrics/password\"\n    }\n  }"
            ),
            "{config}"
        );
        assert!(
            config.contains(
                "  endpoint {\n    url = \"https://l/loki/api/v1/push\"\n    bearer_token_file = \"/etc/alloy/auth/logs/token\"\n  }"
            ),
            "{config}"
        );

        // Only the password or token is mounted, as a directory kubelet keeps current,
        // and a missing Secret does not stop the gateway pod.
        let (container, volumes) = container(&view, &credentials);
        let mounts: Vec<(String, String)> = container
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.name.starts_with("agent-auth"))
            .map(|m| {
                assert_eq!((m.read_only, m.sub_path), (Some(true), None));
                (m.name, m.mount_path)
            })
            .collect();
        assert_eq!(
            mounts,
            [
                (
                    "agent-auth-metrics".into(),
                    "/etc/alloy/auth/metrics".into()
                ),
                ("agent-auth-logs".into(), "/etc/alloy/auth/logs".into())
            ]
        );
        let secrets: Vec<(String, bool, Vec<String>)> = volumes
            .iter()
            .filter_map(|v| v.secret.as_ref())
            .map(|s| {
                let items = s.items.iter().flatten().map(|i| i.key.clone()).collect();
                (
                    s.secret_name.clone().unwrap_or_default(),
                    s.optional == Some(true),
                    items,
                )
            })
            .collect();
        assert_eq!(
            secrets,
            [
                ("meta".into(), true, vec!["password".to_string()]),
                ("logs-token".into(), true, vec!["token".to_string()])
            ]
        );
    }

    #[test]
    fn alloy_strings_escape_all_but_printable_ascii() {
        assert_eq!(
            alloy_string("a\"b\\c\u{feff}d\ne\u{0}é😀"),
            r#""a\"b\\c\ufeffd\u000ae\u0000\u00e9\U0001f600""#
        );
    }

    #[test]
    fn a_url_cannot_break_out_of_its_string() {
        let cluster = cluster("{metrics: {remoteWriteUrl: 'http://x\" }  evil {'}}");
        let config = config(&ClusterView::new(&cluster), &Credentials::default());
        assert!(
            config.contains("url = \"http://x\\\" }  evil {\""),
            "{config}"
        );
    }

    #[test]
    fn the_agent_may_only_read_pods_and_their_logs() {
        let agent = build(
            &ClusterView::new(&cluster("{enabled: true}")),
            &Credentials::default(),
        );
        let rules = agent.role.rules.expect("rules");
        for rule in &rules {
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
        }
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        assert_eq!(resources, ["pods", "pods/log"]);
    }
}
