//! The alert rules: one group per cluster, each alert saying how bad it is, what is
//! wrong and what to do, with the commands to run filled in for this cluster.

use serde_json::{Value, json};

use super::cluster_label;
use super::queries::{Queries, Routes};
use crate::product::Product;
use crate::render::ClusterView;
use crate::render::labels::{self, Component};

/// Rate window of the alert expressions (dashboards use Grafana's `$__rate_interval`).
const ALERT_WINDOW: &str = "5m";

#[derive(Debug, Clone, Copy)]
enum Severity {
    /// Users are losing writes or reads now.
    Critical,
    /// Something degrades and needs a look during working hours.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// Alertmanager template of the pool an alert is about.
const POOL: &str = "{{ $labels.pool }}";
/// Alertmanager template of an alert's value as a percentage.
const PERCENT: &str = "{{ $value | humanizePercentage }}";
/// Every alert keeps these labels, so it says which cluster and pool it is about.
const BY_POOL: &str = "cluster, namespace, pool";
const BY_CLUSTER: &str = "cluster, namespace";
/// Alerts on what is discarded keep the reason, which names the limit to raise.
const BY_REASON: &str = "cluster, namespace, reason";

/// One alerting rule.
struct Alert {
    name: String,
    severity: Severity,
    /// Fires for every series this returns.
    expr: String,
    /// How long `expr` must hold before the alert fires.
    for_: &'static str,
    summary: String,
    description: String,
}

impl Alert {
    /// The rule as a Prometheus rule file writes it.
    fn rule(self) -> Value {
        json!({
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity.as_str()},
            "annotations": {"summary": self.summary, "description": self.description},
        })
    }
}

/// What the alerts of one cluster read and point the reader to.
struct Context<'a> {
    cluster: &'a ClusterView<'a>,
    q: Queries,
    /// The `cluster` label of the cluster's series.
    cluster_value: String,
    /// The command that shows the logs of the pool an alert is about.
    logs: String,
    /// The command that shows the cluster's conditions.
    describe: String,
}

impl<'a> Context<'a> {
    fn new(cluster: &'a ClusterView<'a>) -> Self {
        let cluster_value = cluster_label(cluster);
        let ns = &cluster.namespace;
        Self {
            q: Queries::new(cluster.product(), &cluster_value, ALERT_WINDOW),
            logs: format!("kubectl -n {ns} logs -l {}={POOL} --tail=200", labels::POOL),
            describe: format!("kubectl -n {ns} describe grafanacluster {}", cluster.name),
            cluster_value,
            cluster,
        }
    }

    /// The product as alert names and texts say it (`Mimir`).
    fn title(&self) -> &'static str {
        self.q.signals.title
    }
}

/// The rule groups for the cluster, as a Prometheus rule file (`{groups: [...]}`); the
/// same value is a PrometheusRule's `spec`.
pub fn alert_rules(cluster: &ClusterView) -> Value {
    let cx = Context::new(cluster);
    let mut alerts = error_alerts(&cx);
    alerts.extend(cx.q.signals.groups.iter().map(|g| latency_alert(&cx, g)));
    alerts.extend(availability_alerts(&cx));
    alerts.extend(
        product_alerts(cluster.product())
            .iter()
            .map(|a| a.alert(&cx)),
    );
    let rules: Vec<Value> = alerts.into_iter().map(Alert::rule).collect();
    json!({
        "groups": [{
            "name": format!("{}-{}", cluster.product(), cx.cluster_value),
            "rules": rules,
        }]
    })
}

