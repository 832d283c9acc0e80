//! Request parsing at the edge: bodies, fields and query strings become typed values or
//! problem documents, before any use case runs.

use super::AppState;
use super::error::{ApiError, FieldError};
use crate::domain::{Actor, CallFilter, CallStatus, List, Name, NameError, PageRequest, Position, UserId};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde_json::{Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, RefOr, Required, Schema, Type};
use utoipa::{IntoParams, PartialSchema};

/// A JSON object body, or `None` when no body was sent.
pub struct JsonObject(pub Option<Map<String, Value>>);

/// A path id as sent: `None` when it is not valid UTF-8 (percent-decoded), which names
/// nothing either, so it is the resource's 404 like any id that is not a UUID.
pub struct PathId(Option<String>);

impl PathId {
    /// The id, or the resource's 404 problem.
    pub fn parse<T>(&self, parse: fn(&str) -> Option<T>, code: &'static str, what: &str) -> Result<T, ApiError> {
        let raw = self.0.as_deref();
        raw.and_then(parse).ok_or_else(|| ApiError::not_found(code, what, raw.unwrap_or("(invalid UTF-8)")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Path::<String>::from_request_parts(parts, state).await.ok().map(|Path(id)| id)))
    }
}

/// A request body type: read from a JSON object field by field, so that every invalid
/// field is reported at once. The same type is the body's schema in the API document.
pub trait FromFields: Sized {
    fn read(fields: &mut Fields<'_>) -> Option<Self>;
}

/// A required JSON body, parsed into `T` (400, 413, 415 or 422 otherwise).
pub struct Body<T>(pub T);

impl<T: FromFields> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonObject(body) = JsonObject::from_request(req, state).await?;
        let body = body.ok_or_else(|| ApiError::invalid_json("a JSON object body is required"))?;
        read_fields(&body, state).map(Self)
    }
}

/// The identity a request acts for: anyone with `AUTH=open`; with `AUTH=token`, the
/// bearer token's user or server (401 `unauthorized` otherwise). Every endpoint that needs
/// authentication takes it first, so that a request without a valid token learns nothing
/// else.
impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !state.service.requires_tokens() {
            return Ok(Actor::Anyone);
        }
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let (scheme, token) = header.split_once(' ').unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(crate::service::Error::Unauthorized.into());
        }
        Ok(state.service.authenticate(token.trim()).await?)
    }
}

/// An optional JSON body, parsed into `T`: no body reads as `{}`.
pub struct OptionalBody<T>(pub T);

impl<T: FromFields> FromRequest<AppState> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let JsonObject(body) = JsonObject::from_request(req, state).await?;
        read_fields(&body.unwrap_or_default(), state).map(Self)
    }
}

fn read_fields<T: FromFields>(body: &Map<String, Value>, state: &AppState) -> Result<T, ApiError> {
    let mut fields = Fields::new(body);
    fields.actor_defaults = state.service.requires_tokens();
    let value = T::read(&mut fields);
    fields.finish(|| value)
}

/// Reads a whole body of at most `limit` bytes within the body deadline (413 or 408).
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the body exceeds {limit} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
        if caused_by_timeout(&e) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the body did not arrive in time")
        } else {
            too_large()
        }
    })
}

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_type);
        let bytes = read_body(req, state.body_limit).await?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent as application/json",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(Some(map))),
            Ok(_) => Err(ApiError::invalid_json("the body must be a JSON object")),
            Err(e) => Err(ApiError::invalid_json(format!("the body is not valid JSON: {e}"))),
        }
    }
}

