//! Real nginx for the gateway tests: finding it, `nginx -t`, running the rendered
//! configuration on loopback behind a guard that stops it, one stub upstream per (role,
//! worker port), and a raw HTTP/1.1 client that sends exactly what a test needs (repeated
//! headers, websocket upgrades), which ordinary clients smooth over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lgtm_operator::plan::tenants::AuthFiles;
use lgtm_operator::product::{Product, Protocol, expand};
use lgtm_operator::render::nginx::{self, NginxOptions, STATUS_PORT, TlsFiles, Upstreams};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What a pod's resolv.conf looks like on a dual-stack cluster.
pub const SAMPLE_RESOLV_CONF: &str = "\
# written by the kubelet
search obs.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
nameserver fd00:10:96::a
options ndots:5
";

/// Which address families the pod the start script runs in has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// No IPv6 address (an IPv4-only cluster, or a kernel without IPv6).
    Ipv4Only,
    /// IPv6 on loopback, as in a dual-stack or IPv6-only pod.
    WithIpv6,
}

impl Families {
    /// The pod's `/proc/net/if_inet6` in this case.
    fn if_inet6(self) -> &'static str {
        match self {
            Families::Ipv4Only => "",
            Families::WithIpv6 => "00000000000000000000000000000001 01 80 10 80       lo\n",
        }
    }
}

/// Time any single step (a request, nginx starting) may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// The nginx binary: `LGTM_NGINX` when set (`make nginx` also runs these tests against
/// a recent nginx built by e2e/build-nginx.sh), else Debian's. Fails the test (never
/// skips it) when nginx is missing.
pub fn nginx_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(chosen) = std::env::var_os("LGTM_NGINX") {
            let chosen = PathBuf::from(chosen);
            assert!(
                chosen.is_file(),
                "LGTM_NGINX={} is not a file",
                chosen.display()
            );
            return chosen;
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            // Debian installs nginx in /usr/sbin, which is not on every user's PATH.
            .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!("nginx is not installed: run `bash e2e/ensure-nginx.sh` first")
            })
    })
}

