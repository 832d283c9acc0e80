//! What the relay reads: every message of the bus once, in the order it was published,
//! whatever its live path dropped. Pub/sub delivers at most once; a message in flight when
//! a subscription drops is gone. Each message says which one came before it, and each
//! (re)subscription which was last, so a gap shows at the next message or subscription; it
//! is then closed from the event log, where the message was appended in the same atomic
//! step as its change: an event survives exactly when its change does.

use super::{EventBus, Offset, Page, Signal, unframe};
use crate::telemetry::metrics;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Logged messages read, and delivered at once, while closing a gap: half of what a
/// socket's buffer holds (128 packets), so that the burst fits in every socket's buffer.
const PAGE: usize = 64;
/// The pause after each full page of a gap: every socket drains its page meanwhile (a
/// polling client needs a round trip), and live messages wait in the subscription's
/// buffer. 3,200 events a second: a gap closes faster than events are published.
const PACE: Duration = Duration::from_millis(20);

/// What the relay receives.
#[derive(Debug)]
pub enum Delivery {
    /// An event's bus message (see [`Incoming`](super::Incoming)).
    Message(String),
    /// Messages were missed that the log no longer had: nothing on this replica can
    /// deliver them.
    Lost,
}

/// A bus, read exactly once and in order.
pub struct Feed {
    bus: Arc<dyn EventBus>,
    /// Set while a gap is open and the log cannot be read.
    unreadable: Arc<AtomicBool>,
}

impl Feed {
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus, unreadable: Arc::default() }
    }

    /// Whether this replica hears every event now (readiness): its subscription is live
    /// and it is not stuck behind a gap it cannot read.
    pub fn is_ready(&self) -> bool {
        self.bus.is_listening() && !self.unreadable.load(Ordering::Acquire)
    }

    /// Every message from now on.
    pub fn subscribe(&self) -> BoxStream<'static, Delivery> {
        let reader = Reader {
            signals: self.bus.listen(),
            bus: self.bus.clone(),
            unreadable: self.unreadable.clone(),
            last: None,
            ready: VecDeque::new(),
            gap: None,
            paced: false,
        };
        futures::stream::unfold(reader, |mut reader| async move {
            let delivery = reader.next().await?;
            Some((delivery, reader))
        })
        .boxed()
    }
}

/// A gap being closed from the log, a page at a time.
struct Gap {
    /// The live message that showed the gap: delivered after it, unless the log had it.
    shown_by: Option<String>,
    recovered: usize,
    complete: bool,
}

