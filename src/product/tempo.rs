//! Grafana Tempo: each worker runs exactly one target.

use super::*;

const ONE: Recommendation = Recommendation {
    replicas: 1,
    reason: "",
};

/// The distributor's receiver ports, each served on the workers on the same port.
const fn receiver(port: u16, name: &'static str, protocol: Protocol) -> Listener {
    Listener {
        port,
        name,
        protocol,
        upstream_port: port,
        routes: DISTRIBUTOR,
    }
}

#[rustfmt::skip]
const DISTRIBUTOR: &[Route] =
    &[Route { location: "/", to: RouteTo::Role("distributor"), handling: Handling::Proxy, access: Access::Write }];
/// Tempo's HTTP API is under `/api/`; the rest of the query-frontend's port is its
/// status pages and, in `all` pods, the ingester's flush and shutdown.
#[rustfmt::skip]
const QUERY_FRONTEND_HTTP: &[Route] = &[
    // The tenant's own overrides, writable where user-configurable overrides are on.
    Route { location: "^~ /api/overrides", to: RouteTo::Role("query-frontend"), handling: Handling::Proxy, access: Access::ByMethod },
    Route { location: "^~ /api/", to: RouteTo::Role("query-frontend"), handling: Handling::Proxy, access: Access::Read },
    Route { location: "/", to: RouteTo::Role("query-frontend"), handling: Handling::Proxy, access: Access::Admin },
];
/// Clients stream searches through `tempopb.StreamingQuerier`; the same port serves the
/// queriers' `frontend.Frontend/Process`, which carries every tenant's queries.
#[rustfmt::skip]
const QUERY_FRONTEND_GRPC: &[Route] = &[
    Route {
        location: "^~ /tempopb.StreamingQuerier/",
        to: RouteTo::Role("query-frontend"),
        handling: Handling::Proxy,
        access: Access::Read,
    },
    Route { location: "/", to: RouteTo::Role("query-frontend"), handling: Handling::Proxy, access: Access::Admin },
];

#[rustfmt::skip]
pub(super) static CATALOGUE: Catalogue = Catalogue {
    product: Product::Tempo,
    image: "grafana/tempo",
    version: "2.8.1",
    roles: &[
        Role { name: "querier", required: true, recommended: ONE },
        Role { name: "query-frontend", required: true, recommended: ONE },
        Role {
            name: "ingester",
            required: true,
            recommended: Recommendation { replicas: 3, reason: "3 give replication factor 3" },
        },
        Role { name: "distributor", required: true, recommended: ONE },
        Role { name: "compactor", required: true, recommended: ONE },
        Role { name: "metrics-generator", required: false, recommended: ONE },
    ],
    meta_roles: &[MetaRole {
        name: "all",
        roles: &["querier", "query-frontend", "ingester", "distributor", "compactor", "metrics-generator"],
        target: "scalable-single-binary",
    }],
    ports: Ports { http: 3200, grpc: 9096, memberlist: 7946 },
    listeners: &[
        Listener { port: 3200, name: "http", protocol: Protocol::Http, upstream_port: 3200, routes: QUERY_FRONTEND_HTTP },
        Listener { port: 9096, name: "grpc", protocol: Protocol::Grpc, upstream_port: 9096, routes: QUERY_FRONTEND_GRPC },
        receiver(4317, "otlp-grpc", Protocol::Grpc),
        receiver(4318, "otlp-http", Protocol::Http),
        receiver(9411, "zipkin", Protocol::Http),
        receiver(14268, "jaeger-http", Protocol::Http),
        receiver(14250, "jaeger-grpc", Protocol::Grpc),
    ],
    config_dir: "/etc/tempo",
    discovered_before_ready: &["query-frontend"],
    max_body_size: "64m",
};
