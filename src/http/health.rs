//! Liveness and readiness.

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::state::AppState;

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HealthStatus {
    /// `ok`, or what is wrong.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum Health {
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
    /// Not ready: the database is unreachable, or the server is shutting
    /// down (see `LATCHKEY_SHUTDOWN_DELAY`).
    #[oai(status = 503)]
    Unavailable(Json<HealthStatus>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(status = 200)]
    Ok(PlainText<String>, #[oai(header = "Content-Type")] String),
    /// `LATCHKEY_METRICS_TOKEN` is set and the request did not present it.
    #[oai(status = 401)]
    Unauthorized(Json<super::error::ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// `LATCHKEY_METRICS_LISTEN` is set: metrics are served only on that address.
    #[oai(status = 404)]
    NotFound(Json<super::error::ErrorBody>),
}

/// `GET /metrics`, on whichever listener serves it.
fn metrics_response(state: &AppState, req: &Request) -> MetricsResponse {
    if let Some(expected) = &state.settings.metrics_token {
        use secrecy::ExposeSecret;
        let presented = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::crypto::constant_time_eq(presented.as_bytes(), expected.expose_secret().as_bytes()) {
            return MetricsResponse::Unauthorized(
                Json(super::error::ErrorBody::new("unauthorized", "the metrics token is required")),
                super::error::bearer_challenge(None),
            );
        }
    }
    sample_gauges(state);
    MetricsResponse::Ok(PlainText(state.metrics.render()), "text/plain; version=0.0.4; charset=utf-8".into())
}

/// `GET /metrics` on the metrics listener (`LATCHKEY_METRICS_LISTEN`).
#[poem::handler]
pub async fn metrics_only(state: Data<&AppState>, req: &Request) -> MetricsResponse {
    metrics_response(&state, req)
}

/// Refresh the gauges that are read rather than counted.
fn sample_gauges(state: &AppState) {
    let m = &state.metrics;
    m.hash_queue.set(i64::try_from(state.hasher.queue_depth()).unwrap_or(i64::MAX));
    let (size, idle) = match state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = state.db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = state.db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    };
    m.db_connections.set(i64::from(size));
    m.db_idle_connections.set(i64::try_from(idle).unwrap_or(0));
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Operations")]
impl HealthApi {
    /// Liveness: the process answers.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealthz")]
    async fn healthz(&self) -> Health {
        Health::Ok(Json(HealthStatus { status: "ok".into() }))
    }

    /// Prometheus metrics: requests and latencies per route, logins by
    /// outcome, refreshes, reuse detections, tokens issued, the password
    /// hashing queue and the database pool. With `LATCHKEY_METRICS_LISTEN`
    /// set, served only on that address (404 here).
    #[oai(path = "/metrics", method = "get", operation_id = "getMetrics")]
    async fn metrics(&self, state: Data<&AppState>, req: &Request) -> MetricsResponse {
        if state.settings.metrics_listen.is_some() {
            // As for any unknown path: this listener may be public.
            return MetricsResponse::NotFound(Json(super::error::ErrorBody::new(
                "not_found",
                "no such endpoint",
            )));
        }
        metrics_response(&state, req)
    }

    /// Readiness: the database answers and the server is not shutting down.
    #[oai(path = "/readyz", method = "get", operation_id = "getReadyz")]
    async fn readyz(&self, state: Data<&AppState>) -> Health {
        if state.shutting_down.load(std::sync::atomic::Ordering::Acquire) {
            return Health::Unavailable(Json(HealthStatus { status: "shutting down".into() }));
        }
        match state.db.ping().await {
            Ok(()) => Health::Ok(Json(HealthStatus { status: "ok".into() })),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Health::Unavailable(Json(HealthStatus { status: "database unreachable".into() }))
            }
        }
    }
}
