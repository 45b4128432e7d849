//! Every sample, run for real on the real node (e2e/node.sh): the operator renders the
//! gateway and the workers, the gateway is Debian's nginx, and each worker is the
//! contract worker (src/bin/contract-worker.rs), which plays the product's run-time
//! contract: it parses the rendered config, writes where the product writes, exits where
//! the product would, and answers every path with its pod name and roles. Requests go
//! to the gateway's Service through kube-proxy, and reach workers through CoreDNS.
//!
//! What stays simulated: the agent (its image is not built here) runs on the kwok nodes.

#[path = "shared/routes.rs"]
mod routes;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use lgtm_operator::product::{Handling, Product, Protocol, RouteTo};
use routes::sample_path;
use serde_json::Value;
use support::real_node::{
    apply_on_real_node, contract_worker_image, describe_pods, from_yaml, onto_real_node,
    pool_ready, sample_documents, to_yaml,
};
use support::{Check, OperatorNamespace, TIMEOUT, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What answered one request: the contract worker's identity line, parsed.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    pod: String,
    roles: BTreeSet<String>,
    /// The request line as it reached the worker (`GET /path`).
    request: String,
    body: String,
}

fn parse_answer(status: u16, body: &str) -> Answer {
    let field = |name: &str| {
        body.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let request = body
        .split_once("request=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(r, _)| r.to_string())
        .unwrap_or_default();
    Answer {
        status,
        pod: field("pod"),
        roles: field("roles").split(',').map(str::to_string).collect(),
        request,
        body: body.to_string(),
    }
}

/// `GET http://address/path` (the gateway's Service, through kube-proxy), as the worker
/// that answered.
async fn get(address: &str, path: &str) -> Answer {
    let (status, body) = curl(&format!("http://{address}{path}"), &[]).await;
    parse_answer(status, &body)
}

/// A websocket upgrade of `path` (Loki's tail): the worker sends its identity as the
/// first message.
async fn websocket(address: &str, path: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the gateway");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains("request=\"") {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&seen).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let message = text
        .find("contract-worker")
        .map(|at| &text[at..])
        .unwrap_or(&text);
    parse_answer(status, message)
}

/// A gRPC call through the gateway: the contract worker refuses it as UNIMPLEMENTED with
/// its identity as the message, which shows where the gateway sent it.
async fn grpc(address: &str) -> Answer {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let call = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .expect("address")
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            parse_answer(200, status.message())
        }
        other => parse_answer(0, &format!("{other:?}")),
    }
}

/// Where the gateway must send a route: its role, or the first of its candidates that
/// some pool of the cluster provides.
fn expected_role(to: RouteTo, present: &BTreeSet<String>) -> Option<String> {
    match to {
        RouteTo::Role(role) => Some(role.to_string()),
        RouteTo::FirstPresent(roles) => roles
            .iter()
            .find(|r| present.contains(**r))
            .map(|r| r.to_string()),
    }
}

/// Applies sample `file` onto the real node, with `product`'s contract worker as the
/// workers' image, and waits until every pool's pods are Ready by their real probes.
async fn sample_on_real_node(env: &OperatorNamespace, file: &str, product: Product) {
    let docs = sample_documents("s3-credentials.yaml")
        .into_iter()
        .chain(sample_documents(file))
        .collect();
    apply_on_real_node(env, docs, product).await;
}

/// Every worker pod of the namespace runs on the real node and has never restarted.
async fn assert_workers_started_once(env: &OperatorNamespace) {
    let pods = env
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/component=worker"))
        .await
        .expect("list workers");
    assert!(!pods.items.is_empty(), "no worker pods");
    for pod in &pods.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
        assert!(
            node == Some("real-node") && restarts == 0,
            "every worker starts once on the real node: {}",
            describe_pods(&pods.items)
        );
    }
}

