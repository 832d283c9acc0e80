//! `/users`

use super::extract::{Body, Fields, FromFields, Limit, PathId};
use super::openapi::{BodyProblems, ListProblems, UserProblems};
use super::{ApiError, AppState};
use crate::domain::{Actor, Name, Timestamp, User, UserId};
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

/// Every user, oldest first.
#[utoipa::path(operation_id = "listUsers", security((), ("bearer" = [])), get, path = "/users", tag = "users", params(Limit),
    responses((status = 200, description = "Users, oldest first", body = Vec<User>), ListProblems))]
pub async fn list(_: Actor, State(app): State<AppState>, Limit(limit): Limit) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(app.service.users(limit).await?))
}

/// One user.
#[utoipa::path(operation_id = "getUser", security((), ("bearer" = [])), get, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User), UserProblems))]
pub async fn get(_: Actor, State(app): State<AppState>, id: PathId) -> Result<Json<User>, ApiError> {
    let id = id.parse(UserId::parse, "user_not_found", "user")?;
    Ok(Json(app.service.user(id).await?))
}
