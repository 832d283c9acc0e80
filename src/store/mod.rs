//! Where users, calls and rooms live: one trait, an embedded memory implementation and a
//! Redis one with the same semantics. The contract suite runs against both.

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::{RedisStore, WaitReplicas};

use crate::domain::{
    Call, CallFilter, CallId, CallStatus, LiveKitRoom, Room, RoomId, RoomName, Timestamp, User, UserId,
};
use async_trait::async_trait;
use std::time::Duration;

/// Every operation name Redis metrics are labelled with (a bounded set).
pub const REDIS_OPS: [&str; 19] = [
    "insert_user",
    "get_user",
    "list_users",
    "insert_call",
    "get_call",
    "list_calls",
    "update_call",
    "due_calls",
    "delivered",
    "history",
    "insert_room",
    "get_room",
    "list_rooms",
    "join_room",
    "livekit_room",
    "ping",
    "wait",
    "probe",
    "log_read",
];

/// The only failure callers branch on: the store could not do or confirm an operation.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Nothing was written: the store was unreachable before the command left, or the
    /// operation only reads.
    #[error("store unavailable: {0}")]
    Unreachable(String),
    /// A write left but was not confirmed (timed out, or the connection dropped): it may
    /// have been applied, together with its event.
    #[error("store did not confirm a write: {0}")]
    Unconfirmed(String),
}

pub type StoreResult<T> = Result<T, Unavailable>;

/// How long a delivery id (a LiveKit webhook's) is remembered: LiveKit retries for
/// minutes, not days.
pub const DELIVERY_ID_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One transition of a call, decided on the call as it was read; applied only if that
/// decision still holds.
#[derive(Debug)]
pub struct CallChange<'a> {
    /// The status it was decided on; every transition changes the status, so an equal
    /// stored status means nothing happened to the call in between.
    pub from: CallStatus,
    /// The call after the change.
    pub call: &'a Call,
    /// When its next timer is due after the change (`None`: it has none).
    pub deadline: Option<Timestamp>,
    /// A timer's claim: apply only while the stored deadline is still this one.
    pub claim: Option<Timestamp>,
    /// A delivery id (a webhook's): apply at most once per id, within [`DELIVERY_ID_TTL`].
    pub once: Option<&'a str>,
    /// The encoded events announcing the change, in order.
    pub events: &'a [String],
}

/// What became of a [`CallChange`]; only `Applied` published its events.
#[derive(Debug, PartialEq, Eq)]
pub enum CallUpdate {
    Applied,
    /// The call changed since it was read: here it is as it is now (`None`: no such call).
    Stale(Option<Call>),
    /// The timer's deadline moved or went: nothing is due.
    Unclaimed,
    /// This delivery id was applied before.
    Duplicate,
}

/// The outcome of joining a room.
#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    /// The user is a participant (now or already); the room as it is after the join.
    Joined {
        room: Room,
        user: User,
    },
    NoRoom,
    NoUser,
}

/// The outcome of storing a new call.
#[derive(Debug, PartialEq, Eq)]
pub enum NewCall {
    /// Stored; the caller, whose name goes into the caller's token.
    Stored { caller: User },
    /// Nothing stored: this user does not exist.
    NoUser(UserId),
}

/// Storage of the contract's resources. Every method is atomic with respect to other
/// replicas sharing the same backing store.
///
/// A method that changes something takes the change's event envelope
/// (`events::envelope`) and publishes it on the event bus in the same atomic step, only if
/// the change is made — appending an addressed event to its users' histories in that step
/// too: a change is never stored without its event, nor an event sent without its change,
/// whatever happens to the request afterwards (cancelled, timed out, the replica killed).
#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Oldest first.
    async fn users(&self, limit: usize) -> StoreResult<Vec<User>>;

    /// Stores the call, with its first deadline, only if both users exist.
    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall>;
    async fn call(&self, id: CallId) -> StoreResult<Option<Call>>;
    /// Newest first.
    async fn calls(&self, filter: CallFilter, limit: usize) -> StoreResult<Vec<Call>>;
    /// Applies one transition, its deadline and its events, unless the call moved on: of
    /// racing changes decided on the same state, exactly one is applied.
    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate>;
    /// Whether a change carrying this delivery id was applied (within [`DELIVERY_ID_TTL`]).
    async fn delivered(&self, id: &str) -> StoreResult<bool>;
    /// Calls whose deadline is at or before `now`, earliest first, with that deadline.
    async fn due_calls(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<(CallId, Timestamp)>>;

    async fn insert_room(&self, room: &Room, event: &str) -> StoreResult<()>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    /// Oldest first.
    async fn rooms(&self, limit: usize) -> StoreResult<Vec<Room>>;
    /// Adds the user to the participants once, if room and user exist.
    async fn join_room(&self, room: RoomId, user: UserId, event: &str) -> StoreResult<Join>;

    /// The call or room that owns a LiveKit room name.
    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>>;

    /// `AUTH=token`: the user's kept events after `after` (offset, encoded event), oldest
    /// first, at most `limit`; `None` when `after` is no longer kept, older than `max_age`,
    /// or unknown (the client must resync).
    async fn history(
        &self,
        user: UserId,
        after: &str,
        max_age: Duration,
        limit: usize,
    ) -> StoreResult<Option<Vec<(String, String)>>>;

    /// Whether the store answers now (readiness).
    async fn ping(&self) -> StoreResult<()>;
}
