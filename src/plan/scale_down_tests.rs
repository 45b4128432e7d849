use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::render::zones::PoolLayout;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid"))
}

fn mimir_ingester() -> Procedure {
    Procedure::of(Product::Mimir, &["ingester"]).expect("ingesters hold data")
}

fn running() -> &'static PodSeen {
    static RUNNING: std::sync::LazyLock<PodSeen> = std::sync::LazyLock::new(|| PodSeen::Running {
        uid: "u1".into(),
        restarts: 0,
    });
    &RUNNING
}

/// Pool `w` asked to go from 3 to 1 replicas, every other worker ready.
fn observe<'a>(
    procedure: Option<&'a Procedure>,
    status: Option<&'a ScaleDownStatus>,
    pod: &'a PodSeen,
    call: &'a CallSeen,
    now: &'a Time,
) -> Observation<'a> {
    Observation {
        layout: Box::leak(Box::new(PoolLayout::new("w", vec![]))),
        target: 1,
        current: 3,
        others_ready: 2,
        procedure,
        status,
        pod,
        call,
        says_done: false,
        timeout: Duration::from_secs(60),
        force: false,
        now,
    }
}

fn leaving(answered: u32) -> ScaleDownStatus {
    ScaleDownStatus {
        from_replicas: 3,
        pod: "w-2".into(),
        pod_uid: "u1".into(),
        pod_restarts: 0,
        calls_answered: answered,
        started_at: at(1000),
    }
}

#[test]
fn procedures_come_from_the_contract_and_stateless_roles_have_none() {
    let mimir = mimir_ingester();
    assert_eq!(mimir.calls.len(), 2);
    assert_eq!(mimir.calls[1].path, "/ingester/shutdown");
    assert_eq!(mimir.undo[0].method, "DELETE");
    let both = Procedure::of(Product::Mimir, &["ingester", "store-gateway"]).expect("both");
    assert_eq!(
        both.calls.len(),
        3,
        "the store-gateway's marker and the ingester's two"
    );
    assert!(Procedure::of(Product::Mimir, &["querier", "distributor"]).is_none());
    let loki = Procedure::of(Product::Loki, &["write"]).expect("write");
    assert!(matches!(loki.done, Done::Listed { .. }));
    assert!(loki.calls[0].path.contains("terminate=false"));
    let tempo = Procedure::of(Product::Tempo, &["ingester"]).expect("ingester");
    assert_eq!(tempo.done, Done::Unready);
}

#[test]
fn a_pool_without_data_scales_at_once() {
    let now = at(1000);
    let d = decide(&observe(None, None, running(), &CallSeen::NotMade, &now));
    assert_eq!(d.replicas, 1);
    assert_eq!(d.condition.reason, Reason::NoScaleDown);
    assert!(!d.condition.status);
}

#[test]
fn the_highest_worker_is_asked_only_once_every_other_is_ready() {
    let now = at(1000);
    let p = mimir_ingester();
    let mut o = observe(Some(&p), None, running(), &CallSeen::NotMade, &now);
    o.others_ready = 1;
    let d = decide(&o);
    assert_eq!(
        (d.replicas, d.condition.reason),
        (3, Reason::WaitingForWorkers)
    );
    assert!(d.status.is_none());
    o.others_ready = 2;
    let d = decide(&o);
    assert_eq!((d.replicas, d.condition.reason), (3, Reason::WorkerLeaving));
    let status = d.status.expect("recorded before any call");
    assert_eq!((status.pod.as_str(), status.calls_answered), ("w-2", 0));
    assert_eq!(
        d.act,
        Act::Nothing,
        "the first call waits for the status to be saved"
    );
}

#[test]
fn calls_are_made_in_order_and_the_pod_goes_once_the_last_answered() {
    let now = at(1010);
    let p = mimir_ingester();
    let status = leaving(0);
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::NotMade,
        &now,
    ));
    assert_eq!((d.replicas, d.act.clone()), (3, Act::Call { index: 0 }));
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::InFlight,
        &now,
    ));
    assert_eq!(d.act, Act::Nothing);
    assert!(
        d.condition.message.contains("awaits its answer"),
        "{}",
        d.condition.message
    );
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::Answered,
        &now,
    ));
    assert_eq!(d.act, Act::Call { index: 1 });
    assert_eq!(d.status.as_ref().map(|s| s.calls_answered), Some(1));
    let status = leaving(1);
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::Answered,
        &now,
    ));
    assert_eq!(d.replicas, 2, "lowered by one");
    assert!(matches!(d.note, Some(Note::WorkerLeft(_))));
    assert_eq!(d.condition.reason, Reason::WorkerLeaving, "one more to go");
    let between = d.status.expect("one more to go");
    assert_eq!((between.from_replicas, between.pod.as_str()), (3, ""));
    let d = decide(&Observation {
        current: 2,
        others_ready: 1,
        ..observe(
            Some(&p),
            Some(&between),
            running(),
            &CallSeen::NotMade,
            &now,
        )
    });
    assert_eq!(
        d.status.map(|s| (s.pod, s.from_replicas)),
        Some(("w-1".to_string(), 3))
    );
}

