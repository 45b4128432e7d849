//! Dashboards and alert rules for a cluster's product: what the coordinator owns besides
//! its workers. They are written for this project from the products' metric names; the
//! upstream mixins are under a license the project does not take.
//!
//! Every query reads the series the self-monitoring agent ships (see [`super::agent`]):
//! workers under `job="<product>"`, the gateway's nginx exporter under
//! `job="<product>-gateway"`, each with `cluster="<namespace>/<name>"` and `namespace`,
//! workers also with `pool` and `pod`. There is no role label (a pod may run several
//! roles), so panels and alerts group by `pool`.
//!
//! The exporter reads nginx's stub_status, which counts requests but has no status
//! codes. Error ratios therefore come from the workers' own request histograms on the
//! routes the gateway serves: what a worker answered is what the gateway passed on. The
//! few requests nginx answers by itself (a duplicated tenant header gets its 400 there)
//! are not counted, and the descriptions say so.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::ClusterView;
use super::labels::{self, Component, child_meta, cluster_labels};
use crate::product::Product;

/// The label the Grafana dashboard sidecar looks for.
pub const DASHBOARD_LABEL: &str = "grafana_dashboard";
/// Data key of the rules ConfigMap written when the PrometheusRule CRD is absent.
pub const RULES_FILE: &str = "rules.yaml";
/// Grafana refuses dashboard uids longer than this.
const MAX_UID_LEN: usize = 40;
/// Rate window of the alert expressions (dashboards use Grafana's `$__rate_interval`).
const ALERT_WINDOW: &str = "5m";

/// The Prometheus Operator's rule resource, for an `Api<DynamicObject>`.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PrometheusRule".into(),
        plural: "prometheusrules".into(),
    }
}

/// A group of the gateway's routes as the workers' request histogram names them (the
/// path with every non-alphanumeric run turned into `_`).
struct Routes {
    /// `write` or `read`, as text says it.
    name: &'static str,
    /// The same in titles and alert names (`MimirWriteLatencyHigh`).
    title: &'static str,
    /// Matchers on `route`; PromQL regexes are anchored.
    matchers: &'static str,
    /// p99 latency, in seconds, above which the latency alert fires.
    p99_limit_seconds: &'static str,
    /// What else to look at when these requests are slow; `{logs}` is replaced by the
    /// command that shows the pool's logs.
    advice: &'static str,
}

/// What each product measures, by the names its own `/metrics` uses.
struct Signals {
    title: &'static str,
    /// The histogram every worker's HTTP and gRPC servers record, with `route` and
    /// `status_code` labels.
    requests: &'static str,
    /// Matchers on `route` selecting every main route the gateway serves.
    gateway_routes: &'static str,
    /// Route groups with their own rate, error and latency panels. Tempo has only reads:
    /// its trace receivers do not record the request histogram.
    groups: &'static [Routes],
}

fn signals(product: Product) -> &'static Signals {
    match product {
        Product::Mimir => &Signals {
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
        },
        Product::Loki => &Signals {
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
        },
        Product::Tempo => &Signals {
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
        },
    }
}

/// The value of the `cluster` label the agent puts on this cluster's series.
pub fn cluster_label(cluster: &ClusterView) -> String {
    format!("{}/{}", cluster.namespace, cluster.name)
}

