//! Configuration: every setting is a flag and an environment variable (flags win).

use clap::{Parser, ValueEnum};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// switchboard: REST + Socket.IO backend for voice and video calls, with LiveKit tokens.
#[derive(Clone, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The HTTP port (REST + Socket.IO).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// The address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Unset: embedded in-memory store (one replica, nothing persisted). Set: a stateless
    /// replica of a cluster sharing this Redis: redis://[[user]:password@]host:port[/db];
    /// rediss:// for TLS; redis-cluster://host:port?node=host2:port2 for a Redis Cluster;
    /// redis-sentinel://sentinel:port?node=sentinel2:port2&sentinelServiceName=NAME for a
    /// Sentinel-managed primary (rediss-cluster://, rediss-sentinel:// with TLS).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the certificate authorities that sign the Redis server's certificate
    /// (rediss:// URLs); unset: the system's trusted roots.
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,

    /// Prefix of every Redis key and of the event channel: two deployments may share a Redis.
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "switchboard")]
    pub redis_namespace: String,

    /// Longest wait for one Redis command before answering 503, in milliseconds.
    #[arg(long = "redis-timeout-ms", env = "REDIS_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub redis_timeout: Duration,

    /// After each write, wait until this many Redis replicas have it (Redis `WAIT`), so that
    /// an acknowledged write survives the primary's failover; 0: do not wait.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// Longest wait for REDIS_WAIT_REPLICAS, in milliseconds; the write stands either way.
    #[arg(long = "redis-wait-timeout-ms", env = "REDIS_WAIT_TIMEOUT_MS", default_value = "100", value_parser = millis)]
    pub redis_wait_timeout: Duration,

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

    /// Seconds a call may ring before it is missed; 0: it rings until someone acts.
    #[arg(long, env = "CALL_RING_TIMEOUT", default_value = "60", value_parser = seconds_or_zero)]
    pub call_ring_timeout: Duration,

    /// Seconds after `answerTime` when an accepted call is ended; 0: never.
    #[arg(long, env = "CALL_MAX_DURATION", default_value = "0", value_parser = seconds_or_zero)]
    pub call_max_duration: Duration,

    /// Seconds an ended call is kept after its `endTime`; 0: for ever.
    #[arg(long, env = "CALL_RETENTION", default_value = "2592000", value_parser = seconds_or_zero)]
    pub call_retention: Duration,

    /// Seconds a room is kept after its last activity (creation or latest join); 0: for ever.
    #[arg(long, env = "ROOM_RETENTION", default_value = "2592000", value_parser = seconds_or_zero)]
    pub room_retention: Duration,

    /// `open`: no credentials, every event to every client (v1). `token`: bearer tokens on
    /// REST and Socket.IO, each event only to its audience, resumable event streams.
    #[arg(long, env = "AUTH", value_enum, default_value_t = AuthMode::Open)]
    pub auth: AuthMode,

    /// HS256 key of user and server tokens, at least 32 bytes; required with AUTH=token.
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Lifetime in seconds of the user tokens switchboard issues on registration.
    #[arg(long, env = "AUTH_TOKEN_TTL", default_value = "86400", value_parser = seconds)]
    pub auth_token_ttl: Duration,

    /// Events kept per user for resuming after a reconnect (AUTH=token).
    #[arg(long, env = "EVENT_HISTORY", default_value_t = 1000)]
    pub event_history: u32,

    /// Seconds an event stays resumable (AUTH=token).
    #[arg(long, env = "EVENT_HISTORY_TTL", default_value = "86400", value_parser = seconds)]
    pub event_history_ttl: Duration,

    /// Events the namespace's event log keeps, from which a replica closes a gap in its
    /// subscription (a Redis failover, a dropped connection).
    #[arg(long, env = "EVENT_LOG_MAX", default_value_t = 10_000)]
    pub event_log_max: u32,

    /// Seconds the event log goes back: a replica away for longer misses events (said,
    /// rather than replayed late).
    #[arg(long, env = "EVENT_LOG_AGE", default_value = "60", value_parser = seconds)]
    pub event_log_age: Duration,

    /// Waking devices by push (APNs, FCM, Web Push).
    #[command(flatten)]
    pub push: crate::push::PushConfig,

    /// Comma-separated allowed CORS origins; `*` allows every origin.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT", default_value_t = 16 * 1024)]
    pub body_limit: usize,

    /// Open connections per replica at most (websockets included); past it new ones get
    /// an immediate 503. Keep it below the process's file descriptor limit (`ulimit -n`).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Seconds to receive a request's headers; also how long an idle keep-alive
    /// connection stays open, so a load balancer's upstream keep-alive timeout must be
    /// shorter.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "20", value_parser = seconds)]
    pub header_timeout: Duration,

    /// Seconds to receive a request's whole body (408 after that).
    #[arg(long, env = "BODY_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub body_timeout: Duration,

    /// Largest request head (request line and headers), in bytes; at least 8192.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,

    /// After the drain period and the sockets' close, seconds in-flight requests may take
    /// before the replica exits anyway.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10", value_parser = seconds_or_zero)]
    pub shutdown_grace: Duration,

    /// A second port serving only /healthz, /readyz and /metrics, so that probes and
    /// scrapes answer while the public port is at its connection cap; 0: none.
    #[arg(long, env = "OPS_PORT", default_value_t = 0)]
    pub ops_port: u16,

    /// After SIGTERM, seconds to keep serving with /readyz at 503 before closing sockets,
    /// so that the load balancer moves traffic away first.
    #[arg(long, env = "DRAIN_PERIOD", default_value = "0", value_parser = seconds_or_zero)]
    pub drain_period: Duration,

    /// Log lines as readable text (a terminal) or JSON (production).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What to do instead of serving.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Print the OpenAPI document of the REST API (docs/openapi.json) and exit.
    Openapi,
    /// Print a token signed with AUTH_SECRET and exit: a user token (`--user ID`) or a
    /// server token (`--server`), which acts as any user and hears every event.
    Token {
        /// The user the token identifies.
        #[arg(long, conflicts_with = "server", required_unless_present = "server")]
        user: Option<String>,
        /// A server token instead.
        #[arg(long)]
        server: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value = "3600", value_parser = seconds)]
        ttl: Duration,
    },
}

