//! The lgtm-operator binary: parses flags and starts things; the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lgtm_operator::controller::{self, LeaderElection, Options};
use lgtm_operator::offline;
use lgtm_operator::render::Settings;
use lgtm_operator::telemetry::{self, Health, LogFormat};

/// Runs Grafana Mimir, Loki and Tempo on Kubernetes as a coordinator and pools of workers.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// DNS domain of the Kubernetes cluster's Services.
    #[arg(
        long,
        env = "CLUSTER_DOMAIN",
        default_value = "cluster.local",
        global = true
    )]
    cluster_domain: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run {
        /// Watch only this namespace (every namespace when unset).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of the /metrics, /healthz and /readyz server.
        #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Log format.
        #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Reconcile only while holding a Lease, so that several replicas can run.
        #[arg(long, env = "LEADER_ELECT")]
        leader_elect: bool,
        /// Name of the Lease.
        #[arg(long, env = "LEASE_NAME", default_value = "lgtm-operator")]
        lease_name: String,
        /// Namespace of the Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Seconds the watch caches may take to fill before the operator exits (and
        /// Kubernetes restarts it).
        #[arg(long, env = "CACHE_SYNC_TIMEOUT_SECONDS", default_value_t = 120)]
        cache_sync_timeout_seconds: u64,
        /// Seconds a controller may leave a watch event unanswered, or run one reconcile,
        /// before /healthz fails (and Kubernetes restarts the operator).
        #[arg(long, env = "STALL_TIMEOUT_SECONDS", default_value_t = 300)]
        stall_timeout_seconds: u64,
        /// Seconds the API server keeps one watch request open; the watch then resumes
        /// from where it left off with a new request.
        #[arg(long, env = "WATCH_TIMEOUT_SECONDS", default_value_t = 290,
              value_parser = clap::value_parser!(u32).range(1..))]
        watch_timeout_seconds: u32,
        /// Objects each controller reconciles at once (0: no bound).
        #[arg(long, env = "RECONCILE_CONCURRENCY", default_value_t = controller::DEFAULT_CONCURRENCY)]
        concurrency: u16,
        /// Milliseconds a controller waits for more changes to an object before it
        /// reconciles it.
        #[arg(long, env = "RECONCILE_DEBOUNCE_MS",
              default_value_t = controller::DEFAULT_DEBOUNCE.as_millis() as u64)]
        debounce_ms: u64,
        /// Requests per second the operator may send to the API server (0: no limit),
        /// so that a burst of new clusters cannot crowd out other clients: measured at
        /// 100 new clusters, a user's apply took 8.6 times as long without the limit
        /// and 1.4 times with 50 (README, `make bench`).
        #[arg(long, env = "API_QPS", default_value_t = 50)]
        api_qps: u64,
    },
    /// Print every object the operator would create for the given manifests
    /// (GrafanaClusters, WorkerPools and, for checksums, Secrets), as YAML that
    /// `kubectl apply` accepts. Secret values are never printed.
    Render {
        /// Manifest files; `-` reads standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace of the manifests that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Render alert rules as a Prometheus Operator PrometheusRule (else a ConfigMap).
        #[arg(long)]
        prometheus_rules: bool,
        /// Render for a cluster whose pods have IPv6 addresses only.
        #[arg(long)]
        ipv6: bool,
    },
    /// Print the CustomResourceDefinitions.
    Crds,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings {
        cluster_domain: cli.cluster_domain,
    };
    // No subcommand runs the operator, with the flags' defaults and environment.
    let command = match cli.command {
        Some(command) => command,
        None => Cli::parse_from(["lgtm-operator", "run"])
            .command
            .context("`run` parses")?,
    };
    match command {
        Command::Run {
            namespace,
            listen,
            log_format,
            leader_elect,
            lease_name,
            lease_namespace,
            cache_sync_timeout_seconds,
            stall_timeout_seconds,
            watch_timeout_seconds,
            concurrency,
            debounce_ms,
            api_qps,
        } => {
            let lease = leader_elect.then(|| Lease {
                name: lease_name,
                namespace: lease_namespace,
                // The pod name is unique among replicas; the process id keeps two local
                // runs apart.
                identity: std::env::var("POD_NAME")
                    .unwrap_or_else(|_| format!("lgtm-operator-{}", std::process::id())),
            });
            let options = Options {
                namespace,
                settings,
                leader_election: None,
                cache_sync_timeout: Duration::from_secs(cache_sync_timeout_seconds),
                watch_timeout_seconds,
                concurrency,
                debounce: Duration::from_millis(debounce_ms),
            };
            let health = Health::new(Duration::from_secs(stall_timeout_seconds));
            run(listen, log_format, options, lease, api_qps, health).await
        }
        Command::Render {
            files,
            namespace,
            prometheus_rules,
            ipv6,
        } => render(
            &files,
            &namespace,
            &offline::Target {
                settings,
                prometheus_rules,
                ipv6,
            },
        ),
        Command::Crds => {
            for (_, yaml) in lgtm_operator::api::crd_manifests() {
                print!("---\n{yaml}");
            }
            Ok(())
        }
    }
}

/// The Lease to take part in leader election on, and this replica's identity.
struct Lease {
    name: String,
    namespace: String,
    identity: String,
}

async fn run(
    listen: SocketAddr,
    log_format: LogFormat,
    mut options: Options,
    lease: Option<Lease>,
    api_qps: u64,
    health: Health,
) -> anyhow::Result<()> {
    telemetry::init_logging(log_format);
    let config = kube::Config::infer()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    options.leader_election = lease.map(|lease| {
        LeaderElection::new(
            &lease.name,
            &lease.namespace,
            &lease.identity,
            config.clone(),
        )
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client from the configuration")?
        .with_layer(&tower::util::option_layer((api_qps > 0).then(|| {
            tower::limit::RateLimitLayer::new(api_qps, Duration::from_secs(1))
        })))
        .with_layer(&health.metrics.count_api_requests())
        .build();
    tracing::info!(
        namespace = options.namespace.as_deref().unwrap_or("<all>"),
        leader_election = options.leader_election.is_some(),
        "starting lgtm-operator"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(telemetry::serve(listen, health.clone(), async {
        let _ = stop_rx.await;
    }));
    let outcome = controller::run(client, options, health).await;
    let _ = stop_tx.send(());
    server
        .await
        .context("HTTP server task")?
        .context("HTTP server")?;
    // Losing the lease, caches that never fill or controllers that stop end the process
    // with an error, so Kubernetes restarts it.
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

fn render(files: &[PathBuf], namespace: &str, target: &offline::Target) -> anyhow::Result<()> {
    let mut inputs = offline::Inputs::new(namespace);
    for file in files {
        let (name, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading standard input")?;
            ("<stdin>".to_string(), text)
        } else {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            (file.display().to_string(), text)
        };
        for note in inputs.add(&name, &text)? {
            eprintln!("note: {note}");
        }
    }
    let rendered = offline::render(&inputs, target)?;
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    print!("{}", rendered.manifests);
    Ok(())
}