/// Matchers of one cluster's series from one scrape job.
fn selector(cluster: &str, job: &str) -> String {
    format!(r#"cluster="{cluster}", job="{job}""#)
}

/// Queries over one cluster, shared by the dashboards (`cluster="$cluster"`, Grafana's
/// rate interval) and the alerts (the literal cluster, a fixed window).
struct Queries {
    signals: &'static Signals,
    /// Matchers of the workers' series.
    workers: String,
    /// Matchers of the gateway exporter's series.
    gateway: String,
    window: &'static str,
}

impl Queries {
    fn new(product: Product, cluster: &str, window: &'static str) -> Self {
        Self {
            signals: signals(product),
            workers: selector(cluster, product.as_str()),
            gateway: selector(cluster, &format!("{product}-gateway")),
            window,
        }
    }

    /// Rate of a worker counter, summed by `by`.
    fn rate(&self, metric: &str, extra: &str, by: &str) -> String {
        format!(
            "sum by ({by}) (rate({metric}{{{}{extra}}}[{}]))",
            self.workers, self.window
        )
    }

    /// Requests per second on some routes.
    fn requests(&self, routes: &str, by: &str) -> String {
        let metric = format!("{}_count", self.signals.requests);
        self.rate(&metric, &format!(", {routes}"), by)
    }

    /// Share of the requests on some routes answered with a status matching `status`.
    fn status_ratio(&self, routes: &str, status: &str, by: &str) -> String {
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
    fn p99(&self, routes: &str, by: &str) -> String {
        format!(
            "histogram_quantile(0.99, sum by ({by}, le) (rate({}_bucket{{{}, {routes}}}[{}])))",
            self.signals.requests, self.workers, self.window
        )
    }

    /// A worker gauge, summed by `by`.
    fn gauge(&self, metric: &str, extra: &str, by: &str) -> String {
        format!("sum by ({by}) ({metric}{{{}{extra}}})", self.workers)
    }

    fn gateway_gauge(&self, metric: &str) -> String {
        format!("sum({metric}{{{}}})", self.gateway)
    }

    fn gateway_rate(&self, metric: &str) -> String {
        format!("sum(rate({metric}{{{}}}[{}]))", self.gateway, self.window)
    }
}

// ---------------------------------------------------------------------------------------
// Dashboards

/// A time-series panel before layout.
struct Panel {
    title: String,
    description: String,
    /// Grafana unit id (`reqps`, `percentunit`, `s`, `bytes`, `short`, ...).
    unit: &'static str,
    /// (expression, legend) pairs.
    queries: Vec<(String, String)>,
}

impl Panel {
    fn new(title: impl Into<String>, unit: &'static str, description: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            description: description.into(),
            unit,
            queries: Vec::new(),
        }
    }

    fn query(mut self, expr: String, legend: &str) -> Self {
        self.queries.push((expr, legend.to_string()));
        self
    }
}

/// A titled row of panels.
struct Row {
    title: String,
    panels: Vec<Panel>,
}

fn row(title: impl Into<String>, panels: Vec<Panel>) -> Row {
    Row {
        title: title.into(),
        panels,
    }
}

/// One dashboard the coordinator owns.
struct Dashboard {
    /// Short name: the ConfigMap is `<c>-dashboard-<name>`.
    name: &'static str,
    rows: Vec<Row>,
}

const PANEL_HEIGHT: u32 = 8;
const PER_LINE: usize = 4;
const GRID_WIDTH: u32 = 24;
/// Every query uses the data source the dashboard's `datasource` variable picks.
const DATASOURCE: &str = "${datasource}";

/// The rows of a product's overview dashboard.
fn overview_rows(product: Product, q: &Queries) -> Vec<Row> {
    let s = q.signals;
    let mut rows = Vec::new();
    for group in s.groups {
        let routes = group.matchers;
        rows.push(row(
            format!("{} requests", group.title),
            vec![
                Panel::new(
                    format!("{} requests/s by pool", group.title),
                    "reqps",
                    format!(
                        "Requests on the {} routes the gateway serves, as every worker that handled \
                         them counts them ({}_count).",
                        group.name, s.requests
                    ),
                )
                .query(q.requests(routes, "pool"), "{{pool}}"),
                Panel::new(
                    format!("{} error ratio by pool", group.title),
                    "percentunit",
                    "Share of the workers' answers with a 5xx or 4xx status. nginx's stub_status \
                     has no status codes, so this is measured at the workers; requests nginx \
                     answers itself are not in it.",
                )
                .query(q.status_ratio(routes, "5..", "pool"), "{{pool}} 5xx")
                .query(q.status_ratio(routes, "4..", "pool"), "{{pool}} 4xx"),
                Panel::new(
                    format!("{} p99 latency by pool", group.title),
                    "s",
                    format!(
                        "99th percentile of the workers' request duration on the {} routes.",
                        group.name
                    ),
                )
                .query(q.p99(routes, "pool"), "{{pool}}"),
            ],
        ));
    }
    rows.push(row("Ingestion", ingestion_panels(product, q)));
    rows.push(row(
        "Gateway",
        vec![
            Panel::new(
                "Gateway connections",
                "short",
                "Client connections of the nginx gateway, from its stub_status.",
            )
            .query(q.gateway_gauge("nginx_connections_active"), "active")
            .query(q.gateway_gauge("nginx_connections_reading"), "reading")
            .query(q.gateway_gauge("nginx_connections_writing"), "writing")
            .query(q.gateway_gauge("nginx_connections_waiting"), "waiting"),
            Panel::new(
                "Gateway requests/s",
                "reqps",
                "Every request nginx handled, whatever its route or status.",
            )
            .query(q.gateway_rate("nginx_http_requests_total"), "requests"),
            Panel::new(
                "Gateway dropped connections/s",
                "short",
                "Connections nginx accepted but did not handle: it ran out of worker \
                 connections. Anything above zero means the gateway needs more replicas.",
            )
            .query(
                format!(
                    "{} - {}",
                    q.gateway_rate("nginx_connections_accepted"),
                    q.gateway_rate("nginx_connections_handled")
                ),
                "dropped",
            ),
        ],
    ));
    rows.push(row(
        "Workers",
        vec![
            Panel::new(
                "Workers answering scrapes by pool",
                "short",
                "Workers whose /metrics the agent scraped (up) and those it could not reach \
                 (down). Pods not yet scheduled are not counted: see the WorkerPool's Ready \
                 condition for those.",
            )
            .query(q.gauge("up", "", "pool"), "{{pool}} up")
            .query(
                format!("count by (pool) (up{{{}}} == 0)", q.workers),
                "{{pool}} down",
            ),
            Panel::new(
                "Memory by pod",
                "bytes",
                "Resident memory of each worker process.",
            )
            .query(
                q.gauge("process_resident_memory_bytes", "", "pool, pod"),
                "{{pod}}",
            ),
            Panel::new("CPU by pod", "short", "CPU cores each worker process uses.").query(
                q.rate("process_cpu_seconds_total", "", "pool, pod"),
                "{{pod}}",
            ),
        ],
    ));
    rows.push(row(s.title, product_panels(product, q)));
    rows
}

/// What enters the cluster, as the product's distributors count it.
fn ingestion_panels(product: Product, q: &Queries) -> Vec<Panel> {
    match product {
        Product::Mimir => vec![
            Panel::new(
                "Samples received/s by pool",
                "short",
                "Samples the distributors accepted (cortex_distributor_received_samples_total).",
            )
            .query(
                q.rate("cortex_distributor_received_samples_total", "", "pool"),
                "{{pool}}",
            ),
            Panel::new(
                "Samples discarded/s by reason",
                "short",
                "Samples rejected by validation or limits (cortex_discarded_samples_total); \
                 the reason names the limit or the check.",
            )
            .query(
                q.rate("cortex_discarded_samples_total", "", "reason"),
                "{{reason}}",
            ),
        ],
        Product::Loki => vec![
            Panel::new(
                "Bytes received/s by pool",
                "Bps",
                "Log bytes the distributors received (loki_distributor_bytes_received_total).",
            )
            .query(
                q.rate("loki_distributor_bytes_received_total", "", "pool"),
                "{{pool}}",
            ),
            Panel::new(
                "Lines received/s by pool",
                "short",
                "Log lines the distributors received (loki_distributor_lines_received_total).",
            )
            .query(
                q.rate("loki_distributor_lines_received_total", "", "pool"),
                "{{pool}}",
            ),
        ],
        Product::Tempo => vec![
            Panel::new(
                "Spans received/s by pool",
                "short",
                "Spans the distributors received (tempo_distributor_spans_received_total).",
            )
            .query(
                q.rate("tempo_distributor_spans_received_total", "", "pool"),
                "{{pool}}",
            ),
            Panel::new(
                "Spans refused/s by pool",
                "short",
                "Spans the distributors' receivers refused to their clients \
                 (tempo_receiver_refused_spans): rate limits or unhealthy ingesters.",
            )
            .query(
                q.rate("tempo_receiver_refused_spans", "", "pool"),
                "{{pool}}",
            ),
        ],
    }
}

/// The row only this product has.
fn product_panels(product: Product, q: &Queries) -> Vec<Panel> {
    match product {
        Product::Mimir => vec![
            Panel::new(
                "In-memory series per ingester pod",
                "short",
                "Series each ingester holds in memory (cortex_ingester_memory_series), with its \
                 instance limit where one is set. Only ingesters report them.",
            )
            .query(
                q.gauge("cortex_ingester_memory_series", "", "pool, pod"),
                "{{pod}}",
            )
            .query(
                format!(
                    "{} > 0",
                    q.gauge(
                        "cortex_ingester_instance_limits",
                        r#", limit="max_series""#,
                        "pool, pod"
                    )
                ),
                "{{pod}} limit",
            ),
        ],
        Product::Loki => vec![
            Panel::new(
                "In-memory streams per pod",
                "short",
                "Streams each ingester (the write path) holds in memory \
                 (loki_ingester_memory_streams).",
            )
            .query(
                q.gauge("loki_ingester_memory_streams", "", "pool, pod"),
                "{{pod}}",
            ),
            Panel::new(
                "Lines discarded/s by reason",
                "short",
                "Log lines rejected by validation or limits (loki_discarded_samples_total).",
            )
            .query(
                q.rate("loki_discarded_samples_total", "", "reason"),
                "{{reason}}",
            ),
        ],
        Product::Tempo => vec![
            Panel::new(
                "Live traces per ingester pod",
                "short",
                "Traces each ingester holds open in memory (tempo_ingester_live_traces).",
            )
            .query(
                q.gauge("tempo_ingester_live_traces", "", "pool, pod"),
                "{{pod}}",
            ),
            Panel::new(
                "Spans discarded/s by reason",
                "short",
                "Spans dropped by limits or validation (tempo_discarded_spans_total).",
            )
            .query(
                q.rate("tempo_discarded_spans_total", "", "reason"),
                "{{reason}}",
            ),
        ],
    }
}

/// Stable Grafana uid of one of a cluster's dashboards: the product for the reader, a
/// hash of namespace, cluster and dashboard so that clusters never share one.
fn dashboard_uid(cluster: &ClusterView, dashboard: &str) -> String {
    let product = cluster.product();
    let hash = super::checksum([
        cluster.namespace.as_bytes(),
        cluster.name.as_bytes(),
        product.as_str().as_bytes(),
        dashboard.as_bytes(),
    ]);
    let mut uid = format!("{product}-{hash}");
    uid.truncate(MAX_UID_LEN);
    uid
}

/// The Grafana JSON of one dashboard.
fn dashboard_json(cluster: &ClusterView, dashboard: &Dashboard) -> Value {
    let product = cluster.product();
    let title = signals(product).title;
    let cluster_value = cluster_label(cluster);
    let datasource = json!({"type": "prometheus", "uid": DATASOURCE});
    let mut panels = Vec::new();
    let mut next_id = 1u32;
    let mut y = 0u32;
    for row in &dashboard.rows {
        panels.push(json!({
            "type": "row",
            "id": next_id,
            "title": row.title,
            "collapsed": false,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
            "panels": [],
        }));
        next_id += 1;
        y += 1;
        // Up to PER_LINE panels side by side, sharing the width; more wrap below.
        let per_line = row.panels.len().clamp(1, PER_LINE);
        let width = GRID_WIDTH / per_line as u32;
        for (i, panel) in row.panels.iter().enumerate() {
            let targets: Vec<Value> = panel
                .queries
                .iter()
                .zip('A'..='Z')
                .map(|((expr, legend), ref_id)| {
                    json!({
                        "refId": ref_id.to_string(),
                        "datasource": datasource,
                        "expr": expr,
                        "legendFormat": legend,
                    })
                })
                .collect();
            let (line, column) = ((i / per_line) as u32, (i % per_line) as u32);
            panels.push(json!({
                "type": "timeseries",
                "id": next_id,
                "title": panel.title,
                "description": panel.description,
                "datasource": datasource,
                "gridPos": {
                    "h": PANEL_HEIGHT,
                    "w": width,
                    "x": column * width,
                    "y": y + line * PANEL_HEIGHT,
                },
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": targets,
            }));
            next_id += 1;
        }
        y += row.panels.len().div_ceil(per_line) as u32 * PANEL_HEIGHT;
    }
    let cluster_query = format!(r#"label_values(up{{job="{product}"}}, cluster)"#);
    json!({
        "uid": dashboard_uid(cluster, dashboard.name),
        "title": format!("{title} / {cluster_value} {}", dashboard.name),
        "description": format!(
            "{title} cluster {cluster_value}, rendered by {}; edits are overwritten.",
            labels::MANAGER
        ),
        "tags": ["lgtm", product.as_str()],
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "timezone": "browser",
        "templating": {"list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "hide": 0,
            },
            {
                "name": "cluster",
                "label": "cluster",
                "type": "query",
                "datasource": datasource,
                "definition": cluster_query,
                "query": {"query": cluster_query, "refId": "cluster"},
                "current": {"text": cluster_value, "value": cluster_value, "selected": true},
                "refresh": 2,
                "sort": 1,
                "multi": false,
                "includeAll": false,
                "hide": 0,
            },
        ]},
        "annotations": {"list": []},
        "panels": panels,
    })
}

