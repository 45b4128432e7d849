//! Dashboards and alert rules for a cluster's product: what the coordinator owns besides
//! its workers. They are written for this project from the products' metric names; the
//! upstream mixins are under a license the project does not take.
//!
//! Every query reads the series the self-monitoring agent ships (see [`super::agent`]):
//! workers under `job="<product>"`, the gateway's nginx exporter under
//! `job="<product>-gateway"`, each with `cluster="<namespace>/<name>"` and `namespace`,
//! workers also with `pool` and `pod`. There is no role label (a pod may run several
//! roles), so panels and alerts group by `pool`.
//!
//! The exporter reads nginx's stub_status, which counts requests but has no status
//! codes. Error ratios therefore come from the workers' own request histograms on the
//! routes the gateway serves: what a worker answered is what the gateway passed on. The
//! few requests nginx answers by itself (a duplicated tenant header gets its 400 there)
//! are not counted, and the descriptions say so.
//!
//! This module wraps them in the Kubernetes objects that carry them; `queries` holds the
//! PromQL both are made of, `dashboards` the Grafana JSON and `alerts` the rules.

mod alerts;
mod dashboards;
mod queries;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

pub use alerts::alert_rules;

use super::ClusterView;
use super::labels::{Component, child_meta, cluster_labels};

/// The label the Grafana dashboard sidecar looks for.
pub const DASHBOARD_LABEL: &str = "grafana_dashboard";
/// Data key of the rules ConfigMap written when the PrometheusRule CRD is absent.
pub const RULES_FILE: &str = "rules.yaml";

/// The Prometheus Operator's rule resource, for an `Api<DynamicObject>`.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PrometheusRule".into(),
        plural: "prometheusrules".into(),
    }
}

/// The value of the `cluster` label the agent puts on this cluster's series.
pub fn cluster_label(cluster: &ClusterView) -> String {
    format!("{}/{}", cluster.namespace, cluster.name)
}

