//! `AUTH=token` on Socket.IO (sections 8 and 9 of the contract): a connection proves who
//! it is in the connect packet; each event reaches only the connections of its audience on
//! this replica; a client that reconnects with the last offset it saw first receives what
//! it missed, then the live stream, with no gap and no duplicate between the two.
//!
//! A connection that cannot take an event (its socket's buffer is full), or whose replica
//! missed events on the bus, catches up by itself: it holds live events, reads what it
//! missed from its user's history page by page as its socket drains, then sends what it
//! held. What no history keeps (events to everyone, every event of a server connection) is
//! owed as `session.resync` instead of lost in silence.

use crate::domain::{Actor, Event, UserId};
use crate::events::{Incoming, Offset};
use crate::service::{self, Service};
use crate::telemetry::metrics;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// History events read at once while catching up: about what a socket's buffer (128
/// packets) takes, so a client that reads slowly costs reads of this size, not of the
/// whole history, each time it drains.
const PAGE: usize = 64;
/// How soon a connection whose socket was full tries again: it is caught up within about
/// this long after its socket can take events again, whatever its user does.
const RETRY: Duration = Duration::from_millis(250);
/// Live events one connection holds while it catches up; beyond, they are given up and
/// `session.resync` is owed (a client that never reads costs at most this much).
const HELD_MAX: usize = 256;
/// History reads of catch-ups in flight at once on a replica: after a gap in the bus,
/// thousands of connections catch up through this many reads, not all at once.
const READS: usize = 16;
/// After a gap in the bus, the `session.resync`s owed (each a reload through the REST API)
/// are spread over this much time per connection, up to [`RESYNC_SPREAD_MAX`].
const RESYNC_SPREAD_PER_CONN: Duration = Duration::from_millis(1);
const RESYNC_SPREAD_MAX: Duration = Duration::from_secs(10);
/// A connection admitted by the middleware whose transport closed before its connect was
/// acknowledged never reaches the connect handler: after this long it is forgotten.
const ADMIT_GRACE: Duration = Duration::from_secs(1);

/// What a client sends in the connect packet: `io(url, { auth: { token, offset } })`.
#[derive(Deserialize)]
struct Credentials {
    token: Option<String>,
    offset: Option<String>,
}

/// Why a connection was refused: the client's `connect_error` message.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("unauthorized")]
    Unauthorized,
    /// The store could not say whether the token's user exists; retrying may succeed.
    #[error("unavailable")]
    Unavailable,
}

/// One event argument: `{ data, offset }` (no offset for events to everyone, and for
/// server connections).
#[derive(Serialize)]
struct Payload<'a> {
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<&'a str>,
}

/// One connection of a user, and where it is in the user's history.
struct Conn {
    socket: SocketRef,
    /// `None`: a server connection (every event, live, without offsets).
    user: Option<UserId>,
    cursor: Mutex<Cursor>,
    /// The replica's count of connections holding live events (the gauge).
    catching_up: Arc<AtomicUsize>,
}

