//! The Grafana dashboards: panels grouped in rows, laid out on Grafana's grid, as the
//! JSON the Grafana sidecar loads.

use serde_json::{Value, json};

use super::cluster_label;
use super::queries::{Queries, Routes, signals};
use crate::product::Product;
use crate::render::labels;
use crate::render::{ClusterView, checksum};

/// Grafana refuses dashboard uids longer than this.
const MAX_UID_LEN: usize = 40;
const PANEL_HEIGHT: u32 = 8;
const PER_LINE: usize = 4;
const GRID_WIDTH: u32 = 24;
/// Every query uses the data source the dashboard's `datasource` variable picks.
const DATASOURCE: &str = "${datasource}";

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

/// The cluster's dashboards: each one's short name and Grafana JSON.
pub(super) fn render(cluster: &ClusterView) -> Vec<(&'static str, Value)> {
    let product = cluster.product();
    let queries = Queries::new(product, "$cluster", "$__rate_interval");
    let all = [Dashboard {
        name: "overview",
        rows: overview_rows(product, &queries),
    }];
    all.iter()
        .map(|dashboard| (dashboard.name, dashboard_json(cluster, dashboard)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The overview dashboard

/// The rows of a product's overview dashboard.
fn overview_rows(product: Product, q: &Queries) -> Vec<Row> {
    let own = product_panels(product);
    let mut rows: Vec<Row> = q
        .signals
        .groups
        .iter()
        .map(|group| requests_row(group, q))
        .collect();
    rows.push(row("Ingestion", panels(own.ingestion, q)));
    rows.push(gateway_row(q));
    rows.push(workers_row(q));
    rows.push(row(q.signals.title, panels(own.own, q)));
    rows
}

/// Rate, errors and latency of one group of the gateway's routes.
fn requests_row(group: &Routes, q: &Queries) -> Row {
    let routes = group.matchers;
    row(
        format!("{} requests", group.title),
        vec![
            Panel::new(
                format!("{} requests/s by pool", group.title),
                "reqps",
                format!(
                    "Requests on the {} routes the gateway serves, as every worker that handled \
                     them counts them ({}_count).",
                    group.name, q.signals.requests
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
    )
}

/// The nginx gateway, from its exporter.
fn gateway_row(q: &Queries) -> Row {
    row(
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
    )
}

/// The worker processes: whether they answer and what they use.
fn workers_row(q: &Queries) -> Row {
    row(
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
    )
}

// ---------------------------------------------------------------------------------------
// What only one product measures, as data

/// How a product panel reads one of the workers' series.
#[derive(Debug, Clone, Copy)]
enum Series {
    /// A counter's rate, summed by `by`.
    Rate {
        metric: &'static str,
        by: &'static str,
    },
    /// A gauge, summed by `by`.
    Gauge {
        metric: &'static str,
        by: &'static str,
    },
    /// A limit gauge, picked by `matchers`, where the limit is set (above zero).
    Limit {
        metric: &'static str,
        matchers: &'static str,
        by: &'static str,
    },
}

impl Series {
    fn expr(self, q: &Queries) -> String {
        match self {
            Series::Rate { metric, by } => q.rate(metric, "", by),
            Series::Gauge { metric, by } => q.gauge(metric, "", by),
            Series::Limit {
                metric,
                matchers,
                by,
            } => format!("{} > 0", q.gauge(metric, matchers, by)),
        }
    }
}

/// A panel of one product's own metrics.
struct ProductPanel {
    title: &'static str,
    unit: &'static str,
    description: &'static str,
    /// (series, legend) pairs.
    queries: &'static [(Series, &'static str)],
}

/// A product's own panels: what enters the cluster, as its distributors count it, and
/// the row only this product has.
struct ProductPanels {
    ingestion: &'static [ProductPanel],
    own: &'static [ProductPanel],
}

fn panels(specs: &[ProductPanel], q: &Queries) -> Vec<Panel> {
    specs
        .iter()
        .map(|spec| {
            spec.queries.iter().fold(
                Panel::new(spec.title, spec.unit, spec.description),
                |panel, (series, legend)| panel.query(series.expr(q), legend),
            )
        })
        .collect()
}

fn product_panels(product: Product) -> &'static ProductPanels {
    match product {
        Product::Mimir => &MIMIR,
        Product::Loki => &LOKI,
        Product::Tempo => &TEMPO,
    }
}

const MIMIR: ProductPanels = ProductPanels {
    ingestion: &[
        ProductPanel {
            title: "Samples received/s by pool",
            unit: "short",
            description: "Samples the distributors accepted \
                          (cortex_distributor_received_samples_total).",
            queries: &[(
                Series::Rate {
                    metric: "cortex_distributor_received_samples_total",
                    by: "pool",
                },
                "{{pool}}",
            )],
        },
        ProductPanel {
            title: "Samples discarded/s by reason",
            unit: "short",
            description: "Samples rejected by validation or limits \
                          (cortex_discarded_samples_total); the reason names the limit or \
                          the check.",
            queries: &[(
                Series::Rate {
                    metric: "cortex_discarded_samples_total",
                    by: "reason",
                },
                "{{reason}}",
            )],
        },
    ],
    own: &[ProductPanel {
        title: "In-memory series per ingester pod",
        unit: "short",
        description: "Series each ingester holds in memory (cortex_ingester_memory_series), \
                      with its instance limit where one is set. Only ingesters report them.",
        queries: &[
            (
                Series::Gauge {
                    metric: "cortex_ingester_memory_series",
                    by: "pool, pod",
                },
                "{{pod}}",
            ),
            (
                Series::Limit {
                    metric: "cortex_ingester_instance_limits",
                    matchers: r#", limit="max_series""#,
                    by: "pool, pod",
                },
                "{{pod}} limit",
            ),
        ],
    }],
};

const LOKI: ProductPanels = ProductPanels {
    ingestion: &[
        ProductPanel {
            title: "Bytes received/s by pool",
            unit: "Bps",
            description: "Log bytes the distributors received \
                          (loki_distributor_bytes_received_total).",
            queries: &[(
                Series::Rate {
                    metric: "loki_distributor_bytes_received_total",
                    by: "pool",
                },
                "{{pool}}",
            )],
        },
        ProductPanel {
            title: "Lines received/s by pool",
            unit: "short",
            description: "Log lines the distributors received \
                          (loki_distributor_lines_received_total).",
            queries: &[(
                Series::Rate {
                    metric: "loki_distributor_lines_received_total",
                    by: "pool",
                },
                "{{pool}}",
            )],
        },
    ],
    own: &[
        ProductPanel {
            title: "In-memory streams per pod",
            unit: "short",
            description: "Streams each ingester (the write path) holds in memory \
                          (loki_ingester_memory_streams).",
            queries: &[(
                Series::Gauge {
                    metric: "loki_ingester_memory_streams",
                    by: "pool, pod",
                },
                "{{pod}}",
            )],
        },
        ProductPanel {
            title: "Lines discarded/s by reason",
            unit: "short",
            description: "Log lines rejected by validation or limits \
                          (loki_discarded_samples_total).",
            queries: &[(
                Series::Rate {
                    metric: "loki_discarded_samples_total",
                    by: "reason",
                },
                "{{reason}}",
            )],
        },
    ],
};

const TEMPO: ProductPanels = ProductPanels {
    ingestion: &[
        ProductPanel {
            title: "Spans received/s by pool",
            unit: "short",
            description: "Spans the distributors received \
                          (tempo_distributor_spans_received_total).",
            queries: &[(
                Series::Rate {
                    metric: "tempo_distributor_spans_received_total",
                    by: "pool",
                },
                "{{pool}}",
            )],
        },
        ProductPanel {
            title: "Spans refused/s by pool",
            unit: "short",
            description: "Spans the distributors' receivers refused to their clients \
                          (tempo_receiver_refused_spans): rate limits or unhealthy ingesters.",
            queries: &[(
                Series::Rate {
                    metric: "tempo_receiver_refused_spans",
                    by: "pool",
                },
                "{{pool}}",
            )],
        },
    ],
    own: &[
        ProductPanel {
            title: "Live traces per ingester pod",
            unit: "short",
            description: "Traces each ingester holds open in memory \
                          (tempo_ingester_live_traces).",
            queries: &[(
                Series::Gauge {
                    metric: "tempo_ingester_live_traces",
                    by: "pool, pod",
                },
                "{{pod}}",
            )],
        },
        ProductPanel {
            title: "Spans discarded/s by reason",
            unit: "short",
            description: "Spans dropped by limits or validation (tempo_discarded_spans_total).",
            queries: &[(
                Series::Rate {
                    metric: "tempo_discarded_spans_total",
                    by: "reason",
                },
                "{{reason}}",
            )],
        },
    ],
};

// ---------------------------------------------------------------------------------------
// Grafana JSON

/// Stable Grafana uid of one of a cluster's dashboards: the product for the reader, a
/// hash of namespace, cluster and dashboard so that clusters never share one.
fn dashboard_uid(cluster: &ClusterView, dashboard: &str) -> String {
    let product = cluster.product();
    let hash = checksum([
        cluster.namespace.as_bytes(),
        cluster.name.as_bytes(),
        product.as_str().as_bytes(),
        dashboard.as_bytes(),
    ]);
    let mut uid = format!("{product}-{hash}");
    uid.truncate(MAX_UID_LEN);
    uid
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": DATASOURCE})
}

/// The Grafana JSON of one dashboard.
fn dashboard_json(cluster: &ClusterView, dashboard: &Dashboard) -> Value {
    let product = cluster.product();
    let title = signals(product).title;
    let cluster_value = cluster_label(cluster);
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
        "templating": {"list": variables(product, &cluster_value)},
        "annotations": {"list": []},
        "panels": layout(&dashboard.rows),
    })
}

/// The data source and cluster variables, the cluster preset to this one.
fn variables(product: Product, cluster_value: &str) -> Value {
    let cluster_query = format!(r#"label_values(up{{job="{product}"}}, cluster)"#);
    json!([
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
            "datasource": datasource(),
            "definition": cluster_query,
            "query": {"query": cluster_query, "refId": "cluster"},
            "current": {"text": cluster_value, "value": cluster_value, "selected": true},
            "refresh": 2,
            "sort": 1,
            "multi": false,
            "includeAll": false,
            "hide": 0,
        },
    ])
}

/// Every row and panel with its id and place on the grid: rows one under the other, up
/// to PER_LINE panels side by side sharing the width, more wrapping below.
fn layout(rows: &[Row]) -> Vec<Value> {
    let mut panels = Vec::new();
    let mut next_id = 1u32;
    let mut y = 0u32;
    for row in rows {
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
        let per_line = row.panels.len().clamp(1, PER_LINE);
        let width = GRID_WIDTH / per_line as u32;
        for (i, panel) in row.panels.iter().enumerate() {
            let (line, column) = ((i / per_line) as u32, (i % per_line) as u32);
            let grid = json!({
                "h": PANEL_HEIGHT,
                "w": width,
                "x": column * width,
                "y": y + line * PANEL_HEIGHT,
            });
            panels.push(panel_json(panel, next_id, grid));
            next_id += 1;
        }
        y += row.panels.len().div_ceil(per_line) as u32 * PANEL_HEIGHT;
    }
    panels
}

/// A time-series panel at `grid`, its queries lettered A, B, ...
fn panel_json(panel: &Panel, id: u32, grid: Value) -> Value {
    let targets: Vec<Value> = panel
        .queries
        .iter()
        .zip('A'..='Z')
        .map(|((expr, legend), ref_id)| {
            json!({
                "refId": ref_id.to_string(),
                "datasource": datasource(),
                "expr": expr,
                "legendFormat": legend,
            })
        })
        .collect();
    json!({
        "type": "timeseries",
        "id": id,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource(),
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{CLUSTER, assert_parses_and_scoped, clusters};
    use super::*;
    use crate::fixtures;

    /// The overview dashboard of a cluster.
    fn overview(cluster: &crate::api::GrafanaCluster) -> Value {
        let mut all = render(&ClusterView::new(cluster));
        assert_eq!(all.len(), 1);
        let (name, dashboard) = all.remove(0);
        assert_eq!(name, "overview");
        dashboard
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

    #[test]
    fn dashboard_uids_are_short_stable_and_differ_between_clusters() {
        let mut seen = std::collections::BTreeSet::new();
        for product in Product::ALL {
            for namespace in ["obs", "a-very-long-namespace-name-for-uid-tests"] {
                let mut cluster = fixtures::minimal_cluster(product);
                cluster.metadata.namespace = Some(namespace.into());
                let first = overview(&cluster);
                let again = overview(&cluster);
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
            let dashboard = overview(&cluster);
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
            let exprs = panel_exprs(&overview(&cluster));
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
            let exprs = panel_exprs(&overview(&cluster)).join("\n");
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
}
