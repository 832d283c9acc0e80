//! `/users`

use super::extract::{Fields, JsonObject, Limit};
use super::{ApiError, AppState};
use crate::domain::{User, UserId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

pub async fn register(State(app): State<AppState>, body: JsonObject) -> Result<(StatusCode, Json<User>), ApiError> {
    let body = body.required()?;
    let mut fields = Fields::new(&body);
    let name = fields.name("name");
    let name = fields.finish(|| name)?;
    Ok((StatusCode::CREATED, Json(app.service.register_user(name).await?)))
}

pub async fn list(State(app): State<AppState>, Limit(limit): Limit) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(app.service.users(limit).await?))
}

pub async fn get(State(app): State<AppState>, Path(raw): Path<String>) -> Result<Json<User>, ApiError> {
    let id = UserId::parse(&raw).ok_or_else(|| ApiError::not_found("user_not_found", "user", &raw))?;
    Ok(Json(app.service.user(id).await?))
}
