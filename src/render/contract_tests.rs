//! Every rendered worker pod, for every pool shape, checked against the products'
//! run-time contract (`crate::product::contract`): each path the product writes sits on a
//! writable volume (the data volume when it must survive a restart), the temp dir is
//! writable, every environment variable is one the product reads, nothing is left for
//! `-config.expand-env`, the request-path timeouts nest inside the gateway's, the grace
//! period covers the slowest role, the ports and probe are the product's, and a
//! zone-aware ring has no member without a zone.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use proptest::prelude::*;
use serde_json::Value;

use super::config::{self, ConfigInputs, Duration};
use super::workers::{self, Checksums, PoolView as WorkerPoolView};
use super::{ClusterView, REQUEST_TIMEOUTS, Settings};
use crate::fixtures;
use crate::product::contract::{Combinations, Contract};
use crate::product::{Product, Topology, expand};

/// A pool a user could write: toggles, replicas, and its name.
#[derive(Debug, Clone)]
struct Pool {
    toggles: Vec<&'static str>,
    replicas: i32,
    zoned: bool,
}

/// Toggle sets the API admits for `product` (the contract's combinations).
fn toggles(product: Product) -> BoxedStrategy<Vec<&'static str>> {
    let names: Vec<&'static str> = product.catalogue().toggle_names().collect();
    match product.contract().combinations {
        Combinations::ExactlyOne(_) => proptest::sample::select(names)
            .prop_map(|t| vec![t])
            .boxed(),
        Combinations::AnyBut(refused) => {
            let allowed: Vec<&'static str> = names
                .into_iter()
                .filter(|n| !refused.iter().any(|r| r.toggle == *n))
                .collect();
            proptest::sample::subsequence(allowed.clone(), 1..=allowed.len()).boxed()
        }
    }
}

fn pools(product: Product) -> impl Strategy<Value = Vec<Pool>> {
    proptest::collection::vec(
        (toggles(product), 0..5i32, any::<bool>()).prop_map(|(toggles, replicas, zoned)| Pool {
            toggles,
            replicas,
            zoned,
        }),
        1..5,
    )
}

