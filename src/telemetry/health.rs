//! What `/readyz` and `/healthz` answer, judged from the progress of every watch and
//! controller.
//!
//! - **Ready** (`/readyz`): the watch caches filled (or this replica waits as a standby),
//!   and no watch is failing now. A watch is failing from an error until it delivers an
//!   event again, or until its retries have gone quiet for [`FAILING_WINDOW`]: a watch that
//!   resumes where it left off delivers nothing, so quiet after errors is its recovery.
//! - **Live** (`/healthz`): no controller has stopped, none has left a trigger unanswered
//!   longer than the stall timeout, and no reconcile has run that long. Watch errors alone
//!   never make the operator unlive: a restart would not bring the API server back, nor
//!   grant a permission that was revoked.
//!
//! Every judgement takes `now`, so the rules are tested without a clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::{Metrics, WatchLabels};

/// How long after its last error a watch counts as failing, unless it delivers an event
/// first: longer than the longest retry delay of a watch (with its jitter), so a watch that
/// still fails errors again within it (checked where the delay is set, controller/runtime).
pub const FAILING_WINDOW: Duration = Duration::from_secs(30);

/// The default for how long a controller may leave a trigger unanswered, or a reconcile
/// run, before the operator reports itself unlive.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The progress of every watch and controller of this process.
#[derive(Debug)]
pub struct Progress {
    stall_timeout: Duration,
    /// The watch caches filled, or this replica waits as a healthy standby.
    synced: AtomicBool,
    watches: Mutex<Vec<Arc<Watch>>>,
    controllers: Mutex<Vec<Arc<ControllerProgress>>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(DEFAULT_STALL_TIMEOUT)
    }
}

impl Progress {
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            stall_timeout,
            synced: AtomicBool::new(false),
            watches: Mutex::default(),
            controllers: Mutex::default(),
        }
    }

    /// Marks the caches filled (or a standby waiting), or not.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Relaxed);
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Registers a watch of `kind` that feeds `controller`.
    pub fn watch(&self, metrics: &Metrics, controller: &'static str, kind: &str) -> Arc<Watch> {
        let labels = WatchLabels {
            controller,
            kind: kind.to_string(),
        };
        let watch = Arc::new(Watch {
            errors: metrics.watch_errors.get_or_create(&labels).clone(),
            lists: metrics.watch_lists.get_or_create(&labels).clone(),
            labels,
            state: Mutex::new(WatchState {
                started: Instant::now(),
                ..WatchState::default()
            }),
        });
        lock(&self.watches).push(watch.clone());
        watch
    }

    /// Registers a controller.
    pub fn controller(&self, name: &'static str) -> Arc<ControllerProgress> {
        let controller = Arc::new(ControllerProgress {
            name,
            state: Mutex::default(),
        });
        lock(&self.controllers).push(controller.clone());
        controller
    }

    /// Why the operator is not ready, or `Ok` when it is.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        if !self.synced() {
            return Err("watch caches not synced yet".into());
        }
        let failing: Vec<String> = lock(&self.watches)
            .iter()
            .filter_map(|watch| watch.failing(now))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(format!("watches failing: {}", failing.join("; ")))
        }
    }

    /// Why the operator is not live, or `Ok` when it is.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        let problems: Vec<String> = lock(&self.controllers)
            .iter()
            .filter_map(|controller| controller.stalled(now, self.stall_timeout))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Sets the gauges that are ages (they change with the clock, not with events).
    pub fn refresh_metrics(&self, metrics: &Metrics, now: Instant) {
        for watch in lock(&self.watches).iter() {
            let state = lock(&watch.state);
            let since = state.last_event.unwrap_or(state.started);
            metrics
                .watch_event_age
                .get_or_create(&watch.labels)
                .set(now.saturating_duration_since(since).as_secs_f64());
        }
    }
}

/// One watch: the events and errors it delivered.
#[derive(Debug)]
pub struct Watch {
    labels: WatchLabels,
    errors: Counter,
    lists: Counter,
    state: Mutex<WatchState>,
}

#[derive(Debug, Clone)]
struct WatchState {
    started: Instant,
    last_event: Option<Instant>,
    last_error: Option<(Instant, String)>,
}