/// Server and client errors on the routes the gateway serves, by pool.
fn error_alerts(cx: &Context) -> Vec<Alert> {
    let (p, q, s) = (cx.title(), &cx.q, cx.q.signals);
    let (cluster_value, logs, describe) = (&cx.cluster_value, &cx.logs, &cx.describe);
    let routes = s.gateway_routes;
    let measured = format!(
        "Measured from the workers' {}_count on the routes the gateway serves ({routes}): \
         nginx's stub_status has no status codes, so this is what the workers answered \
         through the gateway; requests nginx answers itself are not counted.",
        s.requests
    );
    vec![
        Alert {
            name: format!("{p}ServerErrors"),
            severity: Severity::Critical,
            expr: format!("({}) > 0.05", q.status_ratio(routes, "5..", BY_POOL)),
            for_: "5m",
            summary: format!("{p} pool {POOL} answers {PERCENT} of gateway requests with 5xx."),
            description: format!(
                "More than 5% of the requests to pool {POOL} of {p} cluster {cluster_value} \
                 failed with a server error for 5 minutes. {measured} Find the failing route \
                 and its error in the pool's logs ({logs}); check that object storage is \
                 reachable and the credentials valid, and read the cluster's conditions \
                 ({describe})."
            ),
        },
        Alert {
            name: format!("{p}ClientErrors"),
            severity: Severity::Warning,
            expr: format!("({}) > 0.2", q.status_ratio(routes, "4..", BY_POOL)),
            for_: "15m",
            summary: format!("{p} pool {POOL} answers {PERCENT} of gateway requests with 4xx."),
            description: format!(
                "More than 20% of the requests to pool {POOL} of {p} cluster {cluster_value} \
                 were refused as client errors for 15 minutes. {measured} Usually a client \
                 is at fault: requests over a tenant's limits (429), malformed queries, or \
                 data out of order or too old. Find the route and status with \
                 sum by (route, status_code) (rate({}_count{{{}, status_code=~\"4..\"}}[5m])) \
                 and fix the client, or raise the limit it hits.",
                s.requests, q.workers
            ),
        },
    ]
}

/// Slow requests on one group of routes, by pool.
fn latency_alert(cx: &Context, group: &Routes) -> Alert {
    let (p, q, cluster_value) = (cx.title(), &cx.q, &cx.cluster_value);
    let name = group.name;
    let limit = group.p99_limit_seconds;
    Alert {
        name: format!("{p}{}LatencyHigh", group.title),
        severity: Severity::Warning,
        expr: format!("{} > {limit}", q.p99(group.matchers, BY_POOL)),
        for_: "15m",
        summary: format!(
            "{p} pool {POOL} answers {name} requests slowly (p99 {{{{ $value | humanizeDuration }}}})."
        ),
        description: format!(
            "The 99th percentile of {name} requests to pool {POOL} of {p} cluster \
             {cluster_value} has been above {limit}s for 15 minutes ({}_bucket, {}). \
             Check the pool's CPU and memory on the cluster's overview dashboard and \
             scale the pool (WorkerPool spec.replicas) or give it more resources. {}",
            q.signals.requests,
            group.matchers,
            group.advice.replace("{logs}", &cx.logs)
        ),
    }
}

/// Workers, whole pools and the gateway that do not answer.
fn availability_alerts(cx: &Context) -> Vec<Alert> {
    let (p, q, cluster_value) = (cx.title(), &cx.q, &cx.cluster_value);
    let (logs, describe) = (&cx.logs, &cx.describe);
    let ns = &cx.cluster.namespace;
    let pool_label = labels::POOL;
    vec![
        Alert {
            name: format!("{p}WorkersDown"),
            severity: Severity::Warning,
            expr: format!("count by ({BY_POOL}) (up{{{}}} == 0) > 0", q.workers),
            for_: "5m",
            summary: format!("{{{{ $value }}}} {p} workers of pool {POOL} do not answer."),
            description: format!(
                "The agent could not scrape {{{{ $value }}}} worker pods of pool {POOL} of {p} \
                 cluster {cluster_value} for 5 minutes (up == 0): they are crashing, not ready \
                 or unreachable. Look at the pods (kubectl -n {ns} get pods -l {pool_label}={POOL}), \
                 their events and their logs ({logs})."
            ),
        },
        Alert {
            name: format!("{p}PoolDown"),
            severity: Severity::Critical,
            expr: format!("max by ({BY_POOL}) (up{{{}}}) == 0", q.workers),
            for_: "5m",
            summary: format!("No worker of {p} pool {POOL} answers."),
            description: format!(
                "Every worker pod of pool {POOL} of {p} cluster {cluster_value} has failed its \
                 scrape for 5 minutes, so the roles only this pool runs are unavailable. Look at \
                 the pods (kubectl -n {ns} get pods -l {pool_label}={POOL}), their events and logs \
                 ({logs}), and at the cluster's conditions ({describe})."
            ),
        },
        Alert {
            name: format!("{p}GatewayDown"),
            severity: Severity::Critical,
            expr: format!("min by ({BY_CLUSTER}) (nginx_up{{{}}}) == 0", q.gateway),
            for_: "5m",
            summary: format!("The nginx gateway of {p} cluster {cluster_value} does not answer."),
            description: format!(
                "The nginx exporter in a gateway pod of {p} cluster {cluster_value} has not been \
                 able to read nginx's status for 5 minutes: nginx is down or stuck, and \
                 requests through that replica fail. Look at the gateway pods \
                 (kubectl -n {ns} get pods -l {}={},{}={}) and the nginx container's logs.",
                labels::CLUSTER,
                cx.cluster.name,
                labels::COMPONENT,
                Component::Gateway.as_str()
            ),
        },
    ]
}

