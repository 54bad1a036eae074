//! The wall clock, read in one place: unix milliseconds as Redis stream IDs and the
//! `*_at` fields use them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
