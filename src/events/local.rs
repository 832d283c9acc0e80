//! The in-process bus of the embedded mode: one replica, so a broadcast channel suffices,
//! with the event log in memory beside it.

use super::{EventBus, EventLog, Offset, Page, Signal, frame, now_us};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many messages a slow listener may fall behind before the live path drops some.
const CAPACITY: usize = 16 * 1024;

/// [`EventBus`] within one process; clones share the channel and the log.
#[derive(Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<String>,
    log: Arc<Mutex<Log>>,
}

struct Log {
    bounds: EventLog,
    /// The last id given out (kept when its entry is trimmed).
    last: Offset,
    /// Id, previous id, message.
    entries: VecDeque<(Offset, Offset, String)>,
}

impl LocalBus {
    pub fn new(log: EventLog) -> Self {
        Self::with_capacity(log, CAPACITY)
    }

    /// A bus whose live path holds `capacity` messages per listener.
    pub fn with_capacity(log: EventLog, capacity: usize) -> Self {
        let log = Log { bounds: log, last: Offset::default(), entries: VecDeque::new() };
        Self { tx: broadcast::channel(capacity).0, log: Arc::new(Mutex::new(log)) }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a message to the log and sends it to every listener (the memory store calls
    /// this under its lock).
    pub fn send(&self, body: &str) {
        let mut log = self.log();
        let ms = now_us() / 1000;
        let (prev, id) = (log.last, log.last.next(ms));
        log.last = id;
        log.entries.push_back((id, prev, body.to_owned()));
        let oldest = Offset(ms.saturating_sub(log.bounds.age.as_millis() as u64), 0);
        while log.entries.len() > log.bounds.max as usize || log.entries.front().is_some_and(|(at, ..)| *at < oldest) {
            log.entries.pop_front();
        }
        // No listener is not an error: nobody is listening yet.
        let _ = self.tx.send(frame(id, prev, body));
    }
}

impl EventBus for LocalBus {
    fn listen(&self) -> BoxStream<'static, Signal> {
        // Under the log's lock: nothing is sent between the head and the subscription.
        let log = self.log();
        let live = futures::stream::once(futures::future::ready(Signal::Live(log.last)));
        let messages = BroadcastStream::new(self.tx.subscribe()).map(|item| match item {
            Ok(message) => Signal::Message(message),
            Err(BroadcastStreamRecvError::Lagged(n)) => Signal::Lagged(n),
        });
        live.chain(messages).boxed()
    }

    fn is_listening(&self) -> bool {
        true
    }

    fn read(&self, after: Offset, limit: usize) -> BoxFuture<'static, Result<Page, String>> {
        let log = self.log();
        let start = log.entries.partition_point(|(at, ..)| *at <= after);
        // Complete when what follows `after` came right after it, or the log still has
        // `after` or an entry before it (or nothing follows).
        let complete = start > 0 || log.entries.front().is_none_or(|(_, prev, _)| *prev == after);
        let messages = log.entries.range(start..).take(limit).map(|(at, _, body)| (*at, body.clone())).collect();
        Box::pin(futures::future::ready(Ok(Page { messages, complete })))
    }
}
