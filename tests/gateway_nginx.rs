//! Layer 2 of the testing design: the gateway's nginx.conf, as the operator renders it,
//! run by real nginx (Debian's; `bash e2e/ensure-nginx.sh` installs it, and without it
//! these tests fail rather than skip).
//!
//! Routing expectations come from two places on purpose: the design's product facts
//! (products.md, "Gateway routing (nginx)"), written out here by hand so a catalogue
//! mistake shows, and the catalogue itself, so every route the renderer emits is exercised.

// Shared with tests/gateway_tenants.rs, which uses its multi-tenant part.
#[allow(dead_code)]
mod nginx_support;
#[path = "shared/routes.rs"]
mod routes;

use std::collections::BTreeSet;

use lgtm_operator::product::{Handling, Product, Protocol, RouteTo, expand};
use lgtm_operator::render::nginx::{self, NginxOptions, STATUS_PORT};
use nginx_support::{
    Families, Gateway, LOOPBACK_V6, Request, SAMPLE_RESOLV_CONF, Workspace, grpc_health_check_to,
    send_to, try_send_to,
};
use routes::sample_path;
use tonic_health::pb::health_check_response::ServingStatus;

// --- What products.md documents -------------------------------------------------------

/// Where products.md sends a gateway location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Documented {
    Role(&'static str),
    /// "any worker": paths every worker of the product serves.
    AnyWorker,
}

use Documented::{AnyWorker, Role};

/// products.md's routing tables: (gateway port, nginx location, where it goes).
fn documented_routes(product: Product) -> Vec<(u16, &'static str, Documented)> {
    match product {
        Product::Mimir => [
            ("/distributor", Role("distributor")),
            ("= /api/v1/push", Role("distributor")),
            ("/otlp/v1/metrics", Role("distributor")),
            ("/prometheus/config/v1/rules", Role("ruler")),
            ("/prometheus/api/v1/rules", Role("ruler")),
            ("/prometheus/api/v1/alerts", Role("ruler")),
            ("= /ruler/ring", Role("ruler")),
            ("/alertmanager", Role("alertmanager")),
            ("= /multitenant_alertmanager/status", Role("alertmanager")),
            ("= /multitenant_alertmanager/configs", Role("alertmanager")),
            ("= /api/v1/alerts", Role("alertmanager")),
            ("/prometheus", Role("query-frontend")),
            ("= /api/v1/status/buildinfo", Role("query-frontend")),
            ("/api/v1/upload/block/", Role("compactor")),
        ]
        .map(|(location, to)| (8080, location, to))
        .to_vec(),
        Product::Loki => [
            ("= /loki/api/v1/push", Role("write")),
            ("/otlp/v1/logs", Role("write")),
            ("^~ /loki/api/v1/rules", Role("backend")),
            // products.md writes `~ /prometheus/.*`; anchored so it only matches a prefix.
            ("~ ^/prometheus/.*", Role("backend")),
            ("= /api/v1/rules", Role("backend")),
            // Runtime contract: the compactor serves deletes; the legacy paths as the
            // chart routes them.
            ("= /loki/api/v1/delete", Role("backend")),
            ("= /loki/api/v1/cache/generation_numbers", Role("backend")),
            ("= /api/prom/push", Role("write")),
            ("^~ /api/prom/rules", Role("backend")),
            ("= /api/prom/tail", Role("read")),
            ("^~ /api/prom/", Role("read")),
            ("= /loki/api/v1/tail", Role("read")),
            ("~ ^/loki/api/.*", Role("read")),
            ("= /loki/api/v1/format_query", AnyWorker),
            ("= /loki/api/v1/status/buildinfo", AnyWorker),
            ("= /ring", AnyWorker),
        ]
        .map(|(location, to)| (3100, location, to))
        .to_vec(),
        Product::Tempo => {
            let mut routes: Vec<(u16, &'static str, Documented)> = [
                (3200, Role("query-frontend")),
                (9096, Role("query-frontend")),
                (4317, Role("distributor")),
                (4318, Role("distributor")),
                (9411, Role("distributor")),
                (14268, Role("distributor")),
                (14250, Role("distributor")),
            ]
            .map(|(port, to)| (port, "/", to))
            .to_vec();
            // Tempo's API and its gRPC streaming search, apart from the rest of the
            // query-frontend's ports, which a multi-tenant gateway refuses (ADR 15).
            routes.push((3200, "^~ /api/", Role("query-frontend")));
            routes.push((3200, "^~ /api/overrides", Role("query-frontend")));
            routes.push((
                9096,
                "^~ /tempopb.StreamingQuerier/",
                Role("query-frontend"),
            ));
            routes
        }
    }
}

