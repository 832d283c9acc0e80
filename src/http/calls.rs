//! `/calls`

use super::extract::{Body, CallQuery, Fields, FromFields, JsonObject, PathId};
use super::openapi::{CallProblems, EndCallProblems, ListProblems, StartCallProblems};
use super::{ApiError, AppState};
use crate::domain::{Call, CallId, UserId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /calls`' body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewCall {
    /// The caller.
    from_user_id: UserId,
    /// The callee; must differ from the caller.
    to_user_id: UserId,
}

impl FromFields for NewCall {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let from = fields.id("fromUserId", UserId::parse);
        let to = fields.id("toUserId", UserId::parse);
        Some(Self { from_user_id: from?, to_user_id: to? })
    }
}

/// `POST /calls`: the call plus the caller's LiveKit token and URL.
#[derive(Serialize, ToSchema)]
pub struct Started {
    #[serde(flatten)]
    call: Call,
    /// A LiveKit access token for the caller (identity `fromUserId`, room `roomName`).
    token: String,
    /// The LiveKit server URL.
    url: String,
}

/// Starts a call and announces it with `call.started`.
#[utoipa::path(operation_id = "startCall", post, path = "/calls", tag = "calls", request_body = NewCall,
    responses((status = 201, description = "The call, with the caller's LiveKit token", body = Started), StartCallProblems))]
pub async fn start(
    State(app): State<AppState>,
    Body(NewCall { from_user_id, to_user_id }): Body<NewCall>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let (call, grant) = app.service.start_call(from_user_id, to_user_id).await?;
    Ok((StatusCode::CREATED, Json(Started { call, token: grant.token, url: grant.url })))
}

/// Calls, newest first, optionally of one user or in one state.
#[utoipa::path(operation_id = "listCalls", get, path = "/calls", tag = "calls", params(CallQuery),
    responses((status = 200, description = "Calls, newest first", body = Vec<Call>), ListProblems))]
pub async fn list(State(app): State<AppState>, query: CallQuery) -> Result<Json<Vec<Call>>, ApiError> {
    Ok(Json(app.service.calls(query.filter, query.limit).await?))
}

/// One call.
#[utoipa::path(operation_id = "getCall", get, path = "/calls/{id}", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    responses((status = 200, description = "The call", body = Call), CallProblems))]
pub async fn get(State(app): State<AppState>, id: PathId) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.call(call_id(&id)?).await?))
}

/// Ends a call and announces it with `call.ended`, once: ending an ended call returns it
/// as it is and announces nothing. Takes no body, or any JSON object (unknown fields are
/// ignored).
#[utoipa::path(operation_id = "endCall", post, path = "/calls/{id}/end", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    request_body(content = Option<Object>, description = "Nothing, or any JSON object"),
    responses((status = 200, description = "The ended call", body = Call), EndCallProblems))]
pub async fn end(State(app): State<AppState>, id: PathId, _: JsonObject) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.end_call(call_id(&id)?).await?))
}

fn call_id(id: &PathId) -> Result<CallId, ApiError> {
    id.parse(CallId::parse, "call_not_found", "call")
}
