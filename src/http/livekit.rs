//! `/livekit/token` and `/livekit/webhook`

use super::extract::{Body, Fields, FromFields, read_body};
use super::openapi::{TokenProblems, WebhookProblems};
use super::{ApiError, AppState};
use crate::domain::{Actor, RoomName, UserId};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use serde::Serialize;
use utoipa::ToSchema;

/// Largest webhook body: LiveKit's events with room and participant details fit easily.
const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// `POST /livekit/token`'s body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The LiveKit room name of a call or a room.
    room_name: RoomName,
    /// Who asks: the caller or callee of the call, or a participant of the room (with
    /// `AUTH=token`, defaults to the token's user).
    user_id: Option<UserId>,
}

impl FromFields for TokenRequest {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let room = fields.id("roomName", RoomName::parse);
        let user = fields.actor("userId");
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
#[utoipa::path(operation_id = "livekitToken", security((), ("bearer" = [])), post, path = "/livekit/token", tag = "livekit", request_body = TokenRequest,
    responses((status = 200, description = "The token", body = TokenResult), TokenProblems))]
pub async fn token(
    actor: Actor,
    State(app): State<AppState>,
    Body(TokenRequest { room_name, user_id }): Body<TokenRequest>,
) -> Result<Json<TokenResult>, ApiError> {
    let (grant, identity) = app.service.token(actor, room_name, user_id).await?;
    Ok(Json(TokenResult { token: grant.token, url: grant.url, room_name, identity }))
}

/// What a verified webhook did.
#[derive(Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// `applied`, `ignored` (nothing of switchboard's, or nothing to do) or `duplicate`
    /// (a redelivery of an event already applied).
    outcome: &'static str,
}

/// Receives LiveKit's webhooks (point LiveKit's `webhook.urls` here). The `Authorization`
/// header is LiveKit's signed token, whose `sha256` claim must be the exact body's hash.
/// Every verified event is acknowledged, so that LiveKit does not retry it.
#[utoipa::path(operation_id = "livekitWebhook", post, path = "/livekit/webhook", tag = "livekit",
    request_body(content = Object, content_type = "application/webhook+json", description = "LiveKit's WebhookEvent, signed"),
    params(("Authorization" = String, Header, description = "LiveKit's signed token for this body")),
    responses((status = 200, description = "Verified and acknowledged", body = WebhookReceipt), WebhookProblems))]
pub async fn webhook(State(app): State<AppState>, req: Request) -> Result<Json<WebhookReceipt>, ApiError> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = read_body(req, WEBHOOK_BODY_LIMIT).await?;
    let outcome = app.service.livekit_webhook(&body, authorization.as_deref()).await?;
    Ok(Json(WebhookReceipt { outcome: outcome.as_str() }))
}