impl Default for WatchState {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_event: None,
            last_error: None,
        }
    }
}

impl Watch {
    /// `<controller> <kind>`, for logs.
    pub fn name(&self) -> String {
        format!("{} {}", self.labels.controller, self.labels.kind)
    }

    /// The watch delivered an event; `list_done` when it finished a (re)list.
    pub fn saw_event(&self, list_done: bool, now: Instant) {
        lock(&self.state).last_event = Some(now);
        if list_done {
            self.lists.inc();
        }
    }

    /// The watch failed; it retries on its own after a backoff.
    pub fn saw_error(&self, error: &str, now: Instant) {
        lock(&self.state).last_error = Some((now, error.to_string()));
        self.errors.inc();
    }

    /// What is failing, when the watch fails now.
    fn failing(&self, now: Instant) -> Option<String> {
        let state = lock(&self.state);
        let (at, error) = state.last_error.as_ref()?;
        let recovered = state.last_event.is_some_and(|event| event > *at);
        let quiet = now.saturating_duration_since(*at) >= FAILING_WINDOW;
        (!recovered && !quiet).then(|| format!("{}: {error}", self.name()))
    }
}

/// One controller: the triggers it was given and the reconciles it ran.
#[derive(Debug)]
pub struct ControllerProgress {
    name: &'static str,
    state: Mutex<ControllerState>,
}

#[derive(Debug, Default)]
struct ControllerState {
    /// The oldest trigger not yet followed by any reconcile outcome.
    unanswered_since: Option<Instant>,
    /// Reconciles under way: start and object, by a counter.
    in_flight: BTreeMap<u64, (Instant, String)>,
    next_id: u64,
    stopped: bool,
}

impl ControllerProgress {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A watch event that asks this controller to reconcile something.
    pub fn triggered(&self, now: Instant) {
        lock(&self.state).unanswered_since.get_or_insert(now);
    }

    /// The controller finished handling a request (a reconcile, or an object gone).
    pub fn answered(&self) {
        lock(&self.state).unanswered_since = None;
    }

    /// A reconcile of `object` starts; it counts as under way until the guard drops.
    pub fn reconciling(self: &Arc<Self>, object: String, now: Instant) -> Reconciling {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.in_flight.insert(id, (now, object));
        Reconciling {
            controller: self.clone(),
            id,
        }
    }

    /// The controller's stream ended.
    pub fn stopped(&self) {
        lock(&self.state).stopped = true;
    }

    /// What is stuck, when the controller is.
    fn stalled(&self, now: Instant, timeout: Duration) -> Option<String> {
        let state = lock(&self.state);
        let mut problem = String::new();
        if state.stopped {
            let _ = write!(problem, "controller {} stopped", self.name);
        } else if let Some(since) = state.unanswered_since
            && now.saturating_duration_since(since) > timeout
        {
            let _ = write!(
                problem,
                "controller {} has answered no trigger for {}s",
                self.name,
                now.saturating_duration_since(since).as_secs()
            );
        } else if let Some((since, object)) = state
            .in_flight
            .values()
            .min_by_key(|(since, _)| *since)
            .filter(|(since, _)| now.saturating_duration_since(*since) > timeout)
        {
            let _ = write!(
                problem,
                "controller {} has reconciled {object} for {}s",
                self.name,
                now.saturating_duration_since(*since).as_secs()
            );
        }
        (!problem.is_empty()).then_some(problem)
    }
}

/// A reconcile under way; dropping it ends it.
#[derive(Debug)]
pub struct Reconciling {
    controller: Arc<ControllerProgress>,
    id: u64,
}