/// A rendered cluster: its configuration (as a value and as text), the gateway's
/// nginx.conf and each pool's StatefulSet.
struct Rendered {
    config: Value,
    config_text: String,
    nginx: String,
    statefulsets: Vec<(Vec<&'static str>, StatefulSet)>,
}

/// Each storage backend a user can choose (S3 with a CA bundle, GCS, Azure, the
/// filesystem): each adds its own variables, volumes and arguments to the pods.
fn storage() -> impl Strategy<Value = Value> {
    proptest::sample::select(vec![
        serde_json::json!({"s3": {"endpoint": "https://s3.internal", "bucket": "b",
            "credentialsSecret": {"name": "s3"}, "caSecret": {"name": "ca"}}}),
        serde_json::json!({"gcs": {"bucket": "b", "credentialsSecret": {"name": "gcs"}}}),
        serde_json::json!({"azure": {"accountName": "acct", "container": "c",
            "credentialsSecret": {"name": "azure"}}}),
        serde_json::json!({"filesystem": {}}),
    ])
}

fn render(product: Product, pools: &[Pool], storage: Value, ipv6: bool, traces: bool) -> Rendered {
    let mut cluster = fixtures::minimal_cluster(product);
    cluster.spec.storage = serde_json::from_value(storage).expect("storage spec");
    if traces {
        cluster.spec.self_monitoring.traces = Some(crate::api::TracesDestination {
            otlp_endpoint: "traces.obs:4317".into(),
        });
    }
    let named: Vec<(String, &Pool)> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("p{i}"), p))
        .collect();
    let specs: Vec<(&str, &[&'static str], i32)> = named
        .iter()
        .map(|(name, p)| (name.as_str(), p.toggles.as_slice(), p.replicas))
        .collect();
    let zoned: Vec<&str> = named
        .iter()
        .filter(|(_, p)| p.zoned)
        .map(|(name, _)| name.as_str())
        .collect();
    let topology: Topology = fixtures::zoned_topology(product, &specs, &zoned);
    let view = ClusterView::new(&cluster);
    let settings = Settings::default();
    let inputs =
        ConfigInputs::for_cluster(&view, &topology, &settings, None, Some("2026-11-18"), ipv6);
    let config_text = config::render(&inputs).expect("renders");
    let config: Value = serde_saphyr::from_str(&config_text).expect("YAML");
    let gateway = super::gateway::build(
        &view,
        &topology.present_roles(),
        &settings,
        (None, &Default::default()),
    );
    let nginx = gateway
        .config
        .data
        .as_ref()
        .and_then(|d| d.get("nginx.conf"))
        .cloned()
        .expect("nginx.conf");
    let checksums = Checksums {
        config: "c".into(),
        secrets: "s".into(),
    };
    let statefulsets = named
        .iter()
        .flat_map(|(name, pool)| {
            let spec = fixtures::pool(
                name,
                &format!(
                    "replicas: {}\nroles: {{{product}: {{{}}}}}\n{}",
                    pool.replicas,
                    pool.toggles
                        .iter()
                        .map(|t| format!("{}: true", json_name(t)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if pool.zoned {
                        "zones: [{name: zone-a}, {name: zone-b}, {name: zone-c}]"
                    } else {
                        ""
                    }
                ),
            );
            let view_of_pool = WorkerPoolView {
                name: name.clone(),
                spec: &spec.spec,
                owner: None,
                toggles: pool.toggles.clone(),
            };
            let built = workers::build(&view, &view_of_pool, &checksums).expect("builds");
            let toggles = pool.toggles.clone();
            built
                .statefulsets
                .into_iter()
                .map(move |sts| (toggles.clone(), sts))
        })
        .collect();
    Rendered {
        config,
        config_text,
        nginx,
        statefulsets,
    }
}

fn json_name(toggle: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in toggle.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The value at a dotted key path (`a.b.c`), if set.
fn at<'v>(config: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(config, |v, part| v.get(part))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where a contract path lands: the key's value, else its default resolved against the
/// image's working directory or derived from another key.
fn effective_path(
    contract: &Contract,
    config: &Value,
    key: &str,
    default: &str,
) -> Result<String, String> {
    if let Some(value) = at(config, key).and_then(text) {
        return Ok(value);
    }
    if default.is_empty() {
        return Err(format!("`{key}` has no default and is not set"));
    }
    if let Some(rest) = default.strip_prefix('{') {
        let (base_key, tail) = rest.split_once('}').ok_or("bad derived default")?;
        let base = at(config, base_key)
            .and_then(text)
            .ok_or_else(|| format!("`{key}` derives from `{base_key}`, which is not set"))?;
        return Ok(format!("{base}{tail}"));
    }
    if default.starts_with('/') {
        return Ok(default.to_string());
    }
    Ok(format!(
        "{}/{}",
        contract.image.workdir.trim_end_matches('/'),
        default.trim_start_matches("./")
    ))
}

/// The mount a path is under (the longest mount path that contains it).
fn mount_of<'c>(
    container: &'c Container,
    path: &str,
) -> Option<&'c k8s_openapi::api::core::v1::VolumeMount> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            path == m.mount_path
                || path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/')))
        })
        .max_by_key(|m| m.mount_path.len())
}

/// Whether a path is on a writable volume: an emptyDir or the volume claim (`data`).
fn writable(
    pod: &PodSpec,
    claims: &BTreeSet<String>,
    container: &Container,
    path: &str,
) -> Result<String, String> {
    let mount = mount_of(container, path)
        .ok_or_else(|| format!("{path} is on the read-only root filesystem"))?;
    if mount.read_only == Some(true) {
        return Err(format!(
            "{path} is under the read-only mount {}",
            mount.mount_path
        ));
    }
    let from_claim = claims.contains(&mount.name);
    let empty_dir = pod
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == mount.name && v.empty_dir.is_some());
    if !from_claim && !empty_dir {
        return Err(format!(
            "{path} is under {}, which is neither an emptyDir nor the data volume",
            mount.mount_path
        ));
    }
    Ok(mount.name.clone())
}

fn seconds(duration: &str) -> u64 {
    Duration::parse(duration).map_or(0, |d| d.seconds())
}

/// Every contract check on one rendered cluster; the problems found.
fn problems(product: Product, rendered: &Rendered) -> Vec<String> {
    let mut problems = timeout_problems(product.contract(), rendered);
    for (toggles, statefulset) in &rendered.statefulsets {
        let pod = Pod::new(product, toggles, statefulset);
        problems.extend(pod.problems(rendered));
    }
    problems
}

