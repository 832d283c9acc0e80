//! Waking devices (contract section 10): the push settings (10.6), checked whole at start,
//! and the rules a device registration follows (10.1).

use crate::config::{InvalidSetting, is_url, tls_roots};
use crate::domain::Platform;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use jsonwebtoken::EncodingKey;
use std::path::{Path, PathBuf};

/// Section 10.6, as flags and environment variables.
#[derive(Args, Clone, Debug, Default)]
pub struct PushConfig {
    /// APNs signing key (`.p8`, PKCS#8 PEM, P-256); unset: `apns-voip` and `apns` disabled.
    #[arg(long, env = "APNS_KEY_FILE")]
    pub apns_key_file: Option<PathBuf>,
    /// APNs key id (10 characters; the provider token's `kid`).
    #[arg(long, env = "APNS_KEY_ID")]
    pub apns_key_id: Option<String>,
    /// Apple team id (10 characters; the provider token's `iss`).
    #[arg(long, env = "APNS_TEAM_ID")]
    pub apns_team_id: Option<String>,
    /// Comma-separated bundle ids a device's `appId` may name, the first the default.
    #[arg(long, env = "APNS_TOPIC", value_delimiter = ',')]
    pub apns_topic: Vec<String>,
    /// APNs for `environment: production`; `http://` speaks HTTP/2 cleartext.
    #[arg(long, env = "APNS_URL", default_value = "https://api.push.apple.com")]
    pub apns_url: String,
    /// APNs for `environment: sandbox`.
    #[arg(long, env = "APNS_SANDBOX_URL", default_value = "https://api.sandbox.push.apple.com")]
    pub apns_sandbox_url: String,
    /// Google service-account JSON; unset: `fcm` disabled.
    #[arg(long, env = "FCM_SERVICE_ACCOUNT_FILE")]
    pub fcm_service_account_file: Option<PathBuf>,
    /// Firebase project (default: the service account's `project_id`).
    #[arg(long, env = "FCM_PROJECT_ID")]
    pub fcm_project_id: Option<String>,
    /// Base URL of `messages:send`.
    #[arg(long, env = "FCM_URL", default_value = "https://fcm.googleapis.com")]
    pub fcm_url: String,
    /// OAuth2 token endpoint (default: the service account's `token_uri`).
    #[arg(long, env = "FCM_TOKEN_URL")]
    pub fcm_token_url: Option<String>,
    /// VAPID signing key (PKCS#8 PEM, P-256); unset: `webpush` disabled.
    #[arg(long, env = "VAPID_PRIVATE_KEY_FILE")]
    pub vapid_private_key_file: Option<PathBuf>,
    /// `mailto:` or `https:` contact of the push sender.
    #[arg(long, env = "VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
    /// Hosts a Web Push endpoint may name (`*.` matches subdomains, `*` any host).
    #[arg(
        long,
        env = "WEBPUSH_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "fcm.googleapis.com,updates.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com"
    )]
    pub webpush_allowed_hosts: Vec<String>,
    /// PEM certificates trusted, besides the system's, by every push connection.
    #[arg(long, env = "PUSH_CA_FILE")]
    pub push_ca_file: Option<PathBuf>,
    /// Devices per user (1 to 100); a registration beyond evicts the least recently updated.
    #[arg(long, env = "PUSH_MAX_DEVICES", default_value_t = 10)]
    pub push_max_devices: usize,
    /// Attempts per push and device (1 to 20).
    #[arg(long, env = "PUSH_MAX_ATTEMPTS", default_value_t = 5)]
    pub push_max_attempts: u32,
    /// Seconds per push or token HTTP request.
    #[arg(long, env = "PUSH_REQUEST_TIMEOUT", default_value_t = 5)]
    pub push_request_timeout: u64,
}

/// What the running service needs of the settings: which platforms are on, and what a
/// registration may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushSettings {
    /// In the contract's order.
    pub platforms: Vec<Platform>,
    /// The bundle ids a device's `appId` may name, the first the default.
    pub apns_app_ids: Vec<String>,
    /// The VAPID public key (base64url, uncompressed point) browsers subscribe with.
    pub vapid_public_key: Option<String>,
    pub allowed_hosts: Vec<String>,
    pub max_devices: usize,
}

