//! The real-time events, shaped exactly as the integration guide's payloads (and, for the
//! lifecycle events of v2, as section 6 of the contract).
//!
//! Serialized as `{"event": <name>, "data": {…}}`: the form they travel in on the event
//! bus. The relay emits `data` under the event's name, wrapped as `{"data": …}`.

use super::{Call, CallId, CallStatus, DeclineReason, Name, Room, RoomId, RoomName, Timestamp, User, UserId};
use serde::Serialize;

/// Something every connected client is told about.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    #[serde(rename = "call.started")]
    CallStarted(CallStarted),
    #[serde(rename = "call.accepted", rename_all = "camelCase")]
    CallAccepted { call_id: CallId, user_id: UserId, answer_time: Timestamp },
    #[serde(rename = "call.declined", rename_all = "camelCase")]
    CallDeclined { call_id: CallId, user_id: UserId, reason: DeclineReason },
    #[serde(rename = "call.missed", rename_all = "camelCase")]
    CallMissed { call_id: CallId },
    #[serde(rename = "call.ended", rename_all = "camelCase")]
    CallEnded { call_id: CallId },
    #[serde(rename = "user.registered")]
    UserRegistered { id: UserId, name: Name },
    #[serde(rename = "user.deleted")]
    UserDeleted { id: UserId },
    #[serde(rename = "room.created")]
    RoomCreated(RoomCreated),
    #[serde(rename = "room.joined", rename_all = "camelCase")]
    RoomJoined { room_id: RoomId, user_id: UserId },
}

/// `call.started`: the call without `endTime`, and never a token.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStarted {
    id: CallId,
    call_id: CallId,
    from_user_id: UserId,
    to_user_id: UserId,
    status: CallStatus,
    room_name: RoomName,
    start_time: Timestamp,
}

/// `room.created`: the room without `createdAt`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreated {
    id: RoomId,
    name: Name,
    room_name: RoomName,
    participants: Vec<UserId>,
}

impl Event {
    pub fn call_started(call: &Call) -> Self {
        Self::CallStarted(CallStarted {
            id: call.id,
            call_id: call.id,
            from_user_id: call.from_user_id,
            to_user_id: call.to_user_id,
            status: call.status,
            room_name: call.room_name,
            start_time: call.start_time,
        })
    }

    pub fn call_accepted(call: CallId, by: UserId, at: Timestamp) -> Self {
        Self::CallAccepted { call_id: call, user_id: by, answer_time: at }
    }

    pub fn call_declined(call: CallId, by: UserId, reason: DeclineReason) -> Self {
        Self::CallDeclined { call_id: call, user_id: by, reason }
    }

    pub fn call_missed(call: CallId) -> Self {
        Self::CallMissed { call_id: call }
    }

    pub fn call_ended(call: CallId) -> Self {
        Self::CallEnded { call_id: call }
    }

    pub fn user_registered(user: &User) -> Self {
        Self::UserRegistered { id: user.id, name: user.name.clone() }
    }

    pub fn user_deleted(user: UserId) -> Self {
        Self::UserDeleted { id: user }
    }

    pub fn room_created(room: &Room) -> Self {
        Self::RoomCreated(RoomCreated {
            id: room.id,
            name: room.name.clone(),
            room_name: room.room_name,
            participants: room.participants.clone(),
        })
    }

    pub fn room_joined(room: RoomId, user: UserId) -> Self {
        Self::RoomJoined { room_id: room, user_id: user }
    }

    /// Every event name of the contract.
    pub const NAMES: [&'static str; 9] = [
        "call.started",
        "call.accepted",
        "call.declined",
        "call.missed",
        "call.ended",
        "user.registered",
        "user.deleted",
        "room.created",
        "room.joined",
    ];

    /// The contract's own name for `name`, if it is one (a bounded metric label).
    pub fn known_name(name: &str) -> Option<&'static str> {
        Self::NAMES.into_iter().find(|n| *n == name)
    }

    /// The Socket.IO event name, also a bounded metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CallStarted(_) => "call.started",
            Self::CallAccepted { .. } => "call.accepted",
            Self::CallDeclined { .. } => "call.declined",
            Self::CallMissed { .. } => "call.missed",
            Self::CallEnded { .. } => "call.ended",
            Self::UserRegistered { .. } => "user.registered",
            Self::UserDeleted { .. } => "user.deleted",
            Self::RoomCreated(_) => "room.created",
            Self::RoomJoined { .. } => "room.joined",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn wire(e: &Event) -> Value {
        serde_json::to_value(e).expect("serializes")
    }

    #[test]
    fn call_started_has_exactly_the_guide_fields() {
        let call = Call::new(UserId::new(), UserId::new());
        let v = wire(&Event::call_started(&call));
        assert_eq!(v["event"], "call.started");
        let data = serde_json::to_value(&call).expect("serializes");
        let mut expected = data.as_object().expect("object").clone();
        for v2 in ["endTime", "answerTime", "endReason", "endedBy"] {
            expected.remove(v2);
        }
        assert_eq!(v["data"], Value::Object(expected));
    }

    #[test]
    fn call_ended_carries_only_the_call_id() {
        let call = Call::new(UserId::new(), UserId::new());
        let v = wire(&Event::call_ended(call.id));
        assert_eq!(v, json!({"event": "call.ended", "data": {"callId": call.id}}));
    }

    #[test]
    fn lifecycle_events_carry_the_contract_fields() {
        let (call, user) = (CallId::new(), UserId::new());
        let at = Timestamp::from_millis(1_795_809_271_123);
        assert_eq!(
            wire(&Event::call_accepted(call, user, at)),
            json!({"event": "call.accepted", "data": {"callId": call, "userId": user, "answerTime": "2026-11-27T19:54:31.123Z"}})
        );
        assert_eq!(
            wire(&Event::call_declined(call, user, DeclineReason::Busy)),
            json!({"event": "call.declined", "data": {"callId": call, "userId": user, "reason": "busy"}})
        );
        assert_eq!(wire(&Event::call_missed(call)), json!({"event": "call.missed", "data": {"callId": call}}));
    }

    #[test]
    fn user_events_carry_the_id_and_a_registered_name() {
        let user = User::new(Name::parse("Ana").expect("valid"));
        let v = wire(&Event::user_registered(&user));
        assert_eq!(v, json!({"event": "user.registered", "data": {"id": user.id, "name": "Ana"}}));
        assert_eq!(wire(&Event::user_deleted(user.id)), json!({"event": "user.deleted", "data": {"id": user.id}}));
    }

    #[test]
    fn room_created_has_empty_participants_and_no_created_at() {
        let room = Room::new(Name::parse("Stand-up").expect("valid"));
        let v = wire(&Event::room_created(&room));
        assert_eq!(
            v,
            json!({"event": "room.created", "data": {
                "id": room.id, "name": "Stand-up", "roomName": room.room_name, "participants": []
            }})
        );
    }

    #[test]
    fn room_joined_carries_room_and_user() {
        let (room, user) = (RoomId::new(), UserId::new());
        let v = wire(&Event::room_joined(room, user));
        assert_eq!(v, json!({"event": "room.joined", "data": {"roomId": room, "userId": user}}));
    }

    #[test]
    fn names_match_the_wire() {
        let e = Event::room_joined(RoomId::new(), UserId::new());
        assert_eq!(wire(&e)["event"], e.name());
        assert_eq!(Event::known_name("room.joined"), Some("room.joined"));
        assert_eq!(Event::known_name("room.left"), None);
    }
}
