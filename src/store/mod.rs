//! Where users, calls and rooms live: one trait, an embedded memory implementation and a
//! Redis one with the same semantics. The contract suite runs against both.

mod keys;
mod memory;
mod redis;

pub use keys::Keys;
pub use memory::MemoryStore;
pub use redis::{RedisStore, WaitReplicas};

use crate::domain::{
    Call, CallFilter, CallId, CallStatus, Device, DeviceId, LiveKitRoom, Page, PageRequest, Platform, Room, RoomId,
    RoomName, Timestamp, User, UserId,
};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// Every operation name Redis metrics are labelled with (a bounded set).
pub const REDIS_OPS: [&str; 27] = [
    "insert_user",
    "get_user",
    "list_users",
    "delete_user",
    "insert_call",
    "get_call",
    "list_calls",
    "update_call",
    "delete_call",
    "claim_due",
    "unschedule",
    "delivered",
    "history",
    "insert_room",
    "get_room",
    "list_rooms",
    "join_room",
    "delete_room",
    "livekit_room",
    "ping",
    "wait",
    "probe",
    "log_read",
    "device_at",
    "put_device",
    "devices",
    "delete_device",
];

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing was written: the store was unreachable before the command left, or the
    /// operation only reads.
    #[error("store unavailable: {0}")]
    Unreachable(String),
    /// A write left but was not confirmed (timed out, or the connection dropped): it may
    /// have been applied, together with its event.
    #[error("store did not confirm a write: {0}")]
    Unconfirmed(String),
    /// The store answered, with something this build cannot read: a bug or a hand edit, not
    /// an outage, so never reported as one (retrying will not help).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// A stored value that cannot be decoded, and where it is.
#[derive(Debug, thiserror::Error)]
#[error("undecodable value at {key}: {reason}")]
pub struct Corrupt {
    pub key: String,
    pub reason: String,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a stored deadline is for: the next timer of a call (its ring timeout, its maximum
/// duration, or once ended its deletion), or a room's deletion. Stored as `call:<id>` or
/// `room:<id>`, also the form in which a LiveKit room name points at its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheduled {
    Call(CallId),
    Room(RoomId),
}

impl Scheduled {
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            Some(("call", id)) => CallId::parse(id).map(Self::Call),
            Some(("room", id)) => RoomId::parse(id).map(Self::Room),
            _ => None,
        }
    }
}

impl fmt::Display for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(id) => write!(f, "call:{id}"),
            Self::Room(id) => write!(f, "room:{id}"),
        }
    }
}

/// A deadline claimed by one replica until `claim`: no other replica gets it before then,
/// and a change guarded by `claim` applies only while the deadline is still this claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The stored entry (a [`Scheduled`], unless something else wrote it).
    pub entry: String,
    /// When it was due.
    pub at: Timestamp,
    pub claim: Timestamp,
}

impl Due {
    /// What is due; an entry this build cannot read is [`Corrupt`].
    pub fn what(&self) -> StoreResult<Scheduled> {
        Scheduled::parse(&self.entry).ok_or_else(|| corrupt(&self.entry, "not a deadline entry".into()))
    }
}

/// Counts and logs a stored value this build cannot read, found at `key`.
pub fn corrupt(key: &str, reason: String) -> StoreError {
    report_corrupt(key, &reason);
    StoreError::Corrupt(Corrupt { key: key.to_owned(), reason })
}

/// Counts and logs (once, where it is found) what the store holds inconsistently.
pub fn report_corrupt(key: &str, reason: &str) {
    crate::telemetry::metrics::store_corrupt();
    tracing::error!(key, reason, "a stored value cannot be decoded");
}

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

/// The outcome of erasing a user.
#[derive(Debug, PartialEq, Eq)]
pub enum Erasure {
    /// The user, its history and memberships are gone, and `user.deleted` was published.
    Erased,
    NoUser,
    /// Nothing was erased: these calls of the user have not ended yet.
    Busy(Vec<CallId>),
}

/// The outcome of storing a device.
#[derive(Debug, PartialEq, Eq)]
pub enum PutDevice {
    /// Stored; devices of the user on these platforms went to keep it within its limit.
    Stored {
        evicted: Vec<Platform>,
    },
    NoUser,
    /// The address was registered again since it was read: read it again.
    Raced,
}