impl PushConfig {
    /// The settings, every file read and every value checked; the first problem names its
    /// setting.
    pub fn settings(&self) -> Result<PushSettings, InvalidSetting> {
        let mut settings = PushSettings {
            allowed_hosts: self.webpush_allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            max_devices: self.push_max_devices,
            ..PushSettings::default()
        };
        check(
            (1..=100).contains(&self.push_max_devices),
            "PUSH_MAX_DEVICES (--push-max-devices)",
            "must be from 1 to 100",
        )?;
        check(
            (1..=20).contains(&self.push_max_attempts),
            "PUSH_MAX_ATTEMPTS (--push-max-attempts)",
            "must be from 1 to 20",
        )?;
        check(self.push_request_timeout >= 1, "PUSH_REQUEST_TIMEOUT (--push-request-timeout)", "must be at least 1")?;
        if let Some(path) = &self.push_ca_file {
            tls_roots(Some(path)).map_err(|reason| invalid("PUSH_CA_FILE (--push-ca-file)", &reason))?;
        }
        if let Some(file) = &self.apns_key_file {
            settings.apns_app_ids = self.apns(file)?;
            settings.platforms.extend([Platform::ApnsVoip, Platform::Apns]);
        }
        if let Some(file) = &self.fcm_service_account_file {
            self.fcm(file)?;
            settings.platforms.push(Platform::Fcm);
        }
        if let Some(file) = &self.vapid_private_key_file {
            settings.vapid_public_key = Some(self.vapid(file)?);
            settings.platforms.push(Platform::Webpush);
        }
        Ok(settings)
    }

    /// The APNs settings; returns the topics.
    fn apns(&self, file: &Path) -> Result<Vec<String>, InvalidSetting> {
        const KEY: &str = "APNS_KEY_FILE (--apns-key-file)";
        EncodingKey::from_ec_pem(&read(file, KEY)?).map_err(|_| invalid(KEY, "is not a PKCS#8 PEM P-256 key"))?;
        for (value, setting) in
            [(&self.apns_key_id, "APNS_KEY_ID (--apns-key-id)"), (&self.apns_team_id, "APNS_TEAM_ID (--apns-team-id)")]
        {
            let value = value.as_deref().ok_or_else(|| invalid(setting, "is required with APNS_KEY_FILE"))?;
            check(
                value.len() == 10 && value.bytes().all(|b| b.is_ascii_alphanumeric()),
                setting,
                "must be 10 letters or digits",
            )?;
        }
        let topics: Vec<String> =
            self.apns_topic.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        check(!topics.is_empty(), "APNS_TOPIC (--apns-topic)", "is required with APNS_KEY_FILE")?;
        for (url, setting) in [
            (&self.apns_url, "APNS_URL (--apns-url)"),
            (&self.apns_sandbox_url, "APNS_SANDBOX_URL (--apns-sandbox-url)"),
        ] {
            check(is_url(url, &["https", "http"]), setting, "must be an https:// (or http://) URL")?;
        }
        Ok(topics)
    }

    fn fcm(&self, file: &Path) -> Result<(), InvalidSetting> {
        const FILE: &str = "FCM_SERVICE_ACCOUNT_FILE (--fcm-service-account-file)";
        let account: serde_json::Value =
            serde_json::from_slice(&read(file, FILE)?).map_err(|_| invalid(FILE, "is not a JSON object"))?;
        let field = |name: &str| account[name].as_str().filter(|s| !s.is_empty());
        field("client_email").ok_or_else(|| invalid(FILE, "lacks client_email"))?;
        let key = field("private_key").ok_or_else(|| invalid(FILE, "lacks private_key"))?;
        EncodingKey::from_rsa_pem(key.as_bytes())
            .map_err(|_| invalid(FILE, "has a private_key that is not an RSA key"))?;
        check(
            self.fcm_project_id.is_some() || field("project_id").is_some(),
            FILE,
            "lacks project_id (or set FCM_PROJECT_ID)",
        )?;
        let token_url = self.fcm_token_url.as_deref().or(field("token_uri"));
        let token_url = token_url.ok_or_else(|| {
            invalid("FCM_TOKEN_URL (--fcm-token-url)", "is required: the service account has no token_uri")
        })?;
        check(
            is_url(token_url, &["https", "http"]),
            "FCM_TOKEN_URL (--fcm-token-url)",
            "must be an https:// (or http://) URL",
        )?;
        check(is_url(&self.fcm_url, &["https", "http"]), "FCM_URL (--fcm-url)", "must be an https:// (or http://) URL")
    }

