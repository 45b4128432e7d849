//! The gateway's nginx.conf, rendered from the catalogue's listeners and routes and the
//! roles some pool provides. Valid for open-source nginx 1.22 and newer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::tenancy::AuthFiles;
use crate::product::{Access, Handling, Listener, Product, Protocol, Route, RouteTo};

/// Port of the gateway's own server: `/status` (nginx stub_status, read by the exporter
/// sidecar) and `/healthz`. Kept off the product ports so no product path is shadowed.
pub const STATUS_PORT: u16 = 8081;

/// How long the gateway waits to connect to a worker before it tries the next address.
const CONNECT_TIMEOUT: &str = "1s";

/// The writable directory nginx keeps its pid, temp files and resolver file in (an
/// emptyDir in the pod: the root filesystem is read-only).
pub const RUNTIME_DIR: &str = "/tmp/nginx";

/// Where a role's upstream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstreams {
    /// The role's headless Service, by its fully qualified DNS name, resolved at request
    /// time so that pods coming and going need no reload.
    ClusterDns {
        cluster: String,
        namespace: String,
        domain: String,
    },
    /// Fixed `host:port` per (role, worker port): for tests against stub servers.
    Static(BTreeMap<(String, u16), String>),
}

impl Upstreams {
    fn address(&self, role: &str, port: u16) -> Option<String> {
        match self {
            Upstreams::ClusterDns {
                cluster,
                namespace,
                domain,
            } => Some(format!("{cluster}-{role}.{namespace}.svc.{domain}:{port}")),
            Upstreams::Static(addresses) => addresses.get(&(role.to_string(), port)).cloned(),
        }
    }
}

/// How the rendering is placed on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxOptions {
    pub upstreams: Upstreams,
    /// Include the resolver file the container writes from its resolv.conf at start.
    /// Off only where every upstream is an IP address.
    pub resolver_file: bool,
    /// Certificate and key files when the gateway serves TLS.
    pub tls: Option<TlsFiles>,
    /// IPv4 address to listen on; all addresses when `None`.
    pub listen_address: Option<String>,
    /// IPv6 address to listen on too (`[::]` in a pod), where the host has IPv6: every
    /// server includes the `listen` the start script writes ([`start_script`]). `None`:
    /// IPv4 only, and no such include.
    pub ipv6_address: Option<String>,
    /// Listening port per catalogue port, where they differ (tests).
    pub port_map: BTreeMap<u16, u16>,
    pub runtime_dir: String,
    /// The directory of the auth files ([`AuthFiles`]) when the cluster is multi-tenant:
    /// every product request is then authenticated, checked against the route's scope
    /// and filed under the credential's tenant (ADR 15).
    pub auth_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: String,
    pub key: String,
}

impl NginxOptions {
    /// Options for the gateway pod of a cluster.
    pub fn in_cluster(cluster: &str, namespace: &str, domain: &str, tls: Option<TlsFiles>) -> Self {
        Self {
            upstreams: Upstreams::ClusterDns {
                cluster: cluster.to_string(),
                namespace: namespace.to_string(),
                domain: domain.to_string(),
            },
            resolver_file: true,
            tls,
            listen_address: None,
            ipv6_address: Some("[::]".to_string()),
            port_map: BTreeMap::new(),
            runtime_dir: RUNTIME_DIR.to_string(),
            auth_dir: None,
        }
    }

    /// Every server's listening port and `listen` parameters (` ssl`, ` http2`), the
    /// status server last.
    fn listens(&self, product: Product) -> Vec<(u16, String)> {
        let tls = if self.tls.is_some() { " ssl" } else { "" };
        let mut listens: Vec<(u16, String)> = product
            .catalogue()
            .listeners
            .iter()
            .map(|listener| {
                let http2 = if listener.protocol == Protocol::Grpc {
                    " http2"
                } else {
                    ""
                };
                (self.port(listener.port), format!("{tls}{http2}"))
            })
            .collect();
        listens.push((self.port(STATUS_PORT), String::new()));
        listens
    }

