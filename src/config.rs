//! Configuration: every setting is a flag and an environment variable (flags win).

use clap::{Parser, ValueEnum};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// switchboard: REST + Socket.IO backend for voice and video calls, with LiveKit tokens.
#[derive(Clone, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Config {
    /// The HTTP port (REST + Socket.IO).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// The address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Unset: embedded in-memory store (one replica, nothing persisted). Set: a stateless
    /// replica of a cluster sharing this Redis (redis://[:password@]host:port[/db]).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and of the event channel: two deployments may share a Redis.
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "switchboard")]
    pub redis_namespace: String,

    /// Longest wait for one Redis command before answering 503, in milliseconds.
    #[arg(long = "redis-timeout-ms", env = "REDIS_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub redis_timeout: Duration,

    /// The LiveKit server URL returned to clients as `url`.
    #[arg(long, env = "LIVEKIT_URL", default_value = "ws://localhost:7880")]
    pub livekit_url: String,

    /// LiveKit API key: the tokens' issuer.
    #[arg(long, env = "LIVEKIT_API_KEY", default_value = DEV_API_KEY)]
    pub livekit_api_key: String,

    /// LiveKit API secret: signs the tokens.
    #[arg(long, env = "LIVEKIT_API_SECRET", default_value = DEV_API_SECRET, hide_env_values = true, hide_default_value = true)]
    pub livekit_api_secret: String,

    /// Token lifetime in seconds.
    #[arg(long, env = "LIVEKIT_TOKEN_TTL", default_value = "3600", value_parser = seconds)]
    pub livekit_token_ttl: Duration,

    /// Comma-separated allowed CORS origins; `*` allows every origin.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT", default_value_t = 16 * 1024)]
    pub body_limit: usize,

    /// After SIGTERM, seconds to keep serving with /readyz at 503 before closing sockets,
    /// so that the load balancer moves traffic away first.
    #[arg(long, env = "DRAIN_PERIOD", default_value = "0", value_parser = seconds_or_zero)]
    pub drain_period: Duration,

    /// Log lines as readable text (a terminal) or JSON (production).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// LiveKit's dev-mode credentials (`livekit-server --dev`).
pub const DEV_API_KEY: &str = "devkey";
pub const DEV_API_SECRET: &str = "secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Whether LiveKit's public dev credentials are in use (worth a warning).
    pub fn uses_dev_credentials(&self) -> bool {
        self.livekit_api_key == DEV_API_KEY || self.livekit_api_secret == DEV_API_SECRET
    }

    /// The `{namespace}:` key prefix; the braces make it a Redis Cluster hash tag.
    pub fn redis_prefix(&self) -> String {
        format!("{{{}}}:", self.redis_namespace)
    }
}

/// Hides the LiveKit secret and any Redis password.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr())
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_namespace", &self.redis_namespace)
            .field("redis_timeout", &self.redis_timeout)
            .field("livekit_url", &self.livekit_url)
            .field("livekit_api_key", &self.livekit_api_key)
            .field("livekit_api_secret", &"<redacted>")
            .field("livekit_token_ttl", &self.livekit_token_ttl)
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .field("drain_period", &self.drain_period)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// `redis://user:pass@host` → `redis://***@host`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err("must be a whole number of seconds, at least 1".into()),
    }
}

fn seconds_or_zero(s: &str) -> Result<Duration, String> {
    s.parse::<u64>().map(Duration::from_secs).map_err(|_| "must be a whole number of seconds".into())
}

fn millis(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
        _ => Err("must be a whole number of milliseconds, at least 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::try_parse_from(["switchboard"]).expect("parses");
        assert_eq!(c.port, 3000);
        assert_eq!(c.livekit_url, "ws://localhost:7880");
        assert_eq!(c.livekit_token_ttl, Duration::from_secs(3600));
        assert_eq!(c.cors_origins, vec!["*"]);
        assert_eq!(c.body_limit, 16384);
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn cors_origins_split_on_commas() {
        let c =
            Config::try_parse_from(["switchboard", "--cors-origins", "https://a.test,https://b.test"]).expect("parses");
        assert_eq!(c.cors_origins, vec!["https://a.test", "https://b.test"]);
    }

    #[test]
    fn a_zero_ttl_is_refused() {
        assert!(Config::try_parse_from(["switchboard", "--livekit-token-ttl", "0"]).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config::try_parse_from([
            "switchboard",
            "--livekit-api-secret",
            "s3cr3t-value",
            "--redis-url",
            "redis://:hunter2@db:6379",
        ])
        .expect("parses");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db:6379"));
    }
}
