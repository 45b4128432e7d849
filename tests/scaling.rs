//! Scale-down on the real node (e2e/node.sh), with contract workers that answer the
//! products' leave calls as the products do (src/bin/contract-worker/leave.rs) and
//! record every call on their volume: the operator asks each removed worker to flush,
//! the highest first, one at a time, and lowers the StatefulSet only once it is done.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;
use lgtm_operator::api::WorkerPool;
use lgtm_operator::product::Product;
use serde_json::Value;
use support::real_node::{
    apply_on_real_node, describe_pods, from_yaml, now_millis, pool_ready, record_of,
};
use support::{Check, OperatorNamespace, TIMEOUT, wait_for};

/// Each value of a StatefulSet's `spec.replicas`, and when it was first seen.
type ReplicasSeen = std::sync::Arc<std::sync::Mutex<Vec<(u128, i32)>>>;

/// Samples StatefulSet `name`'s `spec.replicas` every 100 ms in the background: when
/// each value was first seen (unix millis).
fn watch_replicas(
    api: Api<StatefulSet>,
    name: &str,
) -> (tokio::task::JoinHandle<()>, ReplicasSeen) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (name, out) = (name.to_string(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            if let Ok(sts) = api.get(&name).await {
                let replicas = sts.spec.and_then(|s| s.replicas).unwrap_or(-1);
                let mut seen = out.lock().expect("not poisoned");
                if seen.last().map(|(_, r)| *r) != Some(replicas) {
                    seen.push((now_millis(), replicas));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (task, seen)
}

/// Each distinct state of the shared configuration and the other pools, and when it was
/// first seen.
type SharedSeen = std::sync::Arc<std::sync::Mutex<Vec<(u128, String)>>>;

/// Samples, every 100 ms, the shared configuration's resourceVersion and the
/// generations of StatefulSets `others`.
fn watch_shared(
    env: &OperatorNamespace,
    others: &[&str],
) -> (tokio::task::JoinHandle<()>, SharedSeen) {
    let seen = SharedSeen::default();
    let (configs, sets) = (env.api::<ConfigMap>(), env.api::<StatefulSet>());
    let others: Vec<String> = others.iter().map(|o| o.to_string()).collect();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let mut state = match configs.get("logs-config").await {
                Ok(c) => format!("config {:?}", c.metadata.resource_version),
                Err(_) => String::from("config ?"),
            };
            for name in &others {
                let generation = sets
                    .get(name)
                    .await
                    .ok()
                    .and_then(|s| s.metadata.generation);
                state.push_str(&format!(" {name} {generation:?}"));
            }
            {
                let mut seen = out.lock().expect("not poisoned");
                if seen.last().map(|(_, s)| s) != Some(&state) {
                    seen.push((now_millis(), state));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (task, seen)
}

/// When the replicas were first seen at `replicas`.
fn lowered_at(seen: &[(u128, i32)], replicas: i32) -> u128 {
    seen.iter()
        .find(|(_, r)| *r == replicas)
        .unwrap_or_else(|| panic!("the StatefulSet never asked for {replicas}: {seen:?}"))
        .0
}

/// A pool whose contract workers take `flush_seconds` to flush.
fn flushing_pool(
    name: &str,
    cluster: &str,
    replicas: i32,
    roles: &str,
    product: &str,
    flush_seconds: u64,
    extra: &str,
) -> Value {
    let mut pool = from_yaml(&support::pool_yaml(name, cluster, replicas, roles));
    pool["spec"]["podOverrides"] = serde_json::json!({"spec": {"containers": [{
        "name": product,
        "env": [{"name": "LGTM_CONTRACT_FLUSH_SECONDS", "value": flush_seconds.to_string()}]
    }]}});
    if !extra.is_empty() {
        let extra: Value = from_yaml(extra);
        for (key, value) in extra.as_object().expect("a map") {
            pool["spec"][key] = value.clone();
        }
    }
    pool
}

/// The Events of the namespace with `reason`, one note per occurrence (the recorder
/// counts repeats of one reason in a series rather than writing new Events).
async fn events(env: &OperatorNamespace, reason: &str) -> Vec<String> {
    let list: Vec<k8s_openapi::api::events::v1::Event> = env
        .api()
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    list.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .flat_map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count.max(1));
            std::iter::repeat_n(e.note.unwrap_or_default(), count as usize)
        })
        .collect()
}

/// Loki `write` 3→1: the removed pods (2, then 1) each get the shutdown call once, the
/// next only after the previous answered and was removed; the pod that stays gets none;
/// the StatefulSet loses a pod only after its worker answered; the shared configuration
/// and the other pools do not change; the volumes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_pool_scaled_down_flushes_each_removed_worker_highest_first_one_at_a_time() {
    let env = OperatorNamespace::start("scale-down").await;
    let docs = vec![
        from_yaml(support::CREDENTIALS),
        from_yaml(&support::cluster_yaml("logs", "loki", "")),
        from_yaml(&support::pool_yaml(
            "logs-read",
            "logs",
            1,
            "{loki: {read: true}}",
        )),
        flushing_pool(
            "logs-write",
            "logs",
            3,
            "{loki: {write: true}}",
            "loki",
            3,
            "",
        ),
        from_yaml(&support::pool_yaml(
            "logs-backend",
            "logs",
            1,
            "{loki: {backend: true}}",
        )),
    ];
    apply_on_real_node(&env, docs, Product::Loki).await;
    let (watcher, replicas) = watch_replicas(env.api(), "logs-write");
    let (shared_watcher, shared) = watch_shared(&env, &["logs-read", "logs-backend"]);

    let start = now_millis();
    env.merge_patch("workerpool", "logs-write", r#"{"spec":{"replicas":1}}"#)
        .await;
    let (_, leaving) = env
        .wait_condition::<WorkerPool>("logs-write", "ScalingDown", "=True", |c| c.status == "True")
        .await;
    eprintln!("while scaling down: {}", leaving.message);
    env.pool_reason("logs-write", "ScalingDown", "NoScaleDown")
        .await;
    pool_ready(&env, "logs-write", 1).await;
    let done = now_millis();
    watcher.abort();
    shared_watcher.abort();
    let replicas = replicas.lock().expect("not poisoned").clone();
    let shared = shared.lock().expect("not poisoned").clone();

    let (two, one, zero) = (
        record_of(&env, "logs-write-2").await,
        record_of(&env, "logs-write-1").await,
        record_of(&env, "logs-write-0").await,
    );
    let shutdown = "POST /ingester/shutdown?flush=true&delete_ring_tokens=true&terminate=false";
    for (pod, record) in [("logs-write-2", &two), ("logs-write-1", &one)] {
        let calls: Vec<(&str, &str)> = record
            .iter()
            .map(|r| (r.phase.as_str(), r.call.as_str()))
            .collect();
        assert_eq!(
            calls,
            [("begin", shutdown), ("end:204", shutdown)],
            "{pod} is asked once to flush and leave: {record:?}; replicas {replicas:?}"
        );
    }
    assert!(
        zero.is_empty(),
        "the worker that stays is not asked: {zero:?}"
    );
    let (two_end, one_begin, one_end) = (two[1].millis, one[0].millis, one[1].millis);
    let (to_two, to_one) = (lowered_at(&replicas, 2), lowered_at(&replicas, 1));
    eprintln!(
        "3→1: logs-write-2 flushed {}–{} ms, StatefulSet at 2 at {} ms; logs-write-1 flushed {}–{} ms, StatefulSet at 1 at {} ms; done at {} ms",
        two[0].millis - start,
        two_end - start,
        to_two - start,
        one_begin - start,
        one_end - start,
        to_one - start,
        done - start
    );
    assert!(
        two_end <= to_two,
        "logs-write-2 is removed only after it answered"
    );
    assert!(
        to_two <= one_begin,
        "logs-write-1 is asked only after logs-write-2 went"
    );
    assert!(
        one_end <= to_one,
        "logs-write-1 is removed only after it answered"
    );

    // The replication factor follows the write pool's size: it goes from 3 to 1, and the
    // shared configuration with it, only once the last worker has left.
    let changed: Vec<&(u128, String)> = shared.iter().skip(1).collect();
    assert!(
        changed.iter().all(|(at, _)| *at >= to_one),
        "the shared configuration and the other pools do not change while workers leave: {shared:?} (StatefulSet at 1 at {to_one})"
    );
    for pod in ["logs-write-1", "logs-write-2"] {
        assert!(
            env.exists::<PersistentVolumeClaim>(&format!("data-{pod}"))
                .await,
            "the volume of {pod} is kept"
        );
    }
    let left = events(&env, "WorkerLeft").await;
    assert_eq!(left.len(), 2, "one Event per worker that left: {left:?}");
    let pool: WorkerPool = env.get("logs-write").await;
    assert!(pool.status.and_then(|s| s.scale_down).is_none());
    env.finish().await;
}

/// Pods of the pool, by name.
async fn pods_of(env: &OperatorNamespace, pool: &str) -> BTreeMap<String, Pod> {
    env.api::<Pod>()
        .list(&ListParams::default().labels(&format!("lgtm.coordinated.dev/pool={pool}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect()
}

/// A Mimir monolith whose worker never finishes flushing: the scale-down stops with
/// `LeaveTimedOut` and a Warning, the pod stays; scaling back up calls it off, undoes
/// the markers and restarts the stopped worker; scaling down again and forcing removes
/// the worker without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_flushes_stops_the_scale_down_until_scaled_up_or_forced() {
    let env = OperatorNamespace::start("scale-stuck").await;
    let docs = vec![
        from_yaml(support::CREDENTIALS),
        from_yaml(&support::cluster_yaml("metrics", "mimir", "")),
        flushing_pool(
            "metrics-all",
            "metrics",
            2,
            "{mimir: {all: true}}",
            "mimir",
            100_000,
            "scaleDown: {timeoutSeconds: 10}",
        ),
    ];
    apply_on_real_node(&env, docs, Product::Mimir).await;
    env.merge_patch("workerpool", "metrics-all", r#"{"spec":{"replicas":1}}"#)
        .await;
    let timed_out = env
        .pool_reason("metrics-all", "ScalingDown", "LeaveTimedOut")
        .await;
    eprintln!("stopped: {}", timed_out.message);
    assert!(
        timed_out.message.contains("metrics-all-1"),
        "{}",
        timed_out.message
    );
    assert!(
        timed_out.message.contains("force-scale-down"),
        "{}",
        timed_out.message
    );
    let warnings = events(&env, "LeaveTimedOut").await;
    assert_eq!(warnings.len(), 1, "one Warning: {warnings:?}");
    let sts: StatefulSet = env.get("metrics-all").await;
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(2), "the pod stays");
    let stuck_uid = pods_of(&env, "metrics-all").await["metrics-all-1"]
        .metadata
        .uid
        .clone();

    // Scaled back up: called off, and the worker whose ingester stopped is restarted.
    env.merge_patch("workerpool", "metrics-all", r#"{"spec":{"replicas":2}}"#)
        .await;
    env.pool_reason("metrics-all", "ScalingDown", "NoScaleDown")
        .await;
    wait_for("metrics-all-1 restarted and Ready", TIMEOUT, || async {
        let pods = pods_of(&env, "metrics-all").await;
        let restarted = pods.get("metrics-all-1").is_some_and(|p| {
            p.metadata.uid != stuck_uid
                && p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        });
        Ok(if restarted {
            Check::Done(())
        } else {
            Check::Pending(describe_pods(&pods.into_values().collect::<Vec<_>>()))
        })
    })
    .await;
    let record = record_of(&env, "metrics-all-1").await;
    let calls: Vec<&str> = record
        .iter()
        .filter(|r| r.phase == "begin")
        .map(|r| r.call.as_str())
        .collect();
    assert_eq!(
        calls[..3],
        [
            "POST /store-gateway/prepare-shutdown",
            "POST /ingester/prepare-shutdown",
            "POST /ingester/shutdown"
        ],
        "the contract's calls, in order: {record:?}"
    );
    assert!(
        calls[3..].contains(&"DELETE /ingester/prepare-shutdown"),
        "called off: the marker is undone: {record:?}"
    );
    assert_eq!(events(&env, "ScaleDownCalledOff").await.len(), 1);

    // Down again, forced.
    env.merge_patch("workerpool", "metrics-all", r#"{"spec":{"replicas":1}}"#)
        .await;
    env.pool_reason("metrics-all", "ScalingDown", "WorkerLeaving")
        .await;
    env.merge_patch(
        "workerpool",
        "metrics-all",
        r#"{"metadata":{"annotations":{"lgtm.coordinated.dev/force-scale-down":"true"}}}"#,
    )
    .await;
    env.pool_reason("metrics-all", "ScalingDown", "NoScaleDown")
        .await;
    pool_ready(&env, "metrics-all", 1).await;
    assert_eq!(events(&env, "WorkerForcedOut").await.len(), 1);
    env.finish().await;
}

/// The operator killed while a Loki worker flushes: the new one reads the leave from the
/// pool's status, asks again (refused: the ingester is already stopping), reads the
/// worker's `/services` until its ingester is Terminated, and only then removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_flush_finishes_the_scale_down_from_the_workers_state() {
    let mut env = OperatorNamespace::start("scale-restart").await;
    let docs = vec![
        from_yaml(support::CREDENTIALS),
        from_yaml(&support::cluster_yaml("logs", "loki", "")),
        flushing_pool("logs-all", "logs", 2, "{loki: {all: true}}", "loki", 12, ""),
    ];
    apply_on_real_node(&env, docs, Product::Loki).await;
    let (watcher, replicas) = watch_replicas(env.api(), "logs-all");
    env.merge_patch("workerpool", "logs-all", r#"{"spec":{"replicas":1}}"#)
        .await;
    // Kill the operator once the worker is flushing.
    wait_for("logs-all-1 asked to flush", TIMEOUT, || async {
        let record = record_of(&env, "logs-all-1").await;
        Ok(if record.iter().any(|r| r.phase == "begin") {
            Check::Done(())
        } else {
            Check::Pending(format!("{record:?}"))
        })
    })
    .await;
    let killed = now_millis();
    env.restart_operator();
    env.pool_reason("logs-all", "ScalingDown", "NoScaleDown")
        .await;
    pool_ready(&env, "logs-all", 1).await;
    watcher.abort();
    let replicas = replicas.lock().expect("not poisoned").clone();
    let record = record_of(&env, "logs-all-1").await;
    eprintln!("operator killed at {killed}; record {record:?}; replicas {replicas:?}");
    let first_end = record
        .iter()
        .find(|r| r.phase == "end:204")
        .expect("the first call finished the flush")
        .millis;
    assert!(
        record
            .iter()
            .any(|r| r.phase == "end:503" && r.millis > killed),
        "the new operator asked again and was refused: {record:?}"
    );
    assert!(
        lowered_at(&replicas, 1) >= first_end,
        "logs-all-1 went only after its flush ended"
    );
    env.finish().await;
}

/// metrics-server started once per test binary (`e2e/cluster.sh metrics-server`).
async fn metrics_server() {
    static STARTED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    STARTED
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                support::real_node::script("e2e/cluster.sh", &["metrics-server".as_ref()]);
            })
            .await
            .expect("metrics-server starts");
        })
        .await;
}

/// The Ready pods of a pool, by IP.
async fn ready_pod_ips(env: &OperatorNamespace, pool: &str) -> Vec<String> {
    pods_of(env, pool)
        .await
        .into_values()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        })
        .filter_map(|p| p.status.and_then(|s| s.pod_ip))
        .collect()
}

