//! The embedded store: one process, nothing persisted. A single mutex makes every method
//! atomic, which gives the same semantics as the Redis scripts; a change's event is sent
//! on the in-process bus under the same lock.

use super::{CallChange, CallUpdate, DELIVERY_ID_TTL, Join, NewCall, Store, StoreResult};
use crate::domain::{Call, CallFilter, CallId, LiveKitRoom, Room, RoomId, RoomName, Timestamp, User, UserId};
use crate::events::{self, LocalBus, Offset};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    user_order: Vec<UserId>,
    calls: HashMap<CallId, Call>,
    call_order: Vec<CallId>,
    rooms: HashMap<RoomId, Room>,
    room_order: Vec<RoomId>,
    room_names: HashMap<RoomName, Owner>,
    /// Each call's next deadline, and the same ordered by time for the timers.
    deadlines: HashMap<CallId, i64>,
    due: BTreeSet<(i64, CallId)>,
    /// Delivery ids already applied, with when each may be forgotten.
    deliveries: HashMap<String, Instant>,
    /// Each user's addressed events (`AUTH=token`), as Redis keeps them in a stream.
    histories: HashMap<String, History>,
}

/// One user's kept events, oldest first: at most the history's length, none older than its
/// lifetime (what a Redis stream with `MAXLEN`, `MINID` and `EXPIRE` keeps).
#[derive(Default)]
struct History {
    entries: VecDeque<(Offset, String)>,
    last: Offset,
}

impl State {
    /// The bus message of `envelope`, after appending an addressed event to its users'
    /// histories (see `events::envelope`; prelude.lua does the same in Redis).
    fn message(&mut self, envelope: &str, participants: &[UserId]) -> String {
        let Some((users, max, ttl, body)) = events::open(envelope) else {
            return envelope.to_owned();
        };
        let users: Vec<String> = match users {
            Some(users) => users.into_iter().map(str::to_owned).collect(),
            None => participants.iter().map(ToString::to_string).collect(),
        };
        let ms = u64::try_from(Timestamp::now().millis()).unwrap_or_default();
        let offsets = users
            .into_iter()
            .map(|user| {
                let history = self.histories.entry(user.clone()).or_default();
                history.last = history.last.next(ms);
                history.entries.push_back((history.last, body.to_owned()));
                let oldest_kept = ms.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                while history.entries.len() > max as usize
                    || history.entries.front().is_some_and(|(offset, _)| offset.0 < oldest_kept)
                {
                    history.entries.pop_front();
                }
                (user, history.last.to_string())
            })
            .collect::<Vec<_>>();
        events::address(body, &offsets)
    }

    fn set_deadline(&mut self, id: CallId, deadline: Option<Timestamp>) {
        if let Some(old) = self.deadlines.remove(&id) {
            self.due.remove(&(old, id));
        }
        if let Some(at) = deadline {
            self.deadlines.insert(id, at.millis());
            self.due.insert((at.millis(), id));
        }
    }