/// A private temporary directory: nginx's prefix and runtime directory.
pub struct Workspace {
    dir: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lgtm-gateway-")
            .tempdir()
            .expect("temporary directory");
        // Run as root, nginx's workers drop to `nobody` and still need their temp paths.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temporary directory");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn runtime_dir(&self) -> String {
        self.path().display().to_string()
    }

    /// Writes the auth files into `auth/` and returns that directory.
    pub fn write_auth(&self, auth: &AuthFiles) -> String {
        let dir = self.path().join("auth");
        std::fs::create_dir_all(&dir).expect("auth dir");
        for (name, text) in auth.files() {
            std::fs::write(dir.join(name), text).expect("auth file");
        }
        dir.display().to_string()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path
    }

    /// Runs the gateway container's own start script (all but its final `exec nginx`)
    /// in this directory, as a pod with `resolv_conf` and these address `families`
    /// would; returns the `resolver.conf` it wrote.
    pub fn run_start_script(
        &self,
        product: Product,
        options: &NginxOptions,
        resolv_conf: &str,
        families: Families,
    ) -> String {
        assert_eq!(
            options.runtime_dir,
            self.runtime_dir(),
            "nginx reads this dir"
        );
        let resolv_conf = self.write("resolv.conf", resolv_conf);
        let if_inet6 = self.write("if_inet6", families.if_inet6());
        let output = Command::new("sh")
            .arg("-ec")
            .arg(nginx::start_script(product, options))
            .env("RUNTIME_DIR", self.path())
            .env("RESOLV_CONF", &resolv_conf)
            .env("IF_INET6", &if_inet6)
            .output()
            .expect("run the start script");
        assert!(
            output.status.success(),
            "start script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read_to_string(self.path().join("resolver.conf")).expect("resolver.conf written")
    }

    /// A fresh self-signed certificate and key for `localhost`.
    pub fn self_signed_tls(&self) -> TlsFiles {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("self-signed certificate");
        let certificate = self.write("tls.crt", &generated.cert.pem());
        let key = self.write("tls.key", &generated.signing_key.serialize_pem());
        TlsFiles {
            certificate: certificate.display().to_string(),
            key: key.display().to_string(),
        }
    }

    /// `nginx -t` on a configuration file with this directory as the prefix: nginx's
    /// output, as the error when the test fails.
    pub fn nginx_t(&self, conf: &Path) -> Result<String, String> {
        let output = Command::new(nginx_binary())
            .args(["-t", "-q", "-e", "stderr", "-p"])
            .arg(self.path())
            .arg("-c")
            .arg(conf)
            .output()
            .expect("run nginx -t");
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

/// A running nginx, stopped when dropped.
struct NginxProcess {
    child: Child,
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers, which would otherwise
        // live on holding the ports.
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$1\"", "sh"])
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a stub upstream received, as it answers it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Echo {
    pub role: String,
    pub method: String,
    /// The request target as it arrived: path and query.
    pub uri: String,
    /// Every `X-Scope-OrgID` header value, in order.
    pub tenants: Vec<String>,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    /// The `Authorization` header, if one reached the upstream.
    #[serde(default)]
    pub authorization: Option<String>,
}

/// The requests the stubs of one gateway received, in order.
#[derive(Debug, Clone, Default)]
pub struct Hits(Arc<Mutex<Vec<Echo>>>);

impl Hits {
    fn record(&self, echo: Echo) {
        self.0.lock().expect("hits lock").push(echo);
    }

    pub fn count(&self) -> usize {
        self.0.lock().expect("hits lock").len()
    }
}

/// nginx running the gateway configuration of `product` for some pool layout, on
/// loopback ports, with a stub upstream for every (present role, worker port).
pub struct Gateway {
    pub product: Product,
    /// The loopback address of this gateway alone (127.x.y.z): its stubs and nginx bind
    /// there, so no other test can take a port it probed free and released.
    address: IpAddr,
    pub present: BTreeSet<&'static str>,
    pub hits: Hits,
    /// Catalogue port (and STATUS_PORT) → the loopback port nginx listens on.
    ports: BTreeMap<u16, u16>,
    conf: String,
    // Declared before the workspace: nginx stops before its directory goes.
    nginx: NginxProcess,
    workspace: Workspace,
}

impl Gateway {
    /// Starts stubs and nginx for pools with these role toggles, on IPv4 loopback.
    pub async fn start(product: Product, toggles: &[&str]) -> Gateway {
        Self::start_in(product, toggles, Families::Ipv4Only).await
    }

    /// Starts stubs and nginx for pools with these role toggles, in a pod with these
    /// address families: with IPv6, nginx listens on `::1` too.
    pub async fn start_in(product: Product, toggles: &[&str], families: Families) -> Gateway {
        Self::start_with(product, toggles, families, None).await
    }

    /// Starts a multi-tenant gateway that authenticates with `auth` (written where the
    /// auth Secret would be mounted).
    pub async fn start_multi_tenant(
        product: Product,
        toggles: &[&str],
        auth: &AuthFiles,
    ) -> Gateway {
        Self::start_with(product, toggles, Families::Ipv4Only, Some(auth)).await
    }

    async fn start_with(
        product: Product,
        toggles: &[&str],
        families: Families,
        auth: Option<&AuthFiles>,
    ) -> Gateway {
        let workspace = Workspace::new();
        let auth_dir = auth.map(|files| workspace.write_auth(files));
        let present = expand(product, toggles);
        let hits = Hits::default();
        let address = own_loopback_address();
        let upstreams = start_stubs(product, &present, &hits, address).await;

        let mut last_failure = String::new();
        // A port found free can be taken by another process before nginx binds it: retry.
        for _ in 0..5 {
            let ports = free_ports(product, address, families);
            let options = NginxOptions {
                upstreams: Upstreams::Static(upstreams.clone()),
                resolver_file: true,
                tls: None,
                listen_address: Some(address.to_string()),
                ipv6_address: Some("[::1]".into()),
                port_map: ports.clone(),
                runtime_dir: workspace.runtime_dir(),
                auth_dir: auth_dir.clone(),
            };
            workspace.run_start_script(product, &options, SAMPLE_RESOLV_CONF, families);
            let conf = nginx::render(product, &present, &options);
            let conf_path = workspace.write("nginx.conf", &conf);
            let mut nginx = spawn_nginx(&workspace, &conf_path);
            match wait_until_serving(&mut nginx, address, ports[&STATUS_PORT], &workspace).await {
                Ok(()) => {
                    return Gateway {
                        product,
                        address,
                        present,
                        hits,
                        ports,
                        conf,
                        nginx,
                        workspace,
                    };
                }
                Err(log) if log.contains("Address already in use") => last_failure = log,
                Err(log) if log.contains("Cannot assign requested address") => {
                    panic!("this host has no IPv6 loopback (::1), which the test needs: {log}")
                }
                Err(log) => panic!("nginx did not start: {log}\n--- nginx.conf ---\n{conf}"),
            }
        }
        panic!("nginx could not bind free ports: {last_failure}")
    }

    /// The loopback port for a catalogue port (or STATUS_PORT).
    pub fn port(&self, catalogue_port: u16) -> u16 {
        *self
            .ports
            .get(&catalogue_port)
            .unwrap_or_else(|| panic!("{} has no port {catalogue_port}", self.product))
    }

    /// The IPv4 loopback address nginx listens on.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Sends `request` to nginx's listener for `catalogue_port` (or STATUS_PORT).
    pub async fn send(&self, catalogue_port: u16, request: Request) -> Reply {
        send_to(self.address, self.port(catalogue_port), request).await
    }

    /// [`grpc_health_check_to`] through nginx's listener for `catalogue_port`.
    pub async fn grpc_health_check(
        &self,
        catalogue_port: u16,
        service: &str,
        tenant: Option<&str>,
    ) -> Result<ServingStatus, tonic::Status> {
        grpc_health_check_to(self.address, self.port(catalogue_port), service, tenant).await
    }

    /// The configuration and nginx's logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let read = |name: &str| {
            std::fs::read_to_string(self.workspace.path().join(name)).unwrap_or_default()
        };
        format!(
            "--- nginx.conf ---\n{}\n--- nginx stderr ---\n{}\n--- access log ---\n{}",
            self.conf,
            read("stderr.log"),
            read("stdout.log")
        )
    }

    /// nginx's process id (for tests that check it is gone).
    pub fn pid(&self) -> u32 {
        self.nginx.child.id()
    }

    /// Replaces the auth files, as a new auth Secret would, and tells nginx to load them
    /// (SIGHUP: new workers start with the new maps, old ones finish their requests).
    pub fn rotate(&self, auth: &AuthFiles) {
        self.workspace.write_auth(auth);
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP nginx");
    }
}

