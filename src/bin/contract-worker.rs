//! The contract worker: a test double of a Mimir, Loki or Tempo worker, built from the
//! products' run-time contract (`src/product/contract/`, `docs/runtime-contract.md`) and
//! nothing else. The products are AGPL and never built or run here; this plays their
//! part on the real node so that a rendered pod meets, in a real container, what the
//! product would do with it. It is a test double, not a product: it stores nothing.
//!
//! Given the product (`LGTM_CONTRACT_PRODUCT`, set by its image) and the rendered
//! arguments (`-config.file`, `-target`), it:
//! - parses the rendered configuration file, and exits 1 when it cannot;
//! - changes to the product image's working directory and creates every path the
//!   contract says its roles write (data dirs, the Mimir activity file), exiting 1 naming
//!   the key, path and upstream reference where one cannot be written, as the product
//!   exits at start;
//! - writes a file to the temp dir where its roles do (a Loki retention sweeper that
//!   cannot retries for ever: here `/ready` answers 503 naming it instead);
//! - binds the contract's ports and every port the gateway sends its roles' requests to;
//! - answers `/ready`, the contract's lifecycle endpoints of its roles, and every other
//!   path with its pod name, roles and the request (HTTP/1.1 or cleartext HTTP/2; gRPC
//!   calls get `UNIMPLEMENTED` with the same text as `grpc-message`; Loki's tail upgrades
//!   to a websocket and sends it as one message);
//! - spins a CPU on `/contract-worker/busy?millis=N` (load for the autoscaling test);
//! - answers the contract's leave calls of its roles as the product does, and records
//!   them on its volume (`leave.rs`);
//! - reads the runtime-overrides file the configuration names, and exits 1 when it
//!   cannot (the products stop at start on a missing or bad file);
//! - once multi-tenancy is on, answers the routed paths without `X-Scope-OrgID` with 401
//!   `no org id`, and names the tenant it got in every answer;
//! - exits 0 on SIGTERM.

#[path = "contract-worker/leave.rs"]
mod leave;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use lgtm_operator::product::contract::{Contract, Write};
use lgtm_operator::product::{Product, RouteTo, expand};
use serde_json::Value;

/// What this process plays: read once at start, shared by every request.
struct Worker {
    product: Product,
    pod: String,
    targets: String,
    roles: BTreeSet<&'static str>,
    /// Why `/ready` fails, when it does.
    unready: Option<String>,
    /// Multi-tenancy is on: requests need `X-Scope-OrgID`.
    multi_tenant: bool,
    /// What the scale-down calls did.
    leaving: leave::Leaving,
}

/// The arguments the operator renders that the double reads; others are ignored.
#[derive(Default)]
struct Args {
    config_file: Option<String>,
    target: Option<String>,
    /// Every `-flag=value`, for the flags the contract names (zones).
    flags: Vec<(String, String)>,
    expand_env: bool,
}

fn parse_args(args: impl Iterator<Item = String>) -> Args {
    let mut parsed = Args::default();
    for arg in args {
        let arg = arg.trim_start_matches('-');
        if let Some(v) = arg.strip_prefix("config.file=") {
            parsed.config_file = Some(v.to_string());
        } else if let Some(v) = arg.strip_prefix("target=") {
            parsed.target = Some(v.to_string());
        } else if arg == "config.expand-env" || arg == "config.expand-env=true" {
            parsed.expand_env = true;
        } else if let Some((flag, value)) = arg.split_once('=') {
            parsed.flags.push((flag.to_string(), value.to_string()));
        }
    }
    parsed
}

/// `-target` names (role names, or a meta-role's product name such as Tempo's
/// `scalable-single-binary`) to the roles they run.
fn roles_of(product: Product, target: &str) -> Result<BTreeSet<&'static str>, String> {
    let catalogue = product.catalogue();
    let mut toggles = Vec::new();
    for name in target.split(',').filter(|t| !t.is_empty()) {
        let toggle = catalogue
            .meta_roles
            .iter()
            .find(|m| m.target == name)
            .map(|m| m.name)
            .or_else(|| catalogue.role(name).map(|r| r.name))
            .ok_or_else(|| format!("unknown target {name:?} for {product}"))?;
        toggles.push(toggle);
    }
    if toggles.is_empty() {
        return Err("no -target".into());
    }
    Ok(expand(product, &toggles))
}

