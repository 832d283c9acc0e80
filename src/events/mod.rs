//! The event bus: how a change stored by one replica reaches the relay of every replica
//! (the publisher's own included). The store publishes each event in the same atomic step
//! as its change, and appends it to the namespace's event log in that step too; the bus
//! delivers live, and the [`Feed`] reads the log for what the live path missed. It carries
//! text; [`encode`] and [`Incoming`] define that text, so memory and Redis modes share
//! every line after the store.

mod feed;
mod local;
mod redis;

pub use feed::{Delivery, Feed};
pub use local::LocalBus;
pub use redis::RedisBus;

use crate::domain::{Event, UserId};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the live path of a bus delivers, in the order it was published.
#[derive(Debug)]
pub enum Signal {
    /// A message as published: see [`unframe`].
    Message(String),
    /// The listener fell this many messages behind and they were dropped.
    Lagged(u64),
    /// The subscription is live (again): every message after `head`, the log's last
    /// entry at this point of the live path, will arrive or show a gap.
    Live(Offset),
}

/// One read of the log: messages after the offset asked for, oldest first.
pub struct Page {
    pub messages: Vec<(Offset, String)>,
    /// `false`: the first message did not come right after the offset asked for, and the
    /// log keeps nothing from before it: what came between was trimmed away (a replica away
    /// for longer than the log keeps).
    pub complete: bool,
}

/// How long the namespace's event log is (`EVENT_LOG_MAX` entries) and how far back it
/// goes (`EVENT_LOG_AGE`): a gap in a replica's live path is closed from it within these.
#[derive(Clone, Copy, Debug)]
pub struct EventLog {
    pub max: u32,
    pub age: Duration,
}

/// Delivers encoded events, published by the store, to every replica: live, and from the
/// log the store appends them to.
pub trait EventBus: Send + Sync {
    /// Every message published from now on, by any replica, with the subscription's state.
    fn listen(&self) -> BoxStream<'static, Signal>;
    /// Whether messages published now reach [`listen`](Self::listen)ers.
    fn is_listening(&self) -> bool;
    /// At most `limit` logged messages after `after`; `Err` says why the log could not be read.
    fn read(&self, after: Offset, limit: usize) -> BoxFuture<'static, Result<Page, String>>;
}

/// A published message: `<id> <prev>\n<body>`, its id in the log and the id of the entry
/// before it (`0-0` for the first), so a listener that has not delivered `prev` knows it
/// missed something. The Redis scripts build the same text (prelude.lua).
pub fn frame(id: Offset, prev: Offset, body: &str) -> String {
    format!("{id} {prev}\n{body}")
}

/// A published message taken apart: id, previous id, and where its body starts.
pub fn unframe(message: &str) -> Option<(Offset, Offset, usize)> {
    let (head, _) = message.split_once('\n')?;
    let (id, prev) = head.split_once(' ')?;
    Some((Offset::parse(id)?, Offset::parse(prev)?, head.len() + 1))
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(rename = "sentAtUs")]
    sent_at_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// An event as it arrives from the bus; `data` stays encoded so that it is serialized
/// once per replica, not once per socket.
#[derive(Deserialize)]
pub struct Incoming<'a> {
    pub event: &'a str,
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// Wall-clock publish time in µs since the epoch, for the relay-delay histogram.
    #[serde(rename = "sentAtUs")]
    pub sent_at_us: u64,
    /// The W3C trace context of the request that caused the event.
    #[serde(default)]
    pub traceparent: Option<&'a str>,
    /// `AUTH=token`: the users the event is addressed to, each with the event's offset in
    /// that user's history. Absent: every client.
    #[serde(default, borrow)]
    pub to: Option<HashMap<&'a str, &'a str>>,
}

/// Who hears an event with `AUTH=token` (section 8 of the contract).
#[derive(Clone, Copy, Debug)]
pub enum Audience<'a> {
    Everyone,
    Users(&'a [UserId]),
    /// The room's participants after the change; only the store knows them then.
    Participants,
}

/// How addressed events are kept per user for resuming (`EVENT_HISTORY`,
/// `EVENT_HISTORY_TTL`).
#[derive(Clone, Copy, Debug)]
pub struct History {
    pub max: u32,
    pub ttl: Duration,
}

/// What the store receives with a change: the encoded event, preceded, when it is
/// addressed to users, by a header line `#<users>|<max>|<ttl>`: comma-separated user ids
/// (`@` for the room's participants), the history length and lifetime. The store appends
/// the event to each user's history and publishes it with `"to": {user: offset}` (see
/// [`address`]); the header never reaches the bus.
pub fn envelope(event: &Event, audience: Audience<'_>, history: Option<History>) -> String {
    let encoded = encode(event);
    let (users, history) = match (audience, history) {
        (_, None) | (Audience::Everyone, _) => return encoded,
        (Audience::Users(users), Some(h)) => (users.iter().map(ToString::to_string).collect::<Vec<_>>().join(","), h),
        (Audience::Participants, Some(h)) => ("@".to_owned(), h),
    };
    format!("#{users}|{}|{}\n{encoded}", history.max, history.ttl.as_secs())
}