    fn port(&self, port: u16) -> u16 {
        self.port_map.get(&port).copied().unwrap_or(port)
    }

    /// A server's `listen` lines: IPv4, then the include of the IPv6 one.
    fn write_listen(&self, w: &mut String, port: u16, params: &str) {
        let address = match &self.listen_address {
            Some(address) => format!("{address}:{port}"),
            None => port.to_string(),
        };
        line(w, 2, &format!("listen {address}{params};"));
        if self.ipv6_address.is_some() {
            line(
                w,
                2,
                &format!("include {}/{IPV6_DIR}/{port}.conf;", self.runtime_dir),
            );
        }
    }
}

/// Where in the runtime directory the start script writes each server's IPv6 `listen`.
const IPV6_DIR: &str = "ipv6";

/// The shell snippet the gateway container runs before nginx (with `RUNTIME_DIR` set):
/// it writes the files nginx.conf includes from the runtime directory.
///
/// - `resolver.conf`, from the pod's resolv.conf nameservers (IPv6 ones bracketed), so
///   the gateway resolves Service names with whatever DNS the cluster has. Scoped
///   link-local addresses (`fe80::1%eth0`) are skipped: nginx refuses them.
/// - `ipv6/<port>.conf` per server: the server's `listen` on the IPv6 address when the
///   pod has an IPv6 address, else empty (nginx could not bind one on a kernel without
///   IPv6). So one gateway serves IPv4-only, dual-stack and IPv6-only clusters.
///
/// `RESOLV_CONF` and `IF_INET6` override the files read, so tests can run the script.
pub fn start_script(product: Product, options: &NginxOptions) -> String {
    let mut script = format!("mkdir -p \"$RUNTIME_DIR\"\n{RESOLVER_SCRIPT}\n");
    if let Some(address) = &options.ipv6_address {
        let listens: Vec<String> = options
            .listens(product)
            .iter()
            .map(|(port, params)| format!("'{port}{params}'"))
            .collect();
        let _ = write!(
            script,
            r#"mkdir -p "$RUNTIME_DIR/{IPV6_DIR}"
for listen in {}; do
    if [ -s "${{IF_INET6:-/proc/net/if_inet6}}" ]; then echo "listen {address}:$listen;"; fi >"$RUNTIME_DIR/{IPV6_DIR}/${{listen%% *}}.conf"
done
"#,
            listens.join(" ")
        );
    }
    script
}

/// The part of [`start_script`] that writes `resolver.conf`.
const RESOLVER_SCRIPT: &str = r#"awk '$1 == "nameserver" && $2 !~ /%/ { ns = ns " " ($2 ~ /:/ ? "[" $2 "]" : $2) } END { if (ns == "") ns = " 127.0.0.1"; print "resolver" ns " valid=5s;" }' "${RESOLV_CONF:-/etc/resolv.conf}" > "$RUNTIME_DIR/resolver.conf""#;

