//! Which roles a set of pools provides, and whether that makes a consistent cluster.
//! Pure functions of the catalogue and the pools' specs, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Catalogue, Product};

/// The concrete roles a set of toggles stands for, sorted, meta-roles expanded.
pub fn expand(product: Product, toggles: &[&str]) -> BTreeSet<&'static str> {
    let catalogue = product.catalogue();
    let mut roles = BTreeSet::new();
    for toggle in toggles {
        if let Some(meta) = catalogue.meta_role(toggle) {
            roles.extend(meta.roles.iter().copied());
        } else if let Some(role) = catalogue.role(toggle) {
            roles.insert(role.name);
        }
    }
    roles
}

/// Why a pool's toggles cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToggleError {
    /// One process cannot run these toggles (the runtime contract says why).
    Refused(String),
    Unknown(String),
}

impl fmt::Display for ToggleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToggleError::Refused(why) => f.write_str(why),
            ToggleError::Unknown(t) => write!(f, "unknown role {t:?}"),
        }
    }
}

/// Checks toggles against what the product allows (the CRD's CEL rules say the same,
/// this also covers manifests read offline by `render`).
pub fn validate_toggles(product: Product, toggles: &[&'static str]) -> Result<(), ToggleError> {
    let catalogue = product.catalogue();
    if let Some(unknown) = toggles
        .iter()
        .find(|t| catalogue.role(t).is_none() && catalogue.meta_role(t).is_none())
    {
        return Err(ToggleError::Unknown(unknown.to_string()));
    }
    product
        .contract()
        .allows(toggles)
        .map_err(ToggleError::Refused)
}

/// The value of `-target` for a set of toggles: meta-roles by the product's own name for
/// them, roles a chosen meta-role already covers left out, sorted and comma-joined.
pub fn target_arg(product: Product, toggles: &[&str]) -> String {
    let catalogue = product.catalogue();
    let metas: Vec<_> = toggles
        .iter()
        .filter_map(|t| catalogue.meta_role(t))
        .collect();
    let mut targets: BTreeSet<&str> = metas.iter().map(|m| m.target).collect();
    for toggle in toggles {
        if let Some(role) = catalogue.role(toggle)
            && !metas.iter().any(|m| m.roles.contains(&role.name))
        {
            targets.insert(role.name);
        }
    }
    targets.into_iter().collect::<Vec<_>>().join(",")
}

/// A pool summed up for the topology: its roles, replicas and readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSummary {
    pub name: String,
    /// Product of the pool's role block; `None` when the block is missing.
    pub product: Option<Product>,
    pub toggles: Vec<&'static str>,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// The zones the pool's workers are spread over, in order (none: unzoned).
    pub zones: Vec<String>,
}

/// Why a pool does not count towards its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolProblem {
    ProductMismatch { pool: Product, cluster: Product },
    NoRoleBlock,
    Toggles(ToggleError),
}

impl fmt::Display for PoolProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolProblem::ProductMismatch { pool, cluster } => write!(
                f,
                "roles are for {pool} but the cluster runs {cluster}: set roles.{cluster} instead"
            ),
            PoolProblem::NoRoleBlock => {
                f.write_str("set exactly one of roles.mimir, roles.loki, roles.tempo")
            }
            PoolProblem::Toggles(e) => e.fmt(f),
        }
    }
}

/// Checks that a pool can run in a cluster of `cluster` product.
pub fn validate_pool(cluster: Product, pool: &PoolSummary) -> Result<(), PoolProblem> {
    let product = pool.product.ok_or(PoolProblem::NoRoleBlock)?;
    if product != cluster {
        return Err(PoolProblem::ProductMismatch {
            pool: product,
            cluster,
        });
    }
    validate_toggles(product, &pool.toggles).map_err(PoolProblem::Toggles)
}

/// Who provides one role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provision {
    pub required: bool,
    /// Valid pools carrying the role, sorted by name.
    pub pools: Vec<String>,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// Those of `pools` with replicas, zoned and not.
    pub zoned: Vec<String>,
    pub unzoned: Vec<String>,
    /// The zones that hold a worker carrying the role.
    pub zones_held: BTreeSet<String>,
}

/// The roles a cluster's valid pools provide, and what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub product: Product,
    /// Every required role and every role some valid pool carries.
    pub roles: BTreeMap<&'static str, Provision>,
    /// Pools that do not count, with the reason, sorted by name.
    pub invalid_pools: Vec<(String, PoolProblem)>,
    /// The toggles of each valid pool.
    pub toggles: BTreeMap<String, Vec<&'static str>>,
}

