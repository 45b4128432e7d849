//! Layer 2 for multi-tenant clusters (ADR 15): the gateway's nginx.conf and auth files,
//! as the operator renders them from Tenants and their Secrets, run by real nginx with
//! stub upstreams that echo the X-Scope-OrgID they receive.
//!
//! Per product: every credential against a read, a write and a method-scoped route:
//! 200 within its scopes with exactly its tenant upstream, 401 without a valid
//! credential, 403 outside its scopes, and a forged tenant header replaced. Then a
//! rotation: the new password and token work and the old ones fail, timed.

// Shared with tests/gateway_nginx.rs, which uses the rest of it.
#[allow(dead_code)]
mod nginx_support;
#[path = "shared/routes.rs"]
mod routes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use lgtm_operator::api::{GrafanaCluster, Scope, TENANT_ANNOTATION, TenancyMode, Tenant};
use lgtm_operator::plan::tenants::{self, AuthFiles};
use lgtm_operator::product::{Access, Listener, Product, Protocol, Route};
use nginx_support::{Gateway, Request};
use routes::sample_path;

const ALICE_PASSWORD: &str = "alice's password: 'quotes' \"and\" $dollars";
const TOKEN_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4";
const TOKEN_B: &str = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy";

fn secret(name: &str, tenant: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.annotations =
        Some([(TENANT_ANNOTATION.to_string(), tenant.to_string())].into());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    secret
}

fn tenant(name: &str, credentials: serde_json::Value) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "lgtm.coordinated.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": "obs", "uid": format!("uid-{name}")},
        "spec": {"clusterRef": "c", "credentials": credentials},
    }))
    .expect("a Tenant")
}

/// team-a: Basic `alice` (read and write), bearer A (read only). team-b: Basic `bob`
/// (write only), bearer B (both).
fn auth_files(product: Product, alice_password: &str, token_a: &str) -> AuthFiles {
    let mut cluster: GrafanaCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "lgtm.coordinated.dev/v1alpha1",
        "kind": "GrafanaCluster",
        "metadata": {"name": "c", "namespace": "obs", "uid": "cluster-uid"},
        "spec": {"product": product, "storage": {"filesystem": {}}},
    }))
    .expect("a GrafanaCluster");
    cluster.spec.tenancy.mode = TenancyMode::MultiTenant;
    let tenants = [
        tenant(
            "team-a",
            serde_json::json!([
                {"basicAuth": {"secretName": "alice"}},
                {"bearerToken": {"secretName": "token-a"}, "scopes": ["read"]},
            ]),
        ),
        tenant(
            "team-b",
            serde_json::json!([
                {"basicAuth": {"secretName": "bob"}, "scopes": [Scope::Write]},
                {"bearerToken": {"secretName": "token-b"}},
            ]),
        ),
    ];
    let secrets: BTreeMap<String, Option<Secret>> = [
        secret(
            "alice",
            "team-a",
            &[("username", "alice"), ("password", alice_password)],
        ),
        secret(
            "bob",
            "team-b",
            &[("username", "bob"), ("password", "bob-pw")],
        ),
        secret("token-a", "team-a", &[("token", token_a)]),
        secret("token-b", "team-b", &[("token", TOKEN_B)]),
    ]
    .into_iter()
    .map(|s| (s.metadata.name.clone().unwrap_or_default(), Some(s)))
    .collect();
    let plan = tenants::plan(
        &cluster,
        &tenants,
        &secrets,
        b"a key of 32 bytes, for the tests",
    );
    for outcome in &plan.outcomes {
        assert_eq!(outcome.problem, None, "{}", outcome.name);
    }
    plan.auth.expect("a multi-tenant cluster has auth files")
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A plain-HTTP route of the product with this access, and its listener's port.
fn route_with(product: Product, access: Access) -> (u16, &'static Route) {
    product
        .catalogue()
        .listeners
        .iter()
        .filter(|l: &&Listener| l.protocol == Protocol::Http)
        .flat_map(|l| l.routes.iter().map(move |r| (l.port, r)))
        .find(|(_, r)| r.access == access)
        .unwrap_or_else(|| panic!("{product} has an HTTP route with {access:?}"))
}

