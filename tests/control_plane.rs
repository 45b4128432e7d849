//! The test harness's own checks: these tests check the local control plane that the other
//! tests run on (`e2e/cluster.sh`: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok's simulated nodes), not the operator. No operator runs here.
//!
//! They exist because that control plane is compiled from source and has no container
//! runtime, so nothing a real cluster does for the operator's objects can be taken for
//! granted. Each test pins one thing the operator tests (`tests/operator.rs`) and the e2e
//! suite rely on: the API server answers, at the pinned Kubernetes version; the controllers
//! and the scheduler run and kwok makes Pods Ready and binds volumes across zones (the
//! operator's gateway Deployments and pool StatefulSets become ready); the garbage collector
//! follows owner references (deleting a GrafanaCluster removes its children); CRD CEL rules
//! are enforced (the WorkerPool admission tests); RBAC denies a ServiceAccount without
//! rights (the tests of an operator that cannot list); and the one real node (containerd
//! and a kubelet, `e2e/node.sh`) runs a restricted pod that serves on its pod address. When
//! one of these fails, the
//! operator tests' failures say nothing about the operator: fix the harness first.
//!
//! Their names say so: each starts with `control_plane_`. Each test works in a namespace of
//! its own and they run in parallel; the control plane is started by the first test that
//! needs it (`support::client`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{Check, DeleteOnDrop, TestNamespace, kubectl_ok, wait_for};

