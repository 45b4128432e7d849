//! Pieces every pod the operator runs is built from: the gateway's, whose agent is a
//! sidecar of it, and the workers'. Kept apart so that those builders share them
//! without depending on each other, and so that every pod is locked down alike.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    PodSecurityContext, Probe, SeccompProfile, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Port of the nginx-prometheus-exporter sidecar of the gateway pod. A fact of the pod,
/// not of one container: the exporter listens on it and the agent, in the same pod,
/// scrapes it over localhost.
pub const EXPORTER_PORT: u16 = 9113;

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

pub fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub fn http_probe(path: &str, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// A volume of the ConfigMap `config_map`, named `name` in the pod.
pub fn config_map_volume(name: &str, config_map: String) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Scratch space: the only writable place besides the data volume, since every root
/// filesystem is read-only.
pub fn empty_dir_volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// Non-root, no privilege escalation, no capabilities, read-only root filesystem.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Runs the pod as the image's own non-root `user` (also its group and the volumes'
/// group, so that it can write them), under the runtime's default seccomp profile.
pub fn restricted_pod(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Prefer spreading replicas over zones; never block scheduling for it.
pub fn spread_over_zones(selector: BTreeMap<String, String>) -> TopologySpreadConstraint {
    spread_over(super::zones::TOPOLOGY_ZONE, selector)
}

/// Prefer spreading replicas over the values of a node label; never block scheduling
/// for it.
pub fn spread_over(
    topology_key: &str,
    selector: BTreeMap<String, String>,
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: topology_key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }
}

/// Lets voluntary disruptions (drains, upgrades) take one of the selected pods at a
/// time, so replicas never all leave together.
pub fn disruption_budget(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
