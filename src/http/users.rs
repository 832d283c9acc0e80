//! `/users`

use super::extract::{Body, Fields, FromFields, PageQuery, PathId, Users};
use super::openapi::{BodyProblems, EraseProblems, ListProblems, UserProblems};
use super::page::Paged;
use super::{ApiError, AppState};
use crate::domain::{Actor, List, Name, Timestamp, User, UserId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// `POST /users`' body.
#[derive(ToSchema)]
pub struct NewUser {
    /// Trimmed; 1 to 100 characters after trimming.
    name: Name,
}

impl FromFields for NewUser {
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        Some(Self { name: fields.name("name")? })
    }
}

/// `POST /users`: the user, and with `AUTH=token` the user's token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    #[serde(flatten)]
    user: User,
    /// `AUTH=token` only: a user token for the new user (`Authorization: Bearer`, and the
    /// Socket.IO `auth.token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    token: Option<String>,
    /// `AUTH=token` only: when `token` expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    token_expires_at: Option<Timestamp>,
}

/// Registers a user and announces it with `user.registered`. Open to anyone, also with
/// `AUTH=token` (self-registration), where the answer carries the user's token.
#[utoipa::path(operation_id = "registerUser", post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "The new user", body = Registered), BodyProblems))]
pub async fn register(
    State(app): State<AppState>,
    Body(NewUser { name }): Body<NewUser>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let (user, minted) = app.service.register_user(name).await?;
    let (token, token_expires_at) = minted.map(|m| (m.token, m.expires_at)).unzip();
    Ok((StatusCode::CREATED, Json(Registered { user, token, token_expires_at })))
}

/// Every user, oldest first, a page at a time.
#[utoipa::path(operation_id = "listUsers", security((), ("bearer" = [])), get, path = "/users", tag = "users", params(PageQuery<Users>),
    responses((status = 200, description = "Users, oldest first", body = Vec<User>, headers(("Link" = String, description = "When more items follow: `<URL>; rel=\"next\"`, the next page (same path, filters and limit, and an opaque `cursor`). The last page has none."))), ListProblems))]
pub async fn list(
    _: Actor,
    State(app): State<AppState>,
    PageQuery(page, _): PageQuery<Users>,
) -> Result<Paged<User>, ApiError> {
    Ok(Paged::new(app.service.users(page).await?, List::Users, page.limit))
}

/// Erases a user (with `AUTH=token`, only the user themself or a server): ends each of its
/// calls that has not ended, then deletes it, its history and its room memberships, and
/// announces `user.deleted`. Its tokens and connections are refused within a second on every
/// replica.
#[utoipa::path(operation_id = "eraseUser", security((), ("bearer" = [])), delete, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Erased"), EraseProblems))]
pub async fn erase(actor: Actor, State(app): State<AppState>, id: PathId) -> Result<StatusCode, ApiError> {
    let id = id.parse(UserId::parse, "user_not_found", "user")?;
    app.service.erase_user(actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One user.
#[utoipa::path(operation_id = "getUser", security((), ("bearer" = [])), get, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User), UserProblems))]
pub async fn get(_: Actor, State(app): State<AppState>, id: PathId) -> Result<Json<User>, ApiError> {
    let id = id.parse(UserId::parse, "user_not_found", "user")?;
    Ok(Json(app.service.user(id).await?))
}
