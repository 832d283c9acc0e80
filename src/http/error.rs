//! Problem documents (RFC 9457): the one place where failures become status codes.

use crate::livekit::Rejected;
use crate::service;
use crate::store::StoreError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// An error response: `application/problem+json` with a stable `code`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u32>,
    /// A 401's `WWW-Authenticate` challenge.
    pub challenge: Option<&'static str>,
}

/// An RFC 9457 problem document.
#[derive(Serialize, ToSchema)]
pub(super) struct Problem<'a> {
    /// Always `about:blank`: `code` says what went wrong.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status's reason phrase.
    title: &'static str,
    status: u16,
    /// Stable and machine-readable.
    code: &'static str,
    /// For people; never contains a secret.
    detail: &'a str,
    /// With `validation_failed`: every invalid field.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    #[schema(required = false)]
    errors: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), errors: Vec::new(), retry_after: None, challenge: None }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        let detail = format!("invalid: {}", fields.join(", "));
        Self { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail) }
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", detail)
    }

    /// A path id that names nothing (not even a UUID): the resource's 404.
    pub fn not_found(code: &'static str, what: &str, raw_id: &str) -> Self {
        let shown: String = raw_id.chars().take(64).collect();
        Self::new(StatusCode::NOT_FOUND, code, format!("no {what} with id {shown}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            errors: &self.errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The contract's status/code table.
impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        let detail = e.to_string();
        match e {
            E::UserNotFound(_) => Self::new(StatusCode::NOT_FOUND, "user_not_found", detail),
            E::CallNotFound(_) => Self::new(StatusCode::NOT_FOUND, "call_not_found", detail),
            E::RoomNotFound(_) | E::NoSuchLiveKitRoom(_) => Self::new(StatusCode::NOT_FOUND, "room_not_found", detail),
            E::DeviceNotFound(_) => Self::new(StatusCode::NOT_FOUND, "device_not_found", detail),
            E::CallEnded(_) => Self::new(StatusCode::CONFLICT, "call_ended", detail),
            E::CallAlreadyAccepted(_) => Self::new(StatusCode::CONFLICT, "call_already_accepted", detail),
            E::NotAParticipant { .. } | E::NotInCall(_) => {
                Self::new(StatusCode::FORBIDDEN, "not_a_participant", detail)
            }
            E::NotTheCallee(_) => Self::new(StatusCode::FORBIDDEN, "not_the_callee", detail),
            E::Unauthorized => {
                Self { challenge: Some("Bearer"), ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail) }
            }
            E::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", detail),
            E::Required(field) => Self::invalid(vec![FieldError { field, message: "is required".into() }]),
            E::SelfCall => {
                Self::invalid(vec![FieldError { field: "toUserId", message: "must differ from fromUserId".into() }])
            }
            // Logged and counted where it was found, with its key; not an outage, so no
            // Retry-After.
            E::Store(StoreError::Corrupt(_)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "a stored record cannot be read")
            }
            E::Store(cause) => {
                // Logged here, once, at the boundary that turns it into a response.
                tracing::warn!(error = %cause, "store unavailable");
                let (code, detail) = match cause {
                    StoreError::Unreachable(_) | StoreError::Corrupt(_) => {
                        ("store_unavailable", "the store is unreachable; nothing was changed")
                    }
                    StoreError::Unconfirmed(_) => (
                        "outcome_unknown",
                        "the store did not confirm the change in time: it may have been made, and then \
                         announced; read the resource before retrying",
                    ),
                };
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail) }
            }
            E::Webhook(Rejected::Signature) => Self::new(StatusCode::UNAUTHORIZED, "invalid_signature", detail),
            E::Webhook(Rejected::Body(_)) => Self::new(StatusCode::BAD_REQUEST, "invalid_json", detail),
            E::Signing(cause) => {
                tracing::error!(error = %cause, "token signing failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "could not issue a token")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CallId, RoomName, UserId};

    #[test]
    fn the_error_table_matches_the_contract() {
        let cases: Vec<(service::Error, u16, &str)> = vec![
            (service::Error::UserNotFound(UserId::new()), 404, "user_not_found"),
            (service::Error::CallNotFound(CallId::new()), 404, "call_not_found"),
            (service::Error::NoSuchLiveKitRoom(RoomName::new()), 404, "room_not_found"),
            (service::Error::DeviceNotFound(crate::domain::DeviceId::new()), 404, "device_not_found"),
            (service::Error::CallEnded(CallId::new()), 409, "call_ended"),
            (service::Error::NotAParticipant { user: UserId::new(), room: RoomName::new() }, 403, "not_a_participant"),
            (service::Error::CallAlreadyAccepted(CallId::new()), 409, "call_already_accepted"),
            (service::Error::NotInCall(CallId::new()), 403, "not_a_participant"),
            (service::Error::NotTheCallee(CallId::new()), 403, "not_the_callee"),
            (service::Error::SelfCall, 422, "validation_failed"),
            (service::Error::Unauthorized, 401, "unauthorized"),
            (service::Error::Forbidden("userId"), 403, "forbidden"),
            (service::Error::Required("userId"), 422, "validation_failed"),
            (service::Error::Webhook(Rejected::Signature), 401, "invalid_signature"),
            (service::Error::Store(StoreError::Unreachable("down".into())), 503, "store_unavailable"),
            (service::Error::Store(StoreError::Unconfirmed("timeout".into())), 503, "outcome_unknown"),
            (
                service::Error::Store(StoreError::Corrupt(crate::store::Corrupt {
                    key: "k".into(),
                    reason: "r".into(),
                })),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        }
    }

    #[test]
    fn a_problem_has_the_rfc_fields() {
        let body = Problem {
            kind: "about:blank",
            title: "Not Found",
            status: 404,
            code: "call_not_found",
            detail: "no call",
            errors: &[],
        };
        let v = serde_json::to_value(&body).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404,
                               "code": "call_not_found", "detail": "no call"})
        );
    }
}