    /// The VAPID settings; returns the public key.
    fn vapid(&self, file: &Path) -> Result<String, InvalidSetting> {
        const KEY: &str = "VAPID_PRIVATE_KEY_FILE (--vapid-private-key-file)";
        use p256::pkcs8::DecodePrivateKey;
        let pem = String::from_utf8(read(file, KEY)?).map_err(|_| invalid(KEY, "is not a PEM file"))?;
        let secret =
            p256::SecretKey::from_pkcs8_pem(&pem).map_err(|_| invalid(KEY, "is not a PKCS#8 PEM P-256 key"))?;
        let subject = self
            .vapid_subject
            .as_deref()
            .ok_or_else(|| invalid("VAPID_SUBJECT (--vapid-subject)", "is required with VAPID_PRIVATE_KEY_FILE"))?;
        let contact = subject.strip_prefix("mailto:").is_some_and(|a| a.contains('@')) || is_url(subject, &["https"]);
        check(contact, "VAPID_SUBJECT (--vapid-subject)", "must be a mailto: address or an https:// URL")?;
        let point = secret.public_key().to_sec1_bytes();
        Ok(URL_SAFE_NO_PAD.encode(point))
    }
}

fn read(file: &Path, setting: &'static str) -> Result<Vec<u8>, InvalidSetting> {
    std::fs::read(file).map_err(|e| invalid(setting, &format!("cannot be read: {e}")))
}

fn invalid(setting: &'static str, reason: &str) -> InvalidSetting {
    InvalidSetting { setting, reason: reason.to_owned() }
}

fn check(ok: bool, setting: &'static str, reason: &str) -> Result<(), InvalidSetting> {
    if ok { Ok(()) } else { Err(invalid(setting, reason)) }
}

/// Whether `host` is one `WEBPUSH_ALLOWED_HOSTS` allows.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    allowed.iter().any(|pattern| match pattern.strip_prefix("*.") {
        _ if pattern == "*" => true,
        Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
        None => host == pattern,
    })
}

impl PushSettings {
    /// A platform the registration may name: one that is configured.
    pub fn platform(&self, raw: &str) -> Result<Platform, String> {
        let enabled: Vec<&str> = self.platforms.iter().map(|p| p.as_str()).collect();
        Platform::parse(raw).filter(|p| self.platforms.contains(p)).ok_or_else(|| match enabled.as_slice() {
            [] => "no push platform is enabled on this server".to_owned(),
            some => format!("must be one of the enabled platforms: {}", some.join(", ")),
        })
    }

    /// An APNs device's `appId`: one of `APNS_TOPIC`.
    pub fn app_id(&self, raw: &str) -> Result<String, String> {
        self.apns_app_ids
            .iter()
            .find(|id| *id == raw)
            .cloned()
            .ok_or_else(|| format!("must be one of {}", self.apns_app_ids.join(", ")))
    }

    /// A Web Push endpoint: `https` (or `http` on a loopback address), at most 2048
    /// characters, on an allowed host.
    pub fn endpoint(&self, raw: &str) -> Result<String, String> {
        let uri = axum::http::Uri::try_from(raw).map_err(|_| "must be a URL".to_owned())?;
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let loopback = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let scheme_ok = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => loopback,
            _ => false,
        };
        if raw.len() > 2048 || !scheme_ok || host.is_empty() {
            return Err("must be an https URL (http only on a loopback address) of at most 2048 characters".into());
        }
        if !host_allowed(&self.allowed_hosts, &host) {
            return Err("names a push service this server does not allow (WEBPUSH_ALLOWED_HOSTS)".into());
        }
        Ok(raw.to_owned())
    }
}