/// Timeouts nest: query < server write < gateway.
fn timeout_problems(contract: &Contract, rendered: &Rendered) -> Vec<String> {
    let mut problems = Vec::new();
    let query = contract
        .timeouts
        .query
        .iter()
        .map(|t| {
            let value = at(&rendered.config, t.key)
                .and_then(text)
                .unwrap_or(t.default.to_string());
            match seconds(&value) {
                0 => u64::MAX, // 0 is no bound at all
                s => s,
            }
        })
        .max()
        .unwrap_or(u64::MAX);
    let write = contract.timeouts.server_write.key;
    let write = seconds(
        &at(&rendered.config, write)
            .and_then(text)
            .unwrap_or(contract.timeouts.server_write.default.to_string()),
    );
    let gateway: u64 = rendered
        .nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy_read_timeout "))
        .and_then(|v| v.trim_end_matches(';').trim_end_matches('s').parse().ok())
        .unwrap_or(0);
    if !(query < write && write < gateway) {
        problems.push(format!(
            "timeouts do not nest: query {query}s, server write {write}s, gateway {gateway}s"
        ));
    }
    if gateway != u64::from(REQUEST_TIMEOUTS.gateway) {
        problems.push(format!("gateway waits {gateway}s"));
    }
    problems
}

/// One pool's rendered pod, as the contract checks see it.
struct Pod<'a> {
    contract: &'static Contract,
    roles: Vec<&'static str>,
    /// The names of the volume claims (the data volume).
    claims: BTreeSet<String>,
    pod: &'a PodSpec,
    container: &'a Container,
    /// Names the pool in problems.
    label: String,
    /// The zone of a zoned pool's StatefulSet.
    zone: Option<String>,
    replicas: i32,
}

impl<'a> Pod<'a> {
    fn new(product: Product, toggles: &[&'static str], statefulset: &'a StatefulSet) -> Self {
        let spec = statefulset.spec.as_ref().expect("spec");
        let pod = spec.template.spec.as_ref().expect("pod");
        Self {
            contract: product.contract(),
            roles: expand(product, toggles).into_iter().collect(),
            claims: spec
                .volume_claim_templates
                .iter()
                .flatten()
                .filter_map(|c| c.metadata.name.clone())
                .collect(),
            pod,
            container: &pod.containers[0],
            label: format!("{product} {toggles:?}"),
            zone: statefulset
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(super::zones::ZONE))
                .cloned(),
            replicas: spec.replicas.unwrap_or(0),
        }
    }

    /// A zoned pod gives each of its rings its zone; an unzoned one is never a member
    /// of a ring whose zone awareness is on (it would escape the one copy per zone).
    fn zone_problems(&self, config: &Value) -> Vec<String> {
        let args = self.container.args.clone().unwrap_or_default();
        let mut problems = Vec::new();
        for ring in self.contract.zone_rings_of(&self.roles) {
            let aware = at(config, ring.awareness) == Some(&Value::Bool(true));
            match &self.zone {
                Some(zone) => {
                    let flag = format!("-{}={zone}", ring.zone_flag);
                    if !args.contains(&flag) {
                        problems.push(format!("{}: {flag} is missing", self.label));
                    }
                    if aware && at(config, ring.replication_factor) != Some(&Value::from(3)) {
                        problems.push(format!(
                            "{}: zone-aware {} ring without replication factor 3",
                            self.label, ring.role
                        ));
                    }
                }
                None if aware && self.replicas > 0 => problems.push(format!(
                    "{}: a member of the zone-aware {} ring has no zone",
                    self.label, ring.role
                )),
                None => {}
            }
        }
        problems
    }

    fn problems(&self, rendered: &Rendered) -> Vec<String> {
        let mut problems = self.write_problems(&rendered.config);
        problems.extend(self.temp_dir_problem());
        problems.extend(self.env_problems());
        problems.extend(self.substitution_problems(&rendered.config_text));
        problems.extend(self.grace_problem());
        problems.extend(self.port_problems(&rendered.config));
        problems.extend(self.zone_problems(&rendered.config));
        problems.extend(self.tenancy_problems(&rendered.config));
        problems
    }

    /// The multi-tenancy switch is written, and the runtime-overrides file is where a
    /// directory mount of its ConfigMap (not a subPath, which never updates) puts it.
    fn tenancy_problems(&self, config: &Value) -> Vec<String> {
        let (tenancy, label) = (&self.contract.tenancy, &self.label);
        let mut problems = Vec::new();
        if at(config, tenancy.switch)
            .and_then(Value::as_bool)
            .is_none()
        {
            problems.push(format!("{label}: `{}` is not written", tenancy.switch));
        }
        let file = at(config, tenancy.runtime_file).and_then(text);
        let mount = file.as_deref().and_then(|f| mount_of(self.container, f));
        let volume =
            mount.and_then(|m| self.pod.volumes.iter().flatten().find(|v| v.name == m.name));
        let from_config_map = volume
            .and_then(|v| v.config_map.as_ref())
            .is_some_and(|c| c.name.ends_with("-overrides"));
        if !from_config_map || mount.is_some_and(|m| m.sub_path.is_some()) {
            problems.push(format!(
                "{label}: `{}` ({file:?}) is not in a directory mount of the overrides ConfigMap",
                tenancy.runtime_file
            ));
        }
        if at(config, tenancy.runtime_period).and_then(text).is_none() {
            problems.push(format!(
                "{label}: `{}` is not written",
                tenancy.runtime_period
            ));
        }
        problems
    }