/// The gateway ports products.md says speak gRPC.
fn documented_grpc_ports(product: Product) -> BTreeSet<u16> {
    match product {
        Product::Tempo => BTreeSet::from([9096, 4317, 14250]),
        Product::Mimir | Product::Loki => BTreeSet::new(),
    }
}

/// What to expect of one request through the gateway.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Workers of this role answer (or, without such a pool, nginx answers 503 naming it).
    Role(&'static str),
    /// Any of these roles may answer (paths every worker serves).
    AnyOf(&'static [&'static str]),
    /// Exactly the first of these that a pool provides answers.
    FirstOf(&'static [&'static str]),
    /// No route: nginx answers 404 and no worker sees the request.
    NoRoute,
}

/// A request through the gateway and where it must land.
#[derive(Debug, Clone)]
struct Probe {
    /// Catalogue port of the gateway server.
    port: u16,
    request: Request,
    expect: Expect,
    /// The request target the worker must receive, when nginx rewrites it.
    arrives_as: Option<&'static str>,
}

fn probe(port: u16, request: Request, expect: Expect) -> Probe {
    Probe {
        port,
        request,
        expect,
        arrives_as: None,
    }
}

fn get(target: &str) -> Request {
    Request::get(target)
}

fn post(target: &str) -> Request {
    Request::get(target).method("POST")
}

const LOKI_WORKERS: &[&str] = &["read", "write", "backend"];

/// Sample requests for every row of products.md's tables, plus the boundaries of its
/// exact (`=`) locations.
fn documented_probes(product: Product) -> Vec<Probe> {
    use Expect::{AnyOf, NoRoute, Role};
    match product {
        Product::Mimir => [
            (get("/distributor/all_user_stats"), Role("distributor")),
            (post("/api/v1/push"), Role("distributor")),
            (post("/otlp/v1/metrics"), Role("distributor")),
            (get("/prometheus/config/v1/rules/team-a"), Role("ruler")),
            (get("/prometheus/api/v1/rules"), Role("ruler")),
            (get("/prometheus/api/v1/alerts"), Role("ruler")),
            (get("/ruler/ring"), Role("ruler")),
            (get("/alertmanager/api/v2/alerts"), Role("alertmanager")),
            (
                get("/multitenant_alertmanager/status"),
                Role("alertmanager"),
            ),
            (
                get("/multitenant_alertmanager/configs"),
                Role("alertmanager"),
            ),
            (get("/api/v1/alerts"), Role("alertmanager")),
            (
                get("/prometheus/api/v1/query?query=up"),
                Role("query-frontend"),
            ),
            (
                get("/prometheus/api/v1/query_range?query=up&start=0&end=60&step=15"),
                Role("query-frontend"),
            ),
            (
                get("/prometheus/api/v1/label/job/values"),
                Role("query-frontend"),
            ),
            (get("/api/v1/status/buildinfo"), Role("query-frontend")),
            (post("/api/v1/upload/block/x"), Role("compactor")),
            (post("/api/v1/push/more"), NoRoute),
            (get("/ruler/ring/more"), NoRoute),
            (get("/api/v1/query?query=up"), NoRoute),
        ]
        .map(|(request, expect)| probe(8080, request, expect))
        .to_vec(),
        Product::Loki => {
            let mut probes = [
                (post("/loki/api/v1/push"), Role("write")),
                (post("/otlp/v1/logs"), Role("write")),
                (get("/loki/api/v1/rules"), Role("backend")),
                (get("/loki/api/v1/rules/team-a/group-1"), Role("backend")),
                (get("/prometheus/api/v1/rules"), Role("backend")),
                (get("/prometheus/api/v1/alerts"), Role("backend")),
                (
                    get("/loki/api/v1/tail?query=%7Bjob%3D%22app%22%7D").websocket(),
                    Role("read"),
                ),
                (
                    get("/loki/api/v1/query_range?query=%7Bjob%3D%22app%22%7D"),
                    Role("read"),
                ),
                (get("/loki/api/v1/query?query=vector(1)"), Role("read")),
                (get("/loki/api/v1/labels"), Role("read")),
                (get("/loki/api/v1/label/app/values"), Role("read")),
                (get("/loki/api/v1/series"), Role("read")),
                (get("/loki/api/v1/index/stats"), Role("read")),
                (
                    get("/loki/api/v1/format_query?query=x"),
                    AnyOf(LOKI_WORKERS),
                ),
                (get("/loki/api/v1/status/buildinfo"), AnyOf(LOKI_WORKERS)),
                (get("/ring"), AnyOf(LOKI_WORKERS)),
                (get("/api/v1/rules/team-a"), NoRoute),
                (
                    post("/loki/api/v1/delete?query=%7Bjob%3D%22app%22%7D&start=1"),
                    Role("backend"),
                ),
                (get("/loki/api/v1/delete"), Role("backend")),
                (
                    get("/loki/api/v1/cache/generation_numbers"),
                    Role("backend"),
                ),
                (post("/api/prom/push"), Role("write")),
                (get("/api/prom/rules"), Role("backend")),
                (get("/api/prom/rules/team-a/group-1"), Role("backend")),
                (get("/api/prom/tail?query=x").websocket(), Role("read")),
                (get("/api/prom/query?query=x"), Role("read")),
                (get("/api/prom/label"), Role("read")),
            ]
            .map(|(request, expect)| probe(3100, request, expect))
            .to_vec();
            probes.push(Probe {
                arrives_as: Some("/loki/api/v1/rules?type=alert"),
                ..probe(3100, get("/api/v1/rules?type=alert"), Role("backend"))
            });
            probes
        }
        Product::Tempo => [
            (
                3200,
                get("/api/traces/0123456789abcdef"),
                Role("query-frontend"),
            ),
            (
                3200,
                get("/api/search?tags=service.name%3Dapp"),
                Role("query-frontend"),
            ),
            (3200, get("/api/v2/search/tags"), Role("query-frontend")),
            (4318, post("/v1/traces"), Role("distributor")),
            (9411, post("/api/v2/spans"), Role("distributor")),
            (14268, post("/api/traces"), Role("distributor")),
        ]
        .map(|(port, request, expect)| probe(port, request, expect))
        .to_vec(),
    }
}