/// An APNs token: hexadecimal, even length, 16 to 200 characters; stored lower-case.
pub fn apns_token(raw: &str) -> Result<String, String> {
    let ok =
        (16..=200).contains(&raw.len()) && raw.len().is_multiple_of(2) && raw.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| raw.to_ascii_lowercase())
        .ok_or_else(|| "must be hexadecimal, of even length, 16 to 200 characters".into())
}

/// An FCM registration token: 1 to 4096 characters, none of them whitespace.
pub fn fcm_token(raw: &str) -> Result<String, String> {
    let ok = (1..=4096).contains(&raw.chars().count()) && !raw.contains(char::is_whitespace);
    ok.then(|| raw.to_owned()).ok_or_else(|| "must be 1 to 4096 characters without whitespace".into())
}

/// A subscription's `p256dh`: base64url (padding optional) of an uncompressed P-256 point.
pub fn p256dh(raw: &str) -> Result<String, String> {
    let bytes = base64url(raw).filter(|b| b.len() == 65 && b[0] == 4);
    let point = bytes.and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok());
    point.map(|_| raw.to_owned()).ok_or_else(|| "must be base64url of a 65-byte uncompressed P-256 point".into())
}

/// A subscription's `auth`: base64url of exactly 16 bytes.
pub fn auth_secret(raw: &str) -> Result<String, String> {
    let ok = base64url(raw).is_some_and(|b| b.len() == 16);
    ok.then(|| raw.to_owned()).ok_or_else(|| "must be base64url of exactly 16 bytes".into())
}

fn base64url(raw: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_match_exactly_or_by_subdomain() {
        let allowed: Vec<String> = ["fcm.googleapis.com", "*.notify.windows.com"].map(String::from).into();
        assert!(host_allowed(&allowed, "fcm.googleapis.com"));
        assert!(host_allowed(&allowed, "wns2-db5p.notify.windows.com"));
        assert!(!host_allowed(&allowed, "notify.windows.com"));
        assert!(!host_allowed(&allowed, "evilnotify.windows.com"));
        assert!(!host_allowed(&allowed, "fcm.googleapis.com.evil.example"));
        assert!(host_allowed(&["*".to_owned()], "anything.example"));
    }

    #[test]
    fn registration_values_follow_the_contract() {
        assert_eq!(apns_token("ABCDEF0123456789"), Ok("abcdef0123456789".into()));
        assert!(apns_token("abcdef012345678").is_err() && apns_token("abcdef01234567zz").is_err());
        assert!(fcm_token("a b").is_err() && fcm_token("").is_err() && fcm_token("tok:en").is_ok());
        assert!(auth_secret("AAAAAAAAAAAAAAAAAAAAAA").is_ok() && auth_secret("AAAAAAAAAAAAAAAAAAAAAA==").is_ok());
        assert!(auth_secret("AAAAAAAAAAAAAAAAAAAA").is_err());
        let point = p256::SecretKey::from_slice(&[7; 32]).expect("a key").public_key().to_sec1_bytes();
        assert!(p256dh(&URL_SAFE_NO_PAD.encode(&point)).is_ok());
        let mut off_curve = point.to_vec();
        off_curve[64] ^= 1;
        assert!(p256dh(&URL_SAFE_NO_PAD.encode(&off_curve)).is_err());
        let settings = PushSettings { allowed_hosts: vec!["push.example.com".into()], ..PushSettings::default() };
        assert!(settings.endpoint("https://push.example.com/s/1").is_ok());
        assert!(settings.endpoint("http://push.example.com/s/1").is_err());
        assert!(settings.endpoint("https://other.example.com/s/1").is_err());
        let local = PushSettings { allowed_hosts: vec!["127.0.0.1".into()], ..PushSettings::default() };
        assert!(local.endpoint("http://127.0.0.1:8080/s/1").is_ok());
    }

    #[test]
    fn no_provider_means_no_platform() {
        let config =
            PushConfig { push_max_devices: 10, push_max_attempts: 5, push_request_timeout: 5, ..PushConfig::default() };
        assert_eq!(config.settings().map(|s| s.platforms), Ok(Vec::new()));
        let zero = PushConfig { push_max_devices: 0, ..config };
        assert_eq!(zero.settings().map_err(|e| e.setting), Err("PUSH_MAX_DEVICES (--push-max-devices)"));
    }
}
