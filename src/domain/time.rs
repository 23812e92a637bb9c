//! Timestamps are stored as milliseconds since the Unix epoch (UTC) in both
//! database dialects: portable, sortable and cheap to compare in SQL.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(now_millis())
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// RFC 3339 with millisecond precision and a `Z` suffix, as SCIM `meta` wants.
    pub fn to_rfc3339(self) -> String {
        self.as_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|dt| Self(dt.with_timezone(&Utc).timestamp_millis()))
    }
}

pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_millisecond_precision() {
        let ts = Timestamp(1_764_000_000_123);
        let text = ts.to_rfc3339();
        assert_eq!(text, "2025-11-24T16:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Some(ts));
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let ts = Timestamp::parse_rfc3339("2025-11-24T18:00:00.123+02:00");
        assert_eq!(ts, Some(Timestamp(1_764_000_000_123)));
    }
}
