//! Zoned pools on the local control plane's three simulated zones (kwok nodes
//! `kwok-node-0..2` in `zone-a..c`): one StatefulSet per zone pinned to it, the rings
//! told, replicas split evenly, rollouts one zone at a time, a zone that stays unready
//! stopping the rollout, and the layouts the API refuses. Then on the real node (its
//! three "zones" are one machine, named by each zone's nodeSelector), where contract
//! workers really restart zone by zone and a zoned worker really flushes and leaves.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use lgtm_operator::api::WorkerPool;
use lgtm_operator::product::Product;
use support::real_node::{REAL_NODE_LABEL, apply_on_real_node, from_yaml, record_of};
use support::{CREDENTIALS, Check, OperatorNamespace, cluster_yaml};

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

fn zoned_pool(name: &str, cluster: &str, replicas: i32, roles: &str, extra: &str) -> String {
    format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}}}\nspec:\n  clusterRef: {cluster}\n  replicas: {replicas}\n  roles: {roles}\n  zones: [{{name: zone-a}}, {{name: zone-b}}, {{name: zone-c}}]\n{extra}"
    )
}

/// Each zone StatefulSet's replicas, in zone order.
async fn zone_replicas(env: &OperatorNamespace, pool: &str) -> Vec<i32> {
    let sts: Api<StatefulSet> = env.api();
    let mut replicas = Vec::new();
    for zone in ZONES {
        let set = sts.get(&format!("{pool}-{zone}")).await.expect("zone set");
        replicas.push(set.spec.and_then(|s| s.replicas).unwrap_or(-1));
    }
    replicas
}

