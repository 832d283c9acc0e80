//! The Redis store: documents as JSON strings, sorted-set indexes for the lists, and one
//! Lua script per change so that racing replicas see each transition exactly once.

use super::{CallChange, CallUpdate, DELIVERY_ID_TTL, Join, NewCall, Store, StoreResult, Unavailable};
use crate::domain::{Call, CallFilter, CallId, LiveKitRoom, Room, RoomId, RoomName, Timestamp, User, UserId};
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
use std::time::Instant;
use tracing::Instrument;

/// One Lua script, loaded on first use (and again after a Redis restart).
struct Lua {
    script: Script,
}

impl Lua {
    /// `body` after the prelude, which the event log's bounds precede.
    fn new(log: EventLog, body: &str) -> Self {
        let (max, age_ms) = (log.max, log.age.as_millis());
        let source =
            format!("local LOG_MAX, LOG_AGE_MS = {max}, {age_ms}\n{}\n{body}", include_str!("lua/prelude.lua"));
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
    insert_call: Lua,
    update_call: Lua,
    due_calls: Lua,
    history: Lua,
    insert_room: Lua,
    join_room: Lua,
    list: Lua,
    room: Lua,
    livekit_room: Lua,
}

/// [`Store`] on a Redis shared by every replica.
pub struct RedisStore {
    client: Client,
    /// Fail fast while disconnected, bounded wait otherwise, never replay a write.
    options: Options,
    prefix: String,
    /// The Cluster slot of `prefix`, where every key and script of the deployment lives.
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
    /// Wraps a connected (or connecting) client; `prefix` is `{namespace}:`; every change
    /// appends its event to `log`.
    pub fn new(client: Client, options: Options, prefix: String, wait: Option<WaitReplicas>, log: EventLog) -> Self {
        let lua = |body| Lua::new(log, body);
        let scripts = Scripts {
            insert_user: lua(include_str!("lua/insert_user.lua")),
            insert_call: lua(include_str!("lua/insert_call.lua")),
            update_call: lua(include_str!("lua/update_call.lua")),
            due_calls: lua(include_str!("lua/due_calls.lua")),
            history: lua(include_str!("lua/history.lua")),
            insert_room: lua(include_str!("lua/insert_room.lua")),
            join_room: lua(include_str!("lua/join_room.lua")),
            list: lua(include_str!("lua/list.lua")),
            room: lua(include_str!("lua/room.lua")),
            livekit_room: lua(include_str!("lua/livekit_room.lua")),
        };
        let slot = fred::util::redis_keyslot(prefix.as_bytes());
        Self {
            client,
            options,
            prefix,
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
            Access::Write if sent_connected => Unavailable::Unconfirmed(format!("{op}: {e}")),
            _ => Unavailable::Unreachable(format!("{op}: {e}")),
        })
    }