// ---------------------------------------------------------------------------------------
// What only one product measures, as data

/// When an alert on what only one product measures fires.
#[derive(Debug, Clone, Copy)]
enum Condition {
    /// A per-pod gauge above `share` of its limit (picked by `limit_matchers`), where
    /// the limit is set.
    NearLimit {
        usage: &'static str,
        limit: &'static str,
        limit_matchers: &'static str,
        share: &'static str,
    },
    /// What is discarded, per reason, above `share` of what is received.
    Discarding {
        discarded: &'static str,
        received: &'static str,
        share: &'static str,
    },
    /// Server errors above `share` of the requests on `routes`, by pool.
    ServerErrors {
        routes: &'static str,
        share: &'static str,
    },
    /// Any increase of a counter, summed by `by`.
    Any {
        metric: &'static str,
        by: &'static str,
    },
}

impl Condition {
    fn expr(self, q: &Queries) -> String {
        match self {
            Condition::NearLimit {
                usage,
                limit,
                limit_matchers,
                share,
            } => {
                let by = format!("{BY_POOL}, pod");
                format!(
                    "{} / on ({BY_POOL}, pod) ({} > 0) > {share}",
                    q.gauge(usage, "", &by),
                    q.gauge(limit, limit_matchers, &by),
                )
            }
            Condition::Discarding {
                discarded,
                received,
                share,
            } => format!(
                "{} / ignoring (reason) group_left {} > {share}",
                q.rate(discarded, "", BY_REASON),
                q.rate(received, "", BY_CLUSTER),
            ),
            Condition::ServerErrors { routes, share } => {
                format!("({}) > {share}", q.status_ratio(routes, "5..", BY_POOL))
            }
            Condition::Any { metric, by } => format!("{} > 0", q.rate(metric, "", by)),
        }
    }
}

/// An alert on what only one product measures. In its texts `{cluster}` stands for the
/// cluster's label and `{logs}` for the command that shows the pool's logs.
struct ProductAlert {
    name: &'static str,
    severity: Severity,
    condition: Condition,
    for_: &'static str,
    summary: &'static str,
    description: &'static str,
}

impl ProductAlert {
    fn alert(&self, cx: &Context) -> Alert {
        let fill = |text: &str| {
            text.replace("{cluster}", &cx.cluster_value)
                .replace("{logs}", &cx.logs)
        };
        Alert {
            name: self.name.to_string(),
            severity: self.severity,
            expr: self.condition.expr(&cx.q),
            for_: self.for_,
            summary: fill(self.summary),
            description: fill(self.description),
        }
    }
}

fn product_alerts(product: Product) -> &'static [ProductAlert] {
    match product {
        Product::Mimir => MIMIR,
        Product::Loki => LOKI,
        Product::Tempo => TEMPO,
    }
}