/// Waits until every Service of the namespace lists, in its EndpointSlices, each Ready
/// pod it selects: the gateway finds workers through those (DNS, kube-proxy), and
/// kube-controller-manager publishes them some time after the pods are Ready.
async fn endpoints_published(env: &OperatorNamespace) {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    wait_for(
        "every Service's Ready pods in its EndpointSlices",
        TIMEOUT,
        || async {
            let services = env
                .api::<Service>()
                .list(&ListParams::default())
                .await?
                .items;
            let mut missing = vec![];
            for service in services {
                let name = service.metadata.name.clone().unwrap_or_default();
                let Some(selector) = service.spec.and_then(|s| s.selector) else {
                    continue;
                };
                let selector = selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let ready_pods = env
                    .api::<Pod>()
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .flatten()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
                    .count();
                let published: usize = env
                    .api::<EndpointSlice>()
                    .list(
                        &ListParams::default()
                            .labels(&format!("kubernetes.io/service-name={name}")),
                    )
                    .await?
                    .items
                    .iter()
                    .flat_map(|slice| slice.endpoints.iter())
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .count();
                if published < ready_pods {
                    missing.push(format!("{name}: {published} of {ready_pods}"));
                }
            }
            Ok(if missing.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(missing.join(", "))
            })
        },
    )
    .await;
}

/// The cluster's gateway Service address (ClusterIP) and the roles its pools provide.
async fn gateway_and_roles(env: &OperatorNamespace, cluster: &str) -> (String, BTreeSet<String>) {
    let status = env
        .cluster_condition(cluster, "Available", "True")
        .await
        .status
        .expect("status");
    let present = status
        .roles
        .iter()
        .filter(|r| !r.pools.is_empty())
        .map(|r| r.name.clone())
        .collect();
    support::real_node::rolled_out(env, &format!("{cluster}-gateway")).await;
    endpoints_published(env).await;
    let service: Service = env.get(&format!("{cluster}-gateway")).await;
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("the gateway Service has a ClusterIP");
    (ip, present)
}

/// Sends a request for every route of the product's gateway to its Service, and returns
/// one line per request that did not reach a worker of the right role; also the pods
/// that answered, per role.
async fn route_failures(
    product: Product,
    ip: &str,
    present: &BTreeSet<String>,
) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut failures = Vec::new();
    let mut answered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for listener in product.catalogue().listeners {
        let address = format!("{ip}:{}", listener.port);
        for route in listener.routes {
            let Some(role) = expected_role(route.to, present) else {
                continue;
            };
            let path = sample_path(route.location);
            // A Service's rules reach kube-proxy after its pods are Ready (EndpointSlice,
            // then an iptables sync), later still under the test suite's own load: an
            // answer that reached no worker (502, or no connection) is asked again for a
            // while. An answer from a worker of the wrong role is never retried.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let answer = loop {
                let answer = match (listener.protocol, route.handling) {
                    (Protocol::Grpc, _) => grpc(&address).await,
                    (_, Handling::WebSocket) => websocket(&address, &path).await,
                    _ => get(&address, &path).await,
                };
                let unreached =
                    matches!(answer.status, 0 | 502 | 503 | 504) && answer.roles.is_empty();
                if !unreached || tokio::time::Instant::now() >= deadline {
                    break answer;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let arrives_as = match route.handling {
                Handling::RewriteTo(to) => to.to_string(),
                _ => path.clone(),
            };
            let what = format!("{:?} {} on :{}", listener.protocol, path, listener.port);
            let ok_status = matches!(answer.status, 200 | 101);
            let path_ok = listener.protocol == Protocol::Grpc
                || answer.request.split_whitespace().nth(1) == Some(arrives_as.as_str());
            if !ok_status || !answer.roles.contains(&role) || !path_ok {
                failures.push(format!(
                    "{what}: expected a {role} worker seeing {arrives_as}, got {} {:?}",
                    answer.status, answer.body
                ));
            } else {
                answered.entry(role).or_default().insert(answer.pod);
            }
        }
    }
    (failures, answered)
}