#[test]
fn a_failed_call_is_made_again_until_the_time_is_up_then_the_scale_down_stops() {
    let p = mimir_ingester();
    let status = leaving(1);
    let failed = CallSeen::Failed {
        why: "connection refused".into(),
    };
    let now = at(1030);
    let d = decide(&observe(Some(&p), Some(&status), running(), &failed, &now));
    assert_eq!(d.act, Act::Call { index: 1 });
    assert!(d.condition.message.contains("connection refused"));
    let late = at(1061);
    let d = decide(&observe(Some(&p), Some(&status), running(), &failed, &late));
    assert_eq!((d.replicas, d.condition.reason), (3, Reason::LeaveTimedOut));
    assert_eq!(d.act, Act::Nothing);
    assert_eq!(d.requeue, Some(POLL_STALLED));
    assert!(d.condition.message.contains(FORCE_ANNOTATION));
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::Answered,
        &late,
    ));
    assert_eq!(d.replicas, 2, "a late answer still completes the leave");
}

#[test]
fn forcing_removes_the_worker_without_waiting() {
    let p = mimir_ingester();
    let status = leaving(0);
    let now = at(1070);
    let mut o = observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::InFlight,
        &now,
    );
    o.force = true;
    let d = decide(&o);
    assert_eq!(d.replicas, 2);
    assert!(matches!(d.note, Some(Note::WorkerForcedOut(_))));
}

#[test]
fn scaling_up_during_a_leave_calls_it_off_and_restarts_a_stopped_product() {
    let p = mimir_ingester();
    let status = leaving(1);
    let now = at(1010);
    let mut o = observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::InFlight,
        &now,
    );
    o.target = 3;
    let d = decide(&o);
    assert_eq!(d.replicas, 3);
    assert!(d.status.is_none());
    assert_eq!(
        d.act,
        Act::CallOff {
            pod: "w-2".into(),
            restart: true
        }
    );
    let store_gateway = Procedure::of(Product::Mimir, &["store-gateway"]).expect("sg");
    o.procedure = Some(&store_gateway);
    let d = decide(&o);
    assert_eq!(
        d.act,
        Act::CallOff {
            pod: "w-2".into(),
            restart: false
        },
        "a marker is undone, nothing stopped"
    );
}

#[test]
fn a_new_incarnation_of_the_pod_is_asked_again_from_the_first_call() {
    let p = mimir_ingester();
    let status = leaving(1);
    let restarted = PodSeen::Running {
        uid: "u1".into(),
        restarts: 1,
    };
    let now = at(1010);
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        &restarted,
        &CallSeen::Answered,
        &now,
    ));
    assert_eq!(d.act, Act::Call { index: 0 });
    let status = d.status.expect("still leaving");
    assert_eq!((status.calls_answered, status.pod_restarts), (0, 1));
}

#[test]
fn loki_recovers_a_lost_answer_from_its_service_listing() {
    let p = Procedure::of(Product::Loki, &["write"]).expect("write");
    let status = leaving(0);
    let refused = CallSeen::Failed {
        why: "503 Ingester is stopping or already stopped.".into(),
    };
    let now = at(1010);
    let mut o = observe(Some(&p), Some(&status), running(), &refused, &now);
    assert_eq!(decide(&o).act, Act::Call { index: 0 });
    o.says_done = true;
    assert_eq!(decide(&o).replicas, 2);
    let answered = observe(
        Some(&p),
        Some(&status),
        running(),
        &CallSeen::Answered,
        &now,
    );
    assert_eq!(decide(&answered).replicas, 2, "a 204 is done too");
}

#[test]
fn tempo_is_done_when_its_readiness_fails() {
    let p = Procedure::of(Product::Tempo, &["ingester"]).expect("ingester");
    let status = leaving(1);
    let now = at(1010);
    let mut o = observe(Some(&p), Some(&status), running(), &CallSeen::NotMade, &now);
    let d = decide(&o);
    assert_eq!((d.replicas, d.act), (3, Act::Nothing));
    o.says_done = true;
    assert_eq!(decide(&o).replicas, 2);
}

#[test]
fn a_pod_that_never_held_data_goes_at_once_and_one_that_cannot_run_waits() {
    let p = mimir_ingester();
    let now = at(1010);
    let d = decide(&observe(
        Some(&p),
        None,
        &PodSeen::Empty,
        &CallSeen::NotMade,
        &now,
    ));
    assert_eq!(d.replicas, 2);
    let status = leaving(0);
    let crashing = PodSeen::NotRunning {
        why: "container worker is waiting: CrashLoopBackOff".into(),
    };
    let d = decide(&observe(
        Some(&p),
        Some(&status),
        &crashing,
        &CallSeen::NotMade,
        &now,
    ));
    assert_eq!((d.replicas, d.act.clone()), (3, Act::Nothing));
    assert!(d.condition.message.contains("CrashLoopBackOff"));
}

/// The ScalingDown reasons the decisions reach (for the test that every reason is).
pub(in crate::plan) fn reasons_reached() -> Vec<Reason> {
    let p = mimir_ingester();
    let status = leaving(0);
    let now = at(1000);
    let late = at(2000);
    let mut waiting = observe(Some(&p), None, running(), &CallSeen::NotMade, &now);
    waiting.others_ready = 0;
    [
        observe(None, None, running(), &CallSeen::NotMade, &now),
        waiting,
        observe(Some(&p), None, running(), &CallSeen::NotMade, &now),
        observe(
            Some(&p),
            Some(&status),
            running(),
            &CallSeen::InFlight,
            &late,
        ),
    ]
    .iter()
    .map(|o| decide(o).condition.reason)
    .collect()
}
