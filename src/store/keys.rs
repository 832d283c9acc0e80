//! Every Redis key of a deployment, named once. Scripts receive the keys they touch as
//! `KEYS`; only keys found in data a script reads in the same atomic step (the rooms of a
//! user being erased, the participants of a room, the documents of a page) are built in Lua,
//! from templates made here ([`Keys::templates`]).
//!
//! All keys start with the prefix `{namespace}:`, a Cluster hash tag: a deployment's keys
//! share one slot, so every script runs on one node whatever keys it touches.

use crate::domain::{CallId, CallStatus, Platform, RoomId, RoomName, UserId};
use std::fmt::Display;

/// Where an id goes in a template (a byte no id or namespace contains).
const HOLE: char = '\0';

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` is `{namespace}:`.
    pub fn new(prefix: String) -> Self {
        Self { prefix }
    }

    fn key(&self, rest: impl Display) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A user's document (JSON).
    pub fn user(&self, id: impl Display) -> String {
        self.key(format_args!("user:{id}"))
    }

    /// Every user id, scored by creation time (ms).
    pub fn users(&self) -> String {
        self.key("users")
    }

    /// The rooms a user joined (a set), so that erasing the user leaves them.
    pub fn user_rooms(&self, id: impl Display) -> String {
        self.key(format_args!("user:{id}:rooms"))
    }

    /// A user's calls (all, or in one status), scored by start time.
    pub fn user_calls(&self, id: UserId, status: Option<CallStatus>) -> String {
        match status {
            None => self.key(format_args!("user:{id}:calls")),
            Some(s) => self.key(format_args!("user:{id}:calls:{}", s.as_str())),
        }
    }

    /// A user's devices (section 10.1), scored by when each was last registered (ms).
    pub fn user_devices(&self, id: impl Display) -> String {
        self.key(format_args!("user:{id}:devices"))
    }

    /// A device: a hash of its document (`doc`) and its field in [`Keys::device_addresses`].
    pub fn device(&self, id: impl Display) -> String {
        self.key(format_args!("device:{id}"))
    }

    /// Which device each address (platform and token, or endpoint) is registered as: a hash
    /// whose fields are [`Keys::device_address`].
    pub fn device_addresses(&self) -> String {
        self.key("devices")
    }

    /// The field of an address in [`Keys::device_addresses`]: its platform and a hash of
    /// the token or endpoint (up to 4 KB long, and a secret).
    pub fn device_address(platform: Platform, identity: &str) -> String {
        format!("{}:{}", platform.as_str(), fred::util::sha1_hash(identity))
    }

    /// The platform of a field of [`Keys::device_addresses`].
    pub fn address_platform(field: &str) -> Option<Platform> {
        Platform::parse(field.split_once(':')?.0)
    }

    /// `AUTH=token`: a user's kept events (a stream).
    pub fn history(&self, id: impl Display) -> String {
        self.key(format_args!("history:{id}"))
    }

    pub fn call(&self, id: impl Display) -> String {
        self.key(format_args!("call:{id}"))
    }

    /// Every call (or those in one status), scored by start time.
    pub fn calls(&self, status: Option<CallStatus>) -> String {
        match status {
            None => self.key("calls"),
            Some(s) => self.key(format_args!("calls:{}", s.as_str())),
        }
    }

    /// The index `GET /calls` reads for a filter.
    pub fn call_index(&self, user: Option<UserId>, status: Option<CallStatus>) -> String {
        match user {
            Some(user) => self.user_calls(user, status),
            None => self.calls(status),
        }
    }

    /// Every index a call of these users is in, in every status.
    pub fn call_indexes(&self, from: UserId, to: UserId) -> Vec<String> {
        let statuses = std::iter::once(None).chain(CallStatus::ALL.map(Some));
        statuses.flat_map(|s| [self.calls(s), self.user_calls(from, s), self.user_calls(to, s)]).collect()
    }

    /// The three indexes of a call in one status (or in none: all calls).
    pub fn status_indexes(&self, from: UserId, to: UserId, status: Option<CallStatus>) -> [String; 3] {
        [self.calls(status), self.user_calls(from, status), self.user_calls(to, status)]
    }

    pub fn room(&self, id: impl Display) -> String {
        self.key(format_args!("room:{id}"))
    }

    /// A room's participants as a set (joins are idempotent) and as a list (join order).
    pub fn room_members(&self, id: impl Display) -> String {
        self.key(format_args!("room:{id}:members"))
    }

    pub fn room_participants(&self, id: impl Display) -> String {
        self.key(format_args!("room:{id}:participants"))
    }

    /// Every room id, scored by creation time.
    pub fn rooms(&self) -> String {
        self.key("rooms")
    }

    /// Which call or room owns a LiveKit room name (`call:<id>` or `room:<id>`).
    pub fn room_name(&self, name: RoomName) -> String {
        self.key(format_args!("roomname:{name}"))
    }

    /// Every deadline ([`Scheduled`]), scored by when it is due (ms).
    pub fn deadlines(&self) -> String {
        self.key("deadlines")
    }

    /// Deadlines whose entry or document could not be read, kept for an operator.
    pub fn parked(&self) -> String {
        self.key("parked")
    }

    /// A LiveKit webhook's delivery id, applied once (expires).
    pub fn delivery(&self, id: &str) -> String {
        self.key(format_args!("delivery:{id}"))
    }

    /// The event log (a stream) and its last id.
    pub fn log(&self) -> [String; 2] {
        [self.key("log"), self.key("log:last")]
    }

    /// The pub/sub channel of the deployment's events.
    pub fn channel(&self) -> String {
        self.key("events")
    }

    /// The keys that scripts build from ids they read, as Lua string constants (`key(T.x,
    /// id)` in prelude.lua fills the hole).
    pub fn templates(&self) -> String {
        let entries = [
            ("user", self.user(HOLE)),
            ("user_rooms", self.user_rooms(HOLE)),
            ("call", self.call(HOLE)),
            ("room", self.room(HOLE)),
            ("members", self.room_members(HOLE)),
            ("participants", self.room_participants(HOLE)),
            ("history", self.history(HOLE)),
            ("device", self.device(HOLE)),
        ];
        let fields: Vec<String> = entries.iter().map(|(name, t)| format!("{name} = {}", lua_string(t))).collect();
        format!("local T = {{ {} }}\nlocal CHANNEL = {}", fields.join(", "), lua_string(&self.channel()))
    }

    /// The keys of a user that erasing it deletes or changes: its document, the list of
    /// users, its rooms, its history, its call indexes (all, then by status), its devices
    /// and the devices' addresses.
    pub fn erased_user(&self, id: UserId) -> Vec<String> {
        let mut keys = vec![self.user(id), self.users(), self.user_rooms(id), self.history(id)];
        keys.extend(std::iter::once(None).chain(CallStatus::ALL.map(Some)).map(|s| self.user_calls(id, s)));
        keys.extend([self.user_devices(id), self.device_addresses()]);
        keys
    }

    /// The keys of a call's document and LiveKit room name.
    pub fn call_documents(&self, id: CallId, name: RoomName) -> [String; 2] {
        [self.call(id), self.room_name(name)]
    }

    /// The keys of a room's document, participants and LiveKit room name.
    pub fn room_documents(&self, id: RoomId, name: RoomName) -> [String; 4] {
        [self.room(id), self.room_members(id), self.room_participants(id), self.room_name(name)]
    }
}

/// A Lua string literal of any bytes: every byte that is not alphanumeric escaped as
/// `\ddd`, so no namespace can break out of it.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Scheduled;

    #[test]
    fn templates_are_lua_literals_with_a_hole_for_the_id() {
        let keys = Keys::new("{a\"b}:".into());
        let t = keys.templates();
        assert!(t.contains(r#"user = "\123a\034b\125\058user\058\000""#), "{t}");
        assert!(t.contains(r#"CHANNEL = "\123a\034b\125\058events""#), "{t}");
    }

    #[test]
    fn a_scheduled_entry_reads_back() {
        for s in [Scheduled::Call(CallId::new()), Scheduled::Room(RoomId::new())] {
            assert_eq!(Scheduled::parse(&s.to_string()), Some(s));
        }
        assert_eq!(Scheduled::parse("call:not-a-uuid"), None);
        assert_eq!(Scheduled::parse("user:0193"), None);
    }
}
