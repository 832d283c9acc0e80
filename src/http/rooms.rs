//! `/rooms`

use super::extract::{Body, Fields, FromFields, OptionalBody, PageQuery, PathId, Rooms};
use super::openapi::{JoinProblems, ListProblems, NewRoomProblems, RoomProblems};
use super::page::Paged;
use super::{ApiError, AppState};
use crate::domain::{Actor, List, Name, Room, RoomId, RoomName, UserId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /rooms`' body.
#[derive(ToSchema)]
pub struct NewRoom {
    /// Trimmed; 1 to 100 characters after trimming.
    name: Name,
}

impl FromFields for NewRoom {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self { name: fields.name("name")? })
    }
}

/// `POST /rooms/{id}/join`'s body.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Joining {
    /// Who joins (with `AUTH=token`, defaults to the token's user).
    user_id: Option<UserId>,
}

impl FromFields for Joining {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self { user_id: fields.actor("userId")? })
    }
}

/// `POST /rooms/{id}/join`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult {
    room_id: RoomId,
    user_id: UserId,
    room_name: RoomName,
    /// A LiveKit access token for this user and room.
    token: String,
    /// The LiveKit server URL.
    url: String,
    room: Room,
}

/// Creates a room and announces it with `room.created`.
#[utoipa::path(operation_id = "createRoom", security((), ("bearer" = [])), post, path = "/rooms", tag = "rooms", request_body = NewRoom,
    responses((status = 201, description = "The new room", body = Room), NewRoomProblems))]
pub async fn create(
    _: Actor,
    State(app): State<AppState>,
    Body(NewRoom { name }): Body<NewRoom>,
) -> Result<(StatusCode, Json<Room>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.service.create_room(name).await?)))
}

/// Every room, oldest first, a page at a time.
#[utoipa::path(operation_id = "listRooms", security((), ("bearer" = [])), get, path = "/rooms", tag = "rooms", params(PageQuery<Rooms>),
    responses((status = 200, description = "Rooms, oldest first", body = Vec<Room>, headers(("Link" = String, description = "When more items follow: `<URL>; rel=\"next\"`, the next page (same path, filters and limit, and an opaque `cursor`). The last page has none."))), ListProblems))]
pub async fn list(
    _: Actor,
    State(app): State<AppState>,
    PageQuery(page, _): PageQuery<Rooms>,
) -> Result<Paged<Room>, ApiError> {
    Ok(Paged::new(app.service.rooms(page).await?, List::Rooms, page.limit))
}

/// One room.
#[utoipa::path(operation_id = "getRoom", security((), ("bearer" = [])), get, path = "/rooms/{id}", tag = "rooms", params(("id" = String, Path, description = "The room's id")),
    responses((status = 200, description = "The room", body = Room), RoomProblems))]
pub async fn get(_: Actor, State(app): State<AppState>, id: PathId) -> Result<Json<Room>, ApiError> {
    Ok(Json(app.service.room(room_id(&id)?).await?))
}

/// Adds a user to a room's participants (once) and announces it with `room.joined`, on
/// every join.
#[utoipa::path(operation_id = "joinRoom", security((), ("bearer" = [])), post, path = "/rooms/{id}/join", tag = "rooms", params(("id" = String, Path, description = "The room's id")),
    request_body(content = Option<Joining>, description = "Who joins (with AUTH=token, no body joins as the token's user)"),
    responses((status = 200, description = "The join, with a LiveKit token", body = JoinResult), JoinProblems))]
pub async fn join(
    actor: Actor,
    State(app): State<AppState>,
    id: PathId,
    OptionalBody(Joining { user_id }): OptionalBody<Joining>,
) -> Result<Json<JoinResult>, ApiError> {
    let room = room_id(&id)?;
    let joined = app.service.join_room(actor, room, user_id).await?;
    Ok(Json(JoinResult {
        room_id: joined.room.id,
        user_id: joined.user,
        room_name: joined.room.room_name,
        token: joined.grant.token,
        url: joined.grant.url,
        room: joined.room,
    }))
}

fn room_id(id: &PathId) -> Result<RoomId, ApiError> {
    id.parse(RoomId::parse, "room_not_found", "room")
}
