//! Flow control (contract §14): what the workers ask before a handler starts. Today: rate
//! limits ([`RateLimiter`]), shared across processes through Redis. A pool without a limit
//! has no limiter, and its workers pay one `Option` check.

mod rate;

pub use rate::{Admit, RateLimiter};
