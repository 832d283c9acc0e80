//! A Socket.IO client: the npm `socket.io-client` in a Node process (`tests/client`),
//! reporting each happening as a JSON line.

use super::WAIT;
use serde_json::Value;
use std::collections::VecDeque;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Polling,
    Websocket,
    /// Polling first, then the upgrade to websocket.
    Upgrade,
    /// As `Upgrade` on a slow network: the upgrade starts only after the first event has
    /// arrived over polling (so some events always come before it).
    LateUpgrade,
}

pub struct SioClient {
    lines: mpsc::UnboundedReceiver<Value>,
    /// Lines read while waiting for the connect and the upgrade, not yet consumed.
    early: VecDeque<Value>,
    _child: Child,
}

impl SioClient {
    /// Connects and waits for the `connect` (and, in upgrade mode, the upgrade).
    pub async fn connect(base: &str, mode: Mode) -> Self {
        Self::connect_with(base, mode, None).await
    }

    /// Connects with the connect packet's `auth` (`{ token, offset }`).
    pub async fn connect_with(base: &str, mode: Mode, auth: Option<Value>) -> Self {
        let mut client = Self::spawn(base, mode, auth);
        client.connected(mode).await;
        client
    }

    /// Tries to connect: the `connect_error` message when the server refuses.
    pub async fn refused(base: &str, auth: Option<Value>) -> String {
        let mut client = Self::spawn(base, Mode::Websocket, auth);
        let line = client.next_line().await;
        assert_eq!(line["type"], "error", "expected a refusal, got {line}");
        line["message"].as_str().unwrap_or_default().to_owned()
    }

    fn spawn(base: &str, mode: Mode, auth: Option<Value>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client/client.mjs");
        let mode_arg = match mode {
            Mode::Polling => "polling",
            Mode::Websocket => "websocket",
            Mode::Upgrade => "upgrade",
            Mode::LateUpgrade => "late-upgrade",
        };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        let mut child = Command::new("node")
            .args([script, base, mode_arg, &auth])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self { lines, early: VecDeque::new(), _child: child }
    }

    async fn connected(&mut self, mode: Mode) {
        let client = self;
        match mode {
            Mode::Polling | Mode::Websocket => {
                let connected = client.next_of("connect").await;
                let expected = if let Mode::Polling = mode { "polling" } else { "websocket" };
                assert_eq!(connected["transport"], expected);
            }
            // The upgrade may complete before or after the namespace connect, and events may
            // arrive in between (a resumed connection's replay): those are kept, in order.
            Mode::Upgrade | Mode::LateUpgrade => {
                let (mut connected, mut upgraded) = (false, false);
                let mut early = VecDeque::new();
                while !(connected && upgraded) {
                    let line = client.next_line().await;
                    assert_ne!(line["type"], "error", "client error: {line}");
                    connected |= line["type"] == "connect";
                    upgraded |= line["type"] == "upgrade" && line["transport"] == "websocket";
                    if line["type"] == "event" {
                        early.push_back(line);
                    }
                }
                client.early = early;
            }
        }
    }

    /// The next line of the given type, skipping others; fails after [`WAIT`].
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let line = self.next_line().await;
            if line["type"] == kind {
                return line;
            }
            assert_ne!(line["type"], "error", "client error: {line}");
        }
    }

    async fn next_line(&mut self) -> Value {
        self.next_line_within(WAIT).await
    }

    /// The next line of any type, failing after `bound`.
    pub async fn next_line_within(&mut self, bound: std::time::Duration) -> Value {
        if let Some(line) = self.early.pop_front() {
            return line;
        }
        match tokio::time::timeout(bound, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the client process ended"),
            Err(_) => panic!("no line from the client within {WAIT:?}"),
        }
    }

    /// The next event as (name, its single argument).
    pub async fn next_event(&mut self) -> (String, Value) {
        let line = self.next_of("event").await;
        let args = line["args"].as_array().cloned().unwrap_or_default();
        assert_eq!(args.len(), 1, "every event carries exactly one argument: {line}");
        (line["name"].as_str().unwrap_or_default().to_owned(), args[0].clone())
    }

    /// Every event up to and excluding the first one `is_barrier` accepts.
    pub async fn events_until(&mut self, is_barrier: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (name, arg) = self.next_event().await;
            if is_barrier(&name, &arg) {
                return seen;
            }
            seen.push((name, arg));
        }
    }

    /// Waits for the server to disconnect this client.
    pub async fn disconnected(&mut self) -> Value {
        self.next_of("disconnect").await
    }
}

/// A Socket.IO client over raw long polling that reads only when told to: meanwhile its
/// socket's buffer on the server fills up, as with a phone in a tunnel or a stalled tab.
pub struct Poller {
    http: reqwest::Client,
    url: String,
}

impl Poller {
    /// Opens an Engine.IO session (the handshake only: no namespace joined yet).
    pub async fn open(base: &str) -> Self {
        // Longer than a long poll's wait for data (the ping interval, 25 s).
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(40)).build().expect("client");
        let open = http.get(format!("{base}/socket.io/?EIO=4&transport=polling")).send().await.expect("open");
        let text = open.text().await.expect("handshake");
        let handshake: Value = serde_json::from_str(text.trim_start_matches('0')).expect("handshake");
        let sid = handshake["sid"].as_str().expect("sid");
        Self { http, url: format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}") }
    }

    /// Opens a session and connects with `auth`; returns once the connect is acknowledged
    /// (and nothing has been read beyond it).
    pub async fn connect(base: &str, auth: Value) -> Self {
        let poller = Self::open(base).await;
        poller.post(format!("40{auth}")).await;
        loop {
            let packets = tokio::time::timeout(WAIT, poller.get()).await.expect("a connect ack in time");
            for packet in &packets {
                assert!(!packet.starts_with("42"), "nothing is emitted before the connect is acknowledged");
                if packet == "2" {
                    poller.post("3".to_owned()).await;
                }
            }
            if packets.iter().any(|p| p.starts_with("40")) {
                return poller;
            }
        }
    }

    /// Sends Engine.IO packets (one, unframed); the server must answer 200.
    pub async fn post(&self, body: String) {
        let res = self.http.post(&self.url).body(body).send().await.expect("post");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
    }

    /// The packets of one polling response.
    async fn get(&self) -> Vec<String> {
        let res = self.http.get(&self.url).send().await.expect("poll");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        res.text().await.expect("payload").split('\u{1e}').map(str::to_owned).collect()
    }

    /// Polls until an event `is_last` accepts has arrived: every event up to it, in order,
    /// failing after [`WAIT`] without one; answers the server's pings meanwhile.
    pub async fn events_until(&self, is_last: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut events: Vec<(String, Value)> = Vec::new();
        loop {
            let packets = tokio::time::timeout(WAIT, self.get()).await.unwrap_or_else(|_| {
                panic!("no more events within {WAIT:?} after {}: {:?}", events.len(), events.last());
            });
            for packet in packets {
                if packet == "2" {
                    self.post("3".to_owned()).await;
                } else if let Some(event) = packet.strip_prefix("42") {
                    let event: Vec<Value> = serde_json::from_str(event).expect("an event");
                    events.push((event[0].as_str().unwrap_or_default().to_owned(), event[1].clone()));
                }
            }
            if let Some(n) = events.iter().position(|(name, arg)| is_last(name, arg)) {
                assert_eq!(n + 1, events.len(), "nothing after the last event expected: {:?}", &events[n..]);
                return events;
            }
        }
    }
}
