//! Timestamps as the contract prints them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision, printed like JavaScript's `toISOString()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-27T19:54:31.123Z")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to the millisecond so that what is stored is what is shown.
    pub fn now() -> Self {
        Self::from_millis(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(DateTime::from_timestamp_millis(ms).unwrap_or_default())
    }

    /// Milliseconds since the Unix epoch: the sort key of the list indexes.
    pub fn millis(self) -> i64 {
        self.0.timestamp_millis()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| Self(t.with_timezone(&Utc))).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_javascript_to_iso_string() {
        let t = Timestamp::from_millis(1_795_809_271_123);
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(json, r#""2026-11-27T19:54:31.123Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).ok(), Some(t));
    }

    #[test]
    fn whole_seconds_keep_their_milliseconds() {
        let json = serde_json::to_string(&Timestamp::from_millis(1_795_809_271_000)).expect("ok");
        assert_eq!(json, r#""2026-11-27T19:54:31.000Z""#);
    }
}
