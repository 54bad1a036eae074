//! Reading a stream newest first (XREVRANGE): the admin API's recent-events listing.

use super::{Redis, args, reply};
use crate::error::RedisError;

impl Redis {
    /// Up to `count` entries from `end` down to `start`, newest first (`+`/`-` for the ends).
    pub async fn range_rev(
        &self,
        key: &str,
        end: &str,
        start: &str,
        count: usize,
    ) -> Result<Vec<reply::RawEntry>, RedisError> {
        let count = count.to_string();
        let reply = self
            .call("XREVRANGE", args([key, end, start, "COUNT", &count]))
            .await?;
        reply::entries("XREVRANGE", reply)
    }
}