    /// Paths the product writes.
    fn write_problems(&self, config: &Value) -> Vec<String> {
        let (contract, label) = (self.contract, &self.label);
        let mut problems = Vec::new();
        for write in contract.writes {
            if !write.roles.is_empty() && !write.roles.iter().any(|r| self.roles.contains(r)) {
                continue;
            }
            match effective_path(contract, config, write.key, write.default).and_then(|path| {
                writable(self.pod, &self.claims, self.container, &path).map(|volume| (path, volume))
            }) {
                Ok((path, volume)) if write.persistent && !self.claims.contains(&volume) => {
                    problems.push(format!(
                        "{label}: {path} (`{}`) must survive a restart but is on {volume}",
                        write.key
                    ))
                }
                Ok(_) => {}
                Err(problem) => problems.push(format!("{label}: `{}`: {problem}", write.key)),
            }
        }
        problems
    }

    /// The OS temp dir.
    fn temp_dir_problem(&self) -> Option<String> {
        if !self.contract.uses_temp_dir(&self.roles) {
            return None;
        }
        let temp = self
            .container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "TMPDIR")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "/tmp".into());
        writable(self.pod, &self.claims, self.container, &temp)
            .err()
            .map(|problem| format!("{}: the temp dir: {problem}", self.label))
    }

    /// Environment: only what the product reads.
    fn env_problems(&self) -> Vec<String> {
        self.container
            .env
            .iter()
            .flatten()
            .filter(|var| !self.contract.reads_env(&var.name))
            .map(|var| {
                format!(
                    "{}: {} is not a variable the product reads",
                    self.label, var.name
                )
            })
            .collect()
    }

    /// Nothing to substitute, and so no -config.expand-env (whose escaping differs by
    /// product, and for Mimir does not exist); one module per -target where the product
    /// takes only one.
    fn substitution_problems(&self, config_text: &str) -> Vec<String> {
        let label = &self.label;
        let mut problems = Vec::new();
        let args = self.container.args.clone().unwrap_or_default();
        if config_text.contains('$') {
            problems.push(format!("{label}: the configuration holds a `$`"));
        }
        if args.iter().any(|a| a.starts_with("-config.expand-env")) {
            problems.push(format!("{label}: runs with -config.expand-env"));
        }
        if let Combinations::ExactlyOne(_) = self.contract.combinations {
            let target = args
                .iter()
                .find_map(|a| a.strip_prefix("-target="))
                .unwrap_or_default();
            if target.contains(',') || target.is_empty() {
                problems.push(format!("{label}: -target={target} is not one module"));
            }
        }
        problems
    }

    /// Grace period.
    fn grace_problem(&self) -> Option<String> {
        let grace = self.pod.termination_grace_period_seconds.unwrap_or(30);
        (grace < self.contract.grace_seconds(&self.roles)).then(|| {
            format!(
                "{}: grace period {grace}s is shorter than its roles need",
                self.label
            )
        })
    }

    /// Ports and the readiness probe.
    fn port_problems(&self, config: &Value) -> Vec<String> {
        let label = &self.label;
        let mut problems = Vec::new();
        let ports: Vec<i32> = self
            .container
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        for port in self
            .contract
            .ports
            .iter()
            .filter(|p| ["http", "grpc", "memberlist"].contains(&p.name))
        {
            let number = at(config, port.key)
                .and_then(text)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(i32::from(port.port));
            if !ports.contains(&number) {
                problems.push(format!(
                    "{label}: the product binds {number} ({}) but the pod does not expose it",
                    port.key
                ));
            }
        }
        let probe = self
            .container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|g| g.path.clone().unwrap_or_default());
        if probe.as_deref() != Some("/ready") {
            problems.push(format!("{label}: readiness probe {probe:?}, not /ready"));
        }
        problems
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mimir_pods_honour_the_runtime_contract(pools in pools(Product::Mimir), storage in storage(), ipv6: bool, traces: bool) {
        let problems = problems(Product::Mimir, &render(Product::Mimir, &pools, storage, ipv6, traces));
        prop_assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn loki_pods_honour_the_runtime_contract(pools in pools(Product::Loki), storage in storage(), ipv6: bool, traces: bool) {
        let problems = problems(Product::Loki, &render(Product::Loki, &pools, storage, ipv6, traces));
        prop_assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn tempo_pods_honour_the_runtime_contract(pools in pools(Product::Tempo), storage in storage(), ipv6: bool, traces: bool) {
        let problems = problems(Product::Tempo, &render(Product::Tempo, &pools, storage, ipv6, traces));
        prop_assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// The checks catch what they are for: the rendering before the contract existed (the
/// activity file on the read-only root, no /tmp, nested timeouts missing,
/// -config.expand-env with `${…}` credentials) fails them.
#[test]
fn the_old_rendering_fails_the_contract() {
    for product in Product::ALL {
        let pool = Pool {
            toggles: vec!["all"],
            replicas: 1,
            zoned: true,
        };
        let s3 = serde_json::json!({"s3": {"endpoint": "minio:9000", "bucket": "b",
            "credentialsSecret": {"name": "s3"}}});
        let mut rendered = render(product, &[pool], s3, false, false);
        // What the operator rendered before: no activity file setting, expand-env with
        // credentials substituted, no temp dir, the products' default timeouts.
        if let Value::Object(map) = &mut rendered.config {
            map.remove("activity_tracker");
            map.remove("server");
            map.remove("querier");
            map.remove("query_frontend");
            if let Some(Value::Object(limits)) = map.get_mut("limits_config") {
                limits.remove("query_timeout");
            }
        }
        rendered
            .config_text
            .push_str("\n# access_key_id: ${LGTM_S3_ACCESS_KEY_ID}\n");
        for (_, statefulset) in &mut rendered.statefulsets {
            let pod = statefulset
                .spec
                .as_mut()
                .and_then(|s| s.template.spec.as_mut())
                .expect("pod");
            pod.volumes
                .get_or_insert_default()
                .retain(|v| v.name != "tmp");
            let container = &mut pod.containers[0];
            container
                .volume_mounts
                .get_or_insert_default()
                .retain(|m| m.name != "tmp");
            let args = container.args.get_or_insert_default();
            args.insert(1, "-config.expand-env=true".into());
            // And a zoned pod that does not say its zone.
            args.retain(|a| !a.contains("availability-zone"));
        }
        let found = problems(product, &rendered).join("\n");
        assert!(found.contains("timeouts do not nest"), "{product}: {found}");
        assert!(found.contains("-config.expand-env"), "{product}: {found}");
        assert!(
            found.contains("availability-zone=zone-a is missing"),
            "{product}: {found}"
        );
        match product {
            Product::Mimir => {
                assert!(
                    found.contains("/metrics-activity.log is on the read-only root filesystem"),
                    "{found}"
                );
                assert!(found.contains("the temp dir"), "{found}");
            }
            Product::Loki => assert!(found.contains("the temp dir"), "{found}"),
            Product::Tempo => {}
        }
    }
}

/// Every key the runtime-overrides file gets is a per-tenant key of the contract, so a
/// strict loader (all three products) never rejects the file.
#[test]
fn runtime_overrides_write_only_contract_keys() {
    use super::tenancy::TenantEntry;
    use crate::api::TenantLimits;
    let limits = TenantLimits {
        ingestion_rate: Some(1),
        ingestion_burst: Some(2),
        max_active: Some(3),
        retention: Some("30d".into()),
    };
    let entry = TenantEntry {
        id: "t".into(),
        limits,
        retention: Some(Duration::parse("30d").expect("duration")),
    };
    for product in Product::ALL {
        let text = super::tenancy::runtime_overrides(
            product,
            std::slice::from_ref(&entry),
            // Span metrics on: every key an entry can carry.
            &super::tenancy::tempo_entry_base(true, None),
        );
        let file: Value = serde_saphyr::from_str(&text).expect("YAML");
        let contract = product.contract();
        let mut keys = Vec::new();
        fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
            match value.as_object() {
                Some(map) => {
                    for (k, v) in map {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&path, v, out);
                    }
                }
                None => out.push(prefix.to_string()),
            }
        }
        leaves("", &file["overrides"]["t"], &mut keys);
        let known: BTreeSet<&str> = contract.tenancy.limits.iter().map(|l| l.key).collect();
        for key in &keys {
            assert!(
                known.contains(key.as_str()),
                "{product}: {key} is not in the contract"
            );
        }
        assert!(keys.len() >= 4, "{product}: every limit written: {keys:?}");
    }
}
