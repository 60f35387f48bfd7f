//! Liveness and readiness.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::state::AppState;

#[derive(Object)]
pub struct HealthStatus {
    /// `ok`, or what is wrong.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum Health {
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
    /// Not ready: the database is unreachable.
    #[oai(status = 503)]
    Unavailable(Json<HealthStatus>),
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Operations")]
impl HealthApi {
    /// Liveness: the process answers.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealthz")]
    async fn healthz(&self) -> Health {
        Health::Ok(Json(HealthStatus { status: "ok".into() }))
    }

    /// Readiness: the database answers.
    #[oai(path = "/readyz", method = "get", operation_id = "getReadyz")]
    async fn readyz(&self, state: Data<&AppState>) -> Health {
        match state.db.ping().await {
            Ok(()) => Health::Ok(Json(HealthStatus { status: "ok".into() })),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Health::Unavailable(Json(HealthStatus { status: "database unreachable".into() }))
            }
        }
    }
}
