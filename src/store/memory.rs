//! The embedded store: one process, nothing persisted. A single mutex makes every method
//! atomic, which gives the same semantics as the Redis scripts; a change's event is sent
//! on the in-process bus under the same lock.

use super::{
    CallChange, CallUpdate, DELIVERY_ID_TTL, DeleteDevice, Due, Erasure, Join, NewCall, PutDevice, Scheduled, Store,
    StoreResult,
};
use crate::domain::{
    Call, CallFilter, CallId, CallStatus, Device, DeviceId, List, Listed, LiveKitRoom, Order, Page, PageRequest,
    Platform, Position, Room, RoomId, RoomName, Timestamp, User, UserId,
};
use crate::events::{self, LocalBus, Offset};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    calls: HashMap<CallId, Call>,
    rooms: HashMap<RoomId, Room>,
    /// The lists' orders (see [`Position`]).
    user_order: BTreeSet<Position>,
    call_order: BTreeSet<Position>,
    room_order: BTreeSet<Position>,
    room_names: HashMap<RoomName, Scheduled>,
    /// Each deadline, and the same ordered by time for the timers.
    deadlines: HashMap<Scheduled, i64>,
    due: BTreeSet<(i64, Scheduled)>,
    /// Delivery ids already applied, with when each may be forgotten.
    deliveries: HashMap<String, Instant>,
    /// Each user's addressed events (`AUTH=token`), as Redis keeps them in a stream.
    histories: HashMap<String, History>,
    /// How many histories there were when expired ones were last dropped.
    histories_checked_at: usize,
    devices: HashMap<DeviceId, Device>,
    /// Which device each address (platform, token or endpoint) is.
    addresses: HashMap<(Platform, String), DeviceId>,
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
        let oldest_kept = ms.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        // A history expires after its last event, as its Redis stream does: checked each
        // time the map doubled, so that the check costs O(1) per event.
        if self.histories.len() >= self.histories_checked_at.saturating_mul(2).max(1024) {
            self.histories.retain(|_, h| h.entries.back().is_some_and(|(offset, _)| offset.0 >= oldest_kept));
            self.histories_checked_at = self.histories.len();
        }
        let offsets = users
            .into_iter()
            .map(|user| {
                let history = self.histories.entry(user.clone()).or_default();
                history.last = history.last.next(ms);
                history.entries.push_back((history.last, body.to_owned()));
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

    fn set_deadline(&mut self, what: Scheduled, deadline: Option<Timestamp>) {
        if let Some(old) = self.deadlines.remove(&what) {
            self.due.remove(&(old, what));
        }
        if let Some(at) = deadline {
            self.deadlines.insert(what, at.millis());
            self.due.insert((at.millis(), what));
        }
    }

    /// Takes a claimed deadline off the schedule; false when the claim no longer holds.
    fn unschedule(&mut self, what: Scheduled, claim: Timestamp) -> bool {
        if self.deadlines.get(&what) != Some(&claim.millis()) {
            return false;
        }
        self.set_deadline(what, None);
        true
    }

    /// Forgets a device and its address; the platform it was on.
    fn remove_device(&mut self, id: DeviceId) -> Option<Platform> {
        let device = self.devices.remove(&id)?;
        self.addresses.remove(&(device.platform, device.address.identity().to_owned()));
        Some(device.platform)
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

/// The page of `order` after the request's position, in `direction`, of the items `get`
/// finds and `keep` keeps.
fn page<'a, T: Clone + Listed + 'a>(
    order: &BTreeSet<Position>,
    direction: Order,
    request: PageRequest,
    get: impl Fn(&Position) -> Option<&'a T>,
    keep: impl Fn(&T) -> bool,
) -> Page<T> {
    let after = request.after.map_or(Bound::Unbounded, Bound::Excluded);
    let positions: Box<dyn Iterator<Item = &Position>> = match direction {
        Order::OldestFirst => Box::new(order.range((after, Bound::Unbounded))),
        Order::NewestFirst => Box::new(order.range((Bound::Unbounded, after)).rev()),
    };
    let items = positions.filter_map(get).filter(|item| keep(item)).take(request.limit + 1).cloned().collect();
    Page::of(items, request.limit, Listed::position)
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
        s.user_order.insert(user.position());
        self.bus.send(&s.message(event, &[]));
        Ok(())
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn users(&self, request: PageRequest) -> StoreResult<Page<User>> {
        let s = self.lock();
        let get = |p: &Position| s.users.get(&UserId(p.id));
        Ok(page(&s.user_order, List::Users.order(), request, get, |_| true))
    }

    async fn delete_user(&self, id: UserId, event: &str) -> StoreResult<Erasure> {
        let mut s = self.lock();
        let Some(user) = s.users.get(&id) else {
            return Ok(Erasure::NoUser);
        };
        let position = user.position();
        let mut live: Vec<&Call> =
            s.calls.values().filter(|c| c.involves(id) && c.status != CallStatus::Ended).collect();
        if !live.is_empty() {
            live.sort_by_key(|c| c.position());
            return Ok(Erasure::Busy(live.into_iter().map(|c| c.id).collect()));
        }
        s.users.remove(&id);
        s.user_order.remove(&position);
        s.histories.remove(&id.to_string());
        let devices: Vec<DeviceId> = s.devices.values().filter(|d| d.user_id == id).map(|d| d.id).collect();
        for device in devices {
            s.remove_device(device);
        }
        for room in s.rooms.values_mut() {
            room.participants.retain(|p| *p != id);
        }
        self.bus.send(&s.message(event, &[]));
        Ok(Erasure::Erased)
    }

    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall> {
        let mut s = self.lock();
        for id in [call.from_user_id, call.to_user_id] {
            if !s.users.contains_key(&id) {
                return Ok(NewCall::NoUser(id));
            }
        }
        s.calls.insert(call.id, call.clone());
        s.call_order.insert(call.position());
        s.room_names.insert(call.room_name, Scheduled::Call(call.id));
        s.set_deadline(Scheduled::Call(call.id), deadline);
        let caller = s.users[&call.from_user_id].clone();
        self.bus.send(&s.message(event, &[]));
        Ok(NewCall::Stored { caller })
    }

    async fn call(&self, id: CallId) -> StoreResult<Option<Call>> {
        Ok(self.lock().calls.get(&id).cloned())
    }

    async fn calls(&self, filter: CallFilter, request: PageRequest) -> StoreResult<Page<Call>> {
        let s = self.lock();
        let get = |p: &Position| s.calls.get(&CallId(p.id));
        Ok(page(&s.call_order, List::Calls(filter).order(), request, get, |c| filter.matches(c)))
    }

    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate> {
        let mut s = self.lock();
        let id = change.call.id;
        let Some(stored) = s.calls.get(&id) else {
            s.set_deadline(Scheduled::Call(id), None);
            return Ok(CallUpdate::Stale(None));
        };
        if change.claim.is_some_and(|at| s.deadlines.get(&Scheduled::Call(id)) != Some(&at.millis())) {
            return Ok(CallUpdate::Unclaimed);
        }
        if stored.status != change.from {
            return Ok(CallUpdate::Stale(Some(stored.clone())));
        }
        if change.once.is_some_and(|once| !s.first_delivery(once)) {
            return Ok(CallUpdate::Duplicate);
        }
        s.calls.insert(id, change.call.clone());
        s.set_deadline(Scheduled::Call(id), change.deadline);
        for event in change.events {
            self.bus.send(&s.message(event, &[]));
        }
        Ok(CallUpdate::Applied)
    }

    async fn delete_call(&self, call: &Call, claim: Timestamp) -> StoreResult<bool> {
        let mut s = self.lock();
        if !s.unschedule(Scheduled::Call(call.id), claim) {
            return Ok(false);
        }
        s.calls.remove(&call.id);
        s.call_order.remove(&call.position());
        s.room_names.remove(&call.room_name);
        Ok(true)
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

    async fn claim_due(&self, limit: usize, lease: Duration) -> StoreResult<Vec<Due>> {
        let mut s = self.lock();
        let now = Timestamp::now();
        let claim =
            Timestamp::from_millis(now.millis().saturating_add(lease.as_millis().try_into().unwrap_or(i64::MAX)));
        let due: Vec<(i64, Scheduled)> =
            s.due.iter().take_while(|(at, _)| *at <= now.millis()).take(limit).copied().collect();
        Ok(due
            .into_iter()
            .map(|(at, what)| {
                s.set_deadline(what, Some(claim));
                Due { entry: what.to_string(), at: Timestamp::from_millis(at), claim }
            })
            .collect())
    }

    /// Nothing here is ever unreadable: an entry to take off is a deadline whose call or room
    /// went.
    async fn unschedule(&self, entry: &str, claim: Timestamp, _park: bool) -> StoreResult<()> {
        if let Some(what) = Scheduled::parse(entry) {
            self.lock().unschedule(what, claim);
        }
        Ok(())
    }

    async fn insert_room(&self, room: &Room, expiry: Option<Timestamp>, event: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.rooms.insert(room.id, room.clone());
        s.room_order.insert(room.position());
        s.room_names.insert(room.room_name, Scheduled::Room(room.id));
        s.set_deadline(Scheduled::Room(room.id), expiry);
        self.bus.send(&s.message(event, &[]));
        Ok(())
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        Ok(self.lock().rooms.get(&id).cloned())
    }

    async fn rooms(&self, request: PageRequest) -> StoreResult<Page<Room>> {
        let s = self.lock();
        let get = |p: &Position| s.rooms.get(&RoomId(p.id));
        Ok(page(&s.room_order, List::Rooms.order(), request, get, |_| true))
    }

    async fn join_room(&self, room: RoomId, user: UserId, expiry: Option<Timestamp>, event: &str) -> StoreResult<Join> {
        let mut s = self.lock();
        if !s.rooms.contains_key(&room) {
            return Ok(Join::NoRoom);
        }
        let Some(joiner) = s.users.get(&user).cloned() else {
            return Ok(Join::NoUser);
        };
        let Some(r) = s.rooms.get_mut(&room) else {
            return Ok(Join::NoRoom);
        };
        if !r.participants.contains(&user) {
            r.participants.push(user);
        }
        let room = r.clone();
        s.set_deadline(Scheduled::Room(room.id), expiry);
        let message = s.message(event, &room.participants);
        self.bus.send(&message);
        Ok(Join::Joined { room, user: joiner })
    }

    async fn delete_room(&self, room: &Room, claim: Timestamp) -> StoreResult<bool> {
        let mut s = self.lock();
        if !s.unschedule(Scheduled::Room(room.id), claim) {
            return Ok(false);
        }
        s.rooms.remove(&room.id);
        s.room_order.remove(&room.position());
        s.room_names.remove(&room.room_name);
        Ok(true)
    }

    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>> {
        let s = self.lock();
        Ok(s.room_names.get(&name).and_then(|owner| match *owner {
            Scheduled::Call(id) => s.calls.get(&id).cloned().map(LiveKitRoom::Call),
            Scheduled::Room(id) => s.rooms.get(&id).cloned().map(LiveKitRoom::Room),
        }))
    }

    async fn device_at(&self, platform: Platform, address: &str) -> StoreResult<Option<Device>> {
        let s = self.lock();
        Ok(s.addresses.get(&(platform, address.to_owned())).and_then(|id| s.devices.get(id)).cloned())
    }

    async fn put_device(&self, device: &Device, read: Option<&Device>, max: usize) -> StoreResult<PutDevice> {
        let mut s = self.lock();
        if !s.users.contains_key(&device.user_id) {
            return Ok(PutDevice::NoUser);
        }
        let address = (device.platform, device.address.identity().to_owned());
        if s.addresses.get(&address) != read.map(|d| &d.id) {
            return Ok(PutDevice::Raced);
        }
        if let Some(previous) = read.filter(|d| d.id != device.id) {
            s.remove_device(previous.id);
        }
        s.addresses.insert(address, device.id);
        s.devices.insert(device.id, device.clone());
        let mut mine: Vec<(Timestamp, DeviceId)> =
            s.devices.values().filter(|d| d.user_id == device.user_id).map(|d| (d.updated_at, d.id)).collect();
        mine.sort();
        let oldest: Vec<DeviceId> = mine.iter().take(mine.len().saturating_sub(max)).map(|&(_, id)| id).collect();
        let evicted = oldest.into_iter().filter_map(|id| s.remove_device(id)).collect();
        Ok(PutDevice::Stored { evicted })
    }

    async fn devices(&self, user: UserId) -> StoreResult<Option<Vec<Device>>> {
        let s = self.lock();
        let devices = || s.devices.values().filter(|d| d.user_id == user).cloned().collect();
        Ok(s.users.contains_key(&user).then(devices))
    }

    async fn delete_device(&self, user: UserId, id: DeviceId) -> StoreResult<DeleteDevice> {
        let mut s = self.lock();
        if !s.users.contains_key(&user) {
            return Ok(DeleteDevice::NoUser);
        }
        if s.devices.get(&id).is_none_or(|d| d.user_id != user) {
            return Ok(DeleteDevice::NoDevice);
        }
        Ok(s.remove_device(id).map_or(DeleteDevice::NoDevice, DeleteDevice::Deleted))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
