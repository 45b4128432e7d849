//! What the dashboard and alert tests share: the fixtures' clusters and the check that
//! a PromQL expression parses and reads one cluster's series only, with no role label.

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

use crate::api::GrafanaCluster;
use crate::fixtures;
use crate::product::Product;

/// The `cluster` label of the fixtures' cluster (`metrics` in `obs`).
pub(super) const CLUSTER: &str = "obs/metrics";

/// One minimal cluster of each product.
pub(super) fn clusters() -> Vec<GrafanaCluster> {
    Product::ALL
        .iter()
        .map(|p| fixtures::minimal_cluster(*p))
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
pub(super) fn assert_parses_and_scoped(expr: &str, cluster: &str) {
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