/// What a request got: its status, and the tenants the stub saw (if a stub answered).
async fn call(
    gateway: &Gateway,
    (port, route): (u16, &Route),
    method: &'static str,
    headers: &[(&'static str, String)],
) -> (u16, Option<Vec<String>>) {
    let mut request = Request::get(&sample_path(route.location)).method(method);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let reply = gateway.send(port, request).await;
    (reply.status, reply.echo().map(|echo| echo.tenants))
}

/// One expectation: the request, then the status and the tenant the upstream sees.
struct Case {
    what: &'static str,
    access: Access,
    method: &'static str,
    headers: Vec<(&'static str, String)>,
    status: u16,
    tenant: Option<&'static str>,
}

fn matrix() -> Vec<Case> {
    let auth = |value: String| vec![("Authorization", value)];
    let forged = |value: String, tenant: &str| {
        vec![
            ("Authorization", value),
            ("X-Scope-OrgID", tenant.to_string()),
        ]
    };
    let case = |what, access, method, headers, status, tenant| Case {
        what,
        access,
        method,
        headers,
        status,
        tenant,
    };
    use Access::{ByMethod, Read, Write};
    vec![
        case("no credential, read", Read, "GET", vec![], 401, None),
        case("no credential, write", Write, "POST", vec![], 401, None),
        case(
            "forged tenant alone",
            Read,
            "GET",
            vec![("X-Scope-OrgID", "team-a".into())],
            401,
            None,
        ),
        case(
            "wrong password",
            Read,
            "GET",
            auth(basic("alice", "nope")),
            401,
            None,
        ),
        case(
            "unknown user",
            Read,
            "GET",
            auth(basic("mallory", "x")),
            401,
            None,
        ),
        case(
            "unknown token",
            Read,
            "GET",
            auth(bearer(&"f".repeat(40))),
            401,
            None,
        ),
        case(
            "out-of-scope user, wrong password: still 401",
            Read,
            "GET",
            auth(basic("bob", "nope")),
            401,
            None,
        ),
        case(
            "alice reads",
            Read,
            "GET",
            auth(basic("alice", ALICE_PASSWORD)),
            200,
            Some("team-a"),
        ),
        case(
            "alice reads by POST",
            Read,
            "POST",
            auth(basic("alice", ALICE_PASSWORD)),
            200,
            Some("team-a"),
        ),
        case(
            "alice writes",
            Write,
            "POST",
            auth(basic("alice", ALICE_PASSWORD)),
            200,
            Some("team-a"),
        ),
        case(
            "alice forges team-b",
            Write,
            "POST",
            forged(basic("alice", ALICE_PASSWORD), "team-b"),
            200,
            Some("team-a"),
        ),
        case(
            "bob (write only) reads",
            Read,
            "GET",
            auth(basic("bob", "bob-pw")),
            403,
            None,
        ),
        case(
            "bob writes",
            Write,
            "POST",
            auth(basic("bob", "bob-pw")),
            200,
            Some("team-b"),
        ),
        case(
            "token A (read only) reads",
            Read,
            "GET",
            auth(bearer(TOKEN_A)),
            200,
            Some("team-a"),
        ),
        case(
            "token A (read only) writes",
            Write,
            "POST",
            auth(bearer(TOKEN_A)),
            403,
            None,
        ),
        case(
            "token B forges team-a",
            Read,
            "GET",
            forged(bearer(TOKEN_B), "team-a"),
            200,
            Some("team-b"),
        ),
        case(
            "token B writes",
            Write,
            "POST",
            auth(bearer(TOKEN_B)),
            200,
            Some("team-b"),
        ),
        case(
            "bob GETs a method-scoped route",
            ByMethod,
            "GET",
            auth(basic("bob", "bob-pw")),
            403,
            None,
        ),
        case(
            "bob POSTs a method-scoped route",
            ByMethod,
            "POST",
            auth(basic("bob", "bob-pw")),
            200,
            Some("team-b"),
        ),
        case(
            "token A GETs a method-scoped route",
            ByMethod,
            "GET",
            auth(bearer(TOKEN_A)),
            200,
            Some("team-a"),
        ),
        case(
            "token A POSTs a method-scoped route",
            ByMethod,
            "POST",
            auth(bearer(TOKEN_A)),
            403,
            None,
        ),
    ]
}

async fn check_matrix(product: Product) {
    let gateway = Gateway::start_multi_tenant(
        product,
        &["all"],
        &auth_files(product, ALICE_PASSWORD, TOKEN_A),
    )
    .await;
    let mut failures = Vec::new();
    for case in matrix() {
        if case.access == Access::ByMethod && product == Product::Tempo {
            continue; // Tempo has no method-scoped route.
        }
        let route = route_with(product, case.access);
        let got = call(&gateway, route, case.method, &case.headers).await;
        let wanted = (case.status, case.tenant.map(|t| vec![t.to_string()]));
        if got != wanted {
            failures.push(format!(
                "{}: {} {} {}: got {got:?}, wanted {wanted:?}",
                case.what, case.method, route.0, route.1.location
            ));
        }
    }
    // Cluster-wide paths are refused to every tenant's credential.
    let admin = product
        .catalogue()
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
        .flat_map(|l| l.routes.iter().map(move |r| (l.port, r)))
        .find(|(_, r)| r.access == Access::Admin)
        .expect("an admin route");
    let alice = [("Authorization", basic("alice", ALICE_PASSWORD))];
    let got = call(&gateway, admin, "GET", &alice).await;
    if got != (403, None) {
        failures.push(format!(
            "alice on cluster-wide {}: got {got:?}",
            admin.1.location
        ));
    }
    // A dot segment, plain or encoded, could be routed by the normalised path while the
    // product sees another (Mimir routes on the encoded path): refused.
    for path in ["/x/%2e%2e/y", "/x/%2E%2e%2Fy", "/x/./y", "/x/..%2fy"] {
        let request = Request::get(path).header("Authorization", &alice[0].1);
        let status = gateway
            .send(route_with(product, Access::Read).0, request)
            .await
            .status;
        if status != 400 {
            failures.push(format!("{path}: {status}, not 400"));
        }
    }
    // The credential stays at the gateway.
    let (port, read) = route_with(product, Access::Read);
    let request = Request::get(&sample_path(read.location)).header("Authorization", &alice[0].1);
    let echo = gateway.send(port, request).await.echo();
    if echo.as_ref().is_none_or(|e| e.authorization.is_some()) {
        failures.push(format!(
            "the Authorization header reached the upstream: {echo:?}"
        ));
    }
    // Answers the gateway gives itself need no credential: health checks stay open.
    let health = gateway
        .send(route_with(product, Access::Read).0, Request::get("/"))
        .await;
    if health.status != 200 {
        failures.push(format!("GET / without credentials: {}", health.status));
    }
    assert!(
        failures.is_empty(),
        "{product}:\n{}\n{}",
        failures.join("\n"),
        gateway.diagnostics()
    );
}

#[tokio::test]
async fn mimir_gateway_authenticates_scopes_and_files_each_tenant() {
    check_matrix(Product::Mimir).await;
}

#[tokio::test]
async fn loki_gateway_authenticates_scopes_and_files_each_tenant() {
    check_matrix(Product::Loki).await;
}

#[tokio::test]
async fn tempo_gateway_authenticates_scopes_and_files_each_tenant() {
    check_matrix(Product::Tempo).await;
}

/// Waits until `request` gets `status`, and returns how long that took.
async fn time_until(
    gateway: &Gateway,
    route: (u16, &Route),
    headers: &[(&'static str, String)],
    status: u16,
) -> Duration {
    let start = Instant::now();
    loop {
        let (got, _) = call(gateway, route, "GET", headers).await;
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still {got}, not {status}, 30 s after the rotation\n{}",
            gateway.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_rotated_password_and_token_work_and_the_old_ones_fail() {
    let product = Product::Loki;
    let gateway =
        Gateway::start_multi_tenant(product, &["all"], &auth_files(product, "old-pw", TOKEN_A))
            .await;
    let read = route_with(product, Access::Read);
    let old_basic = vec![("Authorization", basic("alice", "old-pw"))];
    let old_bearer = vec![("Authorization", bearer(TOKEN_A))];
    assert_eq!(call(&gateway, read, "GET", &old_basic).await.0, 200);
    assert_eq!(call(&gateway, read, "GET", &old_bearer).await.0, 200);

    let new_token = "0123456789abcdef0123456789abcdef01234567";
    gateway.rotate(&auth_files(product, "new-pw", new_token));
    let new_basic = vec![("Authorization", basic("alice", "new-pw"))];
    let new_bearer = vec![("Authorization", bearer(new_token))];
    let timings = [
        (
            "new password works",
            time_until(&gateway, read, &new_basic, 200).await,
        ),
        (
            "old password fails",
            time_until(&gateway, read, &old_basic, 401).await,
        ),
        (
            "new token works",
            time_until(&gateway, read, &new_bearer, 200).await,
        ),
        (
            "old token fails",
            time_until(&gateway, read, &old_bearer, 401).await,
        ),
    ];
    // Measured, not asserted (speed belongs in benchmarks): printed for the record.
    for (what, took) in timings {
        eprintln!("rotation: {what} after {took:?}");
    }
}