impl Topology {
    pub fn new(product: Product, pools: &[PoolSummary]) -> Self {
        let catalogue = product.catalogue();
        let mut roles: BTreeMap<&'static str, Provision> = catalogue
            .required_roles()
            .map(|r| {
                let provision = Provision {
                    required: true,
                    ..Provision::default()
                };
                (r, provision)
            })
            .collect();
        let mut invalid_pools = Vec::new();
        let mut toggles = BTreeMap::new();
        let mut pools: Vec<&PoolSummary> = pools.iter().collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        for pool in pools {
            if let Err(problem) = validate_pool(product, pool) {
                invalid_pools.push((pool.name.clone(), problem));
                continue;
            }
            toggles.insert(pool.name.clone(), pool.toggles.clone());
            for role in expand(product, &pool.toggles) {
                let provision = roles.entry(role).or_default();
                provision.pools.push(pool.name.clone());
                provision.replicas += pool.replicas.max(0);
                provision.ready_replicas += pool.ready_replicas.max(0);
                if pool.replicas > 0 {
                    match pool.zones.is_empty() {
                        true => provision.unzoned.push(pool.name.clone()),
                        false => provision.zoned.push(pool.name.clone()),
                    }
                }
                // Worker k runs in zone k % zones: the first `replicas` zones hold one.
                let held = usize::try_from(pool.replicas).unwrap_or(0);
                provision
                    .zones_held
                    .extend(pool.zones.iter().take(held).cloned());
            }
        }
        Self {
            product,
            roles,
            invalid_pools,
            toggles,
        }
    }

    /// The toggles of valid pool `pool` (none for an unknown one).
    pub fn pool_toggles(&self, pool: &str) -> &[&'static str] {
        self.toggles
            .get(pool)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn catalogue(&self) -> &'static Catalogue {
        self.product.catalogue()
    }

