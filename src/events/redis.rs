//! The Redis pub/sub bus: one channel per namespace that every replica subscribes to.

use super::{Delivery, EventBus};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// [`EventBus`] over Redis pub/sub; the store's scripts publish.
pub struct RedisBus {
    subscriber: SubscriberClient,
    channel: String,
    subscribed: Arc<AtomicBool>,
    /// A message each time the channel is live again after an interruption.
    gaps: broadcast::Sender<()>,
}

impl RedisBus {
    /// Subscribes on every connection of `subscriber`, which must not be connected yet (its
    /// first connection is announced like every later one). We subscribe ourselves rather
    /// than through `manage_subscriptions` so that readiness knows when the channel is live.
    pub fn new(subscriber: SubscriberClient, channel: String) -> Self {
        let subscribed = Arc::new(AtomicBool::new(false));
        let gaps = broadcast::channel(16).0;
        let connections = subscriber.reconnect_rx();
        tokio::spawn(subscribe_on_each_connection(
            subscriber.clone(),
            connections,
            channel.clone(),
            subscribed.clone(),
            gaps.clone(),
        ));
        Self { subscriber, channel, subscribed, gaps }
    }
}

/// fred announces each connection, the first included; a subscription on any but the first
/// follows an interruption, a gap in what this replica heard.
async fn subscribe_on_each_connection(
    subscriber: SubscriberClient,
    mut connections: broadcast::Receiver<fred::types::config::Server>,
    channel: String,
    subscribed: Arc<AtomicBool>,
    gaps: broadcast::Sender<()>,
) {
    let mut listened = false;
    loop {
        match connections.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => subscribed.store(false, Ordering::Release),
            Err(broadcast::error::RecvError::Closed) => return,
        }
        match subscriber.subscribe(channel.as_str()).await {
            Ok(()) => {
                subscribed.store(true, Ordering::Release);
                if std::mem::replace(&mut listened, true) {
                    let _ = gaps.send(());
                }
            }
            // The connection dropped again: the next one is announced.
            Err(e) => tracing::warn!(error = %e, "subscribing to the event channel failed"),
        }
    }
}

impl EventBus for RedisBus {
    fn subscribe(&self) -> BoxStream<'static, Delivery> {
        let channel = self.channel.clone();
        let gaps = BroadcastStream::new(self.gaps.subscribe()).map(|_| Delivery::Gap);
        let messages = BroadcastStream::new(self.subscriber.message_rx()).filter_map(move |item| {
            let delivery = match item {
                Ok(msg) if *msg.channel == *channel => msg.value.into_string().map(Delivery::Message),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(Delivery::Lagged(n)),
            };
            futures::future::ready(delivery)
        });
        futures::stream::select(messages, gaps).boxed()
    }

    fn is_subscribed(&self) -> bool {
        self.subscriber.is_connected() && self.subscribed.load(Ordering::Acquire)
    }
}
