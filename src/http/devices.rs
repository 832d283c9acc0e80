//! `/users/{id}/devices` and `/push/config` (contract section 10.1).

use super::extract::{Fields, JsonObject, PathId};
use super::openapi::{DeviceListProblems, DeviceProblems, PushConfigProblems, RegisterDeviceProblems};
use super::{ApiError, AppState};
use crate::domain::{Actor, Address, DeviceId, DeviceView, Environment, Name, Platform, Registration, UserId};
use crate::push::{self, PushSettings};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /users/{id}/devices`' body; the fields of other platforms are ignored.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewDevice {
    /// One of the platforms `GET /push/config` lists.
    platform: Platform,
    /// `apns-voip`, `apns`: the device token, hexadecimal (16 to 200 characters); `fcm`: the
    /// registration token (1 to 4096 characters, no whitespace).
    token: Option<String>,
    /// `webpush`: the browser's `PushSubscription`.
    subscription: Option<Subscription>,
    /// APNs only: one of `GET /push/config`'s `apnsAppIds` (default the first).
    app_id: Option<String>,
    /// APNs only (default `production`).
    environment: Option<Environment>,
    /// Shown to the user (the rule of a user's name).
    name: Option<Name>,
}

/// A browser's push subscription.
#[derive(ToSchema)]
pub struct Subscription {
    /// `https` (or `http` on a loopback address), on a host `WEBPUSH_ALLOWED_HOSTS` allows.
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(ToSchema)]
pub struct SubscriptionKeys {
    /// base64url of the 65-byte uncompressed P-256 point.
    p256dh: String,
    /// base64url of 16 bytes.
    auth: String,
}

impl NewDevice {
    /// Reads a registration, reporting every invalid field.
    fn read(body: &serde_json::Map<String, Value>, settings: &PushSettings) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let platform = f.checked("platform", None, |raw| settings.platform(raw));
        let name = f.optional_name("name");
        let mut device = NewDevice {
            platform: Platform::Fcm,
            token: None,
            subscription: None,
            app_id: None,
            environment: None,
            name: None,
        };
        let read = match platform {
            Some(Platform::ApnsVoip | Platform::Apns) => {
                device.token = f.checked("token", None, push::apns_token);
                device.app_id = match f.value("appId") {
                    None => settings.apns_app_ids.first().cloned(),
                    Some(v) => f.checked("appId", Some(v), |raw| settings.app_id(raw)),
                };
                let environment = f.optional_choice("environment", Environment::parse, "production, sandbox");
                device.environment = environment.map(Option::unwrap_or_default);
                device.token.is_some() && device.app_id.is_some() && device.environment.is_some()
            }
            Some(Platform::Fcm) => {
                device.token = f.checked("token", None, push::fcm_token);
                device.token.is_some()
            }
            Some(Platform::Webpush) => {
                let subscription = f.value("subscription").unwrap_or(&Value::Null);
                let keys = &subscription["keys"];
                let endpoint =
                    f.checked("subscription.endpoint", Some(&subscription["endpoint"]), |raw| settings.endpoint(raw));
                let p256dh = f.checked("subscription.keys.p256dh", Some(&keys["p256dh"]), push::p256dh);
                let auth = f.checked("subscription.keys.auth", Some(&keys["auth"]), push::auth_secret);
                device.subscription = (|| {
                    Some(Subscription { endpoint: endpoint?, keys: SubscriptionKeys { p256dh: p256dh?, auth: auth? } })
                })();
                device.subscription.is_some()
            }
            None => false,
        };
        f.finish(|| {
            device.platform = platform?;
            device.name = name?;
            read.then_some(device)
        })
    }

    /// What it asks for: the address its platform names.
    fn registration(self) -> Registration {
        let address = match self.subscription {
            Some(Subscription { endpoint, keys: SubscriptionKeys { p256dh, auth } }) => {
                Address::Subscription { endpoint, p256dh, auth }
            }
            None => Address::Token(self.token.unwrap_or_default()),
        };
        Registration {
            platform: self.platform,
            address,
            app_id: self.app_id,
            environment: self.environment,
            name: self.name,
        }
    }
}

/// Registers a device of the user: 201 when it is new for this user, 200 when the user had
/// registered it before (same `id`, its settings replaced). A token registered to another
/// user moves to this one.
#[utoipa::path(operation_id = "registerDevice", security((), ("bearer" = [])), post, path = "/users/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "The user's id")), request_body = NewDevice,
    responses(
        (status = 201, description = "A device new for this user", body = DeviceView),
        (status = 200, description = "The user's device, registered again", body = DeviceView),
        RegisterDeviceProblems))]
pub async fn register(
    actor: Actor,
    State(app): State<AppState>,
    id: PathId,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let user = id.parse(UserId::parse, "user_not_found", "user")?;
    let body = body.ok_or_else(|| ApiError::invalid_json("a JSON object body is required"))?;
    let registration = NewDevice::read(&body, app.service.push())?.registration();
    let registered = app.service.register_device(actor, user, registration).await?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(registered.device)))
}

/// The user's devices, oldest first.
#[utoipa::path(operation_id = "listDevices", security((), ("bearer" = [])), get, path = "/users/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user's devices, oldest first", body = Vec<DeviceView>), DeviceListProblems))]
pub async fn list(actor: Actor, State(app): State<AppState>, id: PathId) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let user = id.parse(UserId::parse, "user_not_found", "user")?;
    Ok(Json(app.service.devices(actor, user).await?))
}

/// Deletes a device of the user (on sign-out): nothing is pushed to it any more.
#[utoipa::path(operation_id = "deleteDevice", security((), ("bearer" = [])), delete, path = "/users/{id}/devices/{deviceId}", tag = "devices",
    params(("id" = String, Path, description = "The user's id"), ("deviceId" = String, Path, description = "The device's id")),
    responses((status = 204, description = "Deleted"), DeviceProblems))]
pub async fn delete(
    actor: Actor,
    State(app): State<AppState>,
    axum::extract::Path((user, device)): axum::extract::Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = UserId::parse(&user).ok_or_else(|| ApiError::not_found("user_not_found", "user", &user))?;
    let device = DeviceId::parse(&device).ok_or_else(|| ApiError::not_found("device_not_found", "device", &device))?;
    app.service.delete_device(actor, user, device).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an app needs to register: the platforms this server pushes to, the VAPID key a
/// browser subscribes with, the APNs bundle ids.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushConfig {
    /// The enabled platforms, in the order `apns-voip`, `apns`, `fcm`, `webpush`.
    platforms: Vec<Platform>,
    /// base64url of the 65-byte VAPID public key (a browser's `applicationServerKey`);
    /// `null` when Web Push is off.
    vapid_public_key: Option<String>,
    /// The `appId`s an APNs device may name, the first the default.
    apns_app_ids: Vec<String>,
}

#[utoipa::path(operation_id = "pushConfig", security((), ("bearer" = [])), get, path = "/push/config", tag = "devices",
    responses((status = 200, description = "The push settings apps need", body = PushConfig), PushConfigProblems))]
pub async fn config(_: Actor, State(app): State<AppState>) -> Json<PushConfig> {
    let push = app.service.push();
    Json(PushConfig {
        platforms: push.platforms.clone(),
        vapid_public_key: push.vapid_public_key.clone(),
        apns_app_ids: push.apns_app_ids.clone(),
    })
}
