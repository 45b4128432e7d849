//! Scale-down of a pool whose roles hold data: one worker at a time, the highest first,
//! each asked to flush and leave its ring through the product's own endpoints (the
//! runtime contract's `leave`) before the StatefulSet loses its pod. The decisions here
//! are pure: `controller::scale_down` observes the pods and the calls, and acts.
//!
//! The state that must survive an operator restart (which pod, which incarnation, how
//! many calls it answered, since when) lives in `status.scaleDown`; the calls in flight
//! live in the operator's memory, and a restarted operator repeats the unanswered one,
//! which every product's procedure tolerates (see [`Done`]).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Reason;
use super::conditions::Observed;
use crate::api::ScaleDownStatus;
use crate::product::Product;
use crate::product::contract::{Call, Done};
use crate::render::zones::PoolLayout;

/// The condition type: True while a scale-down is under way.
pub const SCALING_DOWN: &str = "ScalingDown";
/// Set to "true" on a pool, removes the leaving worker without waiting for it.
pub const FORCE_ANNOTATION: &str = "lgtm.coordinated.dev/force-scale-down";
/// How often a scale-down under way is looked at.
pub const POLL: Duration = Duration::from_secs(3);
/// How often a stopped one is (a late answer still completes it).
pub const POLL_STALLED: Duration = Duration::from_secs(30);

/// What one worker must do to leave, for the roles it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    pub calls: Vec<Call>,
    pub undo: Vec<Call>,
    pub done: Done,
    /// Whether the calls stop the product inside the running process.
    pub stops: bool,
}

impl Procedure {
    /// The procedure of a worker running `roles`, or `None` when none of them holds
    /// data. A process running two stateful roles (Mimir's ingester and store-gateway)
    /// makes both roles' calls, the contract's order.
    pub fn of(product: Product, roles: &[&str]) -> Option<Procedure> {
        let leaves: Vec<_> = product.contract().leaves_of(roles).collect();
        let last = leaves.last()?;
        Some(Procedure {
            calls: leaves
                .iter()
                .flat_map(|l| l.calls.iter().copied())
                .collect(),
            undo: leaves.iter().flat_map(|l| l.undo.iter().copied()).collect(),
            done: last.done,
            stops: leaves.iter().any(|l| l.stops),
        })
    }
}

/// The leaving pod as the controller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSeen {
    /// No pod, or one that is not running and whose volume was never bound: it holds
    /// nothing, so it goes at once.
    Empty,
    /// It holds data but cannot be asked now (crash loop, no address, not ready).
    NotRunning {
        why: String,
    },
    Running {
        uid: String,
        restarts: i32,
    },
}

/// The operator's call `index` to one incarnation of the leaving pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSeen {
    NotMade,
    InFlight,
    Answered,
    /// It failed (a refusal, a timeout, no connection); it is made again.
    Failed {
        why: String,
    },
}

/// What the controller observed for one reconcile of a pool.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// The pool's StatefulSets and pod names (one per zone for a zoned pool).
    pub layout: &'a PoolLayout,
    /// `spec.replicas`.
    pub target: i32,
    /// The StatefulSet's replicas as the operator last applied them.
    pub current: i32,
    /// Ready pods among those that stay (all but the highest).
    pub others_ready: i32,
    /// `None`: the pool's roles hold no data, and it scales at once.
    pub procedure: Option<&'a Procedure>,
    pub status: Option<&'a ScaleDownStatus>,
    /// The highest worker's pod (worker `current - 1`).
    pub pod: &'a PodSeen,
    /// The call the next answer is awaited from (index `calls_answered`).
    pub call: &'a CallSeen,
    /// Whether the worker says it is done (its listing, or `/ready` failing); asked by
    /// the controller only where the procedure's [`Done`] reads it.
    pub says_done: bool,
    pub timeout: Duration,
    pub force: bool,
    pub now: &'a Time,
}

/// What to do besides applying `replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Nothing,
    /// Make call `index` of the procedure to the leaving pod.
    Call {
        index: usize,
    },
    /// The scale-down was called off: undo the calls made to `pod`, and restart it when
    /// the product stopped inside it.
    CallOff {
        pod: String,
        restart: bool,
    },
}

/// A Normal Event worth publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    WorkerLeft(String),
    WorkerForcedOut(String),
    ScaleDownCalledOff(String),
}

/// The decision of one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The StatefulSet's replicas to apply.
    pub replicas: i32,
    pub status: Option<ScaleDownStatus>,
    pub condition: Observed,
    pub act: Act,
    pub note: Option<Note>,
    pub requeue: Option<Duration>,
}

impl Decision {
    /// No scale-down: `replicas` as asked.
    pub fn none(replicas: i32) -> Decision {
        Decision {
            replicas,
            status: None,
            condition: Observed::new(
                SCALING_DOWN,
                false,
                Reason::NoScaleDown,
                format!("{replicas} replicas, as asked"),
            ),
            act: Act::Nothing,
            note: None,
            requeue: None,
        }
    }