struct Reader {
    signals: BoxStream<'static, Signal>,
    bus: Arc<dyn EventBus>,
    unreadable: Arc<AtomicBool>,
    /// The id of the last message delivered (or, at first, of the log's last entry when
    /// the subscription became live).
    last: Option<Offset>,
    ready: VecDeque<Delivery>,
    gap: Option<Gap>,
    /// The last page read was full and delivered: pause before the next.
    paced: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Some(delivery);
            }
            if self.gap.is_some() {
                if std::mem::take(&mut self.paced) {
                    tokio::time::sleep(PACE).await;
                }
                self.read_page().await;
                continue;
            }
            match self.signals.next().await? {
                Signal::Message(text) => self.accept(text),
                Signal::Live(head) => match self.last {
                    None => self.last = Some(head),
                    Some(last) if last < head => self.open_gap(None),
                    Some(_) => {}
                },
                Signal::Lagged(n) => {
                    tracing::debug!(messages = n, "the relay fell behind the bus; reading the log");
                    self.open_gap(None);
                }
            }
        }
    }

    /// A live message: delivered when it is the next one, dropped when it was delivered
    /// already (from the log), held while a gap before it is closed.
    fn accept(&mut self, text: String) {
        let Some((id, prev, body)) = unframe(&text) else {
            return tracing::warn!("ignoring an unframed bus message");
        };
        match self.last {
            Some(last) if id <= last => {}
            Some(last) if prev != last => self.open_gap(Some(text)),
            _ => self.deliver(id, text, body),
        }
    }

    /// Delivers a published message (its body, from byte `body` on) as the one after `last`.
    fn deliver(&mut self, id: Offset, mut text: String, body: usize) {
        text.drain(..body);
        self.last = Some(id);
        self.ready.push_back(Delivery::Message(text));
    }

    fn open_gap(&mut self, shown_by: Option<String>) {
        if self.last.is_none() {
            // Nothing was heard yet, so nothing can have been missed after it.
            return;
        }
        self.gap = Some(Gap { shown_by, recovered: 0, complete: true });
    }

    /// Reads the next page of the log after the last message delivered, retrying until
    /// the log answers; the gap is closed once a page is not full.
    async fn read_page(&mut self) {
        let (Some(gap), Some(after)) = (&mut self.gap, self.last) else { return };
        let page = read(self.bus.as_ref(), after, &self.unreadable).await;
        let full = page.messages.len() == PAGE;
        if !page.complete {
            // Said before what the log still had, which follows the hole.
            gap.complete = false;
            self.ready.push_back(Delivery::Lost);
        }
        for (id, body) in page.messages {
            if id > after && self.last.is_none_or(|last| id > last) {
                self.last = Some(id);
                gap.recovered += 1;
                self.ready.push_back(Delivery::Message(body));
            }
        }
        if full {
            // Resumed after the page is delivered (the reader reads only when nothing is ready).
            self.paced = true;
            return;
        }
        let Some(gap) = self.gap.take() else { return };
        if let Some(text) = gap.shown_by {
            // Not in the log (a failover lost it there): it was published all the same.
            if let Some((id, _, body)) = unframe(&text).filter(|(id, ..)| self.last.is_none_or(|last| *id > last)) {
                self.deliver(id, text, body);
            }
        }
        metrics::relay_gap(gap.complete);
        if gap.complete {
            tracing::info!(events = gap.recovered, "closed a gap in the event subscription from the event log");
        } else {
            tracing::warn!(
                events = gap.recovered,
                "the event subscription missed events that the event log no longer keeps; they are lost here"
            );
        }
    }
}

/// Reads a page of the log, trying again with backoff while it cannot be read (meanwhile
/// the replica is not ready).
async fn read(bus: &dyn EventBus, after: Offset, unreadable: &AtomicBool) -> Page {
    let mut delay = Duration::from_millis(100);
    loop {
        match bus.read(after, PAGE).await {
            Ok(page) => {
                unreadable.store(false, Ordering::Release);
                return page;
            }
            Err(e) => {
                if !unreadable.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "the event log could not be read to close a gap; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventLog, LocalBus};

    async fn take(stream: &mut BoxStream<'static, Delivery>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(Delivery::Message(m))) => out.push(m),
                Ok(Some(Delivery::Lost)) => out.push("lost".into()),
                other => panic!("expected {n} deliveries, got {out:?} then {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn messages_dropped_by_the_live_path_are_read_from_the_log_once_in_order() {
        // A live path that holds 2 messages: sending 10 at once loses some of them there,
        // and the last two arrive both live and from the log.
        let bus = LocalBus::with_capacity(EventLog { max: 100, age: Duration::from_secs(60) }, 2);
        let feed = Feed::new(Arc::new(bus.clone()));
        let mut stream = feed.subscribe();
        let sent: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        sent.iter().for_each(|m| bus.send(m));
        bus.send("after");
        let mut all = sent.clone();
        all.push("after".into());
        assert_eq!(take(&mut stream, 11).await, all);
        assert!(feed.is_ready());
    }

    #[tokio::test]
    async fn a_gap_the_log_no_longer_covers_is_said() {
        let bus = LocalBus::with_capacity(EventLog { max: 3, age: Duration::from_secs(60) }, 2);
        let feed = Feed::new(Arc::new(bus.clone()));
        let mut stream = feed.subscribe();
        bus.send("first");
        assert_eq!(take(&mut stream, 1).await, ["first"]);
        (0..10).for_each(|i| bus.send(&format!("m{i}")));
        // m7..m9 are what the log kept of the ten.
        assert_eq!(take(&mut stream, 4).await, ["lost", "m7", "m8", "m9"]);
    }
}