/// Renders nginx.conf for `product` with upstreams for the `present` roles.
pub fn render(product: Product, present: &BTreeSet<&str>, options: &NginxOptions) -> String {
    let catalogue = product.catalogue();
    let run = &options.runtime_dir;
    let mut out = String::new();
    let w = &mut out;
    line(
        w,
        0,
        "# Rendered by lgtm-operator; changes are overwritten.",
    );
    line(w, 0, "worker_processes auto;");
    line(w, 0, &format!("pid {run}/nginx.pid;"));
    line(w, 0, "error_log /dev/stderr warn;");
    line(w, 0, "events { worker_connections 4096; }");
    line(w, 0, "http {");
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        line(w, 1, &format!("{temp}_temp_path {run}/{temp};"));
    }
    line(w, 1, "server_tokens off;");
    line(w, 1, "default_type text/plain;");
    line(
        w,
        1,
        &format!(
            r#"log_format lgtm '$remote_addr "$request" $status $body_bytes_sent $request_time upstream=$upstream_addr tenant={}';"#,
            match &options.auth_dir {
                Some(_) => "$lgtm_tenant",
                // Single-tenant: every request belongs to the product's one tenant.
                None => product.contract().single_tenant_id,
            }
        ),
    );
    line(w, 1, "access_log /dev/stdout lgtm;");
    if options.resolver_file {
        line(w, 1, &format!("include {run}/resolver.conf;"));
    }
    line(
        w,
        1,
        &format!("client_max_body_size {};", catalogue.max_body_size),
    );
    line(w, 1, "proxy_http_version 1.1;");
    // Longer than the products' own write timeouts, so the product answers first.
    let gateway = crate::render::REQUEST_TIMEOUTS.gateway;
    line(w, 1, &format!("proxy_read_timeout {gateway}s;"));
    // A worker removed by a scale-down stays in the resolved addresses until DNS caches
    // expire; a connect to it hangs rather than fails. In-cluster connects take well under
    // a millisecond, so a short timeout moves such a request to the next address (nginx's
    // default proxy_next_upstream covers connect timeouts, even for POST, since nothing
    // was sent). Measured on the real node: 5 s left one request of 21 over 10 s.
    line(w, 1, &format!("proxy_connect_timeout {CONNECT_TIMEOUT};"));
    line(w, 1, &format!("grpc_read_timeout {gateway}s;"));
    line(w, 1, &format!("grpc_connect_timeout {CONNECT_TIMEOUT};"));
    if let Some(dir) = &options.auth_dir {
        auth_maps(w, dir);
    }
    line(w, 1, "map $http_upgrade $lgtm_connection_upgrade {");
    line(w, 2, "default upgrade;");
    line(w, 2, "\"\" close;");
    line(w, 1, "}");

    let listens = options.listens(product);
    for (listener, (port, params)) in catalogue.listeners.iter().zip(&listens) {
        server(w, listener, (*port, params), present, options);
    }

    line(w, 1, "server {");
    options.write_listen(w, options.port(STATUS_PORT), "");
    line(w, 2, "location = /status { stub_status; }");
    line(w, 2, "location = /healthz { return 200 \"OK\\n\"; }");
    line(w, 2, "location / { return 404; }");
    line(w, 1, "}");
    line(w, 0, "}");
    out
}

fn server(
    w: &mut String,
    listener: &Listener,
    (port, params): (u16, &str),
    present: &BTreeSet<&str>,
    options: &NginxOptions,
) {
    let grpc = listener.protocol == Protocol::Grpc;
    line(w, 1, "server {");
    options.write_listen(w, port, params);
    if let Some(tls) = &options.tls {
        line(w, 2, &format!("ssl_certificate {};", tls.certificate));
        line(w, 2, &format!("ssl_certificate_key {};", tls.key));
        line(w, 2, "ssl_protocols TLSv1.2 TLSv1.3;");
    }
    if let Some(dir) = &options.auth_dir {
        // Answers before this (`return`: health, refusals) need no credential.
        // Defined on every server, so that the scope map's variable exists even where
        // no route has an upstream; each proxied route sets its own.
        line(w, 2, "set $lgtm_access read;");
        // nginx picks the location from the path it decoded and normalised, but the
        // product gets the path as sent (Mimir routes on the encoded path): a dot segment,
        // plain or percent-encoded, could reach a route of another scope. None is needed.
        line(w, 2, DOT_SEGMENTS);
        line(w, 2, "auth_basic $lgtm_realm;");
        line(
            w,
            2,
            &format!("auth_basic_user_file {dir}/{};", AuthFiles::HTPASSWD),
        );
        // A credential out of the route's scope: authenticated again here (so that a
        // wrong password is still 401), then refused.
        line(w, 2, "error_page 418 = @lgtm_forbidden;");
        line(
            w,
            2,
            "location @lgtm_forbidden { try_files /.lgtm-forbidden =403; }",
        );
    }
    if !grpc {
        line(w, 2, "location = / { return 200 \"OK\\n\"; }");
    }
    for route in listener.routes {
        location(w, listener, route, present, options);
    }
    if !listener.routes.iter().any(|r| r.location == "/") {
        // Unrouted paths get a plain 404 instead of nginx's static files under its
        // prefix (Debian's nginx would serve its welcome page).
        line(w, 2, "location / {");
        refuse(w, 3, Refusal::NotFound, "no route for this path", grpc);
        line(w, 2, "}");
    }
    line(w, 1, "}");
}