/// Waits until the pool's zones report `want` ready workers each.
async fn zones_ready(env: &OperatorNamespace, pool: &str, want: &[i32]) -> WorkerPool {
    let want = want.to_vec();
    env.wait_until(
        pool,
        "every zone ready at its share",
        move |p: WorkerPool| {
            let zones: Vec<(String, i32)> = p
                .status
                .as_ref()
                .map(|s| {
                    s.zones
                        .iter()
                        .map(|z| (z.name.clone(), z.ready_replicas))
                        .collect()
                })
                .unwrap_or_default();
            let ready: Vec<i32> = zones.iter().map(|(_, r)| *r).collect();
            if ready == want {
                Check::Done(p)
            } else {
                Check::Pending(format!("{zones:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoned_pools_sit_in_their_zones_tell_the_rings_and_stay_balanced_when_scaled() {
    let env = OperatorNamespace::start("zones").await;
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml("metrics", "mimir", "")).await;
    env.apply(&zoned_pool(
        "ingest",
        "metrics",
        3,
        "{mimir: {all: true}}",
        "",
    ))
    .await;
    env.apply(&zoned_pool(
        "query",
        "metrics",
        3,
        "{mimir: {querier: true}}",
        "",
    ))
    .await;
    let pool = zones_ready(&env, "ingest", &[1, 1, 1]).await;
    assert_eq!(pool.status.expect("status").ready_replicas, 3);
    env.pool_reason("ingest", "Progressing", "ZonesRolledOut")
        .await;

    // Each zone's pods run on its zone's node, and say their zone to each ring.
    let nodes: Api<Node> = Api::all(env.client().clone());
    let pods: Api<Pod> = env.api();
    for pod in pods
        .list(&ListParams::default().labels("lgtm.coordinated.dev/pool=ingest"))
        .await
        .expect("pods")
    {
        let zone = pod.labels()["lgtm.coordinated.dev/zone"].clone();
        assert!(pod.name_any().starts_with(&format!("ingest-{zone}-")));
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("scheduled");
        let node = nodes.get(&node_name).await.expect("node");
        assert_eq!(
            node.labels()["topology.kubernetes.io/zone"],
            zone,
            "{}",
            pod.name_any()
        );
        let args = pod.spec.expect("spec").containers[0]
            .args
            .clone()
            .expect("args");
        for flag in [
            "ingester.ring.instance-availability-zone",
            "store-gateway.sharding-ring.instance-availability-zone",
        ] {
            assert!(args.contains(&format!("-{flag}={zone}")), "{args:?}");
        }
    }
    // The shared configuration turns zone awareness on, replication factor 3.
    let config: ConfigMap = env.get("metrics-config").await;
    let text = config.data.expect("data")["config.yaml"].clone();
    let config: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    for ring in ["/ingester/ring", "/store_gateway/sharding_ring"] {
        let ring = config.pointer(ring).expect(ring);
        assert_eq!(ring["zone_awareness_enabled"], true, "{text}");
        assert_eq!(ring["replication_factor"], 3, "{text}");
    }
    // A disruption budget per zone StatefulSet: a drain may take one worker of a zone.
    let pdbs: Api<PodDisruptionBudget> = env.api();
    let budget = pdbs.get("ingest-zone-a").await.expect("zone a's budget");
    assert_eq!(
        budget.spec.and_then(|s| s.max_unavailable),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    // Scaling keeps the zones balanced: 7 is 3+2+2, then 2 is 1+1+0.
    env.merge_patch("workerpool", "query", r#"{"spec":{"replicas":7}}"#)
        .await;
    zones_ready(&env, "query", &[3, 2, 2]).await;
    assert_eq!(zone_replicas(&env, "query").await, [3, 2, 2]);
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let pdb = pdbs
            .get(&format!("query-{zone}"))
            .await
            .expect("zone budget");
        let selector = pdb
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.match_labels);
        assert_eq!(
            selector.expect("selector")["lgtm.coordinated.dev/zone"],
            zone
        );
    }
    env.merge_patch("workerpool", "query", r#"{"spec":{"replicas":2}}"#)
        .await;
    zones_ready(&env, "query", &[1, 1, 0]).await;
    assert_eq!(zone_replicas(&env, "query").await, [1, 1, 0]);

    // A pool named like one of a zoned pool's StatefulSets waits, and takes nothing.
    env.apply(&support::pool_yaml(
        "query-zone-a",
        "metrics",
        1,
        "{mimir: {querier: true}}",
    ))
    .await;
    let clash = env.pool_reason("query-zone-a", "Ready", "NameClash").await;
    assert!(
        clash.message.contains("WorkerPool query's"),
        "{}",
        clash.message
    );
    let sts: Api<StatefulSet> = env.api();
    let owner = sts
        .get("query-zone-a")
        .await
        .expect("zone a")
        .owner_references()[0]
        .name
        .clone();
    assert_eq!(owner, "query");
    // An unzoned pool of a zoned ring's role beside it: zone awareness goes off, and
    // the cluster says why.
    env.apply(&support::pool_yaml(
        "old-ingest",
        "metrics",
        1,
        "{mimir: {ingester: true}}",
    ))
    .await;
    let degraded = env
        .cluster_reason("metrics", "Degraded", "ZonesMixed")
        .await;
    assert!(
        degraded.message.contains("old-ingest"),
        "{}",
        degraded.message
    );
    env.finish().await;
}

/// One snapshot of a pool's pods: per pod, its zone, uid and whether it is Ready and
/// not going.
type Snapshot = Vec<(String, String, bool)>;

/// Lists the pool's pods every 50 ms until stopped; each list is one consistent view.
fn record_pods(
    env: &OperatorNamespace,
    pool: &str,
) -> (Arc<Mutex<Vec<Snapshot>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pods: Api<Pod> = env.api();
    let selector = format!("lgtm.coordinated.dev/pool={pool}");
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                let snapshot: Snapshot = list
                    .items
                    .iter()
                    .map(|p| {
                        let ready = p.metadata.deletion_timestamp.is_none()
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                        (
                            p.labels()["lgtm.coordinated.dev/zone"].clone(),
                            p.uid().unwrap_or_default(),
                            ready,
                        )
                    })
                    .collect();
                sink.lock().expect("lock").push(snapshot);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (seen, task)
}

/// The zones in the order their pods were first replaced, and the snapshots in which
/// two zones were disrupted at once (a pod missing, new and unready, or going).
fn replacement_order(
    snapshots: &[Snapshot],
    before: &BTreeSet<String>,
    per_zone: usize,
) -> (Vec<String>, Vec<usize>) {
    let mut order: Vec<String> = Vec::new();
    let mut overlaps = Vec::new();
    for (i, snapshot) in snapshots.iter().enumerate() {
        let mut disrupted = BTreeSet::new();
        for zone in ZONES {
            let pods: Vec<&(String, String, bool)> =
                snapshot.iter().filter(|(z, _, _)| z == zone).collect();
            let ready = pods.iter().filter(|(_, _, r)| *r).count();
            if ready < per_zone || pods.len() != per_zone {
                disrupted.insert(zone);
            }
            if pods.iter().any(|(_, uid, _)| !before.contains(uid))
                && !order.iter().any(|z| z == zone)
            {
                order.push(zone.to_string());
            }
        }
        if disrupted.len() > 1 {
            overlaps.push(i);
        }
    }
    (order, overlaps)
}

/// Waits until the pool has `count` Ready pods, none of them one of `before`.
async fn replaced(pods: &Api<Pod>, pool: &str, before: &BTreeMap<String, String>, count: usize) {
    let old: BTreeSet<String> = before.values().cloned().collect();
    let selector = format!("lgtm.coordinated.dev/pool={pool}");
    support::wait_for("every pod replaced and Ready", support::TIMEOUT, || async {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let fresh = list
            .items
            .iter()
            .filter(|p| !old.contains(&p.uid().unwrap_or_default()))
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok(if fresh == count && list.items.len() == count {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{fresh} of {} replaced and Ready",
                list.items.len()
            ))
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_one_zone_at_a_time_and_an_unready_zone_stops_it() {
    let mut env = OperatorNamespace::start("zone-roll").await;
    env.apply(CREDENTIALS).await;
    env.apply(&cluster_yaml("logs", "loki", "")).await;
    env.apply(&zoned_pool(
        "logs-all",
        "logs",
        6,
        "{loki: {all: true}}",
        "",
    ))
    .await;
    zones_ready(&env, "logs-all", &[2, 2, 2]).await;
    env.pool_reason("logs-all", "Progressing", "ZonesRolledOut")
        .await;
    let pods: Api<Pod> = env.api();
    let uids = |list: Vec<Pod>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .collect()
    };
    let selector = ListParams::default().labels("lgtm.coordinated.dev/pool=logs-all");
    let before = uids(pods.list(&selector).await.expect("pods").items);

    // A configuration change: every zone's pods must be replaced, one zone at a time.
    let (snapshots, recorder) = record_pods(&env, "logs-all");
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"configOverrides":{"server":{"log_level":"debug"}}}}"#,
    )
    .await;
    replaced(&pods, "logs-all", &before, 6).await;
    env.pool_reason("logs-all", "Progressing", "ZonesRolledOut")
        .await;
    recorder.abort();
    let after = uids(pods.list(&selector).await.expect("pods").items);
    for (name, uid) in &after {
        assert_ne!(before.get(name), Some(uid), "{name} was not replaced");
    }
    let snapshots = snapshots.lock().expect("lock").clone();
    let old: BTreeSet<String> = before.values().cloned().collect();
    let (order, overlaps) = replacement_order(&snapshots, &old, 2);
    assert_eq!(order, ZONES, "zones replaced in order");
    assert!(
        overlaps.is_empty(),
        "two zones disrupted at once in {} of {} snapshots, e.g. {:?}",
        overlaps.len(),
        snapshots.len(),
        overlaps.first().map(|i| &snapshots[*i])
    );

    // Zone b cannot come back (its pods can go on no node): its pods are replaced and
    // stay Pending, and the rollout stops there with a Warning. Zones a and c keep their
    // pods, though the configuration changed for them too: replacing them now would
    // take a second zone down.
    let before = uids(pods.list(&selector).await.expect("pods").items);
    env.merge_patch(
        "workerpool",
        "logs-all",
        r#"{"spec":{"rollout":{"zoneTimeoutSeconds":5},"zones":[{"name":"zone-a"},{"name":"zone-b","nodeSelector":{"lgtm-test/nowhere":"true"}},{"name":"zone-c"}]}}"#,
    )
    .await;
    // The configuration changes once zone b is being rolled, so that it is the zone
    // the rollout is on (else zone a, first in order, would go first).
    env.wait_until("logs-all", "the rollout on zone b", |p: WorkerPool| {
        let status = p.status.unwrap_or_default();
        match status.rollout {
            Some(r) if r.zone == "zone-b" => Check::Done(()),
            other => Check::Pending(format!("{other:?}")),
        }
    })
    .await;
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"configOverrides":{"server":{"log_level":"warn"}}}}"#,
    )
    .await;
    let stalled = env
        .pool_reason("logs-all", "Progressing", "ZoneRolloutStalled")
        .await;
    // On zone b itself, not on zone a waiting for it: a step that read the pool's
    // rollout from a cache behind the operator's own last write once went back to zone a.
    let on = env
        .get::<WorkerPool>("logs-all")
        .await
        .status
        .and_then(|s| s.rollout);
    assert_eq!(on.map(|r| r.zone).as_deref(), Some("zone-b"));
    assert!(
        stalled.message.starts_with("zone zone-b (2 of 3)"),
        "{}",
        stalled.message
    );
    // The cluster's Progressing names the pool and the zone.
    env.wait_condition::<lgtm_operator::api::GrafanaCluster>(
        "logs",
        "Progressing",
        "naming zone b",
        |c| c.message.contains("logs-all (zone zone-b)"),
    )
    .await;
    // While zone b is down, a drain may take none of the other zones' workers.
    let pdbs: Api<PodDisruptionBudget> = env.api();
    for (zone, allowed) in [("zone-a", 0), ("zone-b", 1), ("zone-c", 0)] {
        let budget = pdbs.get(&format!("logs-all-{zone}")).await.expect("budget");
        assert_eq!(
            budget.spec.and_then(|s| s.max_unavailable),
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(allowed)),
            "{zone}"
        );
    }
    let now = uids(pods.list(&selector).await.expect("pods").items);
    for (name, uid) in &before {
        let kept = now.get(name) == Some(uid);
        if name.starts_with("logs-all-zone-b-") {
            assert!(!kept, "{name} was not replaced");
        } else {
            assert!(kept, "{name} was replaced while zone b is down");
        }
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    let warnings: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ZoneRolloutStalled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));

    // An operator killed and restarted now goes on where it stopped: the same zone,
    // the same start, and zones a and c still untouched.
    let recorded = |p: WorkerPool| p.status.and_then(|s| s.rollout);
    let before_restart = recorded(env.get::<WorkerPool>("logs-all").await).expect("rollout");
    env.restart_operator();
    support::wait_for(
        "the new operator's pool reconciles",
        support::TIMEOUT,
        || async {
            let done = env.operator().reconciles_finished("workerpool");
            Ok(if done >= 1 {
                Check::Done(())
            } else {
                Check::Pending(format!("{done} reconciles"))
            })
        },
    )
    .await;
    assert_eq!(
        recorded(env.get::<WorkerPool>("logs-all").await),
        Some(before_restart)
    );
    let now = uids(pods.list(&selector).await.expect("pods").items);
    for (name, uid) in &before {
        if !name.starts_with("logs-all-zone-b-") {
            assert_eq!(
                now.get(name),
                Some(uid),
                "{name} replaced after the restart"
            );
        }
    }

    // Zone b can run again: it comes back, then zones a and c roll.
    env.merge_patch(
        "workerpool",
        "logs-all",
        r#"{"spec":{"zones":[{"name":"zone-a"},{"name":"zone-b"},{"name":"zone-c"}]}}"#,
    )
    .await;
    replaced(&pods, "logs-all", &before, 6).await;
    env.pool_reason("logs-all", "Progressing", "ZonesRolledOut")
        .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_zone_layouts_that_cannot_work() {
    let env = OperatorNamespace::start("zone-admission").await;
    let refused = [
        (
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: two}\nspec:\n  clusterRef: c\n  roles: {mimir: {ingester: true}}\n  zones: [{name: zone-a}, {name: zone-b}]\n",
            "at least three zones",
        ),
        (
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: twice}\nspec:\n  clusterRef: c\n  roles: {mimir: {ingester: true}}\n  zones: [{name: zone-a}, {name: zone-a}, {name: zone-b}]\n",
            "Duplicate value",
        ),
        (
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: upper}\nspec:\n  clusterRef: c\n  roles: {mimir: {ingester: true}}\n  zones: [{name: Zone-A}, {name: zone-b}, {name: zone-c}]\n",
            "spec.zones[0].name",
        ),
        (
            "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: a-pool-name-long-enough-to-overflow-it}\nspec:\n  clusterRef: c\n  roles: {mimir: {ingester: true}}\n  zones: [{name: zone-a}, {name: zone-b}, {name: europe-west-zone-c}]\n",
            "at most 52 characters",
        ),
    ];
    for (manifest, why) in refused {
        let out = env.try_apply(manifest).await;
        assert!(!out.success, "accepted: {manifest}");
        assert!(out.stderr.contains(why), "{why} not in: {}", out.stderr);
    }
    // Zones are fixed at creation: neither added, changed nor removed.
    env.apply(&zoned_pool(
        "fixed",
        "c",
        3,
        "{mimir: {ingester: true}}",
        "",
    ))
    .await;
    env.apply(&support::pool_yaml(
        "plain",
        "c",
        1,
        "{mimir: {ingester: true}}",
    ))
    .await;
    for (name, zones) in [
        (
            "fixed",
            r#"[{"name":"zone-a"},{"name":"zone-b"},{"name":"zone-d"}]"#,
        ),
        (
            "plain",
            r#"[{"name":"zone-a"},{"name":"zone-b"},{"name":"zone-c"}]"#,
        ),
    ] {
        let out = support::kubectl([
            "patch",
            "-n",
            env.name(),
            "workerpool",
            name,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"zones":{zones}}}}}"#),
        ])
        .await
        .expect("kubectl runs");
        assert!(!out.success, "{name}: zones changed");
        assert!(
            out.stderr.contains("zones are fixed at creation"),
            "{}",
            out.stderr
        );
    }
    env.finish().await;
}

