//! The use cases. The service owns the contract's invariants: validate, then store each
//! change together with its event (one atomic step); a failed request stores nothing and
//! publishes nothing. The call lifecycle is in [`lifecycle`].

mod lifecycle;

pub use lifecycle::{Transitioned, WebhookOutcome};

use crate::domain::{
    Call, CallFilter, CallId, CallStatus, Event, LiveKitRoom, Name, Room, RoomId, RoomName, Timeouts, Transition, User,
    UserId,
};
use crate::events::{self, EventBus};
use crate::livekit::{Grant, Rejected, SigningFailed, TokenIssuer, WebhookVerifier};
use crate::store::{Join, NewCall, Store, Unavailable};
use crate::telemetry::metrics;
use std::sync::Arc;

/// Why a use case failed; `http::error` maps each to a status and a `code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no user with id {0}")]
    UserNotFound(UserId),
    #[error("no call with id {0}")]
    CallNotFound(CallId),
    #[error("no room with id {0}")]
    RoomNotFound(RoomId),
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
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
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

/// Everything a request handler may ask for.
pub struct Service {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    tokens: TokenIssuer,
    webhooks: WebhookVerifier,
    timeouts: Timeouts,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        tokens: TokenIssuer,
        webhooks: WebhookVerifier,
        timeouts: Timeouts,
    ) -> Self {
        Self { store, bus, tokens, webhooks, timeouts }
    }

    pub async fn register_user(&self, name: Name) -> Result<User> {
        let user = User::new(name);
        let event = Event::user_registered(&user);
        self.store.insert_user(&user, &events::encode(&event)).await?;
        metrics::user_registered();
        metrics::event_published(event.name());
        Ok(user)
    }

    pub async fn user(&self, id: UserId) -> Result<User> {
        self.store.user(id).await?.ok_or(Error::UserNotFound(id))
    }

    pub async fn users(&self, limit: usize) -> Result<Vec<User>> {
        Ok(self.store.users(limit).await?)
    }

    /// Starts a call and returns it with the caller's grant.
    pub async fn start_call(&self, from: UserId, to: UserId) -> Result<(Call, Grant)> {
        if from == to {
            return Err(Error::SelfCall);
        }
        let call = Call::new(from, to);
        let event = Event::call_started(&call);
        let deadline = self.timeouts.deadline(&call);
        let caller = match self.store.insert_call(&call, deadline, &events::encode(&event)).await? {
            NewCall::Stored { caller } => caller,
            NewCall::NoUser(id) => return Err(Error::UserNotFound(id)),
        };
        metrics::call_started();
        metrics::event_published(event.name());
        let grant = self.tokens.grant(caller.id, &caller.name, call.room_name)?;
        Ok((call, grant))
    }

    pub async fn call(&self, id: CallId) -> Result<Call> {
        self.store.call(id).await?.ok_or(Error::CallNotFound(id))
    }

    pub async fn calls(&self, filter: CallFilter, limit: usize) -> Result<Vec<Call>> {
        Ok(self.store.calls(filter, limit).await?)
    }

    pub async fn create_room(&self, name: Name) -> Result<Room> {
        let room = Room::new(name);
        let event = Event::room_created(&room);
        self.store.insert_room(&room, &events::encode(&event)).await?;
        metrics::room_created();
        metrics::event_published(event.name());
        Ok(room)
    }

    pub async fn room(&self, id: RoomId) -> Result<Room> {
        self.store.room(id).await?.ok_or(Error::RoomNotFound(id))
    }

    pub async fn rooms(&self, limit: usize) -> Result<Vec<Room>> {
        Ok(self.store.rooms(limit).await?)
    }

    /// Adds the user to the room (once) and returns a fresh grant; every join publishes.
    pub async fn join_room(&self, room_id: RoomId, user_id: UserId) -> Result<Joined> {
        let event = Event::room_joined(room_id, user_id);
        let (room, user) = match self.store.join_room(room_id, user_id, &events::encode(&event)).await? {
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
    pub async fn token(&self, room_name: RoomName, user_id: UserId) -> Result<Grant> {
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
                self.transition(call.id, Transition::Accept { by: user.id }, lifecycle::Guard::default()).await?;
            }
        }
        Ok(self.tokens.grant(user.id, &user.name, room_name)?)
    }

    /// Whether this replica can serve requests and deliver events now.
    pub async fn ready(&self) -> bool {
        self.bus.is_subscribed() && self.store.ping().await.is_ok()
    }
}
