//! Carries out a pool's scale-down ([`crate::plan::scale_down`] decides): finds the
//! replicas last applied, observes the highest pod and the calls made to it, makes the
//! calls in the background, and gives the pool reconcile the replicas to apply.
//!
//! Pods are read only while a scale-down is under way; a pool at its size costs no
//! read (its applied replicas come from the StatefulSet's metadata cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::apply::get_opt;
use super::error::{Error, Result};
use super::events::event;
use super::{Context, read};
use crate::api::WorkerPool;
use crate::plan::scale_down::{
    Act, CallSeen, Decision, FORCE_ANNOTATION, Note, Observation, PodSeen, Procedure, decide,
};
use crate::product::contract::{Call, Done};
use crate::product::{Product, expand};
use crate::render::APPLIED_REPLICAS;
use crate::render::labels::POOL;
use crate::render::zones::PoolLayout;

/// How long a failed call waits before it is made again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a question to a worker (`/ready`, a listing, an undo) may take.
const QUICK: Duration = Duration::from_secs(3);
/// Calls older than this are forgotten (their pods are long gone).
const REMEMBER: Duration = Duration::from_secs(2 * 24 * 3600);

/// The calls made to leaving workers, and the replicas last applied to each pool: the
/// operator's memory of scale-downs, fresher than any cache.
pub struct Leaves {
    calls: Mutex<HashMap<String, (CallState, Instant)>>,
    applied: Mutex<HashMap<String, i32>>,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
enum CallState {
    InFlight,
    Answered,
    Failed(String),
}

impl Default for Leaves {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            applied: Mutex::default(),
            http: reqwest::Client::new(),
        }
    }
}

/// One call: to which incarnation of which pod, which of the procedure's calls.
fn call_key(uid: &str, restarts: i32, index: usize) -> String {
    format!("{uid}/{restarts}/{index}")
}

impl Leaves {
    fn seen(&self, key: &str) -> (CallSeen, Option<Instant>) {
        let calls = self.calls.lock().expect("calls lock");
        match calls.get(key) {
            None => (CallSeen::NotMade, None),
            Some((CallState::InFlight, at)) => (CallSeen::InFlight, Some(*at)),
            Some((CallState::Answered, at)) => (CallSeen::Answered, Some(*at)),
            Some((CallState::Failed(why), at)) => {
                (CallSeen::Failed { why: why.clone() }, Some(*at))
            }
        }
    }

    fn set(&self, key: &str, state: CallState) {
        let mut calls = self.calls.lock().expect("calls lock");
        calls.retain(|_, (_, at)| at.elapsed() < REMEMBER);
        calls.insert(key.to_string(), (state, Instant::now()));
    }

    /// Records the replicas applied to pool `uid`.
    pub fn applied(&self, uid: &str, replicas: i32) {
        self.applied
            .lock()
            .expect("applied lock")
            .insert(uid.to_string(), replicas);
    }
}

/// Decides this reconcile's step of the pool's scale-down and starts what it asks;
/// returns the decision, whose `replicas` the StatefulSet must get.
pub(super) async fn step(ctx: &Context, pool: &WorkerPool) -> Result<Decision> {
    let Some((product, toggles)) = pool.spec.roles.selected() else {
        // Not reached: only a pool with valid roles gets a StatefulSet.
        return Ok(Decision::none(pool.spec.replicas));
    };
    let roles: Vec<&str> = expand(product, &toggles).into_iter().collect();
    let procedure = Procedure::of(product, &roles);
    let layout = PoolLayout::new(&pool.name_any(), pool.spec.zone_names());
    let current = applied_replicas(ctx, pool, &layout).await?;
    let status = pool.status.as_ref().and_then(|s| s.scale_down.as_ref());
    let target = pool.spec.replicas;
    let now = Time(Timestamp::now());
    let timeout = pool
        .spec
        .scale_down
        .as_ref()
        .and_then(|s| s.timeout_seconds)
        .unwrap_or_else(|| product.contract().grace_seconds(&roles));
    let mut seen = Seen {
        others_ready: current - 1,
        pod: PodSeen::Empty,
        call: CallSeen::NotMade,
        says_done: false,
        address: None,
    };
    let leaving = procedure.is_some() && target < current;
    if leaving {
        seen = observe(
            ctx,
            pool,
            &layout,
            product,
            procedure.as_ref(),
            status,
            current,
        )
        .await?;
    } else if let Some(status) = status {
        let index = status.calls_answered as usize;
        seen.call = ctx
            .leaves
            .seen(&call_key(&status.pod_uid, status.pod_restarts, index))
            .0;
    }
    let decision = decide(&Observation {
        layout: &layout,
        target,
        current,
        others_ready: seen.others_ready,
        procedure: procedure.as_ref(),
        status,
        pod: &seen.pod,
        call: &seen.call,
        says_done: seen.says_done,
        timeout: Duration::from_secs(u64::try_from(timeout).unwrap_or(0)),
        force: pool.annotations().get(FORCE_ANNOTATION).map(String::as_str) == Some("true"),
        now: &now,
    });
    carry_out(ctx, pool, procedure.as_ref(), &decision, &seen).await;
    Ok(decision)
}

