//! The OpenAPI 3.1 document of the REST API, generated from the handlers' own types and
//! annotations; served at `GET /openapi.json` and written to `docs/openapi.json` by
//! `switchboard openapi`.

use super::error::Problem;
use super::{calls, devices, livekit, ops, rooms, users};
use std::collections::BTreeMap;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{
    AllOfBuilder, ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "REST API of switchboard, the backend of voice and video calling apps. \
            Every error is an RFC 9457 problem document (application/problem+json) with a stable `code`. \
            Any request may also be refused with 503 `too_many_connections` (and `Retry-After`) when the \
            replica is at its connection cap. \
            Events are delivered over Socket.IO: see asyncapi.yaml."
    ),
    paths(
        users::register, users::list, users::get, users::erase,
        devices::register, devices::list, devices::delete, devices::config,
        calls::start, calls::list, calls::get, calls::accept, calls::decline, calls::end,
        rooms::create, rooms::list, rooms::get, rooms::join,
        livekit::token, livekit::webhook,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(Problem)),
    modifiers(&BearerTokens),
    tags(
        (name = "users", description = "Registered users"),
        (name = "calls", description = "One-to-one calls"),
        (name = "rooms", description = "Group rooms"),
        (name = "devices", description = "Devices woken by push (APNs, FCM, Web Push)"),
        (name = "livekit", description = "LiveKit access tokens and webhooks"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme: required on every endpoint but `POST /users`, the
/// webhook and the operations endpoints with `AUTH=token`; absent with `AUTH=open`.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "AUTH=token: a user token (issued by POST /users, or minted with AUTH_SECRET) or a server \
                 token. With AUTH=open (the default) no credentials are needed.",
            ))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as the JSON that is served and committed.
pub fn json() -> String {
    document().to_pretty_json().unwrap_or_default()
}

/// Problem responses: for each status, a `Problem` whose `code` is one of `codes`. A 503
/// carries `Retry-After`; with `outcome_unknown` the change may have been made.
/// Every operation may meet a stored record it cannot read (never an outage).
const CORRUPT: (u16, &[&str]) = (500, &["internal_error"]);

fn problems(table: &[(u16, &[&str])]) -> BTreeMap<String, RefOr<Response>> {
    table
        .iter()
        .chain([&CORRUPT])
        .map(|&(status, codes)| {
            let code = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.iter().copied()));
            let schema = AllOfBuilder::new()
                .item(Ref::from_schema_name("Problem"))
                .item(ObjectBuilder::new().property("code", code));
            let reason = axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
            let mut response = ResponseBuilder::new()
                .description(reason.unwrap_or("Error"))
                .content("application/problem+json", ContentBuilder::new().schema(Some(Schema::from(schema))).build());
            if status == 503 {
                let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
                let header = HeaderBuilder::new().schema(seconds).description(Some("Seconds to wait before retrying"));
                response = response.header("Retry-After", header.build());
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Declares a set of problem responses for `responses(...)` of `#[utoipa::path]`.
macro_rules! problem_set {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => [$($code:literal),+]),+ $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problems(&[$(($status, &[$($code),+])),+])
            }
        }
    )*};
}

problem_set! {
    /// A JSON body that is read and validated, then stored.
    BodyProblems {
        400 => ["invalid_json"], 408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    /// `POST /rooms`: a body, with `AUTH=token` a bearer token.
    NewRoomProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 408 => ["request_timeout"], 413 => ["payload_too_large"],
        415 => ["unsupported_media_type"], 422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    /// A list with `?limit=`.
    ListProblems { 401 => ["unauthorized"], 422 => ["validation_failed"], 503 => ["store_unavailable"] }
    /// `GET /calls`: with `AUTH=token`, `?userId=` may only name the token's user.
    CallListProblems { 401 => ["unauthorized"], 403 => ["forbidden"], 422 => ["validation_failed"], 503 => ["store_unavailable"] }
    UserProblems { 401 => ["unauthorized"], 404 => ["user_not_found"], 503 => ["store_unavailable"] }
    /// `DELETE /users/{id}`: with `AUTH=token`, only the user themself or a server token.
    EraseProblems { 401 => ["unauthorized"], 403 => ["forbidden"], 404 => ["user_not_found"], 503 => ["store_unavailable", "outcome_unknown"] }
    CallProblems { 401 => ["unauthorized"], 404 => ["call_not_found"], 503 => ["store_unavailable"] }
    /// `POST /users/{id}/devices`: with `AUTH=token`, only the user themself or a server token.
    RegisterDeviceProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["forbidden"], 404 => ["user_not_found"], 408 => ["request_timeout"],
        413 => ["payload_too_large"], 415 => ["unsupported_media_type"], 422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    DeviceListProblems { 401 => ["unauthorized"], 403 => ["forbidden"], 404 => ["user_not_found"], 503 => ["store_unavailable"] }
    DeviceProblems { 401 => ["unauthorized"], 403 => ["forbidden"], 404 => ["user_not_found", "device_not_found"], 503 => ["store_unavailable", "outcome_unknown"] }
    PushConfigProblems { 401 => ["unauthorized"] }
    RoomProblems { 401 => ["unauthorized"], 404 => ["room_not_found"], 503 => ["store_unavailable"] }
    StartCallProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["forbidden"], 408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        404 => ["user_not_found"], 422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    EndCallProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["not_a_participant", "forbidden"], 408 => ["request_timeout"], 413 => ["payload_too_large"],
        415 => ["unsupported_media_type"], 404 => ["call_not_found"], 422 => ["validation_failed"],
        503 => ["store_unavailable", "outcome_unknown"],
    }
    AcceptProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["not_the_callee", "forbidden"], 404 => ["call_not_found"], 409 => ["call_ended"],
        408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    DeclineProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["not_the_callee", "forbidden"], 404 => ["call_not_found"], 409 => ["call_already_accepted"],
        408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    WebhookProblems {
        400 => ["invalid_json"], 401 => ["invalid_signature"], 408 => ["request_timeout"], 413 => ["payload_too_large"],
        503 => ["store_unavailable", "outcome_unknown"],
    }
    JoinProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["forbidden"], 408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        404 => ["room_not_found", "user_not_found"], 422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
    TokenProblems {
        400 => ["invalid_json"], 401 => ["unauthorized"], 403 => ["not_a_participant", "forbidden"], 404 => ["room_not_found", "user_not_found"],
        409 => ["call_ended"], 408 => ["request_timeout"], 413 => ["payload_too_large"], 415 => ["unsupported_media_type"],
        422 => ["validation_failed"], 503 => ["store_unavailable", "outcome_unknown"],
    }
}