/// An event waiting for a connection to catch up: offset, name, data.
type Held = (Option<Offset>, &'static str, Box<RawValue>);

#[derive(Default)]
struct Cursor {
    /// The offset of the last event this connection was sent.
    last: Option<Offset>,
    /// `Some` while the connection catches up: live events wait here, in order (with their
    /// offset; none for events to everyone).
    held: Option<Vec<Held>>,
    /// Events were missed that no history gives back: `session.resync` goes first.
    lost: bool,
    /// The replica missed events after this catch-up read the history: read it again.
    stale: bool,
}

impl Conn {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        lock(&self.cursor)
    }

    /// Holds live events from now on; `true` when it was not holding yet (the caller then
    /// starts the catch-up).
    fn hold(&self, cursor: &mut Cursor) -> bool {
        if cursor.held.is_some() {
            return false;
        }
        cursor.held = Some(Vec::new());
        self.catching_up.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Keeps a live event while holding; over [`HELD_MAX`] what was held is given up.
    fn keep(cursor: &mut Cursor, event: Held) {
        let Some(held) = &mut cursor.held else { return };
        if held.len() >= HELD_MAX {
            metrics::events_dropped(held.len() as u64);
            held.clear();
            cursor.lost = true;
        }
        held.push(event);
    }

    /// Sends an event now unless the connection already has it; `false` when the socket
    /// could not take it. Events without offset, and every event of a server connection,
    /// go without offset.
    fn send(&self, cursor: &mut Cursor, name: &'static str, offset: Option<Offset>, data: &RawValue) -> bool {
        let Some(offset) = offset.filter(|_| self.user.is_some()) else {
            return emit(&self.socket, name, data, None);
        };
        if cursor.last.is_some_and(|last| offset <= last) {
            return true;
        }
        let sent = emit(&self.socket, name, data, Some(&offset.to_string()));
        if sent {
            cursor.last = Some(offset);
        }
        sent
    }

    /// Whether the user's history can give this connection what it misses from now on:
    /// not for a server connection, nor before the connection's first offset.
    fn replayable(&self, cursor: &Cursor) -> bool {
        self.user.is_some() && cursor.last.is_some()
    }

    /// The socket could not take an event: hold from now on; `true` when the caller must
    /// start the catch-up. An event the history does not keep for this connection (see
    /// [`Conn::replayable`]; none to everyone) is owed as `session.resync`.
    fn fall_behind(&self, cursor: &mut Cursor, kept: bool) -> bool {
        cursor.lost |= !kept || !self.replayable(cursor);
        self.hold(cursor)
    }

    /// Sends what was held, in order, and lets live events through again: `false` (and
    /// the rest still held) when the socket fills up first.
    fn flush(&self, cursor: &mut Cursor) -> bool {
        let Some(mut held) = cursor.held.take() else { return true };
        let sent = held.iter().take_while(|(at, name, data)| self.send(cursor, name, *at, data)).count();
        if sent < held.len() {
            held.drain(..sent);
            cursor.held = Some(held);
            return false;
        }
        self.catching_up.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Sends a page of the history in order; `false` when the socket filled up.
    fn send_page(&self, cursor: &mut Cursor, page: &[(String, String)]) -> bool {
        for (at, event) in page {
            let (Some(at), Ok(event)) = (Offset::parse(at), serde_json::from_str::<Incoming<'_>>(event)) else {
                continue;
            };
            let Some(name) = Event::known_name(event.event) else { continue };
            if !self.send(cursor, name, Some(at), event.data) {
                return false;
            }
        }
        true
    }
}

impl Drop for Conn {
    /// A connection gone while it held (closed before its catch-up ended) is uncounted.
    fn drop(&mut self) {
        if self.cursor.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).held.is_some() {
            self.catching_up.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// This replica's authenticated connections, by user, and its server connections.
pub struct Audiences {
    users: Mutex<HashMap<UserId, Vec<Arc<Conn>>>>,
    servers: Mutex<Vec<Arc<Conn>>>,
    /// Connections admitted and not yet acknowledged, for their connect handler.
    admitted: Mutex<HashMap<Sid, Arc<Conn>>>,
    /// How many connections hold live events while they catch up.
    catching_up: Arc<AtomicUsize>,
    /// Bounds the history reads of catch-ups in flight (see [`READS`]).
    reads: Semaphore,
    /// Reads the histories that connections catch up from.
    service: OnceLock<Arc<Service>>,
}

impl Default for Audiences {
    fn default() -> Self {
        Self {
            users: Mutex::default(),
            servers: Mutex::default(),
            admitted: Mutex::default(),
            catching_up: Arc::default(),
            reads: Semaphore::new(READS),
            service: OnceLock::new(),
        }
    }
}

/// How many connections a replica tracks, and how many of them are catching up.
#[derive(Clone, Copy, Debug)]
pub struct Tracked {
    pub connections: usize,
    pub catching_up: usize,
}

impl Audiences {
    /// Serves the default namespace: the token (and its user) checked before the socket
    /// connects, then the connection placed in its audience at once, before anything else
    /// can be emitted, and its missed events replayed when it gave an offset.
    pub fn serve(self: &Arc<Self>, io: &SocketIo, service: Arc<Service>) {
        let _ = self.service.set(service.clone());
        // Socket.IO acknowledges the connect after the middleware and runs the handler
        // later, on its own task: the middleware places the connection in its audience,
        // holding what arrives, and the handler sends the replay and then what was held.
        let audiences = self.clone();
        let admit = async move |socket: SocketRef, TryData(auth): TryData<Credentials>| -> Result<(), Refused> {
            let token = auth.ok().and_then(|a| a.token).ok_or(Refused::Unauthorized)?;
            match service.authenticate(&token).await {
                Ok(actor) => {
                    audiences.admit(&socket, actor);
                    Ok(())
                }
                Err(service::Error::Store(_)) => Err(Refused::Unavailable),
                Err(_) => Err(Refused::Unauthorized),
            }
        };
        let audiences = self.clone();
        let connected = async move |socket: SocketRef, TryData(auth): TryData<Credentials>| {
            audiences.connected(&socket, auth.ok().and_then(|a| a.offset)).await;
        };
        io.ns("/", connected.with(admit));
    }

    /// Places a connection in its audience before it is acknowledged, holding its events.
    /// If its transport closed while the token was checked, Socket.IO never acknowledges it
    /// nor runs a handler: it is forgotten after [`ADMIT_GRACE`].
    fn admit(self: &Arc<Self>, socket: &SocketRef, actor: Actor) {
        let sid = socket.id;
        let conn = Arc::new(Conn {
            socket: socket.clone(),
            user: match actor {
                Actor::User(user) => Some(user),
                Actor::Server | Actor::Anyone => None,
            },
            cursor: Mutex::default(),
            catching_up: self.catching_up.clone(),
        });
        conn.hold(&mut conn.cursor());
        let user = conn.user;
        match user {
            Some(user) => self.users_lock().entry(user).or_default().push(conn.clone()),
            None => self.servers_lock().push(conn.clone()),
        }
        lock(&self.admitted).insert(sid, conn);
        let audiences = self.clone();
        socket.on_disconnect(async move || audiences.leave(sid, user));
        let (audiences, socket) = (self.clone(), socket.clone());
        tokio::spawn(async move {
            tokio::time::sleep(ADMIT_GRACE).await;
            if !socket.connected() && lock(&audiences.admitted).contains_key(&sid) {
                audiences.leave(sid, user);
            }
        });
    }

    /// The connection is acknowledged: it gets what it missed after `offset` (if given),
    /// then the events held since it was admitted.
    async fn connected(self: &Arc<Self>, socket: &SocketRef, offset: Option<String>) {
        let Some(conn) = lock(&self.admitted).remove(&socket.id) else {
            return;
        };
        if !socket.connected() {
            return self.leave(socket.id, conn.user);
        }
        let from = match (conn.user, offset) {
            (Some(_), Some(offset)) => {
                let from = Offset::parse(&offset);
                // Not an offset at all: the client reloads instead.
                conn.cursor().lost |= from.is_none();
                from
            }
            _ => None,
        };
        self.catch_up(conn, Duration::ZERO, from).await;
    }

    /// Forgets a closed connection (of `user`, or a server connection).
    fn leave(&self, sid: Sid, user: Option<UserId>) {
        lock(&self.admitted).remove(&sid);
        let Some(user) = user else {
            return self.servers_lock().retain(|conn| conn.socket.id != sid);
        };
        let mut users = self.users_lock();
        if let Some(conns) = users.get_mut(&user) {
            conns.retain(|conn| conn.socket.id != sid);
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    fn users_lock(&self) -> MutexGuard<'_, HashMap<UserId, Vec<Arc<Conn>>>> {
        lock(&self.users)
    }

    fn servers_lock(&self) -> MutexGuard<'_, Vec<Arc<Conn>>> {
        lock(&self.servers)
    }

    /// The connections this replica tracks now (the gauges).
    pub fn tracked(&self) -> Tracked {
        let users: usize = self.users_lock().values().map(Vec::len).sum();
        Tracked { connections: users + self.servers_lock().len(), catching_up: self.catching_up.load(Ordering::SeqCst) }
    }

    /// Emits an addressed event to its users' connections here, each with its own offset,
    /// and to the server connections; an event to everyone to every connection here.
    pub fn deliver(self: &Arc<Self>, name: &'static str, incoming: &Incoming<'_>) {
        let Some(to) = &incoming.to else {
            self.deliver_to_everyone(name, incoming.data);
            if name == "user.deleted" {
                self.erased(incoming.data);
            }
            return;
        };
        let data = incoming.data;
        for (user, offset) in to {
            let (Some(user), Some(offset)) = (UserId::parse(user), Offset::parse(offset)) else {
                continue;
            };
            let conns = self.users_lock().get(&user).cloned().unwrap_or_default();
            for conn in conns {
                let mut cursor = conn.cursor();
                if cursor.held.is_some() {
                    Conn::keep(&mut cursor, (Some(offset), name, data.to_owned()));
                } else if !conn.send(&mut cursor, name, Some(offset), data) && conn.fall_behind(&mut cursor, true) {
                    drop(cursor);
                    self.spawn_catch_up(conn, RETRY);
                }
            }
        }
        let servers = self.servers_lock().clone();
        for conn in servers {
            self.send_live(conn, name, data);
        }
    }

    /// Each connection in turn, not one Socket.IO broadcast: a socket that cannot take the
    /// event must be known (it is owed `session.resync`), and a connection that catches up
    /// holds the event behind those it follows.
    fn deliver_to_everyone(self: &Arc<Self>, name: &'static str, data: &RawValue) {
        for conn in self.all() {
            self.send_live(conn, name, data);
        }
    }

    /// A user was erased: this replica no longer takes its tokens, and closes its
    /// connections (after they were sent `user.deleted`).
    fn erased(&self, data: &RawValue) {
        #[derive(serde::Deserialize)]
        struct Erased<'a> {
            id: &'a str,
        }
        let Some(user) = serde_json::from_str::<Erased<'_>>(data.get()).ok().and_then(|e| UserId::parse(e.id)) else {
            return tracing::warn!("ignoring a user.deleted without a user id");
        };
        if let Some(service) = self.service.get() {
            service.forget_user(user);
        }
        let conns = self.users_lock().remove(&user).unwrap_or_default();
        for conn in conns {
            // Closing an already closed socket has nothing to report.
            let _ = conn.socket.clone().disconnect();
        }
    }

    /// Every connection here: users' and servers'.
    fn all(&self) -> Vec<Arc<Conn>> {
        let mut all: Vec<Arc<Conn>> = self.users_lock().values().flatten().cloned().collect();
        all.extend(self.servers_lock().iter().cloned());
        all
    }

    /// An event without offset (to everyone, or any event of a server connection): held
    /// while the connection catches up, sent otherwise.
    fn send_live(self: &Arc<Self>, conn: Arc<Conn>, name: &'static str, data: &RawValue) {
        let mut cursor = conn.cursor();
        if cursor.held.is_some() {
            Conn::keep(&mut cursor, (None, name, data.to_owned()));
        } else if !emit(&conn.socket, name, data, None) && conn.fall_behind(&mut cursor, false) {
            drop(cursor);
            self.spawn_catch_up(conn, RETRY);
        }
    }

    /// Every connection here catches up: events published while this replica was not
    /// listening (or fell behind) are sent once, in order, from the user's history; a
    /// connection that has no offset yet, or a server connection, gets `session.resync`,
    /// spread over time so that their reloads do not all hit the REST API at once. Which
    /// users exist is read from the store again: a `user.deleted` may have been missed.
    pub fn catch_up_all(self: &Arc<Self>) {
        if let Some(service) = self.service.get() {
            service.forget_users();
        }
        let all = self.all();
        let spread = RESYNC_SPREAD_MAX.min(RESYNC_SPREAD_PER_CONN * u32::try_from(all.len()).unwrap_or(u32::MAX));
        for conn in all {
            let mut cursor = conn.cursor();
            if cursor.held.is_some() {
                // Catching up (or not yet acknowledged): its catch-up reads again before it ends.
                cursor.stale = true;
                continue;
            }
            let resync = !conn.replayable(&cursor);
            cursor.lost |= resync;
            conn.hold(&mut cursor);
            drop(cursor);
            let wait = if resync { spread.mul_f64(fastrand::f64()) } else { Duration::ZERO };
            self.spawn_catch_up(conn, wait);
        }
    }

    /// Catches a connection up on a task of its own, after `wait` (its cursor already holds
    /// live events).
    fn spawn_catch_up(self: &Arc<Self>, conn: Arc<Conn>, wait: Duration) {
        let audiences = self.clone();
        tokio::spawn(async move { audiences.catch_up(conn, wait, None).await });
    }

    /// Until the connection is caught up or gone: sends what it missed from its user's
    /// history after its last offset (or `from`, the offset it resumed with), page by page,
    /// or `session.resync` when that cannot be known; then what was held meanwhile; then
    /// lets live events through again. Whenever the socket is full, or the store cannot
    /// answer, it tries again after [`RETRY`].
    async fn catch_up(&self, conn: Arc<Conn>, mut wait: Duration, mut from: Option<Offset>) {
        loop {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            wait = RETRY;
            if !conn.socket.connected() {
                return;
            }
            let start = {
                let cursor = conn.cursor();
                (!cursor.lost).then_some(cursor.last.or(from)).flatten().zip(conn.user)
            };
            if let Some((start, user)) = start {
                let page = match self.service.get() {
                    Some(service) => {
                        let _permit = self.reads.acquire().await;
                        service.missed(user, &start.to_string(), PAGE).await
                    }
                    None => Ok(None),
                };
                let mut cursor = conn.cursor();
                match page {
                    // The store did not answer: what was missed is still kept; try again.
                    Err(_) => continue,
                    // Gone, unknown or too old: the client reloads its state instead.
                    Ok(None) => {
                        (cursor.lost, from, wait) = (true, None, Duration::ZERO);
                        continue;
                    }
                    Ok(Some(page)) => {
                        cursor.last = cursor.last.or(from.take());
                        if !conn.send_page(&mut cursor, &page) {
                            continue;
                        }
                        if page.len() == PAGE {
                            wait = Duration::ZERO;
                            continue;
                        }
                    }
                }
            }
            let mut cursor = conn.cursor();
            if std::mem::take(&mut cursor.stale) {
                cursor.lost |= !conn.replayable(&cursor);
                wait = Duration::ZERO;
                continue;
            }
            if cursor.lost {
                let empty = serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default();
                if !emit(&conn.socket, "session.resync", &empty, None) {
                    continue;
                }
                (cursor.lost, from) = (false, None);
            }
            if conn.flush(&mut cursor) {
                return;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Emits one event to one socket; `false` (and counted as dropped) when its buffer is full.
fn emit(socket: &SocketRef, name: &str, data: &RawValue, offset: Option<&str>) -> bool {
    let sent = socket.emit(name, &Payload { data, offset }).is_ok();
    if !sent {
        metrics::events_dropped(1);
    }
    sent
}
