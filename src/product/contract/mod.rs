//! The products' run-time contract: what a Mimir, Loki or Tempo process does at run time,
//! at the version the catalogue pins, read from the product's own source at its tag. Each
//! fact carries its reference (`path@tag:line`). The renderer builds pods and configs that
//! honour it, the contract tests (`render::contract_tests`) check every rendered pod
//! against it, and `docs/runtime-contract.md` is generated from it (`make docs`).
//!
//! The products are AGPL and are never built or run here: these facts are the only
//! knowledge of them the operator has, so each was read, not guessed.

mod loki;
mod markdown;
mod mimir;
mod tempo;

pub use markdown::markdown;

use super::Product;

/// One product's run-time contract at one version.
#[derive(Debug)]
pub struct Contract {
    /// The version read; the catalogue's version must equal it (a bump needs a new read).
    pub version: &'static str,
    /// The git tag (or commit) the references point into.
    pub source: &'static str,
    /// Other sources the references use (dskit, charts), as `name: what`.
    pub other_sources: &'static [&'static str],
    pub image: Image,
    /// Which toggle combinations one process can run.
    pub combinations: Combinations,
    /// Paths the process writes.
    pub writes: &'static [Write],
    /// Roles whose code creates files in the OS temp dir (`$TMPDIR`, else `/tmp`).
    pub temp_dir: &'static [TempDirUse],
    pub ports: &'static [Port],
    pub readiness: Fact,
    /// Environment variables the process reads that the operator may set.
    pub env: &'static [EnvVar],
    /// How `-config.expand-env` expands and escapes.
    pub expand_env: Fact,
    pub timeouts: Timeouts,
    /// What each role does on SIGTERM, and how long the grace period must be.
    pub shutdown: &'static [Shutdown],
    /// HTTP endpoints that make a worker leave cleanly.
    pub lifecycle: &'static [Lifecycle],
    /// How a worker of a stateful role leaves before a scale-down removes its pod.
    pub leave: &'static [Leave],
    /// Rings that keep one copy per zone once told the zones (zoned pools, ADR 14).
    pub zones: &'static [ZoneRing],
    /// The tenant every request belongs to while multi-tenancy is off, and why.
    pub single_tenant_id: &'static str,
    pub single_tenant: Fact,
    /// Multi-tenancy and the per-tenant runtime-overrides file (ADR 15).
    pub tenancy: Tenancy,
    /// Other facts the rendering relies on, each with its reference.
    pub notes: &'static [Fact],
}

/// A statement and where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Fact {
    pub what: &'static str,
    pub reference: &'static str,
}

/// The product's container image.
#[derive(Debug)]
pub struct Image {
    /// The working directory relative paths resolve against.
    pub workdir: &'static str,
    pub user: Fact,
    pub reference: &'static str,
}

/// Which role toggles one process can run together.
#[derive(Debug)]
pub enum Combinations {
    /// Any set of toggles, but for these.
    AnyBut(&'static [Refused]),
    /// Exactly one toggle per process.
    ExactlyOne(Fact),
}

/// A toggle no pool may set.
#[derive(Debug)]
pub struct Refused {
    pub toggle: &'static str,
    pub why: Fact,
}

impl Contract {
    /// Whether one process can run these toggles (catalogue names), and why not.
    pub fn allows(&self, toggles: &[&str]) -> Result<(), String> {
        match self.combinations {
            Combinations::ExactlyOne(why) if toggles.len() != 1 => Err(format!(
                "exactly one role toggle must be true, not {}: {}",
                toggles.len(),
                why.what
            )),
            Combinations::AnyBut(refused) => {
                match refused.iter().find(|r| toggles.contains(&r.toggle)) {
                    Some(r) => Err(format!("{} cannot run in a pool: {}", r.toggle, r.why.what)),
                    None if toggles.is_empty() => Err("no role toggle is true".into()),
                    None => Ok(()),
                }
            }
            Combinations::ExactlyOne(_) => Ok(()),
        }
    }
}

/// A path a process writes.
#[derive(Debug)]
pub struct Write {
    /// The configuration key that sets the path (`a.b.c`).
    pub key: &'static str,
    /// Where it lands when the key is not set: an absolute path, a path relative to the
    /// image's working directory, or `{other.key}/rest` (derived from another key).
    pub default: &'static str,
    /// The roles that write it; empty means every role.
    pub roles: &'static [&'static str],
    /// Whether it must survive a restart (a volume that outlives the pod).
    pub persistent: bool,
    pub what: Fact,
}

/// Code that writes the OS temp dir.
#[derive(Debug)]
pub struct TempDirUse {
    /// The roles that run it; empty means every role.
    pub roles: &'static [&'static str],
    pub what: Fact,
}

/// A port a process binds.
#[derive(Debug)]
pub struct Port {
    pub name: &'static str,
    pub port: u16,
    /// The configuration key that sets it.
    pub key: &'static str,
    pub what: Fact,
}

