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
    cursor: Mutex<Cursor>,
}

#[derive(Default)]
struct Cursor {
    /// The offset of the last event this connection was sent.
    last: Option<Offset>,
    /// `Some` while a catch-up from the history is being sent: live events wait here.
    held: Option<Vec<(Offset, &'static str, String)>>,
    /// A send failed (the socket's buffer was full): the next event starts a catch-up
    /// instead, so nothing is skipped while the history keeps it.
    behind: bool,
}

impl Conn {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends an event at `offset` unless the connection already has it; `false` when the
    /// socket could not take it (the connection is then behind).
    fn send(&self, cursor: &mut Cursor, name: &'static str, offset: Offset, data: &str) -> bool {
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

/// This replica's authenticated connections, by user, and its server connections.
#[derive(Default)]
pub struct Audiences {
    users: Mutex<HashMap<UserId, Vec<Arc<Conn>>>>,
    servers: Mutex<Vec<SocketRef>>,
    /// Reads the histories that connections catch up from.
    service: OnceLock<Arc<Service>>,
}

impl Audiences {
    /// Serves the default namespace: the token (and its user) checked before the socket
    /// connects, then the connection placed in its audience at once, before anything else
    /// can be emitted, and its missed events replayed when it gave an offset.
    pub fn serve(self: &Arc<Self>, io: &SocketIo, service: Arc<Service>) {
        let check = service.clone();
        let _ = self.service.set(service.clone());
        let authenticate = async move |TryData(auth): TryData<Credentials>| -> Result<(), Refused> {
            let token = auth.ok().and_then(|a| a.token).ok_or(Refused::Unauthorized)?;
            match check.authenticate(&token).await {
                Ok(_) => Ok(()),
                Err(service::Error::Unavailable(_)) => Err(Refused::Unavailable),
                Err(_) => Err(Refused::Unauthorized),
            }
        };
        let audiences = self.clone();
        let connected = async move |socket: SocketRef, TryData(auth): TryData<Credentials>| {
            let auth = auth.ok();
            // Verified a moment ago by the middleware, user included: the signature suffices.
            match auth.as_ref().and_then(|a| service.verify(a.token.as_deref()?).ok()) {
                Some(actor) => audiences.join(socket, actor, auth.and_then(|a| a.offset)).await,
                None => drop(socket.disconnect()),
            }
        };
        io.ns("/", connected.with(authenticate));
    }

    async fn join(self: &Arc<Self>, socket: SocketRef, actor: Actor, offset: Option<String>) {
        let sid = socket.id;
        let Actor::User(user) = actor else {
            self.servers_lock().push(socket.clone());
            let audiences = self.clone();
            socket.on_disconnect(async move || audiences.servers_lock().retain(|s| s.id != sid));
            return;
        };
        let held = offset.is_some().then(Vec::new);
        let conn = Arc::new(Conn { socket: socket.clone(), cursor: Mutex::new(Cursor { held, ..Cursor::default() }) });
        self.users_lock().entry(user).or_default().push(conn.clone());
        let audiences = self.clone();
        socket.on_disconnect(async move || audiences.leave(user, sid));
        if !socket.connected() {
            return self.leave(user, sid);
        }
        if let Some(offset) = offset {
            self.catch_up(&conn, user, Some(offset)).await;
        }
    }

    fn leave(&self, user: UserId, sid: Sid) {
        let mut users = self.users_lock();
        if let Some(conns) = users.get_mut(&user) {
            conns.retain(|conn| conn.socket.id != sid);
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    fn users_lock(&self) -> MutexGuard<'_, HashMap<UserId, Vec<Arc<Conn>>>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn servers_lock(&self) -> MutexGuard<'_, Vec<SocketRef>> {
        self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Emits an addressed event to its users' connections here, each with its own offset,
    /// and to the server connections; `false` when it is addressed to everyone.
    pub fn deliver(self: &Arc<Self>, name: &'static str, incoming: &Incoming<'_>) -> bool {
        let Some(to) = &incoming.to else {
            return false;
        };
        let data = incoming.data.get();
        for (user, offset) in to {
            let (Some(user), Some(offset)) = (UserId::parse(user), Offset::parse(offset)) else {
                continue;
            };
            let conns = self.users_lock().get(&user).cloned().unwrap_or_default();
            for conn in conns {
                let mut cursor = conn.cursor();
                if let Some(held) = &mut cursor.held {
                    held.push((offset, name, data.to_owned()));
                } else if cursor.behind {
                    cursor.held = Some(vec![(offset, name, data.to_owned())]);
                    let from = cursor.last.map(|o| o.to_string());
                    drop(cursor);
                    let audiences = self.clone();
                    tokio::spawn(async move { audiences.catch_up(&conn, user, from).await });
                } else {
                    conn.send(&mut cursor, name, offset, data);
                }
            }
        }
        for socket in self.servers_lock().iter() {
            emit(socket, name, data, None);
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
            cursor.held = Some(Vec::new());
            let from = cursor.last.map(|o| o.to_string());
            drop(cursor);
            let audiences = self.clone();
            tokio::spawn(async move { audiences.catch_up(&conn, user, from).await });
        }
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
                    if !conn.send(&mut cursor, name, at, event.data.get()) {
                        break;
                    }
                }
            }
            // Gone, unknown, or unreadable now: the client reloads its state instead.
            Ok(None) | Err(_) => {
                emit(&conn.socket, "session.resync", "{}", None);
            }
        }
        for (at, name, data) in cursor.held.take().unwrap_or_default() {
            if cursor.behind || !conn.send(&mut cursor, name, at, &data) {
                break;
            }
        }
    }
}

/// Emits one event to one socket; `false` (and counted as dropped) when its buffer is full.
fn emit(socket: &SocketRef, name: &str, data: &str, offset: Option<&str>) -> bool {
    let Ok(data) = RawValue::from_string(data.to_owned()) else {
        return true;
    };
    let sent = socket.emit(name, &Payload { data: &data, offset }).is_ok();
    if !sent {
        metrics::events_dropped(1);
    }
    sent
}
