//! The self-monitoring agent (Grafana Alloy) in the gateway pods: it finds the
//! cluster's workers through the Kubernetes API, scrapes their metrics and the nginx
//! exporter, tails their logs, and ships both. Replicas form an Alloy cluster that
//! shares the targets out, so every series and log line is sent once.
//!
//! Labels added: cluster, namespace, pool, pod, container. Never a role label: a pod
//! may run several roles, so a role label would mislead every panel.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
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

const HTTP_PORT: u16 = 12345;
const CONFIG_DIR: &str = "/etc/alloy";

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
pub fn config(cluster: &ClusterView) -> String {
    let monitoring = &cluster.spec.self_monitoring;
    let cluster_label = format!("{}/{}", cluster.namespace, cluster.name);
    let mut out = discovery(cluster, &cluster_label);
    if let Some(metrics) = &monitoring.metrics {
        out.push_str(&metrics_pipeline(
            cluster,
            &cluster_label,
            &metrics.remote_write_url,
        ));
    }
    if let Some(logs) = &monitoring.logs {
        out.push_str(&logs_pipeline(&logs.loki_push_url));
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
/// exporter; ships both to `url`.
fn metrics_pipeline(cluster: &ClusterView, cluster_label: &str, url: &str) -> String {
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
    url = "{url}"
  }}
}}
"#
    )
}

/// Tails the workers' logs, shared out over the agent cluster; ships them to `url`.
fn logs_pipeline(url: &str) -> String {
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
    url = "{url}"
  }}
}}
"#
    )
}

/// The agent container and its config volume, for the gateway pod.
pub fn container(cluster: &ClusterView) -> (Container, Volume) {
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
        volume_mounts: Some(vec![
            mount("agent-config", CONFIG_DIR, true),
            mount("runtime", "/tmp", false),
        ]),
        ..Container::default()
    };
    (container, config_map_volume("agent-config", name))
}

/// The agent's ConfigMap, identity, rights and peer Service.
pub fn build(cluster: &ClusterView) -> Agent {
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
                config(cluster),
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
        let config = config(&ClusterView::new(&cluster));
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
        let config = config(&ClusterView::new(&cluster));
        assert!(config.contains("loki.write"));
        assert!(!config.contains("prometheus.remote_write"));
    }

    #[test]
    fn the_agent_may_only_read_pods_and_their_logs() {
        let agent = build(&ClusterView::new(&cluster("{enabled: true}")));
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
