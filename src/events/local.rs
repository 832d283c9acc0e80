//! The in-process bus of the embedded mode: one replica, so a broadcast channel suffices.

use super::{BusUnavailable, Delivery, EventBus};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many messages a slow subscriber may fall behind before it loses some.
const CAPACITY: usize = 16 * 1024;

/// [`EventBus`] within one process.
pub struct LocalBus {
    tx: broadcast::Sender<String>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, message: String) -> Result<(), BusUnavailable> {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.tx.send(message);
        Ok(())
    }

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
