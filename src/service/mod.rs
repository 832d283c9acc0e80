//! The use cases. The service owns the contract's invariants: validate, then store each
//! change together with its event (one atomic step); a failed request stores nothing and
//! publishes nothing. The call lifecycle is in [`lifecycle`].

mod devices;
mod lifecycle;

pub use devices::Registered;
pub use lifecycle::WebhookOutcome;

use crate::auth::{Minted, Tokens};
use crate::domain::{
    Actor, Call, CallFilter, CallId, CallStatus, DeviceId, Event, LiveKitRoom, Name, Page, PageRequest, Room, RoomId,
    RoomName, Timeouts, Timestamp, User, UserId,
};
use crate::events::{self, Audience, Feed, History};
use crate::livekit::{Grant, Rejected, SigningFailed, TokenIssuer, WebhookVerifier};
use crate::push::PushSettings;
use crate::store::{Erasure, Join, NewCall, Store, StoreError};
use crate::telemetry::metrics;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Why a use case failed; `http::error` maps each to a status and a `code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no user with id {0}")]
    UserNotFound(UserId),
    #[error("no call with id {0}")]
    CallNotFound(CallId),
    #[error("no room with id {0}")]
    RoomNotFound(RoomId),
    #[error("no device with id {0} for this user")]
    DeviceNotFound(DeviceId),
    #[error("no call or room has the roomName {0}")]
    NoSuchLiveKitRoom(RoomName),
    #[error("call {0} has ended")]
    CallEnded(CallId),
    #[error("call {0} was accepted; it can no longer be declined")]
    CallAlreadyAccepted(CallId),
    #[error("user {user} may not join {room}")]
    NotAParticipant { user: UserId, room: RoomName },
    #[error("only the caller or the callee may end call {0}")]
    NotInCall(CallId),
    #[error("only the callee may accept or decline call {0}")]
    NotTheCallee(CallId),
    #[error("a user cannot call themselves")]
    SelfCall,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0} names a user this token may not act as")]
    Forbidden(&'static str),
    #[error("{0} is required")]
    Required(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningFailed),
    #[error(transparent)]
    Webhook(#[from] Rejected),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The result of a join: the room after it, and the joiner's LiveKit grant.
#[derive(Debug)]
pub struct Joined {
    pub room: Room,
    pub user: UserId,
    pub grant: Grant,
}

/// `AUTH=token`: who may act, and how addressed events are kept for resuming.
pub struct Identity {
    pub tokens: Tokens,
    /// Lifetime of the user tokens issued on registration.
    pub ttl: Duration,
    pub history: History,
    /// Users found to exist, so that a token's user is read from the store once per replica
    /// rather than on every request (bounded; cleared when full). An erased user is
    /// forgotten when its `user.deleted` reaches the replica, and every user when the
    /// replica may have missed events ([`Service::forget_users`]).
    pub known_users: std::sync::Mutex<std::collections::HashSet<UserId>>,
    /// Bumped (under `known_users`' lock) each time users are forgotten: a user read from
    /// the store before an erasure reached this replica is not remembered after it.
    pub forgotten: std::sync::atomic::AtomicU64,
}

/// How many users a replica remembers as existing before it starts over.
const KNOWN_USERS_MAX: usize = 100_000;

/// How many times an erasure ends the user's calls and tries again.
const ERASE_ROUNDS: usize = 8;

impl Identity {
    fn known_users(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<UserId>> {
        self.known_users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Everything a request handler may ask for.
pub struct Service {
    store: Arc<dyn Store>,
    feed: Arc<Feed>,
    tokens: TokenIssuer,
    webhooks: WebhookVerifier,
    timeouts: Timeouts,
    /// `None`: `AUTH=open`.
    identity: Option<Identity>,
    push: PushSettings,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        feed: Arc<Feed>,
        tokens: TokenIssuer,
        webhooks: WebhookVerifier,
        timeouts: Timeouts,
        identity: Option<Identity>,
        push: PushSettings,
    ) -> Self {
        Self { store, feed, tokens, webhooks, timeouts, identity, push }
    }

    /// Whether requests and connections need a token (`AUTH=token`).
    pub fn requires_tokens(&self) -> bool {
        self.identity.is_some()
    }

    /// Who a bearer token speaks for: a server, or a user who exists.
    pub async fn authenticate(&self, token: &str) -> Result<Actor> {
        let actor = self.verify(token)?;
        let (Actor::User(user), Some(identity)) = (actor, &self.identity) else {
            return Ok(actor);
        };
        if identity.known_users().contains(&user) {
            return Ok(actor);
        }
        let before = identity.forgotten.load(Ordering::Acquire);
        if self.store.user(user).await?.is_none() {
            return Err(Error::Unauthorized);
        }
        let mut known = identity.known_users();
        if known.len() >= KNOWN_USERS_MAX {
            known.clear();
        }
        if identity.forgotten.load(Ordering::Acquire) == before {
            known.insert(user);
        }
        Ok(actor)
    }

    /// Who a bearer token speaks for, by its signature alone (no store read).
    pub fn verify(&self, token: &str) -> Result<Actor> {
        let identity = self.identity.as_ref().ok_or(Error::Unauthorized)?;
        identity.tokens.verify(token).map_err(|_| Error::Unauthorized)
    }

    /// The user a request acts as: the one its body names, or the token's user.
    fn act(actor: Actor, named: Option<UserId>, field: &'static str) -> Result<UserId> {
        match actor.acting_as(named) {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(Error::Required(field)),
            Err(_) => Err(Error::Forbidden(field)),
        }
    }

    /// The event as the store takes it: addressed to `audience` with `AUTH=token`.
    fn envelope(&self, event: &Event, audience: Audience<'_>) -> String {
        events::envelope(event, audience, self.identity.as_ref().map(|i| i.history))
    }

    /// Registers a user; with `AUTH=token`, also issues the user's token.
    pub async fn register_user(&self, name: Name) -> Result<(User, Option<Minted>)> {
        let user = User::new(name);
        let event = Event::user_registered(&user);
        self.store.insert_user(&user, &self.envelope(&event, Audience::Everyone)).await?;
        metrics::user_registered();
        metrics::event_published(event.name());
        let token = self.identity.as_ref().map(|i| i.tokens.user(user.id, i.ttl));
        Ok((user, token))
    }

    /// `AUTH=token`: what `user` missed after `offset`, the oldest `limit` events; `None`
    /// when it cannot be known.
    pub async fn missed(&self, user: UserId, offset: &str, limit: usize) -> Result<Option<Vec<(String, String)>>> {
        let Some(identity) = &self.identity else {
            return Ok(None);
        };
        Ok(self.store.history(user, offset, identity.history.ttl, limit).await?)
    }

    pub async fn user(&self, id: UserId) -> Result<User> {
        self.store.user(id).await?.ok_or(Error::UserNotFound(id))
    }

    pub async fn users(&self, page: PageRequest) -> Result<Page<User>> {
        Ok(self.store.users(page).await?)
    }

    /// Erases a user (section 11): ends each of its calls that has not ended as the user
    /// ending it would, then deletes it with its history and memberships, announcing
    /// `user.deleted`. A call started meanwhile is ended in a further round: the deletion
    /// applies only once none is left.
    pub async fn erase_user(&self, actor: Actor, id: UserId) -> Result<()> {
        let id = Self::act(actor, Some(id), "id")?;
        let event = Event::user_deleted(id);
        let envelope = self.envelope(&event, Audience::Everyone);
        // Each round ends every call the last one saw; a caller would have to start a call
        // to the user between every two rounds to keep it going.
        for _ in 0..ERASE_ROUNDS {
            match self.store.delete_user(id, &envelope).await? {
                Erasure::Erased => {
                    self.forget_user(id);
                    metrics::user_erased();
                    metrics::event_published(event.name());
                    return Ok(());
                }
                Erasure::NoUser => return Err(Error::UserNotFound(id)),
                Erasure::Busy(calls) => {
                    for call in calls {
                        match self.end_call(Actor::Server, call, Some(id)).await {
                            Ok(_) | Err(Error::CallNotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Err(StoreError::Unreachable(format!("user {id} kept getting new calls during its erasure")).into())
    }

    /// `AUTH=token`: this replica no longer takes `user` for existing (it was erased).
    pub fn forget_user(&self, user: UserId) {
        if let Some(identity) = &self.identity {
            let mut known = identity.known_users();
            known.remove(&user);
            identity.forgotten.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// `AUTH=token`: this replica may have missed a `user.deleted`: every token's user is
    /// read from the store again.
    pub fn forget_users(&self) {
        if let Some(identity) = &self.identity {
            let mut known = identity.known_users();
            known.clear();
            identity.forgotten.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Starts a call and returns it with the caller's grant.
    pub async fn start_call(&self, actor: Actor, from: Option<UserId>, to: UserId) -> Result<(Call, Grant)> {
        let from = Self::act(actor, from, "fromUserId")?;
        if from == to {
            return Err(Error::SelfCall);
        }
        let call = Call::new(from, to);
        let event = Event::call_started(&call);
        let deadline = self.timeouts.deadline(&call);
        let envelope = self.envelope(&event, Audience::Users(&[from, to]));
        let caller = match self.store.insert_call(&call, deadline, &envelope).await? {
            NewCall::Stored { caller } => caller,
            NewCall::NoUser(id) => return Err(Error::UserNotFound(id)),
        };
        metrics::call_started();
        metrics::event_published(event.name());
        let grant = self.tokens.grant(caller.id, &caller.name, call.room_name)?;
        Ok((call, grant))
    }

    /// A call its actor may see (calls are private to their parties): 404 otherwise.
    pub async fn call(&self, actor: Actor, id: CallId) -> Result<Call> {
        let call = self.store.call(id).await?.filter(|call| actor.may_see(call));
        call.ok_or(Error::CallNotFound(id))
    }

    /// Calls, newest first; a user sees only their own.
    pub async fn calls(&self, actor: Actor, mut filter: CallFilter, page: PageRequest) -> Result<Page<Call>> {
        if let Some(me) = actor.own_calls() {
            match filter.user {
                Some(other) if other != me => return Err(Error::Forbidden("userId")),
                _ => filter.user = Some(me),
            }
        }
        Ok(self.store.calls(filter, page).await?)
    }

    pub async fn create_room(&self, name: Name) -> Result<Room> {
        let room = Room::new(name);
        let event = Event::room_created(&room);
        let expiry = self.timeouts.room_expiry(room.created_at);
        self.store.insert_room(&room, expiry, &self.envelope(&event, Audience::Everyone)).await?;
        metrics::room_created();
        metrics::event_published(event.name());
        Ok(room)
    }

    pub async fn room(&self, id: RoomId) -> Result<Room> {
        self.store.room(id).await?.ok_or(Error::RoomNotFound(id))
    }

    pub async fn rooms(&self, page: PageRequest) -> Result<Page<Room>> {
        Ok(self.store.rooms(page).await?)
    }

    /// Adds the user to the room (once) and returns a fresh grant; every join publishes.
    pub async fn join_room(&self, actor: Actor, room_id: RoomId, user_id: Option<UserId>) -> Result<Joined> {
        let user_id = Self::act(actor, user_id, "userId")?;
        let event = Event::room_joined(room_id, user_id);
        let envelope = self.envelope(&event, Audience::Participants);
        let expiry = self.timeouts.room_expiry(Timestamp::now());
        let (room, user) = match self.store.join_room(room_id, user_id, expiry, &envelope).await? {
            Join::Joined { room, user } => (room, user),
            Join::NoRoom => return Err(Error::RoomNotFound(room_id)),
            Join::NoUser => return Err(Error::UserNotFound(user_id)),
        };
        metrics::room_joined();
        metrics::event_published(event.name());
        let grant = self.tokens.grant(user.id, &user.name, room.room_name)?;
        Ok(Joined { room, user: user.id, grant })
    }

    /// A grant for the callee or caller of a live call, or a participant of a room. The
    /// callee asking while the call rings answers it, exactly as `/accept` would.
    pub async fn token(&self, actor: Actor, room_name: RoomName, user_id: Option<UserId>) -> Result<(Grant, UserId)> {
        let user_id = Self::act(actor, user_id, "userId")?;
        let owner = self.store.livekit_room(room_name).await?.ok_or(Error::NoSuchLiveKitRoom(room_name))?;
        let user = self.user(user_id).await?;
        let (allowed, ended) = match &owner {
            LiveKitRoom::Call(call) => (call.involves(user.id), call.status == CallStatus::Ended),
            LiveKitRoom::Room(room) => (room.participants.contains(&user.id), false),
        };
        // Outsiders learn nothing about the call's state: 403 before 409.
        if !allowed {
            return Err(Error::NotAParticipant { user: user.id, room: room_name });
        }
        if let LiveKitRoom::Call(call) = &owner {
            if ended {
                return Err(Error::CallEnded(call.id));
            }
            if call.status == CallStatus::Initiated && call.to_user_id == user.id {
                self.answer(call.clone(), user.id).await?;
            }
        }
        Ok((self.tokens.grant(user.id, &user.name, room_name)?, user.id))
    }

    /// Whether this replica can serve requests and deliver events now.
    pub async fn ready(&self) -> bool {
        self.feed.is_ready() && self.store.ping().await.is_ok()
    }
}