/// Who may call the API, and who hears which event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// v1: no credentials; every event to every client.
    Open,
    /// Bearer tokens; each event to its audience; resumable streams.
    Token,
}

/// A setting that cannot work: the binary stops before serving anything.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct InvalidSetting {
    /// The environment variable (and flag) at fault.
    pub setting: &'static str,
    pub reason: String,
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
    /// The call deadlines and retention periods; 0 means none.
    pub fn timeouts(&self) -> crate::domain::Timeouts {
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        crate::domain::Timeouts {
            ring: some(self.call_ring_timeout),
            max_duration: some(self.call_max_duration),
            call_retention: some(self.call_retention),
            room_retention: some(self.room_retention),
        }
    }

    pub fn event_log(&self) -> crate::events::EventLog {
        crate::events::EventLog { max: self.event_log_max, age: self.event_log_age }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The ops port's address, when there is one.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        (self.ops_port != 0).then(|| SocketAddr::new(self.host, self.ops_port))
    }

    /// The edge's caps and timeouts. The connection cap stays below what the process may
    /// open (`ulimit -n`, less room for Redis, the ops port and logs), so that a flood is
    /// refused cleanly instead of failing `accept` for everything, probes included.
    pub fn limits(&self) -> crate::edge::Limits {
        const RESERVED_FILES: usize = 256;
        let max_connections = match open_files_limit() {
            Some(files) if self.max_connections + RESERVED_FILES > files => {
                let lowered = files.saturating_sub(RESERVED_FILES).max(1);
                tracing::warn!(
                    max_connections = self.max_connections,
                    open_files_limit = files,
                    lowered,
                    "MAX_CONNECTIONS is above what the process may open; lowered"
                );
                lowered
            }
            _ => self.max_connections,
        };
        crate::edge::Limits {
            max_connections,
            header_timeout: self.header_timeout,
            max_header_bytes: self.max_header_bytes,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// Whether LiveKit's public dev credentials are in use (worth a warning).
    pub fn uses_dev_credentials(&self) -> bool {
        self.livekit_api_key == DEV_API_KEY || self.livekit_api_secret == DEV_API_SECRET
    }

    /// Checks what clap cannot check one value at a time, so that a replica never starts
    /// in a state where requests would fail. Never echoes a secret.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let fail = |setting, reason: &str| Err(InvalidSetting { setting, reason: reason.to_owned() });
        if self.livekit_api_key.trim().is_empty() {
            return fail("LIVEKIT_API_KEY (--livekit-api-key)", "must not be empty");
        }
        if self.livekit_api_secret.trim().is_empty() {
            return fail("LIVEKIT_API_SECRET (--livekit-api-secret)", "must not be empty");
        }
        if !is_url(&self.livekit_url, &["ws", "wss", "http", "https"]) {
            return fail("LIVEKIT_URL (--livekit-url)", "must be a ws://, wss://, http:// or https:// URL with a host");
        }
        if let Some(url) = &self.redis_url {
            let schemes = ["redis", "rediss", "redis-cluster", "rediss-cluster", "redis-sentinel", "rediss-sentinel"];
            if !is_url(url, &schemes) || fred::prelude::Config::from_url(url).is_err() {
                return fail(
                    "REDIS_URL (--redis-url)",
                    "must be a redis://host:port URL (or rediss, redis-cluster, redis-sentinel)",
                );
            }
        }
        if let Some(Err(reason)) = self.redis_tls_ca_file.as_deref().map(|path| tls_roots(Some(path))) {
            return fail("REDIS_TLS_CA_FILE (--redis-tls-ca-file)", &reason);
        }
        if self.redis_wait_replicas > 0 && self.redis_wait_timeout >= self.redis_timeout {
            return fail("REDIS_WAIT_TIMEOUT_MS (--redis-wait-timeout-ms)", "must be shorter than REDIS_TIMEOUT_MS");
        }
        if self.redis_namespace.is_empty() || self.redis_namespace.contains(['{', '}']) {
            return fail("REDIS_NAMESPACE (--redis-namespace)", "must be non-empty, without braces");
        }
        if self.max_header_bytes < 8192 {
            return fail("MAX_HEADER_BYTES (--max-header-bytes)", "must be at least 8192");
        }
        if self.max_connections == 0 {
            return fail("MAX_CONNECTIONS (--max-connections)", "must be at least 1");
        }
        if self.ops_port != 0 && self.ops_port == self.port {
            return fail("OPS_PORT (--ops-port)", "must differ from PORT");
        }
        match (self.auth, self.auth_secret.as_deref().map(str::len)) {
            (_, Some(n)) if n < 32 => return fail("AUTH_SECRET (--auth-secret)", "must be at least 32 bytes"),
            (AuthMode::Token, None) => return fail("AUTH_SECRET (--auth-secret)", "is required with AUTH=token"),
            _ => {}
        }
        if self.event_history == 0 {
            return fail("EVENT_HISTORY (--event-history)", "must be at least 1");
        }
        if self.event_log_max == 0 {
            return fail("EVENT_LOG_MAX (--event-log-max)", "must be at least 1");
        }
        if self.body_limit == 0 {
            return fail("BODY_LIMIT (--body-limit)", "must be at least 1 byte");
        }
        self.push.settings()?;
        let wildcard = self.cors_origins.iter().any(|o| o.trim() == "*");
        let origins_ok = self.cors_origins.iter().all(|o| is_origin(o.trim()));
        if !origins_ok || (wildcard && self.cors_origins.len() > 1) {
            return fail(
                "CORS_ORIGINS (--cors-origins)",
                "must be `*` or a comma-separated list of origins such as https://app.example.com",
            );
        }
        Ok(())
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
            .field("redis_tls_ca_file", &self.redis_tls_ca_file)
            .field("redis_namespace", &self.redis_namespace)
            .field("redis_timeout", &self.redis_timeout)
            .field("redis_wait_replicas", &self.redis_wait_replicas)
            .field("redis_wait_timeout", &self.redis_wait_timeout)
            .field("livekit_url", &self.livekit_url)
            .field("livekit_api_key", &self.livekit_api_key)
            .field("livekit_api_secret", &"<redacted>")
            .field("livekit_token_ttl", &self.livekit_token_ttl)
            .field("auth", &self.auth)
            .field("auth_secret", &self.auth_secret.as_ref().map(|_| "<redacted>"))
            .field("auth_token_ttl", &self.auth_token_ttl)
            .field("event_history", &self.event_history)
            .field("event_history_ttl", &self.event_history_ttl)
            .field("event_log_max", &self.event_log_max)
            .field("event_log_age", &self.event_log_age)
            .field("call_ring_timeout", &self.call_ring_timeout)
            .field("call_max_duration", &self.call_max_duration)
            .field("call_retention", &self.call_retention)
            .field("room_retention", &self.room_retention)
            .field("push", &self.push)
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .field("drain_period", &self.drain_period)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("ops_port", &self.ops_port)
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

/// The roots that verify the Redis server's certificate: the CAs of `ca_file` (PEM), or
/// the system's. Explicit, so that the ring provider is used whatever else is compiled in.
pub fn tls_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate".into());
    }
    Ok(roots)
}

