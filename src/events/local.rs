//! The in-process bus of the embedded mode: one replica, so a broadcast channel suffices.

use super::{Delivery, EventBus};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many messages a slow subscriber may fall behind before it loses some.
const CAPACITY: usize = 16 * 1024;

/// [`EventBus`] within one process; clones share the channel.
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<String>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self { tx: broadcast::channel(CAPACITY).0 }
    }

    /// Sends a message to every subscriber (the memory store calls this under its lock).
    pub fn send(&self, message: &str) {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.tx.send(message.to_owned());
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus for LocalBus {
    fn subscribe(&self) -> BoxStream<'static, Delivery> {
        BroadcastStream::new(self.tx.subscribe())
            .map(|item| match item {
                Ok(message) => Delivery::Message(message),
                Err(BroadcastStreamRecvError::Lagged(n)) => Delivery::Lagged(n),
            })
            .boxed()
    }

    fn is_subscribed(&self) -> bool {
        true
    }
}