/// The pool's replicas as the operator last applied them: from its memory, else the
/// metadata cache's annotation (every StatefulSet of the pool carries the pool's
/// total), else the StatefulSets themselves, summed (0 when there are none).
async fn applied_replicas(ctx: &Context, pool: &WorkerPool, layout: &PoolLayout) -> Result<i32> {
    let uid = pool.uid().unwrap_or_default();
    if let Some(replicas) = ctx.leaves.applied.lock().expect("applied lock").get(&uid) {
        return Ok(*replicas);
    }
    let ns = pool.namespace().unwrap_or_default();
    let names: Vec<String> = layout.statefulsets().into_iter().map(|(_, n)| n).collect();
    let cached = ctx
        .cached_children::<StatefulSet>(&WorkerPool::kind(&()), &ns, (POOL, &layout.pool))
        .and_then(|sets| sets.into_iter().find(|s| names.contains(&s.name_any())))
        .and_then(|s| {
            s.annotations()
                .get(APPLIED_REPLICAS)
                .and_then(|r| r.parse().ok())
        });
    if let Some(replicas) = cached {
        return Ok(replicas);
    }
    let mut replicas = 0;
    for name in &names {
        let live: Option<StatefulSet> = get_opt(&ctx.client, &ns, name).await?;
        replicas += live
            .and_then(|s| s.spec)
            .and_then(|spec| spec.replicas)
            .unwrap_or(0);
    }
    Ok(replicas)
}

/// What the controller found for one step.
struct Seen {
    others_ready: i32,
    pod: PodSeen,
    call: CallSeen,
    says_done: bool,
    /// Where the leaving pod answers (`http://ip:port`).
    address: Option<String>,
}

/// Reads the pool's pods, and the leaving one's calls and answers.
async fn observe(
    ctx: &Context,
    pool: &WorkerPool,
    layout: &PoolLayout,
    product: Product,
    procedure: Option<&Procedure>,
    status: Option<&crate::api::ScaleDownStatus>,
    current: i32,
) -> Result<Seen> {
    let ns = pool.namespace().unwrap_or_default();
    let pods = read::pool_pods(&ctx.client, pool).await?;
    let leaving = layout.pod(current - 1);
    let others_ready = pods
        .iter()
        .filter(|p| {
            layout
                .ordinal(&p.name_any())
                .is_some_and(|i| i < current - 1)
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .count();
    let pod = pods.iter().find(|p| p.name_any() == leaving);
    let (seen_pod, address) = match pod {
        Some(p) if running(p) => (
            PodSeen::Running {
                uid: p.uid().unwrap_or_default(),
                restarts: restarts(p),
            },
            address(p, product),
        ),
        _ => (not_running(ctx, &ns, &leaving, pod).await?, None),
    };
    let mut seen = Seen {
        others_ready: i32::try_from(others_ready).unwrap_or(i32::MAX),
        pod: seen_pod,
        call: CallSeen::NotMade,
        says_done: false,
        address,
    };
    if let (PodSeen::Running { uid, restarts }, Some(status)) = (&seen.pod, status)
        && status.pod == leaving
    {
        let answered = if *uid == status.pod_uid && *restarts == status.pod_restarts {
            status.calls_answered as usize
        } else {
            0
        };
        seen.call = ctx.leaves.seen(&call_key(uid, *restarts, answered)).0;
        if let (Some(procedure), Some(address)) = (procedure, &seen.address) {
            seen.says_done = says_done(ctx, procedure, address, &seen.call, answered).await;
        }
    }
    Ok(seen)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the pod's containers run (ready or not): it can be asked.
fn running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status.and_then(|s| s.pod_ip.as_ref()).is_some()
        && pod.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            })
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

/// The worker's HTTP address (the contract's `http` port).
fn address(pod: &Pod, product: Product) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
    let port = product
        .contract()
        .ports
        .iter()
        .find(|p| p.name == "http")?
        .port;
    Some(if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    })
}

/// A pod that does not run: empty when its volume was never bound (it never held
/// data), else why it cannot be asked.
async fn not_running(ctx: &Context, ns: &str, name: &str, pod: Option<&Pod>) -> Result<PodSeen> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let claim = format!("data-{name}");
    let bound = claims
        .get_opt(&claim)
        .await
        .map_err(Error::read(format!("PersistentVolumeClaim {ns}/{claim}")))?
        .and_then(|c| c.status)
        .and_then(|s| s.phase)
        .is_some_and(|phase| phase == "Bound");
    if !bound {
        return Ok(PodSeen::Empty);
    }
    let why = match pod {
        None => format!("{name} does not exist; its volume {claim} holds its data"),
        Some(p) if p.metadata.deletion_timestamp.is_some() => format!("{name} is being deleted"),
        Some(p) => waiting_reason(p),
    };
    Ok(PodSeen::NotRunning { why })
}

