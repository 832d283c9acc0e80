//! `/livekit/token`

use super::extract::{Fields, JsonObject};
use super::{ApiError, AppState};
use crate::domain::{RoomName, UserId};
use axum::Json;
use axum::extract::State;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResult {
    token: String,
    url: String,
    room_name: RoomName,
    identity: UserId,
}

pub async fn token(State(app): State<AppState>, body: JsonObject) -> Result<Json<TokenResult>, ApiError> {
    let body = body.required()?;
    let mut fields = Fields::new(&body);
    let room = fields.id("roomName", RoomName::parse);
    let user = fields.id("userId", UserId::parse);
    let (room, user) = fields.finish(|| Some((room?, user?)))?;
    let grant = app.service.token(room, user).await?;
    Ok(Json(TokenResult { token: grant.token, url: grant.url, room_name: room, identity: user }))
}