/// `${VAR}` expansion as drone/envsubst does it (`$$` is a literal `$`); only run when
/// the pod passes `-config.expand-env`, which the operator does not (ADR 6).
fn expand_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(end) = rest.strip_prefix("${").and_then(|r| r.find('}')) {
            out.push_str(&std::env::var(&rest[2..2 + end]).unwrap_or_default());
            rest = &rest[3 + end..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The value at a dotted key (`a.b.c`) of the configuration.
fn lookup<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(config, |v, part| v.get(part))
}

/// Each zone-aware ring this process is a member of: its zone, from the ring's flag.
/// A member without one fails to start here, where the product would start and
/// silently hold copies outside the one-per-zone rule (runtime contract, zones).
fn zones(
    contract: &'static Contract,
    config: &Value,
    roles: &[&str],
    flags: &[(String, String)],
) -> Result<Vec<String>, String> {
    let mut zones = Vec::new();
    for ring in contract.zone_rings_of(roles) {
        let zone = flags
            .iter()
            .find(|(flag, _)| flag == ring.zone_flag)
            .map(|(_, zone)| zone.clone())
            .filter(|zone| !zone.is_empty());
        match zone {
            Some(zone) => zones.push(format!("{}={zone}", ring.role)),
            None if lookup(config, ring.awareness) == Some(&Value::Bool(true)) => {
                return Err(format!(
                    "{} is on but -{} is not given: a member of the {} ring needs its zone",
                    ring.awareness, ring.zone_flag, ring.role
                ));
            }
            None => {}
        }
    }
    Ok(zones)
}

/// Where a contract write lands: the configured value, else its default (`{key}/rest`
/// derives from another key). `None` when neither names a path.
fn write_path(config: &Value, write: &Write) -> Option<PathBuf> {
    if let Some(v) = lookup(config, write.key).and_then(Value::as_str) {
        return Some(PathBuf::from(v));
    }
    if let Some(derived) = write.default.strip_prefix('{') {
        let (key, rest) = derived.split_once('}')?;
        let base = lookup(config, key)?.as_str()?;
        return Some(PathBuf::from(format!("{base}{rest}")));
    }
    (!write.default.is_empty()).then(|| PathBuf::from(write.default))
}

/// Creates what the product creates there: a file for a file key, else a directory.
fn create(path: &Path, key: &str) -> std::io::Result<()> {
    if key.ends_with("filepath") || key.ends_with("file") {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
    } else {
        std::fs::create_dir_all(path)?;
        // A directory the product cannot write in fails as surely as a missing one.
        let probe = path.join(".contract-worker");
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(probe)
    }
}

/// Every write of the contract that applies to `roles`; the first that fails is the
/// product's exit at start.
fn create_paths(
    contract: &Contract,
    config: &Value,
    roles: &BTreeSet<&str>,
) -> Result<Vec<String>, String> {
    let mut created = Vec::new();
    for write in contract.writes {
        if !write.roles.is_empty() && !write.roles.iter().any(|r| roles.contains(r)) {
            continue;
        }
        let Some(path) = write_path(config, write) else {
            continue;
        };
        create(&path, write.key).map_err(|e| {
            format!(
                "cannot write {}={} ({e}): {} [{}]",
                write.key,
                path.display(),
                write.what.what,
                write.what.reference
            )
        })?;
        created.push(format!("{}={}", write.key, path.display()));
    }
    Ok(created)
}

/// Writes one file in the OS temp dir (`$TMPDIR`, else `/tmp`) where a role does.
fn check_temp_dir(contract: &Contract, roles: &[&str]) -> Option<String> {
    if !contract.uses_temp_dir(roles) {
        return None;
    }
    let dir = std::env::temp_dir();
    let file = dir.join(format!("contract-worker-{}", std::process::id()));
    match std::fs::write(&file, b"probe").and_then(|()| std::fs::remove_file(&file)) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "cannot write the temp dir {} ({e}); the product retries for ever there: {}",
            dir.display(),
            contract
                .temp_dir
                .iter()
                .map(|t| t.what.what)
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// Ports to bind: the contract's (configured or default), and every worker port the
/// gateway sends this process's roles' requests to.
fn ports(product: Product, config: &Value, roles: &BTreeSet<&str>) -> BTreeSet<u16> {
    let contract = product.contract();
    let mut ports: BTreeSet<u16> = contract
        .ports
        .iter()
        .map(|p| {
            lookup(config, p.key)
                .and_then(Value::as_u64)
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(p.port)
        })
        .collect();
    for listener in product.catalogue().listeners {
        let serves = listener.routes.iter().any(|route| match route.to {
            RouteTo::Role(role) => roles.contains(role),
            RouteTo::FirstPresent(candidates) => candidates.iter().any(|r| roles.contains(r)),
        });
        if serves {
            ports.insert(listener.upstream_port);
        }
    }
    ports
}

/// The line every answer carries: who answered, as what, for which tenant (`-`: none).
fn identity(worker: &Worker, method: &Method, uri: &str, tenant: Option<&str>) -> String {
    format!(
        "contract-worker product={} pod={} targets={} roles={} tenant={} request=\"{method} {uri}\"",
        worker.product,
        worker.pod,
        worker.targets,
        worker.roles.iter().copied().collect::<Vec<_>>().join(","),
        tenant.unwrap_or("-"),
    )
}

/// The runtime-overrides file the configuration names, read and parsed as the product
/// does at start; `None` when none is named.
fn runtime_overrides(contract: &Contract, config: &Value) -> Result<Option<String>, String> {
    let tenancy = &contract.tenancy;
    let Some(file) = lookup(config, tenancy.runtime_file).and_then(Value::as_str) else {
        return Ok(None);
    };
    let fail = |e: String| {
        format!(
            "runtime overrides {file}: {e}: {} [{}]",
            tenancy.reload.what, tenancy.reload.reference
        )
    };
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    serde_saphyr::from_str::<Value>(&text).map_err(|e| fail(e.to_string()))?;
    Ok(Some(file.to_string()))
}

async fn answer(
    State(worker): State<Arc<Worker>>,
    websocket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    let uri = request.uri().to_string();
    let tenant = request
        .headers()
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = identity(&worker, request.method(), &uri, tenant.as_deref());
    let path = request.uri().path();
    if path == "/ready" {
        return match &worker.unready {
            None if worker.leaving.terminated() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ingester not ready: Terminated\n",
            )
                .into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        };
    }
    if path == BUSY_PATH {
        return busy(request.uri().query()).await;
    }
    let method = request.method().as_str().to_string();
    if let Some(answer) = worker.leaving.answer(&method, path, &uri).await {
        return answer.into_response();
    }
    if let Ok(websocket) = websocket {
        return websocket.on_upgrade(move |mut socket| async move {
            let _ = socket
                .send(axum::extract::ws::Message::Text(text.into()))
                .await;
        });
    }
    let grpc = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        // Trailers-only: the call is routed and refused, its message names the worker.
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("12"));
        if let Ok(message) = HeaderValue::from_str(&text) {
            headers.insert("grpc-message", message);
        }
        return response;
    }
    let contract = worker.product.contract();
    let lifecycle = contract
        .lifecycle
        .iter()
        .find(|l| l.path.split('?').next() == Some(path));
    if let Some(endpoint) = lifecycle {
        if !endpoint.roles.iter().any(|r| worker.roles.contains(r)) {
            return (StatusCode::NOT_FOUND, format!("{text}: not a role here\n")).into_response();
        }
        if request.method().as_str() != endpoint.method {
            return (StatusCode::METHOD_NOT_ALLOWED, format!("{text}\n")).into_response();
        }
        say(&format!(
            "lifecycle {}: {}",
            endpoint.path, endpoint.what.what
        ));
    } else if worker.multi_tenant && tenant.is_none() {
        // dskit's middleware.AuthenticateUser (runtime contract, tenancy.no_tenant).
        return (StatusCode::UNAUTHORIZED, "no org id\n").into_response();
    }
    (StatusCode::OK, format!("{text}\n")).into_response()
}

