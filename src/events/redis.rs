//! The Redis pub/sub bus: one channel per namespace that every replica subscribes to.

use super::{Delivery, EventBus};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
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
/// follows an interruption, a gap in what this replica heard. A SUBSCRIBE that fred reports
/// failed is tried again with backoff. (fred does not report every refusal: one refused by
/// an ACL came back `Ok`; confirming the subscription end to end is the event bus's next step.)
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
            Ok(_) | Err(RecvError::Lagged(_)) => subscribed.store(false, Ordering::Release),
            Err(RecvError::Closed) => return,
        }
        let (mut delay, mut warned) = (Duration::from_millis(100), false);
        while let Err(e) = subscriber.subscribe(channel.as_str()).await {
            if !std::mem::replace(&mut warned, true) {
                tracing::warn!(error = %e, "subscribing to the event channel failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // A new connection: try on it at once; the client shut down: stop.
                next = connections.recv() => if let Err(RecvError::Closed) = next { return },
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        subscribed.store(true, Ordering::Release);
        if std::mem::replace(&mut listened, true) {
            let _ = gaps.send(());
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
