//! Bounded waits on observable state: never a fixed sleep standing in for "done".

use std::time::{Duration, Instant};

use weir::redis::Redis;

use super::server::STREAM;

/// Polls `check` every 5 ms until it holds; how long that took. Panics naming `what` after
/// `timeout`.
pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether group `p` has read everything and acknowledged it.
pub(crate) async fn drained(redis: &Redis) -> bool {
    match redis.groups(STREAM).await {
        Ok(groups) => groups
            .iter()
            .any(|g| g.name == "p" && g.lag == Some(0) && g.pending == 0),
        Err(_) => false,
    }
}

/// Entries pending in group `p`.
pub(crate) async fn pending(redis: &Redis) -> u64 {
    redis
        .groups(STREAM)
        .await
        .ok()
        .and_then(|g| g.into_iter().find(|g| g.name == "p"))
        .map_or(0, |g| g.pending)
}
