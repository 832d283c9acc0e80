//! LiveKit access tokens (who may join which LiveKit room, for how long) and LiveKit's
//! signed webhooks.

use crate::domain::{Name, RoomName, UserId};
use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
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

/// A verified LiveKit webhook, reduced to what switchboard acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// LiveKit's event id: the same on every redelivery.
    pub id: String,
    /// The event type, as a bounded metric label.
    pub kind: &'static str,
    pub action: Action,
}

/// What a webhook asks of switchboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Someone joined a LiveKit room.
    ParticipantJoined { room: RoomName, identity: UserId },
    /// A LiveKit room closed.
    RoomFinished { room: RoomName },
    /// Nothing (another kind, or a room or identity that is not switchboard's).
    None,
}

/// LiveKit's webhook types; anything else is labelled `other`.
pub const WEBHOOK_KINDS: [&str; 12] = [
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
    "egress_started",
    "egress_updated",
    "egress_ended",
    "ingress_started",
    "ingress_ended",
    "other",
];

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// No `Authorization`, or it is not a token signed with our key and secret whose
    /// `sha256` is the body's.
    #[error("the webhook signature does not verify")]
    Signature,
    /// Signed, but not a webhook event.
    #[error("the webhook body is not a LiveKit event: {0}")]
    Body(String),
}

/// Verifies webhooks on their exact raw body, with the API key and secret.
#[derive(Clone)]
pub struct WebhookVerifier {
    receiver: WebhookReceiver,
}

impl WebhookVerifier {
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        Self { receiver: WebhookReceiver::new(TokenVerifier::with_api_key(api_key, api_secret)) }
    }

    /// The notice in `body`, if `authorization` (LiveKit sends the bare token; a `Bearer `
    /// prefix is accepted too) signs exactly that body.
    pub fn verify(&self, body: &str, authorization: Option<&str>) -> Result<Notice, Rejected> {
        let token = authorization.map(|a| a.strip_prefix("Bearer ").unwrap_or(a).trim()).unwrap_or_default();
        if token.is_empty() {
            return Err(Rejected::Signature);
        }
        let event = self.receiver.receive(body, token).map_err(|e| match e {
            WebhookError::InvalidData(e) => Rejected::Body(e.to_string()),
            _ => Rejected::Signature,
        })?;
        let kind = WEBHOOK_KINDS.into_iter().find(|k| *k == event.event).unwrap_or("other");
        let room = event.room.as_ref().and_then(|r| RoomName::parse(&r.name));
        let identity = event.participant.as_ref().and_then(|p| UserId::parse(&p.identity));
        let action = match (kind, room, identity) {
            ("participant_joined", Some(room), Some(identity)) => Action::ParticipantJoined { room, identity },
            ("room_finished", Some(room), _) => Action::RoomFinished { room },
            _ => Action::None,
        };
        Ok(Notice { id: event.id, kind, action })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn signed(body: &str, secret: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body));
        AccessToken::with_api_key("key", secret).with_sha256(&hash).to_jwt().expect("signs")
    }

    #[test]
    fn webhooks_verify_on_the_exact_body() {
        let verifier = WebhookVerifier::new("key", "a-long-test-secret");
        let room = RoomName::new();
        let user = UserId::new();
        let body = format!(
            r#"{{"event":"participant_joined","id":"EV_1","room":{{"name":"{room}"}},"participant":{{"identity":"{user}"}}}}"#
        );
        let notice = verifier.verify(&body, Some(&signed(&body, "a-long-test-secret"))).expect("verifies");
        assert_eq!(notice.id, "EV_1");
        assert_eq!(notice.action, Action::ParticipantJoined { room, identity: user });
        let bearer = format!("Bearer {}", signed(&body, "a-long-test-secret"));
        assert!(verifier.verify(&body, Some(&bearer)).is_ok());
        let altered = body.replace("EV_1", "EV_2");
        assert!(matches!(
            verifier.verify(&altered, Some(&signed(&body, "a-long-test-secret"))),
            Err(Rejected::Signature)
        ));
        assert!(matches!(verifier.verify(&body, Some(&signed(&body, "another-secret"))), Err(Rejected::Signature)));
        assert!(matches!(verifier.verify(&body, None), Err(Rejected::Signature)));
        let finished = r#"{"event":"room_finished","id":"EV_3","room":{"name":"not-ours"}}"#;
        let notice = verifier.verify(finished, Some(&signed(finished, "a-long-test-secret"))).expect("verifies");
        assert_eq!((notice.kind, notice.action), ("room_finished", Action::None));
    }
}