/// Why the gateway answers a request itself.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NotFound,
    Unavailable,
    /// A cluster-wide path in a multi-tenant cluster.
    Forbidden,
}

impl Refusal {
    fn http_status(self) -> u16 {
        match self {
            Refusal::NotFound => 404,
            Refusal::Unavailable => 503,
            Refusal::Forbidden => 403,
        }
    }

    /// The gRPC status code (UNIMPLEMENTED, UNAVAILABLE, PERMISSION_DENIED).
    fn grpc_status(self) -> u8 {
        match self {
            Refusal::NotFound => 12,
            Refusal::Unavailable => 14,
            Refusal::Forbidden => 7,
        }
    }
}

/// Answers with `message`: HTTP clients get the HTTP status and the message as body; gRPC
/// clients get a gRPC status in a trailers-only response (HTTP 200), because an HTTP
/// error with a text body reads to them as INTERNAL, which OTLP exporters drop instead of
/// retrying.
fn refuse(w: &mut String, indent: usize, refusal: Refusal, message: &str, grpc: bool) {
    if grpc {
        line(w, indent, "default_type application/grpc;");
        line(
            w,
            indent,
            &format!("add_header grpc-status {} always;", refusal.grpc_status()),
        );
        line(
            w,
            indent,
            &format!("add_header grpc-message \"{message}\" always;"),
        );
        line(w, indent, "return 200 \"\";");
    } else {
        line(
            w,
            indent,
            &format!("return {} \"{message}\\n\";", refusal.http_status()),
        );
    }
}

fn location(
    w: &mut String,
    listener: &Listener,
    route: &Route,
    present: &BTreeSet<&str>,
    options: &NginxOptions,
) {
    line(w, 2, &format!("location {} {{", route.location));
    if options.auth_dir.is_some() && route.access == Access::Admin {
        refuse_cluster_wide(w, listener.protocol == Protocol::Grpc);
        return;
    }
    let role = match route.to {
        RouteTo::Role(role) => present
            .contains(role)
            .then_some(role)
            .ok_or(role.to_string()),
        RouteTo::FirstPresent(roles) => roles
            .iter()
            .find(|r| present.contains(*r))
            .copied()
            .ok_or_else(|| roles.join(" or ")),
    };
    let upstream = role.and_then(|role| {
        options
            .upstreams
            .address(role, listener.upstream_port)
            .ok_or_else(|| role.to_string())
    });
    match upstream {
        Err(missing) => {
            // Answered here rather than left out, so the path cannot fall through to a
            // broader location of another role.
            refuse(
                w,
                3,
                Refusal::Unavailable,
                &format!("no worker pool of this cluster provides the {missing} role"),
                listener.protocol == Protocol::Grpc,
            );
        }
        Ok(address) => {
            let tenant = match options.auth_dir {
                Some(_) => require_scope(w, route.access, listener.protocol == Protocol::Grpc),
                None => "\"\"",
            };
            line(w, 3, &format!("set $lgtm_upstream \"{address}\";"));
            if listener.protocol == Protocol::Grpc {
                line(w, 3, "grpc_pass grpc://$lgtm_upstream;");
                // The authenticated tenant, never the client's header. Single-tenant
                // products ignore it, and a client's is dropped so that nobody mistakes
                // it for a boundary (ADR 7).
                line(w, 3, &format!("grpc_set_header X-Scope-OrgID {tenant};"));
            } else {
                if let Handling::RewriteTo(path) = route.handling {
                    line(w, 3, &format!("rewrite ^ {path} break;"));
                }
                line(w, 3, "proxy_pass http://$lgtm_upstream;");
                line(w, 3, &format!("proxy_set_header X-Scope-OrgID {tenant};"));
                line(
                    w,
                    3,
                    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                );
                if route.handling == Handling::WebSocket {
                    line(w, 3, "proxy_set_header Upgrade $http_upgrade;");
                    line(
                        w,
                        3,
                        "proxy_set_header Connection $lgtm_connection_upgrade;",
                    );
                }
            }
        }
    }
    line(w, 2, "}");
}

