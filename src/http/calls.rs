//! `/calls`

use super::extract::{CallQuery, Fields, JsonObject};
use super::{ApiError, AppState};
use crate::domain::{Call, CallId, UserId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

/// `POST /calls`: the call plus the caller's LiveKit token and URL.
#[derive(Serialize)]
pub struct Started {
    #[serde(flatten)]
    call: Call,
    token: String,
    url: String,
}

pub async fn start(State(app): State<AppState>, body: JsonObject) -> Result<(StatusCode, Json<Started>), ApiError> {
    let body = body.required()?;
    let mut fields = Fields::new(&body);
    let from = fields.id("fromUserId", UserId::parse);
    let to = fields.id("toUserId", UserId::parse);
    let (from, to) = fields.finish(|| Some((from?, to?)))?;
    let (call, grant) = app.service.start_call(from, to).await?;
    Ok((StatusCode::CREATED, Json(Started { call, token: grant.token, url: grant.url })))
}

pub async fn list(State(app): State<AppState>, query: CallQuery) -> Result<Json<Vec<Call>>, ApiError> {
    Ok(Json(app.service.calls(query.filter, query.limit).await?))
}

pub async fn get(State(app): State<AppState>, Path(raw): Path<String>) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.call(call_id(&raw)?).await?))
}

/// Takes no body, or any JSON object (unknown fields are ignored).
pub async fn end(State(app): State<AppState>, Path(raw): Path<String>, _: JsonObject) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.end_call(call_id(&raw)?).await?))
}

fn call_id(raw: &str) -> Result<CallId, ApiError> {
    CallId::parse(raw).ok_or_else(|| ApiError::not_found("call_not_found", "call", raw))
}