    /// The StatefulSet runs what is asked: no scale-down under way.
    fn at_target(o: &Observation) -> Decision {
        Decision::none(o.target)
    }

    /// The StatefulSet keeps `current` replicas while the scale-down goes on.
    fn holding(
        o: &Observation,
        status: Option<ScaleDownStatus>,
        reason: Reason,
        message: String,
    ) -> Decision {
        Decision {
            replicas: o.current,
            status,
            condition: Observed::new(SCALING_DOWN, true, reason, message),
            act: Act::Nothing,
            note: None,
            requeue: Some(if reason == Reason::LeaveTimedOut {
                POLL_STALLED
            } else {
                POLL
            }),
        }
    }

    /// The highest pod goes: the StatefulSet loses it, the next one is looked at soon.
    /// Until the last has gone, the status keeps the size the scale-down began from
    /// (with no pod leaving), which the cluster counts.
    fn lowered(o: &Observation, note: Note) -> Decision {
        let replicas = o.current - 1;
        let between = (replicas > o.target).then(|| ScaleDownStatus {
            from_replicas: o.status.map_or(o.current, |s| s.from_replicas),
            pod: String::new(),
            pod_uid: String::new(),
            pod_restarts: 0,
            calls_answered: 0,
            started_at: o.now.clone(),
        });
        Decision {
            replicas,
            status: between,
            condition: Observed::new(
                SCALING_DOWN,
                replicas > o.target,
                if replicas > o.target {
                    Reason::WorkerLeaving
                } else {
                    Reason::NoScaleDown
                },
                format!("{replicas} replicas, {} asked", o.target),
            ),
            act: Act::Nothing,
            note: Some(note),
            requeue: Some(POLL),
        }
    }
}

/// Decides one step of a pool's scale-down.
pub fn decide(o: &Observation) -> Decision {
    let Some(procedure) = o.procedure.filter(|_| o.target < o.current) else {
        return match o.status {
            Some(status) => call_off(o, status),
            None => Decision::at_target(o),
        };
    };
    let leaving = o.layout.pod(o.current - 1);
    if *o.pod == PodSeen::Empty {
        return Decision::lowered(
            o,
            Note::WorkerLeft(format!("{leaving} held no data: removed at once")),
        );
    }
    match o.status.filter(|s| s.pod == leaving) {
        Some(status) => go_on(o, procedure, status),
        None => begin(o, &leaving),
    }
}

/// The scale-down ends before its pod went (replicas raised again, or the roles no
/// longer hold data): undo what was asked of the pod.
fn call_off(o: &Observation, status: &ScaleDownStatus) -> Decision {
    if status.pod.is_empty() {
        // Between two workers: nothing asked of anyone.
        return Decision::at_target(o);
    }
    let asked = status.calls_answered > 0 || *o.call != CallSeen::NotMade;
    let stopped = o.procedure.is_some_and(|p| p.stops) && asked;
    Decision {
        act: if asked {
            Act::CallOff {
                pod: status.pod.clone(),
                restart: stopped,
            }
        } else {
            Act::Nothing
        },
        note: Some(Note::ScaleDownCalledOff(format!(
            "{} replicas asked again: {} stays{}",
            o.target,
            status.pod,
            if stopped {
                ", restarted because its product had stopped inside it"
            } else {
                ""
            }
        ))),
        ..Decision::at_target(o)
    }
}

/// The highest pod has not been asked yet: it is, once every other worker is ready.
fn begin(o: &Observation, leaving: &str) -> Decision {
    if o.others_ready < o.current - 1 {
        return Decision::holding(
            o,
            None,
            Reason::WaitingForWorkers,
            format!(
                "{}/{} other workers ready: {leaving} leaves once all are, so that no more than one worker is away at a time ({} → {} replicas)",
                o.others_ready,
                o.current - 1,
                o.current,
                o.target
            ),
        );
    }
    let (uid, restarts) = match o.pod {
        PodSeen::Running { uid, restarts } => (uid.clone(), *restarts),
        _ => (String::new(), 0),
    };
    let status = ScaleDownStatus {
        from_replicas: o.status.map_or(o.current, |s| s.from_replicas),
        pod: leaving.to_string(),
        pod_uid: uid,
        pod_restarts: restarts,
        calls_answered: 0,
        started_at: o.now.clone(),
    };
    // The first call is made at the next step, once the status that records it is saved.
    let mut decision = Decision::holding(
        o,
        Some(status),
        Reason::WorkerLeaving,
        format!(
            "{leaving} is asked to leave ({} → {} replicas)",
            o.current, o.target
        ),
    );
    decision.requeue = Some(Duration::from_millis(100));
    decision
}

