//! Tenants on the local control plane (ADR 15): a multi-tenant cluster's gateway gets an
//! auth Secret and rolls onto it, each Tenant reports whether the gateway serves its
//! credentials, limits change without touching any pod template, no credential shows
//! anywhere but the auth Secret, and switching back to single-tenant removes it.

mod support;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use lgtm_operator::api::{GrafanaCluster, Tenant};
use support::{CREDENTIALS, Check, OperatorNamespace, TIMEOUT, cluster_yaml, pool_yaml};

const PASSWORD: &str = "s3cr3t-Pa55word-never-shown";
const NEW_PASSWORD: &str = "r0tated-Pa55word-never-shown";
const TOKEN: &str = "5f0c8a1e2b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e";

/// A basic-auth Secret `name` for `tenant` (annotated for it, as a Tenant requires).
fn basic_auth_secret(name: &str, tenant: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, annotations: {{lgtm.coordinated.dev/tenant: {tenant}}}}}\ntype: kubernetes.io/basic-auth\nstringData: {{username: alice, password: '{password}'}}\n"
    )
}

fn tenant_yaml(limits: &str) -> String {
    format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: team-a}}\nspec:\n  clusterRef: logs\n  credentials:\n  - basicAuth: {{secretName: alice}}\n  - bearerToken: {{secretName: team-a-token}}\n    scopes: [read]\n  limits: {limits}\n"
    )
}

/// The gateway template's credentials checksum and generation.
async fn gateway_template(env: &OperatorNamespace) -> (Option<String>, i64) {
    let gateway: Deployment = env.get("logs-gateway").await;
    let checksum = gateway
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("checksum.lgtm.coordinated.dev/credentials").cloned());
    (checksum, gateway.metadata.generation.unwrap_or_default())
}

/// Each StatefulSet's name, generation and pod template.
async fn worker_templates(env: &OperatorNamespace) -> Vec<(String, Option<i64>, String)> {
    let sets = env.api::<StatefulSet>().list(&Default::default()).await;
    sets.expect("list")
        .items
        .iter()
        .map(|s| {
            let template = s.spec.as_ref().map(|s| &s.template);
            let template = serde_json::to_string(&template).expect("json");
            (s.name_any(), s.metadata.generation, template)
        })
        .collect()
}

async fn tenant_live(env: &OperatorNamespace) -> Tenant {
    env.wait_condition::<Tenant>("team-a", "Ready", "CredentialsLive", |c| {
        c.reason == "CredentialsLive"
    })
    .await
    .0
}