/// An envelope taken apart: the header's users (`None`: the participants), history length
/// and lifetime, and the event; `None` when the envelope has no header.
pub fn open(envelope: &str) -> Option<(Option<Vec<&str>>, u32, Duration, &str)> {
    let (header, body) = envelope.strip_prefix('#')?.split_once('\n')?;
    let mut parts = header.split('|');
    let users = parts.next()?;
    let max = parts.next()?.parse().ok()?;
    let ttl = Duration::from_secs(parts.next()?.parse().ok()?);
    let users = (users != "@").then(|| users.split(',').filter(|u| !u.is_empty()).collect());
    Some((users, max, ttl, body))
}

/// An event's position in the namespace's log or in one user's history: a stream entry id,
/// `<ms>-<seq>`, increasing along the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset(pub u64, pub u64);

impl Offset {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The next offset after `self` at wall-clock `ms`.
    pub fn next(self, ms: u64) -> Self {
        if ms > self.0 { Self(ms, 0) } else { Self(self.0, self.1 + 1) }
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The bus message of an addressed event: `body` with `"to"` first. The Redis scripts
/// build the same text (prelude.lua).
pub fn address(body: &str, offsets: &[(String, String)]) -> String {
    let to: Vec<String> = offsets.iter().map(|(user, offset)| format!("\"{user}\":\"{offset}\"")).collect();
    format!("{{\"to\":{{{}}},{}", to.join(","), body.strip_prefix('{').unwrap_or(body))
}

/// Encodes an event for the bus, stamped with the current time and trace.
pub fn encode(event: &Event) -> String {
    let traceparent = crate::telemetry::trace::current_traceparent();
    let outgoing = Outgoing { event, sent_at_us: now_us(), traceparent };
    serde_json::to_string(&outgoing).unwrap_or_default()
}

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomId;

    #[test]
    fn an_addressed_envelope_opens_and_its_message_decodes_with_offsets() {
        let (a, b) = (UserId::new(), UserId::new());
        let history = Some(History { max: 10, ttl: Duration::from_secs(60) });
        let event = Event::room_joined(RoomId::new(), a);
        let envelope = envelope(&event, Audience::Users(&[a, b]), history);
        let (users, max, ttl, body) = open(&envelope).expect("a header");
        let (a_s, b_s) = (a.to_string(), b.to_string());
        assert_eq!((users, max, ttl.as_secs()), (Some(vec![a_s.as_str(), b_s.as_str()]), 10, 60));
        assert!(body.starts_with(r#"{"event":"room.joined""#), "{body}");
        let message = address(body, &[(a_s.clone(), "1-0".into()), (b_s.clone(), "1-1".into())]);
        let incoming: Incoming<'_> = serde_json::from_str(&message).expect("decodes");
        let to = incoming.to.expect("addressed");
        assert_eq!((to[a_s.as_str()], to[b_s.as_str()], incoming.event), ("1-0", "1-1", "room.joined"));
        assert!(open(&super::envelope(&event, Audience::Participants, history)).is_some_and(|(u, ..)| u.is_none()));
        assert!(open(&super::envelope(&event, Audience::Everyone, history)).is_none());
        assert!(open(&super::envelope(&event, Audience::Users(&[a]), None)).is_none());
    }

    #[test]
    fn a_framed_message_gives_back_its_ids_and_body() {
        let message = frame(Offset(1700000000000, 3), Offset(1699999999999, 0), "{\"event\":1}");
        let (id, prev, at) = unframe(&message).expect("framed");
        assert_eq!((id, prev, &message[at..]), (Offset(1700000000000, 3), Offset(1699999999999, 0), "{\"event\":1}"));
        assert!(unframe("{\"event\":1}").is_none());
    }

    #[test]
    fn an_encoded_event_decodes_to_its_name_and_data() {
        let (room, user) = (RoomId::new(), UserId::new());
        let text = encode(&Event::room_joined(room, user));
        let incoming: Incoming<'_> = serde_json::from_str(&text).expect("decodes");
        assert_eq!(incoming.event, "room.joined");
        let data: serde_json::Value = serde_json::from_str(incoming.data.get()).expect("json");
        assert_eq!(data, serde_json::json!({"roomId": room, "userId": user}));
        assert!(incoming.sent_at_us > 0);
    }
}
