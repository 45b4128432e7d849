//! `make bench`, convergence: the release operator against the local control plane (the
//! real API server, kube-controller-manager and kwok's nodes), N Mimir clusters of three
//! pools applied at once. Prints one table, each row with its target and verdict, and
//! writes it to `target/bench/convergence.md`. A benchmark, not a test: nothing here
//! fails a build; the verdicts are for people.
//!
//! `BENCH_SIZES` (default `1,10,100`) and `BENCH_MEMORY_CLUSTERS` (default 300; 0 skips
//! that round) choose the rounds; `BENCH_OPERATOR_ARGS` adds flags to the operator.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::ListParams;
use lgtm_operator::api::GrafanaCluster;
use support::{OperatorProcess, TestNamespace, kubectl_ok};

/// Pools per cluster: the Mimir read / write / backend layout of the samples, one
/// replica each so that 300 clusters fit on kwok's nodes of a 2-core machine.
const POOLS: [(&str, &str); 3] = [
    ("read", "{mimir: {read: true}}"),
    ("write", "{mimir: {write: true}}"),
    ("backend", "{mimir: {backend: true}}"),
];
/// How long a round may take to converge before it is reported as not converged.
const ROUND_TIMEOUT: Duration = Duration::from_secs(900);

struct Row {
    what: String,
    measured: String,
    target: String,
    /// `None`: informational, no target.
    met: Option<bool>,
}

fn row(
    what: impl Into<String>,
    measured: impl Into<String>,
    target: &str,
    met: Option<bool>,
) -> Row {
    Row {
        what: what.into(),
        measured: measured.into(),
        target: target.into(),
        met,
    }
}

/// The manifests of `n` clusters (and the Secret they share), as one YAML stream.
fn manifests(n: usize) -> String {
    let mut out = String::from(support::CREDENTIALS);
    for i in 0..n {
        let cluster = format!("m{i:03}");
        out.push_str("---\n");
        out.push_str(&support::cluster_yaml(&cluster, "mimir", ""));
        for (pool, roles) in POOLS {
            out.push_str("---\n");
            out.push_str(&support::pool_yaml(
                &format!("{cluster}-{pool}"),
                &cluster,
                1,
                roles,
            ));
        }
    }
    out
}

/// `kubectl apply --server-side` of `file` into `ns`, as a user runs it; its duration.
async fn user_apply(ns: &str, file: &Path) -> Duration {
    let start = Instant::now();
    kubectl_ok([
        "apply",
        "--server-side",
        "-n",
        ns,
        "-f",
        file.to_str().expect("utf-8"),
    ])
    .await;
    start.elapsed()
}

/// How many clusters have condition `type_` True.
fn count_true(clusters: &[GrafanaCluster], type_: &str) -> usize {
    clusters
        .iter()
        .filter(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|k| k.type_ == type_ && k.status == "True")
            })
        })
        .count()
}

