//! The abuse suite, at small sizes: slow headers, a slow body, an idle flood up to the
//! connection cap, an oversized head, a websocket message over `maxPayload`, and a slow
//! client at shutdown. The replica keeps answering its probes, closes what it should and
//! refuses cleanly. (`loadtest/` runs the same at full size.)

use crate::support::{Api, Poller, RedisServer, WAIT, eventually, spawn_binary};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

/// A free loopback port for the ops listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn addr(api: &Api) -> String {
    api.base().trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection, failing after [`WAIT`]; returns what came.
async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut seen)).await.expect("closed in time").expect("read");
    String::from_utf8_lossy(&seen).into_owned()
}

/// Runs an abuse test against a replica on the embedded store and on Redis.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn memory() {
                super::$test(None).await
            }
            #[tokio::test]
            async fn redis() {
                let redis = crate::support::RedisServer::start();
                super::$test(Some(&redis)).await
            }
        }
    )*};
}

on_both_stores!(slow_headers_and_slow_bodies_are_cut_off, past_the_connection_cap_connections_are_refused);

/// A replica with `env`, on Redis when one is given.
async fn replica(redis: Option<&RedisServer>, env: &[(&str, &str)]) -> (tokio::process::Child, Api) {
    let url = redis.map(RedisServer::url);
    let mut env = env.to_vec();
    if let Some(url) = &url {
        env.push(("REDIS_URL", url));
    }
    spawn_binary(&env).await
}

async fn slow_headers_and_slow_bodies_are_cut_off(redis: Option<&RedisServer>) {
    let (_child, api) = replica(redis, &[("HEADER_TIMEOUT", "1"), ("BODY_TIMEOUT", "1")]).await;
    // A connection per request: the replica closes idle keep-alive connections after 1 s,
    // and a pooled one could be reused just as it closes.
    let api = Api::unpooled(api.base());

    // Half a head, then nothing: closed after HEADER_TIMEOUT.
    let mut slow_head = TcpStream::connect(addr(&api)).await.expect("connect");
    slow_head.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    // An idle keep-alive connection after one request: closed too.
    let mut idle = TcpStream::connect(addr(&api)).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    // A body that stops halfway: 408, as a problem document.
    let mut slow_body = TcpStream::connect(addr(&api)).await.expect("connect");
    slow_body
        .write_all(
            b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"na",
        )
        .await
        .expect("write");

    assert_eq!(api.get("/healthz").await.0, StatusCode::OK, "the replica answers meanwhile");
    let _ = until_closed(&mut slow_head).await;
    assert!(until_closed(&mut idle).await.starts_with("HTTP/1.1 200"));
    let answer = until_closed(&mut slow_body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("\"request_timeout\""), "{answer}");
    let (_, users) = api.get("/users").await;
    assert_eq!(users, serde_json::json!([]), "nothing was stored");
}

