//! Liveness, readiness and metrics.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// 200 while the process runs (liveness).
#[utoipa::path(operation_id = "healthz", get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when the store answers and the relay is subscribed, and not draining (readiness).
#[utoipa::path(operation_id = "readyz", get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
    (status = 503, description = "Not ready: `unavailable` or `draining`", body = Object, example = json!({"status": "unavailable"})),
))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    if app.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "draining" })));
    }
    let ready = app.service.ready().await;
    crate::telemetry::metrics::ready(ready);
    if ready {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable" })))
    }
}

/// Prometheus text exposition.
#[utoipa::path(operation_id = "metrics", get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}

/// This document.
#[utoipa::path(operation_id = "openapi", get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::json())
}