/// An environment variable the process reads.
#[derive(Debug)]
pub struct EnvVar {
    pub name: &'static str,
    pub what: Fact,
}

/// The timeouts on the request path, each a configuration key and its default.
#[derive(Debug)]
pub struct Timeouts {
    /// How long a query may run (the longest of these).
    pub query: &'static [Timeout],
    /// How long the HTTP server may take to write a response: a query must finish within
    /// it, and the gateway must wait longer.
    pub server_write: Timeout,
    /// A rule the product itself enforces between them, if any.
    pub enforced: Option<Fact>,
}

/// A timeout setting.
#[derive(Debug)]
pub struct Timeout {
    pub key: &'static str,
    /// Its default, as a duration (`30s`, `2m`).
    pub default: &'static str,
    pub what: Fact,
}

/// What a role does on SIGTERM.
#[derive(Debug)]
pub struct Shutdown {
    /// The roles this applies to; empty means every other role.
    pub roles: &'static [&'static str],
    /// The grace period the product's own chart gives them, in seconds.
    pub grace_seconds: i64,
    pub what: Fact,
}

/// An HTTP endpoint that makes a worker leave cleanly.
#[derive(Debug)]
pub struct Lifecycle {
    pub roles: &'static [&'static str],
    pub method: &'static str,
    pub path: &'static str,
    pub what: Fact,
}

/// A ring that keeps one copy of each piece of data per zone once zone awareness is on
/// and each instance says its zone.
#[derive(Debug)]
pub struct ZoneRing {
    /// The role whose instances register in the ring, each with its zone.
    pub role: &'static str,
    /// The YAML path of the shared file that turns zone awareness on for the ring's
    /// members and every role that reads it.
    pub awareness: &'static str,
    /// The flag that gives an instance its zone (`-<flag>=<zone>`).
    pub zone_flag: &'static str,
    /// The YAML path of the ring's replication factor (3 once zoned: one per zone).
    pub replication_factor: &'static str,
    /// The roles that read the ring, and so must see zone awareness on.
    pub readers: &'static [&'static str],
    pub what: Fact,
}

/// What multi-tenancy takes: the switch, the runtime-overrides file the products reload
/// on their own, and the per-tenant keys the operator writes into it.
#[derive(Debug)]
pub struct Tenancy {
    /// The YAML path of the multi-tenancy switch (written explicitly either way), and
    /// its default.
    pub switch: &'static str,
    pub switch_default: bool,
    /// The YAML paths of the runtime-overrides file and of its reload period.
    pub runtime_file: &'static str,
    pub runtime_period: &'static str,
    /// How the file is loaded: at start, on each period, and when it is bad.
    pub reload: Fact,
    /// Whether a tenant's entry inherits the default limits for keys it leaves out.
    pub inheritance: Fact,
    /// How a request without X-Scope-OrgID is answered once multi-tenancy is on.
    pub no_tenant: Fact,
    /// Each Tenant `limits` field and the per-tenant key it becomes.
    pub limits: &'static [LimitKey],
}

/// One per-tenant limit: the Tenant field, the product's key under `overrides.<tenant>`
/// (dotted for nested keys), and its unit.
#[derive(Debug)]
pub struct LimitKey {
    pub field: &'static str,
    pub key: &'static str,
    pub what: Fact,
}

/// How a worker whose roles hold data leaves before a scale-down removes its pod: the
/// operator makes these calls, in order, and removes the pod once the worker is done.
#[derive(Debug)]
pub struct Leave {
    pub roles: &'static [&'static str],
    /// Each must answer 2xx before the next is made.
    pub calls: &'static [Call],
    /// What undoes the calls when the scale-down is called off before the pod goes.
    pub undo: &'static [Call],
    /// How the operator knows the worker is done once the last call answered.
    pub done: Done,
    /// Whether the calls stop the product inside a process that keeps running: a pod
    /// called off after that must be restarted to serve again.
    pub stops: bool,
    pub what: Fact,
}

/// One HTTP call to a worker's HTTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub path: &'static str,
}

/// How a leaving worker says it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The last call answers 2xx once done, and again when repeated (so an answer lost
    /// to a timeout or an operator restart is recovered by calling again).
    Answered,
    /// The last call answers 2xx once done, but a repeat is refused while stopping and
    /// after: a lost answer is recovered from `path`, which lists `line` once done.
    Listed {
        path: &'static str,
        line: &'static str,
    },
    /// The last call answers at once; the worker is done when `/ready` stops answering
    /// 200.
    Unready,
}

impl Contract {
    /// How a worker running `roles` leaves: one entry per stateful role it runs (none:
    /// its pod may go at once).
    pub fn leaves_of<'a>(
        &'static self,
        roles: &'a [&str],
    ) -> impl Iterator<Item = &'static Leave> + 'a {
        self.leave
            .iter()
            .filter(|l| l.roles.iter().any(|r| roles.contains(r)))
    }
}

