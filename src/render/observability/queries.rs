//! The PromQL every dashboard panel and alert is made of, and what each product
//! measures, by the names its own `/metrics` uses.

use crate::product::Product;

/// A group of the gateway's routes as the workers' request histogram names them (the
/// path with every non-alphanumeric run turned into `_`).
pub(super) struct Routes {
    /// `write` or `read`, as text says it.
    pub name: &'static str,
    /// The same in titles and alert names (`MimirWriteLatencyHigh`).
    pub title: &'static str,
    /// Matchers on `route`; PromQL regexes are anchored.
    pub matchers: &'static str,
    /// p99 latency, in seconds, above which the latency alert fires.
    pub p99_limit_seconds: &'static str,
    /// What else to look at when these requests are slow; `{logs}` is replaced by the
    /// command that shows the pool's logs.
    pub advice: &'static str,
}

/// What each product measures, by the names its own `/metrics` uses.
pub(super) struct Signals {
    pub title: &'static str,
    /// The histogram every worker's HTTP and gRPC servers record, with `route` and
    /// `status_code` labels.
    pub requests: &'static str,
    /// Matchers on `route` selecting every main route the gateway serves.
    pub gateway_routes: &'static str,
    /// Route groups with their own rate, error and latency panels. Tempo has only reads:
    /// its trace receivers do not record the request histogram.
    pub groups: &'static [Routes],
}

const MIMIR: Signals = Signals {
    title: "Mimir",
    requests: "cortex_request_duration_seconds",
    gateway_routes: r#"route=~"api_v1_push|otlp_v1_metrics|prometheus_.+""#,
    groups: &[
        Routes {
            name: "write",
            title: "Write",
            matchers: r#"route=~"api_v1_push|otlp_v1_metrics""#,
            p99_limit_seconds: "2",
            advice: "Slow pushes usually mean slow ingesters: look at the memory and \
                     series of the ingester pods and at their logs ({logs}).",
        },
        Routes {
            name: "read",
            title: "Read",
            matchers: r#"route=~"prometheus_.+""#,
            p99_limit_seconds: "10",
            advice: "Slow queries usually read much data: find them in the \
                     query-frontend logs ({logs}), and give store-gateways and queriers \
                     more resources.",
        },
    ],
};

const LOKI: Signals = Signals {
    title: "Loki",
    requests: "loki_request_duration_seconds",
    gateway_routes: r#"route=~"loki_api_v1_.+|otlp_v1_logs""#,
    groups: &[
        Routes {
            name: "write",
            title: "Write",
            matchers: r#"route=~"loki_api_v1_push|otlp_v1_logs""#,
            p99_limit_seconds: "2",
            advice: "Slow pushes usually mean slow ingesters: look at the write pods' \
                     memory and streams and at their logs ({logs}).",
        },
        // Tail requests are websockets that stay open for minutes: they would own
        // every latency percentile.
        Routes {
            name: "read",
            title: "Read",
            matchers: r#"route=~"loki_api_v1_.+", route!~"loki_api_v1_(push|tail)""#,
            p99_limit_seconds: "30",
            advice: "Slow queries usually read much data: find them in the read pods' \
                     logs ({logs}) and add read replicas.",
        },
    ],
};

const TEMPO: Signals = Signals {
    title: "Tempo",
    requests: "tempo_request_duration_seconds",
    gateway_routes: r#"route=~"api_.+""#,
    groups: &[Routes {
        name: "read",
        title: "Read",
        matchers: r#"route=~"api_.+""#,
        p99_limit_seconds: "30",
        advice: "Slow searches usually scan many blocks: narrow the time range, or add \
                 queriers; the query-frontend logs ({logs}) show the slow requests.",
    }],
};

pub(super) fn signals(product: Product) -> &'static Signals {
    match product {
        Product::Mimir => &MIMIR,
        Product::Loki => &LOKI,
        Product::Tempo => &TEMPO,
    }
}

/// Matchers of one cluster's series from one scrape job.
pub(super) fn selector(cluster: &str, job: &str) -> String {
    format!(r#"cluster="{cluster}", job="{job}""#)
}

/// Queries over one cluster, shared by the dashboards (`cluster="$cluster"`, Grafana's
/// rate interval) and the alerts (the literal cluster, a fixed window).
pub(super) struct Queries {
    pub signals: &'static Signals,
    /// Matchers of the workers' series.
    pub workers: String,
    /// Matchers of the gateway exporter's series.
    pub gateway: String,
    window: &'static str,
}

impl Queries {
    pub fn new(product: Product, cluster: &str, window: &'static str) -> Self {
        Self {
            signals: signals(product),
            workers: selector(cluster, product.as_str()),
            gateway: selector(cluster, &format!("{product}-gateway")),
            window,
        }
    }

    /// Rate of a worker counter, summed by `by`.
    pub fn rate(&self, metric: &str, extra: &str, by: &str) -> String {
        format!(
            "sum by ({by}) (rate({metric}{{{}{extra}}}[{}]))",
            self.workers, self.window
        )
    }

    /// Requests per second on some routes.
    pub fn requests(&self, routes: &str, by: &str) -> String {
        let metric = format!("{}_count", self.signals.requests);
        self.rate(&metric, &format!(", {routes}"), by)
    }

    /// Share of the requests on some routes answered with a status matching `status`.
    pub fn status_ratio(&self, routes: &str, status: &str, by: &str) -> String {
        let metric = format!("{}_count", self.signals.requests);
        format!(
            "{} / {}",
            self.rate(
                &metric,
                &format!(r#", {routes}, status_code=~"{status}""#),
                by
            ),
            self.rate(&metric, &format!(", {routes}"), by)
        )
    }

    /// 99th percentile latency of the requests on some routes.
    pub fn p99(&self, routes: &str, by: &str) -> String {
        format!(
            "histogram_quantile(0.99, sum by ({by}, le) (rate({}_bucket{{{}, {routes}}}[{}])))",
            self.signals.requests, self.workers, self.window
        )
    }

    /// A worker gauge, summed by `by`.
    pub fn gauge(&self, metric: &str, extra: &str, by: &str) -> String {
        format!("sum by ({by}) ({metric}{{{}{extra}}})", self.workers)
    }

    pub fn gateway_gauge(&self, metric: &str) -> String {
        format!("sum({metric}{{{}}})", self.gateway)
    }

    pub fn gateway_rate(&self, metric: &str) -> String {
        format!("sum(rate({metric}{{{}}}[{}]))", self.gateway, self.window)
    }
}
