//! Grafana Mimir, classic architecture (distributors push to ingesters; the Kafka-based
//! ingest storage is out of scope).

use super::*;

const ONE: Recommendation = Recommendation {
    replicas: 1,
    reason: "",
};

#[rustfmt::skip]
pub(super) static CATALOGUE: Catalogue = Catalogue {
    product: Product::Mimir,
    image: "grafana/mimir",
    version: "2.17.0",
    roles: &[
        Role { name: "compactor", required: true, recommended: ONE },
        Role { name: "distributor", required: true, recommended: ONE },
        Role {
            name: "ingester",
            required: true,
            recommended: Recommendation { replicas: 3, reason: "3 give replication factor 3" },
        },
        Role {
            name: "querier",
            required: true,
            recommended: Recommendation { replicas: 2, reason: "2 keep queries answered while one restarts" },
        },
        Role { name: "query-frontend", required: true, recommended: ONE },
        Role { name: "store-gateway", required: true, recommended: ONE },
        Role { name: "ruler", required: true, recommended: ONE },
        Role { name: "alertmanager", required: false, recommended: ONE },
        Role { name: "overrides-exporter", required: false, recommended: ONE },
        Role { name: "query-scheduler", required: false, recommended: ONE },
        Role { name: "flusher", required: false, recommended: ONE },
    ],
    meta_roles: &[
        MetaRole { name: "read", roles: &["querier", "query-frontend"], target: "read" },
        MetaRole { name: "write", roles: &["distributor", "ingester"], target: "write" },
        MetaRole {
            name: "backend",
            roles: &[
                "alertmanager",
                "compactor",
                "overrides-exporter",
                "query-scheduler",
                "ruler",
                "store-gateway",
            ],
            target: "backend",
        },
        MetaRole {
            name: "all",
            roles: &[
                "compactor",
                "distributor",
                "ingester",
                "querier",
                "query-frontend",
                "ruler",
                "store-gateway",
            ],
            target: "all",
        },
    ],
    ports: Ports { http: 8080, grpc: 9095, memberlist: 7946 },
    listeners: &[Listener {
        port: 8080,
        name: "http",
        protocol: Protocol::Http,
        upstream_port: 8080,
        routes: &[
            Route { location: "/distributor", to: RouteTo::Role("distributor"), handling: Handling::Proxy, access: Access::Admin },
            Route { location: "= /api/v1/push", to: RouteTo::Role("distributor"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "/otlp/v1/metrics", to: RouteTo::Role("distributor"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "/prometheus/config/v1/rules", to: RouteTo::Role("ruler"), handling: Handling::Proxy, access: Access::ByMethod },
            Route { location: "/prometheus/api/v1/rules", to: RouteTo::Role("ruler"), handling: Handling::Proxy, access: Access::Read },
            Route { location: "/prometheus/api/v1/alerts", to: RouteTo::Role("ruler"), handling: Handling::Proxy, access: Access::Read },
            Route { location: "= /ruler/ring", to: RouteTo::Role("ruler"), handling: Handling::Proxy, access: Access::Admin },
            Route { location: "/alertmanager", to: RouteTo::Role("alertmanager"), handling: Handling::Proxy, access: Access::ByMethod },
            Route {
                location: "= /multitenant_alertmanager/status",
                to: RouteTo::Role("alertmanager"),
                handling: Handling::Proxy,
                access: Access::Admin,
            },
            Route {
                location: "= /multitenant_alertmanager/configs",
                to: RouteTo::Role("alertmanager"),
                handling: Handling::Proxy,
                access: Access::Admin,
            },
            Route { location: "= /api/v1/alerts", to: RouteTo::Role("alertmanager"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "/prometheus", to: RouteTo::Role("query-frontend"), handling: Handling::Proxy, access: Access::Read },
            Route {
                location: "= /api/v1/status/buildinfo",
                to: RouteTo::Role("query-frontend"),
                handling: Handling::Proxy,
                access: Access::Read,
            },
            Route { location: "/api/v1/upload/block/", to: RouteTo::Role("compactor"), handling: Handling::Proxy, access: Access::Write },
        ],
    }],
    config_dir: "/etc/mimir",
    discovered_before_ready: &["query-frontend", "query-scheduler"],
    max_body_size: "10g",
};