async fn sample_runs_for_real(file: &str, product: Product, cluster: &str) {
    let env = OperatorNamespace::start(&format!("real-{product}")).await;
    sample_on_real_node(&env, file, product).await;
    let (ip, present) = gateway_and_roles(&env, cluster).await;
    assert_workers_started_once(&env).await;
    let (failures, answered) = route_failures(product, &ip, &present).await;
    assert!(
        failures.is_empty(),
        "requests through the gateway Service that missed their role:\n{}",
        failures.join("\n")
    );
    // Every role a route names answered, from pods of that role (a summary for the log).
    assert!(!answered.is_empty(), "no route was exercised");
    for (role, pods) in &answered {
        eprintln!("{product}: {role} answered from {pods:?}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_sample_runs_for_real_and_the_gateway_routes_every_path() {
    sample_runs_for_real("loki-monolithic.yaml", Product::Loki, "logs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mimir_sample_runs_for_real_and_the_gateway_routes_every_path() {
    sample_runs_for_real("mimir-read-write-backend.yaml", Product::Mimir, "metrics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tempo_sample_runs_for_real_and_the_gateway_routes_every_path() {
    sample_runs_for_real("tempo-microservices.yaml", Product::Tempo, "traces").await;
}

/// The runtime-contract fix, shown on a real container: a Mimir worker rendered as before
/// it (no `activity_tracker.filepath`, so the product's default `./metrics-activity.log`
/// under the image's read-only `/`) exits at start and crash-loops, as Mimir 2.17 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimir_rendered_without_an_activity_file_would_crash_loop() {
    let env = OperatorNamespace::start("real-mimir-old").await;
    let image = contract_worker_image(Product::Mimir).await;
    let docs: Vec<Value> = sample_documents("s3-credentials.yaml")
        .into_iter()
        .chain([
            serde_json::json!({
                "apiVersion": "lgtm.coordinated.dev/v1alpha1", "kind": "GrafanaCluster",
                "metadata": {"name": "old"},
                "spec": {"product": "mimir",
                    "storage": {"probe": false,
                        "s3": {"endpoint": "minio.minio.svc:9000", "bucket": "mimir",
                        "credentialsSecret": {"name": "s3-credentials"}}},
                    // What the rendering before the contract fix left to Mimir's default.
                    "configOverrides": {"activity_tracker": {"filepath": "./metrics-activity.log"}}}
            }),
            serde_json::json!({
                "apiVersion": "lgtm.coordinated.dev/v1alpha1", "kind": "WorkerPool",
                "metadata": {"name": "old-all"},
                "spec": {"clusterRef": "old", "replicas": 1, "roles": {"mimir": {"all": true}}}
            }),
        ])
        .map(|doc| onto_real_node(doc, &image))
        .collect();
    env.apply(&to_yaml(&docs)).await;
    let message = wait_for("the old rendering to crash-loop", TIMEOUT, || async {
        let pod: Pod = env.api::<Pod>().get("old-all-0").await?;
        let last = pod
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().next())
            .filter(|c| c.restart_count >= 1)
            .and_then(|c| c.last_state)
            .and_then(|s| s.terminated);
        Ok(match last {
            Some(t) if t.exit_code == 1 => Check::Done(t.message.unwrap_or_default()),
            other => Check::Pending(format!("{other:?}")),
        })
    })
    .await;
    assert!(
        message.contains("activity_tracker.filepath=./metrics-activity.log")
            && message.contains("Read-only file system"),
        "the worker names the key and the read-only root: {message}"
    );
    env.finish().await;
}

/// The gateway's pod: its uid and restarts, to show that scaling never restarts it.
async fn gateway_pod(env: &OperatorNamespace) -> (String, i32) {
    let pods = env
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/component=gateway"))
        .await
        .expect("list gateway pods");
    let pod = pods.items.first().expect("a gateway pod");
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
    (pod.metadata.uid.clone().unwrap_or_default(), restarts)
}

/// Sends requests for `path` until `done` says the pods seen answer as wanted; returns
/// when each request was sent (since `start`) with the pod that answered ("" for a
/// failure), and how many failed.
async fn requests_until(
    address: &str,
    path: &str,
    what: &str,
    start: Instant,
    done: impl Fn(&[String]) -> bool,
) -> (Vec<(Duration, String)>, usize) {
    // (the pod that answered each request, "" for a failure; failures)
    let seen = std::sync::Mutex::new((Vec::<String>::new(), 0usize, Vec::<Duration>::new()));
    wait_for(what, TIMEOUT, || {
        let (seen, done) = (&seen, &done);
        async move {
            let sent = start.elapsed();
            let answer = get(address, path).await;
            let mut seen = seen.lock().expect("not poisoned");
            seen.2.push(sent);
            let pod = if answer.status == 200 {
                answer.pod
            } else {
                seen.1 += 1;
                eprintln!(
                    "{what}: request failed: {} {:?}",
                    answer.status, answer.body
                );
                String::new()
            };
            seen.0.push(pod);
            let last = &seen.0[seen.0.len().saturating_sub(6)..];
            Ok(if done(&seen.0) {
                Check::Done(())
            } else {
                Check::Pending(format!("last answers: {last:?}"))
            })
        }
    })
    .await;
    let seen = seen.into_inner().expect("not poisoned");
    (seen.2.into_iter().zip(seen.0).collect(), seen.1)
}

/// Scaling a pool 1→3→1 on the real node: the gateway spreads requests over the new
/// pods and stops sending to the removed ones, through DNS alone, without a restart.
/// Prints how long each switch took (a figure, not an assertion: e2e/README.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_pool_moves_the_gateway_traffic_without_a_restart() {
    let env = OperatorNamespace::start("real-scale").await;
    let yaml = [
        support::CREDENTIALS.to_string(),
        support::cluster_yaml("logs", "loki", ""),
        support::pool_yaml("logs-read", "logs", 1, "{loki: {read: true}}"),
        support::pool_yaml("logs-write", "logs", 1, "{loki: {write: true}}"),
        support::pool_yaml("logs-backend", "logs", 1, "{loki: {backend: true}}"),
    ];
    let docs = yaml.iter().map(|y| from_yaml(y)).collect();
    apply_on_real_node(&env, docs, Product::Loki).await;
    let (ip, _) = gateway_and_roles(&env, "logs").await;
    let address = format!("{ip}:3100");
    let path = "/loki/api/v1/query_range";
    let before = gateway_pod(&env).await;

    env.merge_patch("workerpool", "logs-read", r#"{"spec":{"replicas":3}}"#)
        .await;
    let start = Instant::now();
    pool_ready(&env, "logs-read", 3).await;
    let ready = start.elapsed();
    let (sent, failed) = requests_until(
        &address,
        path,
        "requests to reach all 3 readers",
        start,
        |seen| {
            seen.iter()
                .filter(|p| p.starts_with("logs-read-"))
                .collect::<BTreeSet<_>>()
                .len()
                == 3
        },
    )
    .await;
    eprintln!(
        "scale 1→3: pods Ready after {ready:?}; all 3 had answered through the gateway by {:?} ({} requests, {failed} failed)",
        sent.last().map(|(at, _)| *at).unwrap_or_default(),
        sent.len()
    );
    assert_eq!(failed, 0, "no request fails while pods are added");

    env.merge_patch("workerpool", "logs-read", r#"{"spec":{"replicas":1}}"#)
        .await;
    // Requests go on from the patch, through the pods' termination: settled when the last
    // 20 answers all came from the one pod left.
    let start = Instant::now();
    const SETTLED: usize = 20;
    let (sent, failed) = requests_until(
        &address,
        path,
        "requests to reach only logs-read-0",
        start,
        |seen| {
            seen.len() >= SETTLED
                && seen[seen.len() - SETTLED..]
                    .iter()
                    .all(|p| p == "logs-read-0")
        },
    )
    .await;
    pool_ready(&env, "logs-read", 1).await;
    let last_removed = sent
        .iter()
        .filter(|(_, pod)| pod.starts_with("logs-read-") && pod != "logs-read-0")
        .map(|(at, _)| *at)
        .next_back();
    eprintln!(
        "scale 3→1: the last answer from a removed pod was sent {last_removed:?} after the patch ({} requests, {failed} failed)",
        sent.len()
    );
    assert_eq!(
        failed, 0,
        "no request fails while pods are removed (the gateway moves on from a dead address)"
    );
    assert_eq!(
        gateway_pod(&env).await,
        before,
        "the gateway pod was neither replaced nor restarted"
    );
    env.finish().await;
}

/// `curl` of `url` with extra arguments: the HTTP status (0 when no answer) and body.
async fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.parse().unwrap_or(0), body.to_string())
}

/// TLS from a real gateway pod: without its Secret the gateway serves nothing (no
/// plain-text fallback); with it, HTTPS with that certificate reaches the workers, and
/// plain HTTP on the same port is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_from_its_secret_and_nothing_without_it() {
    use k8s_openapi::api::core::v1::Secret;
    let env = OperatorNamespace::start("real-tls").await;
    let yaml = [
        support::CREDENTIALS.to_string(),
        support::cluster_yaml("logs", "loki", "  tls: {secretName: logs-tls}\n"),
        support::pool_yaml("logs-all", "logs", 1, "{loki: {all: true}}"),
    ];
    let docs = yaml.iter().map(|y| from_yaml(y)).collect();
    apply_on_real_node(&env, docs, Product::Loki).await;
    env.cluster_reason("logs", "TLSReady", "SecretNotFound")
        .await;
    let service: Service = env.get("logs-gateway").await;
    let ip = service.spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    // The pod waits for its Secret: no address, so the Service answers nothing.
    let (status, _) = curl(&format!("http://{ip}:3100/ready"), &[]).await;
    assert_eq!(
        status, 0,
        "nothing is served in plain text without the Secret"
    );

    let certified =
        rcgen::generate_simple_self_signed(vec![format!("logs-gateway.{}.svc", env.name())])
            .expect("a self-signed certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, certified.cert.pem()).expect("write the certificate");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("logs-tls".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(
            [
                ("tls.crt".to_string(), certified.cert.pem()),
                ("tls.key".to_string(), certified.signing_key.serialize_pem()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    env.api::<Secret>()
        .create(&Default::default(), &secret)
        .await
        .expect("create the Secret");
    env.cluster_condition("logs", "TLSReady", "True").await;
    env.cluster_condition("logs", "Available", "True").await;
    let host = format!("logs-gateway.{}.svc", env.name());
    let resolve = format!("{host}:3100:{ip}");
    let url = format!("https://{host}:3100/loki/api/v1/labels");
    let (status, body) = wait_for("HTTPS through the gateway", TIMEOUT, || async {
        let (status, body) = curl(
            &url,
            &[
                "--cacert",
                ca.to_str().expect("utf-8"),
                "--resolve",
                &resolve,
            ],
        )
        .await;
        Ok(if status == 200 {
            Check::Done((status, body))
        } else {
            Check::Pending(format!("{status} {body}"))
        })
    })
    .await;
    let answer = parse_answer(status, &body);
    assert!(
        answer.roles.contains("read"),
        "HTTPS reached a reader: {body}"
    );
    let (plain, body) = curl(&format!("http://{ip}:3100/loki/api/v1/labels"), &[]).await;
    assert!(
        plain == 400 || plain == 0,
        "plain HTTP on the TLS port reaches no worker: {plain} {body}"
    );
    assert!(!body.contains("contract-worker"), "{body}");
    env.finish().await;
}

/// A multi-tenant Loki on the real node (ADR 15): the tenants' matrix through the gateway
/// Service to contract workers that, like the product, refuse a request without a
/// tenant; then a password rotation, which rolls the gateway, while requests with another
/// credential keep flowing: none may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_tenant_gateway_files_each_credential_under_its_tenant() {
    use lgtm_operator::api::Tenant;
    let env = OperatorNamespace::start("real-tenants").await;
    let token_b = "b".repeat(40);
    let yaml = [
        support::CREDENTIALS.to_string(),
        support::cluster_yaml("logs", "loki", "  tenancy: {mode: MultiTenant}\n"),
        support::pool_yaml("logs-all", "logs", 1, "{loki: {all: true}}"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: alice, annotations: {lgtm.coordinated.dev/tenant: team-a}}\nstringData: {username: alice, password: old-pw}\n".to_string(),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bob, annotations: {lgtm.coordinated.dev/tenant: team-b}}\nstringData: {username: bob, password: bob-pw}\n".to_string(),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: token-b, annotations: {{lgtm.coordinated.dev/tenant: team-b}}}}\nstringData: {{token: {token_b}}}\n"),
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: team-a}\nspec:\n  clusterRef: logs\n  credentials: [{basicAuth: {secretName: alice}}]\n".to_string(),
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: Tenant\nmetadata: {name: team-b}\nspec:\n  clusterRef: logs\n  credentials:\n  - basicAuth: {secretName: bob}\n    scopes: [write]\n  - bearerToken: {secretName: token-b}\n    scopes: [read]\n".to_string(),
    ];
    let docs = yaml.iter().map(|y| from_yaml(y)).collect();
    apply_on_real_node(&env, docs, Product::Loki).await;
    pool_ready(&env, "logs-all", 1).await;
    for tenant in ["team-a", "team-b"] {
        env.wait_condition::<Tenant>(tenant, "Ready", "CredentialsLive", |c| {
            c.reason == "CredentialsLive"
        })
        .await;
    }
    let (ip, _) = gateway_and_roles(&env, "logs").await;
    let base = format!("http://{ip}:3100");
    let read = format!("{base}/loki/api/v1/query?query=x");
    let write = format!("{base}/loki/api/v1/push");
    let bearer = format!("Authorization: Bearer {token_b}");
    let cases: [(&str, &str, Vec<&str>, u16, &str); 8] = [
        ("no credential", &read, vec![], 401, ""),
        ("wrong password", &read, vec!["-u", "alice:nope"], 401, ""),
        (
            "alice reads",
            &read,
            vec!["-u", "alice:old-pw"],
            200,
            "team-a",
        ),
        (
            "alice forges team-b",
            &write,
            vec![
                "-u",
                "alice:old-pw",
                "-X",
                "POST",
                "-H",
                "X-Scope-OrgID: team-b",
            ],
            200,
            "team-a",
        ),
        (
            "bob (write only) reads",
            &read,
            vec!["-u", "bob:bob-pw"],
            403,
            "",
        ),
        (
            "bob writes",
            &write,
            vec!["-u", "bob:bob-pw", "-X", "POST"],
            200,
            "team-b",
        ),
        ("token B reads", &read, vec!["-H", &bearer], 200, "team-b"),
        (
            "token B (read only) writes",
            &write,
            vec!["-H", &bearer, "-X", "POST"],
            403,
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (what, url, args, status, tenant) in &cases {
        let (got, body) = curl(url, args).await;
        let answer = parse_answer(got, &body);
        let got_tenant = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tenant="))
            .unwrap_or_default();
        if got != *status
            || (*status == 200 && got_tenant != *tenant)
            || (*status != 200 && !answer.pod.is_empty())
        {
            failures.push(format!("{what}: {got} {body:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "through the gateway Service:\n{}",
        failures.join("\n")
    );

    // The worker itself, like the product, refuses a request without a tenant.
    let pods = env
        .api::<Pod>()
        .list(&ListParams::default().labels("lgtm.coordinated.dev/pool=logs-all"))
        .await
        .expect("pods");
    let pod_ip = pods.items[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    let (status, body) = curl(&format!("http://{pod_ip}:3100/loki/api/v1/query"), &[]).await;
    assert_eq!((status, body.trim()), (401, "no org id"));

    // Rotation: the gateway rolls while token B's requests go on; none fails.
    let flowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (flowing, read, bearer) = (flowing.clone(), read.clone(), bearer.clone());
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0, Vec::new());
            while flowing.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = curl(&read, &["-H", &bearer]).await;
                sent += 1;
                if status != 200 {
                    failed.push(format!("{status} {body:?}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rotated = Instant::now();
    env.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: alice, annotations: {lgtm.coordinated.dev/tenant: team-a}}\nstringData: {username: alice, password: new-pw}\n")
        .await;
    let new_works = wait_for("the new password through the gateway", TIMEOUT, || async {
        let (status, _) = curl(&read, &["-u", "alice:new-pw"]).await;
        Ok(if status == 200 {
            Check::Done(rotated.elapsed())
        } else {
            Check::Pending(format!("{status}"))
        })
    })
    .await;
    let old_fails = wait_for("the old password refused", TIMEOUT, || async {
        let (status, _) = curl(&read, &["-u", "alice:old-pw"]).await;
        Ok(if status == 401 {
            Check::Done(rotated.elapsed())
        } else {
            Check::Pending(format!("{status}"))
        })
    })
    .await;
    env.wait_condition::<Tenant>("team-a", "Ready", "CredentialsLive", |c| {
        c.reason == "CredentialsLive"
    })
    .await;
    support::real_node::rolled_out(&env, "logs-gateway").await;
    let live = rotated.elapsed();
    // Past the old pod's drain and stop.
    tokio::time::sleep(Duration::from_secs(8)).await;
    flowing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.await.expect("the load task");
    eprintln!(
        "real-node rotation: new password works after {new_works:?}, old refused after {old_fails:?}, gateway rolled out after {live:?}; {sent} requests with another credential meanwhile, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed while the gateway rolled: {failed:?}"
    );
    env.finish().await;
}
