//! Rate buckets (contract §14): one script takes a batch of start tokens from a pool's or a
//! key's bucket, by Redis's clock, so every process shares one budget.

use std::time::Duration;

use super::Redis;
use super::command::{Script, args};
use super::reply::{array, int, protocol};
use crate::error::RedisError;

static TAKE: Script = Script::new("EVAL (rate take)", include_str!("lua/rate_take.lua"));

/// What a take got: `taken` tokens, and when fewer than asked, how long until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub taken: u32,
    pub next_in: Duration,
}

/// A bucket's shape: `limit` tokens per `per`, holding at most `capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub limit: u32,
    pub per: Duration,
    pub capacity: u32,
}

impl Redis {
    /// Takes up to `want` tokens from the bucket at `key`.
    pub async fn rate_take(
        &self,
        key: &str,
        bucket: Bucket,
        want: u32,
    ) -> Result<Taken, RedisError> {
        let limit = bucket.limit.to_string();
        let per = bucket.per.as_millis().max(1).to_string();
        let capacity = bucket.capacity.max(1).to_string();
        let want = want.max(1).to_string();
        let reply = self
            .run_script(&TAKE, &[key], |a| {
                a.extend(args([limit.as_str(), &per, &capacity, &want]));
            })
            .await?;
        let bad = || protocol("EVAL (rate take)", "unexpected reply");
        let items = array(reply).ok_or_else(bad)?;
        let taken = items.first().and_then(int).ok_or_else(bad)?;
        let wait = items.get(1).and_then(int).ok_or_else(bad)?;
        Ok(Taken {
            taken: u32::try_from(taken.max(0)).unwrap_or(u32::MAX),
            next_in: Duration::from_millis(wait.max(0) as u64),
        })
    }
}