/// The operator's metrics, as `name{labels} -> value`.
async fn scrape(operator: &OperatorProcess) -> BTreeMap<String, f64> {
    let (_, text) = operator.get("/metrics").await.unwrap_or_default();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples whose key starts with `prefix` and contains every `labels`.
fn sum(metrics: &BTreeMap<String, f64>, prefix: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

/// API requests sent by the operator between two scrapes, by verb.
fn requests_by_verb(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let mut verbs = BTreeMap::new();
    for (key, value) in after {
        let Some(rest) = key.strip_prefix("lgtm_operator_api_requests_total{") else {
            continue;
        };
        let verb = rest
            .split(',')
            .find_map(|l| l.strip_prefix("verb=\""))
            .and_then(|v| v.strip_suffix('"').or(v.strip_suffix("\"}")))
            .unwrap_or("?")
            .trim_end_matches(['"', '}'])
            .to_string();
        let status = if key.contains("/status\"") {
            "/status"
        } else {
            ""
        };
        *verbs.entry(format!("{verb}{status}")).or_insert(0.0) +=
            value - before.get(key).copied().unwrap_or(0.0);
    }
    verbs.retain(|_, v| *v > 0.0);
    verbs
}

/// The `q` quantile of the reconcile durations, from the histogram buckets (an upper
/// bound: the bucket's edge).
fn quantile(metrics: &BTreeMap<String, f64>, q: f64) -> Option<f64> {
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for (key, value) in metrics {
        if !key.starts_with("lgtm_operator_reconcile_duration_seconds_bucket{") {
            continue;
        }
        let le = key.split("le=\"").nth(1)?.split('"').next()?;
        let edge = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        *buckets.entry(edge.to_bits()).or_insert(0.0) += value;
    }
    let mut edges: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(k, v)| (f64::from_bits(k), v))
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = edges.last()?.1;
    edges
        .into_iter()
        .find(|(_, count)| *count >= q * total)
        .map(|(edge, _)| edge)
}

/// Waits until the operator's reconcile count has not moved for five seconds.
async fn settled(operator: &OperatorProcess) {
    let mut last = -1.0;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let now = sum(
            &scrape(operator).await,
            "lgtm_operator_reconciles_total",
            &[],
        );
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(5) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The floor: one server-side apply of the children the operator would create for the
/// same manifests (rendered offline), plus their readiness.
async fn floor(client: &kube::Client, manifests: &Path) -> Duration {
    let ns = TestNamespace::new(client, "bench-floor").await;
    let rendered = std::process::Command::new(env!("CARGO_BIN_EXE_lgtm-operator"))
        .args([
            "render",
            "-n",
            ns.name(),
            "-f",
            manifests.to_str().expect("utf-8"),
        ])
        .output()
        .expect("render");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let dir = tempfile::tempdir().expect("tmp");
    let children = dir.path().join("children.yaml");
    std::fs::write(&children, &rendered.stdout).expect("write");
    let start = Instant::now();
    user_apply(ns.name(), &children).await;
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while Instant::now() < deadline {
        let deployments = ns
            .api::<Deployment>()
            .list(&ListParams::default())
            .await
            .expect("list");
        let statefulsets = ns
            .api::<StatefulSet>()
            .list(&ListParams::default())
            .await
            .expect("list");
        let ready = deployments.items.iter().all(|d| {
            let s = d.status.clone().unwrap_or_default();
            s.ready_replicas.unwrap_or(0) >= d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        }) && statefulsets.items.iter().all(|d| {
            let s = d.status.clone().unwrap_or_default();
            s.ready_replicas.unwrap_or(0) >= d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        });
        if ready && !deployments.items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = start.elapsed();
    drain(client, ns).await;
    elapsed
}

/// Deletes a namespace and waits until it is gone, so that the next round starts on a
/// quiet control plane.
async fn drain(client: &kube::Client, ns: TestNamespace) {
    use k8s_openapi::api::core::v1::Namespace;
    let name = ns.name().to_string();
    ns.cleanup().await;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if namespaces.get_opt(&name).await.ok().flatten().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("namespace {name} still terminating after 10 minutes");
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One round: `n` clusters applied at once while the operator runs.
async fn convergence(client: &kube::Client, n: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("clusters.yaml");
    std::fs::write(&file, manifests(n)).expect("write manifests");
    let floor_time = floor(client, &file).await;

    let ns = TestNamespace::new(client, "bench").await;
    let kubeconfig = support::kubeconfig_path();
    let args = operator_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = OperatorProcess::start(kubeconfig, ns.name(), &args).await;
    while operator.get("/readyz").await.map(|(s, _)| s).unwrap_or(0) != 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = scrape(&operator).await;
    let start = Instant::now();
    let apply_time = user_apply(ns.name(), &file).await;
    let clusters = ns.api::<GrafanaCluster>();
    let (mut consistent_at, mut available_at) = (None, None);
    while available_at.is_none() && start.elapsed() < ROUND_TIMEOUT {
        let list = clusters
            .list(&ListParams::default())
            .await
            .expect("list clusters")
            .items;
        if consistent_at.is_none() && count_true(&list, "Consistent") == n {
            consistent_at = Some(start.elapsed());
        }
        if count_true(&list, "Available") == n {
            available_at = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    settled(&operator).await;
    let after = scrape(&operator).await;

    // A no-op resync: every cluster and pool touched (an annotation the operator does
    // not read) triggers a full reconcile of each; none should write.
    for kind in ["grafanacluster", "workerpool"] {
        kubectl_ok([
            "annotate",
            "-n",
            ns.name(),
            kind,
            "--all",
            "bench/touched=1",
            "--overwrite",
        ])
        .await;
    }
    settled(&operator).await;
    let resync = scrape(&operator).await;
    let rss = rss_mib(operator.pid());
    drop(operator);
    drain(client, ns).await;

    let delta = |key: &str, labels: &[&str]| sum(&after, key, labels) - sum(&before, key, labels);
    let cluster_reconciles = delta("lgtm_operator_reconciles_total", &["grafanacluster"]);
    let pool_reconciles = delta("lgtm_operator_reconciles_total", &["workerpool"]);
    let verbs = requests_by_verb(&before, &after);
    let total: f64 = verbs
        .iter()
        .filter(|(v, _)| *v != "watch")
        .map(|(_, c)| c)
        .sum();
    let status_writes: f64 = verbs
        .iter()
        .filter(|(v, _)| v.ends_with("/status"))
        .map(|(_, c)| c)
        .sum();
    let children_per_cluster = 30.0;
    let per_cluster = (total - status_writes) / n as f64;
    let reads =
        verbs.get("get").copied().unwrap_or(0.0) + verbs.get("list").copied().unwrap_or(0.0);
    let lists = verbs.get("list").copied().unwrap_or(0.0);
    let resync_verbs = requests_by_verb(&after, &resync);
    let resync_writes: f64 = resync_verbs
        .iter()
        .filter(|(v, _)| !matches!(v.as_str(), "get" | "list" | "watch"))
        .map(|(_, c)| c)
        .sum::<f64>()
        + 0.0; // an empty float sum is -0.0
    let mut rows = vec![];
    let label = format!("N={n}");
    match available_at {
        Some(available) => {
            let consistent = consistent_at.unwrap_or(available);
            rows.push(row(
                format!("{label}: all Consistent / all Available"),
                format!("{} / {}", secs(consistent), secs(available)),
                "",
                None,
            ));
            rows.push(row(
                format!("{label}: floor (apply of the rendered children + readiness)"),
                format!(
                    "{} (operator {:.2}×)",
                    secs(floor_time),
                    available.as_secs_f64() / floor_time.as_secs_f64()
                ),
                "≤ 2× floor",
                Some(available.as_secs_f64() <= 2.0 * floor_time.as_secs_f64()),
            ));
        }
        None => rows.push(row(
            format!("{label}: all Available"),
            "not within 15 min",
            "",
            Some(false),
        )),
    }
    rows.push(row(
        format!("{label}: reconciles per cluster / per pool"),
        format!(
            "{:.1} / {:.1}",
            cluster_reconciles / n as f64,
            pool_reconciles / (3 * n) as f64
        ),
        "≤ 3 each",
        Some(cluster_reconciles / n as f64 <= 3.0 && pool_reconciles / (3 * n) as f64 <= 3.0),
    ));
    let by_verb = verbs
        .iter()
        .filter(|(v, _)| *v != "watch")
        .map(|(v, c)| format!("{v} {:.1}", c / n as f64))
        .collect::<Vec<_>>()
        .join(", ");
    rows.push(row(
        format!("{label}: API requests per new cluster ({children_per_cluster} children), by verb"),
        format!(
            "{per_cluster:.1} + {:.1} status writes ({by_verb})",
            status_writes / n as f64
        ),
        "≤ 60 + status writes",
        Some(per_cluster <= 2.0 * children_per_cluster),
    ));
    rows.push(row(
        format!("{label}: API reads per reconcile; lists after start"),
        format!(
            "{:.2}; {lists}",
            reads / (cluster_reconciles + pool_reconciles).max(1.0)
        ),
        "no list",
        Some(lists == 0.0),
    ));
    rows.push(row(
        format!("{label}: writes during a no-op resync of every cluster and pool"),
        format!("{resync_writes:.0}"),
        "0",
        Some(resync_writes == 0.0),
    ));
    // A histogram bounds a quantile by a bucket's upper edge; the last bucket has none.
    let bound = |q: f64| match quantile(&after, q) {
        Some(edge) if edge.is_finite() => format!("≤ {edge:.3} s"),
        Some(_) => "> 10.24 s".to_string(),
        None => "-".to_string(),
    };
    rows.push(row(
        format!("{label}: reconcile latency p50 / p99 (bucket edge)"),
        format!("{} / {}", bound(0.5), bound(0.99)),
        "",
        None,
    ));
    rows.push(row(
        format!("{label}: operator resident memory"),
        format!("{rss:.1} MiB"),
        "",
        None,
    ));
    rows.push(row(
        format!("{label}: the user's apply, operator running"),
        secs(apply_time),
        "",
        None,
    ));
    rows
}

/// The starvation row: the user's apply of `n` clusters' manifests with the operator
/// running (measured in the round) against the same apply with no operator watching.
async fn starvation(client: &kube::Client, n: usize, with_operator: Duration) -> Row {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("clusters.yaml");
    std::fs::write(&file, manifests(n)).expect("write manifests");
    let ns = TestNamespace::new(client, "bench-idle").await;
    let alone = user_apply(ns.name(), &file).await;
    drain(client, ns).await;
    let ratio = with_operator.as_secs_f64() / alone.as_secs_f64();
    row(
        format!("N={n}: the user's apply with the operator running / stopped"),
        format!("{} / {} ({ratio:.2}×)", secs(with_operator), secs(alone)),
        "≤ 1.5×",
        Some(ratio <= 1.5),
    )
}

/// The memory round: `n` clusters converged, then the operator's resident memory.
async fn memory(client: &kube::Client, n: usize) -> Row {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("clusters.yaml");
    std::fs::write(&file, manifests(n)).expect("write manifests");
    let ns = TestNamespace::new(client, "bench-memory").await;
    let args = operator_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = OperatorProcess::start(support::kubeconfig_path(), ns.name(), &args).await;
    user_apply(ns.name(), &file).await;
    let clusters = ns.api::<GrafanaCluster>();
    let start = Instant::now();
    let mut consistent = 0;
    while start.elapsed() < ROUND_TIMEOUT {
        let list = clusters
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        consistent = count_true(&list, "Consistent");
        if consistent == n {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    settled(&operator).await;
    let rss = rss_mib(operator.pid());
    drop(operator);
    // The last round: its namespace goes away in the background.
    ns.cleanup().await;
    row(
        format!("operator resident memory at {n} clusters × 3 pools ({consistent} Consistent)"),
        format!("{rss:.1} MiB"),
        "≤ 64 MiB",
        Some(rss <= 64.0),
    )
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from("| measure | measured | target | verdict |\n|---|---|---|---|\n");
    for r in rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {verdict} |",
            r.what, r.measured, r.target
        );
    }
    out
}

/// Flags added to `lgtm-operator run` (`BENCH_OPERATOR_ARGS`, split on whitespace), to
/// compare settings such as `--debounce-ms` or `--concurrency`.
fn operator_args() -> Vec<String> {
    std::env::var("BENCH_OPERATOR_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn sizes(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let client = support::client().await;
    support::install_crds(&client).await;
    let mut rows = Vec::new();
    for n in sizes("BENCH_SIZES", "1,10,100") {
        eprintln!("convergence: {n} clusters …");
        let round = convergence(&client, n).await;
        let apply = round
            .iter()
            .find(|r| r.what.ends_with("the user's apply, operator running"))
            .and_then(|r| r.measured.trim_end_matches(" s").parse::<f64>().ok());
        rows.extend(round);
        if n >= 100
            && let Some(apply) = apply
        {
            rows.push(starvation(&client, n, Duration::from_secs_f64(apply)).await);
        }
        eprint!("{}", table(&rows));
    }
    for n in sizes("BENCH_MEMORY_CLUSTERS", "300") {
        eprintln!("memory: {n} clusters …");
        rows.push(memory(&client, n).await);
    }
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    let out = format!(
        "Convergence on the local control plane, release operator, {machine}, {}\n\n{}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d"),
        table(&rows)
    );
    println!("{out}");
    let dir = support::repo_root().join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("convergence.md"), out);
}
