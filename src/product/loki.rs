//! Grafana Loki in its simple scalable form: each worker runs read, write and/or backend,
//! each itself a group of Loki components.

use super::*;

const THREE_FOR_HA: Recommendation = Recommendation {
    replicas: 3,
    reason: "3 keep the path available and replicated while one restarts",
};

// Replication factor: products.md counts Loki's `common.replication_factor` from replicas
// carrying backend/all. The reference wins: the common block feeds the ingester ring's
// replication factor (how many ingesters each stream is written to and read from), and the
// ingesters run in the write target, so the renderer counts `write` replicas (`all` includes
// write). See docs/config-keys.md.
#[rustfmt::skip]
pub(super) static CATALOGUE: Catalogue = Catalogue {
    product: Product::Loki,
    image: "grafana/loki",
    version: "3.5.0",
    roles: &[
        Role { name: "read", required: true, recommended: THREE_FOR_HA },
        Role { name: "write", required: true, recommended: THREE_FOR_HA },
        Role { name: "backend", required: true, recommended: THREE_FOR_HA },
    ],
    meta_roles: &[MetaRole { name: "all", roles: &["read", "write", "backend"], target: "all" }],
    ports: Ports { http: 3100, grpc: 9095, memberlist: 7946 },
    listeners: &[Listener {
        port: 3100,
        name: "http",
        protocol: Protocol::Http,
        upstream_port: 3100,
        routes: &[
            Route { location: "= /loki/api/v1/push", to: RouteTo::Role("write"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "/otlp/v1/logs", to: RouteTo::Role("write"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "^~ /loki/api/v1/rules", to: RouteTo::Role("backend"), handling: Handling::Proxy, access: Access::ByMethod },
            // Anchored: products.md writes `~ /prometheus/.*`, which nginx matches anywhere in the
            // path and so sent `/loki/api/v1/label/prometheus/values` to backend, not read.
            Route { location: "~ ^/prometheus/.*", to: RouteTo::Role("backend"), handling: Handling::Proxy, access: Access::ByMethod },
            Route {
                location: "= /api/v1/rules",
                to: RouteTo::Role("backend"),
                handling: Handling::RewriteTo("/loki/api/v1/rules"),
                access: Access::ByMethod,
            },
            // Served by the compactor, which runs in backend (runtime contract).
            Route { location: "= /loki/api/v1/delete", to: RouteTo::Role("backend"), handling: Handling::Proxy, access: Access::ByMethod },
            Route {
                location: "= /loki/api/v1/cache/generation_numbers",
                to: RouteTo::Role("backend"),
                handling: Handling::Proxy,
                access: Access::Read,
            },
            // The legacy paths Loki 3.5 still serves, routed as its own chart does.
            Route { location: "= /api/prom/push", to: RouteTo::Role("write"), handling: Handling::Proxy, access: Access::Write },
            Route { location: "^~ /api/prom/rules", to: RouteTo::Role("backend"), handling: Handling::Proxy, access: Access::ByMethod },
            Route { location: "= /api/prom/tail", to: RouteTo::Role("read"), handling: Handling::WebSocket, access: Access::Read },
            Route { location: "^~ /api/prom/", to: RouteTo::Role("read"), handling: Handling::Proxy, access: Access::Read },
            Route { location: "= /loki/api/v1/tail", to: RouteTo::Role("read"), handling: Handling::WebSocket, access: Access::Read },
            // Anchored like `/prometheus/` above: unanchored, any path holding `/loki/api/`
            // (`/ring/loki/api/x`) went to the read workers.
            Route { location: "~ ^/loki/api/.*", to: RouteTo::Role("read"), handling: Handling::WebSocket, access: Access::Read },
            Route { location: "= /loki/api/v1/format_query", to: ANY_WORKER, handling: Handling::Proxy, access: Access::Read },
            Route { location: "= /loki/api/v1/status/buildinfo", to: ANY_WORKER, handling: Handling::Proxy, access: Access::Read },
            Route { location: "= /ring", to: ANY_WORKER, handling: Handling::Proxy, access: Access::Admin },
        ],
    }],
    config_dir: "/etc/loki",
    discovered_before_ready: &[],
    max_body_size: "64m",
};

/// Paths every Loki worker serves go to the first of these that exists.
const ANY_WORKER: RouteTo = RouteTo::FirstPresent(&["read", "write", "backend"]);
