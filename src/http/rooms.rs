//! `/rooms`

use super::extract::{Fields, JsonObject, Limit};
use super::{ApiError, AppState};
use crate::domain::{Room, RoomId, RoomName, UserId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

/// `POST /rooms/:id/join`'s answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult {
    room_id: RoomId,
    user_id: UserId,
    room_name: RoomName,
    token: String,
    url: String,
    room: Room,
}

pub async fn create(State(app): State<AppState>, body: JsonObject) -> Result<(StatusCode, Json<Room>), ApiError> {
    let body = body.required()?;
    let mut fields = Fields::new(&body);
    let name = fields.name("name");
    let name = fields.finish(|| name)?;
    Ok((StatusCode::CREATED, Json(app.service.create_room(name).await?)))
}

pub async fn list(State(app): State<AppState>, Limit(limit): Limit) -> Result<Json<Vec<Room>>, ApiError> {
    Ok(Json(app.service.rooms(limit).await?))
}

pub async fn get(State(app): State<AppState>, Path(raw): Path<String>) -> Result<Json<Room>, ApiError> {
    Ok(Json(app.service.room(room_id(&raw)?).await?))
}

pub async fn join(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    body: JsonObject,
) -> Result<Json<JoinResult>, ApiError> {
    let room = room_id(&raw)?;
    let body = body.required()?;
    let mut fields = Fields::new(&body);
    let user = fields.id("userId", UserId::parse);
    let user = fields.finish(|| user)?;
    let joined = app.service.join_room(room, user).await?;
    Ok(Json(JoinResult {
        room_id: joined.room.id,
        user_id: joined.user,
        room_name: joined.room.room_name,
        token: joined.grant.token,
        url: joined.grant.url,
        room: joined.room,
    }))
}

fn room_id(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(raw).ok_or_else(|| ApiError::not_found("room_not_found", "room", raw))
}
