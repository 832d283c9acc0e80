//! A minimal Socket.IO client: Engine.IO v4 over a plain websocket, default namespace
//! only. Enough to hold thousands of connections cheaply, answer pings and see events;
//! nothing of the polling transport, acks or binary packets.

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
    /// joins the default namespace: receive `0{…}`, send `40`, receive `40{…}`.
    pub async fn connect(base: &str) -> Result<Self, String> {
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
            client.send("40").await?;
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
