//! The `switchboard` binary: parse the configuration, start logging, serve until
//! SIGTERM or SIGINT.

use clap::Parser;
use switchboard::{Config, config};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// jemalloc returns freed pages to the system in the background (glibc keeps the memory of
/// a closed flood of connections for good).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cfg = Config::parse();
    match &cfg.command {
        Some(config::Command::Openapi) => {
            println!("{}", switchboard::http::openapi::json());
            return std::process::ExitCode::SUCCESS;
        }
        Some(config::Command::Token { user, server, ttl }) => return print_token(&cfg, user.as_deref(), *server, *ttl),
        None => {}
    }
    if let Err(e) = cfg.validate() {
        // Before logging starts, as clap reports its own errors: nothing is served.
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    let telemetry = switchboard::telemetry::init(cfg.log_format);
    if cfg.uses_dev_credentials() {
        tracing::warn!(
            "using LiveKit's public dev credentials; set LIVEKIT_API_KEY and LIVEKIT_API_SECRET in production"
        );
    }
    let mode = cfg.redis_url.as_deref().map_or("embedded memory store".to_owned(), config::redact_url);
    let listener = match TcpListener::bind(cfg.addr()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %cfg.addr(), error = %e, "cannot bind");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %cfg.addr(), store = %mode, "switchboard listening");
    let served = switchboard::run(cfg, listener, terminated()).await;
    if let Err(e) = &served {
        tracing::error!(error = %e, "switchboard stopped");
    }
    telemetry.shutdown();
    if served.is_ok() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}

/// `switchboard token`: prints a user or server token signed with AUTH_SECRET.
fn print_token(cfg: &Config, user: Option<&str>, server: bool, ttl: std::time::Duration) -> std::process::ExitCode {
    let Some(secret) = cfg.auth_secret.as_deref().filter(|s| s.len() >= 32) else {
        eprintln!("error: invalid setting AUTH_SECRET (--auth-secret): set it, at least 32 bytes, to sign tokens");
        return std::process::ExitCode::from(2);
    };
    let tokens = switchboard::auth::Tokens::new(secret.as_bytes());
    let minted = match (server, user.and_then(switchboard::domain::UserId::parse)) {
        (true, _) => tokens.server(ttl),
        (false, Some(user)) => tokens.user(user, ttl),
        (false, None) => {
            eprintln!("error: --user must be a user id (a UUID)");
            return std::process::ExitCode::from(2);
        }
    };
    println!("{}", minted.token);
    std::process::ExitCode::SUCCESS
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed by this call, not
/// when the future is first polled (deep in the server's loop): a SIGTERM that came as soon
/// as the replica answered found the default action and killed it mid-request.
fn terminated() -> impl Future<Output = ()> + Send + 'static {
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
