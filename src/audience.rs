//! `AUTH=token` on Socket.IO (sections 8 and 9 of the contract): a connection proves who
//! it is in the connect packet; each event reaches only the connections of its audience on
//! this replica; a client that reconnects with the last offset it saw first receives what
//! it missed, then the live stream, with no gap and no duplicate between the two.

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
    /// The replica's count of connections holding live events (see [`Conn::hold`]).
    catching_up: Arc<AtomicUsize>,
}

/// An event waiting for a connection to catch up: offset, name, data.
type Held = (Option<Offset>, &'static str, Box<RawValue>);

#[derive(Default)]
struct Cursor {
    /// The offset of the last event this connection was sent.
    last: Option<Offset>,
    /// `Some` while a catch-up from the history is being sent: live events wait here (with
    /// their offset; none for events to everyone).
    held: Option<Vec<Held>>,
    /// A send failed (the socket's buffer was full): the next event starts a catch-up
    /// instead, so nothing is skipped while the history keeps it.
    behind: bool,
}

impl Conn {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        lock(&self.cursor)
    }

    /// Holds live events from now on (a catch-up begins), starting with `first`. Counted, so
    /// that an event to everyone takes the slow path only while some connection holds.
    fn hold(&self, cursor: &mut Cursor, first: Vec<Held>) {
        if cursor.held.replace(first).is_none() {
            self.catching_up.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sends the events held meanwhile (those it does not have yet), then lets live events
    /// through: uncounted only once they are out, so no broadcast overtakes them.
    fn release(&self, cursor: &mut Cursor) {
        let Some(held) = cursor.held.take() else { return };
        for (at, name, data) in held {
            if cursor.behind || !self.send(cursor, name, at, &data) {
                break;
            }
        }
        self.catching_up.fetch_sub(1, Ordering::SeqCst);
    }

    /// An event without offset (to everyone, or any event of a server connection): held
    /// while the connection catches up, sent otherwise.
    fn send_live(&self, name: &'static str, data: &RawValue) {
        let mut cursor = self.cursor();
        match &mut cursor.held {
            Some(held) => held.push((None, name, data.to_owned())),
            None => drop(emit(&self.socket, name, data, None)),
        }
    }

    /// Sends an event at `offset` unless the connection already has it; `false` when the
    /// socket could not take it (the connection is then behind). Events without offset,
    /// and every event of a server connection, go without offset and are not kept.
    fn send(&self, cursor: &mut Cursor, name: &'static str, offset: Option<Offset>, data: &RawValue) -> bool {
        let (Some(offset), Some(_)) = (offset, self.user) else {
            return emit(&self.socket, name, data, None);
        };
        if cursor.last.is_some_and(|last| offset <= last) {
            return true;
        }
        if !emit(&self.socket, name, data, Some(&offset.to_string())) {
            cursor.behind = true;
            return false;
        }
        cursor.last = Some(offset);
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
#[derive(Default)]
pub struct Audiences {
    users: Mutex<HashMap<UserId, Vec<Arc<Conn>>>>,
    servers: Mutex<Vec<Arc<Conn>>>,
    /// Connections admitted and not yet acknowledged, for their connect handler.
    admitted: Mutex<HashMap<Sid, Arc<Conn>>>,
    /// How many connections hold live events while they catch up.
    catching_up: Arc<AtomicUsize>,
    /// Reads the histories that connections catch up from.
    service: OnceLock<Arc<Service>>,
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
                Err(service::Error::Unavailable(_)) => Err(Refused::Unavailable),
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
        conn.hold(&mut conn.cursor(), Vec::new());
        let user = conn.user;
        match user {
            Some(user) => self.users_lock().entry(user).or_default().push(conn.clone()),
            None => self.servers_lock().push(conn.clone()),
        }
        lock(&self.admitted).insert(sid, conn);
        let audiences = self.clone();
        socket.on_disconnect(async move || audiences.leave(sid, user));
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
        match (conn.user, offset) {
            (Some(user), Some(offset)) => self.catch_up(&conn, user, Some(offset)).await,
            _ => conn.release(&mut conn.cursor()),
        }
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

    /// Emits an addressed event to its users' connections here, each with its own offset,
    /// and to the server connections. An event to everyone is left to the broadcast
    /// (`false`) unless a connection is catching up: then each connection gets it in turn,
    /// so that it stays behind the events it follows.
    pub fn deliver(self: &Arc<Self>, name: &'static str, incoming: &Incoming<'_>) -> bool {
        let Some(to) = &incoming.to else {
            return self.deliver_to_everyone(name, incoming.data);
        };
        let data = incoming.data;
        for (user, offset) in to {
            let (Some(user), Some(offset)) = (UserId::parse(user), Offset::parse(offset)) else {
                continue;
            };
            let conns = self.users_lock().get(&user).cloned().unwrap_or_default();
            for conn in conns {
                let mut cursor = conn.cursor();
                if let Some(held) = &mut cursor.held {
                    held.push((Some(offset), name, data.to_owned()));
                } else if cursor.behind {
                    conn.hold(&mut cursor, vec![(Some(offset), name, data.to_owned())]);
                    drop(cursor);
                    self.spawn_catch_up(conn, user);
                } else {
                    conn.send(&mut cursor, name, Some(offset), data);
                }
            }
        }
        let servers = self.servers_lock().clone();
        for conn in servers {
            conn.send_live(name, data);
        }
        true
    }

    fn deliver_to_everyone(&self, name: &'static str, data: &RawValue) -> bool {
        if self.catching_up.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut all: Vec<Arc<Conn>> = self.users_lock().values().flatten().cloned().collect();
        all.extend(self.servers_lock().iter().cloned());
        for conn in all {
            conn.send_live(name, data);
        }
        true
    }

    /// Every user connection here catches up from its history: events published while
    /// this replica was not listening (or fell behind) are sent once, in order.
    pub fn catch_up_all(self: &Arc<Self>) {
        let all: Vec<(UserId, Arc<Conn>)> =
            self.users_lock().iter().flat_map(|(user, conns)| conns.iter().map(|conn| (*user, conn.clone()))).collect();
        for (user, conn) in all {
            let mut cursor = conn.cursor();
            if cursor.held.is_some() {
                // Already catching up; it reads the history after this moment anyway.
                continue;
            }
            conn.hold(&mut cursor, Vec::new());
            drop(cursor);
            self.spawn_catch_up(conn, user);
        }
    }

    /// Catches a connection up from its last offset, on a task of its own (its cursor
    /// already holds live events).
    fn spawn_catch_up(self: &Arc<Self>, conn: Arc<Conn>, user: UserId) {
        let from = conn.cursor().last.map(|o| o.to_string());
        let audiences = self.clone();
        tokio::spawn(async move { audiences.catch_up(&conn, user, from).await });
    }

    /// Sends what the connection missed after `from` (or `session.resync` when that cannot
    /// be known), then what arrived live meanwhile, then lets live events through again.
    async fn catch_up(&self, conn: &Conn, user: UserId, from: Option<String>) {
        let missed = match (&from, self.service.get()) {
            (Some(from), Some(service)) => service.missed(user, from).await,
            _ => Ok(None),
        };
        let mut cursor = conn.cursor();
        cursor.behind = false;
        match missed {
            Ok(Some(events)) => {
                cursor.last = cursor.last.or_else(|| from.as_deref().and_then(Offset::parse));
                for (at, event) in events {
                    let (Some(at), Ok(event)) = (Offset::parse(&at), serde_json::from_str::<Incoming<'_>>(&event))
                    else {
                        continue;
                    };
                    let Some(name) = Event::known_name(event.event) else { continue };
                    if !conn.send(&mut cursor, name, Some(at), event.data) {
                        break;
                    }
                }
            }
            // Gone, unknown, or unreadable now: the client reloads its state instead.
            Ok(None) | Err(_) => {
                let empty = serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default();
                emit(&conn.socket, "session.resync", &empty, None);
            }
        }
        conn.release(&mut cursor);
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
