//! The contract's three resources, shaped exactly as the REST API returns them.

use super::{CallId, Name, RoomId, RoomName, Timestamp, UserId};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub name: Name,
    pub created_at: Timestamp,
}

impl User {
    pub fn new(name: Name) -> Self {
        Self { id: UserId::new(), name, created_at: Timestamp::now() }
    }
}

/// Where a call is in its life: ringing, answered, or over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    Initiated,
    Accepted,
    Ended,
}

impl CallStatus {
    pub const ALL: [Self; 3] = [Self::Initiated, Self::Accepted, Self::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Accepted => "accepted",
            Self::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// Why a call ended (section 6 of the contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// Ended before it was accepted: by `/end`, or its LiveKit room finished.
    Cancelled,
    /// The callee declined.
    Declined,
    /// The callee declined as busy.
    Busy,
    /// Nobody answered before the ring timeout.
    Missed,
    /// Ended after it was accepted: by `/end`, or its LiveKit room finished.
    Completed,
    /// Still accepted at the maximum duration.
    Expired,
}

impl EndReason {
    pub const ALL: [Self; 6] =
        [Self::Cancelled, Self::Declined, Self::Busy, Self::Missed, Self::Completed, Self::Expired];

    /// The wire name, also a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Declined => "declined",
            Self::Busy => "busy",
            Self::Missed => "missed",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }
}

/// A one-to-one call. Serialized with `callId`, which always equals `id`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: CallId,
    pub from_user_id: UserId,
    pub to_user_id: UserId,
    pub status: CallStatus,
    pub room_name: RoomName,
    pub start_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub answer_time: Option<Timestamp>,
    pub end_reason: Option<EndReason>,
    /// The user who ended or declined it; `None` when the server ended it.
    pub ended_by: Option<UserId>,
}

impl Call {
    /// A call from one user to another, starting now.
    pub fn new(from: UserId, to: UserId) -> Self {
        Self {
            id: CallId::new(),
            from_user_id: from,
            to_user_id: to,
            status: CallStatus::Initiated,
            room_name: RoomName::new(),
            start_time: Timestamp::now(),
            end_time: None,
            answer_time: None,
            end_reason: None,
            ended_by: None,
        }
    }

    /// Whether the user is the caller or the callee.
    pub fn involves(&self, user: UserId) -> bool {
        self.from_user_id == user || self.to_user_id == user
    }
}

/// A one-to-one call, as the API shows it: `callId` always equals `id`.
// Both the JSON and the API document's schema come from this one type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Call)]
struct CallView {
    id: CallId,
    /// Always equals `id` (the guide's events carry both).
    call_id: CallId,
    from_user_id: UserId,
    to_user_id: UserId,
    status: CallStatus,
    room_name: RoomName,
    start_time: Timestamp,
    end_time: Option<Timestamp>,
    /// When the callee answered (v2).
    answer_time: Option<Timestamp>,
    /// Why it ended (v2).
    end_reason: Option<EndReason>,
    /// Who ended or declined it; `null` when the server did, or `/end` named no one (v2).
    ended_by: Option<UserId>,
}

impl Serialize for Call {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CallView {
            id: self.id,
            call_id: self.id,
            from_user_id: self.from_user_id,
            to_user_id: self.to_user_id,
            status: self.status,
            room_name: self.room_name,
            start_time: self.start_time,
            end_time: self.end_time,
            answer_time: self.answer_time,
            end_reason: self.end_reason,
            ended_by: self.ended_by,
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for Call {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        CallView::schema()
    }
}

impl ToSchema for Call {
    fn name() -> std::borrow::Cow<'static, str> {
        CallView::name()
    }

    fn schemas(out: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        CallView::schemas(out)
    }
}

/// Which calls `GET /calls` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only calls this user made or received.
    pub user: Option<UserId>,
    /// Only calls in this state.
    pub status: Option<CallStatus>,
}

impl CallFilter {
    pub fn matches(&self, call: &Call) -> bool {
        self.user.is_none_or(|u| call.involves(u)) && self.status.is_none_or(|s| call.status == s)
    }
}

/// A group room; `participants` lists users in the order they first joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: RoomId,
    pub name: Name,
    pub room_name: RoomName,
    pub participants: Vec<UserId>,
    pub created_at: Timestamp,
}

impl Room {
    pub fn new(name: Name) -> Self {
        Self {
            id: RoomId::new(),
            name,
            room_name: RoomName::new(),
            participants: Vec::new(),
            created_at: Timestamp::now(),
        }
    }
}

/// What owns a LiveKit room name: a call or a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveKitRoom {
    Call(Call),
    Room(Room),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_serializes_with_call_id_and_null_end_time() {
        let call = Call::new(UserId::new(), UserId::new());
        let v = serde_json::to_value(&call).expect("serializes");
        assert_eq!(v["callId"], v["id"]);
        assert_eq!(v["status"], json!("initiated"));
        assert_eq!(v["endTime"], json!(null));
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 11);
        assert_eq!((&v["answerTime"], &v["endReason"], &v["endedBy"]), (&json!(null), &json!(null), &json!(null)));
        let back: Call = serde_json::from_value(v).expect("round trips");
        assert_eq!(back, call);
    }

    #[test]
    fn a_room_serializes_in_camel_case() {
        let room = Room::new(Name::parse("Daily").expect("valid"));
        let v = serde_json::to_value(&room).expect("serializes");
        assert_eq!(v["participants"], json!([]));
        assert!(v["roomName"].is_string() && v["createdAt"].is_string());
    }

    #[test]
    fn filters_combine_user_and_status() {
        let (a, b) = (UserId::new(), UserId::new());
        let call = Call::new(a, b);
        assert!(CallFilter { user: Some(b), status: Some(CallStatus::Initiated) }.matches(&call));
        assert!(!CallFilter { user: Some(UserId::new()), status: None }.matches(&call));
        assert!(!CallFilter { user: None, status: Some(CallStatus::Ended) }.matches(&call));
    }
}
