//! The gateway: nginx (the cluster's single entry point), the nginx exporter and the
//! self-monitoring agent, in one Deployment behind one Service.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EnvVar, ExecAction, KeyToPath, Lifecycle,
    LifecycleHandler, PodSpec, PodTemplateSpec, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{Component, child_meta, cluster_labels, gateway_selector};
use super::nginx::{self, NginxOptions, RUNTIME_DIR, STATUS_PORT, TlsFiles};
use super::pod::{
    EXPORTER_PORT, config_map_volume, container_port, disruption_budget, empty_dir_volume,
    http_probe, mount, restricted_container, restricted_pod, spread_over_zones,
};
use super::tenancy::AuthFiles;
use super::{
    CONFIG_CHECKSUM, CREDENTIALS_CHECKSUM, ClusterView, Settings, agent, checksum, tenancy,
};
use crate::product::{Product, Protocol};

/// UID and GID of the nginx-unprivileged image's nginx user.
const NGINX_USER: i64 = 101;

const CONFIG_DIR: &str = "/etc/lgtm-gateway";
const TLS_DIR: &str = "/etc/lgtm-gateway/tls";
/// Where the auth Secret's files are mounted (multi-tenant clusters).
const AUTH_DIR: &str = "/etc/lgtm-gateway/auth";

/// The gateway's objects.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub config: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub pdb: Option<PodDisruptionBudget>,
}

fn selector(cluster: &ClusterView) -> BTreeMap<String, String> {
    gateway_selector(&cluster.name)
}

/// How nginx is placed in the cluster's gateway pod.
fn nginx_options(cluster: &ClusterView, settings: &Settings, auth: bool) -> NginxOptions {
    let tls = cluster.spec.tls.as_ref().map(|_| TlsFiles {
        certificate: format!("{TLS_DIR}/tls.crt"),
        key: format!("{TLS_DIR}/tls.key"),
    });
    NginxOptions {
        // nginx reads a copy taken when the container starts: it reads its maps once
        // but `auth_basic_user_file` on every request, so reading the mount (which the
        // kubelet updates in place) would pair new passwords with old tenants.
        auth_dir: auth.then(|| format!("{RUNTIME_DIR}/auth")),
        ..NginxOptions::in_cluster(
            &cluster.name,
            &cluster.namespace,
            &settings.cluster_domain,
            tls,
        )
    }
}

/// Builds the gateway for the roles `present`; `auth`: the credentials it checks, for a
/// multi-tenant cluster, and those its agent sends.
pub fn build(
    cluster: &ClusterView,
    present: &BTreeSet<&str>,
    settings: &Settings,
    (auth, agent_credentials): (Option<&AuthFiles>, &agent::Credentials),
) -> Gateway {
    let name = cluster.child_name("gateway");
    let labels = cluster_labels(cluster.product(), &cluster.name, Component::Gateway);
    let meta = || {
        child_meta(
            &name,
            &cluster.namespace,
            labels.clone(),
            cluster.owner.as_ref(),
        )
    };
    // nginx.conf and the start script that writes the files it includes.
    let nginx_options = nginx_options(cluster, settings, auth.is_some());
    let conf = nginx::render(cluster.product(), present, &nginx_options);
    let agent_config = agent::enabled(cluster).then(|| agent::config(cluster, agent_credentials));
    let config_checksum = checksum(
        [
            Some(conf.as_bytes()),
            agent_config.as_deref().map(str::as_bytes),
        ]
        .into_iter()
        .flatten(),
    );
    let agent = agent_config.is_some().then_some(agent_credentials);
    let mut pod = pod_spec(cluster, &name, &nginx_options, agent);
    let mut annotations = BTreeMap::from([(CONFIG_CHECKSUM.to_string(), config_checksum)]);
    if let Some(files) = auth {
        mount_auth(cluster, &mut pod);
        annotations.insert(
            CREDENTIALS_CHECKSUM.to_string(),
            tenancy::auth_checksum(files),
        );
    }
    Gateway {
        config: ConfigMap {
            metadata: meta(),
            data: Some(BTreeMap::from([("nginx.conf".to_string(), conf)])),
            ..ConfigMap::default()
        },
        deployment: deployment(cluster, meta(), &labels, pod, annotations),
        service: service(cluster, meta()),
        pdb: (cluster.spec.gateway.replicas > 1)
            .then(|| disruption_budget(meta(), selector(cluster))),
    }
}