const WAIT: Duration = Duration::from_secs(120);
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test fixture does not match the API type")
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an error answer from the API server, got {other:?}"),
    }
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn describe_pods(pods: &[Pod]) -> String {
    let items: Vec<String> = pods
        .iter()
        .map(|p| {
            let status = p.status.as_ref();
            format!(
                "{} node={:?} phase={:?} ready={}",
                p.name_any(),
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                status.and_then(|s| s.phase.clone()),
                pod_is_ready(p)
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

async fn node_zones(client: &Client) -> BTreeMap<String, String> {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .into_iter()
        .filter_map(|n| {
            let zone = n.labels().get(ZONE_LABEL).cloned()?;
            Some((n.name_any(), zone))
        })
        .collect()
}

#[tokio::test]
async fn control_plane_api_server_readyz_answers_ok() {
    let _client = support::client().await;

    let readyz = kubectl_ok(["get", "--raw", "/readyz"]).await;
    assert_eq!(readyz.trim(), "ok");

    // The verbose form lists the individual checks: storage (etcd) and RBAC bootstrap among them.
    let verbose = kubectl_ok(["get", "--raw", "/readyz?verbose"]).await;
    for check in [
        "[+]etcd ok",
        "[+]poststarthook/rbac/bootstrap-roles ok",
        "readyz check passed",
    ] {
        assert!(
            verbose.contains(check),
            "/readyz?verbose lacks {check:?}:\n{verbose}"
        );
    }
}

#[tokio::test]
async fn control_plane_runs_the_pinned_kubernetes_version() {
    let client = support::client().await;
    let pinned = support::pinned_go_module_version("kubernetes", "k8s.io/kubernetes");
    let info = client.apiserver_version().await.expect("GET /version");
    assert_eq!(
        info.git_version, pinned,
        "helm and kubectl see this version"
    );
    assert_eq!(
        format!("v{}.{}", info.major, info.minor),
        pinned.rsplit_once('.').expect("vX.Y.Z").0
    );
}

#[tokio::test]
async fn control_plane_makes_a_deployment_of_three_replicas_ready() {
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "deployment").await;
    let deployments = ns.api::<Deployment>();
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");

    let status = wait_for("deployment web to have 3 ready replicas", WAIT, || async {
        let d = deployments.get("web").await?;
        let status = d.status.unwrap_or_default();
        Ok(
            if status.ready_replicas == Some(3) && status.available_replicas == Some(3) {
                Check::Done(status)
            } else {
                Check::Pending(format!("{status:?}"))
            },
        )
    })
    .await;
    assert_eq!(status.replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(pods.items.len(), 3, "pods: {}", describe_pods(&pods.items));
    let zones = node_zones(&client).await;
    for pod in &pods.items {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            zones.contains_key(&node),
            "pod {} is on {node:?}, not a kwok node",
            pod.name_any()
        );
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "pod {}",
            pod.name_any()
        );
        assert!(pod_is_ready(pod), "pod {} is not Ready", pod.name_any());
        let ip = status.pod_ip.as_deref().unwrap_or_default();
        assert!(
            ip.starts_with("10.244."),
            "pod {} has IP {ip:?} outside the pod CIDR",
            pod.name_any()
        );
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn control_plane_makes_a_statefulset_with_volume_claims_ready_across_zones() {
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "statefulset").await;
    let statefulsets = ns.api::<StatefulSet>();
    let sts: StatefulSet = from_json(json!({
        "metadata": {"name": "store"},
        "spec": {
            "replicas": 3,
            "serviceName": "store",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "store"}},
            "template": {
                "metadata": {"labels": {"app": "store"}},
                "spec": {
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": ZONE_LABEL,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "store"}}
                    }],
                    "containers": [{
                        "name": "store",
                        "image": "registry.invalid/store:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            // No storageClassName: the default class (kwok-volume) must be filled in.
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }));
    statefulsets
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");

    let status = wait_for(
        "statefulset store to have 3 ready replicas",
        WAIT,
        || async {
            let s = statefulsets.get("store").await?;
            let status = s.status.unwrap_or_default();
            Ok(if status.ready_replicas == Some(3) {
                Check::Done(status)
            } else {
                Check::Pending(format!("{status:?}"))
            })
        },
    )
    .await;
    assert_eq!(status.replicas, 3);

    let pvcs = ns.api::<PersistentVolumeClaim>();
    let pvs = Api::<PersistentVolume>::all(client.clone());
    for i in 0..3 {
        let name = format!("data-store-{i}");
        let pvc = pvcs
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("get pvc {name}: {e}"));
        let spec = pvc.spec.as_ref().expect("pvc spec");
        assert_eq!(
            spec.storage_class_name.as_deref(),
            Some("kwok-volume"),
            "pvc {name}"
        );
        assert_eq!(
            pvc.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Bound"),
            "pvc {name}"
        );
        let volume = spec
            .volume_name
            .clone()
            .unwrap_or_else(|| panic!("pvc {name} has no volume"));
        let pv = pvs
            .get(&volume)
            .await
            .unwrap_or_else(|e| panic!("get pv {volume}: {e}"));
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .expect("pv claimRef");
        assert_eq!(claim.name.as_deref(), Some(name.as_str()));
        assert_eq!(claim.namespace.as_deref(), Some(ns.name()));
    }

    let zones = node_zones(&client).await;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=store"))
        .await
        .expect("list pods");
    assert_eq!(pods.items.len(), 3, "pods: {}", describe_pods(&pods.items));
    let mut pod_zones = BTreeSet::new();
    for pod in &pods.items {
        assert!(pod_is_ready(pod), "pod {} is not Ready", pod.name_any());
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("pod is scheduled");
        let zone = zones
            .get(&node)
            .unwrap_or_else(|| panic!("node {node} has no {ZONE_LABEL} label"));
        pod_zones.insert(zone.clone());
    }
    let expected: BTreeSet<String> = ["zone-a", "zone-b", "zone-c"].map(String::from).into();
    assert_eq!(
        pod_zones,
        expected,
        "one pod per zone: {}",
        describe_pods(&pods.items)
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn control_plane_garbage_collects_the_dependents_of_a_deleted_owner() {
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "gc").await;
    let configmaps = ns.api::<ConfigMap>();
    let secrets = ns.api::<Secret>();
    let pp = PostParams::default();

    let owner = configmaps
        .create(&pp, &from_json(json!({"metadata": {"name": "owner"}})))
        .await
        .expect("create owner");
    let owner_ref = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().expect("owner uid"),
        ..Default::default()
    };
    let dependent_meta = |name: &str| json!({"name": name, "ownerReferences": [owner_ref]});
    configmaps
        .create(
            &pp,
            &from_json(json!({"metadata": dependent_meta("dependent-config")})),
        )
        .await
        .expect("create dependent configmap");
    secrets
        .create(
            &pp,
            &from_json(json!({"metadata": dependent_meta("dependent-secret")})),
        )
        .await
        .expect("create dependent secret");
    configmaps
        .create(&pp, &from_json(json!({"metadata": {"name": "bystander"}})))
        .await
        .expect("create unrelated configmap");

    configmaps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");

    wait_for(
        "the garbage collector to delete the owner's dependents",
        WAIT,
        || async {
            let config = configmaps.get_opt("dependent-config").await?;
            let secret = secrets.get_opt("dependent-secret").await?;
            Ok(if config.is_none() && secret.is_none() {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "dependent-config exists: {}, dependent-secret exists: {}",
                    config.is_some(),
                    secret.is_some()
                ))
            })
        },
    )
    .await;
    assert!(
        configmaps
            .get_opt("owner")
            .await
            .expect("get owner")
            .is_none()
    );
    assert!(
        configmaps
            .get_opt("bystander")
            .await
            .expect("get bystander")
            .is_some(),
        "an object without owner references must survive"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn control_plane_enforces_a_crd_cel_rule_with_its_message() {
    const MESSAGE: &str = "minReplicas must not exceed replicas";
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "cel").await;
    // A group of its own per run, so parallel runs never share the CRD.
    let group = format!("{}.test.lgtm-operator.dev", support::unique_name("cel"));
    let crd_name = format!("widgets.{group}");
    let _delete_crd = DeleteOnDrop::new("crd", &crd_name);
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": {"name": crd_name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {
                            "replicas": {"type": "integer"},
                            "minReplicas": {"type": "integer"}
                        },
                        "x-kubernetes-validations": [
                            {"rule": "self.minReplicas <= self.replicas", "message": MESSAGE}
                        ]
                    }}
                }}
            }]
        }
    }));
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");

    wait_for("the CRD to be Established", WAIT, || async {
        let crd = crds.get(&crd_name).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(if established {
            Check::Done(())
        } else {
            Check::Pending(format!("conditions: {conditions:?}"))
        })
    })
    .await;

    let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    );
    let widget = |name: &str, replicas: i64, min: i64| -> DynamicObject {
        from_json(json!({
            "apiVersion": format!("{group}/v1"),
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReplicas": min}
        }))
    };

    // A valid object is accepted (retried: the new resource may take a moment to be served).
    let valid = wait_for("a valid Widget to be accepted", WAIT, || async {
        Ok(
            match widgets
                .create(&PostParams::default(), &widget("valid", 3, 1))
                .await
            {
                Ok(created) => Check::Done(created),
                Err(e) => Check::Pending(e.to_string()),
            },
        )
    })
    .await;
    assert_eq!(valid.data["spec"]["minReplicas"], 1);

    let err = widgets
        .create(&PostParams::default(), &widget("invalid", 1, 3))
        .await
        .expect_err("an object breaking the CEL rule must be rejected");
    let status = api_error(err);
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.reason, "Invalid", "{status:?}");
    assert!(
        status.message.contains(MESSAGE),
        "message lacks the rule's message: {}",
        status.message
    );
    assert!(
        widgets
            .get_opt("invalid")
            .await
            .expect("get invalid")
            .is_none()
    );

    ns.cleanup().await;
    crds.delete(&crd_name, &DeleteParams::background())
        .await
        .expect("delete CRD");
}