fn spawn_nginx(workspace: &Workspace, conf: &Path) -> NginxProcess {
    let log =
        |name: &str| std::fs::File::create(workspace.path().join(name)).expect("nginx log file");
    let child = Command::new(nginx_binary())
        .args(["-e", "stderr", "-g", "daemon off;", "-p"])
        .arg(workspace.path())
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(log("stdout.log"))
        .stderr(log("stderr.log"))
        .spawn()
        .expect("start nginx");
    NginxProcess { child }
}

/// Waits until nginx answers its health check; nginx's log when it exits first.
async fn wait_until_serving(
    nginx: &mut NginxProcess,
    address: IpAddr,
    status_port: u16,
    workspace: &Workspace,
) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log =
                std::fs::read_to_string(workspace.path().join("stderr.log")).unwrap_or_default();
            return Err(format!("nginx exited ({status}): {log}"));
        }
        if let Ok(reply) = try_send_to(address, status_port, Request::get("/healthz")).await
            && reply.status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("nginx did not answer /healthz in time".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address no other gateway of this process uses: Linux answers on all of
/// 127.0.0.0/8. Ports probed free on it cannot be taken by another test in between,
/// since every other test binds its own address.
fn own_loopback_address() -> IpAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let process = (std::process::id() % 200) as u8;
    IpAddr::V4(Ipv4Addr::new(
        127,
        process + 20,
        (n / 250 % 250) as u8,
        (n % 250) as u8 + 2,
    ))
}

/// One free port on `address` per gateway listener and for the status server, all
/// distinct; with IPv6, free on `::1` too (which every gateway shares).
fn free_ports(product: Product, address: IpAddr, families: Families) -> BTreeMap<u16, u16> {
    let wanted: Vec<u16> = product
        .catalogue()
        .listeners
        .iter()
        .map(|l| l.port)
        .chain([STATUS_PORT])
        .collect();
    // Hold every probe socket until all are chosen, so no port is handed out twice.
    let mut probes = Vec::new();
    let mut chosen = BTreeMap::new();
    for port in wanted {
        loop {
            let probe = std::net::TcpListener::bind((address, 0)).expect("probe a free port");
            let free = probe.local_addr().expect("probe address").port();
            let v6 = match families {
                Families::Ipv4Only => None,
                Families::WithIpv6 => match std::net::TcpListener::bind((LOOPBACK_V6, free)) {
                    Ok(v6) => Some(v6),
                    Err(_) => continue,
                },
            };
            probes.push((probe, v6));
            chosen.insert(port, free);
            break;
        }
    }
    chosen
}

/// A stub per (present role, worker port): HTTP ones echo the request, gRPC ones serve
/// the standard health service reporting only their own role as SERVING.
async fn start_stubs(
    product: Product,
    present: &BTreeSet<&'static str>,
    hits: &Hits,
    address: IpAddr,
) -> BTreeMap<(String, u16), String> {
    let worker_ports: BTreeMap<u16, Protocol> = product
        .catalogue()
        .listeners
        .iter()
        .map(|l| (l.upstream_port, l.protocol))
        .collect();
    let mut upstreams = BTreeMap::new();
    for (&worker_port, &protocol) in &worker_ports {
        for &role in present {
            let listener = TcpListener::bind((address, 0)).await.expect("stub port");
            let address = listener.local_addr().expect("stub address");
            match protocol {
                Protocol::Http => {
                    tokio::spawn(serve_http_stub(listener, role, hits.clone()));
                }
                Protocol::Grpc => {
                    tokio::spawn(serve_grpc_stub(listener, role));
                }
            }
            upstreams.insert((role.to_string(), worker_port), address.to_string());
        }
    }
    upstreams
}

