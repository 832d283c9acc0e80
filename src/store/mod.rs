//! Where users, calls and rooms live: one trait, an embedded memory implementation and a
//! Redis one with the same semantics. The contract suite runs against both.

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::{RedisStore, WaitReplicas};

use crate::domain::{Call, CallFilter, CallId, LiveKitRoom, Room, RoomId, RoomName, Timestamp, User, UserId};
use async_trait::async_trait;

/// Every operation name Redis metrics are labelled with (a bounded set).
pub const REDIS_OPS: [&str; 14] = [
    "insert_user",
    "get_user",
    "list_users",
    "insert_call",
    "get_call",
    "list_calls",
    "end_call",
    "insert_room",
    "get_room",
    "list_rooms",
    "join_room",
    "livekit_room",
    "ping",
    "wait",
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

/// The outcome of ending a call; only `Ended` may publish `call.ended`.
#[derive(Debug, PartialEq, Eq)]
pub enum EndCall {
    /// This request ended the call.
    Ended(Call),
    /// The call had already ended; it is returned as it is.
    AlreadyEnded(Call),
    NotFound,
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
/// A method that changes something takes the change's encoded `event` and publishes it on
/// the event bus in the same atomic step, only if the change is made: a change is never
/// stored without its event, nor an event sent without its change, whatever happens to
/// the request afterwards (cancelled, timed out, the replica killed).
#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Oldest first.
    async fn users(&self, limit: usize) -> StoreResult<Vec<User>>;

    /// Stores the call only if both users exist.
    async fn insert_call(&self, call: &Call, event: &str) -> StoreResult<NewCall>;
    async fn call(&self, id: CallId) -> StoreResult<Option<Call>>;
    /// Newest first.
    async fn calls(&self, filter: CallFilter, limit: usize) -> StoreResult<Vec<Call>>;
    /// Ends the call unless it has ended already: exactly one caller ever sees `Ended`.
    async fn end_call(&self, id: CallId, at: Timestamp, event: &str) -> StoreResult<EndCall>;

    async fn insert_room(&self, room: &Room, event: &str) -> StoreResult<()>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    /// Oldest first.
    async fn rooms(&self, limit: usize) -> StoreResult<Vec<Room>>;
    /// Adds the user to the participants once, if room and user exist.
    async fn join_room(&self, room: RoomId, user: UserId, event: &str) -> StoreResult<Join>;

    /// The call or room that owns a LiveKit room name.
    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>>;

    /// Whether the store answers now (readiness).
    async fn ping(&self) -> StoreResult<()>;
}
