//! Counts every request the operator sends to the API server, by verb and resource, so
//! that its load on the control plane is measured rather than guessed (`make bench`
//! reads these counters).

use std::task::{Context, Poll};

use http::Request;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// Kubernetes' verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    /// The resource, with its subresource (`workerpools/status`); the path's first
    /// segment for anything else (`discovery`).
    pub resource: String,
}

/// The verb and resource of an API request, as the API server's audit log names them.
pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> ApiRequestLabels {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/...` or `/apis/<group>/<version>/...`; anything else is discovery.
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    // A namespaced path starts with `namespaces/<ns>/` unless it names the namespace itself.
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut r = vec![*resource];
            r.extend_from_slice(tail);
            r
        }
        other => other.to_vec(),
    };
    let (resource, collection) = match rest.as_slice() {
        [] => ("discovery".to_string(), false),
        [resource] => (resource.to_string(), true),
        [resource, _name] => (resource.to_string(), false),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), false),
    };
    let watching = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let verb = match *method {
        http::Method::GET if watching => "watch",
        http::Method::GET if collection => "list",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if collection => "deletecollection",
        http::Method::DELETE => "delete",
        _ => "other",
    };
    ApiRequestLabels { verb, resource }
}

/// A tower layer that counts each request into `counters` as it is sent.
#[derive(Clone)]
pub struct CountRequests {
    pub counters: Family<ApiRequestLabels, Counter>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            counters: self.counters.clone(),
        }
    }
}

/// A service whose requests are counted (see [`CountRequests`]).
pub struct Counted<S> {
    inner: S,
    counters: Family<ApiRequestLabels, Counter>,
}

impl<S, B> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        let labels = classify(request.method(), uri.path(), uri.query());
        self.counters.get_or_create(&labels).inc();
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn verb_and_resource(method: Method, uri: &str) -> (&'static str, String) {
        let uri: http::Uri = uri.parse().expect("uri");
        let labels = classify(&method, uri.path(), uri.query());
        (labels.verb, labels.resource)
    }

    #[test]
    fn requests_are_named_as_the_audit_log_names_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/a/configmaps/c",
                "get",
                "configmaps",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/configmaps?labelSelector=x",
                "list",
                "configmaps",
            ),
            (
                Method::GET,
                "/apis/apps/v1/statefulsets?watch=true&resourceVersion=1",
                "watch",
                "statefulsets",
            ),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/a/statefulsets?allowWatchBookmarks=true&watch=true",
                "watch",
                "statefulsets",
            ),
            (
                Method::PATCH,
                "/apis/lgtm.coordinated.dev/v1alpha1/namespaces/a/workerpools/p/status?fieldManager=x",
                "patch",
                "workerpools/status",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                "update",
                "leases",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/events",
                "create",
                "events",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/services/s",
                "delete",
                "services",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/a/services",
                "deletecollection",
                "services",
            ),
            (Method::GET, "/api/v1/namespaces/a", "get", "namespaces"),
            (
                Method::GET,
                "/apis/monitoring.coreos.com/v1",
                "get",
                "discovery",
            ),
            (Method::GET, "/version", "get", "discovery"),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(
                verb_and_resource(method, uri),
                (verb, resource.to_string()),
                "{uri}"
            );
        }
    }
}