/// Refuses a request whose path holds a dot segment (`.` or `..`, plain or encoded).
const DOT_SEGMENTS: &str = r#"if ($request_uri ~* "^[^?]*(/|%2f)(\.|%2e){1,2}(/|%2f|\?|$)") { return 400 "dot segments in the path\n"; }"#;

/// Every tenant's data or the cluster's machinery: no tenant's credential opens it.
fn refuse_cluster_wide(w: &mut String, grpc: bool) {
    let message = "a cluster-wide path: a multi-tenant gateway does not serve it";
    refuse(w, 3, Refusal::Forbidden, message, grpc);
    line(w, 2, "}");
}

/// A multi-tenant route's scope check (a credential without `access` is sent to the
/// 403 location); returns the tenant variable to pass upstream.
fn require_scope(w: &mut String, access: Access, grpc: bool) -> &'static str {
    let access = match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::ByMethod => "$lgtm_method_access",
        // Refused before this (see `location`); never proxied with a tenant's grant.
        Access::Admin => "admin",
    };
    line(w, 3, &format!("set $lgtm_access {access};"));
    line(w, 3, "if ($lgtm_forbidden) { return 418; }");
    // The credential is the gateway's business; the workers get the tenant only.
    let header = if grpc {
        "grpc_set_header"
    } else {
        "proxy_set_header"
    };
    line(w, 3, &format!("{header} Authorization \"\";"));
    "$lgtm_tenant"
}

/// The maps that turn a request's credential into its tenant and scopes, and decide
/// whether the route's scope is among them. The credential files come from the
/// gateway's auth Secret ([`AuthFiles`]).
///
/// - A known bearer token gives its grant directly and turns `auth_basic` off (its realm
///   variable is `off`); anything else goes through `auth_basic`, whose `$remote_user`
///   gives the grant of a Basic user. nginx evaluates these lazily: `$remote_user` is
///   only trusted once `auth_basic` has checked the password, which happens before the
///   request reaches the upstream.
/// - A grant is `<tenant> <read|write|read+write>`.
/// - `$lgtm_forbidden` is 1 when the route's `$lgtm_access` is not in the grant; it is
///   0 without a grant, so that `auth_basic` answers 401 there, not 403.
fn auth_maps(w: &mut String, dir: &str) {
    // A bucket holds a whole key: `Bearer ` and a token of up to 512 characters.
    line(w, 1, "map_hash_bucket_size 1024;");
    let maps: [(&str, &str, &[&str]); 7] = [
        (
            "$http_authorization",
            "$lgtm_bearer_grant",
            &[
                "default \"\";",
                &format!("include {dir}/{};", AuthFiles::BEARER_MAP),
            ],
        ),
        (
            "\"user:$remote_user\"",
            "$lgtm_user_grant",
            &[
                "default \"\";",
                &format!("include {dir}/{};", AuthFiles::USERS_MAP),
            ],
        ),
        (
            "$lgtm_bearer_grant",
            "$lgtm_realm",
            &["\"\" \"lgtm\";", "default off;"],
        ),
        (
            "$lgtm_bearer_grant",
            "$lgtm_grant",
            &["\"\" $lgtm_user_grant;", "default $lgtm_bearer_grant;"],
        ),
        (
            "$lgtm_grant",
            "$lgtm_tenant",
            &["\"~^(?<lgtm_t>\\S+) \" $lgtm_t;", "default \"\";"],
        ),
        (
            "$request_method",
            "$lgtm_method_access",
            &["GET read;", "HEAD read;", "OPTIONS read;", "default write;"],
        ),
        (
            "\"$lgtm_access $lgtm_grant\"",
            "$lgtm_forbidden",
            &[
                "default 1;",
                "\"~^read \\S+ read\" 0;",
                "\"~^write \\S+ (read\\+)?write$\" 0;",
                "\"~^\\S+ $\" 0;",
            ],
        ),
    ];
    for (source, variable, entries) in maps {
        line(w, 1, &format!("map {source} {variable} {{"));
        for entry in entries {
            line(w, 2, entry);
        }
        line(w, 1, "}");
    }
}