/// The cluster's dashboards, one ConfigMap each (`<c>-dashboard-<name>`), labelled for
/// the Grafana sidecar.
pub fn dashboards(cluster: &ClusterView) -> Vec<ConfigMap> {
    dashboards::render(cluster)
        .into_iter()
        .map(|(name, json)| {
            let mut labels = cluster_labels(cluster.product(), &cluster.name, Component::Dashboard);
            labels.insert(DASHBOARD_LABEL.to_string(), "1".to_string());
            ConfigMap {
                metadata: child_meta(
                    cluster.child_name(&format!("dashboard-{name}")),
                    &cluster.namespace,
                    labels,
                    cluster.owner.as_ref(),
                ),
                data: Some(BTreeMap::from([(
                    dashboard_file(cluster, name),
                    serde_json::to_string_pretty(&json).expect("a JSON value always serializes"),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect()
}

/// The data key of a dashboard. The sidecar writes every key of every labelled ConfigMap
/// into one folder, so the key must be unique across namespaces and clusters; `_` is in
/// neither a namespace nor an object name, so it separates them unambiguously.
fn dashboard_file(cluster: &ClusterView, dashboard: &str) -> String {
    format!(
        "{}_{}_{}_{dashboard}.json",
        cluster.product(),
        cluster.namespace,
        cluster.name
    )
}

/// `<c>-alerts`: the rules as a PrometheusRule, for clusters with the Prometheus Operator.
pub fn prometheus_rule(cluster: &ClusterView) -> DynamicObject {
    let mut rule = DynamicObject::new(&alerts_name(cluster), &prometheus_rule_resource())
        .within(&cluster.namespace)
        .data(json!({"spec": alert_rules(cluster)}));
    rule.metadata = child_meta(
        alerts_name(cluster),
        &cluster.namespace,
        cluster_labels(cluster.product(), &cluster.name, Component::Alerts),
        cluster.owner.as_ref(),
    );
    rule
}

/// `<c>-alerts`: the same rules as a rule file in a ConfigMap, for when the
/// PrometheusRule CRD is not installed.
pub fn rules_config_map(cluster: &ClusterView) -> ConfigMap {
    let text = serde_saphyr::to_string(&alert_rules(cluster))
        .expect("a JSON value always serializes to YAML");
    ConfigMap {
        metadata: child_meta(
            alerts_name(cluster),
            &cluster.namespace,
            cluster_labels(cluster.product(), &cluster.name, Component::Alerts),
            cluster.owner.as_ref(),
        ),
        data: Some(BTreeMap::from([(RULES_FILE.to_string(), text)])),
        ..ConfigMap::default()
    }
}

/// Name of the alert rules object, whichever kind it is.
pub fn alerts_name(cluster: &ClusterView) -> String {
    cluster.child_name("alerts")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::queries::signals;
    use super::testing::{CLUSTER, clusters};
    use super::*;
    use crate::render::labels;

    fn dashboard_json_of(config_map: &ConfigMap) -> (String, Value) {
        let data = config_map.data.as_ref().expect("data");
        assert_eq!(data.len(), 1, "one dashboard per ConfigMap");
        let (key, text) = data.iter().next().expect("a key");
        (
            key.clone(),
            serde_json::from_str(text).expect("dashboard is JSON"),
        )
    }

    #[test]
    fn each_product_gets_an_overview_dashboard_for_the_grafana_sidecar() {
        for cluster in clusters() {
            let view = ClusterView::new(&cluster);
            let config_maps = dashboards(&view);
            assert_eq!(config_maps.len(), 1);
            let cm = &config_maps[0];
            assert_eq!(
                cm.metadata.name.as_deref(),
                Some("metrics-dashboard-overview")
            );
            assert_eq!(cm.metadata.namespace.as_deref(), Some("obs"));
            let labels = cm.metadata.labels.clone().expect("labels");
            assert_eq!(labels[DASHBOARD_LABEL], "1");
            assert_eq!(labels[labels::COMPONENT], "dashboard");
            assert_eq!(labels[labels::CLUSTER], "metrics");
            let owners = cm.metadata.owner_references.clone().expect("owner");
            assert_eq!(owners[0].kind, "GrafanaCluster");
            assert_eq!(owners[0].controller, Some(true));

            let product = view.product();
            let (key, dashboard) = dashboard_json_of(cm);
            assert_eq!(key, format!("{product}_obs_metrics_overview.json"));
            let title = signals(product).title;
            assert_eq!(
                dashboard["title"],
                format!("{title} / obs/metrics overview")
            );
            let variables = dashboard["templating"]["list"].as_array().expect("vars");
            let cluster_var = variables
                .iter()
                .find(|v| v["name"] == "cluster")
                .expect("a cluster variable");
            assert_eq!(
                cluster_var["definition"],
                format!(r#"label_values(up{{job="{product}"}}, cluster)"#)
            );
            assert_eq!(cluster_var["current"]["value"], CLUSTER);
        }
    }

    #[test]
    fn prometheus_rule_and_config_map_carry_the_same_groups() {
        for cluster in clusters() {
            let view = ClusterView::new(&cluster);
            let rule = prometheus_rule(&view);
            let types = rule.types.clone().expect("types");
            assert_eq!(types.api_version, "monitoring.coreos.com/v1");
            assert_eq!(types.kind, "PrometheusRule");
            assert_eq!(rule.metadata.name.as_deref(), Some("metrics-alerts"));
            assert_eq!(rule.metadata.namespace.as_deref(), Some("obs"));
            assert!(rule.metadata.owner_references.is_some());
            assert_eq!(
                rule.metadata.labels.clone().expect("labels")[labels::COMPONENT],
                "alerts"
            );
            let spec = &rule.data["spec"];
            assert_eq!(spec, &alert_rules(&view));

            let cm = rules_config_map(&view);
            assert_eq!(cm.metadata.name.as_deref(), Some("metrics-alerts"));
            assert_eq!(cm.metadata.labels, rule.metadata.labels);
            let text = &cm.data.as_ref().expect("data")[RULES_FILE];
            let from_yaml: Value = serde_saphyr::from_str(text).expect("rules.yaml is YAML");
            assert_eq!(&from_yaml, spec);

            // Serialised as the API server receives it: kind and spec at the top level.
            let object = serde_json::to_value(&rule).expect("serializes");
            assert_eq!(object["kind"], "PrometheusRule");
            assert!(object["spec"]["groups"][0]["rules"].is_array());
        }
    }
}