    /// Remembers `id`; false when it was already remembered.
    fn first_delivery(&mut self, id: &str) -> bool {
        let now = Instant::now();
        if self.deliveries.len() >= 1024 {
            self.deliveries.retain(|_, forget_at| *forget_at > now);
        }
        match self.deliveries.get(id) {
            Some(forget_at) if *forget_at > now => false,
            _ => {
                self.deliveries.insert(id.to_owned(), now + DELIVERY_ID_TTL);
                true
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Owner {
    Call(CallId),
    Room(RoomId),
}

/// In-memory [`Store`] for a single replica.
pub struct MemoryStore {
    state: Mutex<State>,
    bus: LocalBus,
}

impl MemoryStore {
    /// A store whose changes publish their events on `bus`.
    pub fn new(bus: LocalBus) -> Self {
        Self { state: Mutex::default(), bus }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every
        // method validates before it mutates.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.users.insert(user.id, user.clone());
        s.user_order.push(user.id);
        self.bus.send(&s.message(event, &[]));
        Ok(())
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn users(&self, limit: usize) -> StoreResult<Vec<User>> {
        let s = self.lock();
        Ok(s.user_order.iter().take(limit).map(|id| s.users[id].clone()).collect())
    }

    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall> {
        let mut s = self.lock();
        for id in [call.from_user_id, call.to_user_id] {
            if !s.users.contains_key(&id) {
                return Ok(NewCall::NoUser(id));
            }
        }
        s.calls.insert(call.id, call.clone());
        s.call_order.push(call.id);
        s.room_names.insert(call.room_name, Owner::Call(call.id));
        s.set_deadline(call.id, deadline);
        let caller = s.users[&call.from_user_id].clone();
        self.bus.send(&s.message(event, &[]));
        Ok(NewCall::Stored { caller })
    }

    async fn call(&self, id: CallId) -> StoreResult<Option<Call>> {
        Ok(self.lock().calls.get(&id).cloned())
    }

    async fn calls(&self, filter: CallFilter, limit: usize) -> StoreResult<Vec<Call>> {
        let s = self.lock();
        let newest_first = s.call_order.iter().rev().map(|id| &s.calls[id]);
        Ok(newest_first.filter(|c| filter.matches(c)).take(limit).cloned().collect())
    }

    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate> {
        let mut s = self.lock();
        let id = change.call.id;
        let Some(stored) = s.calls.get(&id) else {
            return Ok(CallUpdate::Stale(None));
        };
        if change.claim.is_some_and(|at| s.deadlines.get(&id) != Some(&at.millis())) {
            return Ok(CallUpdate::Unclaimed);
        }
        if stored.status != change.from {
            return Ok(CallUpdate::Stale(Some(stored.clone())));
        }
        if change.once.is_some_and(|once| !s.first_delivery(once)) {
            return Ok(CallUpdate::Duplicate);
        }
        s.calls.insert(id, change.call.clone());
        s.set_deadline(id, change.deadline);
        for event in change.events {
            self.bus.send(&s.message(event, &[]));
        }
        Ok(CallUpdate::Applied)
    }

    async fn history(
        &self,
        user: UserId,
        after: &str,
        max_age: Duration,
        limit: usize,
    ) -> StoreResult<Option<Vec<(String, String)>>> {
        let s = self.lock();
        let (Some(history), Some(after)) = (s.histories.get(&user.to_string()), Offset::parse(after)) else {
            return Ok(None);
        };
        let now_ms = u64::try_from(Timestamp::now().millis()).unwrap_or_default();
        let too_old = after.0 < now_ms.saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        if too_old || !history.entries.iter().any(|(offset, _)| *offset == after) {
            return Ok(None);
        }
        let missed = history.entries.iter().filter(|(offset, _)| *offset > after).take(limit);
        Ok(Some(missed.map(|(offset, event)| (offset.to_string(), event.clone())).collect()))
    }

    async fn delivered(&self, id: &str) -> StoreResult<bool> {
        Ok(self.lock().deliveries.get(id).is_some_and(|forget_at| *forget_at > Instant::now()))
    }

    async fn due_calls(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<(CallId, Timestamp)>> {
        let s = self.lock();
        let due = s.due.iter().take_while(|(at, _)| *at <= now.millis()).take(limit);
        Ok(due.map(|&(at, id)| (id, Timestamp::from_millis(at))).collect())
    }

    async fn insert_room(&self, room: &Room, event: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.rooms.insert(room.id, room.clone());
        s.room_order.push(room.id);
        s.room_names.insert(room.room_name, Owner::Room(room.id));
        self.bus.send(&s.message(event, &[]));
        Ok(())
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        Ok(self.lock().rooms.get(&id).cloned())
    }

    async fn rooms(&self, limit: usize) -> StoreResult<Vec<Room>> {
        let s = self.lock();
        Ok(s.room_order.iter().take(limit).map(|id| s.rooms[id].clone()).collect())
    }

    async fn join_room(&self, room: RoomId, user: UserId, event: &str) -> StoreResult<Join> {
        let mut s = self.lock();
        let Some(joiner) = s.users.get(&user).cloned() else {
            return Ok(if s.rooms.contains_key(&room) { Join::NoUser } else { Join::NoRoom });
        };
        let Some(r) = s.rooms.get_mut(&room) else {
            return Ok(Join::NoRoom);
        };
        if !r.participants.contains(&user) {
            r.participants.push(user);
        }
        let room = r.clone();
        let message = s.message(event, &room.participants);
        self.bus.send(&message);
        Ok(Join::Joined { room, user: joiner })
    }

    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>> {
        let s = self.lock();
        Ok(s.room_names.get(&name).map(|owner| match *owner {
            Owner::Call(id) => LiveKitRoom::Call(s.calls[&id].clone()),
            Owner::Room(id) => LiveKitRoom::Room(s.rooms[&id].clone()),
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