const MIMIR: &[ProductAlert] = &[
    ProductAlert {
        name: "MimirIngesterNearSeriesLimit",
        severity: Severity::Warning,
        condition: Condition::NearLimit {
            usage: "cortex_ingester_memory_series",
            limit: "cortex_ingester_instance_limits",
            limit_matchers: r#", limit="max_series""#,
            share: "0.8",
        },
        for_: "15m",
        summary: "Mimir ingester {{ $labels.pod }} holds {{ $value | humanizePercentage }} of \
                  its series limit.",
        description: "Ingester {{ $labels.pod }} (pool {{ $labels.pool }}) of Mimir cluster \
                      {cluster} has held more than 80% of its max_series instance limit for 15 \
                      minutes; at the limit it refuses every push. Add ingester replicas to \
                      spread the series, or raise the limit if the pods have the memory for it.",
    },
    ProductAlert {
        name: "MimirDiscardingSamples",
        severity: Severity::Warning,
        condition: Condition::Discarding {
            discarded: "cortex_discarded_samples_total",
            received: "cortex_distributor_received_samples_total",
            share: "0.01",
        },
        for_: "15m",
        summary: "Mimir cluster {cluster} discards samples: {{ $labels.reason }}.",
        description: "Mimir cluster {cluster} has rejected samples for reason \
                      {{ $labels.reason }} at more than 1% of the rate it accepts them, for 15 \
                      minutes (cortex_discarded_samples_total). The reason names the limit or \
                      check: raise the tenant limit, or fix the writer sending samples out of \
                      order, too old or with too many labels.",
    },
];

const LOKI: &[ProductAlert] = &[
    ProductAlert {
        name: "LokiPushErrors",
        severity: Severity::Warning,
        condition: Condition::ServerErrors {
            routes: r#"route=~"loki_api_v1_push|otlp_v1_logs""#,
            share: "0.01",
        },
        for_: "10m",
        summary: "Loki pool {{ $labels.pool }} fails {{ $value | humanizePercentage }} of log \
                  pushes.",
        description: "More than 1% of the pushes to the distributors of pool \
                      {{ $labels.pool }} of Loki cluster {cluster} failed with a server error \
                      for 10 minutes (loki_request_duration_seconds_count on loki_api_v1_push \
                      and otlp_v1_logs, status_code 5xx). Clients retry, but lines are delayed \
                      and may be lost. Usually ingesters are unhealthy or unreachable: check \
                      the write pods and their logs ({logs}).",
    },
    ProductAlert {
        name: "LokiDiscardingLines",
        severity: Severity::Warning,
        condition: Condition::Discarding {
            discarded: "loki_discarded_samples_total",
            received: "loki_distributor_lines_received_total",
            share: "0.01",
        },
        for_: "15m",
        summary: "Loki cluster {cluster} discards log lines: {{ $labels.reason }}.",
        description: "Loki cluster {cluster} has rejected log lines for reason \
                      {{ $labels.reason }} at more than 1% of the rate it receives them, for 15 \
                      minutes (loki_discarded_samples_total). Raise the limit the reason names, \
                      or fix the client (lines too long, too old, too many streams).",
    },
];

const TEMPO: &[ProductAlert] = &[
    ProductAlert {
        name: "TempoRefusingSpans",
        severity: Severity::Warning,
        condition: Condition::Any {
            metric: "tempo_receiver_refused_spans",
            by: BY_POOL,
        },
        for_: "10m",
        summary: "Tempo distributors of pool {{ $labels.pool }} refuse spans.",
        description: "The distributors of pool {{ $labels.pool }} of Tempo cluster {cluster} \
                      have refused spans to their clients for 10 minutes \
                      (tempo_receiver_refused_spans). Either limits are hit (see \
                      tempo_discarded_spans_total by reason on the overview dashboard) or the \
                      ingesters are not healthy: check the ingester pods and the distributors' \
                      logs ({logs}).",
    },
    ProductAlert {
        name: "TempoDiscardingSpans",
        severity: Severity::Warning,
        condition: Condition::Any {
            metric: "tempo_discarded_spans_total",
            by: BY_REASON,
        },
        for_: "15m",
        summary: "Tempo cluster {cluster} discards spans: {{ $labels.reason }}.",
        description: "Tempo cluster {cluster} has dropped spans for reason {{ $labels.reason }} \
                      for 15 minutes (tempo_discarded_spans_total). rate_limited: raise the \
                      ingestion rate limit or add distributors; trace_too_large or \
                      live_traces_exceeded: raise those limits or fix the instrumentation \
                      producing huge traces.",
    },
];

