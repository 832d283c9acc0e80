//! The Redis store: documents as JSON strings, sorted-set indexes for the lists, and one
//! Lua script per change so that racing replicas see each transition exactly once. Every
//! key is named in [`Keys`] and passed to the scripts; every reply is decoded into a type.

use super::keys::Keys;
use super::{
    CallChange, CallUpdate, DELIVERY_ID_TTL, DeleteDevice, Due, Erasure, Join, NewCall, PutDevice, Scheduled, Store,
    StoreError, StoreResult, corrupt,
};
use crate::domain::{
    Call, CallFilter, CallId, Device, DeviceId, List, Listed, LiveKitRoom, Order, Page, PageRequest, Platform, Room,
    RoomId, RoomName, Timestamp, User, UserId,
};
use crate::events::EventLog;
use crate::telemetry::metrics;
use async_trait::async_trait;
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::scripts::Script;
use fred::types::{ClientState, ClusterHash, CustomCommand};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// One Lua script, loaded on first use (and again after a Redis restart).
struct Lua {
    script: Script,
}

impl Lua {
    /// `body` after the prelude, which the event log's bounds and the key templates precede.
    fn new(log: EventLog, keys: &Keys, body: &str) -> Self {
        let (max, age_ms) = (log.max, log.age.as_millis());
        let source = format!(
            "local LOG_MAX, LOG_AGE_MS = {max}, {age_ms}\n{}\n{}\n{body}",
            keys.templates(),
            include_str!("lua/prelude.lua")
        );
        Self { script: Script::from_lua(source) }
    }
}

/// Whether an operation changes anything: a failed write may have been applied.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

struct Scripts {
    insert_user: Lua,
    delete_user: Lua,
    insert_call: Lua,
    update_call: Lua,
    delete_call: Lua,
    claim_due: Lua,
    unschedule: Lua,
    history: Lua,
    insert_room: Lua,
    join_room: Lua,
    delete_room: Lua,
    page: Lua,
    put_device: Lua,
    devices: Lua,
    delete_device: Lua,
}

/// [`Store`] on a Redis shared by every replica.
pub struct RedisStore {
    client: Client,
    /// Fail fast while disconnected, bounded wait otherwise, never replay a write.
    options: Options,
    keys: Keys,
    /// The Cluster slot of the keys' hash tag, where every key and script of the deployment
    /// lives.
    slot: u16,
    /// After each write, wait for this many Redis replicas to have it (`WAIT`).
    wait: Option<WaitReplicas>,
    /// Until when (ms since `started`) writes skip `WAIT`: after a shortfall the primary
    /// lacks replicas (a failover left it alone), and every `WAIT` would hold the shared
    /// connection for its whole timeout. One write a second tries again.
    wait_paused_until_ms: AtomicU64,
    started: Instant,
    scripts: Scripts,
}

/// `WAIT numreplicas timeout` after each write: an acknowledged write then survives a
/// failover to one of those replicas. Replication is asynchronous otherwise, and a primary
/// killed right after a write can take it along.
#[derive(Clone, Copy, Debug)]
pub struct WaitReplicas {
    pub replicas: u32,
    pub timeout: std::time::Duration,
}

impl RedisStore {
    /// Wraps a connected (or connecting) client; every change appends its event to `log`.
    pub fn new(client: Client, options: Options, keys: Keys, wait: Option<WaitReplicas>, log: EventLog) -> Self {
        let lua = |body| Lua::new(log, &keys, body);
        let scripts = Scripts {
            insert_user: lua(include_str!("lua/insert_user.lua")),
            delete_user: lua(include_str!("lua/delete_user.lua")),
            insert_call: lua(include_str!("lua/insert_call.lua")),
            update_call: lua(include_str!("lua/update_call.lua")),
            delete_call: lua(include_str!("lua/delete_call.lua")),
            claim_due: lua(include_str!("lua/claim_due.lua")),
            unschedule: lua(include_str!("lua/unschedule.lua")),
            history: lua(include_str!("lua/history.lua")),
            insert_room: lua(include_str!("lua/insert_room.lua")),
            join_room: lua(include_str!("lua/join_room.lua")),
            delete_room: lua(include_str!("lua/delete_room.lua")),
            page: lua(include_str!("lua/page.lua")),
            put_device: lua(include_str!("lua/put_device.lua")),
            devices: lua(include_str!("lua/devices.lua")),
            delete_device: lua(include_str!("lua/delete_device.lua")),
        };
        let slot = fred::util::redis_keyslot(keys.users().as_bytes());
        Self {
            client,
            options,
            keys,
            slot,
            wait,
            wait_paused_until_ms: AtomicU64::new(0),
            started: Instant::now(),
            scripts,
        }
    }