/// Where a test makes the worker use CPU (`?millis=N`, at most 10 s): load for an
/// autoscaler to see, as a query would give a real querier.
const BUSY_PATH: &str = "/contract-worker/busy";

/// Spins one CPU for the milliseconds asked, then answers how long it spun.
async fn busy(query: Option<&str>) -> Response {
    let millis = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("millis=")))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100)
        .min(10_000);
    let spun = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let mut x: u64 = 0;
        while start.elapsed() < std::time::Duration::from_millis(millis) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        start.elapsed()
    })
    .await
    .unwrap_or_default();
    (StatusCode::OK, format!("busy {} ms\n", spun.as_millis())).into_response()
}

/// A line on stderr, where the container's log is read.
fn say(line: &str) {
    eprintln!("contract-worker: {line}");
}

/// The pod's name: Kubernetes sets the hostname to it.
fn pod_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn start() -> Result<(Worker, BTreeSet<u16>), String> {
    let product: Product = std::env::var("LGTM_CONTRACT_PRODUCT")
        .map_err(|_| "LGTM_CONTRACT_PRODUCT is not set (the image sets it)".to_string())
        .and_then(|p| {
            serde_json::from_value(Value::String(p.clone()))
                .map_err(|_| format!("unknown product {p:?}"))
        })?;
    let args = parse_args(std::env::args().skip(1));
    let targets = args.target.unwrap_or_default();
    let roles = roles_of(product, &targets)?;
    let file = args.config_file.ok_or("no -config.file")?;
    let mut text =
        std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
    if args.expand_env {
        text = expand_env(&text);
    }
    let config: Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("cannot parse {file}: {e}"))?;
    let contract = product.contract();
    std::env::set_current_dir(contract.image.workdir)
        .map_err(|e| format!("cannot enter {}: {e}", contract.image.workdir))?;
    for created in create_paths(contract, &config, &roles)? {
        say(&format!("wrote {created}"));
    }
    let role_list: Vec<&str> = roles.iter().copied().collect();
    for zone in zones(contract, &config, &role_list, &args.flags)? {
        say(&format!("zone {zone}"));
    }
    if let Some(file) = runtime_overrides(contract, &config)? {
        say(&format!("runtime overrides {file}"));
    }
    let multi_tenant = lookup(&config, contract.tenancy.switch)
        .and_then(Value::as_bool)
        .unwrap_or(contract.tenancy.switch_default);
    let unready = check_temp_dir(contract, &role_list);
    let ports = ports(product, &config, &roles);
    let leaves = contract.leaves_of(&role_list).collect();
    let worker = Worker {
        product,
        pod: pod_name(),
        targets,
        roles,
        unready,
        multi_tenant,
        leaving: leave::Leaving::new(pod_name(), leaves),
    };
    Ok((worker, ports))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (worker, ports) = match start() {
        Ok(started) => started,
        Err(why) => {
            say(&format!("exiting at start: {why}"));
            // Kubernetes shows this file as the container's last termination message.
            let _ = std::fs::write("/dev/termination-log", &why);
            return ExitCode::from(1);
        }
    };
    if let Some(why) = &worker.unready {
        say(why);
    }
    let app = Router::new().fallback(answer).with_state(Arc::new(worker));
    for port in &ports {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", *port)).await {
            Ok(l) => l,
            Err(e) => {
                say(&format!("exiting at start: cannot bind port {port}: {e}"));
                return ExitCode::from(1);
            }
        };
        let app = app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    say(&format!("listening on {ports:?}"));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("cannot wait for SIGTERM: {e}"));
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = term.recv() => say("SIGTERM: exiting"),
        _ = tokio::signal::ctrl_c() => say("SIGINT: exiting"),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_the_catalogue_roles() {
        let loki = roles_of(Product::Loki, "all").expect("all");
        assert!(loki.contains("write") && loki.contains("read"), "{loki:?}");
        let tempo = roles_of(Product::Tempo, "scalable-single-binary").expect("monolith");
        assert!(tempo.contains("distributor"), "{tempo:?}");
        assert!(roles_of(Product::Mimir, "ingester,querier").is_ok());
        assert!(roles_of(Product::Mimir, "nonsense").is_err());
    }

    #[test]
    fn a_member_of_a_zone_aware_ring_needs_its_zone() {
        let contract = Product::Loki.contract();
        let aware = serde_json::json!({"ingester": {"lifecycler": {"ring": {"zone_awareness_enabled": true}}}});
        let zone = [(
            "ingester.availability-zone".to_string(),
            "zone-b".to_string(),
        )];
        assert_eq!(
            zones(contract, &aware, &["write"], &zone),
            Ok(vec!["write=zone-b".to_string()])
        );
        let refused = zones(contract, &aware, &["write"], &[]).expect_err("no zone");
        assert!(refused.contains("-ingester.availability-zone"), "{refused}");
        // Readers and members of a ring without awareness start as before.
        assert_eq!(zones(contract, &aware, &["read"], &[]), Ok(vec![]));
        assert_eq!(
            zones(contract, &serde_json::json!({}), &["write"], &[]),
            Ok(vec![])
        );
    }

    #[test]
    fn env_expansion_follows_envsubst() {
        assert_eq!(
            expand_env("a $$ b ${LGTM_CONTRACT_UNSET_VAR}c $x"),
            "a $ b c $x"
        );
    }

    #[test]
    fn mimir_without_an_activity_path_cannot_start_on_a_read_only_root() {
        // The default is relative to the image's working directory (/).
        let config = serde_json::json!({});
        let write = &Product::Mimir.contract().writes[0];
        assert_eq!(write.key, "activity_tracker.filepath");
        assert_eq!(
            write_path(&config, write),
            Some(PathBuf::from("./metrics-activity.log"))
        );
    }

    #[test]
    fn derived_defaults_follow_their_base_key() {
        let config = serde_json::json!({"common": {"path_prefix": "/data"}});
        let wal = Product::Loki
            .contract()
            .writes
            .iter()
            .find(|w| w.key == "ingester.wal.dir")
            .expect("the WAL");
        assert_eq!(write_path(&config, wal), Some(PathBuf::from("/data/wal")));
    }
}