/// Why a pod's containers do not run, as its status says.
fn waiting_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "container {} is waiting: {}",
                c.name,
                w.reason.clone().unwrap_or_default()
            ))
        });
    waiting.unwrap_or_else(|| {
        format!(
            "{} is {}",
            pod.name_any(),
            status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "unknown".into())
        )
    })
}

/// Whether the worker says it is done, where the procedure reads that: its listing
/// after a refused call, `/ready` once every call answered.
async fn says_done(
    ctx: &Context,
    procedure: &Procedure,
    address: &str,
    call: &CallSeen,
    answered: usize,
) -> bool {
    let all_answered = answered + usize::from(*call == CallSeen::Answered) >= procedure.calls.len();
    let get = |path: &str| {
        ctx.leaves
            .http
            .get(format!("{address}{path}"))
            .timeout(QUICK)
            .send()
    };
    match procedure.done {
        Done::Listed { path, line } if matches!(call, CallSeen::Failed { .. }) => {
            match get(path).await {
                Ok(response) => response
                    .text()
                    .await
                    .is_ok_and(|text| text.lines().any(|l| l.trim() == line)),
                Err(_) => false,
            }
        }
        Done::Unready if all_answered => {
            get("/ready").await.is_ok_and(|r| !r.status().is_success())
        }
        _ => false,
    }
}

/// Makes the calls the decision asks for, and publishes its Event.
async fn carry_out(
    ctx: &Context,
    pool: &WorkerPool,
    procedure: Option<&Procedure>,
    decision: &Decision,
    seen: &Seen,
) {
    match &decision.act {
        Act::Nothing => {}
        Act::Call { index } => {
            if let (Some(procedure), Some(address), Some(status)) =
                (procedure, &seen.address, &decision.status)
            {
                let key = call_key(&status.pod_uid, status.pod_restarts, *index);
                let due = match ctx.leaves.seen(&key) {
                    (CallSeen::NotMade, _) => true,
                    (CallSeen::Failed { .. }, at) => {
                        at.is_none_or(|at| at.elapsed() >= RETRY_AFTER)
                    }
                    _ => false,
                };
                if due {
                    start_call(ctx, procedure.calls[*index], address, key);
                }
            }
        }
        Act::CallOff { pod, restart } => {
            call_off(ctx, pool, procedure, pod, *restart).await;
        }
    }
    if let Some(note) = &decision.note {
        let (reason, text) = match note {
            Note::WorkerLeft(text) => ("WorkerLeft", text),
            Note::WorkerForcedOut(text) => ("WorkerForcedOut", text),
            Note::ScaleDownCalledOff(text) => ("ScaleDownCalledOff", text),
        };
        event(
            ctx,
            pool,
            EventType::Normal,
            reason,
            "ScaleDown",
            text.clone(),
        )
        .await;
    }
}

/// Makes one call in the background; its outcome lands in the registry, where the next
/// reconcile (at most [`crate::plan::scale_down::POLL`] later) finds it.
fn start_call(ctx: &Context, call: Call, address: &str, key: String) {
    ctx.leaves.set(&key, CallState::InFlight);
    let leaves = Arc::clone(&ctx.leaves);
    let url = format!("{address}{}", call.path);
    tokio::spawn(async move {
        let method =
            reqwest::Method::from_bytes(call.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        tracing::info!(%url, method = call.method, "scale-down: asking a worker to leave");
        let outcome = match leaves.http.request(method, &url).send().await {
            Ok(r) if r.status().is_success() => CallState::Answered,
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                CallState::Failed(format!("{status} {}", body.trim()))
            }
            Err(e) => CallState::Failed(e.without_url().to_string()),
        };
        tracing::info!(%url, ?outcome, "scale-down: the worker answered");
        leaves.set(&key, outcome);
    });
}

/// Undoes what a called-off leave asked of `pod`, and restarts it when its product
/// stopped inside it.
async fn call_off(
    ctx: &Context,
    pool: &WorkerPool,
    procedure: Option<&Procedure>,
    pod: &str,
    restart: bool,
) {
    let ns = pool.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let found = pods.get_opt(pod).await.ok().flatten();
    if let (Some(procedure), Some(p), Some(product)) = (
        procedure,
        &found,
        pool.spec.roles.selected().map(|(p, _)| p),
    ) && let Some(address) = address(p, product)
    {
        for call in &procedure.undo {
            let method = reqwest::Method::from_bytes(call.method.as_bytes())
                .unwrap_or(reqwest::Method::DELETE);
            let sent = ctx
                .leaves
                .http
                .request(method, format!("{address}{}", call.path))
                .timeout(QUICK)
                .send()
                .await;
            if let Err(error) = sent {
                tracing::warn!(pod, %error, "scale-down called off: could not undo a call");
            }
        }
    }
    if restart
        && found.is_some()
        && let Err(error) = pods.delete(pod, &DeleteParams::default()).await
    {
        tracing::warn!(pod, %error, "scale-down called off: could not restart the pod");
    }
}