    /// Runs one Redis round trip, recording its latency and failure under `op`. A failed
    /// write is `Unconfirmed` unless the client was already disconnected when it was sent
    /// (commands fail fast then, before anything leaves).
    async fn timed<T>(
        &self,
        op: &'static str,
        access: Access,
        fut: impl Future<Output = FredResult<T>>,
    ) -> StoreResult<T> {
        let sent_connected = self.client.state() == ClientState::Connected;
        let started = Instant::now();
        // A client span only when traces are exported: no log line reads it.
        let result = if crate::telemetry::trace::exporting() {
            let span = tracing::info_span!("redis", otel.name = op, otel.kind = "client", db.system.name = "redis");
            fut.instrument(span).await
        } else {
            fut.await
        };
        metrics::redis_command(op, started.elapsed(), result.is_ok());
        result.map_err(|e| match access {
            Access::Write if sent_connected => StoreError::Unconfirmed(format!("{op}: {e}")),
            _ => StoreError::Unreachable(format!("{op}: {e}")),
        })
    }

    /// Runs a script by hash with the event log's keys and then `keys`, on the node that
    /// owns the deployment's slot; loads it there when that node does not know it yet (first
    /// use, a restart, a failover). (fred's own `evalsha` helpers bypass per-command
    /// options, hence `custom`.)
    async fn eval(
        &self,
        op: &'static str,
        access: Access,
        lua: &Lua,
        keys: impl IntoIterator<Item = String>,
        args: Vec<String>,
    ) -> StoreResult<Reply> {
        let client = self.client.with_options(&self.options);
        let keys: Vec<String> = self.keys.log().into_iter().chain(keys).collect();
        let mut full = Vec::with_capacity(keys.len() + args.len() + 2);
        full.extend([lua.script.sha1().to_string(), keys.len().to_string()]);
        full.extend(keys);
        full.extend(args);
        let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(self.slot), false);
        let reply = self
            .timed(op, access, async {
                match client.custom::<Value, _>(evalsha.clone(), full.clone()).await {
                    Err(e) if e.details().starts_with("NOSCRIPT") => {
                        let source = lua.script.lua().map(|s| s.to_string()).unwrap_or_default();
                        let load = CustomCommand::new_static("SCRIPT", ClusterHash::Custom(self.slot), false);
                        client.custom::<Value, _>(load, vec!["LOAD".to_owned(), source]).await?;
                        client.custom(evalsha, full).await
                    }
                    other => other,
                }
            })
            .await?;
        if let (Access::Write, Some(wait)) = (access, self.wait) {
            self.wait_for_replicas(wait).await;
        }
        Ok(Reply { op, nil: reply.is_null(), items: reply.into_array().into_iter() })
    }

    /// Waits for replicas to acknowledge the writes sent so far on the connection to the
    /// slot's primary. The write stands either way; a shortfall is counted and logged.
    async fn wait_for_replicas(&self, wait: WaitReplicas) {
        const PAUSE_AFTER_SHORTFALL_MS: u64 = 1000;
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms < self.wait_paused_until_ms.load(Ordering::Relaxed) {
            metrics::redis_failed("wait");
            return;
        }
        let client = self.client.with_options(&self.options);
        let command = CustomCommand::new_static("WAIT", ClusterHash::Custom(self.slot), false);
        let args = vec![wait.replicas.to_string(), wait.timeout.as_millis().to_string()];
        let started = Instant::now();
        let acked = client.custom::<i64, _>(command, args).await;
        let enough = matches!(acked, Ok(n) if n >= i64::from(wait.replicas));
        metrics::redis_command("wait", started.elapsed(), enough);
        if !enough {
            self.wait_paused_until_ms.store(now_ms + PAUSE_AFTER_SHORTFALL_MS, Ordering::Relaxed);
            tracing::warn!(replicas = wait.replicas, acked = ?acked.ok(), "a write reached fewer Redis replicas than REDIS_WAIT_REPLICAS");
        }
    }

    /// `GET` of one document.
    async fn get_doc<T: DeserializeOwned>(&self, op: &'static str, key: String) -> StoreResult<Option<T>> {
        let client = self.client.with_options(&self.options);
        let raw: Option<String> = self.timed(op, Access::Read, client.get(&key)).await?;
        raw.map(|s| decode(&key, &s)).transpose()
    }

    /// One page of a list; `read` decodes one item of the script's reply (after its id).
    async fn page<T: Listed>(
        &self,
        op: &'static str,
        list: List,
        page: PageRequest,
        mut read: impl FnMut(&mut Reply, &str) -> StoreResult<T>,
    ) -> StoreResult<Page<T>> {
        // The index, and the name of its documents' template in the script.
        let (index, kind) = match list {
            List::Users => (self.keys.users(), "user"),
            List::Rooms => (self.keys.rooms(), "room"),
            List::Calls(filter) => (self.keys.call_index(filter.user, filter.status), "call"),
        };
        let order = match list.order() {
            Order::OldestFirst => "asc",
            Order::NewestFirst => "desc",
        };
        let (at, after) = page.after.map(|p| (p.at.to_string(), p.id.to_string())).unzip();
        let args = vec![
            kind.to_owned(),
            order.to_owned(),
            (page.limit + 1).to_string(),
            at.unwrap_or_default(),
            after.unwrap_or_default(),
        ];
        let reply = self.eval(op, Access::Read, &self.scripts.page, [index], args).await?;
        let mut items = Vec::new();
        for entry in reply.items {
            let mut entry = Reply { op, nil: false, items: entry.into_array().into_iter() };
            let id = entry.text()?;
            items.push(read(&mut entry, &id)?);
        }
        Ok(Page::of(items, page.limit, Listed::position))
    }

    /// A room document and its participants, as scripts return them.
    fn room_reply(&self, id: &str, reply: &mut Reply) -> StoreResult<Room> {
        let doc = reply.text()?;
        let mut room: Room = decode(&self.keys.room(id), &doc)?;
        room.participants = reply
            .next()
            .into_array()
            .into_iter()
            .map(|v| v.as_str().as_deref().and_then(UserId::parse).ok_or_else(|| reply.unexpected("a participant")))
            .collect::<StoreResult<_>>()?;
        Ok(room)
    }
}