impl Contract {
    /// The zone-aware rings whose members include one of `roles`.
    pub fn zone_rings_of<'a>(
        &'static self,
        roles: &'a [&str],
    ) -> impl Iterator<Item = &'static ZoneRing> + 'a {
        self.zones.iter().filter(|z| roles.contains(&z.role))
    }

    /// The grace period a pod running `roles` needs: the longest among them.
    pub fn grace_seconds(&self, roles: &[&str]) -> i64 {
        let default = self
            .shutdown
            .iter()
            .find(|s| s.roles.is_empty())
            .map_or(30, |s| s.grace_seconds);
        self.shutdown
            .iter()
            .filter(|s| s.roles.iter().any(|r| roles.contains(r)))
            .map(|s| s.grace_seconds)
            .chain([default])
            .max()
            .unwrap_or(default)
    }

    /// Whether some role among `roles` writes the OS temp dir.
    pub fn uses_temp_dir(&self, roles: &[&str]) -> bool {
        self.temp_dir
            .iter()
            .any(|t| t.roles.is_empty() || t.roles.iter().any(|r| roles.contains(r)))
    }

    /// Whether the product reads environment variable `name`.
    pub fn reads_env(&self, name: &str) -> bool {
        self.env.iter().any(|e| e.name == name)
    }
}

/// The contract of `product`.
pub fn of(product: Product) -> &'static Contract {
    match product {
        Product::Mimir => &mimir::CONTRACT,
        Product::Loki => &loki::CONTRACT,
        Product::Tempo => &tempo::CONTRACT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_was_read_at_the_pinned_version() {
        for product in Product::ALL {
            assert_eq!(
                of(product).version,
                product.catalogue().version,
                "{product}: the catalogue pins another version than the contract was read at; read the product's source at the new tag and update src/product/contract/{product}.rs"
            );
        }
    }

    #[test]
    fn every_fact_has_a_reference_into_the_source() {
        for product in Product::ALL {
            let c = of(product);
            let mut facts: Vec<Fact> =
                vec![c.readiness, c.expand_env, c.single_tenant, c.image.user];
            facts.extend(c.writes.iter().map(|w| w.what));
            facts.extend(c.temp_dir.iter().map(|t| t.what));
            facts.extend(c.ports.iter().map(|p| p.what));
            facts.extend(c.env.iter().map(|e| e.what));
            facts.extend(c.timeouts.query.iter().map(|t| t.what));
            facts.push(c.timeouts.server_write.what);
            facts.extend(c.timeouts.enforced);
            facts.extend(c.shutdown.iter().map(|s| s.what));
            facts.extend(c.lifecycle.iter().map(|l| l.what));
            facts.extend(c.leave.iter().map(|l| l.what));
            facts.extend(c.notes.iter().copied());
            facts.extend(c.zones.iter().map(|z| z.what));
            let t = &c.tenancy;
            facts.extend([t.reload, t.inheritance, t.no_tenant]);
            facts.extend(t.limits.iter().map(|l| l.what));
            match c.combinations {
                Combinations::ExactlyOne(f) => facts.push(f),
                Combinations::AnyBut(refused) => facts.extend(refused.iter().map(|r| r.why)),
            }
            for fact in facts {
                // A fact not read at the pinned tag says so (Mimir's repository is too big
                // to fetch here; docs/runtime-contract.md explains).
                let cited = fact.reference.contains('@') || fact.reference.contains("UNVERIFIED");
                assert!(
                    cited && !fact.what.is_empty(),
                    "{product}: {fact:?} needs `path@version:line`, or says it is UNVERIFIED"
                );
            }
        }
    }

    #[test]
    fn grace_periods_take_the_longest_role() {
        let mimir = of(Product::Mimir);
        assert_eq!(mimir.grace_seconds(&["querier"]), 180);
        assert_eq!(mimir.grace_seconds(&["querier", "ingester"]), 1200);
        assert_eq!(mimir.grace_seconds(&["overrides-exporter"]), 30);
    }

    #[test]
    fn combinations_follow_each_product() {
        let loki = of(Product::Loki);
        assert!(loki.allows(&["read"]).is_ok());
        assert!(loki.allows(&["all"]).is_ok());
        let refused = loki
            .allows(&["read", "write"])
            .expect_err("one process, one of them");
        assert!(refused.contains("write-only"), "{refused}");
        let mimir = of(Product::Mimir);
        assert!(mimir.allows(&["querier", "ingester", "backend"]).is_ok());
        assert!(mimir.allows(&["flusher"]).is_err());
        assert!(mimir.allows(&["ingester", "flusher"]).is_err());
        assert!(of(Product::Tempo).allows(&["querier", "ingester"]).is_err());
    }
}