#[tokio::test]
async fn control_plane_forbids_a_service_account_without_rights() {
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "rbac").await;
    let token = ns.service_account_token("nobody").await;
    let as_sa = support::client_with_token(&token).await;
    let username = format!("system:serviceaccount:{}:nobody", ns.name());

    // The token authenticates: the API server knows who is asking.
    let review = Api::<SelfSubjectReview>::all(as_sa.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview as the service account");
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    assert_eq!(user.username.as_deref(), Some(username.as_str()));

    // ...and is not authorized to read anything in its own namespace.
    let pods_err = api_error(
        Api::<Pod>::namespaced(as_sa.clone(), ns.name())
            .list(&ListParams::default())
            .await
            .expect_err("listing pods must be forbidden"),
    );
    let secrets_err = api_error(
        Api::<Secret>::namespaced(as_sa.clone(), ns.name())
            .list(&ListParams::default())
            .await
            .expect_err("listing secrets must be forbidden"),
    );
    for (resource, status) in [("pods", &pods_err), ("secrets", &secrets_err)] {
        assert_eq!(status.code, 403, "{status:?}");
        assert_eq!(status.reason, "Forbidden", "{status:?}");
        assert!(
            status.message.contains(&username)
                && status
                    .message
                    .contains(&format!("cannot list resource \"{resource}\"")),
            "unexpected message: {}",
            status.message
        );
    }

    // RBAC decides, not a blanket denial: a Role granting pods makes that (and only that) work.
    let role: Role = from_json(json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    }));
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("nobody-reads-pods".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "pod-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "nobody".into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        }]),
    };
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");
    let sa_pods = Api::<Pod>::namespaced(as_sa.clone(), ns.name());
    wait_for(
        "the service account to be allowed to list pods",
        WAIT,
        || async {
            Ok(match sa_pods.list(&ListParams::default()).await {
                Ok(list) => Check::Done(list),
                Err(e) => Check::Pending(e.to_string()),
            })
        },
    )
    .await;
    let still = api_error(
        Api::<Secret>::namespaced(as_sa, ns.name())
            .list(&ListParams::default())
            .await
            .expect_err("secrets must stay forbidden"),
    );
    assert_eq!(still.code, 403, "{still:?}");

    ns.cleanup().await;
}