fn line(w: &mut String, indent: usize, text: &str) {
    let _ = writeln!(w, "{:width$}{text}", "", width = indent * 4);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::expand;

    fn in_cluster() -> NginxOptions {
        NginxOptions::in_cluster("metrics", "obs", "cluster.local", None)
    }

    /// The whole file per product, for review: a change shows up as a snapshot diff. The
    /// behaviour that matters is asserted by the other tests and by real nginx.
    #[test]
    fn rendered_configs_for_review() {
        let layouts: [(Product, &[&str]); 3] = [
            (Product::Mimir, &["read", "write", "backend"]),
            (Product::Loki, &["read", "write", "backend"]),
            (Product::Tempo, &["all"]),
        ];
        for (product, toggles) in layouts {
            let present: BTreeSet<&str> =
                toggles.iter().flat_map(|t| expand(product, &[t])).collect();
            let conf = render(product, &present, &in_cluster());
            assert!(
                !conf.contains("no worker pool"),
                "{product}: every role present"
            );
            insta::assert_snapshot!(format!("nginx-{product}"), conf);
        }
    }

    fn present(product: Product, toggles: &[&str]) -> BTreeSet<&'static str> {
        expand(product, toggles)
    }

    #[test]
    fn upstreams_are_service_names_resolved_at_request_time() {
        let conf = render(
            Product::Mimir,
            &present(Product::Mimir, &["all"]),
            &in_cluster(),
        );
        assert!(conf.contains("include /tmp/nginx/resolver.conf;"));
        assert!(
            conf.contains("set $lgtm_upstream \"metrics-distributor.obs.svc.cluster.local:8080\";")
        );
        assert!(conf.contains("proxy_pass http://$lgtm_upstream;"));
        assert!(
            !conf
                .lines()
                .any(|l| l.trim_start().starts_with("upstream ")),
            "no static upstream blocks"
        );
    }

    #[test]
    fn absent_roles_answer_503_naming_the_role() {
        let conf = render(
            Product::Mimir,
            &present(Product::Mimir, &["read"]),
            &in_cluster(),
        );
        assert!(conf.contains("no worker pool of this cluster provides the distributor role"));
        assert!(!conf.contains("metrics-distributor."));
        assert!(conf.contains("metrics-query-frontend.obs.svc.cluster.local:8080"));
    }

    #[test]
    fn tempo_grpc_ports_use_http2_and_grpc_pass() {
        let conf = render(
            Product::Tempo,
            &present(Product::Tempo, &["all"]),
            &in_cluster(),
        );
        assert!(conf.contains("listen 4317 http2;"));
        assert!(conf.contains("listen 9096 http2;"));
        assert!(conf.contains("grpc_pass grpc://$lgtm_upstream;"));
        assert!(conf.contains("metrics-distributor.obs.svc.cluster.local:14250"));
        assert!(conf.contains("listen 4318;"));
    }

    #[test]
    fn loki_tail_upgrades_to_websocket_and_rules_are_rewritten() {
        let conf = render(
            Product::Loki,
            &present(Product::Loki, &["all"]),
            &in_cluster(),
        );
        let tail = conf
            .split("location = /loki/api/v1/tail {")
            .nth(1)
            .expect("tail location");
        let tail = tail.split('}').next().expect("block");
        assert!(tail.contains("proxy_set_header Upgrade $http_upgrade;"));
        assert!(conf.contains("rewrite ^ /loki/api/v1/rules break;"));
    }

    #[test]
    fn tls_listens_with_ssl_on_every_product_port() {
        let tls = TlsFiles {
            certificate: "/tls/tls.crt".into(),
            key: "/tls/tls.key".into(),
        };
        let options = NginxOptions::in_cluster("t", "ns", "cluster.local", Some(tls));
        let conf = render(Product::Tempo, &present(Product::Tempo, &["all"]), &options);
        assert!(conf.contains("listen 3200 ssl;"));
        assert!(conf.contains("listen 4317 ssl http2;"));
        assert!(conf.contains("ssl_certificate /tls/tls.crt;"));
        assert!(!conf.contains("listen 3200;"), "no plain HTTP next to TLS");
    }

    #[test]
    fn grpc_servers_refuse_with_a_grpc_status() {
        let conf = render(
            Product::Tempo,
            &present(Product::Tempo, &["query-frontend"]),
            &in_cluster(),
        );
        let otlp_grpc = conf
            .split("listen 4317 http2;")
            .nth(1)
            .and_then(|rest| rest.split("\n    }\n").next())
            .expect("the OTLP gRPC server");
        assert!(otlp_grpc.contains("add_header grpc-status 14 always;"));
        assert!(otlp_grpc.contains(
            "add_header grpc-message \"no worker pool of this cluster provides the distributor role\" always;"
        ));
        assert!(!otlp_grpc.contains("return 503"), "{otlp_grpc}");
        assert!(conf.contains(
            "return 503 \"no worker pool of this cluster provides the distributor role\\n\";"
        ));
    }

    #[test]
    fn unrouted_paths_are_not_served_from_disk() {
        let conf = render(
            Product::Mimir,
            &present(Product::Mimir, &["all"]),
            &in_cluster(),
        );
        assert!(
            conf.contains("location / {\n            return 404 \"no route for this path\\n\";")
        );
        let tempo = render(
            Product::Tempo,
            &present(Product::Tempo, &["all"]),
            &in_cluster(),
        );
        assert_eq!(
            tempo.matches("location / {").count(),
            Product::Tempo.catalogue().listeners.len() + 1,
            "Tempo's own `/` routes plus the status server's, no catch-all besides"
        );
    }

    #[test]
    fn mimir_allows_large_block_uploads() {
        let conf = render(
            Product::Mimir,
            &present(Product::Mimir, &["all"]),
            &in_cluster(),
        );
        assert!(conf.contains("client_max_body_size 10g;"));
    }

    fn multi_tenant() -> NginxOptions {
        NginxOptions {
            auth_dir: Some("/etc/lgtm-gateway/auth".into()),
            ..in_cluster()
        }
    }

    #[test]
    fn a_multi_tenant_gateway_authenticates_scopes_and_sets_the_tenant() {
        let conf = render(
            Product::Loki,
            &present(Product::Loki, &["all"]),
            &multi_tenant(),
        );
        assert!(conf.contains("include /etc/lgtm-gateway/auth/bearer.map;"));
        assert!(conf.contains("include /etc/lgtm-gateway/auth/users.map;"));
        assert!(conf.contains("auth_basic_user_file /etc/lgtm-gateway/auth/htpasswd;"));
        assert!(
            !conf.contains("X-Scope-OrgID \"\""),
            "the tenant, never empty"
        );
        let push = conf
            .split("location = /loki/api/v1/push {")
            .nth(1)
            .and_then(|rest| rest.split("\n        }").next())
            .expect("the push location");
        assert!(push.contains("set $lgtm_access write;"), "{push}");
        assert!(push.contains("if ($lgtm_forbidden) { return 418; }"));
        assert!(push.contains("proxy_set_header X-Scope-OrgID $lgtm_tenant;"));
        let rules = conf
            .split("location ^~ /loki/api/v1/rules {")
            .nth(1)
            .expect("the rules location");
        assert!(rules.starts_with("\n            set $lgtm_access $lgtm_method_access;"));
        assert!(conf.contains("tenant=$lgtm_tenant"));
    }

    #[test]
    fn a_single_tenant_gateway_asks_for_nothing_and_drops_the_tenant_header() {
        let conf = render(
            Product::Mimir,
            &present(Product::Mimir, &["all"]),
            &in_cluster(),
        );
        assert!(!conf.contains("auth_basic"));
        assert!(!conf.contains("$lgtm_tenant"));
        assert!(conf.contains("proxy_set_header X-Scope-OrgID \"\";"));
    }
}
