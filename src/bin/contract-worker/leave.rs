//! The contract worker's part in a scale-down: the runtime contract's `leave` calls of
//! its roles, answered as the product answers them (`Done` says how), with a flush that
//! takes `LGTM_CONTRACT_FLUSH_SECONDS` (default 1). Every call is recorded, one line per
//! phase, in `/data/contract-worker-lifecycle.log` (on the worker's volume, so the record
//! outlives the pod) and served at `GET /contract-worker/lifecycle`:
//! `<unix millis> <begin|end:<status>> <pod> <METHOD> <uri>`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use lgtm_operator::product::contract::{Done, Leave};
use tokio::sync::watch;

/// Where the calls are recorded.
pub const RECORD: &str = "/data/contract-worker-lifecycle.log";
/// Where the record is served.
pub const RECORD_PATH: &str = "/contract-worker/lifecycle";

/// The state of the stateful service the calls stop (`ingester` in every product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Running,
    Stopping,
    Terminated,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Running => "Running",
            Service::Stopping => "Stopping",
            Service::Terminated => "Terminated",
        }
    }
}

/// What the leave calls changed in this process.
pub struct Leaving {
    pod: String,
    leaves: Vec<&'static Leave>,
    flush: Duration,
    service: watch::Sender<Service>,
    markers: std::sync::Mutex<BTreeSet<&'static str>>,
}

/// A call's path without its query.
fn base(path: &'static str) -> &'static str {
    path.split('?').next().unwrap_or(path)
}

/// An answer: a status and a body.
pub type Answer = (StatusCode, String);

impl Leaving {
    pub fn new(pod: String, leaves: Vec<&'static Leave>) -> Self {
        let seconds = std::env::var("LGTM_CONTRACT_FLUSH_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        Self {
            pod,
            leaves,
            flush: Duration::from_secs(seconds),
            service: watch::Sender::new(Service::Running),
            markers: std::sync::Mutex::default(),
        }
    }

    /// Whether the stateful service stopped (the product's `/ready` then fails).
    pub fn terminated(&self) -> bool {
        *self.service.borrow() == Service::Terminated
    }

    /// The answer to a leave call or a listing, or `None` when `path` is neither.
    pub async fn answer(&self, method: &str, path: &str, uri: &str) -> Option<Answer> {
        if path == RECORD_PATH {
            return Some((
                StatusCode::OK,
                std::fs::read_to_string(RECORD).unwrap_or_default(),
            ));
        }
        if let Some(answer) = self.listing(path) {
            return Some(answer);
        }
        let leave = self.leaves.iter().find(|leave| {
            leave
                .calls
                .iter()
                .chain(leave.undo)
                .any(|c| base(c.path) == path)
        })?;
        self.record("begin", method, uri);
        // The last call of a procedure that stops the product stops it; the others set
        // or clear a marker.
        let stops = leave.stops && leave.calls.last().is_some_and(|c| base(c.path) == path);
        let answer = if stops {
            self.stop(leave.done).await
        } else {
            self.marker(path, method)
        };
        self.record(&format!("end:{}", answer.0.as_u16()), method, uri);
        Some(answer)
    }

    /// `/services`, where the procedure reads it: each service as `name => state`.
    fn listing(&self, path: &str) -> Option<Answer> {
        self.leaves.iter().find_map(|leave| match leave.done {
            Done::Listed { path: listed, .. } if listed == path => Some((
                StatusCode::OK,
                format!(
                    "server => Running\ningester => {}\n",
                    self.service.borrow().as_str()
                ),
            )),
            _ => None,
        })
    }

    /// A prepare-shutdown marker: POST sets it, DELETE clears it, GET tells.
    fn marker(&self, path: &str, method: &str) -> Answer {
        if *self.service.borrow() != Service::Running {
            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
        }
        let key: &'static str = self
            .leaves
            .iter()
            .flat_map(|l| l.calls.iter().chain(l.undo))
            .find(|c| base(c.path) == path)
            .map_or("", |c| base(c.path));
        let mut markers = self.markers.lock().expect("markers lock");
        match method {
            "POST" => {
                markers.insert(key);
                (StatusCode::NO_CONTENT, String::new())
            }
            "DELETE" => {
                markers.remove(key);
                (StatusCode::NO_CONTENT, String::new())
            }
            "GET" => (
                StatusCode::OK,
                if markers.contains(key) {
                    "set\n"
                } else {
                    "unset\n"
                }
                .to_string(),
            ),
            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        }
    }

    /// The call that stops the service: flushes for the configured time, then stops.
    async fn stop(&self, done: Done) -> Answer {
        let state = *self.service.borrow();
        match (done, state) {
            (Done::Listed { .. }, Service::Stopping | Service::Terminated) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Ingester is stopping or already stopped.".into(),
                );
            }
            (Done::Answered, Service::Stopping | Service::Terminated) => {
                self.until_terminated().await;
                return (StatusCode::NO_CONTENT, String::new());
            }
            (Done::Unready, Service::Stopping | Service::Terminated) => {
                return (StatusCode::OK, "shutdown job acknowledged".into());
            }
            _ => {}
        }
        self.service.send_replace(Service::Stopping);
        let sender = self.service.clone();
        let flush = self.flush;
        // The flush goes on even when the caller hangs up, as in the product.
        let flushing = tokio::spawn(async move {
            tokio::time::sleep(flush).await;
            sender.send_replace(Service::Terminated);
        });
        if done == Done::Unready {
            return (StatusCode::OK, "shutdown job acknowledged".into());
        }
        let _ = flushing.await;
        (StatusCode::NO_CONTENT, String::new())
    }

    async fn until_terminated(&self) {
        let mut receiver = self.service.subscribe();
        let _ = receiver.wait_for(|s| *s == Service::Terminated).await;
    }

    fn record(&self, phase: &str, method: &str, uri: &str) {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let line = format!("{millis} {phase} {} {method} {uri}\n", self.pod);
        eprint!("contract-worker: lifecycle {line}");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(RECORD)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("contract-worker: cannot record in {RECORD}: {e}");
        }
    }
}
