//! The cluster's worker-facing Services: gossip (memberlist) and one per role.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ClusterView;
use super::labels::{self, Component, child_meta, cluster_labels};
use crate::product::{RouteTo, Topology};

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: port.into(),
        target_port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn headless(
    cluster: &ClusterView,
    name: String,
    component: Component,
    selector: std::collections::BTreeMap<String, String>,
    ports: Vec<ServicePort>,
    publish_not_ready: bool,
) -> Service {
    Service {
        metadata: child_meta(
            name,
            &cluster.namespace,
            cluster_labels(cluster.product(), &cluster.name, component),
            cluster.owner.as_ref(),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector),
            ports: Some(ports),
            publish_not_ready_addresses: Some(publish_not_ready),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<c>-gossip`: every worker, ready or not, so memberlist can join through it.
pub fn gossip(cluster: &ClusterView) -> Service {
    let memberlist = cluster.catalogue().ports.memberlist;
    headless(
        cluster,
        cluster.child_name("gossip"),
        Component::Gossip,
        labels::workers_selector(&cluster.name),
        vec![port("memberlist", memberlist)],
        true,
    )
}

/// Whether the cluster gives pods IPv6 addresses only, as the API server shows it in the
/// families it assigned to a single-stack Service of the operator's (the gossip
/// Service): IPv6 first means IPv6 is the pods' primary family, and the products' rings
/// must then be told to register IPv6 addresses (runtime contract).
pub fn ipv6_primary(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .is_some_and(|family| family == "IPv6")
}

/// `<c>-<role>` for every role some pool provides: what the gateway and other workers
/// address a role by.
pub fn roles(cluster: &ClusterView, topology: &Topology) -> Vec<Service> {
    let catalogue = cluster.catalogue();
    topology
        .present_roles()
        .into_iter()
        .map(|role| {
            let mut ports: BTreeSet<(String, u16)> = BTreeSet::from([
                ("http".to_string(), catalogue.ports.http),
                ("grpc".to_string(), catalogue.ports.grpc),
            ]);
            // Ports the gateway forwards to this role on (Tempo's receivers).
            for listener in catalogue.listeners {
                let routed_here = listener
                    .routes
                    .iter()
                    .any(|r| matches!(r.to, RouteTo::Role(to) if to == role));
                if routed_here && !ports.iter().any(|(_, p)| *p == listener.upstream_port) {
                    ports.insert((listener.name.to_string(), listener.upstream_port));
                }
            }
            headless(
                cluster,
                cluster.child_name(role),
                Component::RoleService,
                labels::role_selector(&cluster.name, role),
                ports.iter().map(|(name, p)| port(name, *p)).collect(),
                catalogue.discovered_before_ready.contains(&role),
            )
        })
        .collect()
}