/// A request for every route of the catalogue's HTTP listeners: a path the route's
/// location matches, sent as the route's handling expects.
fn catalogue_probes(product: Product) -> Vec<Probe> {
    let mut probes = Vec::new();
    for listener in product.catalogue().listeners {
        if listener.protocol != Protocol::Http {
            continue;
        }
        for route in listener.routes {
            let mut request = get(&sample_path(route.location));
            if route.handling == Handling::WebSocket {
                request = request.websocket();
            }
            let expect = match route.to {
                RouteTo::Role(role) => Expect::Role(role),
                RouteTo::FirstPresent(roles) => Expect::FirstOf(roles),
            };
            probes.push(Probe {
                arrives_as: match route.handling {
                    Handling::RewriteTo(path) => Some(path),
                    Handling::Proxy | Handling::WebSocket => None,
                },
                ..probe(listener.port, request, expect)
            });
        }
    }
    probes
}

/// Sends every probe through the gateway; a line per probe that did not land as expected.
async fn route_failures(gateway: &Gateway, probes: &[Probe]) -> Vec<String> {
    let mut failures = Vec::new();
    for probe in probes {
        let before = gateway.hits.count();
        let reply = gateway.send(probe.port, probe.request.clone()).await;
        let reached = gateway.hits.count() - before;
        let what = format!(
            "{} {} on :{}",
            probe.request.method, probe.request.target, probe.port
        );
        let present = |role: &&str| gateway.present.contains(role);
        let answering: Result<Vec<&str>, Vec<&str>> = match probe.expect {
            Expect::NoRoute => {
                if reply.status != 404 || reached != 0 || reply.body != "no route for this path\n" {
                    failures.push(format!(
                        "{what}: expected nginx's 404 reaching no worker, got {} ({reached} worker(s) reached): {}",
                        reply.status, reply.body
                    ));
                }
                continue;
            }
            Expect::Role(role) if gateway.present.contains(role) => Ok(vec![role]),
            Expect::Role(role) => Err(vec![role]),
            Expect::AnyOf(roles) => {
                let some: Vec<&str> = roles.iter().copied().filter(present).collect();
                if some.is_empty() {
                    Err(roles.to_vec())
                } else {
                    Ok(some)
                }
            }
            Expect::FirstOf(roles) => match roles.iter().copied().find(present) {
                Some(role) => Ok(vec![role]),
                None => Err(roles.to_vec()),
            },
        };
        match answering {
            Ok(roles) => {
                let websocket = probe.request.headers.iter().any(|(n, _)| *n == "Upgrade");
                let status = if websocket { 101 } else { 200 };
                let arrives_as = probe.arrives_as.unwrap_or(&probe.request.target);
                match reply.echo() {
                    Some(echo)
                        if reply.status == status
                            && reached == 1
                            && roles.contains(&echo.role.as_str())
                            && echo.uri == arrives_as
                            && (!websocket
                                || (echo.upgrade.as_deref() == Some("websocket")
                                    && echo.connection.as_deref() == Some("upgrade")
                                    && reply
                                        .head
                                        .to_ascii_lowercase()
                                        .contains("\r\nupgrade: websocket")))
                            && (websocket || echo.upgrade.is_none()) => {}
                    _ => failures.push(format!(
                        "{what}: expected {roles:?} to answer {status} having received {arrives_as}{}; \
                         got {} ({reached} worker(s) reached): {}",
                        if websocket { " with Upgrade: websocket" } else { "" },
                        reply.status,
                        reply.body
                    )),
                }
            }
            Err(missing) => {
                let names_them = missing
                    .iter()
                    .all(|role| reply.body.contains(&format!("{role} ")));
                if reply.status != 503
                    || reached != 0
                    || !reply
                        .body
                        .contains("no worker pool of this cluster provides")
                    || !names_them
                {
                    failures.push(format!(
                        "{what}: no pool provides {missing:?}, expected a 503 naming it and no worker reached; \
                         got {} ({reached} worker(s) reached): {}",
                        reply.status, reply.body
                    ));
                }
            }
        }
    }
    failures
}

