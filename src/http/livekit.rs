//! `/livekit/token`

use super::extract::{Body, Fields, FromFields};
use super::openapi::TokenProblems;
use super::{ApiError, AppState};
use crate::domain::{RoomName, UserId};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /livekit/token`'s body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The LiveKit room name of a call or a room.
    room_name: RoomName,
    /// Who asks: the caller or callee of the call, or a participant of the room.
    user_id: UserId,
}

impl FromFields for TokenRequest {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let room = fields.id("roomName", RoomName::parse);
        let user = fields.id("userId", UserId::parse);
        Some(Self { room_name: room?, user_id: user? })
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResult {
    /// A LiveKit access token (identity = the user id).
    token: String,
    /// The LiveKit server URL.
    url: String,
    room_name: RoomName,
    identity: UserId,
}

/// A LiveKit access token for a call's caller or callee, or a room's participant.
#[utoipa::path(operation_id = "livekitToken", post, path = "/livekit/token", tag = "livekit", request_body = TokenRequest,
    responses((status = 200, description = "The token", body = TokenResult), TokenProblems))]
pub async fn token(
    State(app): State<AppState>,
    Body(TokenRequest { room_name, user_id }): Body<TokenRequest>,
) -> Result<Json<TokenResult>, ApiError> {
    let grant = app.service.token(room_name, user_id).await?;
    Ok(Json(TokenResult { token: grant.token, url: grant.url, room_name, identity: user_id }))
}
