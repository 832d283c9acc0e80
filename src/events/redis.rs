//! The Redis pub/sub bus: one channel per namespace that every replica subscribes to.

use super::{BusUnavailable, Delivery, EventBus};
use crate::telemetry::metrics;
use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::Options;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::Instrument;

/// [`EventBus`] over Redis pub/sub.
pub struct RedisBus {
    publisher: Client,
    options: Options,
    subscriber: SubscriberClient,
    channel: String,
    subscribed: Arc<AtomicBool>,
}

impl RedisBus {
    /// Subscribes now and after every reconnection. We re-subscribe ourselves rather than
    /// through `manage_subscriptions` so that readiness knows when the channel is live again.
    pub fn new(publisher: Client, options: Options, subscriber: SubscriberClient, channel: String) -> Self {
        let subscribed = Arc::new(AtomicBool::new(false));
        tokio::spawn(resubscribe(subscriber.clone(), channel.clone(), subscribed.clone()));
        Self { publisher, options, subscriber, channel, subscribed }
    }
}

async fn resubscribe(subscriber: SubscriberClient, channel: String, subscribed: Arc<AtomicBool>) {
    let mut reconnects = subscriber.reconnect_rx();
    loop {
        // Queued until the connection is up; fails only if the client was shut down.
        match subscriber.subscribe(channel.as_str()).await {
            Ok(()) => subscribed.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "subscribing to the event channel failed"),
        }
        match reconnects.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                subscribed.store(false, Ordering::Release);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, message: String) -> Result<(), BusUnavailable> {
        let started = Instant::now();
        let client = self.publisher.with_options(&self.options);
        let span =
            tracing::info_span!("redis", otel.name = "publish", otel.kind = "producer", db.system.name = "redis");
        let result = client.publish::<i64, _, _>(self.channel.as_str(), message).instrument(span).await;
        metrics::redis_command("publish", started.elapsed(), result.is_ok());
        result.map(drop).map_err(|e| BusUnavailable(e.to_string()))
    }

    fn subscribe(&self) -> BoxStream<'static, Delivery> {
        let channel = self.channel.clone();
        BroadcastStream::new(self.subscriber.message_rx())
            .filter_map(move |item| {
                let delivery = match item {
                    Ok(msg) if *msg.channel == *channel => msg.value.into_string().map(Delivery::Message),
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(n)) => Some(Delivery::Lagged(n)),
                };
                futures::future::ready(delivery)
            })
            .boxed()
    }

    fn is_subscribed(&self) -> bool {
        self.subscriber.is_connected() && self.subscribed.load(Ordering::Acquire)
    }
}
