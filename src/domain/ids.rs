//! Typed ids, so a call id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id: UUIDv7, so ids sort by creation time within a millisecond.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the contract's textual form (any case, hyphenated or not).
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::try_parse(s).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a registered user; also the LiveKit identity.
    UserId
);
id_type!(
    /// Identifies a call (`id` and `callId` in the contract).
    CallId
);
id_type!(
    /// Identifies a room.
    RoomId
);
id_type!(
    /// Identifies a registered device of a user (section 10.1).
    DeviceId
);

/// The LiveKit room name of a call or room: a random UUIDv4, distinct from every id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct RoomName(pub Uuid);

impl RoomName {
    /// A fresh, unguessable room name.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the contract's textual form.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }
}

impl Default for RoomName {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_lowercase_hyphenated() {
        let id = UserId::parse("6F1C2B9E-0D4A-4E39-9C1B-2A7E5D3F8A10").expect("valid uuid");
        assert_eq!(id.to_string(), "6f1c2b9e-0d4a-4e39-9c1b-2a7e5d3f8a10");
    }

    #[test]
    fn non_uuids_are_rejected() {
        assert_eq!(CallId::parse("not-a-uuid"), None);
        assert_eq!(RoomName::parse(""), None);
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = RoomId::new();
        let b = RoomId::new();
        assert!(a.to_string() < b.to_string());
    }
}
