//! Prometheus metrics, one registry per application (no global state, so
//! tests that run many servers in one process do not share counters).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub logins: IntCounterVec,
    pub refreshes: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub hash_queue: IntGauge,
    pub db_connections: IntGauge,
    pub db_idle_connections: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("latchkey".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by method, route and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by method and route")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["method", "route"],
        )?;
        let logins =
            IntCounterVec::new(Opts::new("logins_total", "Password checks by outcome"), &["outcome"])?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "refreshes_total",
                "Refresh-token uses by outcome (rotated, grace_replay, reuse_detected, refused)",
            ),
            &["outcome"],
        )?;
        let tokens_issued = IntCounterVec::new(
            Opts::new("tokens_issued_total", "Access tokens issued by grant"),
            &["grant"],
        )?;
        let hash_queue = IntGauge::new("password_hash_queue", "Password hashes running or waiting")?;
        let db_connections = IntGauge::new("db_pool_connections", "Open database connections")?;
        let db_idle_connections = IntGauge::new("db_pool_idle_connections", "Idle database connections")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(refreshes.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(hash_queue.clone()))?;
        registry.register(Box::new(db_connections.clone()))?;
        registry.register(Box::new(db_idle_connections.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            logins,
            refreshes,
            tokens_issued,
            hash_queue,
            db_connections,
            db_idle_connections,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    pub fn refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    pub fn issued(&self, grant: &str) {
        self.tokens_issued.with_label_values(&[grant]).inc();
    }
}

/// Low-cardinality labels: the route template a path matches (from the
/// OpenAPI document), or `other`; the method, or `other`. Asked once per
/// request: a path without parameters is one hash lookup, and only the few
/// templates with `{…}` segments are matched segment by segment, without
/// allocating.
#[derive(Clone, Debug, Default)]
pub struct RouteLabels {
    /// Templates without parameters, which match only themselves.
    exact: std::collections::HashSet<String>,
    /// Templates like `/admin/users/{id}`, with their segments.
    patterns: Vec<(String, Vec<String>)>,
}

impl RouteLabels {
    /// `templates` like `/admin/users/{id}`; `{…}` segments match anything.
    pub fn new<I: IntoIterator<Item = String>>(templates: I) -> Self {
        let mut labels = RouteLabels::default();
        for template in templates {
            if template.contains('{') {
                let segments = template.split('/').map(str::to_owned).collect();
                labels.patterns.push((template, segments));
            } else {
                labels.exact.insert(template);
            }
        }
        labels
    }

    pub fn route(&self, path: &str) -> &str {
        if let Some(template) = self.exact.get(path) {
            return template;
        }
        let matches = |template: &[String]| {
            let mut parts = path.split('/');
            template
                .iter()
                .all(|t| parts.next().is_some_and(|s| t == s || (t.starts_with('{') && !s.is_empty())))
                && parts.next().is_none()
        };
        self.patterns.iter().find(|(_, t)| matches(t)).map_or("other", |(t, _)| t.as_str())
    }

    pub fn method(method: &str) -> &'static str {
        match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_routes_and_methods_become_labels() {
        let labels = RouteLabels::new(["/admin/users/{id}".to_owned(), "/auth/login".to_owned()]);
        assert_eq!(labels.route("/admin/users/0193abcd"), "/admin/users/{id}");
        assert_eq!(labels.route("/auth/login"), "/auth/login");
        assert_eq!(labels.route("/random/garbage"), "other");
        assert_eq!(labels.route("/admin/users/"), "other");
        assert_eq!(labels.route("/admin/users"), "other");
        assert_eq!(labels.route("/admin/users/a/b"), "other");
        assert_eq!(labels.route("/auth/login/"), "other");
        assert_eq!(RouteLabels::method("FOO1"), "other");
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.login("success");
        m.http_requests.with_label_values(&["GET", "/healthz", "200"]).inc();
        let text = m.render();
        assert!(text.contains("latchkey_logins_total{outcome=\"success\"} 1"), "{text}");
        assert!(text.contains("latchkey_http_requests_total"));
    }
}