/// The uid of each of the pool's pods, by name.
async fn uids_of(pods: &Api<Pod>, pool: &str) -> BTreeMap<String, String> {
    pods.list(&ListParams::default().labels(&format!("lgtm.coordinated.dev/pool={pool}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_node_zones_restart_one_after_another_and_a_zoned_worker_leaves_cleanly() {
    let env = OperatorNamespace::start("zones-real").await;
    let on_real_node = format!("{{\"{REAL_NODE_LABEL}\": \"true\"}}");
    let write = from_yaml(&format!(
        "apiVersion: lgtm.coordinated.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: logs-write}}\nspec:\n  clusterRef: logs\n  replicas: 3\n  roles: {{loki: {{write: true}}}}\n  zones: [{{name: zone-a, nodeSelector: {on_real_node}}}, {{name: zone-b, nodeSelector: {on_real_node}}}, {{name: zone-c, nodeSelector: {on_real_node}}}]\n  podOverrides: {{spec: {{containers: [{{name: loki, env: [{{name: LGTM_CONTRACT_FLUSH_SECONDS, value: \"1\"}}]}}]}}}}\n"
    ));
    let docs = vec![
        from_yaml(CREDENTIALS),
        from_yaml(&cluster_yaml("logs", "loki", "")),
        from_yaml(&support::pool_yaml(
            "logs-read",
            "logs",
            1,
            "{loki: {read: true}}",
        )),
        from_yaml(&support::pool_yaml(
            "logs-backend",
            "logs",
            1,
            "{loki: {backend: true}}",
        )),
        write,
    ];
    apply_on_real_node(&env, docs, Product::Loki).await;
    let pods: Api<Pod> = env.api();
    // The contract workers started (a member of a zone-aware ring without its zone
    // refuses to), each with its zone's flag.
    for (name, _) in uids_of(&pods, "logs-write").await {
        let pod = pods.get(&name).await.expect("pod");
        let zone = pod.labels()["lgtm.coordinated.dev/zone"].clone();
        let args = pod.spec.expect("spec").containers[0]
            .args
            .clone()
            .expect("args");
        assert!(
            args.contains(&format!("-ingester.availability-zone={zone}")),
            "{args:?}"
        );
    }

    // A configuration change restarts the zones one after another.
    let before = uids_of(&pods, "logs-write").await;
    let (snapshots, recorder) = record_pods(&env, "logs-write");
    env.merge_patch(
        "grafanacluster",
        "logs",
        r#"{"spec":{"configOverrides":{"server":{"log_level":"debug"}}}}"#,
    )
    .await;
    replaced(&pods, "logs-write", &before, 3).await;
    env.pool_reason("logs-write", "Progressing", "ZonesRolledOut")
        .await;
    recorder.abort();
    let snapshots = snapshots.lock().expect("lock").clone();
    let old: BTreeSet<String> = before.values().cloned().collect();
    let (order, overlaps) = replacement_order(&snapshots, &old, 1);
    assert_eq!(order, ZONES, "zones restarted in order");
    assert!(
        overlaps.is_empty(),
        "two zones down at once in {} of {} snapshots, e.g. {:?}",
        overlaps.len(),
        snapshots.len(),
        overlaps.first().map(|i| &snapshots[*i])
    );

    // 3 to 2: worker 2 is zone c's only pod; it is asked to flush and leave, and zone
    // c's StatefulSet goes to 0 once it has; zones a and b are asked nothing.
    env.merge_patch("workerpool", "logs-write", r#"{"spec":{"replicas":2}}"#)
        .await;
    env.wait_until("logs-write", "zone c emptied", |p: WorkerPool| {
        let status = p.status.unwrap_or_default();
        let zones: Vec<i32> = status.zones.iter().map(|z| z.replicas).collect();
        if zones == [1, 1, 0] && status.scale_down.is_none() {
            Check::Done(())
        } else {
            Check::Pending(format!("{zones:?} {:?}", status.scale_down))
        }
    })
    .await;
    let left = record_of(&env, "logs-write-zone-c-0").await;
    assert!(
        left.iter()
            .any(|r| r.call.starts_with("POST /ingester/shutdown")),
        "{left:?}"
    );
    for stays in ["logs-write-zone-a-0", "logs-write-zone-b-0"] {
        let record = record_of(&env, stays).await;
        assert!(
            !record.iter().any(|r| r.call.contains("shutdown")),
            "{stays}: {record:?}"
        );
    }
    env.finish().await;
}
