//! The product catalogue: every fact about Mimir, Loki and Tempo that the operator acts
//! on (roles, meta-roles, required roles, recommended replicas, ports, gateway routes,
//! default images), as data, one file per product. Everything else reads it from here.

pub mod contract;
mod loki;
mod mimir;
mod tempo;
mod topology;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use topology::*;

/// A Grafana product run in coordinator + workers form.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Mimir,
    Loki,
    Tempo,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Mimir, Product::Loki, Product::Tempo];

    /// The catalogue entry of this product.
    pub fn catalogue(self) -> &'static Catalogue {
        match self {
            Product::Mimir => &mimir::CATALOGUE,
            Product::Loki => &loki::CATALOGUE,
            Product::Tempo => &tempo::CATALOGUE,
        }
    }

    /// What this product does at run time, at the catalogue's version.
    pub fn contract(self) -> &'static contract::Contract {
        contract::of(self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Product::Mimir => "mimir",
            Product::Loki => "loki",
            Product::Tempo => "tempo",
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the operator knows about one product.
#[derive(Debug)]
pub struct Catalogue {
    pub product: Product,
    /// Default image repository.
    pub image: &'static str,
    /// Default image tag: the version the rendered configuration is written for.
    pub version: &'static str,
    /// Concrete roles: the names `-target` takes, one process module each.
    pub roles: &'static [Role],
    /// Named groups of roles.
    pub meta_roles: &'static [MetaRole],
    pub ports: Ports,
    /// The gateway's servers, one per listening port.
    pub listeners: &'static [Listener],
    /// Where the worker's configuration file is mounted.
    pub config_dir: &'static str,
    /// Roles whose peers find them through their Service's DNS before they are ready
    /// (Mimir's query-frontend only turns ready once a querier has connected to it), so
    /// their Service publishes not-ready addresses too.
    pub discovered_before_ready: &'static [&'static str],
    /// nginx `client_max_body_size` for the gateway (Mimir takes block uploads).
    pub max_body_size: &'static str,
}

/// A concrete role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub name: &'static str,
    /// Whether a consistent cluster needs at least one worker with this role.
    pub required: bool,
    /// Replicas recommended for a production cluster, and why.
    pub recommended: Recommendation,
}

/// Replicas recommended for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub reason: &'static str,
}

/// A named group of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaRole {
    pub name: &'static str,
    pub roles: &'static [&'static str],
    /// What `-target` says for it (Tempo calls its monolith `scalable-single-binary`).
    pub target: &'static str,
}

/// Ports every worker of a product listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
    pub memberlist: u16,
}

/// One gateway server block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Port the gateway listens on (and its Service exposes).
    pub port: u16,
    /// Service port name.
    pub name: &'static str,
    pub protocol: Protocol,
    /// Port on the workers the requests go to.
    pub upstream_port: u16,
    pub routes: &'static [Route],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// gRPC over cleartext HTTP/2 (nginx `http2` + `grpc_pass`).
    Grpc,
}

/// A path (as an nginx location: modifier and pattern) and the role that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub location: &'static str,
    pub to: RouteTo,
    pub handling: Handling,
    /// The scope a credential needs for the path in a multi-tenant cluster (ADR 15).
    pub access: Access,
}

/// The scope a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Queries, including those sent as POST.
    Read,
    /// Ingestion.
    Write,
    /// Read for GET, HEAD and OPTIONS, write for any other method (rule and alert
    /// configuration APIs).
    ByMethod,
    /// Cluster-wide: every tenant's data or the cluster's machinery (rings, status
    /// pages, queriers' work queues). Refused in a multi-tenant cluster.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTo {
    /// Workers with this role.
    Role(&'static str),
    /// Workers of the first of these roles that some pool provides (for paths that
    /// every worker serves).
    FirstPresent(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Proxy,
    /// Long-lived websocket connections (Loki's tail).
    WebSocket,
    /// Proxy with the path rewritten to this one.
    RewriteTo(&'static str),
}

impl Catalogue {
    pub fn role(&self, name: &str) -> Option<&'static Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn meta_role(&self, name: &str) -> Option<&'static MetaRole> {
        self.meta_roles.iter().find(|m| m.name == name)
    }

    /// Names of the roles a consistent cluster needs.
    pub fn required_roles(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.roles.iter().filter(|r| r.required).map(|r| r.name)
    }

    /// Every role and meta-role name, i.e. every toggle a pool of this product has.
    pub fn toggle_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.roles
            .iter()
            .map(|r| r.name)
            .chain(self.meta_roles.iter().map(|m| m.name))
    }

    pub fn default_image(&self) -> String {
        format!("{}:{}", self.image, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LokiRoles, MimirRoles, TempoRoles};
    use std::collections::BTreeSet;

    fn set(names: impl IntoIterator<Item = &'static str>) -> BTreeSet<&'static str> {
        names.into_iter().collect()
    }

    #[test]
    fn pool_toggles_match_the_catalogue_roles_and_meta_roles() {
        let toggles = [
            (Product::Mimir, MimirRoles::TOGGLES),
            (Product::Loki, LokiRoles::TOGGLES),
            (Product::Tempo, TempoRoles::TOGGLES),
        ];
        for (product, names) in toggles {
            assert_eq!(
                set(names.iter().copied()),
                set(product.catalogue().toggle_names()),
                "{product}"
            );
        }
    }

    #[test]
    fn meta_roles_name_only_known_roles() {
        for product in Product::ALL {
            let c = product.catalogue();
            for meta in c.meta_roles {
                for role in meta.roles {
                    assert!(c.role(role).is_some(), "{product}: {} -> {role}", meta.name);
                }
            }
        }
    }

    #[test]
    fn routes_name_only_known_roles() {
        for product in Product::ALL {
            let c = product.catalogue();
            for listener in c.listeners {
                for route in listener.routes {
                    let roles: &[&str] = match &route.to {
                        RouteTo::Role(r) => std::slice::from_ref(r),
                        RouteTo::FirstPresent(rs) => rs,
                    };
                    for role in roles {
                        assert!(c.role(role).is_some(), "{product}: {}", route.location);
                    }
                }
            }
        }
    }

    #[test]
    fn required_roles_are_as_documented() {
        assert_eq!(
            set(Product::Mimir.catalogue().required_roles()),
            set([
                "compactor",
                "distributor",
                "ingester",
                "querier",
                "query-frontend",
                "store-gateway",
                "ruler"
            ])
        );
        assert_eq!(
            set(Product::Loki.catalogue().required_roles()),
            set(["read", "write", "backend"])
        );
        assert_eq!(
            set(Product::Tempo.catalogue().required_roles()),
            set([
                "querier",
                "query-frontend",
                "ingester",
                "distributor",
                "compactor"
            ])
        );
    }

    #[test]
    fn tempo_ports_use_9096_for_grpc() {
        let tempo = Product::Tempo.catalogue();
        assert_eq!(tempo.ports.grpc, 9096);
        let ports: Vec<u16> = tempo.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [3200, 9096, 4317, 4318, 9411, 14268, 14250]);
    }
}