/// The soft limit on open files of this process (Linux), when it can be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `scheme://host[...]` with one of `schemes` and a non-empty host.
pub(crate) fn is_url(url: &str, schemes: &[&str]) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    schemes.contains(&scheme) && !host.is_empty() && !host.starts_with(':') && !url.contains(char::is_whitespace)
}

/// A browser origin: `http(s)://host[:port]`, nothing after, or `*`.
fn is_origin(origin: &str) -> bool {
    origin == "*"
        || (is_url(origin, &["http", "https"])
            && origin.split_once("://").is_some_and(|(_, rest)| !rest.contains(['/', '?', '#', '@'])))
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
    fn settings_that_cannot_work_are_named() {
        let cases: [(&[&str], &str); 11] = [
            (&["--redis-tls-ca-file", "/nonexistent/ca.pem"], "REDIS_TLS_CA_FILE"),
            (&["--livekit-api-key", ""], "LIVEKIT_API_KEY"),
            (&["--livekit-api-secret", " "], "LIVEKIT_API_SECRET"),
            (&["--livekit-url", "localhost:7880"], "LIVEKIT_URL"),
            (&["--livekit-url", "ws://"], "LIVEKIT_URL"),
            (&["--redis-url", "http://db:6379"], "REDIS_URL"),
            (&["--redis-namespace", ""], "REDIS_NAMESPACE"),
            (&["--body-limit", "0"], "BODY_LIMIT"),
            (&["--cors-origins", "https://a.test/path"], "CORS_ORIGINS"),
            (&["--cors-origins", "*,https://a.test"], "CORS_ORIGINS"),
            (&["--cors-origins", " *,https://a.test"], "CORS_ORIGINS"),
        ];
        for (args, setting) in cases {
            let c = Config::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied())).expect("parses");
            let err = c.validate().expect_err(setting);
            assert!(err.setting.starts_with(setting), "{args:?}: {err}");
        }
    }

    #[test]
    fn working_settings_validate() {
        let c = Config::try_parse_from([
            "switchboard",
            "--redis-url",
            "redis://:pw@db:6379/0",
            "--livekit-url",
            "wss://lk.example.com",
            "--cors-origins",
            "https://a.test,http://127.0.0.1:8080",
        ])
        .expect("parses");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(Config::try_parse_from(["switchboard"]).expect("parses").validate(), Ok(()));
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