/// Everything a user can read of the namespace but its Secrets.
async fn visible(env: &OperatorNamespace) -> String {
    let mut text = String::new();
    for kind in [
        "configmaps",
        "deployments",
        "statefulsets",
        "pods",
        "events",
        "grafanaclusters",
        "workerpools",
        "tenants",
    ] {
        let out = support::kubectl(["get", kind, "-n", env.name(), "-o", "yaml"])
            .await
            .expect("kubectl runs");
        assert!(out.success, "{}", out.stderr);
        text.push_str(&out.stdout);
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_tenant_cluster_serves_its_tenants_and_changes_limits_without_rolling_a_pod() {
    let env = OperatorNamespace::start("tenants").await;
    env.apply(CREDENTIALS).await;
    env.apply(&basic_auth_secret("alice", "team-a", PASSWORD))
        .await;
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: team-a-token, annotations: {{lgtm.coordinated.dev/tenant: team-a}}}}\nstringData: {{token: {TOKEN}}}\n"
    ))
    .await;
    // Single-tenant first: the Tenant's limits apply, its credentials wait.
    env.apply(&cluster_yaml("logs", "loki", "")).await;
    env.apply(&pool_yaml("logs-all", "logs", 1, "{loki: {all: true}}"))
        .await;
    env.apply(&tenant_yaml("{ingestionRate: 4194304, retention: 30d}"))
        .await;
    env.wait_condition::<Tenant>("team-a", "Ready", "SingleTenantCluster", |c| {
        c.reason == "SingleTenantCluster"
    })
    .await;
    env.pool_condition("logs-all", "Ready", "True").await;
    let single_tenant = worker_templates(&env).await;
    assert!(!env.exists::<Secret>("logs-gateway-auth").await);

    // Switched: the workers roll onto multi-tenancy, the gateway onto the credentials.
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"tenancy":{"mode":"MultiTenant"}}}"#,
    )
    .await;

    // The gateway runs the Tenant's credentials, from a Secret it mounts.
    let tenant = tenant_live(&env).await;
    let status = tenant.status.expect("status");
    assert_eq!(
        (status.tenant_id.as_str(), status.served_credentials),
        ("team-a", 2)
    );
    let auth: Secret = env.get("logs-gateway-auth").await;
    let data = auth.data.expect("auth files");
    let users = String::from_utf8(data["users.map"].0.clone()).expect("utf-8");
    assert_eq!(users, "\"user:alice\" \"team-a read+write\";\n");
    assert!(!String::from_utf8_lossy(&data["htpasswd"].0).contains(PASSWORD));
    let gateway: Deployment = env.get("logs-gateway").await;
    let pod = gateway.spec.expect("spec").template.spec.expect("pod");
    assert!(pod.volumes.iter().flatten().any(|v| {
        v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("logs-gateway-auth")
    }));
    let config: ConfigMap = env.get("logs-config").await;
    let config = &config.data.expect("data")["config.yaml"];
    assert!(config.contains("auth_enabled: true"), "{config}");
    assert!(config.contains("file: /etc/lgtm-overrides/overrides.yaml"));
    assert!(
        config.contains("retention_enabled: true"),
        "a tenant's retention needs it"
    );
    support::wait_for(
        "the workers rolling onto multi-tenancy",
        TIMEOUT,
        || async {
            let now = worker_templates(&env).await;
            Ok(if now != single_tenant {
                Check::Done(())
            } else {
                Check::Pending("the single-tenant template".into())
            })
        },
    )
    .await;

    // New limits reach the overrides file, and nothing that runs changes.
    let before = worker_templates(&env).await;
    let gateway_before = gateway_template(&env).await;
    env.apply(&tenant_yaml(
        "{ingestionRate: 8388608, maxActive: 20000, retention: 30d}",
    ))
    .await;
    env.wait_until(
        "logs-overrides",
        "the new limits in the overrides file",
        |c: ConfigMap| {
            let text = c
                .data
                .unwrap_or_default()
                .remove("overrides.yaml")
                .unwrap_or_default();
            if text.contains("ingestion_rate_mb: 8")
                && text.contains("max_global_streams_per_user: 20000")
            {
                Check::Done(())
            } else {
                Check::Pending(text)
            }
        },
    )
    .await;
    tenant_live(&env).await;
    let after = worker_templates(&env).await;
    assert_eq!(before, after, "a limit change rolled a worker");
    assert_eq!(
        gateway_template(&env).await,
        gateway_before,
        "a limit change rolled the gateway"
    );

    // A rotated password rolls the gateway, and the Tenant says when it is live.
    env.apply(&basic_auth_secret("alice", "team-a", NEW_PASSWORD))
        .await;
    env.wait_until(
        "logs-gateway",
        "the gateway rolling onto the new password",
        |d: Deployment| {
            let checksum = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("checksum.lgtm.coordinated.dev/credentials").cloned());
            if checksum != gateway_before.0 {
                Check::Done(())
            } else {
                Check::Pending("same credentials".into())
            }
        },
    )
    .await;
    tenant_live(&env).await;

    // No credential anywhere a user, an Event or a log shows.
    let seen = visible(&env).await;
    for secret in [PASSWORD, NEW_PASSWORD, TOKEN] {
        assert!(
            !seen.contains(secret),
            "a credential shows outside the Secrets"
        );
    }

    // Back to single-tenant: the auth Secret goes, and the Tenant says why it is idle.
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"tenancy":{"mode":"SingleTenant"}}}"#,
    )
    .await;
    env.wait_condition::<Tenant>("team-a", "Ready", "SingleTenantCluster", |c| {
        c.reason == "SingleTenantCluster"
    })
    .await;
    env.gone::<Secret>("logs-gateway-auth").await;
    let cluster: GrafanaCluster = env.get("logs").await;
    assert!(cluster.status.is_some());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_contested_credential_is_reported_and_the_good_ones_stay() {
    let env = OperatorNamespace::start("tenants-bad").await;
    env.apply(CREDENTIALS).await;
    env.apply(&basic_auth_secret("alice", "first", PASSWORD))
        .await;
    env.apply(&basic_auth_secret("alice-again", "second", NEW_PASSWORD))
        .await;
    env.apply(&cluster_yaml(
        "logs",
        "loki",
        "  tenancy: {mode: MultiTenant}\n",
    ))
    .await;
    env.apply(&pool_yaml("logs-all", "logs", 1, "{loki: {all: true}}"))
        .await;
    env.apply(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: first}\nspec:\n  clusterRef: logs\n  credentials:\n  - basicAuth: {secretName: alice}\n",
    )
    .await;
    env.wait_condition::<Tenant>("first", "Ready", "CredentialsLive", |c| {
        c.reason == "CredentialsLive"
    })
    .await;
    env.apply(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: second}\nspec:\n  clusterRef: logs\n  credentials:\n  - basicAuth: {secretName: alice-again}\n  - bearerToken: {secretName: missing}\n  - basicAuth: {secretName: alice}\n",
    )
    .await;
    let (_, ready) = env
        .wait_condition::<Tenant>("second", "Ready", "DuplicateCredential", |c| {
            c.reason == "DuplicateCredential"
        })
        .await;
    assert_eq!(
        ready.message,
        "credentials[0]: this username already belongs to an older Tenant of this cluster; credentials[1]: Secret missing not found, or not annotated lgtm.coordinated.dev/tenant: second; credentials[2]: Secret alice not found, or not annotated lgtm.coordinated.dev/tenant: second"
    );
    // The older Tenant keeps its credential.
    env.wait_condition::<Tenant>("first", "Ready", "CredentialsLive", |c| {
        c.reason == "CredentialsLive"
    })
    .await;
    // Admission refuses what the gateway could not use.
    let out = env
        .try_apply(
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: bad-id}\nspec:\n  clusterRef: logs\n  id: 'a|b'\n",
        )
        .await;
    assert!(
        !out.success && out.stderr.contains("spec.id"),
        "{}",
        out.stderr
    );
    let out = env
        .try_apply(
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: both}\nspec:\n  clusterRef: logs\n  credentials:\n  - basicAuth: {secretName: a}\n    bearerToken: {secretName: b}\n",
        )
        .await;
    assert!(
        !out.success && out.stderr.contains("either basicAuth or bearerToken"),
        "{}",
        out.stderr
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_cluster_does_not_exist_says_so_until_it_does() {
    let env = OperatorNamespace::start("tenants-orphan").await;
    env.apply(&tenant_yaml("{ingestionRate: 4194304}")).await;
    let not_found = |c: &Condition| c.reason == "ClusterNotFound";
    let (tenant, ready) = env
        .wait_condition::<Tenant>("team-a", "Ready", "ClusterNotFound", not_found)
        .await;
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message,
        format!(
            "GrafanaCluster \"logs\" does not exist in namespace {}: create it, or recreate this Tenant with the right clusterRef",
            env.name()
        )
    );
    let status = tenant.status.expect("status");
    assert_eq!(
        (status.tenant_id.as_str(), status.served_credentials),
        ("team-a", 0)
    );

    // The cluster appears: it reports on its Tenant, whose Secrets do not exist.
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml("logs", "loki", "")).await;
    env.wait_condition::<Tenant>("team-a", "Ready", "SecretNotFound", |c| {
        c.reason == "SecretNotFound"
    })
    .await;

    // The cluster goes: the Tenant says so again.
    env.api::<GrafanaCluster>()
        .delete("logs", &Default::default())
        .await
        .expect("delete the cluster");
    env.wait_condition::<Tenant>("team-a", "Ready", "ClusterNotFound", not_found)
        .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sends_a_credential_from_a_secret_and_a_rotated_password_rolls_nothing() {
    let env = OperatorNamespace::start("agent-auth").await;
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml(
        "logs",
        "loki",
        "  selfMonitoring:\n    metrics:\n      remoteWriteUrl: http://metrics-gateway.obs.svc:8080/api/v1/push\n      auth: {basicAuth: {secretName: meta}}\n",
    ))
    .await;
    env.apply(&pool_yaml("logs-all", "logs", 1, "{loki: {all: true}}"))
        .await;
    let missing = |c: &Condition| c.reason == "SecretNotFound";
    let (_, ready) = env
        .wait_condition::<GrafanaCluster>("logs", "SelfMonitoringReady", "SecretNotFound", missing)
        .await;
    assert_eq!(
        ready.message,
        "selfMonitoring.metrics.auth: Secret \"meta\" does not exist: create it in this namespace; that destination refuses the agent meanwhile"
    );

    env.apply(&basic_auth_secret("meta", "meta", PASSWORD))
        .await;
    env.wait_condition::<GrafanaCluster>("logs", "SelfMonitoringReady", "SecretFound", |c| {
        c.reason == "SecretFound" && c.status == "True"
    })
    .await;
    // The username is in the agent's configuration; the password only in a file it
    // reads on each request, mounted from the Secret.
    let config: ConfigMap = env.get("logs-agent").await;
    let alloy = config
        .data
        .and_then(|d| d.get("config.alloy").cloned())
        .expect("config");
    assert!(
        alloy.contains("username      = \"alice\"")
            && alloy.contains("password_file = \"/etc/alloy/auth/metrics/password\""),
        "{alloy}"
    );
    let (_, generation) = gateway_template(&env).await;
    let gateway: Deployment = env.get("logs-gateway").await;
    let volumes = gateway
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.volumes)
        .unwrap_or_default();
    let auth = volumes
        .iter()
        .find(|v| v.name == "agent-auth-metrics")
        .and_then(|v| v.secret.as_ref())
        .expect("the credential's volume");
    assert_eq!(auth.secret_name.as_deref(), Some("meta"));

    // A rotated password changes nothing the operator writes: the agent reads the file.
    // A spec change the gateway does not read follows it, so that the reconcile it waits
    // for has read the rotated Secret.
    env.apply(&basic_auth_secret("meta", "meta", NEW_PASSWORD))
        .await;
    env.merge_patch("grafanacluster", "logs", r#"{"spec":{"retention":"30d"}}"#)
        .await;
    env.wait_until(
        "logs",
        "the retention change observed",
        |c: GrafanaCluster| {
            let observed = c.status.and_then(|s| s.observed_generation);
            match observed == c.metadata.generation {
                true => Check::Done(()),
                false => Check::Pending(format!("observed {observed:?}")),
            }
        },
    )
    .await;
    assert_eq!(gateway_template(&env).await.1, generation);
    let text = visible(&env).await;
    for secret in [PASSWORD, NEW_PASSWORD] {
        assert!(!text.contains(secret), "a password is visible");
    }
    env.finish().await;
}