async fn serve_http_stub(listener: TcpListener, role: &'static str, hits: Hits) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(answer_http(stream, role, hits.clone()));
    }
}

async fn answer_http(mut stream: TcpStream, role: &'static str, hits: Hits) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut stream).await?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let uri = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines.filter_map(parse_header).collect();
    let content_length: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < content_length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }

    let echo = Echo {
        role: role.to_string(),
        method,
        uri,
        tenants: headers
            .iter()
            .filter(|(name, _)| name == "x-scope-orgid")
            .map(|(_, value)| value.clone())
            .collect(),
        upgrade: header(&headers, "upgrade").map(str::to_string),
        connection: header(&headers, "connection").map(str::to_string),
        authorization: header(&headers, "authorization").map(str::to_string),
    };
    hits.record(echo.clone());
    let json = serde_json::to_string(&echo).expect("echo as JSON");
    let websocket = echo
        .upgrade
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let response = if websocket {
        // Switch protocols, then send the echo through the tunnel nginx now holds open.
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{json}"
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn serve_grpc_stub(listener: TcpListener, role: &'static str) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(role, tonic_health::ServingStatus::Serving)
        .await;
    let _ = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await;
}

/// Reads up to the end of the header block; returns it and any body bytes read with it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            return Ok((head, buffer[end + 4..].to_vec()));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn parse_header(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An HTTP/1.1 request, written out byte for byte as given.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Request {
    pub fn get(target: &str) -> Self {
        Self {
            method: "GET",
            target: target.to_string(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        if method == "POST" && self.body.is_empty() {
            self.body = "{}".into();
        }
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// A websocket handshake, as Loki's tail clients send it.
    pub fn websocket(self) -> Self {
        self.header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: gateway.test\r\n",
            self.method, self.target
        );
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
        {
            text.push_str("Connection: close\r\n");
        }
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            text.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        text.push_str("\r\n");
        text.push_str(&self.body);
        text.into_bytes()
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// What the stub that answered received; `None` when nginx answered itself.
    pub fn echo(&self) -> Option<Echo> {
        serde_json::from_str(&self.body).ok()
    }
}

/// IPv6 loopback, where gateways started [`Families::WithIpv6`] listen too.
pub const LOOPBACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Sends `request` to nginx on `address`:`port` and reads the reply.
pub async fn send_to(address: IpAddr, port: u16, request: Request) -> Reply {
    let description = format!(
        "{} {} on {address} port {port}",
        request.method, request.target
    );
    try_send_to(address, port, request)
        .await
        .unwrap_or_else(|e| panic!("{description}: {e}"))
}

/// Like [`send_to`], but the error when the exchange fails (a refused connection).
pub async fn try_send_to(address: IpAddr, port: u16, request: Request) -> std::io::Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect((address, port)).await?;
        stream.write_all(&request.to_bytes()).await?;
        let (head, mut body) = read_head(&mut stream).await?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line: {head:?}")))?;
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(parse_header)
            .collect();
        match header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            // A websocket request asks to keep the connection, so nginx may keep it open
            // after a response that refuses the upgrade: read what the response says.
            Some(length) if status != 101 => {
                while body.len() < length {
                    let mut chunk = [0u8; 8192];
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
            }
            // Through a websocket tunnel, or without a length: up to the connection's end.
            _ => {
                stream.read_to_end(&mut body).await?;
            }
        }
        Ok::<_, std::io::Error>(Reply {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// grpc.health.v1.Health/Check(`service`) through nginx on `address`:`port`, with an
/// `x-scope-orgid` metadata entry when a tenant is given.
pub async fn grpc_health_check_to(
    address: IpAddr,
    port: u16,
    service: &str,
    tenant: Option<&str>,
) -> Result<ServingStatus, tonic::Status> {
    let call = async {
        let endpoint = format!("http://{}", std::net::SocketAddr::new(address, port));
        let channel = tonic::transport::Channel::from_shared(endpoint)
            .expect("channel address")
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.to_string(),
        });
        if let Some(tenant) = tenant {
            let value = tenant.parse().expect("tenant as gRPC metadata");
            request.metadata_mut().insert("x-scope-orgid", value);
        }
        let reply = HealthClient::new(channel).check(request).await?;
        Ok(reply.into_inner().status())
    };
    tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")))
}