/// The real node (e2e/node.sh) runs what a restricted pod needs: a non-root user, a
/// read-only root filesystem with an emptyDir, a readiness probe by HTTP, and an address
/// on the node's bridge that this process reaches. Only pods that tolerate the node's taint
/// and select its label land there.
#[tokio::test]
async fn control_plane_runs_a_restricted_pod_on_the_real_node() {
    let client = support::client().await;
    let ns = TestNamespace::new(&client, "real-node").await;
    let image = std::process::Command::new(support::repo_root().join("e2e/images.sh"))
        .args(["ref", "busybox"])
        .output()
        .expect("e2e/images.sh runs");
    let image = String::from_utf8(image.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let pod: Pod = from_json(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "nodeSelector": {"lgtm.coordinated.dev/real-node": "true"},
            "tolerations": [{"key": "lgtm.coordinated.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "automountServiceAccountToken": false,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true},
            "containers": [{
                "name": "web",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", "echo \"served by $(hostname)\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
                "securityContext": {
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                },
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
            }],
            "volumes": [{"name": "www", "emptyDir": {}}]
        }
    }));
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create the pod");
    let pod = wait_for("the pod Ready on the real node", WAIT, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("web").await?;
            Ok(if pod_is_ready(&pod) {
                Check::Done(pod)
            } else {
                Check::Pending(format!("{:?}", pod.status))
            })
        }
    })
    .await;
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("real-node"));
    let ip = pod.status.and_then(|s| s.pod_ip).expect("a pod IP");
    // The kubelet's probe passed; this process reaches the pod on its bridge address too.
    let reply = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{ip}:8080/index.html"))
        .output()
        .await
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&reply.stdout).trim(),
        "served by web",
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    // And the API server reaches the kubelet (logs, as `kubectl logs` asks for them).
    let logs = kubectl_ok(["logs", "-n", ns.name(), "web"]).await;
    assert!(!logs.contains("Error"), "{logs}");

    // Cluster DNS (CoreDNS on the node): from inside the pod, a headless Service's name
    // gives the pod's address, as the gateway's resolver needs for role Services.
    let service: k8s_openapi::api::core::v1::Service = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}
    }));
    ns.api::<k8s_openapi::api::core::v1::Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create the Service");
    let name = format!("web.{}.svc.cluster.local", ns.name());
    let namespace = ns.name().to_string();
    wait_for("the Service's name to resolve inside the pod", WAIT, || {
        let (name, namespace, ip) = (name.clone(), namespace.clone(), ip.clone());
        async move {
            let out = tokio::process::Command::new("kubectl")
                .args(["--kubeconfig"])
                .arg(support::kubeconfig_path())
                .args(["exec", "-n", &namespace, "web", "--", "nslookup", &name])
                .output()
                .await
                .expect("kubectl runs");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            Ok(if text.contains(&ip) {
                Check::Done(())
            } else {
                Check::Pending(text)
            })
        }
    })
    .await;
}