/// Waits until the pool's `spec.replicas` (what the autoscaler sets) is `replicas`.
async fn pool_replicas(env: &OperatorNamespace, pool: &str, replicas: i32, why: &str) {
    env.wait_until(pool, why, |p: WorkerPool| {
        if p.spec.replicas == replicas {
            Check::Done(())
        } else {
            Check::Pending(format!("spec.replicas {}", p.spec.replicas))
        }
    })
    .await;
}

/// A HorizontalPodAutoscaler, with metrics-server built from its Go module and fed by the
/// real node's kubelet, scales a querier pool through the WorkerPool's scale subresource:
/// up to 3 while the test keeps its workers' CPUs busy (requests on the pod network),
/// down to 1 once it stops. Prints how long each took (figures, not assertions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_scales_a_querier_pool_up_under_load_and_down_after() {
    metrics_server().await;
    let env = OperatorNamespace::start("scale-hpa").await;
    let mut querier = from_yaml(&support::pool_yaml(
        "metrics-querier",
        "metrics",
        1,
        "{mimir: {querier: true}}",
    ));
    // A small request, so that light load is many times it: the test shares 2 cores with
    // the others running beside it.
    querier["spec"]["resources"] = serde_json::json!({"requests": {"cpu": "20m"}});
    let docs = vec![
        from_yaml(support::CREDENTIALS),
        from_yaml(&support::cluster_yaml("metrics", "mimir", "")),
        from_yaml(&support::pool_yaml(
            "metrics-all",
            "metrics",
            1,
            "{mimir: {all: true}}",
        )),
        querier,
    ];
    apply_on_real_node(&env, docs, Product::Mimir).await;
    env.apply(
        "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: metrics-querier}
spec:
  scaleTargetRef: {apiVersion: lgtm.coordinated.dev/v1alpha1, kind: WorkerPool, name: metrics-querier}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleUp: {stabilizationWindowSeconds: 0}
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
",
    )
    .await;

    // Load: each querier spins a CPU 150 ms in every 500 ms (about 300m, 15 times its
    // request: the target is half of it).
    let loading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let client = reqwest::Client::new();
    let load = {
        let (loading, client) = (loading.clone(), client.clone());
        let pods = env.api::<Pod>();
        tokio::spawn(async move {
            while loading.load(std::sync::atomic::Ordering::Relaxed) {
                let list = pods
                    .list(
                        &ListParams::default().labels("lgtm.coordinated.dev/pool=metrics-querier"),
                    )
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let requests = list
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .map(|ip| {
                        client
                            .get(format!("http://{ip}:8080/contract-worker/busy?millis=150"))
                            .timeout(Duration::from_secs(5))
                            .send()
                    });
                futures::future::join_all(requests).await;
                tokio::time::sleep(Duration::from_millis(350)).await;
            }
        })
    };
    let start = std::time::Instant::now();
    pool_replicas(
        &env,
        "metrics-querier",
        3,
        "the autoscaler scales the queriers up to 3",
    )
    .await;
    let up = start.elapsed();
    pool_ready(&env, "metrics-querier", 3).await;
    loading.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;

    let start = std::time::Instant::now();
    pool_replicas(
        &env,
        "metrics-querier",
        1,
        "the autoscaler scales the queriers down to 1",
    )
    .await;
    let down = start.elapsed();
    pool_ready(&env, "metrics-querier", 1).await;
    eprintln!("autoscaling: up to 3 after {up:?} of load, down to 1 after {down:?} without");
    assert_eq!(ready_pod_ips(&env, "metrics-querier").await.len(), 1);
    // The status the autoscaler reads follows; a querier pool scales down at once.
    env.wait_until(
        "metrics-querier",
        "the pool's status at 1 replica",
        |p: WorkerPool| {
            let status = p.status.unwrap_or_default();
            let at_once = status
                .conditions
                .iter()
                .any(|c| c.type_ == "ScalingDown" && c.reason == "NoScaleDown");
            if (status.replicas, status.ready_replicas) == (1, 1)
                && at_once
                && status.scale_down.is_none()
            {
                Check::Done(())
            } else {
                Check::Pending(format!("{status:?}"))
            }
        },
    )
    .await;
    env.finish().await;
}