impl Drop for Reconciling {
    fn drop(&mut self) {
        lock(&self.controller.state).in_flight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(300);

    fn after(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    fn synced_progress() -> (Progress, Metrics) {
        let progress = Progress::new(STALL);
        progress.set_synced(true);
        (progress, Metrics::default())
    }

    #[test]
    fn not_ready_until_the_caches_filled() {
        let progress = Progress::new(STALL);
        let now = Instant::now();
        assert_eq!(
            progress.readiness(now),
            Err("watch caches not synced yet".to_string())
        );
        progress.set_synced(true);
        assert_eq!(progress.readiness(now), Ok(()));
    }

    #[test]
    fn a_failing_watch_is_unready_until_it_delivers_an_event() {
        let (progress, metrics) = synced_progress();
        let watch = progress.watch(&metrics, "workerpool", "StatefulSet");
        let t0 = Instant::now();
        watch.saw_error("connection refused", t0);
        let unready = progress.readiness(after(t0, 10)).expect_err("failing");
        assert!(
            unready.contains("workerpool StatefulSet: connection refused"),
            "{unready}"
        );
        watch.saw_event(true, after(t0, 20));
        assert_eq!(progress.readiness(after(t0, 21)), Ok(()));
    }

    #[test]
    fn a_watch_whose_retries_went_quiet_counts_as_recovered() {
        // A watch that resumes where it left off delivers no event: quiet is recovery.
        let (progress, metrics) = synced_progress();
        let watch = progress.watch(&metrics, "grafanacluster", "Secret");
        let t0 = Instant::now();
        watch.saw_error("too old resource version", t0);
        assert!(progress.readiness(after(t0, 29)).is_err());
        assert_eq!(progress.readiness(after(t0, 30)), Ok(()));
    }

    #[test]
    fn watch_errors_never_make_the_operator_unlive() {
        let (progress, metrics) = synced_progress();
        let watch = progress.watch(&metrics, "grafanacluster", "Role");
        let t0 = Instant::now();
        for minute in 0..60 {
            watch.saw_error("forbidden", after(t0, minute * 60));
        }
        assert_eq!(progress.liveness(after(t0, 3600)), Ok(()));
    }

    #[test]
    fn a_trigger_left_unanswered_past_the_timeout_makes_the_operator_unlive() {
        let (progress, _) = synced_progress();
        let controller = progress.controller("workerpool");
        let t0 = Instant::now();
        controller.triggered(t0);
        controller.triggered(after(t0, 100));
        assert_eq!(progress.liveness(after(t0, 300)), Ok(()));
        let unlive = progress.liveness(after(t0, 301)).expect_err("stalled");
        assert_eq!(
            unlive,
            "controller workerpool has answered no trigger for 301s"
        );
        controller.answered();
        assert_eq!(progress.liveness(after(t0, 302)), Ok(()));
    }

    #[test]
    fn a_reconcile_running_past_the_timeout_makes_the_operator_unlive() {
        let (progress, _) = synced_progress();
        let controller = progress.controller("grafanacluster");
        let t0 = Instant::now();
        let stuck = controller.reconciling("ns/metrics".into(), t0);
        let quick = controller.reconciling("ns/logs".into(), after(t0, 200));
        drop(quick);
        assert_eq!(progress.liveness(after(t0, 300)), Ok(()));
        assert_eq!(
            progress.liveness(after(t0, 301)),
            Err("controller grafanacluster has reconciled ns/metrics for 301s".into())
        );
        drop(stuck);
        assert_eq!(progress.liveness(after(t0, 302)), Ok(()));
    }

    #[test]
    fn a_stopped_controller_is_unlive_at_once() {
        let (progress, _) = synced_progress();
        let controller = progress.controller("grafanacluster");
        controller.stopped();
        assert_eq!(
            progress.liveness(Instant::now()),
            Err("controller grafanacluster stopped".into())
        );
    }

    #[test]
    fn the_age_gauge_counts_from_the_last_event_or_the_start() {
        let (progress, metrics) = synced_progress();
        let watch = progress.watch(&metrics, "workerpool", "WorkerPool");
        let labels = WatchLabels {
            controller: "workerpool",
            kind: "WorkerPool".into(),
        };
        let start = lock(&watch.state).started;
        progress.refresh_metrics(&metrics, after(start, 7));
        assert_eq!(metrics.watch_event_age.get_or_create(&labels).get(), 7.0);
        watch.saw_event(true, after(start, 10));
        progress.refresh_metrics(&metrics, after(start, 12));
        assert_eq!(metrics.watch_event_age.get_or_create(&labels).get(), 2.0);
        assert_eq!(metrics.watch_lists.get_or_create(&labels).get(), 1);
    }
}