/// Pool layouts worth rendering for a product, by name: toggles of each pool together.
fn layouts(product: Product) -> Vec<(&'static str, Vec<&'static str>)> {
    let catalogue = product.catalogue();
    let split: Vec<&str> = catalogue.roles.iter().map(|r| r.name).collect();
    let mut layouts = vec![
        ("monolithic", vec!["all"]),
        ("fully-split", split),
        ("no-pools", vec![]),
    ];
    match product {
        Product::Mimir => {
            layouts.push(("read-write-backend", vec!["read", "write", "backend"]));
            layouts.push(("only-read", vec!["read"]));
        }
        Product::Loki => layouts.push(("only-read", vec!["read"])),
        Product::Tempo => layouts.push(("only-query-frontend", vec!["query-frontend"])),
    }
    layouts
}

// --- The catalogue against the documentation --------------------------------------------

#[test]
fn the_catalogue_routes_are_the_documented_ones() {
    for product in Product::ALL {
        let catalogue = product.catalogue();
        let all_roles: BTreeSet<&str> = catalogue.roles.iter().map(|r| r.name).collect();
        let describe = |port: u16, location: &str, to: Documented| match to {
            Role(role) => format!("{port} {location} -> {role}"),
            AnyWorker => format!("{port} {location} -> any worker"),
        };
        let from_catalogue: BTreeSet<String> = catalogue
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter().map(move |r| (l.port, r)))
            .map(|(port, route)| {
                let to = match route.to {
                    RouteTo::Role(role) => Role(role),
                    RouteTo::FirstPresent(roles)
                        if roles.iter().copied().collect::<BTreeSet<_>>() == all_roles =>
                    {
                        AnyWorker
                    }
                    RouteTo::FirstPresent(roles) => {
                        panic!("{product} {}: only some roles {roles:?}", route.location)
                    }
                };
                describe(port, route.location, to)
            })
            .collect();
        let documented: BTreeSet<String> = documented_routes(product)
            .into_iter()
            .map(|(port, location, to)| describe(port, location, to))
            .collect();
        assert_eq!(
            from_catalogue, documented,
            "{product}: catalogue routes (left) differ from products.md (right)"
        );

        let grpc: BTreeSet<u16> = catalogue
            .listeners
            .iter()
            .filter(|l| l.protocol == Protocol::Grpc)
            .map(|l| l.port)
            .collect();
        assert_eq!(grpc, documented_grpc_ports(product), "{product} gRPC ports");
    }

    let loki = Product::Loki.catalogue().listeners[0];
    let handling = |location: &str| {
        loki.routes
            .iter()
            .find(|r| r.location == location)
            .map(|r| r.handling)
    };
    assert_eq!(
        handling("= /api/v1/rules"),
        Some(Handling::RewriteTo("/loki/api/v1/rules"))
    );
    assert_eq!(handling("= /loki/api/v1/tail"), Some(Handling::WebSocket));
    assert_eq!(handling("~ ^/loki/api/.*"), Some(Handling::WebSocket));
}

