//! User and server tokens (`AUTH=token`): HS256 JWTs signed with `AUTH_SECRET`. A user
//! token's `sub` is a user id; a server token has `"role": "server"` and no `sub`.

use crate::domain::{Actor, Timestamp, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 5;

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// A token that does not verify: missing, malformed, wrongly signed, expired, or naming
/// no user. Deliberately without detail: the reason is not the client's business.
#[derive(Debug, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

/// A freshly minted token. Never printed by `Debug`.
pub struct Minted {
    pub token: String,
    pub expires_at: Timestamp,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Mints and verifies tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Makes jsonwebtoken's full pure-Rust backend the process's provider. jsonwebtoken 10 signs
/// and verifies through one process-wide provider, and livekit-api installs an HS256-only one
/// on its first token unless one is installed already: push credentials are ES256 (APNs,
/// VAPID) and RS256 (FCM). Idempotent; does nothing once a provider is installed.
pub fn install_jwt_crypto() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = LEEWAY_S;
        validation.validate_aud = false;
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// A token for `user`, valid for `ttl`.
    pub fn user(&self, user: UserId, ttl: Duration) -> Minted {
        self.mint(Some(user.to_string()), None, ttl)
    }

    /// A server token, valid for `ttl`.
    pub fn server(&self, ttl: Duration) -> Minted {
        self.mint(None, Some("server".to_owned()), ttl)
    }

    fn mint(&self, sub: Option<String>, role: Option<String>, ttl: Duration) -> Minted {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let exp = now + ttl;
        let claims = Claims { sub, exp: exp.as_secs(), iat: Some(now.as_secs()), role };
        // HS256 over a serializable struct cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        let expires_at = Timestamp::from_millis(i64::try_from(exp.as_secs() * 1000).unwrap_or(i64::MAX));
        Minted { token, expires_at }
    }

    /// Who the token speaks for (the user's existence is the caller's check).
    pub fn verify(&self, token: &str) -> Result<Actor, InvalidToken> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| InvalidToken)?.claims;
        match (claims.role.as_deref(), claims.sub.as_deref()) {
            (Some("server"), None) => Ok(Actor::Server),
            (None, Some(sub)) => UserId::parse(sub).map(Actor::User).ok_or(InvalidToken),
            _ => Err(InvalidToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-secret-of-at-least-thirty-two-bytes";

    #[test]
    fn minted_tokens_verify_as_their_actor() {
        let tokens = Tokens::new(SECRET);
        let user = UserId::new();
        assert_eq!(tokens.verify(&tokens.user(user, Duration::from_secs(60)).token).ok(), Some(Actor::User(user)));
        assert_eq!(tokens.verify(&tokens.server(Duration::from_secs(60)).token).ok(), Some(Actor::Server));
    }

    #[test]
    fn forged_expired_and_odd_tokens_are_refused() {
        let tokens = Tokens::new(SECRET);
        let other = Tokens::new(b"another-secret-of-at-least-32-bytes!");
        let user = UserId::new();
        assert!(tokens.verify(&other.user(user, Duration::from_secs(60)).token).is_err());
        assert!(tokens.verify("not.a.token").is_err());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let sign = |claims: &serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET))
                .expect("signs")
        };
        let odd = [
            serde_json::json!({ "sub": user.to_string(), "exp": now - 60 }),
            serde_json::json!({ "sub": user.to_string() }),
            serde_json::json!({ "sub": "not-a-uuid", "exp": now + 60 }),
            serde_json::json!({ "role": "server", "sub": user.to_string(), "exp": now + 60 }),
            serde_json::json!({ "role": "admin", "exp": now + 60 }),
        ];
        for claims in odd {
            assert!(tokens.verify(&sign(&claims)).is_err(), "{claims}");
        }
        let none = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &serde_json::json!({ "sub": user.to_string(), "exp": now + 60 }),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signs");
        assert!(tokens.verify(&none).is_err(), "only HS256");
    }
}
