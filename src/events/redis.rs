//! The Redis bus: one pub/sub channel per namespace that every replica subscribes to, the
//! live path; and the namespace's event log, a stream the store's scripts append to.

use super::{EventBus, Offset, Page, Signal};
use crate::store::Keys;
use crate::telemetry::metrics;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Publishes a probe on the channel (ARGV[1]) that names the log's last entry (KEYS[2],
/// kept beside the log, see prelude.lua): in the same atomic step, so every message after that
/// entry follows the probe on the channel. A replica that hears its probe knows its
/// subscription is live, and from where.
const PROBE: &str = r"
local last = redis.call('GET', KEYS[2]) or '0-0'
redis.call('PUBLISH', ARGV[1], 'probe ' .. ARGV[2] .. ' ' .. last)
";

/// Reads at most ARGV[2] entries of the log (KEYS[1]) after ARGV[1]: returns whether they
/// follow it with nothing trimmed in between ('1' or '0'), then each entry's id and body.
const READ: &str = r"
local after = ARGV[1]
local page = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', ARGV[2])
-- An entry's fields are {'e', body, 'p', the id before it} (prelude.lua).
local complete = #page == 0 or page[1][2][4] == after
  or #redis.call('XRANGE', KEYS[1], '-', after, 'COUNT', 1) > 0
local out = {complete and '1' or '0'}
for _, entry in ipairs(page) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
";

/// How long a probe may take to come back before the subscription is tried again.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// [`EventBus`] over Redis pub/sub and a stream; the store's scripts publish and append.
#[derive(Clone)]
pub struct RedisBus {
    subscriber: SubscriberClient,
    client: Client,
    options: Options,
    channel: String,
    /// The log and its last id.
    log: [String; 2],
    /// The Cluster slot of the namespace, where the log lives.
    slot: u16,
    /// Set once a probe came back on the current connection.
    subscribed: Arc<AtomicBool>,
}

impl RedisBus {
    /// Subscribes on every connection of `subscriber`, which must not be connected yet (its
    /// first connection is announced like every later one), and confirms each subscription
    /// with a probe sent through `client`.
    pub fn new(subscriber: SubscriberClient, client: Client, options: Options, keys: &Keys) -> Self {
        let log = keys.log();
        let bus = Self {
            subscriber,
            client,
            options,
            channel: keys.channel(),
            slot: fred::util::redis_keyslot(log[0].as_bytes()),
            log,
            subscribed: Arc::new(AtomicBool::new(false)),
        };
        let connections = bus.subscriber.reconnect_rx();
        tokio::spawn(bus.clone().subscribe_on_each_connection(connections));
        bus
    }

    /// Runs one of the scripts above, with the log as its key, where the log lives. (These
    /// run only after a (re)subscription or a gap: sent whole, never cached.)
    async fn eval(&self, op: &'static str, script: &str, args: [String; 2]) -> FredResult<Value> {
        let command = CustomCommand::new_static("EVAL", ClusterHash::Custom(self.slot), false);
        let [a, b] = args;
        let [log, last] = self.log.clone();
        let args = vec![script.to_owned(), "2".to_owned(), log, last, a, b];
        let started = Instant::now();
        let reply = self.client.with_options(&self.options).custom(command, args).await;
        metrics::redis_command(op, started.elapsed(), reply.is_ok());
        reply
    }

    /// fred announces each connection, the first included. On each, SUBSCRIBE, then a probe
    /// until one comes back. fred resolves a SUBSCRIBE once it is written, and drops Redis's
    /// answer, refusals included (an ACL's NOPERM): only the probe says the channel is live.
    async fn subscribe_on_each_connection(self, mut connections: broadcast::Receiver<fred::types::config::Server>) {
        let nonces = AtomicU64::new(0);
        loop {
            match connections.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => self.subscribed.store(false, Ordering::Release),
                Err(RecvError::Closed) => return,
            }
            let (mut delay, mut warned) = (Duration::from_millis(100), false);
            loop {
                let nonce = format!("{:x}-{}", std::process::id(), nonces.fetch_add(1, Ordering::Relaxed));
                match self.confirm(&nonce).await {
                    Ok(()) => break,
                    Err(e) if !std::mem::replace(&mut warned, true) => {
                        tracing::warn!(error = %e, "subscribing to the event channel failed; retrying");
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    // A new connection: try on it at once; the client shut down: stop.
                    next = connections.recv() => if let Err(RecvError::Closed) = next { return },
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            self.subscribed.store(true, Ordering::Release);
        }
    }

    /// Subscribes, then publishes a probe and waits for it to come back.
    async fn confirm(&self, nonce: &str) -> Result<(), String> {
        let mut messages = self.subscriber.message_rx();
        self.subscriber.subscribe(self.channel.as_str()).await.map_err(|e| e.to_string())?;
        // The probe goes through the data client: wait for its connection rather than fail.
        if !self.client.is_connected() {
            tokio::time::timeout(PROBE_WAIT, self.client.wait_for_connect())
                .await
                .map_err(|_| "Redis cannot be reached".to_owned())?
                .map_err(|e| e.to_string())?;
        }
        self.eval("probe", PROBE, [self.channel.clone(), nonce.to_owned()]).await.map_err(|e| e.to_string())?;
        let mine = |value: &Value| value.as_str().as_deref().and_then(probe).is_some_and(|(n, _)| n == nonce);
        let came_back = async {
            loop {
                match messages.recv().await {
                    Ok(msg) if *msg.channel == *self.channel && mine(&msg.value) => return true,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return false,
                }
            }
        };
        match tokio::time::timeout(PROBE_WAIT, came_back).await {
            Ok(true) => Ok(()),
            _ => Err("the subscription's probe did not come back".to_owned()),
        }
    }
}

/// A probe (`probe <nonce> <head>`) taken apart: its nonce, and the log's last entry when
/// it was sent.
fn probe(text: &str) -> Option<(&str, Offset)> {
    let (nonce, head) = text.strip_prefix("probe ")?.split_once(' ')?;
    Some((nonce, Offset::parse(head)?))
}

impl EventBus for RedisBus {
    fn listen(&self) -> BoxStream<'static, Signal> {
        let channel = self.channel.clone();
        BroadcastStream::new(self.subscriber.message_rx())
            .filter_map(move |item| {
                let signal = match item {
                    Ok(msg) if *msg.channel == *channel => {
                        msg.value.into_string().map(|text| match probe(&text) {
                            // Any replica's probe says where the log stood at this point.
                            Some((_, head)) => Signal::Live(head),
                            None => Signal::Message(text),
                        })
                    }
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(n)) => Some(Signal::Lagged(n)),
                };
                futures::future::ready(signal)
            })
            .boxed()
    }

    fn is_listening(&self) -> bool {
        self.subscriber.is_connected() && self.subscribed.load(Ordering::Acquire)
    }

    fn read(&self, after: Offset, limit: usize) -> BoxFuture<'static, Result<Page, String>> {
        let bus = self.clone();
        Box::pin(async move {
            let reply = bus.eval("log_read", READ, [after.to_string(), limit.to_string()]).await;
            let reply: Vec<String> = reply.and_then(Value::convert).map_err(|e| format!("log_read: {e}"))?;
            let (complete, entries) = reply.split_first().ok_or("log_read: an empty reply")?;
            let messages =
                entries.chunks_exact(2).filter_map(|pair| Some((Offset::parse(&pair[0])?, pair[1].clone()))).collect();
            Ok(Page { messages, complete: complete == "1" })
        })
    }
}