/// Probes still answer, on the ops port.
async fn past_the_connection_cap_connections_are_refused(redis: Option<&RedisServer>) {
    let ops_port = free_port().to_string();
    let env = [("MAX_CONNECTIONS", "20"), ("HEADER_TIMEOUT", "30"), ("OPS_PORT", ops_port.as_str())];
    let (_child, api) = replica(redis, &env).await;
    let ops = Api::new(&format!("http://127.0.0.1:{ops_port}"));

    // The flood: idle connections up to the cap (the readiness check's is gone by now).
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(TcpStream::connect(addr(&api)).await.expect("connect"));
    }
    let mut refused = TcpStream::connect(addr(&api)).await.expect("the kernel accepts");
    let answer = until_closed(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"too_many_connections\"") && answer.contains("retry-after: 1"), "{answer}");

    for path in ["/healthz", "/readyz"] {
        assert_eq!(ops.get(path).await.0, StatusCode::OK, "{path} on the ops port at the cap");
    }
    let refusals = ops.metric("switchboard_connections_refused_total").await;
    assert!(refusals.is_some_and(|n| n >= 1.0), "{refusals:?}");

    // The flood ends: the slots come back.
    drop(flood);
    eventually("the public port to answer again", || async {
        api.raw(reqwest::Method::GET, "/healthz").send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let (_child, api) = spawn_binary(&[]).await;
    let mut tcp = TcpStream::connect(addr(&api)).await.expect("connect");
    let huge = "a".repeat(20_000);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {huge}\r\n\r\n");
    let _ = tcp.write_all(request.as_bytes()).await;
    let answer = until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_websocket_message_over_max_payload_closes_its_socket() {
    let (_child, api) = spawn_binary(&[]).await;
    // The reference client sends 200 KB over websocket; the server must drop that socket.
    let script = r#"
        import { io } from 'socket.io-client';
        const socket = io(process.argv[1], { transports: ['websocket'], reconnection: false });
        socket.on('connect', () => socket.emit('big', 'x'.repeat(200000)));
        socket.on('disconnect', (reason) => { console.log(reason); process.exit(0); });
        setTimeout(() => { console.log('still connected'); process.exit(1); }, 8000);
    "#;
    let out = Command::new("node")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client"))
        .args(["--input-type=module", "-e", script, api.base()])
        .output();
    let out = tokio::time::timeout(WAIT, out).await.expect("node ends").expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the socket stayed open: {said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("transport"), "closed by the transport: {said}");
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_client_does_not_keep_a_replica_from_exiting() {
    let env = [("HEADER_TIMEOUT", "60"), ("SHUTDOWN_GRACE", "1"), ("DRAIN_PERIOD", "0")];
    let (mut child, api) = spawn_binary(&env).await;
    // A keep-alive connection the server has served once (so it holds it), then half of
    // a second head.
    let mut slow = TcpStream::connect(addr(&api)).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).await.expect("the first answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    let pid = child.id().expect("running").to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill").success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits within the grace").expect("status");
    assert_eq!(status.code(), Some(0));
}

/// Connect packets whose transport closes while the token is checked (Redis stalled) leave
/// nothing behind: once Redis answers, the replica tracks no connection for them and none
/// of them holds events, so later broadcasts cost them nothing.
#[tokio::test]
async fn connects_abandoned_while_the_token_is_checked_leave_nothing() {
    const ABANDONED: usize = 300;
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_NAMESPACE", "abandoned"),
        ("AUTH", "token"),
        ("AUTH_SECRET", crate::support::AUTH_SECRET),
        // Longer than the stall: every token check ends in success, after its client left.
        ("REDIS_TIMEOUT_MS", "30000"),
    ];
    let (_victim, api) = spawn_binary(&env).await;
    // Registered through another replica: the victim has not seen the user yet, so each
    // check reads it from Redis.
    let (_other, registrar) = spawn_binary(&env).await;
    let (status, user) = registrar.post("/users", serde_json::json!({ "name": "Ana" })).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let token = user["token"].as_str().expect("a token").to_owned();

    let mut sessions = Vec::new();
    for _ in 0..ABANDONED {
        sessions.push(Poller::open(api.base()).await);
    }
    redis.freeze(true);
    let connect = format!("40{}", serde_json::json!({ "token": token }));
    let posts = sessions.iter().map(|session| async {
        // The connect packet, then the close packet: the session is gone when it answers.
        session.post(connect.clone()).await;
        session.post("1".to_owned()).await;
    });
    futures::future::join_all(posts).await;
    redis.freeze(false);

    // One client that stays: tracked, and hearing broadcasts.
    let mut steady = crate::support::SioClient::connect_with(
        api.base(),
        crate::support::Mode::Websocket,
        Some(serde_json::json!({ "token": token })),
    )
    .await;
    eventually("the abandoned connects to be forgotten", || async {
        api.metric("switchboard_socketio_tracked_connections").await == Some(1.0)
            && api.metric("switchboard_socketio_catching_up").await == Some(0.0)
    })
    .await;
    registrar.user("Ben").await;
    let (name, _) = steady.next_event().await;
    assert_eq!(name, "user.registered");
}