/// A script's reply, read in order: each read says what it expected.
struct Reply {
    op: &'static str,
    /// The script returned nil.
    nil: bool,
    items: std::vec::IntoIter<Value>,
}

impl Reply {
    fn next(&mut self) -> Value {
        self.items.next().unwrap_or(Value::Null)
    }

    fn text(&mut self) -> StoreResult<String> {
        self.next().into_string().ok_or_else(|| self.unexpected("a string"))
    }

    fn number(&mut self) -> StoreResult<i64> {
        let value = self.next();
        value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)).ok_or_else(|| self.unexpected("a number"))
    }

    /// A reply this build's scripts never give: Redis is not running our script (or another
    /// version of it). Reported as the store not answering, which it did not, usefully.
    fn unexpected(&self, what: &str) -> StoreError {
        StoreError::Unreachable(format!("{}: the script's reply lacks {what}", self.op))
    }
}

/// Decodes a stored document; one that does not decode is counted and logged with its key.
fn decode<T: DeserializeOwned>(key: &str, doc: &str) -> StoreResult<T> {
    serde_json::from_str(doc).map_err(|e| corrupt(key, e.to_string()))
}

fn millis_or_empty(at: Option<Timestamp>) -> String {
    at.map(|t| t.millis().to_string()).unwrap_or_default()
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[async_trait]
impl Store for RedisStore {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()> {
        let keys = [self.keys.user(user.id), self.keys.users()];
        let args = vec![user.id.to_string(), json(user), user.created_at.millis().to_string(), event.to_owned()];
        let mut reply = self.eval("insert_user", Access::Write, &self.scripts.insert_user, keys, args).await?;
        match reply.text()?.as_str() {
            "stored" => Ok(()),
            _ => Err(reply.unexpected("'stored'")),
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.get_doc("get_user", self.keys.user(id)).await
    }

    async fn users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        let read = |reply: &mut Reply, id: &str| decode(&self.keys.user(id), &reply.text()?);
        self.page("list_users", List::Users, page, read).await
    }

    async fn delete_user(&self, id: UserId, event: &str) -> StoreResult<Erasure> {
        let args = vec![id.to_string(), event.to_owned()];
        let keys = self.keys.erased_user(id);
        let mut reply = self.eval("delete_user", Access::Write, &self.scripts.delete_user, keys, args).await?;
        match reply.text()?.as_str() {
            "erased" => Ok(Erasure::Erased),
            "no_user" => Ok(Erasure::NoUser),
            "busy" => {
                let ids: Vec<Option<CallId>> =
                    reply.items.by_ref().map(|v| v.as_str().as_deref().and_then(CallId::parse)).collect();
                let calls = ids.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| reply.unexpected("call ids"))?;
                Ok(Erasure::Busy(calls))
            }
            _ => Err(reply.unexpected("'erased', 'no_user' or 'busy'")),
        }
    }

    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall> {
        let (from, to) = (call.from_user_id, call.to_user_id);
        let [doc, room_name] = self.keys.call_documents(call.id, call.room_name);
        let mut keys = vec![self.keys.user(from), self.keys.user(to), doc, room_name, self.keys.deadlines()];
        keys.extend(self.keys.status_indexes(from, to, None));
        keys.extend(self.keys.status_indexes(from, to, Some(call.status)));
        let args = vec![
            call.id.to_string(),
            json(call),
            call.start_time.millis().to_string(),
            Scheduled::Call(call.id).to_string(),
            millis_or_empty(deadline),
            event.to_owned(),
        ];
        let mut reply = self.eval("insert_call", Access::Write, &self.scripts.insert_call, keys, args).await?;
        match reply.text()?.as_str() {
            "stored" => Ok(NewCall::Stored { caller: decode(&self.keys.user(from), &reply.text()?)? }),
            "no_user" => match reply.text()?.as_str() {
                "caller" => Ok(NewCall::NoUser(from)),
                "callee" => Ok(NewCall::NoUser(to)),
                _ => Err(reply.unexpected("'caller' or 'callee'")),
            },
            _ => Err(reply.unexpected("'stored' or 'no_user'")),
        }
    }

    async fn call(&self, id: CallId) -> StoreResult<Option<Call>> {
        self.get_doc("get_call", self.keys.call(id)).await
    }

    async fn calls(&self, filter: CallFilter, page: PageRequest) -> StoreResult<Page<Call>> {
        let read = |reply: &mut Reply, id: &str| decode(&self.keys.call(id), &reply.text()?);
        self.page("list_calls", List::Calls(filter), page, read).await
    }

    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate> {
        let call = change.call;
        let (from, to) = (call.from_user_id, call.to_user_id);
        let once = change.once.unwrap_or_default();
        let mut keys = vec![self.keys.call(call.id), self.keys.deadlines(), self.keys.delivery(once)];
        keys.extend(self.keys.status_indexes(from, to, Some(change.from)));
        keys.extend(self.keys.status_indexes(from, to, Some(call.status)));
        let mut args = vec![
            call.id.to_string(),
            change.from.as_str().to_owned(),
            json(call),
            call.start_time.millis().to_string(),
            Scheduled::Call(call.id).to_string(),
            millis_or_empty(change.deadline),
            millis_or_empty(change.claim),
            change.once.map(|_| DELIVERY_ID_TTL.as_secs().to_string()).unwrap_or_default(),
        ];
        args.extend(change.events.iter().cloned());
        let mut reply = self.eval("update_call", Access::Write, &self.scripts.update_call, keys, args).await?;
        match reply.text()?.as_str() {
            "applied" => Ok(CallUpdate::Applied),
            "unclaimed" => Ok(CallUpdate::Unclaimed),
            "duplicate" => Ok(CallUpdate::Duplicate),
            "gone" => Ok(CallUpdate::Stale(None)),
            "stale" => Ok(CallUpdate::Stale(Some(decode(&self.keys.call(call.id), &reply.text()?)?))),
            _ => Err(reply.unexpected("an update's outcome")),
        }
    }

    async fn delete_call(&self, call: &Call, claim: Timestamp) -> StoreResult<bool> {
        let mut keys = vec![self.keys.deadlines()];
        keys.extend(self.keys.call_documents(call.id, call.room_name));
        keys.extend(self.keys.call_indexes(call.from_user_id, call.to_user_id));
        let args = vec![call.id.to_string(), Scheduled::Call(call.id).to_string(), claim.millis().to_string()];
        let mut reply = self.eval("delete_call", Access::Write, &self.scripts.delete_call, keys, args).await?;
        deleted(&mut reply)
    }

    async fn delivered(&self, id: &str) -> StoreResult<bool> {
        let client = self.client.with_options(&self.options);
        self.timed("delivered", Access::Read, client.exists::<i64, _>(self.keys.delivery(id))).await.map(|n| n > 0)
    }

    async fn claim_due(&self, limit: usize, lease: Duration) -> StoreResult<Vec<Due>> {
        let args = vec![limit.to_string(), lease.as_millis().to_string()];
        let keys = [self.keys.deadlines()];
        let mut reply = self.eval("claim_due", Access::Write, &self.scripts.claim_due, keys, args).await?;
        let claim = Timestamp::from_millis(reply.number()?);
        let mut due = Vec::new();
        while reply.items.len() > 0 {
            let entry = reply.text()?;
            let at =
                Timestamp::from_millis(reply.text()?.parse::<f64>().map_err(|_| reply.unexpected("a score"))? as i64);
            due.push(Due { entry, at, claim });
        }
        Ok(due)
    }

    async fn unschedule(&self, entry: &str, claim: Timestamp, park: bool) -> StoreResult<()> {
        let keys = [self.keys.deadlines(), self.keys.parked()];
        let args = vec![entry.to_owned(), claim.millis().to_string(), if park { "1" } else { "0" }.to_owned()];
        let mut reply = self.eval("unschedule", Access::Write, &self.scripts.unschedule, keys, args).await?;
        match reply.text()?.as_str() {
            "done" | "unclaimed" => Ok(()),
            _ => Err(reply.unexpected("'done' or 'unclaimed'")),
        }
    }

    async fn insert_room(&self, room: &Room, expiry: Option<Timestamp>, event: &str) -> StoreResult<()> {
        let keys =
            [self.keys.room(room.id), self.keys.rooms(), self.keys.room_name(room.room_name), self.keys.deadlines()];
        let args = vec![
            room.id.to_string(),
            json(room),
            room.created_at.millis().to_string(),
            Scheduled::Room(room.id).to_string(),
            millis_or_empty(expiry),
            event.to_owned(),
        ];
        let mut reply = self.eval("insert_room", Access::Write, &self.scripts.insert_room, keys, args).await?;
        match reply.text()?.as_str() {
            "stored" => Ok(()),
            _ => Err(reply.unexpected("'stored'")),
        }
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        let client = self.client.with_options(&self.options);
        let (doc, participants): (Option<String>, Vec<String>) = self
            .timed("get_room", Access::Read, async {
                let pipeline = client.pipeline();
                let _: () = pipeline.get(self.keys.room(id)).await?;
                let _: () = pipeline.lrange(self.keys.room_participants(id), 0, -1).await?;
                pipeline.all().await
            })
            .await?;
        let Some(doc) = doc else { return Ok(None) };
        let key = self.keys.room(id);
        let mut room: Room = decode(&key, &doc)?;
        room.participants = participants
            .iter()
            .map(|p| UserId::parse(p).ok_or_else(|| corrupt(&self.keys.room_participants(id), format!("{p:?}"))))
            .collect::<StoreResult<_>>()?;
        Ok(Some(room))
    }

    async fn rooms(&self, page: PageRequest) -> StoreResult<Page<Room>> {
        let read = |reply: &mut Reply, id: &str| self.room_reply(id, reply);
        self.page("list_rooms", List::Rooms, page, read).await
    }

    async fn join_room(&self, room: RoomId, user: UserId, expiry: Option<Timestamp>, event: &str) -> StoreResult<Join> {
        let keys = [
            self.keys.room(room),
            self.keys.room_members(room),
            self.keys.room_participants(room),
            self.keys.user(user),
            self.keys.user_rooms(user),
            self.keys.deadlines(),
        ];
        let args = vec![
            room.to_string(),
            user.to_string(),
            Scheduled::Room(room).to_string(),
            millis_or_empty(expiry),
            event.to_owned(),
        ];
        let mut reply = self.eval("join_room", Access::Write, &self.scripts.join_room, keys, args).await?;
        match reply.text()?.as_str() {
            "joined" => {
                let user = decode(&self.keys.user(user), &reply.text()?)?;
                let room = self.room_reply(&room.to_string(), &mut reply)?;
                Ok(Join::Joined { room, user })
            }
            "no_user" => Ok(Join::NoUser),
            "no_room" => Ok(Join::NoRoom),
            _ => Err(reply.unexpected("a join's outcome")),
        }
    }

    async fn delete_room(&self, room: &Room, claim: Timestamp) -> StoreResult<bool> {
        let mut keys = vec![self.keys.deadlines()];
        keys.extend(self.keys.room_documents(room.id, room.room_name));
        keys.push(self.keys.rooms());
        let args = vec![room.id.to_string(), Scheduled::Room(room.id).to_string(), claim.millis().to_string()];
        let mut reply = self.eval("delete_room", Access::Write, &self.scripts.delete_room, keys, args).await?;
        deleted(&mut reply)
    }

    /// Two steps, not one script: what the name points at may be deleted in between, which
    /// reads as if it had been deleted first.
    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>> {
        let key = self.keys.room_name(name);
        let client = self.client.with_options(&self.options);
        let owner: Option<String> = self.timed("livekit_room", Access::Read, client.get(&key)).await?;
        let Some(owner) = owner else { return Ok(None) };
        match Scheduled::parse(&owner) {
            Some(Scheduled::Call(id)) => Ok(self.call(id).await?.map(LiveKitRoom::Call)),
            Some(Scheduled::Room(id)) => Ok(self.room(id).await?.map(LiveKitRoom::Room)),
            None => Err(corrupt(&key, format!("not an owner: {owner:?}"))),
        }
    }

    async fn history(
        &self,
        user: UserId,
        after: &str,
        max_age: std::time::Duration,
        limit: usize,
    ) -> StoreResult<Option<Vec<(String, String)>>> {
        let args = vec![after.to_owned(), max_age.as_secs().to_string(), limit.to_string()];
        let keys = [self.keys.history(user)];
        let mut reply = self.eval("history", Access::Read, &self.scripts.history, keys, args).await?;
        if reply.nil {
            return Ok(None);
        }
        let mut events = Vec::new();
        while reply.items.len() > 0 {
            events.push((reply.text()?, reply.text()?));
        }
        Ok(Some(events))
    }

    /// Two steps: the address's device id, then its document (a device deleted in between
    /// reads as none; [`Store::put_device`] checks what was read).
    async fn device_at(&self, platform: Platform, address: &str) -> StoreResult<Option<Device>> {
        let client = self.client.with_options(&self.options);
        let field = Keys::device_address(platform, address);
        let addresses = self.keys.device_addresses();
        let id: Option<String> = self.timed("device_at", Access::Read, client.hget(&addresses, &field)).await?;
        let Some(id) = id else { return Ok(None) };
        let key = self.keys.device(&id);
        let doc: Option<String> = self.timed("device_at", Access::Read, client.hget(&key, "doc")).await?;
        doc.map(|doc| decode(&key, &doc)).transpose()
    }

    async fn put_device(&self, device: &Device, read: Option<&Device>, max: usize) -> StoreResult<PutDevice> {
        let user = device.user_id;
        let mut keys = vec![
            self.keys.user(user),
            self.keys.user_devices(user),
            self.keys.device_addresses(),
            self.keys.device(device.id),
        ];
        if let Some(previous) = read.filter(|d| d.id != device.id) {
            keys.extend([self.keys.device(previous.id), self.keys.user_devices(previous.user_id)]);
        }
        let args = vec![
            device.id.to_string(),
            Keys::device_address(device.platform, device.address.identity()),
            json(device),
            device.updated_at.millis().to_string(),
            max.to_string(),
            read.map(|d| d.id.to_string()).unwrap_or_default(),
        ];
        let mut reply = self.eval("put_device", Access::Write, &self.scripts.put_device, keys, args).await?;
        match reply.text()?.as_str() {
            "stored" => {
                let addresses: Vec<Option<Platform>> =
                    reply.items.by_ref().map(|v| v.as_str().as_deref().and_then(Keys::address_platform)).collect();
                let evicted = addresses.into_iter().collect::<Option<_>>();
                Ok(PutDevice::Stored { evicted: evicted.ok_or_else(|| reply.unexpected("device addresses"))? })
            }
            "no_user" => Ok(PutDevice::NoUser),
            "raced" => Ok(PutDevice::Raced),
            _ => Err(reply.unexpected("'stored', 'no_user' or 'raced'")),
        }
    }

    async fn devices(&self, user: UserId) -> StoreResult<Option<Vec<Device>>> {
        let keys = [self.keys.user(user), self.keys.user_devices(user)];
        let mut reply = self.eval("devices", Access::Read, &self.scripts.devices, keys, Vec::new()).await?;
        match reply.text()?.as_str() {
            "no_user" => Ok(None),
            "devices" => {
                let docs: Vec<String> = reply.items.by_ref().filter_map(|v| v.into_string()).collect();
                let key = self.keys.user_devices(user);
                docs.iter().map(|doc| decode(&key, doc)).collect::<StoreResult<_>>().map(Some)
            }
            _ => Err(reply.unexpected("'devices' or 'no_user'")),
        }
    }

    async fn delete_device(&self, user: UserId, id: DeviceId) -> StoreResult<DeleteDevice> {
        let keys =
            [self.keys.user(user), self.keys.user_devices(user), self.keys.device_addresses(), self.keys.device(id)];
        let args = vec![id.to_string()];
        let mut reply = self.eval("delete_device", Access::Write, &self.scripts.delete_device, keys, args).await?;
        match reply.text()?.as_str() {
            "deleted" => {
                let platform = reply.text()?;
                Ok(DeleteDevice::Deleted(
                    Keys::address_platform(&platform).ok_or_else(|| reply.unexpected("an address"))?,
                ))
            }
            "no_user" => Ok(DeleteDevice::NoUser),
            "no_device" => Ok(DeleteDevice::NoDevice),
            _ => Err(reply.unexpected("a device deletion's outcome")),
        }
    }

    /// Pings the node that owns the deployment's slot (in a Cluster, another node answering
    /// says nothing about whether writes can succeed).
    async fn ping(&self) -> StoreResult<()> {
        if self.client.state() != ClientState::Connected {
            return Err(StoreError::Unreachable("not connected".into()));
        }
        let client = self.client.with_options(&self.options);
        let ping = CustomCommand::new_static("PING", ClusterHash::Custom(self.slot), false);
        self.timed("ping", Access::Read, client.custom::<Value, Vec<String>>(ping, Vec::new())).await.map(drop)
    }
}

/// The outcome of a claimed deletion.
fn deleted(reply: &mut Reply) -> StoreResult<bool> {
    match reply.text()?.as_str() {
        "deleted" => Ok(true),
        "unclaimed" => Ok(false),
        _ => Err(reply.unexpected("'deleted' or 'unclaimed'")),
    }
}