/// The outcome of deleting a device.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteDevice {
    /// Deleted; it was on this platform.
    Deleted(Platform),
    NoUser,
    /// Not a device of this user.
    NoDevice,
}

/// Storage of the contract's resources. Every method is atomic with respect to other
/// replicas sharing the same backing store.
///
/// A method that changes something takes the change's event envelope
/// (`events::envelope`) and publishes it on the event bus in the same atomic step, only if
/// the change is made — appending an addressed event to its users' histories in that step
/// too: a change is never stored without its event, nor an event sent without its change,
/// whatever happens to the request afterwards (cancelled, timed out, the replica killed).
///
/// Lists are ordered by time then id ([`crate::domain::Position`]); a page holds the items
/// after the request's position.
#[async_trait]
pub trait Store: Send + Sync {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Oldest first.
    async fn users(&self, page: PageRequest) -> StoreResult<Page<User>>;
    /// Deletes the user, its history, devices and room memberships and publishes `event`, unless
    /// a call of the user has not ended.
    async fn delete_user(&self, id: UserId, event: &str) -> StoreResult<Erasure>;

    /// Stores the call, with its first deadline, only if both users exist.
    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall>;
    async fn call(&self, id: CallId) -> StoreResult<Option<Call>>;
    /// Newest first.
    async fn calls(&self, filter: CallFilter, page: PageRequest) -> StoreResult<Page<Call>>;
    /// Applies one transition, its deadline and its events, unless the call moved on: of
    /// racing changes decided on the same state, exactly one is applied.
    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate>;
    /// Deletes an ended call whose deletion was claimed; `false` when the claim no longer
    /// holds. Publishes nothing (retention is silent).
    async fn delete_call(&self, call: &Call, claim: Timestamp) -> StoreResult<bool>;
    /// Whether a change carrying this delivery id was applied (within [`DELIVERY_ID_TTL`]).
    async fn delivered(&self, id: &str) -> StoreResult<bool>;

    /// Claims at most `limit` deadlines that are due by the store's clock, each for `lease`,
    /// earliest first.
    async fn claim_due(&self, limit: usize, lease: Duration) -> StoreResult<Vec<Due>>;
    /// Takes a claimed deadline off the schedule (nothing left to do for it). With `park`,
    /// keeps it aside for an operator: its entry or document could not be read.
    async fn unschedule(&self, entry: &str, claim: Timestamp, park: bool) -> StoreResult<()>;

    /// Stores the room, to be deleted at `expiry`.
    async fn insert_room(&self, room: &Room, expiry: Option<Timestamp>, event: &str) -> StoreResult<()>;
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>>;
    /// Oldest first.
    async fn rooms(&self, page: PageRequest) -> StoreResult<Page<Room>>;
    /// Adds the user to the participants once, if room and user exist, and moves the room's
    /// deletion to `expiry`.
    async fn join_room(&self, room: RoomId, user: UserId, expiry: Option<Timestamp>, event: &str) -> StoreResult<Join>;
    /// Deletes a room whose deletion was claimed; `false` when the claim no longer holds.
    async fn delete_room(&self, room: &Room, claim: Timestamp) -> StoreResult<bool>;

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

    /// The device registered at this platform's address (a token, or an endpoint).
    async fn device_at(&self, platform: Platform, address: &str) -> StoreResult<Option<Device>>;
    /// Stores `device` while its address is still registered as `read` (what
    /// [`Store::device_at`] gave); a device of another user there is removed. Beyond `max`
    /// devices of the user, the least recently updated go.
    async fn put_device(&self, device: &Device, read: Option<&Device>, max: usize) -> StoreResult<PutDevice>;
    /// The user's devices (`None`: no such user), in no particular order.
    async fn devices(&self, user: UserId) -> StoreResult<Option<Vec<Device>>>;
    async fn delete_device(&self, user: UserId, id: DeviceId) -> StoreResult<DeleteDevice>;

    /// Whether the store answers now (readiness).
    async fn ping(&self) -> StoreResult<()>;
}