    /// Required roles that no valid pool with replicas provides, sorted.
    pub fn missing_roles(&self) -> Vec<&'static str> {
        self.roles
            .iter()
            .filter(|(_, p)| p.required && p.replicas == 0)
            .map(|(r, _)| *r)
            .collect()
    }

    /// Every required role has at least one desired replica.
    pub fn is_consistent(&self) -> bool {
        self.missing_roles().is_empty()
    }

    /// Required roles without a ready replica, sorted.
    pub fn unready_required_roles(&self) -> Vec<&'static str> {
        self.roles
            .iter()
            .filter(|(_, p)| p.required && p.ready_replicas == 0)
            .map(|(r, _)| *r)
            .collect()
    }

    /// Roles with at least one desired replica: the ones the gateway routes to and that
    /// get a Service.
    pub fn present_roles(&self) -> BTreeSet<&'static str> {
        self.roles
            .iter()
            .filter(|(_, p)| p.replicas > 0)
            .map(|(r, _)| *r)
            .collect()
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.get(role).is_some_and(|p| p.replicas > 0)
    }

    /// Desired replicas carrying a role.
    pub fn replicas(&self, role: &str) -> i32 {
        self.roles.get(role).map_or(0, |p| p.replicas)
    }

    /// Replication factor for a ring whose members carry `role`: 3 once at least three
    /// replicas carry it (one copy per zone when zone-aware), else 1 (a ring cannot
    /// replicate wider than its members).
    pub fn replication_factor(&self, role: &str) -> u32 {
        if self.replicas(role) >= 3 { 3 } else { 1 }
    }

    /// Whether the ring of `role` is told the zones: it has three members or more in
    /// three zones or more, and every pool with replicas carrying the role is zoned. A ring whose members are partly zoned keeps zone awareness
    /// off (the products' migration state: a zoneless member would escape the one copy
    /// per zone rule, ADR 14), and [`Topology::mixed_zones`] says so.
    pub fn zone_aware(&self, role: &str) -> bool {
        // Fewer than three members replicate once (replication factor 1), zones or not:
        // with 3 and one member, every write would want two zones that hold nobody.
        self.replicas(role) >= 3
            && self.roles.get(role).is_some_and(|p| {
                !p.zoned.is_empty() && p.unzoned.is_empty() && p.zones_held.len() >= 3
            })
    }

    /// Rings of zone-aware roles whose members are partly zoned: one line each.
    pub fn mixed_zones(&self) -> Vec<String> {
        self.product
            .contract()
            .zones
            .iter()
            .filter_map(|ring| {
                let p = self.roles.get(ring.role)?;
                (!p.zoned.is_empty() && !p.unzoned.is_empty()).then(|| {
                    format!(
                        "the {} ring has zoned pools ({}) beside unzoned ones ({})",
                        ring.role,
                        p.zoned.join(", "),
                        p.unzoned.join(", ")
                    )
                })
            })
            .collect()
    }

    /// Advice where a role runs with fewer replicas than recommended.
    pub fn recommendations(&self) -> Vec<String> {
        self.catalogue()
            .roles
            .iter()
            .filter_map(|role| {
                let have = self.replicas(role.name);
                let want = role.recommended.replicas;
                (have > 0 && have < want).then(|| {
                    let noun = if have == 1 { "replica" } else { "replicas" };
                    format!("{}: {have} {noun}; {}", role.name, role.recommended.reason)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, product: Product, toggles: &[&'static str], replicas: i32) -> PoolSummary {
        PoolSummary {
            name: name.into(),
            product: Some(product),
            toggles: toggles.to_vec(),
            replicas,
            ready_replicas: replicas,
            zones: Vec::new(),
        }
    }

    const MIMIR: Product = Product::Mimir;
    const LOKI: Product = Product::Loki;
    const TEMPO: Product = Product::Tempo;

    #[test]
    fn monolithic_all_pool_is_consistent_for_every_product() {
        for product in Product::ALL {
            let topology = Topology::new(product, &[pool("all", product, &["all"], 1)]);
            assert!(
                topology.is_consistent(),
                "{product}: {:?}",
                topology.missing_roles()
            );
            assert!(topology.invalid_pools.is_empty());
        }
    }

    #[test]
    fn mimir_read_write_backend_is_consistent_and_expands_as_documented() {
        let pools = [
            pool("read", MIMIR, &["read"], 2),
            pool("write", MIMIR, &["write"], 3),
            pool("backend", MIMIR, &["backend"], 1),
        ];
        let topology = Topology::new(MIMIR, &pools);
        assert!(topology.is_consistent());
        assert_eq!(
            expand(MIMIR, &["backend"]).into_iter().collect::<Vec<_>>(),
            [
                "alertmanager",
                "compactor",
                "overrides-exporter",
                "query-scheduler",
                "ruler",
                "store-gateway"
            ]
        );
        assert_eq!(topology.replicas("ingester"), 3);
        assert_eq!(topology.roles["querier"].pools, ["read"]);
        assert!(topology.has_role("query-scheduler"));
        assert!(!topology.has_role("flusher"));
    }

    #[test]
    fn mimir_fully_split_is_consistent() {
        let roles = [
            "compactor",
            "distributor",
            "ingester",
            "querier",
            "query-frontend",
            "store-gateway",
            "ruler",
        ];
        let pools: Vec<_> = roles.iter().map(|r| pool(r, MIMIR, &[r], 1)).collect();
        assert!(Topology::new(MIMIR, &pools).is_consistent());
        let without_ruler: Vec<_> = pools.into_iter().filter(|p| p.name != "ruler").collect();
        assert_eq!(
            Topology::new(MIMIR, &without_ruler).missing_roles(),
            ["ruler"]
        );
    }

    #[test]
    fn mimir_read_and_write_only_misses_the_backend_roles() {
        let pools = [
            pool("read", MIMIR, &["read"], 1),
            pool("write", MIMIR, &["write"], 1),
        ];
        let topology = Topology::new(MIMIR, &pools);
        assert!(!topology.is_consistent());
        assert_eq!(
            topology.missing_roles(),
            ["compactor", "ruler", "store-gateway"]
        );
    }

    #[test]
    fn loki_read_write_backend_and_all_are_consistent() {
        let split = [
            pool("r", LOKI, &["read"], 3),
            pool("w", LOKI, &["write"], 3),
            pool("b", LOKI, &["backend"], 3),
        ];
        assert!(Topology::new(LOKI, &split).is_consistent());
        // One process running write beside read runs its index shipper write-only
        // (runtime contract): such a pool is invalid, and provides nothing.
        let two_in_one = [
            pool("rw", LOKI, &["read", "write"], 1),
            pool("b", LOKI, &["backend"], 1),
        ];
        let topology = Topology::new(LOKI, &two_in_one);
        assert!(!topology.is_consistent());
        assert_eq!(topology.invalid_pools[0].0, "rw");
    }

    #[test]
    fn tempo_single_role_pools_are_consistent_and_metrics_generator_is_optional() {
        let roles = [
            "querier",
            "query-frontend",
            "ingester",
            "distributor",
            "compactor",
        ];
        let pools: Vec<_> = roles.iter().map(|r| pool(r, TEMPO, &[r], 1)).collect();
        let topology = Topology::new(TEMPO, &pools);
        assert!(topology.is_consistent());
        assert!(!topology.has_role("metrics-generator"));
        assert_eq!(target_arg(TEMPO, &["all"]), "scalable-single-binary");
        assert_eq!(target_arg(TEMPO, &["query-frontend"]), "query-frontend");
    }

    #[test]
    fn tempo_pool_with_two_toggles_is_invalid() {
        let pools = [pool("two", TEMPO, &["querier", "ingester"], 1)];
        let topology = Topology::new(TEMPO, &pools);
        assert!(matches!(
            topology.invalid_pools[0].1,
            PoolProblem::Toggles(ToggleError::Refused(_))
        ));
        assert!(topology.roles["querier"].pools.is_empty());
    }

    #[test]
    fn zero_replica_pools_do_not_provide_roles() {
        let pools = [pool("all", MIMIR, &["all"], 0)];
        let topology = Topology::new(MIMIR, &pools);
        assert!(!topology.is_consistent());
        assert_eq!(topology.missing_roles().len(), 7);
        // The pool is still listed against its roles, with no replicas.
        assert_eq!(topology.roles["ingester"].pools, ["all"]);
        assert!(topology.present_roles().is_empty());
    }

    #[test]
    fn pools_of_the_wrong_product_do_not_count() {
        let pools = [pool("loki-all", LOKI, &["all"], 1)];
        let topology = Topology::new(MIMIR, &pools);
        assert!(!topology.is_consistent());
        assert_eq!(
            topology.invalid_pools,
            [(
                "loki-all".to_string(),
                PoolProblem::ProductMismatch {
                    pool: LOKI,
                    cluster: MIMIR
                }
            )]
        );
        assert_eq!(
            topology.invalid_pools[0].1.to_string(),
            "roles are for loki but the cluster runs mimir: set roles.mimir instead"
        );
    }

    #[test]
    fn target_arg_passes_meta_roles_and_drops_roles_they_cover() {
        assert_eq!(target_arg(MIMIR, &["read"]), "read");
        assert_eq!(
            target_arg(MIMIR, &["querier", "read", "compactor"]),
            "compactor,read"
        );
        assert_eq!(
            target_arg(MIMIR, &["ruler", "querier", "distributor"]),
            "distributor,querier,ruler"
        );
    }

    #[test]
    fn replication_factor_is_three_from_three_replicas() {
        let one = Topology::new(MIMIR, &[pool("w", MIMIR, &["write"], 2)]);
        assert_eq!(one.replication_factor("ingester"), 1);
        let three = Topology::new(
            MIMIR,
            &[
                pool("w", MIMIR, &["write"], 2),
                pool("i", MIMIR, &["ingester"], 1),
            ],
        );
        assert_eq!(three.replication_factor("ingester"), 3);
    }

    #[test]
    fn recommendations_name_roles_below_their_recommended_replicas() {
        let topology = Topology::new(MIMIR, &[pool("all", MIMIR, &["all"], 1)]);
        assert_eq!(
            topology.recommendations(),
            [
                "ingester: 1 replica; 3 give replication factor 3",
                "querier: 1 replica; 2 keep queries answered while one restarts"
            ]
        );
        let big = Topology::new(MIMIR, &[pool("all", MIMIR, &["all"], 3)]);
        assert!(big.recommendations().is_empty());
    }

    #[test]
    fn unready_required_roles_are_reported() {
        let mut read = pool("read", MIMIR, &["read"], 2);
        read.ready_replicas = 0;
        let pools = [
            read,
            pool("write", MIMIR, &["write"], 1),
            pool("backend", MIMIR, &["backend"], 1),
        ];
        let topology = Topology::new(MIMIR, &pools);
        assert_eq!(
            topology.unready_required_roles(),
            ["querier", "query-frontend"]
        );
    }

    #[test]
    fn zone_awareness_needs_three_zones_that_hold_a_member() {
        let zoned = |name: &str, replicas: i32| PoolSummary {
            zones: ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec(),
            ..pool(name, MIMIR, &["ingester"], replicas)
        };
        let aware = |pools: &[PoolSummary]| Topology::new(MIMIR, pools).zone_aware("ingester");
        assert!(aware(&[zoned("one", 3)]));
        // Three pools of one worker each: all three in zone-a.
        assert!(!aware(&[zoned("a", 1), zoned("b", 1), zoned("c", 1)]));
        // 2 + 1: zones a and b only.
        assert!(!aware(&[zoned("a", 2), zoned("b", 1)]));
        assert!(aware(&[zoned("a", 3), zoned("b", 1)]));
        // An unzoned member beside them turns it off.
        assert!(!aware(&[
            zoned("one", 3),
            pool("old", MIMIR, &["ingester"], 1)
        ]));
    }
}
