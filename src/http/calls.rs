//! `/calls`

use super::extract::{Body, CallQuery, Fields, FromFields, OptionalBody, PathId};
use super::openapi::{
    AcceptProblems, CallListProblems, CallProblems, DeclineProblems, EndCallProblems, StartCallProblems,
};
use super::page::Paged;
use super::{ApiError, AppState};
use crate::domain::{Actor, Call, CallId, DeclineReason, List, UserId};
use crate::livekit::Grant;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /calls`' body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewCall {
    /// The caller. Required with `AUTH=open`; with `AUTH=token` it defaults to the token's
    /// user, and may only name them (a server token must name it).
    from_user_id: Option<UserId>,
    /// The callee; must differ from the caller.
    to_user_id: UserId,
}

impl FromFields for NewCall {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let from = fields.actor("fromUserId");
        let to = fields.id("toUserId", UserId::parse);
        Some(Self { from_user_id: from?, to_user_id: to? })
    }
}

/// A call plus a LiveKit token for the user who asked (the caller of `POST /calls`, the
/// callee of `/accept`) and the LiveKit URL.
#[derive(Serialize, ToSchema)]
pub struct CallWithToken {
    #[serde(flatten)]
    call: Call,
    /// A LiveKit access token for the user who asked (identity: their id, room `roomName`).
    token: String,
    /// The LiveKit server URL.
    url: String,
}

impl CallWithToken {
    fn new(call: Call, grant: Grant) -> Json<Self> {
        Json(Self { call, token: grant.token, url: grant.url })
    }
}

/// The body of `/accept`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Acceptance {
    /// The callee (with `AUTH=token`, defaults to the token's user).
    user_id: Option<UserId>,
}

impl FromFields for Acceptance {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self { user_id: fields.actor("userId")? })
    }
}

/// The body of `/decline`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Refusal {
    /// The callee (with `AUTH=token`, defaults to the token's user).
    user_id: Option<UserId>,
    /// `declined` (the default) or `busy`.
    #[schema(required = false)]
    reason: DeclineReason,
}

impl FromFields for Refusal {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let user = fields.actor("userId");
        let reason = fields.optional_choice("reason", DeclineReason::parse, "declined, busy");
        Some(Self { user_id: user?, reason: reason?.unwrap_or_default() })
    }
}

/// The optional body of `/end`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Ending {
    /// Who ends it: the caller or the callee; becomes `endedBy`. With `AUTH=token` it
    /// defaults to the token's user.
    #[schema(required = false)]
    user_id: Option<UserId>,
}

impl FromFields for Ending {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self { user_id: fields.optional_id("userId", UserId::parse)? })
    }
}

/// Starts a call and announces it with `call.started`.
#[utoipa::path(operation_id = "startCall", security((), ("bearer" = [])), post, path = "/calls", tag = "calls", request_body = NewCall,
    responses((status = 201, description = "The call, with the caller's LiveKit token", body = CallWithToken), StartCallProblems))]
pub async fn start(
    actor: Actor,
    State(app): State<AppState>,
    Body(NewCall { from_user_id, to_user_id }): Body<NewCall>,
) -> Result<(StatusCode, Json<CallWithToken>), ApiError> {
    let (call, grant) = app.service.start_call(actor, from_user_id, to_user_id).await?;
    Ok((StatusCode::CREATED, CallWithToken::new(call, grant)))
}

/// Calls, newest first, optionally of one user or in one state, a page at a time.
#[utoipa::path(operation_id = "listCalls", security((), ("bearer" = [])), get, path = "/calls", tag = "calls", params(CallQuery),
    responses((status = 200, description = "Calls, newest first", body = Vec<Call>, headers(("Link" = String, description = "When more items follow: `<URL>; rel=\"next\"`, the next page (same path, filters and limit, and an opaque `cursor`). The last page has none."))), CallListProblems))]
pub async fn list(actor: Actor, State(app): State<AppState>, query: CallQuery) -> Result<Paged<Call>, ApiError> {
    let CallQuery { page, filter } = query;
    Ok(Paged::new(app.service.calls(actor, filter, page).await?, List::Calls(filter), page.limit))
}

/// One call.
#[utoipa::path(operation_id = "getCall", security((), ("bearer" = [])), get, path = "/calls/{id}", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    responses((status = 200, description = "The call", body = Call), CallProblems))]
pub async fn get(actor: Actor, State(app): State<AppState>, id: PathId) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.call(actor, call_id(&id)?).await?))
}

/// The callee answers a ringing call, announced with `call.accepted`; accepting an
/// accepted call returns it as it is and announces nothing.
#[utoipa::path(operation_id = "acceptCall", security((), ("bearer" = [])), post, path = "/calls/{id}/accept", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    request_body(content = Option<Acceptance>, description = "Who answers: the callee (with AUTH=token, no body answers as the token's user)"),
    responses((status = 200, description = "The accepted call, with the callee's LiveKit token", body = CallWithToken), AcceptProblems))]
pub async fn accept(
    actor: Actor,
    State(app): State<AppState>,
    id: PathId,
    OptionalBody(Acceptance { user_id }): OptionalBody<Acceptance>,
) -> Result<Json<CallWithToken>, ApiError> {
    let (call, grant) = app.service.accept_call(actor, call_id(&id)?, user_id).await?;
    Ok(CallWithToken::new(call, grant))
}

/// The callee declines a ringing call: `call.declined`, then `call.ended`. Declining an
/// ended call returns it as it is and announces nothing.
#[utoipa::path(operation_id = "declineCall", security((), ("bearer" = [])), post, path = "/calls/{id}/decline", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    request_body(content = Option<Refusal>, description = "Who declines, and why (with AUTH=token, no body declines as the token's user)"),
    responses((status = 200, description = "The declined call", body = Call), DeclineProblems))]
pub async fn decline(
    actor: Actor,
    State(app): State<AppState>,
    id: PathId,
    OptionalBody(Refusal { user_id, reason }): OptionalBody<Refusal>,
) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.decline_call(actor, call_id(&id)?, user_id, reason).await?))
}

/// Ends a call and announces it with `call.ended`, once: ending an ended call returns it
/// as it is and announces nothing. Takes no body, `{}`, or `{ "userId" }` naming the caller
/// or callee who ends it (unknown fields are ignored).
#[utoipa::path(operation_id = "endCall", security((), ("bearer" = [])), post, path = "/calls/{id}/end", tag = "calls", params(("id" = String, Path, description = "The call's id")),
    request_body(content = Option<Ending>, description = "Nothing, `{}`, or who ends the call"),
    responses((status = 200, description = "The ended call", body = Call), EndCallProblems))]
pub async fn end(
    actor: Actor,
    State(app): State<AppState>,
    id: PathId,
    OptionalBody(Ending { user_id }): OptionalBody<Ending>,
) -> Result<Json<Call>, ApiError> {
    Ok(Json(app.service.end_call(actor, call_id(&id)?, user_id).await?))
}

fn call_id(id: &PathId) -> Result<CallId, ApiError> {
    id.parse(CallId::parse, "call_not_found", "call")
}