    /// Runs a script by hash, with the prefix as its one declared key, on the node that owns
    /// the prefix's slot; loads it there when that node does not know it yet (first use, a
    /// restart, a failover). (fred's own `evalsha` helpers bypass per-command options,
    /// hence `custom`.)
    async fn eval(&self, op: &'static str, access: Access, lua: &Lua, args: Vec<String>) -> StoreResult<Value> {
        let client = self.client.with_options(&self.options);
        let mut full = Vec::with_capacity(args.len() + 3);
        full.extend([lua.script.sha1().to_string(), "1".to_owned(), self.prefix.clone()]);
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
        Ok(reply)
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

    async fn get_doc<T: DeserializeOwned>(&self, op: &'static str, key: String) -> StoreResult<Option<T>> {
        let client = self.client.with_options(&self.options);
        let raw: Option<String> = self.timed(op, Access::Read, client.get(key)).await?;
        raw.map(|s| parse(&s)).transpose()
    }
}

fn parse<T: DeserializeOwned>(doc: &str) -> StoreResult<T> {
    serde_json::from_str(doc).map_err(|e| Unavailable::Unreachable(format!("corrupt document: {e}")))
}

fn text(v: Value) -> StoreResult<String> {
    v.into_string().ok_or_else(|| Unavailable::Unreachable("unexpected reply from Redis".into()))
}

/// Reads `{doc, participants}` as a script returns it.
fn room_entry(doc: Value, participants: Value) -> StoreResult<Room> {
    let mut room: Room = parse(&text(doc)?)?;
    room.participants = participants
        .into_array()
        .into_iter()
        .map(|v| {
            text(v).and_then(|s| UserId::parse(&s).ok_or_else(|| Unavailable::Unreachable("bad participant".into())))
        })
        .collect::<StoreResult<_>>()?;
    Ok(room)
}

/// Splits a script's array reply into a tag and the rest.
fn tagged(v: Value) -> StoreResult<(String, std::vec::IntoIter<Value>)> {
    let mut items = v.into_array().into_iter();
    let tag = items.next().map(text).transpose()?.unwrap_or_default();
    Ok((tag, items))
}

fn next(items: &mut std::vec::IntoIter<Value>) -> Value {
    items.next().unwrap_or(Value::Null)
}

fn millis_or_empty(at: Option<Timestamp>) -> String {
    at.map(|t| t.millis().to_string()).unwrap_or_default()
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The index `GET /calls` reads for a filter (see `insert_call.lua`).
fn call_index(filter: CallFilter) -> String {
    let base = match filter.user {
        Some(user) => format!("user:{user}:calls"),
        None => "calls".to_owned(),
    };
    match filter.status {
        Some(status) => format!("{base}:{}", status.as_str()),
        None => base,
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn insert_user(&self, user: &User, event: &str) -> StoreResult<()> {
        let args = vec![user.id.to_string(), json(user), user.created_at.millis().to_string(), event.to_owned()];
        self.eval("insert_user", Access::Write, &self.scripts.insert_user, args).await.map(drop)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.get_doc("get_user", format!("{}user:{id}", self.prefix)).await
    }

    async fn users(&self, limit: usize) -> StoreResult<Vec<User>> {
        let reply = self.list("list_users", "users", limit, "asc", "user").await?;
        reply.into_iter().filter(|v| !v.is_null()).map(|v| parse(&text(v)?)).collect()
    }

    async fn insert_call(&self, call: &Call, deadline: Option<Timestamp>, event: &str) -> StoreResult<NewCall> {
        let args = vec![
            call.id.to_string(),
            call.from_user_id.to_string(),
            call.to_user_id.to_string(),
            call.room_name.to_string(),
            json(call),
            call.start_time.millis().to_string(),
            millis_or_empty(deadline),
            event.to_owned(),
        ];
        let (tag, mut rest) = tagged(self.eval("insert_call", Access::Write, &self.scripts.insert_call, args).await?)?;
        let value = text(next(&mut rest))?;
        if tag == "ok" {
            Ok(NewCall::Stored { caller: parse(&value)? })
        } else {
            let missing = UserId::parse(&value).ok_or_else(|| Unavailable::Unreachable("bad user id".into()))?;
            Ok(NewCall::NoUser(missing))
        }
    }

    async fn call(&self, id: CallId) -> StoreResult<Option<Call>> {
        self.get_doc("get_call", format!("{}call:{id}", self.prefix)).await
    }

    async fn calls(&self, filter: CallFilter, limit: usize) -> StoreResult<Vec<Call>> {
        let reply = self.list("list_calls", &call_index(filter), limit, "desc", "call").await?;
        reply.into_iter().filter(|v| !v.is_null()).map(|v| parse(&text(v)?)).collect()
    }

    async fn update_call(&self, change: CallChange<'_>) -> StoreResult<CallUpdate> {
        let call = change.call;
        let mut args = vec![
            call.id.to_string(),
            call.from_user_id.to_string(),
            call.to_user_id.to_string(),
            change.from.as_str().to_owned(),
            call.status.as_str().to_owned(),
            json(call),
            millis_or_empty(change.deadline),
            millis_or_empty(change.claim),
            change.once.unwrap_or_default().to_owned(),
            DELIVERY_ID_TTL.as_secs().to_string(),
        ];
        args.extend(change.events.iter().cloned());
        let (tag, mut rest) = tagged(self.eval("update_call", Access::Write, &self.scripts.update_call, args).await?)?;
        Ok(match tag.as_str() {
            "applied" => CallUpdate::Applied,
            "unclaimed" => CallUpdate::Unclaimed,
            "duplicate" => CallUpdate::Duplicate,
            _ => match next(&mut rest) {
                Value::Null => CallUpdate::Stale(None),
                doc => CallUpdate::Stale(Some(parse(&text(doc)?)?)),
            },
        })
    }

    async fn delivered(&self, id: &str) -> StoreResult<bool> {
        let client = self.client.with_options(&self.options);
        let key = format!("{}delivery:{id}", self.prefix);
        self.timed("delivered", Access::Read, client.exists::<i64, _>(key)).await.map(|n| n > 0)
    }

    async fn due_calls(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<(CallId, Timestamp)>> {
        let args = vec![now.millis().to_string(), limit.to_string()];
        let reply = self.eval("due_calls", Access::Read, &self.scripts.due_calls, args).await?.into_array();
        let bad = || Unavailable::Unreachable("bad deadline entry".into());
        reply
            .chunks(2)
            .map(|pair| {
                let id = pair.first().and_then(Value::as_str).and_then(|s| CallId::parse(&s)).ok_or_else(bad)?;
                let at = pair.get(1).and_then(Value::as_f64).ok_or_else(bad)?;
                Ok((id, Timestamp::from_millis(at as i64)))
            })
            .collect()
    }

    async fn insert_room(&self, room: &Room, event: &str) -> StoreResult<()> {
        let args = vec![
            room.id.to_string(),
            room.room_name.to_string(),
            json(room),
            room.created_at.millis().to_string(),
            event.to_owned(),
        ];
        self.eval("insert_room", Access::Write, &self.scripts.insert_room, args).await.map(drop)
    }

    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        let reply = self.eval("get_room", Access::Read, &self.scripts.room, vec![id.to_string()]).await?;
        if reply.is_null() {
            return Ok(None);
        }
        let mut items = reply.into_array().into_iter();
        room_entry(next(&mut items), next(&mut items)).map(Some)
    }

    async fn rooms(&self, limit: usize) -> StoreResult<Vec<Room>> {
        let reply = self.list("list_rooms", "rooms", limit, "asc", "room").await?;
        reply
            .into_iter()
            .filter(|v| !v.is_null())
            .map(|v| {
                let mut items = v.into_array().into_iter();
                room_entry(next(&mut items), next(&mut items))
            })
            .collect()
    }

    async fn join_room(&self, room: RoomId, user: UserId, event: &str) -> StoreResult<Join> {
        let args = vec![room.to_string(), user.to_string(), event.to_owned()];
        let (tag, mut rest) = tagged(self.eval("join_room", Access::Write, &self.scripts.join_room, args).await?)?;
        match tag.as_str() {
            "ok" => {
                let user = parse(&text(next(&mut rest))?)?;
                let room = room_entry(next(&mut rest), next(&mut rest))?;
                Ok(Join::Joined { room, user })
            }
            "no_user" => Ok(Join::NoUser),
            _ => Ok(Join::NoRoom),
        }
    }

    async fn livekit_room(&self, name: RoomName) -> StoreResult<Option<LiveKitRoom>> {
        let reply = self.eval("livekit_room", Access::Read, &self.scripts.livekit_room, vec![name.to_string()]).await?;
        if reply.is_null() {
            return Ok(None);
        }
        let (tag, mut rest) = tagged(reply)?;
        Ok(Some(match tag.as_str() {
            "call" => LiveKitRoom::Call(parse(&text(next(&mut rest))?)?),
            _ => LiveKitRoom::Room(room_entry(next(&mut rest), next(&mut rest))?),
        }))
    }

    async fn history(
        &self,
        user: UserId,
        after: &str,
        max_age: std::time::Duration,
        limit: usize,
    ) -> StoreResult<Option<Vec<(String, String)>>> {
        let args = vec![user.to_string(), after.to_owned(), max_age.as_secs().to_string(), limit.to_string()];
        let reply = self.eval("history", Access::Read, &self.scripts.history, args).await?;
        if reply.is_null() {
            return Ok(None);
        }
        let items = reply.into_array().into_iter().map(text).collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(items.chunks(2).map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default())).collect()))
    }

    /// Pings the node that owns the deployment's slot (in a Cluster, another node answering
    /// says nothing about whether writes can succeed).
    async fn ping(&self) -> StoreResult<()> {
        if self.client.state() != ClientState::Connected {
            return Err(Unavailable::Unreachable("not connected".into()));
        }
        let client = self.client.with_options(&self.options);
        let ping = CustomCommand::new_static("PING", ClusterHash::Custom(self.slot), false);
        self.timed("ping", Access::Read, client.custom::<Value, Vec<String>>(ping, Vec::new())).await.map(drop)
    }
}

impl RedisStore {
    async fn list(
        &self,
        op: &'static str,
        index: &str,
        limit: usize,
        order: &str,
        kind: &str,
    ) -> StoreResult<Vec<Value>> {
        let args = vec![index.to_owned(), limit.to_string(), order.to_owned(), kind.to_owned()];
        Ok(self.eval(op, Access::Read, &self.scripts.list, args).await?.into_array())
    }
}