/// The gateway pod: nginx and its exporter, and the agent with its account when
/// self-monitoring is on (without it, the pod gets no API token at all).
fn pod_spec(
    cluster: &ClusterView,
    name: &str,
    nginx_options: &NginxOptions,
    agent: Option<&agent::Credentials>,
) -> PodSpec {
    let (mut volumes, nginx_mounts) = nginx_volumes(cluster, name);
    let mut containers = vec![
        nginx_container(cluster, nginx_options, nginx_mounts),
        exporter_container(cluster),
    ];
    let mut service_account = None;
    if let Some(credentials) = agent {
        let (container, agent_volumes) = agent::container(cluster, credentials);
        containers.push(container);
        volumes.extend(agent_volumes);
        service_account = Some(agent::name(cluster));
    }
    PodSpec {
        automount_service_account_token: Some(service_account.is_some()),
        service_account_name: service_account,
        containers,
        volumes: Some(volumes),
        security_context: Some(restricted_pod(NGINX_USER)),
        topology_spread_constraints: Some(vec![spread_over_zones(selector(cluster))]),
        node_selector: cluster.spec.gateway.node_selector.clone(),
        tolerations: cluster.spec.gateway.tolerations.clone(),
        ..PodSpec::default()
    }
}

/// The pod's volumes and nginx's mounts of them: its configuration, a writable runtime
/// dir, and the TLS Secret when TLS is asked for.
fn nginx_volumes(cluster: &ClusterView, name: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![
        config_map_volume("config", name.to_string()),
        empty_dir_volume("runtime"),
    ];
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("runtime", "/tmp", false),
    ];
    if let Some(tls) = &cluster.spec.tls {
        // Not optional: without the Secret the pod does not start, so the gateway never
        // serves plain HTTP where TLS was asked for.
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("tls", TLS_DIR, true));
    }
    (volumes, mounts)
}