/// Whether reading a body failed because its deadline passed (see `app::body_deadline`).
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// `application/json`, with any parameters (`; charset=utf-8`).
fn is_json_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Reads the fields of a body, collecting every problem before answering 422.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
    /// `AUTH=token`: a field naming the actor may be left out (it defaults to the token's
    /// user); with `AUTH=open` it is required.
    actor_defaults: bool,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self { body, errors: Vec::new(), actor_defaults: false }
    }

    /// A field naming the user who acts (`fromUserId`, `userId`): required with
    /// `AUTH=open`, optional with `AUTH=token`; `Some(None)` when left out.
    pub fn actor(&mut self, field: &'static str) -> Option<Option<UserId>> {
        if self.actor_defaults {
            self.optional_id(field, UserId::parse)
        } else {
            self.id(field, UserId::parse).map(Some)
        }
    }

    fn fail(&mut self, field: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError { field, message: message.into() });
    }

    fn string(&mut self, field: &'static str) -> Option<&'a str> {
        match self.body.get(field) {
            None | Some(Value::Null) => self.fail(field, "is required"),
            Some(Value::String(s)) => return Some(s),
            Some(_) => self.fail(field, "must be a string"),
        }
        None
    }

    /// A display name: trimmed, 1 to 100 characters.
    pub fn name(&mut self, field: &'static str) -> Option<Name> {
        let raw = self.string(field)?;
        Name::parse(raw).map_err(|e: NameError| self.fail(field, e.to_string())).ok()
    }

    /// A UUID, parsed into the id type the field names.
    pub fn id<T>(&mut self, field: &'static str, parse: fn(&str) -> Option<T>) -> Option<T> {
        let raw = self.string(field)?;
        let id = parse(raw);
        if id.is_none() {
            self.fail(field, "must be a UUID");
        }
        id
    }

    /// An optional UUID: `Some(None)` when absent or null, `None` when invalid.
    pub fn optional_id<T>(&mut self, field: &'static str, parse: fn(&str) -> Option<T>) -> Option<Option<T>> {
        match self.body.get(field) {
            None | Some(Value::Null) => Some(None),
            Some(_) => self.id(field, parse).map(Some),
        }
    }

    /// An optional string naming one of a few choices: `Some(None)` when absent or null,
    /// `None` when invalid.
    pub fn optional_choice<T>(
        &mut self,
        field: &'static str,
        parse: fn(&str) -> Option<T>,
        choices: &str,
    ) -> Option<Option<T>> {
        match self.body.get(field) {
            None | Some(Value::Null) => Some(None),
            Some(_) => {
                let value = parse(self.string(field)?);
                if value.is_none() {
                    self.fail(field, format!("must be one of {choices}"));
                }
                value.map(Some)
            }
        }
    }

    /// A field's raw value (for a field holding an object).
    pub fn value(&self, field: &str) -> Option<&'a Value> {
        self.body.get(field).filter(|v| !v.is_null())
    }

    /// A string found at `field` (`value`, or the field itself when `None`), checked by
    /// `check`: its message says what is wrong.
    pub fn checked<T>(
        &mut self,
        field: &'static str,
        value: Option<&Value>,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value.or_else(|| self.value(field)) {
            None | Some(Value::Null) => self.fail(field, "is required"),
            Some(Value::String(s)) => return check(s).map_err(|message| self.fail(field, message)).ok(),
            Some(_) => self.fail(field, "must be a string"),
        }
        None
    }

    /// An optional display name: `Some(None)` when absent or null, `None` when invalid.
    pub fn optional_name(&mut self, field: &'static str) -> Option<Option<Name>> {
        match self.value(field) {
            None => Some(None),
            Some(_) => self.name(field).map(Some),
        }
    }

    /// The parsed request, or 422 listing every invalid field.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        match (self.errors.is_empty(), build()) {
            (true, Some(value)) => Ok(value),
            _ => Err(ApiError::invalid(self.errors)),
        }
    }
}

/// The query string as key/value pairs; malformed encodings are a 422.
fn query_pairs(parts: &Parts) -> Result<Vec<(String, String)>, ApiError> {
    let raw = parts.uri.query().unwrap_or_default();
    serde_urlencoded::from_str(raw).map_err(|_| {
        ApiError::invalid(vec![FieldError { field: "query", message: "is not a valid query string".into() }])
    })
}

fn param<'p>(pairs: &'p [(String, String)], key: &str) -> Option<&'p str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `?limit=`: a decimal integer from 1 to 1000, 100 when absent.
fn limit(pairs: &[(String, String)], errors: &mut Vec<FieldError>) -> usize {
    const DEFAULT: usize = 100;
    let Some(raw) = param(pairs, "limit") else {
        return DEFAULT;
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) && raw.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            errors.push(FieldError { field: "limit", message: "must be an integer from 1 to 1000".into() });
            DEFAULT
        }
    }
}

/// `?cursor=`: where the page starts, as the list's previous page said (its `Link`).
fn cursor(pairs: &[(String, String)], list: List, errors: &mut Vec<FieldError>) -> Option<Position> {
    let raw = param(pairs, "cursor")?;
    let position = list.position(raw);
    if position.is_none() {
        errors.push(FieldError { field: "cursor", message: "is not a cursor of this list".into() });
    }
    position
}

