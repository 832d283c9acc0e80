//! LiveKit access tokens: who may join which LiveKit room, for how long.

use crate::domain::{Name, RoomName, UserId};
use livekit_api::access_token::{AccessToken, VideoGrants};
use std::fmt;
use std::time::Duration;

/// A token for one user and one LiveKit room, with the URL to use it at.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub token: String,
    pub url: String,
}

/// The token is a credential: never print it.
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Mints tokens with the configured key and secret.
#[derive(Clone)]
pub struct TokenIssuer {
    api_key: String,
    api_secret: String,
    url: String,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("could not sign a LiveKit token")]
pub struct SigningFailed;

impl TokenIssuer {
    pub fn new(api_key: String, api_secret: String, url: String, ttl: Duration) -> Self {
        Self { api_key, api_secret, url, ttl }
    }

    /// A token to join (publish, subscribe, send data in) one room, and nothing more.
    pub fn grant(&self, identity: UserId, name: &Name, room: RoomName) -> Result<Grant, SigningFailed> {
        let grants = VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        };
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(&identity.to_string())
            .with_name(name.as_str())
            .with_grants(grants)
            .with_ttl(self.ttl)
            .to_jwt()
            .map_err(|_| SigningFailed)?;
        crate::telemetry::metrics::token_issued();
        Ok(Grant { token, url: self.url.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    #[test]
    fn tokens_carry_identity_name_room_grants_and_ttl() {
        let issuer =
            TokenIssuer::new("key".into(), "a-long-test-secret".into(), "wss://lk".into(), Duration::from_secs(600));
        let (user, room) = (UserId::new(), RoomName::new());
        let grant = issuer.grant(user, &Name::parse("Ana").expect("valid"), room).expect("signs");
        assert_eq!(grant.url, "wss://lk");
        let claims = TokenVerifier::with_api_key("key", "a-long-test-secret").verify(&grant.token).expect("verifies");
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.name, "Ana");
        assert_eq!(claims.iss, "key");
        assert_eq!(claims.exp - claims.nbf, 600);
        assert!(claims.video.room_join && !claims.video.room_admin && !claims.video.room_create);
        assert_eq!(claims.video.room, room.to_string());
        assert_eq!(claims.video.can_publish_data, Some(true));
        assert!(TokenVerifier::with_api_key("key", "another-secret").verify(&grant.token).is_err());
    }
}
