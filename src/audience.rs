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
use std::sync::{Arc, Mutex, MutexGuard};

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

/// One connection of a user: the last offset it was sent, and while it replays its missed
/// events, the live ones that arrive meanwhile.
struct Conn {
    socket: SocketRef,
    cursor: Mutex<Cursor>,
}

#[derive(Default)]
struct Cursor {
    last: Option<Offset>,
    /// `Some` while replaying: live events held back until the replay is sent.
    held: Option<Vec<(Offset, &'static str, String)>>,
}

impl Conn {
    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends an event at `offset` unless the connection already has it.
    fn send(&self, cursor: &mut Cursor, name: &'static str, offset: Offset, data: &str) {
        if cursor.last.is_some_and(|last| offset <= last) {
            return;
        }
        cursor.last = Some(offset);
        emit(&self.socket, name, data, Some(&offset.to_string()));
    }
}

/// This replica's authenticated connections, by user, and its server connections.
#[derive(Default)]
pub struct Audiences {
    users: Mutex<HashMap<UserId, Vec<Arc<Conn>>>>,
    servers: Mutex<Vec<SocketRef>>,
}

impl Audiences {
    /// Serves the default namespace: tokens checked before the socket connects, then the
    /// connection registered for its audiences (and its missed events replayed).
    pub fn serve(self: &Arc<Self>, io: &SocketIo, service: Arc<Service>) {
        let check = service.clone();
        let authenticate = async move |TryData(auth): TryData<Credentials>| -> Result<(), Refused> {
            actor(&check, auth.ok().as_ref()).await.map(drop)
        };
        let audiences = self.clone();
        let connected = async move |socket: SocketRef, TryData(auth): TryData<Credentials>| {
            let auth = auth.ok();
            match actor(&service, auth.as_ref()).await {
                Ok(actor) => audiences.join(socket, actor, auth.and_then(|a| a.offset), &service).await,
                // Checked a moment ago by the middleware; a connection that cannot be placed
                // in its audience is closed rather than left hearing only part of its events.
                Err(_) => drop(socket.disconnect()),
            }
        };
        io.ns("/", connected.with(authenticate));
    }

    async fn join(self: &Arc<Self>, socket: SocketRef, actor: Actor, offset: Option<String>, service: &Service) {
        let user = match actor {
            Actor::User(user) => user,
            Actor::Server | Actor::Anyone => {
                self.servers.lock().unwrap_or_else(|p| p.into_inner()).push(socket.clone());
                let (audiences, sid) = (self.clone(), socket.id);
                socket.on_disconnect(async move || audiences.servers_lock().retain(|s| s.id != sid));
                return;
            }
        };
        let held = offset.is_some().then(Vec::new);
        let conn = Arc::new(Conn { socket: socket.clone(), cursor: Mutex::new(Cursor { last: None, held }) });
        let sid = socket.id;
        self.users_lock().entry(user).or_default().push(conn.clone());
        let audiences = self.clone();
        socket.on_disconnect(async move || audiences.leave(user, sid));
        if let Some(offset) = offset {
            replay(&conn, service, user, &offset).await;
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
    pub fn deliver(&self, name: &'static str, incoming: &Incoming<'_>) -> bool {
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
                match &mut cursor.held {
                    Some(held) => held.push((offset, name, data.to_owned())),
                    None => conn.send(&mut cursor, name, offset, data),
                }
            }
        }
        for socket in self.servers_lock().iter() {
            emit(socket, name, data, None);
        }
        true
    }
}

/// Who the credentials speak for.
async fn actor(service: &Service, auth: Option<&Credentials>) -> Result<Actor, Refused> {
    let token = auth.and_then(|a| a.token.as_deref()).ok_or(Refused::Unauthorized)?;
    match service.authenticate(token).await {
        Ok(actor) => Ok(actor),
        Err(service::Error::Unavailable(_)) => Err(Refused::Unavailable),
        Err(_) => Err(Refused::Unauthorized),
    }
}

/// Sends what the user missed after `offset` (or `session.resync` when that cannot be
/// known), then what arrived live meanwhile, then lets live events through.
async fn replay(conn: &Conn, service: &Service, user: UserId, offset: &str) {
    let missed = service.missed(user, offset).await;
    let mut cursor = conn.cursor();
    match missed {
        Ok(Some(events)) => {
            cursor.last = Offset::parse(offset);
            for (at, event) in events {
                let (Some(at), Ok(event)) = (Offset::parse(&at), serde_json::from_str::<Incoming<'_>>(&event)) else {
                    continue;
                };
                if let Some(name) = Event::known_name(event.event) {
                    conn.send(&mut cursor, name, at, event.data.get());
                }
            }
        }
        // Gone, unknown, or unreadable now: the client reloads its state instead.
        Ok(None) | Err(_) => emit(&conn.socket, "session.resync", "{}", None),
    }
    for (at, name, data) in cursor.held.take().unwrap_or_default() {
        conn.send(&mut cursor, name, at, &data);
    }
}

fn emit(socket: &SocketRef, name: &str, data: &str, offset: Option<&str>) {
    let Ok(data) = RawValue::from_string(data.to_owned()) else {
        return;
    };
    if socket.emit(name, &Payload { data: &data, offset }).is_err() {
        // A socket whose buffer is full (a client that does not keep up) misses the event.
        metrics::events_dropped(1);
    }
}
