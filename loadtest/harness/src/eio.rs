//! A minimal Socket.IO client: Engine.IO v4 over a plain websocket or over HTTP long
//! polling, default namespace only. Enough to hold thousands of sessions cheaply, answer
//! pings and see events; no acks, no binary packets, no upgrade from polling.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Socket.IO client connected to the default namespace.
pub struct Client {
    ws: Ws,
}

/// Why [`Client::run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The stop signal fired.
    Stopped,
    /// The server (or the load balancer in front of it) closed the connection.
    Closed,
}

/// Longest wait for the Engine.IO open packet and the namespace connect.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

impl Client {
    /// Opens `ws://…/socket.io/?EIO=4&transport=websocket` on `base` (an http:// URL) and
    /// joins the default namespace: receive `0{…}`, send `40` (with a token, `AUTH=token`:
    /// `40{"token":"…"}`), receive `40{…}`.
    pub async fn connect(base: &str, token: Option<&str>) -> Result<Self, String> {
        let url = format!("{}/socket.io/?EIO=4&transport=websocket", base.replacen("http://", "ws://", 1));
        // Small buffers: tungstenite's defaults (128 KiB read buffer) would make the
        // harness, not the server, run out of memory at 10,000 connections.
        let config =
            WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_write_buffer_size(1 << 20);
        let connect = async {
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                .await
                .map_err(|e| format!("websocket connect: {e}"))?;
            let mut client = Client { ws };
            let open = client.next_text().await?;
            if !open.starts_with('0') {
                return Err(format!("expected an Engine.IO open packet, got {open:?}"));
            }
            match token {
                // A JWT is base64url and dots: nothing to escape in JSON.
                Some(token) => client.send_text(format!(r#"40{{"token":"{token}"}}"#)).await?,
                None => client.send("40").await?,
            }
            loop {
                let packet = client.next_text().await?;
                match packet.as_str() {
                    "2" => client.send("3").await?,
                    p if p.starts_with("40") => return Ok(client),
                    p if p.starts_with("44") => return Err(format!("connect refused: {p}")),
                    _ => {} // an event broadcast before our connect was acknowledged
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await.map_err(|_| "handshake timed out".to_string())?
    }

    /// Receives until the connection ends or `stop` fires, answering pings and passing the
    /// body of every event packet (`42[…]` without the `42`) to `on_event`.
    pub async fn run(&mut self, stop: &mut watch::Receiver<bool>, mut on_event: impl FnMut(&str)) -> End {
        if *stop.borrow() {
            return End::Stopped;
        }
        loop {
            tokio::select! {
                message = self.ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if text.as_str() == "2" {
                            if self.send("3").await.is_err() {
                                return End::Closed;
                            }
                        } else if let Some(event) = text.as_str().strip_prefix("42") {
                            on_event(event);
                        } else if text.as_str().starts_with('1') {
                            return End::Closed; // Engine.IO close
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Closed,
                    Some(Ok(_)) => {}
                },
                _ = stop.changed() => return End::Stopped,
            }
        }
    }

    /// Closes the websocket politely (the server then sees a normal disconnect).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    async fn send(&mut self, text: &'static str) -> Result<(), String> {
        self.ws.send(Message::Text(Utf8Bytes::from_static(text))).await.map_err(|e| format!("websocket send: {e}"))
    }

    async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.ws.send(Message::Text(text.into())).await.map_err(|e| format!("websocket send: {e}"))
    }

    async fn next_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("closed during handshake".into()),
                Some(Err(e)) => return Err(format!("websocket: {e}")),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// A Socket.IO client on Engine.IO's polling transport, connected to the default namespace.
/// Between packets it keeps one long-polling GET pending, as socket.io-client does; its
/// requests share the `http` client's connection pool.
pub struct Polling {
    http: reqwest::Client,
    /// `…/socket.io/?EIO=4&transport=polling&sid=…`
    url: String,
}

/// Engine.IO v4 separates the packets of one polling payload with a record separator.
const SEPARATOR: char = '\u{1e}';

impl Polling {
    /// Opens a session (`GET` → `0{"sid":…}`), joins the default namespace (`POST 40`),
    /// then polls until its `40{…}` arrives.
    pub async fn connect(http: &reqwest::Client, base: &str) -> Result<Self, String> {
        let connect = async {
            let handshake = format!("{base}/socket.io/?EIO=4&transport=polling");
            let open = get_text(http, &handshake).await?;
            let sid = open
                .strip_prefix('0')
                .and_then(|o| string_field(o, "sid"))
                .ok_or_else(|| format!("expected an Engine.IO open packet, got {open:?}"))?;
            let client = Polling { http: http.clone(), url: format!("{handshake}&sid={sid}") };
            client.post("40").await?;
            loop {
                for packet in get_text(http, &client.url).await?.split(SEPARATOR) {
                    match packet {
                        "2" => client.post("3").await?,
                        p if p.starts_with("40") => return Ok(client),
                        p if p.starts_with("44") => return Err(format!("connect refused: {p}")),
                        p if p.starts_with('1') => return Err("closed during handshake".into()),
                        _ => {}
                    }
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await.map_err(|_| "handshake timed out".to_string())?
    }

    /// Polls until the session ends or `stop` fires, answering pings.
    pub async fn run(&self, stop: &mut watch::Receiver<bool>) -> End {
        if *stop.borrow() {
            return End::Stopped;
        }
        loop {
            tokio::select! {
                payload = get_text(&self.http, &self.url) => {
                    let Ok(payload) = payload else { return End::Closed };
                    for packet in payload.split(SEPARATOR) {
                        if packet == "2" {
                            if self.post("3").await.is_err() {
                                return End::Closed;
                            }
                        } else if packet.starts_with('1') {
                            return End::Closed;
                        }
                    }
                }
                _ = stop.changed() => return End::Stopped,
            }
        }
    }

    /// Closes the session (Engine.IO close packet).
    pub async fn close(self) {
        let _ = self.post("1").await;
    }

    async fn post(&self, packet: &'static str) -> Result<(), String> {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(packet)
            .send()
            .await
            .map_err(|e| format!("polling POST: {e}"))?;
        let status = resp.status();
        // Read the body ("ok") so that the connection goes back to the pool.
        let _ = resp.bytes().await;
        status.is_success().then_some(()).ok_or_else(|| format!("polling POST: {status}"))
    }
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = http.get(url).send().await.map_err(|e| format!("polling GET: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("polling GET: {status}"));
    }
    resp.text().await.map_err(|e| format!("polling GET: {e}"))
}

/// The event name of an event packet body: `["call.started",{…}]` → `call.started`.
pub fn event_name(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("[\"")?;
    rest.split_once('"').map(|(name, _)| name)
}

/// A string field of a JSON object, found by text: `"key":"value"`. Good enough for the
/// UUIDs in our events, and far cheaper than parsing each of a million deliveries.
pub fn string_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":\"");
    let start = body.find(&needle)? + needle.len();
    body[start..].split_once('"').map(|(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies_are_read_without_a_json_parser() {
        let body = r#"["call.started",{"data":{"id":"a","fromUserId":"u-1","toUserId":"u-2"}}]"#;
        assert_eq!(event_name(body), Some("call.started"));
        assert_eq!(string_field(body, "fromUserId"), Some("u-1"));
        assert_eq!(string_field(body, "roomName"), None);
    }
}