fn page_params() -> [Parameter; 2] {
    let limit = ParameterBuilder::new()
        .name("limit")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some("How many items at most: an integer from 1 to 1000 (default 100)."))
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(1000))))
        .build();
    let cursor = ParameterBuilder::new()
        .name("cursor")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "Opaque: where the page starts, copied from the previous page's `Link: <…>; rel=\"next\"`. \
             A cursor this list did not make is 422 (`field`: `cursor`).",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    [limit, cursor]
}

/// The page a list request asks for: `?limit=` and `?cursor=`, of the list `L` names.
pub struct PageQuery<L>(pub PageRequest, pub std::marker::PhantomData<L>);

/// A list without filters, named at the type level so that one extractor serves each.
pub trait Unfiltered {
    const LIST: List;
}

pub struct Users;
impl Unfiltered for Users {
    const LIST: List = List::Users;
}

pub struct Rooms;
impl Unfiltered for Rooms {
    const LIST: List = List::Rooms;
}

impl<L> IntoParams for PageQuery<L> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        page_params().into()
    }
}

impl<S: Send + Sync, L: Unfiltered> FromRequestParts<S> for PageQuery<L> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = query_pairs(parts)?;
        let mut errors = Vec::new();
        let limit = limit(&pairs, &mut errors);
        let after = cursor(&pairs, L::LIST, &mut errors);
        if errors.is_empty() {
            Ok(Self(PageRequest { after, limit }, std::marker::PhantomData))
        } else {
            Err(ApiError::invalid(errors))
        }
    }
}

/// `GET /calls`' query: `userId`, `status`, `limit` and `cursor`.
pub struct CallQuery {
    pub page: PageRequest,
    pub filter: CallFilter,
}

impl IntoParams for CallQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name, description, schema: RefOr<Schema>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let mut params = vec![
            query("userId", "Only calls this user made or received.", UserId::schema()),
            query("status", "Only calls in this state.", CallStatus::schema()),
        ];
        params.extend(page_params());
        params
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = query_pairs(parts)?;
        let mut errors = Vec::new();
        let limit = limit(&pairs, &mut errors);
        let mut filter = CallFilter::default();
        if let Some(raw) = param(&pairs, "userId") {
            filter.user = UserId::parse(raw);
            if filter.user.is_none() {
                errors.push(FieldError { field: "userId", message: "must be a UUID".into() });
            }
        }
        if let Some(raw) = param(&pairs, "status") {
            filter.status = CallStatus::parse(raw);
            if filter.status.is_none() {
                errors.push(FieldError { field: "status", message: "must be initiated, accepted or ended".into() });
            }
        }
        let after = cursor(&pairs, List::Calls(filter), &mut errors);
        if errors.is_empty() {
            Ok(Self { page: PageRequest { after, limit }, filter })
        } else {
            Err(ApiError::invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_content_types_may_carry_parameters() {
        assert!(is_json_type("application/json"));
        assert!(is_json_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_type("text/plain"));
        assert!(!is_json_type("application/jsonx"));
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let body = json!({"fromUserId": 7, "name": "   "});
        let map = body.as_object().expect("object");
        let mut f = Fields::new(map);
        let from = f.id("fromUserId", crate::domain::UserId::parse);
        let to = f.id("toUserId", crate::domain::UserId::parse);
        let name = f.name("name");
        let err = f.finish(|| Some((from?, to?, name?))).expect_err("invalid");
        let fields: Vec<_> = err.errors.iter().map(|e| (e.field, e.message.as_str())).collect();
        assert_eq!(
            fields,
            vec![("fromUserId", "must be a string"), ("toUserId", "is required"), ("name", "must not be empty")]
        );
    }

    #[test]
    fn limits_are_decimal_integers_in_range() {
        let pairs = |v: &str| vec![("limit".to_owned(), v.to_owned())];
        for (raw, ok) in
            [("1", true), ("1000", true), ("0", false), ("1001", false), ("+5", false), ("2.0", false), ("", false)]
        {
            let mut errors = Vec::new();
            limit(&pairs(raw), &mut errors);
            assert_eq!(errors.is_empty(), ok, "{raw}");
        }
    }
}