/// nginx, serving every listener of the catalogue and its status on `STATUS_PORT`.
fn nginx_container(
    cluster: &ClusterView,
    options: &NginxOptions,
    mounts: Vec<VolumeMount>,
) -> Container {
    let mut ports: Vec<ContainerPort> = cluster
        .catalogue()
        .listeners
        .iter()
        .map(|l| container_port(l.name, l.port))
        .collect();
    ports.push(container_port("status", STATUS_PORT));
    Container {
        name: "nginx".into(),
        image: Some(cluster.spec.gateway.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-ec".into(),
            nginx_start_script(cluster.product(), options),
        ]),
        env: Some(vec![EnvVar {
            name: "RUNTIME_DIR".into(),
            value: Some(RUNTIME_DIR.into()),
            ..EnvVar::default()
        }]),
        ports: Some(ports),
        readiness_probe: Some(http_probe("/healthz", STATUS_PORT)),
        lifecycle: Some(graceful_stop()),
        resources: cluster.spec.gateway.resources.clone(),
        security_context: Some(restricted_container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Seconds a stopping gateway pod keeps serving while it leaves the Service's endpoints
/// (kube-proxy and load balancers see the change a moment after the API server).
const DRAIN_SECONDS: u32 = 5;

/// Before nginx is stopped: keep serving while the endpoints change, then stop
/// gracefully (`quit` finishes the requests in flight; the SIGTERM that follows would
/// cut them), so that a rollout of the gateway (new credentials) drops no request.
fn graceful_stop() -> Lifecycle {
    let script = format!(
        "sleep {DRAIN_SECONDS}; nginx -c {CONFIG_DIR}/nginx.conf -s quit; \
         while [ -e {RUNTIME_DIR}/nginx.pid ]; do sleep 1; done"
    );
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// The nginx exporter: nginx's status as metrics, for the agent in the same pod.
fn exporter_container(cluster: &ClusterView) -> Container {
    Container {
        name: "exporter".into(),
        image: Some(cluster.spec.gateway.exporter_image.clone()),
        args: Some(vec![
            format!("--nginx.scrape-uri=http://127.0.0.1:{STATUS_PORT}/status"),
            format!("--web.listen-address=:{EXPORTER_PORT}"),
        ]),
        ports: Some(vec![container_port("metrics", EXPORTER_PORT)]),
        security_context: Some(restricted_container()),
        ..Container::default()
    }
}

/// The auth Secret, mounted into nginx. Not optional: without it the pod does not
/// start, so a multi-tenant gateway never serves without credentials.
fn mount_auth(cluster: &ClusterView, pod: &mut PodSpec) {
    pod.volumes.get_or_insert_default().push(Volume {
        name: "auth".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(tenancy::auth_secret_name(&cluster.name)),
            optional: Some(false),
            // The files only: the Secret's key stays out of the gateway.
            items: Some(
                AuthFiles::NAMES
                    .map(|name| KeyToPath {
                        key: name.into(),
                        path: name.into(),
                        mode: None,
                    })
                    .to_vec(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    if let Some(nginx) = pod.containers.first_mut() {
        nginx
            .volume_mounts
            .get_or_insert_default()
            .push(mount("auth", AUTH_DIR, true));
    }
}

/// The gateway Deployment; its pods roll when the configuration's (or the credentials')
/// checksum changes.
fn deployment(
    cluster: &ClusterView,
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
    pod: PodSpec,
    annotations: BTreeMap<String, String>,
) -> Deployment {
    let mut template_labels = labels.clone();
    template_labels.extend(selector(cluster));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(cluster.spec.gateway.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(cluster)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The gateway Service, as the spec asks for it: every listener, gRPC ones marked h2c so
/// that load balancers speak HTTP/2 to them.
fn service(cluster: &ClusterView, mut metadata: ObjectMeta) -> Service {
    let service_spec = &cluster.spec.gateway.service;
    if !service_spec.annotations.is_empty() {
        metadata.annotations = Some(service_spec.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service_spec.type_.as_str().to_string()),
            ip_family_policy: service_spec
                .ip_family_policy
                .map(|policy| policy.as_str().to_string()),
            selector: Some(selector(cluster)),
            ports: Some(
                cluster
                    .catalogue()
                    .listeners
                    .iter()
                    .map(|l| ServicePort {
                        name: Some(l.name.to_string()),
                        port: l.port.into(),
                        target_port: Some(IntOrString::Int(l.port.into())),
                        protocol: Some("TCP".into()),
                        app_protocol: (l.protocol == Protocol::Grpc)
                            .then(|| "kubernetes.io/h2c".to_string()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Writes the files nginx.conf includes from the pod's DNS and address families, then
/// runs nginx in the foreground with the mounted configuration.
fn nginx_start_script(product: Product, options: &NginxOptions) -> String {
    let copy_auth = match &options.auth_dir {
        // From the Secret volume's current data directory, so that the three files are
        // of one version even if the kubelet swaps it meanwhile.
        Some(dir) => format!(
            "mkdir -p {dir}\nauth=$(readlink -f {AUTH_DIR}/..data)\ncp {} {dir}/\n",
            AuthFiles::NAMES
                .map(|name| format!("\"$auth/{name}\""))
                .join(" ")
        ),
        None => String::new(),
    };
    format!(
        "{}{copy_auth}exec nginx -c {CONFIG_DIR}/nginx.conf -g 'daemon off;'",
        nginx::start_script(product, options)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::product::{Product, expand};

    fn gateway(cluster: &crate::api::GrafanaCluster, toggles: &[&str]) -> Gateway {
        let view = ClusterView::new(cluster);
        build(
            &view,
            &expand(view.product(), toggles),
            &Settings::default(),
            (None, &Default::default()),
        )
    }

    /// Annotation `key` of the gateway's pod template.
    fn template_annotation(gateway: &Gateway, key: &str) -> String {
        let spec = gateway.deployment.spec.as_ref().expect("spec");
        let meta = spec.template.metadata.as_ref().expect("meta");
        meta.annotations.as_ref().expect("annotations")[key].clone()
    }

    fn pod(gateway: &Gateway) -> PodSpec {
        gateway
            .deployment
            .spec
            .clone()
            .expect("spec")
            .template
            .spec
            .expect("pod")
    }

    #[test]
    fn a_new_agent_username_rolls_the_gateway_and_its_secret_alone_does_not() {
        let cluster = fixtures::cluster(
            "product: loki\nstorage: {s3: {endpoint: minio:9000, bucket: b, credentialsSecret: {name: s}}}\nselfMonitoring: {metrics: {remoteWriteUrl: 'https://m/api/v1/push', auth: {basicAuth: {secretName: meta}}}}",
        );
        let view = ClusterView::new(&cluster);
        let present = expand(view.product(), &["all"]);
        let checksum = |username: &str, secret: &str| {
            let credentials = agent::Credentials {
                metrics: Some(agent::Credential::Basic {
                    secret: secret.into(),
                    username: username.into(),
                }),
                logs: None,
            };
            let gateway = build(&view, &present, &Settings::default(), (None, &credentials));
            template_annotation(&gateway, CONFIG_CHECKSUM)
        };
        assert_ne!(checksum("agent", "meta"), checksum("agent-2", "meta"));
        // The password is no part of the template: only the Secret's name is, through
        // the volume.
        assert_eq!(checksum("agent", "meta"), checksum("agent", "meta"));
    }

    #[test]
    fn a_multi_tenant_gateway_reads_a_copy_of_its_auth_files_and_rolls_with_them() {
        let cluster = fixtures::minimal_cluster(Product::Loki);
        let view = ClusterView::new(&cluster);
        let files = AuthFiles {
            key: b"k".to_vec(),
            htpasswd: "alice:{SSHA}x\n".into(),
            ..AuthFiles::default()
        };
        let present = expand(Product::Loki, &["all"]);
        let gw = build(
            &view,
            &present,
            &Settings::default(),
            (Some(&files), &Default::default()),
        );
        let pod = pod(&gw);
        let auth = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "auth")
            .and_then(|v| v.secret.clone())
            .expect("the auth Secret's volume");
        assert_eq!(auth.secret_name.as_deref(), Some("metrics-gateway-auth"));
        let nginx = &pod.containers[0];
        let script = &nginx.command.clone().expect("command")[2];
        assert!(
            script.contains("auth=$(readlink -f /etc/lgtm-gateway/auth/..data)\ncp \"$auth/htpasswd\" \"$auth/users.map\" \"$auth/bearer.map\" /tmp/nginx/auth/"),
            "{script}"
        );
        let conf = &gw.config.data.as_ref().expect("data")["nginx.conf"];
        assert!(conf.contains("auth_basic_user_file /tmp/nginx/auth/htpasswd;"));
        let before = template_annotation(&gw, CREDENTIALS_CHECKSUM);
        let rotated = AuthFiles {
            htpasswd: "alice:{SSHA}y\n".into(),
            ..files.clone()
        };
        let gw = build(
            &view,
            &present,
            &Settings::default(),
            (Some(&rotated), &Default::default()),
        );
        let after = template_annotation(&gw, CREDENTIALS_CHECKSUM);
        assert_ne!(before, after, "new credentials roll the gateway");
    }

    #[test]
    fn nginx_and_the_exporter_run_non_root_on_a_read_only_root() {
        let gw = gateway(&fixtures::minimal_cluster(Product::Mimir), &["all"]);
        let pod = pod(&gw);
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["nginx", "exporter"],
            "no agent without a destination"
        );
        for container in &pod.containers {
            let security = container.security_context.clone().expect("security");
            assert_eq!(
                security.read_only_root_filesystem,
                Some(true),
                "{}",
                container.name
            );
            assert_eq!(security.run_as_non_root, Some(true), "{}", container.name);
        }
        let exporter = &pod.containers[1];
        assert!(exporter.args.clone().expect("args").contains(&format!(
            "--nginx.scrape-uri=http://127.0.0.1:{STATUS_PORT}/status"
        )));
        assert_eq!(
            exporter.ports.clone().expect("ports")[0].container_port,
            9113
        );
        let runtime = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "runtime")
            .expect("runtime");
        assert!(
            runtime.empty_dir.is_some(),
            "nginx writes only to an emptyDir"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn a_config_change_changes_the_checksum_annotation() {
        let cluster = fixtures::minimal_cluster(Product::Loki);
        let checksum =
            |toggles: &[&str]| template_annotation(&gateway(&cluster, toggles), CONFIG_CHECKSUM);
        assert_eq!(checksum(&["read"]), checksum(&["read"]));
        assert_ne!(checksum(&["read"]), checksum(&["all"]));
    }

    #[test]
    fn the_service_exposes_every_listener_and_grpc_as_h2c() {
        let gw = gateway(&fixtures::minimal_cluster(Product::Tempo), &["all"]);
        let ports = gw.service.spec.expect("spec").ports.expect("ports");
        let otlp = ports.iter().find(|p| p.port == 4317).expect("4317");
        assert_eq!(otlp.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
        assert_eq!(ports.len(), 7);
    }

    #[test]
    fn the_service_takes_the_ip_family_policy_asked_for() {
        let mut cluster = fixtures::minimal_cluster(Product::Loki);
        let policy = |cluster: &crate::api::GrafanaCluster| {
            gateway(cluster, &["all"])
                .service
                .spec
                .expect("spec")
                .ip_family_policy
        };
        assert_eq!(policy(&cluster), None, "the cluster's default");
        cluster.spec.gateway.service.ip_family_policy =
            Some(crate::api::IpFamilyPolicy::PreferDualStack);
        assert_eq!(policy(&cluster).as_deref(), Some("PreferDualStack"));
    }

    #[test]
    fn nginx_listens_on_ipv6_where_the_pod_has_it() {
        let tls = fixtures::cluster(
            "product: tempo\nstorage: {s3: {endpoint: minio:9000, bucket: b, credentialsSecret: {name: s}}}\ntls: {secretName: gw-tls}",
        );
        let pod = pod(&gateway(&tls, &["all"]));
        let script = &pod.containers[0].command.clone().expect("command")[2];
        assert!(script.contains("/proc/net/if_inet6"), "{script}");
        assert!(
            script.contains("'4317 ssl http2'"),
            "the IPv6 listen keeps the server's parameters: {script}"
        );
        assert!(
            script.ends_with("exec nginx -c /etc/lgtm-gateway/nginx.conf -g 'daemon off;'"),
            "{script}"
        );
    }

    #[test]
    fn two_replicas_get_a_disruption_budget() {
        let mut cluster = fixtures::minimal_cluster(Product::Mimir);
        assert!(gateway(&cluster, &["all"]).pdb.is_none());
        cluster.spec.gateway.replicas = 2;
        assert!(gateway(&cluster, &["all"]).pdb.is_some());
    }

    #[test]
    fn self_monitoring_adds_the_agent_with_its_account() {
        let cluster = fixtures::cluster(
            "product: mimir\nstorage: {s3: {endpoint: minio:9000, bucket: b, credentialsSecret: {name: s}}}\nselfMonitoring: {metrics: {remoteWriteUrl: 'http://prom/api/v1/write'}}",
        );
        let pod = pod(&gateway(&cluster, &["all"]));
        assert!(pod.containers.iter().any(|c| c.name == "agent"));
        assert_eq!(pod.service_account_name.as_deref(), Some("metrics-agent"));
        assert_eq!(pod.automount_service_account_token, Some(true));
    }

    #[test]
    fn the_gateway_goes_where_its_node_selector_and_tolerations_say() {
        let cluster = fixtures::cluster(
            "product: mimir\nstorage: {s3: {endpoint: e, bucket: b, credentialsSecret: {name: s}}}\ngateway:\n  nodeSelector: {edge: \"true\"}\n  tolerations: [{key: edge, operator: Exists, effect: NoSchedule}]\n",
        );
        let pod = gateway(&cluster, &["all"])
            .deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        assert_eq!(pod.node_selector.expect("selector")["edge"], "true");
        assert_eq!(
            pod.tolerations.expect("tolerations")[0].key.as_deref(),
            Some("edge")
        );
    }
}