// --- nginx -t ---------------------------------------------------------------------------

#[test]
fn every_rendered_config_passes_nginx_t() {
    let workspace = Workspace::new();
    let tls = workspace.self_signed_tls();

    let broken = workspace.write("broken.conf", "events {}\nhttp { no_such_directive on; }\n");
    assert!(
        workspace.nginx_t(&broken).is_err(),
        "nginx -t must reject a broken configuration, or this test proves nothing"
    );

    let mut failures = Vec::new();
    let mut passed = 0;
    for product in Product::ALL {
        for (layout, toggles) in layouts(product) {
            let present = expand(product, &toggles);
            for (tls, families) in [
                (None, Families::Ipv4Only),
                (None, Families::WithIpv6),
                (Some(tls.clone()), Families::Ipv4Only),
                (Some(tls.clone()), Families::WithIpv6),
            ] {
                let variant = format!(
                    "{}-{families:?}",
                    if tls.is_some() { "tls" } else { "plain" }
                );
                let mut options = NginxOptions::in_cluster("metrics", "obs", "cluster.local", tls);
                options.runtime_dir = workspace.runtime_dir();
                workspace.run_start_script(product, &options, SAMPLE_RESOLV_CONF, families);
                let conf = nginx::render(product, &present, &options);
                let file = workspace.write(&format!("{product}-{layout}-{variant}.conf"), &conf);
                match workspace.nginx_t(&file) {
                    Ok(warnings) => {
                        // Warnings (a newer nginx deprecating a directive) are shown, not
                        // failed on: the configuration still loads.
                        if !warnings.is_empty() {
                            eprintln!("{product}, {layout}, {variant}: {warnings}");
                        }
                        passed += 1;
                    }
                    Err(output) => failures.push(format!(
                        "{product}, {layout}, {variant}:\n{output}\n--- nginx.conf ---\n{conf}"
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "nginx -t failed for:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        passed,
        4 * (5 + 4 + 4),
        "every layout of every product, plain and TLS, with and without IPv6"
    );
}

#[test]
fn the_resolver_script_turns_resolv_conf_into_a_resolver_nginx_accepts() {
    let cases = [
        (
            SAMPLE_RESOLV_CONF,
            "resolver 10.96.0.10 [fd00:10:96::a] valid=5s;\n",
        ),
        // A zone index cannot be given to nginx, which would refuse to start.
        (
            "nameserver fe80::1%eth0\nnameserver 10.0.0.2\n",
            "resolver 10.0.0.2 valid=5s;\n",
        ),
        ("search cluster.local\n", "resolver 127.0.0.1 valid=5s;\n"),
    ];
    for (resolv_conf, expected) in cases {
        let workspace = Workspace::new();
        let mut options = NginxOptions::in_cluster("logs", "obs", "cluster.local", None);
        options.runtime_dir = workspace.runtime_dir();
        assert_eq!(
            workspace.run_start_script(Product::Loki, &options, resolv_conf, Families::Ipv4Only),
            expected,
            "{resolv_conf}"
        );
        let conf = nginx::render(Product::Loki, &expand(Product::Loki, &["all"]), &options);
        let file = workspace.write("nginx.conf", &conf);
        if let Err(output) = workspace.nginx_t(&file) {
            panic!("nginx -t with the resolver from {resolv_conf:?}:\n{output}");
        }
    }
}

// --- Address families -------------------------------------------------------------------

/// On a dual-stack or IPv6-only cluster, clients (and the Service) reach the pod over IPv6:
/// every server answers there too, the same as over IPv4.
#[tokio::test]
async fn with_ipv6_every_server_answers_on_both_families() {
    for product in Product::ALL {
        let gateway = Gateway::start_in(product, &["all"], Families::WithIpv6).await;
        for address in [gateway.address(), LOOPBACK_V6] {
            let health =
                send_to(address, gateway.port(STATUS_PORT), Request::get("/healthz")).await;
            assert_eq!(health.status, 200, "{product} /healthz on {address}");
            for listener in product.catalogue().listeners {
                let port = gateway.port(listener.port);
                if listener.protocol == Protocol::Grpc {
                    let role = tempo_grpc_role(listener.port);
                    let status = grpc_health_check_to(address, port, role, None).await;
                    assert_eq!(
                        status.as_ref().ok(),
                        Some(&ServingStatus::Serving),
                        "{product} gRPC :{} on {address}: {status:?}",
                        listener.port
                    );
                    continue;
                }
                let reply = send_to(address, port, Request::get("/")).await;
                assert_eq!(
                    reply.status,
                    200,
                    "{product} GET / on {address} port {}: {}\n{}",
                    listener.port,
                    reply.body,
                    gateway.diagnostics()
                );
            }
        }
        let (route, role) = match product {
            Product::Mimir => ("/prometheus/api/v1/query?query=up", "query-frontend"),
            Product::Loki => ("/loki/api/v1/query?query=x", "read"),
            Product::Tempo => ("/api/search", "query-frontend"),
        };
        let http_port = product.catalogue().listeners[0].port;
        let reply = send_to(LOOPBACK_V6, gateway.port(http_port), Request::get(route)).await;
        let echo = reply.echo().unwrap_or_else(|| {
            panic!(
                "{product} {route} over IPv6: {} {}",
                reply.status, reply.body
            )
        });
        assert_eq!(echo.role, role, "{product} {route} over IPv6");
    }
}

/// Without IPv6 (an IPv4-only cluster, or a kernel without it) nginx must still start:
/// it then listens on IPv4 only instead of failing to bind `[::]`.
#[tokio::test]
async fn without_ipv6_the_gateway_listens_on_ipv4_only() {
    let gateway = Gateway::start_in(Product::Mimir, &["all"], Families::Ipv4Only).await;
    let port = gateway.port(STATUS_PORT);
    assert_eq!(
        send_to(gateway.address(), port, Request::get("/healthz"))
            .await
            .status,
        200
    );
    let over_ipv6 = try_send_to(LOOPBACK_V6, port, Request::get("/healthz")).await;
    assert!(
        over_ipv6.is_err(),
        "nothing listens on [::1]:{port}: {:?}",
        over_ipv6.map(|r| r.status)
    );
}

// --- Routing through running nginx ------------------------------------------------------

async fn assert_routes(product: Product, layouts: &[(&str, Vec<&str>)]) {
    let mut failures = Vec::new();
    for (layout, toggles) in layouts {
        let gateway = Gateway::start(product, toggles).await;
        let mut probes = documented_probes(product);
        probes.extend(catalogue_probes(product));
        let found = route_failures(&gateway, &probes).await;
        if !found.is_empty() {
            failures.push(format!(
                "{product} with pools {layout} {toggles:?}:\n  {}\n{}",
                found.join("\n  "),
                gateway.diagnostics()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every layout but the monolithic one, which has its own test.
fn split_layouts(product: Product) -> Vec<(&'static str, Vec<&'static str>)> {
    layouts(product)
        .into_iter()
        .filter(|(name, _)| *name != "monolithic")
        .collect()
}

/// With one `all` pool, every documented path reaches a role `all` covers; the only
/// 503s are for roles outside it (Mimir's `all` target runs no alertmanager).
async fn assert_all_pool_serves_its_roles(product: Product, outside_all: &[&str]) {
    let gateway = Gateway::start(product, &["all"]).await;
    let all = product
        .catalogue()
        .meta_role("all")
        .expect("an all meta-role");
    assert_eq!(gateway.present, all.roles.iter().copied().collect());
    let mut probes = documented_probes(product);
    probes.extend(catalogue_probes(product));
    let failures = route_failures(&gateway, &probes).await;
    assert!(
        failures.is_empty(),
        "{product} with one all pool:\n  {}\n{}",
        failures.join("\n  "),
        gateway.diagnostics()
    );
    let mut refused = BTreeSet::new();
    for probe in &probes {
        let reply = gateway.send(probe.port, probe.request.clone()).await;
        if reply.status == 503 {
            refused.insert(reply.body.trim().to_string());
        }
    }
    let expected: BTreeSet<String> = outside_all
        .iter()
        .map(|role| format!("no worker pool of this cluster provides the {role} role"))
        .collect();
    assert_eq!(refused, expected, "{product}: 503s with one all pool");
}

mod mimir {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_path_reaches_its_role() {
        assert_routes(Product::Mimir, &split_layouts(Product::Mimir)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_all_pool_serves_every_path_its_roles_cover() {
        assert_all_pool_serves_its_roles(Product::Mimir, &["alertmanager"]).await;
    }
}

mod loki {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_path_reaches_its_role() {
        assert_routes(Product::Loki, &split_layouts(Product::Loki)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_all_pool_serves_every_path_its_roles_cover() {
        assert_all_pool_serves_its_roles(Product::Loki, &[]).await;
    }
}

mod tempo {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_path_reaches_its_role() {
        assert_routes(Product::Tempo, &split_layouts(Product::Tempo)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_all_pool_serves_every_path_its_roles_cover() {
        assert_all_pool_serves_its_roles(Product::Tempo, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_roles_answer_503_naming_the_role() {
    // The case the 503 exists for: without a write pool, Loki's push would otherwise fall
    // into the read role's `~ ^/loki/api/.*`, and the rules paths likewise.
    let loki = Gateway::start(Product::Loki, &["read"]).await;
    for (request, missing) in [
        (post("/loki/api/v1/push"), "write"),
        (post("/otlp/v1/logs"), "write"),
        (get("/loki/api/v1/rules"), "backend"),
        (get("/loki/api/v1/rules/team-a"), "backend"),
        (get("/prometheus/api/v1/rules"), "backend"),
        (get("/api/v1/rules"), "backend"),
    ] {
        let target = request.target.clone();
        let reply = loki.send(3100, request).await;
        assert_eq!(reply.status, 503, "{target}: {}", reply.body);
        assert_eq!(
            reply.body,
            format!("no worker pool of this cluster provides the {missing} role\n"),
            "{target}"
        );
    }
    assert_eq!(loki.hits.count(), 0, "the read workers saw none of it");
    let reply = loki
        .send(3100, get("/loki/api/v1/query_range?query=x"))
        .await;
    assert_eq!(reply.echo().map(|e| e.role), Some("read".to_string()));

    // Mimir without a ruler: its paths must not fall into the query-frontend's /prometheus.
    let mimir = Gateway::start(Product::Mimir, &["read"]).await;
    for (request, missing) in [
        (post("/api/v1/push"), "distributor"),
        (get("/prometheus/api/v1/rules"), "ruler"),
        (get("/prometheus/config/v1/rules"), "ruler"),
    ] {
        let reply = mimir.send(8080, request).await;
        assert_eq!(reply.status, 503);
        assert!(
            reply.body.contains(&format!("the {missing} role")),
            "{}",
            reply.body
        );
    }
    assert_eq!(mimir.hits.count(), 0);

    // Tempo without distributors: receivers refuse, over HTTP and gRPC alike.
    let tempo = Gateway::start(Product::Tempo, &["query-frontend"]).await;
    let reply = tempo.send(4318, post("/v1/traces")).await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("the distributor role"),
        "{}",
        reply.body
    );
    // gRPC clients get a gRPC status, UNAVAILABLE (which OTLP exporters retry), not an
    // HTTP error they would read as INTERNAL.
    let status = tempo
        .grpc_health_check(4317, "distributor", None)
        .await
        .expect_err("no distributor to answer");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert_eq!(
        status.message(),
        "no worker pool of this cluster provides the distributor role"
    );
}

/// Single-tenant products put every request in their one tenant whatever
/// X-Scope-OrgID says (runtime contract), so the gateway drops the header rather than let
/// anyone take it for a boundary: no worker ever sees one, however a client sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_tenant_header_reaches_a_single_tenant_product() {
    for (product, port, target) in [
        (Product::Mimir, 8080, "/api/v1/push"),
        (Product::Loki, 3100, "/loki/api/v1/push"),
        (Product::Tempo, 4318, "/v1/traces"),
    ] {
        let gateway = Gateway::start(product, &["all"]).await;
        let requests = [
            post(target),
            post(target).header("X-Scope-OrgID", "team-a"),
            post(target)
                .header("X-Scope-OrgID", "team-a")
                .header("X-Scope-OrgID", "team-b"),
            post(target).header("X-Scope-OrgID", "team-a, team-b"),
        ];
        for request in requests {
            let reply = gateway.send(port, request).await;
            assert_eq!(reply.status, 200, "{product}: {}", reply.body);
            let echo = reply
                .echo()
                .unwrap_or_else(|| panic!("{product}: no worker answered: {}", reply.body));
            assert!(
                echo.tenants.is_empty(),
                "{product}: the worker saw {:?}",
                echo.tenants
            );
        }
    }
    // gRPC with tenant metadata passes as well, and reaches its worker.
    let tempo = Gateway::start(Product::Tempo, &["all"]).await;
    let status = tempo
        .grpc_health_check(4317, "distributor", Some("team-a"))
        .await;
    assert_eq!(status.ok(), Some(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_answers_200_and_status_serves_stub_status() {
    for product in Product::ALL {
        let gateway = Gateway::start(product, &["all"]).await;
        for listener in product.catalogue().listeners {
            if listener.protocol == Protocol::Grpc {
                continue;
            }
            let reply = gateway.send(listener.port, get("/")).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "OK\n"),
                "{product} GET / on :{}",
                listener.port
            );
        }
        assert_eq!(
            gateway.hits.count(),
            0,
            "{product}: GET / is the gateway's own"
        );

        let status = gateway.send(STATUS_PORT, get("/status")).await;
        assert_eq!(status.status, 200);
        assert!(
            status.body.contains("Active connections"),
            "{product} /status: {}",
            status.body
        );
        let health = gateway.send(STATUS_PORT, get("/healthz")).await;
        assert_eq!((health.status, health.body.as_str()), (200, "OK\n"));
        let other = gateway.send(STATUS_PORT, get("/api/v1/push")).await;
        assert_eq!(other.status, 404, "the status server proxies nothing");

        // stub_status stays off the product ports.
        let http = product
            .catalogue()
            .listeners
            .iter()
            .find(|l| l.protocol == Protocol::Http)
            .expect("an HTTP listener");
        let reply = gateway.send(http.port, get("/status")).await;
        assert!(
            !reply.body.contains("Active connections"),
            "{product}: /status on :{} served stub_status",
            http.port
        );
    }
}

/// The role products.md sends each of Tempo's gRPC gateway ports to.
const TEMPO_GRPC_ROUTES: [(u16, &str); 3] = [
    (4317, "distributor"),
    (14250, "distributor"),
    (9096, "query-frontend"),
];

fn tempo_grpc_role(port: u16) -> &'static str {
    TEMPO_GRPC_ROUTES
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, role)| *role)
        .unwrap_or_else(|| panic!("Tempo has no gRPC port {port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_tempo_otlp_port_reaches_the_distributor() {
    let gateway = Gateway::start(Product::Tempo, &["all"]).await;
    // Each gRPC stub reports only its own role SERVING and does not know the others, so
    // SERVING proves which role's worker answered.
    for (port, role) in TEMPO_GRPC_ROUTES {
        let status = gateway.grpc_health_check(port, role, None).await;
        assert_eq!(
            status.as_ref().ok(),
            Some(&ServingStatus::Serving),
            ":{port} -> {role}: {status:?}\n{}",
            gateway.diagnostics()
        );
    }
    let other = gateway
        .grpc_health_check(4317, "query-frontend", None)
        .await;
    assert_eq!(
        other.as_ref().map_err(tonic::Status::code).err(),
        Some(tonic::Code::NotFound),
        "OTLP gRPC went to a query-frontend: {other:?}"
    );

    // And every gRPC server of the catalogue, however many there are.
    for listener in Product::Tempo.catalogue().listeners {
        if listener.protocol != Protocol::Grpc {
            continue;
        }
        for route in listener.routes {
            let RouteTo::Role(role) = route.to else {
                panic!("gRPC routes name one role");
            };
            let status = gateway.grpc_health_check(listener.port, role, None).await;
            assert_eq!(
                status.as_ref().ok(),
                Some(&ServingStatus::Serving),
                ":{} -> {role}: {status:?}",
                listener.port
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_gateway_stops_nginx() {
    let gateway = Gateway::start(Product::Loki, &["all"]).await;
    let pid = gateway.pid();
    let port = gateway.port(3100);
    let address = gateway.address();
    drop(gateway);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "nginx master {pid} still runs"
    );
    // The workers hold the listening sockets too: the port is free only when they are gone.
    assert!(
        std::net::TcpListener::bind((address, port)).is_ok(),
        "port {port} still taken after the gateway was dropped"
    );
}

/// products.md gives Loki's ruler API as `~ /prometheus/.*`: a regex nginx matches
/// anywhere in the path, and checks before the read role's `~ ^/loki/api/.*`. Unanchored,
/// a read request whose path holds `/prometheus/` (the values of a label named
/// `prometheus`) went to the backend; the catalogue anchors it (`~ ^/prometheus/.*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_read_paths_holding_prometheus_reach_read() {
    let gateway = Gateway::start(Product::Loki, &["all"]).await;
    let probes = [probe(
        3100,
        get("/loki/api/v1/label/prometheus/values"),
        Expect::Role("read"),
    )];
    let failures = route_failures(&gateway, &probes).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
