//! The event bus: how a change stored by one replica reaches the relay of every replica
//! (the publisher's own included). The store publishes each event in the same atomic step
//! as its change; the bus delivers. It carries text; [`encode`] and [`Incoming`] define
//! that text, so memory and Redis modes share every line after the store.

mod local;
mod redis;

pub use local::LocalBus;
pub use redis::RedisBus;

use crate::domain::Event;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a subscriber receives.
#[derive(Debug)]
pub enum Delivery {
    Message(String),
    /// The subscriber fell this many messages behind and they were dropped.
    Lagged(u64),
}

/// Delivers encoded events, published by the store, to every replica.
pub trait EventBus: Send + Sync {
    /// Every message published from now on, by any replica.
    fn subscribe(&self) -> BoxStream<'static, Delivery>;
    /// Whether messages published now will reach [`subscribe`](Self::subscribe)rs (readiness).
    fn is_subscribed(&self) -> bool;
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
    use crate::domain::{RoomId, UserId};

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
