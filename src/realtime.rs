//! Socket.IO: the layer clients connect to, and the relay task, the only code that emits
//! to sockets. Every event reaches a replica's sockets through the bus, its own included,
//! so each client hears each event exactly once whichever replica caused it.

use crate::domain::Event;
use crate::events::{self, Delivery, EventBus, Incoming};
use crate::telemetry::{metrics, trace};
use futures::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, TransportType, extract::SocketRef};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The largest Engine.IO payload a client may send (`maxPayload`, advertised in the
/// handshake): polling enforces it with a 413, websocket by closing the socket, and no
/// connection buffers more than this.
const MAX_PAYLOAD: usize = 100_000;

/// The Socket.IO layer (path `/socket.io/`) and the handle that emits to its sockets.
pub fn layer() -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .max_payload(MAX_PAYLOAD as u64)
        .ws_max_message_size(MAX_PAYLOAD)
        .ws_max_frame_size(MAX_PAYLOAD)
        // Clients only listen: what they send is pings and acks, a few bytes. The codec's
        // 4 KiB default read buffer is most of an idle socket's cost (L4: 26.6 → 22.7 KiB).
        .ws_read_buffer_size(256)
        .build_layer();
    // The default namespace must exist before anything emits to it. Clients only listen.
    io.ns("/", async |_: SocketRef| {});
    (layer, io)
}

/// Keeps the connected-clients gauge current, by each socket's transport now (a
/// polling client that upgraded counts as websocket).
pub async fn count_clients(io: SocketIo) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let sockets = io.sockets();
        let websocket = sockets.iter().filter(|s| s.transport_type() == TransportType::Websocket).count();
        metrics::socket_clients(sockets.len() - websocket, websocket);
    }
}

/// The one argument of every emitted event.
#[derive(Serialize)]
struct Payload<'a> {
    data: &'a RawValue,
}

/// Subscribes to the bus now, then emits each message to this replica's sockets.
pub fn spawn_relay(bus: &dyn EventBus, io: SocketIo) -> JoinHandle<()> {
    let mut deliveries = bus.subscribe();
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.next().await {
            match delivery {
                Delivery::Message(text) => emit(&io, &text).await,
                Delivery::Lagged(n) => {
                    metrics::events_dropped(n);
                    tracing::warn!(events = n, "relay fell behind the bus; events were dropped");
                }
            }
        }
    })
}

async fn emit(io: &SocketIo, text: &str) {
    let incoming: Incoming<'_> = match serde_json::from_str(text) {
        Ok(incoming) => incoming,
        Err(e) => return tracing::warn!(error = %e, "ignoring an undecodable bus message"),
    };
    let Some(name) = Event::known_name(incoming.event) else {
        return tracing::warn!(event = incoming.event, "ignoring an unknown event");
    };
    let span =
        tracing::info_span!("relay", otel.name = %format_args!("emit {name}"), otel.kind = "consumer", event = name);
    if let Some(traceparent) = incoming.traceparent {
        trace::continue_from(&span, traceparent);
    }
    if let Err(e) = io.emit(name, &Payload { data: incoming.data }).instrument(span).await {
        // A socket whose buffer is full (a client that does not keep up) misses the event.
        if let socketioxide::BroadcastError::Socket(missed) = &e {
            metrics::events_dropped(missed.len() as u64);
        }
        tracing::warn!(event = name, error = %e, "emitting to local sockets failed");
    }
    let delay = events::now_us().saturating_sub(incoming.sent_at_us);
    metrics::event_emitted(name, Duration::from_micros(delay));
}
