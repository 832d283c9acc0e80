//! `/users`

use super::extract::{Body, Fields, FromFields, Limit, PathId};
use super::openapi::{BodyProblems, ListProblems, UserProblems};
use super::{ApiError, AppState};
use crate::domain::{Name, User, UserId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
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

/// Registers a user and announces it with `user.registered`.
#[utoipa::path(operation_id = "registerUser", post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "The new user", body = User), BodyProblems))]
pub async fn register(
    State(app): State<AppState>,
    Body(NewUser { name }): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    Ok((StatusCode::CREATED, Json(app.service.register_user(name).await?)))
}

/// Every user, oldest first.
#[utoipa::path(operation_id = "listUsers", get, path = "/users", tag = "users", params(Limit),
    responses((status = 200, description = "Users, oldest first", body = Vec<User>), ListProblems))]
pub async fn list(State(app): State<AppState>, Limit(limit): Limit) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(app.service.users(limit).await?))
}

/// One user.
#[utoipa::path(operation_id = "getUser", get, path = "/users/{id}", tag = "users", params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User), UserProblems))]
pub async fn get(State(app): State<AppState>, id: PathId) -> Result<Json<User>, ApiError> {
    let id = id.parse(UserId::parse, "user_not_found", "user")?;
    Ok(Json(app.service.user(id).await?))
}