/// The highest pod was asked: follow its calls until it is done, or the time is up.
fn go_on(o: &Observation, procedure: &Procedure, status: &ScaleDownStatus) -> Decision {
    let elapsed = elapsed(&status.started_at, o.now);
    if o.force {
        return Decision::lowered(
            o,
            Note::WorkerForcedOut(format!(
                "{} removed without waiting, after {}s: {FORCE_ANNOTATION} is set",
                status.pod,
                elapsed.as_secs()
            )),
        );
    }
    let mut status = status.clone();
    let call = match o.pod {
        PodSeen::Running { uid, restarts }
            if *uid != status.pod_uid || *restarts != status.pod_restarts =>
        {
            // A new process: what the old one was asked is gone with it.
            status.pod_uid = uid.clone();
            status.pod_restarts = *restarts;
            status.calls_answered = 0;
            &CallSeen::NotMade
        }
        _ => o.call,
    };
    if *call == CallSeen::Answered {
        status.calls_answered += 1;
    }
    let step = step(o, procedure, &status, call);
    if step == Step::Done {
        return Decision::lowered(
            o,
            Note::WorkerLeft(format!("{} left in {}s", status.pod, elapsed.as_secs())),
        );
    }
    waiting(o, procedure, status, step, elapsed)
}

/// Where a leaving worker is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Call `index` must be made (first time, or again after a failure).
    Call {
        index: usize,
        failed: Option<String>,
    },
    /// Call `index` is in flight.
    Awaiting {
        index: usize,
    },
    /// Every call answered; the worker has not said it is done.
    Finishing,
    /// It cannot be asked: the pod does not run.
    NotRunning {
        why: String,
    },
    Done,
}

fn step(o: &Observation, procedure: &Procedure, status: &ScaleDownStatus, call: &CallSeen) -> Step {
    if let PodSeen::NotRunning { why } = o.pod {
        return Step::NotRunning { why: why.clone() };
    }
    let index = status.calls_answered as usize;
    let listed_done = matches!(procedure.done, Done::Listed { .. }) && o.says_done;
    if index >= procedure.calls.len() {
        return match procedure.done {
            // The last call answered 2xx once the worker was done.
            Done::Answered | Done::Listed { .. } => Step::Done,
            Done::Unready if o.says_done => Step::Done,
            Done::Unready => Step::Finishing,
        };
    }
    match call {
        // A lost answer of the last call: the listing says whether it finished.
        CallSeen::Failed { .. } if listed_done && index + 1 == procedure.calls.len() => Step::Done,
        CallSeen::Failed { why } => Step::Call {
            index,
            failed: Some(why.clone()),
        },
        CallSeen::InFlight => Step::Awaiting { index },
        CallSeen::NotMade | CallSeen::Answered => Step::Call {
            index,
            failed: None,
        },
    }
}

/// The condition, and the call to make, while the worker has not left.
fn waiting(
    o: &Observation,
    procedure: &Procedure,
    status: ScaleDownStatus,
    step: Step,
    elapsed: Duration,
) -> Decision {
    let pod = status.pod.clone();
    let describe = |index: usize| {
        let call = procedure.calls[index];
        format!(
            "call {}/{} `{} {}`",
            index + 1,
            procedure.calls.len(),
            call.method,
            call.path
        )
    };
    let what = match &step {
        Step::Call {
            index,
            failed: None,
        } => format!("{} made", describe(*index)),
        Step::Call {
            index,
            failed: Some(why),
        } => format!("{} failed ({why}), made again", describe(*index)),
        Step::Awaiting { index } => format!("{} awaits its answer", describe(*index)),
        Step::Finishing => "every call answered, the worker has not finished yet".to_string(),
        Step::NotRunning { why } => format!("the pod cannot be asked: {why}"),
        Step::Done => unreachable!("a worker done is removed"),
    };
    let progress = format!(
        "{pod}: {what}; {}s elapsed of {}s ({} → {} replicas)",
        elapsed.as_secs(),
        o.timeout.as_secs(),
        o.current,
        o.target
    );
    if elapsed >= o.timeout {
        return Decision::holding(
            o,
            Some(status),
            Reason::LeaveTimedOut,
            format!(
                "{progress}. The scale-down stopped: read {pod}'s log; scale back up to {}, or annotate the pool with {FORCE_ANNOTATION}=true to remove it unflushed",
                o.current
            ),
        );
    }
    let act = match step {
        Step::Call { index, .. } => Act::Call { index },
        _ => Act::Nothing,
    };
    Decision {
        act,
        ..Decision::holding(o, Some(status), Reason::WorkerLeaving, progress)
    }
}

pub(super) fn elapsed(since: &Time, now: &Time) -> Duration {
    let seconds = now.0.as_second() - since.0.as_second();
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
#[path = "scale_down_tests.rs"]
pub(super) mod tests;