/// The cluster's dashboards, one ConfigMap each (`<c>-dashboard-<name>`), labelled for
/// the Grafana sidecar.
pub fn dashboards(cluster: &ClusterView) -> Vec<ConfigMap> {
    let product = cluster.product();
    let queries = Queries::new(product, "$cluster", "$__rate_interval");
    let all = [Dashboard {
        name: "overview",
        rows: overview_rows(product, &queries),
    }];
    all.iter()
        .map(|dashboard| {
            let mut labels = cluster_labels(product, &cluster.name, Component::Dashboard);
            labels.insert(DASHBOARD_LABEL.to_string(), "1".to_string());
            let json = dashboard_json(cluster, dashboard);
            ConfigMap {
                metadata: child_meta(
                    cluster.child_name(&format!("dashboard-{}", dashboard.name)),
                    &cluster.namespace,
                    labels,
                    cluster.owner.as_ref(),
                ),
                data: Some(BTreeMap::from([(
                    dashboard_file(cluster, dashboard.name),
                    serde_json::to_string_pretty(&json).expect("a JSON value always serializes"),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect()
}

/// The data key of a dashboard. The sidecar writes every key of every labelled ConfigMap
/// into one folder, so the key must be unique across namespaces and clusters; `_` is in
/// neither a namespace nor an object name, so it separates them unambiguously.
fn dashboard_file(cluster: &ClusterView, dashboard: &str) -> String {
    format!(
        "{}_{}_{}_{dashboard}.json",
        cluster.product(),
        cluster.namespace,
        cluster.name
    )
}

// ---------------------------------------------------------------------------------------
// Alert rules

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

fn alert(
    name: String,
    expr: String,
    duration: &str,
    severity: Severity,
    summary: String,
    description: String,
) -> Value {
    json!({
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity.as_str()},
        "annotations": {"summary": summary, "description": description},
    })
}

/// The rule groups for the cluster, as a Prometheus rule file (`{groups: [...]}`); the
/// same value is a PrometheusRule's `spec`.
pub fn alert_rules(cluster: &ClusterView) -> Value {
    let product = cluster.product();
    let cluster_value = cluster_label(cluster);
    let q = Queries::new(product, &cluster_value, ALERT_WINDOW);
    let s = q.signals;
    let p = s.title;
    let ns = &cluster.namespace;
    let pool_label = labels::POOL;
    let logs = format!("kubectl -n {ns} logs -l {pool_label}={POOL} --tail=200");
    let describe = format!("kubectl -n {ns} describe grafanacluster {}", cluster.name);
    let routes = s.gateway_routes;
    let measured = format!(
        "Measured from the workers' {}_count on the routes the gateway serves ({routes}): \
         nginx's stub_status has no status codes, so this is what the workers answered \
         through the gateway; requests nginx answers itself are not counted.",
        s.requests
    );

    let mut rules = vec![
        alert(
            format!("{p}ServerErrors"),
            format!("({}) > 0.05", q.status_ratio(routes, "5..", BY_POOL)),
            "5m",
            Severity::Critical,
            format!("{p} pool {POOL} answers {PERCENT} of gateway requests with 5xx."),
            format!(
                "More than 5% of the requests to pool {POOL} of {p} cluster {cluster_value} \
                 failed with a server error for 5 minutes. {measured} Find the failing route \
                 and its error in the pool's logs ({logs}); check that object storage is \
                 reachable and the credentials valid, and read the cluster's conditions \
                 ({describe})."
            ),
        ),
        alert(
            format!("{p}ClientErrors"),
            format!("({}) > 0.2", q.status_ratio(routes, "4..", BY_POOL)),
            "15m",
            Severity::Warning,
            format!("{p} pool {POOL} answers {PERCENT} of gateway requests with 4xx."),
            format!(
                "More than 20% of the requests to pool {POOL} of {p} cluster {cluster_value} \
                 were refused as client errors for 15 minutes. {measured} Usually a client \
                 is at fault: requests over a tenant's limits (429), malformed queries, or \
                 data out of order or too old. Find the route and status with \
                 sum by (route, status_code) (rate({}_count{{{}, status_code=~\"4..\"}}[5m])) \
                 and fix the client, or raise the limit it hits.",
                s.requests, q.workers
            ),
        ),
    ];
    for group in s.groups {
        let name = group.name;
        let limit = group.p99_limit_seconds;
        rules.push(alert(
            format!("{p}{}LatencyHigh", group.title),
            format!("{} > {limit}", q.p99(group.matchers, BY_POOL)),
            "15m",
            Severity::Warning,
            format!("{p} pool {POOL} answers {name} requests slowly (p99 {{{{ $value | humanizeDuration }}}})."),
            format!(
                "The 99th percentile of {name} requests to pool {POOL} of {p} cluster \
                 {cluster_value} has been above {limit}s for 15 minutes ({}_bucket, {}). \
                 Check the pool's CPU and memory on the cluster's overview dashboard and \
                 scale the pool (WorkerPool spec.replicas) or give it more resources. {}",
                s.requests,
                group.matchers,
                group.advice.replace("{logs}", &logs)
            ),
        ));
    }
    rules.push(alert(
        format!("{p}WorkersDown"),
        format!("count by ({BY_POOL}) (up{{{}}} == 0) > 0", q.workers),
        "5m",
        Severity::Warning,
        format!("{{{{ $value }}}} {p} workers of pool {POOL} do not answer."),
        format!(
            "The agent could not scrape {{{{ $value }}}} worker pods of pool {POOL} of {p} \
             cluster {cluster_value} for 5 minutes (up == 0): they are crashing, not ready \
             or unreachable. Look at the pods (kubectl -n {ns} get pods -l {pool_label}={POOL}), \
             their events and their logs ({logs})."
        ),
    ));
    rules.push(alert(
        format!("{p}PoolDown"),
        format!("max by ({BY_POOL}) (up{{{}}}) == 0", q.workers),
        "5m",
        Severity::Critical,
        format!("No worker of {p} pool {POOL} answers."),
        format!(
            "Every worker pod of pool {POOL} of {p} cluster {cluster_value} has failed its \
             scrape for 5 minutes, so the roles only this pool runs are unavailable. Look at \
             the pods (kubectl -n {ns} get pods -l {pool_label}={POOL}), their events and logs \
             ({logs}), and at the cluster's conditions ({describe})."
        ),
    ));
    rules.push(alert(
        format!("{p}GatewayDown"),
        format!("min by ({BY_CLUSTER}) (nginx_up{{{}}}) == 0", q.gateway),
        "5m",
        Severity::Critical,
        format!("The nginx gateway of {p} cluster {cluster_value} does not answer."),
        format!(
            "The nginx exporter in a gateway pod of {p} cluster {cluster_value} has not been \
             able to read nginx's status for 5 minutes: nginx is down or stuck, and \
             requests through that replica fail. Look at the gateway pods \
             (kubectl -n {ns} get pods -l {}={},{}={}) and the nginx container's logs.",
            labels::CLUSTER,
            cluster.name,
            labels::COMPONENT,
            Component::Gateway.as_str()
        ),
    ));
    rules.extend(product_alerts(cluster, &q));
    json!({
        "groups": [{
            "name": format!("{}-{}", cluster.product(), cluster_value),
            "rules": rules,
        }]
    })
}

/// Alerts on what only this product measures.
fn product_alerts(cluster: &ClusterView, q: &Queries) -> Vec<Value> {
    let cluster_value = cluster_label(cluster);
    let logs = format!(
        "kubectl -n {} logs -l {}={POOL} --tail=200",
        cluster.namespace,
        labels::POOL
    );
    match cluster.product() {
        Product::Mimir => vec![
            alert(
                "MimirIngesterNearSeriesLimit".into(),
                format!(
                    "{} / on ({BY_POOL}, pod) ({} > 0) > 0.8",
                    q.gauge(
                        "cortex_ingester_memory_series",
                        "",
                        &format!("{BY_POOL}, pod")
                    ),
                    q.gauge(
                        "cortex_ingester_instance_limits",
                        r#", limit="max_series""#,
                        &format!("{BY_POOL}, pod")
                    ),
                ),
                "15m",
                Severity::Warning,
                format!(
                    "Mimir ingester {{{{ $labels.pod }}}} holds {PERCENT} of its series limit."
                ),
                format!(
                    "Ingester {{{{ $labels.pod }}}} (pool {POOL}) of Mimir cluster {cluster_value} \
                     has held more than 80% of its max_series instance limit for 15 minutes; \
                     at the limit it refuses every push. Add ingester replicas to spread the \
                     series, or raise the limit if the pods have the memory for it."
                ),
            ),
            alert(
                "MimirDiscardingSamples".into(),
                format!(
                    "{} / ignoring (reason) group_left {} > 0.01",
                    q.rate(
                        "cortex_discarded_samples_total",
                        "",
                        "cluster, namespace, reason"
                    ),
                    q.rate("cortex_distributor_received_samples_total", "", BY_CLUSTER),
                ),
                "15m",
                Severity::Warning,
                format!(
                    "Mimir cluster {cluster_value} discards samples: {{{{ $labels.reason }}}}."
                ),
                format!(
                    "Mimir cluster {cluster_value} has rejected samples for reason \
                     {{{{ $labels.reason }}}} at more than 1% of the rate it accepts them, for \
                     15 minutes (cortex_discarded_samples_total). The reason names the limit or \
                     check: raise the tenant limit, or fix the writer sending samples out of \
                     order, too old or with too many labels."
                ),
            ),
        ],
        Product::Loki => vec![
            alert(
                "LokiPushErrors".into(),
                format!(
                    "({}) > 0.01",
                    q.status_ratio(r#"route=~"loki_api_v1_push|otlp_v1_logs""#, "5..", BY_POOL)
                ),
                "10m",
                Severity::Warning,
                format!("Loki pool {POOL} fails {PERCENT} of log pushes."),
                format!(
                    "More than 1% of the pushes to the distributors of pool {POOL} of Loki \
                     cluster {cluster_value} failed with a server error for 10 minutes \
                     (loki_request_duration_seconds_count on loki_api_v1_push and otlp_v1_logs, \
                     status_code 5xx). Clients retry, but lines are delayed and may be lost. \
                     Usually ingesters are unhealthy or unreachable: check the write pods and \
                     their logs ({logs})."
                ),
            ),
            alert(
                "LokiDiscardingLines".into(),
                format!(
                    "{} / ignoring (reason) group_left {} > 0.01",
                    q.rate(
                        "loki_discarded_samples_total",
                        "",
                        "cluster, namespace, reason"
                    ),
                    q.rate("loki_distributor_lines_received_total", "", BY_CLUSTER),
                ),
                "15m",
                Severity::Warning,
                format!(
                    "Loki cluster {cluster_value} discards log lines: {{{{ $labels.reason }}}}."
                ),
                format!(
                    "Loki cluster {cluster_value} has rejected log lines for reason \
                     {{{{ $labels.reason }}}} at more than 1% of the rate it receives them, for \
                     15 minutes (loki_discarded_samples_total). Raise the limit the reason \
                     names, or fix the client (lines too long, too old, too many streams)."
                ),
            ),
        ],
        Product::Tempo => vec![
            alert(
                "TempoRefusingSpans".into(),
                format!(
                    "{} > 0",
                    q.rate("tempo_receiver_refused_spans", "", BY_POOL)
                ),
                "10m",
                Severity::Warning,
                format!("Tempo distributors of pool {POOL} refuse spans."),
                format!(
                    "The distributors of pool {POOL} of Tempo cluster {cluster_value} have \
                     refused spans to their clients for 10 minutes \
                     (tempo_receiver_refused_spans). Either limits are hit (see \
                     tempo_discarded_spans_total by reason on the overview dashboard) or the \
                     ingesters are not healthy: check the ingester pods and the distributors' \
                     logs ({logs})."
                ),
            ),
            alert(
                "TempoDiscardingSpans".into(),
                format!(
                    "{} > 0",
                    q.rate(
                        "tempo_discarded_spans_total",
                        "",
                        "cluster, namespace, reason"
                    )
                ),
                "15m",
                Severity::Warning,
                format!("Tempo cluster {cluster_value} discards spans: {{{{ $labels.reason }}}}."),
                format!(
                    "Tempo cluster {cluster_value} has dropped spans for reason \
                     {{{{ $labels.reason }}}} for 15 minutes (tempo_discarded_spans_total). \
                     rate_limited: raise the ingestion rate limit or add distributors; \
                     trace_too_large or live_traces_exceeded: raise those limits or fix the \
                     instrumentation producing huge traces."
                ),
            ),
        ],
    }
}

/// `<c>-alerts`: the rules as a PrometheusRule, for clusters with the Prometheus Operator.
pub fn prometheus_rule(cluster: &ClusterView) -> DynamicObject {
    let mut rule = DynamicObject::new(&alerts_name(cluster), &prometheus_rule_resource())
        .within(&cluster.namespace)
        .data(json!({"spec": alert_rules(cluster)}));
    rule.metadata = child_meta(
        alerts_name(cluster),
        &cluster.namespace,
        cluster_labels(cluster.product(), &cluster.name, Component::Alerts),
        cluster.owner.as_ref(),
    );
    rule
}

/// `<c>-alerts`: the same rules as a rule file in a ConfigMap, for when the
/// PrometheusRule CRD is not installed.
pub fn rules_config_map(cluster: &ClusterView) -> ConfigMap {
    let text = serde_saphyr::to_string(&alert_rules(cluster))
        .expect("a JSON value always serializes to YAML");
    ConfigMap {
        metadata: child_meta(
            alerts_name(cluster),
            &cluster.namespace,
            cluster_labels(cluster.product(), &cluster.name, Component::Alerts),
            cluster.owner.as_ref(),
        ),
        data: Some(BTreeMap::from([(RULES_FILE.to_string(), text)])),
        ..ConfigMap::default()
    }
}

/// Name of the alert rules object, whichever kind it is.
pub fn alerts_name(cluster: &ClusterView) -> String {
    cluster.child_name("alerts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GrafanaCluster;
    use crate::fixtures;
    use promql_parser::label::MatchOp;
    use promql_parser::parser::{self, Expr};
    use promql_parser::util::{ExprVisitor, walk_expr};

    /// The `cluster` label of the fixtures' cluster (`metrics` in `obs`).
    const CLUSTER: &str = "obs/metrics";

    fn clusters() -> Vec<GrafanaCluster> {
        Product::ALL
            .iter()
            .map(|p| fixtures::minimal_cluster(*p))
            .collect()
    }

    fn dashboard_json_of(config_map: &ConfigMap) -> (String, Value) {
        let data = config_map.data.as_ref().expect("data");
        assert_eq!(data.len(), 1, "one dashboard per ConfigMap");
        let (key, text) = data.iter().next().expect("a key");
        (
            key.clone(),
            serde_json::from_str(text).expect("dashboard is JSON"),
        )
    }

    fn panel_exprs(dashboard: &Value) -> Vec<String> {
        dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().expect("expr").to_string())
            .collect()
    }

    fn rules_of(groups: &Value) -> Vec<Value> {
        groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().expect("rules"))
            .collect()
    }

    /// Walks an expression, noting every selector not scoped to the cluster and every
    /// label name that looks like a role.
    struct Scope<'a> {
        cluster: &'a str,
        selectors: usize,
        problems: Vec<String>,
    }

    impl ExprVisitor for Scope<'_> {
        type Error = ();

        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = selector {
                self.selectors += 1;
                let scoped = vs.matchers.matchers.iter().any(|m| {
                    m.name == "cluster" && matches!(m.op, MatchOp::Equal) && m.value == self.cluster
                });
                if !scoped {
                    self.problems.push(format!("unscoped selector {vs}"));
                }
                for m in &vs.matchers.matchers {
                    if m.name.contains("role") {
                        self.problems.push(format!("role matcher {m}"));
                    }
                }
            }
            if let Expr::Aggregate(aggregate) = expr
                && let Some(modifier) = &aggregate.modifier
            {
                for label in &modifier.labels().labels {
                    if label.contains("role") {
                        self.problems.push(format!("grouped by {label}"));
                    }
                }
            }
            Ok(true)
        }
    }

    /// Parses `expr` and panics unless every selector in it is scoped to `cluster` and
    /// no label names a role.
    fn assert_parses_and_scoped(expr: &str, cluster: &str) {
        assert!(!expr.contains("role"), "a role label in {expr}");
        let parsed = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut scope = Scope {
            cluster,
            selectors: 0,
            problems: Vec::new(),
        };
        walk_expr(&mut scope, &parsed).expect("walk");
        assert!(scope.selectors > 0, "no selector in {expr}");
        assert!(scope.problems.is_empty(), "{expr}: {:?}", scope.problems);
    }

    #[test]
    fn each_product_gets_an_overview_dashboard_for_the_grafana_sidecar() {
        for cluster in clusters() {
            let view = ClusterView::new(&cluster);
            let config_maps = dashboards(&view);
            assert_eq!(config_maps.len(), 1);
            let cm = &config_maps[0];
            assert_eq!(
                cm.metadata.name.as_deref(),
                Some("metrics-dashboard-overview")
            );
            assert_eq!(cm.metadata.namespace.as_deref(), Some("obs"));
            let labels = cm.metadata.labels.clone().expect("labels");
            assert_eq!(labels[DASHBOARD_LABEL], "1");
            assert_eq!(labels[labels::COMPONENT], "dashboard");
            assert_eq!(labels[labels::CLUSTER], "metrics");
            let owners = cm.metadata.owner_references.clone().expect("owner");
            assert_eq!(owners[0].kind, "GrafanaCluster");
            assert_eq!(owners[0].controller, Some(true));

            let product = view.product();
            let (key, dashboard) = dashboard_json_of(cm);
            assert_eq!(key, format!("{product}_obs_metrics_overview.json"));
            let title = signals(product).title;
            assert_eq!(
                dashboard["title"],
                format!("{title} / obs/metrics overview")
            );
            let variables = dashboard["templating"]["list"].as_array().expect("vars");
            let cluster_var = variables
                .iter()
                .find(|v| v["name"] == "cluster")
                .expect("a cluster variable");
            assert_eq!(
                cluster_var["definition"],
                format!(r#"label_values(up{{job="{product}"}}, cluster)"#)
            );
            assert_eq!(cluster_var["current"]["value"], CLUSTER);
        }
    }

    #[test]
    fn dashboard_uids_are_short_stable_and_differ_between_clusters() {
        let mut seen = std::collections::BTreeSet::new();
        for product in Product::ALL {
            for namespace in ["obs", "a-very-long-namespace-name-for-uid-tests"] {
                let mut cluster = fixtures::minimal_cluster(product);
                cluster.metadata.namespace = Some(namespace.into());
                let view = ClusterView::new(&cluster);
                let (_, first) = dashboard_json_of(&dashboards(&view)[0]);
                let (_, again) = dashboard_json_of(&dashboards(&view)[0]);
                let uid = first["uid"].as_str().expect("uid").to_string();
                assert!(uid.len() <= MAX_UID_LEN, "{uid}");
                assert!(uid.starts_with(product.as_str()), "{uid}");
                assert_eq!(again["uid"], uid, "stable");
                assert!(seen.insert(uid), "uids differ between clusters");
            }
        }
    }

    #[test]
    fn dashboard_panels_have_unique_ids_and_fit_the_grid() {
        for cluster in clusters() {
            let (_, dashboard) = dashboard_json_of(&dashboards(&ClusterView::new(&cluster))[0]);
            let panels = dashboard["panels"].as_array().expect("panels");
            let mut ids = std::collections::BTreeSet::new();
            for panel in panels {
                let id = panel["id"].as_u64().expect("numeric id");
                assert!(ids.insert(id), "duplicate panel id {id}");
                let grid = &panel["gridPos"];
                let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
                assert!(x.zip(w).is_some_and(|(x, w)| x + w <= 24), "{panel}");
                if panel["type"] == "timeseries" {
                    assert!(!panel["targets"].as_array().expect("targets").is_empty());
                    assert!(panel["description"].as_str().is_some_and(|d| !d.is_empty()));
                }
            }
        }
    }

    #[test]
    fn dashboard_queries_parse_and_read_only_the_chosen_cluster_without_roles() {
        for cluster in clusters() {
            let (_, dashboard) = dashboard_json_of(&dashboards(&ClusterView::new(&cluster))[0]);
            let exprs = panel_exprs(&dashboard);
            assert!(exprs.len() > 10);
            for expr in exprs {
                assert!(expr.contains(r#"cluster="$cluster""#), "{expr}");
                let concrete = expr
                    .replace("$__rate_interval", "5m")
                    .replace("$cluster", CLUSTER);
                assert_parses_and_scoped(&concrete, CLUSTER);
            }
        }
    }

    #[test]
    fn dashboards_show_pools_the_gateway_and_what_only_the_product_measures() {
        let product_metric = [
            (Product::Mimir, "cortex_ingester_memory_series"),
            (Product::Loki, "loki_distributor_bytes_received_total"),
            (Product::Tempo, "tempo_distributor_spans_received_total"),
        ];
        for (product, metric) in product_metric {
            let cluster = fixtures::minimal_cluster(product);
            let (_, dashboard) = dashboard_json_of(&dashboards(&ClusterView::new(&cluster))[0]);
            let exprs = panel_exprs(&dashboard).join("\n");
            for needed in [
                metric,
                "nginx_connections_active",
                "nginx_http_requests_total",
                "histogram_quantile(0.99, sum by (pool, le)",
                &format!(r#"up{{cluster="$cluster", job="{product}"}}"#),
                r#"status_code=~"5..""#,
                r#"status_code=~"4..""#,
                &format!(r#"job="{product}-gateway""#),
            ] {
                assert!(exprs.contains(needed), "{product}: {needed}");
            }
        }
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

    #[test]
    fn prometheus_rule_and_config_map_carry_the_same_groups() {
        for cluster in clusters() {
            let view = ClusterView::new(&cluster);
            let rule = prometheus_rule(&view);
            let types = rule.types.clone().expect("types");
            assert_eq!(types.api_version, "monitoring.coreos.com/v1");
            assert_eq!(types.kind, "PrometheusRule");
            assert_eq!(rule.metadata.name.as_deref(), Some("metrics-alerts"));
            assert_eq!(rule.metadata.namespace.as_deref(), Some("obs"));
            assert!(rule.metadata.owner_references.is_some());
            assert_eq!(
                rule.metadata.labels.clone().expect("labels")[labels::COMPONENT],
                "alerts"
            );
            let spec = &rule.data["spec"];
            assert_eq!(spec, &alert_rules(&view));

            let cm = rules_config_map(&view);
            assert_eq!(cm.metadata.name.as_deref(), Some("metrics-alerts"));
            assert_eq!(cm.metadata.labels, rule.metadata.labels);
            let text = &cm.data.as_ref().expect("data")[RULES_FILE];
            let from_yaml: Value = serde_saphyr::from_str(text).expect("rules.yaml is YAML");
            assert_eq!(&from_yaml, spec);

            // Serialised as the API server receives it: kind and spec at the top level.
            let object = serde_json::to_value(&rule).expect("serializes");
            assert_eq!(object["kind"], "PrometheusRule");
            assert!(object["spec"]["groups"][0]["rules"].is_array());
        }
    }
}
