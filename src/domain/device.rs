//! Devices that can be woken by a push (contract section 10.1): what a user registers, the
//! rules a registration must follow, and what is shown of it (never its token).

use super::{DeviceId, Name, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a device is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Platform {
    /// The PushKit VoIP token of an iOS app: rings.
    #[serde(rename = "apns-voip")]
    ApnsVoip,
    /// The regular APNs token of the same app: the missed-call alert.
    #[serde(rename = "apns")]
    Apns,
    /// An FCM registration token (Android).
    #[serde(rename = "fcm")]
    Fcm,
    /// A browser's `PushSubscription`.
    #[serde(rename = "webpush")]
    Webpush,
}

impl Platform {
    /// In the contract's order, which `/push/config` keeps.
    pub const ALL: [Self; 4] = [Self::ApnsVoip, Self::Apns, Self::Fcm, Self::Webpush];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApnsVoip => "apns-voip",
            Self::Apns => "apns",
            Self::Fcm => "fcm",
            Self::Webpush => "webpush",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn is_apns(self) -> bool {
        matches!(self, Self::ApnsVoip | Self::Apns)
    }
}

/// Which APNs servers an iOS build talks to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Production,
    Sandbox,
}

impl Environment {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "production" => Some(Self::Production),
            "sandbox" => Some(Self::Sandbox),
            _ => None,
        }
    }
}

/// Where a push goes: a provider's token, or a browser's subscription. A secret: never
/// shown, logged or put in an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Address {
    Token(String),
    Subscription { endpoint: String, p256dh: String, auth: String },
}

impl Address {
    /// What identifies a registration on its platform: the token, or the endpoint (a
    /// browser's keys may change, its endpoint stays).
    pub fn identity(&self) -> &str {
        match self {
            Self::Token(token) => token,
            Self::Subscription { endpoint, .. } => endpoint,
        }
    }
}

/// What a registration asks for, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub platform: Platform,
    pub address: Address,
    /// APNs only: the bundle id pushes go to.
    pub app_id: Option<String>,
    /// APNs only.
    pub environment: Option<Environment>,
    pub name: Option<Name>,
}

/// A registered device, as stored (its address included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    pub platform: Platform,
    pub address: Address,
    pub app_id: Option<String>,
    pub environment: Option<Environment>,
    pub name: Option<Name>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_push_at: Option<Timestamp>,
}

impl Device {
    /// A new device of `user`.
    pub fn new(user: UserId, registration: Registration) -> Self {
        let now = Timestamp::now();
        let Registration { platform, address, app_id, environment, name } = registration;
        Self {
            id: DeviceId::new(),
            user_id: user,
            platform,
            address,
            app_id,
            environment,
            name,
            created_at: now,
            updated_at: now,
            last_push_at: None,
        }
    }

    /// The same device registered again by its user: its id and history stay, the rest is
    /// the new registration's.
    pub fn registered_again(&self, registration: Registration) -> Self {
        Self {
            id: self.id,
            created_at: self.created_at,
            last_push_at: self.last_push_at,
            ..Self::new(self.user_id, registration)
        }
    }

    /// What is shown of it.
    pub fn view(&self) -> DeviceView {
        let (token_suffix, endpoint_origin) = match &self.address {
            Address::Token(token) => {
                (Some(token.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect()), None)
            }
            Address::Subscription { endpoint, .. } => (None, origin(endpoint)),
        };
        DeviceView {
            id: self.id,
            user_id: self.user_id,
            platform: self.platform,
            app_id: self.app_id.clone(),
            environment: self.environment,
            name: self.name.clone(),
            token_suffix,
            endpoint_origin,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_push_at: self.last_push_at,
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    Some(format!("{scheme}://{host}"))
}

/// A device as the API shows it: no token, no endpoint, no keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Device)]
pub struct DeviceView {
    pub id: DeviceId,
    pub user_id: UserId,
    pub platform: Platform,
    /// APNs only: the bundle id pushes go to; `null` otherwise.
    pub app_id: Option<String>,
    /// APNs only; `null` otherwise.
    pub environment: Option<Environment>,
    pub name: Option<Name>,
    /// The token's last 4 characters; `null` for `webpush`.
    pub token_suffix: Option<String>,
    /// The scheme and host of a `webpush` endpoint; `null` otherwise.
    pub endpoint_origin: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When a provider last accepted a push for it; `null` until then.
    pub last_push_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(address: Address) -> Registration {
        Registration { platform: Platform::Fcm, address, app_id: None, environment: None, name: None }
    }

    #[test]
    fn the_view_shows_no_secret() {
        let token = Device::new(UserId::new(), registration(Address::Token("abcdef0123456789".into())));
        let view = serde_json::to_string(&token.view()).expect("serializes");
        assert!(!view.contains("abcdef0123456789") && view.contains(r#""tokenSuffix":"6789""#), "{view}");
        let endpoint = "https://push.example.com:8443/send/secret-part?x=1".to_owned();
        let subscription = Address::Subscription { endpoint: endpoint.clone(), p256dh: "k".into(), auth: "a".into() };
        let view = serde_json::to_string(&Device::new(UserId::new(), registration(subscription)).view()).expect("ok");
        assert!(!view.contains("secret-part") && view.contains(r#""endpointOrigin":"https://push.example.com:8443""#));
    }

    #[test]
    fn registering_again_keeps_the_id_and_creation() {
        let first = Device::new(UserId::new(), registration(Address::Token("t1".into())));
        let again = first.registered_again(registration(Address::Token("t1".into())));
        assert_eq!((again.id, again.created_at, again.user_id), (first.id, first.created_at, first.user_id));
    }
}
