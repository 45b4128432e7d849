//! Logs, metrics and the small HTTP server for `/metrics`, `/healthz` and `/readyz`.

mod api_requests;
mod health;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use api_requests::{ApiRequestLabels, CountRequests, classify};
pub use health::{
    ControllerProgress, DEFAULT_STALL_TIMEOUT, FAILING_WINDOW, Progress, Reconciling, Watch,
};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging to stderr; `RUST_LOG` filters (default: info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The controller the watch feeds.
    pub controller: &'static str,
    /// The watched kind.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `s3`, `gcs`, `azure`.
    pub backend: &'static str,
    /// `BucketVerified`, or the failure's reason (`AccessDenied`, ...).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub condition: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    /// 1 when a custom resource's condition is True, else 0.
    pub conditions: Family<ConditionLabels, Gauge>,
    pub watch_errors: Family<WatchLabels, Counter>,
    pub watch_lists: Family<WatchLabels, Counter>,
    /// Seconds since a watch's last event (or its start), set when scraped.
    pub watch_event_age: Family<WatchLabels, Gauge<f64, AtomicU64>>,
    /// Requests sent to the API server, by verb and resource.
    pub api_requests: Family<ApiRequestLabels, Counter>,
    /// Storage probes, by backend and result.
    pub storage_probes: Family<ProbeLabels, Counter>,
    /// Time a storage probe took, by backend and result.
    pub storage_probe_duration: Family<ProbeLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lgtm_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let conditions = Family::<ConditionLabels, Gauge>::default();
        let watch_errors = Family::<WatchLabels, Counter>::default();
        let watch_lists = Family::<WatchLabels, Counter>::default();
        let watch_event_age = Family::<WatchLabels, Gauge<f64, AtomicU64>>::default();
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        let storage_probes = Family::<ProbeLabels, Counter>::default();
        let storage_probe_duration = Family::<ProbeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 13))
        });
        registry.register("reconciles", "Reconciles finished", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        registry.register(
            "condition",
            "Conditions of the custom resources: 1 when True",
            conditions.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of a watch (each is retried after a backoff of that watch alone)",
            watch_errors.clone(),
        );
        registry.register(
            "watch_lists",
            "Complete lists of a watched kind: the first, and each relist after an expired watch (410 Gone)",
            watch_lists.clone(),
        );
        registry.register(
            "watch_seconds_since_last_event",
            "Seconds since a watch delivered its last event or finished a list (since its start before the first); a quiet kind grows, a failing one is also in watch_errors",
            watch_event_age.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb and resource",
            api_requests.clone(),
        );
        registry.register(
            "storage_probes",
            "Storage probes (write, read, list, delete of one object), by backend and result",
            storage_probes.clone(),
        );
        registry.register(
            "storage_probe_duration_seconds",
            "Time a storage probe took, by backend and result",
            storage_probe_duration.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            conditions,
            watch_errors,
            watch_lists,
            watch_event_age,
            api_requests,
            storage_probes,
            storage_probe_duration,
        }
    }
}

impl Metrics {
    /// Starts timing a reconcile; the returned guard counts it and records its duration
    /// when dropped, i.e. when the reconcile is over.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileGuard {
        let labels = ControllerLabels { controller };
        ReconcileGuard {
            histogram: self.duration.get_or_create(&labels).clone(),
            counter: self.reconciles.get_or_create(&labels).clone(),
            start: std::time::Instant::now(),
        }
    }

    /// Reconciles of `controller` finished so far.
    pub fn reconciles_finished(&self, controller: &'static str) -> u64 {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .get()
    }

    pub fn failed(&self, controller: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, reason })
            .inc();
    }

    /// Sets the gauges of an object's conditions.
    pub fn set_conditions(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) {
        for condition in conditions {
            let labels = ConditionLabels {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                condition: condition.type_.clone(),
            };
            self.conditions
                .get_or_create(&labels)
                .set(i64::from(condition.status == "True"));
        }
    }

    /// A layer for the kube client that counts its requests into these metrics.
    pub fn count_api_requests(&self) -> CountRequests {
        CountRequests {
            counters: self.api_requests.clone(),
        }
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Counts a reconcile and observes its duration when dropped.
pub struct ReconcileGuard {
    histogram: Histogram,
    counter: Counter,
    start: std::time::Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
        self.counter.inc();
    }
}

/// What the controllers report to and the HTTP handlers read: metrics, and the progress
/// that `/readyz` and `/healthz` judge.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub progress: Arc<Progress>,
}

impl Health {
    /// A fresh record whose controllers count as stalled after `stall_timeout`.
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            metrics: Arc::default(),
            progress: Arc::new(Progress::new(stall_timeout)),
        }
    }

    /// Whether `/readyz` answers 200 now.
    pub fn ready(&self) -> bool {
        self.progress.readiness(Instant::now()).is_ok()
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    health
        .progress
        .refresh_metrics(&health.metrics, Instant::now());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

/// 200 "ok", or 503 with the reason.
fn verdict(outcome: Result<(), String>) -> (StatusCode, String) {
    match outcome {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    verdict(health.progress.readiness(Instant::now()))
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let outcome = health.progress.liveness(Instant::now());
    if let Err(reason) = &outcome {
        tracing::error!(%reason, "not live: Kubernetes should restart this process");
    }
    verdict(outcome)
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve(
    address: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(address).await?;
    // The bound address: with port 0 the system picks one, and tests read it here.
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The backoff before retrying a reconcile that failed `failures` times in a row.
pub fn backoff(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(5), Duration::from_secs(160));
        assert_eq!(backoff(6), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }

    #[test]
    fn metrics_are_exposed_with_their_labels() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started("cluster"));
        metrics.failed("cluster", "apply");
        let text = metrics.encode();
        assert!(
            text.contains("lgtm_operator_reconciles_total{controller=\"cluster\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "lgtm_operator_reconcile_failures_total{controller=\"cluster\",reason=\"apply\"} 1"
        ));
        assert!(
            text.contains(
                "lgtm_operator_reconcile_duration_seconds_count{controller=\"cluster\"} 1"
            )
        );
    }
}
