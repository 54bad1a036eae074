//! Flow control (contract §14): what the workers ask before a handler starts. Today: rate
//! limits ([`RateLimiter`]), shared across processes through Redis. A pool without a limit
//! has no limiter, and its workers pay one `Option` check.

mod rate;

pub use rate::{Admit, RateLimiter};

use std::sync::Arc;

use crate::consumer::Pool;

/// Entries of pool `name` waiting for a rate token in this process; `None` when it has no
/// limit (or does not run here).
pub fn waiting(running: &[Arc<Pool>], name: &str) -> Option<u64> {
    let pool = running.iter().find(|p| *p.name == *name)?;
    pool.rate.as_ref().map(|rate| rate.waiting() as u64)
}