#[cfg(test)]
mod tests {
    use super::super::queries::signals;
    use super::super::testing::{CLUSTER, assert_parses_and_scoped, clusters};
    use super::*;
    use crate::fixtures;

    fn rules_of(groups: &Value) -> Vec<Value> {
        groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().expect("rules"))
            .collect()
    }

    #[test]
    fn every_alert_says_how_bad_what_and_what_to_do() {
        for cluster in clusters() {
            let rules = rules_of(&alert_rules(&ClusterView::new(&cluster)));
            let mut names = std::collections::BTreeSet::new();
            for rule in rules {
                let name = rule["alert"].as_str().expect("alert name").to_string();
                assert!(names.insert(name.clone()), "duplicate {name}");
                assert!(
                    ["critical", "warning"]
                        .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                    "{name}"
                );
                for annotation in ["summary", "description"] {
                    let text = rule["annotations"][annotation].as_str().unwrap_or("");
                    assert!(text.len() > 20, "{name}: {annotation}");
                }
                assert!(
                    rule["for"].as_str().is_some_and(|f| f.ends_with('m')),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn alert_expressions_parse_and_read_only_this_cluster() {
        for cluster in clusters() {
            for rule in rules_of(&alert_rules(&ClusterView::new(&cluster))) {
                let expr = rule["expr"].as_str().expect("expr");
                assert!(!expr.contains('$'), "{expr}");
                assert_parses_and_scoped(expr, CLUSTER);
            }
        }
    }

    #[test]
    fn server_and_client_error_ratio_alerts_exist_for_every_product() {
        for cluster in clusters() {
            let view = ClusterView::new(&cluster);
            let title = signals(view.product()).title;
            let rules = rules_of(&alert_rules(&view));
            let find = |name: String| {
                rules
                    .iter()
                    .find(|r| r["alert"] == name.as_str())
                    .unwrap_or_else(|| panic!("{name}"))
                    .clone()
            };
            let requests = format!("{}_count", signals(view.product()).requests);
            for (name, status, threshold, duration, severity) in [
                ("ServerErrors", "5..", "> 0.05", "5m", "critical"),
                ("ClientErrors", "4..", "> 0.2", "15m", "warning"),
            ] {
                let rule = find(format!("{title}{name}"));
                let expr = rule["expr"].as_str().expect("expr");
                assert!(
                    expr.contains(&format!(r#"status_code=~"{status}""#)),
                    "{expr}"
                );
                assert!(expr.contains(&requests), "{expr}");
                assert!(expr.contains("by (cluster, namespace, pool)"), "{expr}");
                assert!(expr.ends_with(threshold), "{expr}");
                assert_eq!(rule["for"], duration);
                assert_eq!(rule["labels"]["severity"], severity);
                let description = rule["annotations"]["description"].as_str().expect("text");
                assert!(description.contains(&requests), "{description}");
                assert!(description.contains("stub_status"), "{description}");
            }
        }
    }

    #[test]
    fn workers_down_and_product_alerts_are_present() {
        let expected = [
            (Product::Mimir, "MimirIngesterNearSeriesLimit"),
            (Product::Loki, "LokiPushErrors"),
            (Product::Tempo, "TempoRefusingSpans"),
        ];
        for (product, specific) in expected {
            let cluster = fixtures::minimal_cluster(product);
            let rules = rules_of(&alert_rules(&ClusterView::new(&cluster)));
            let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
            let title = signals(product).title;
            for name in [
                format!("{title}WorkersDown"),
                format!("{title}PoolDown"),
                format!("{title}GatewayDown"),
                format!("{title}ReadLatencyHigh"),
                specific.to_string(),
            ] {
                assert!(names.contains(&name.as_str()), "{product}: {name}");
            }
        }
    }
}
