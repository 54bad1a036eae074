//! Whether a pool moves in this process: when it last took up work (a read batch, a handler
//! start), for the stall detector (`crate::liveness`), and the signal that asks its readers
//! to start over on a new connection (the detector's heal).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One per pool, shared by its partitions.
pub struct Progress {
    /// What `last` counts from.
    born: Instant,
    /// Milliseconds after `born` (plus one, so 0 means never) of the last start.
    last: AtomicU64,
    /// Notified when the stall detector found the pool not reading: each partition's reader
    /// drops its connection and read loop and starts a new one.
    heal: Notify,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            born: Instant::now(),
            last: AtomicU64::new(0),
            heal: Notify::new(),
        }
    }
}

impl Progress {
    /// The pool took up work at `at` (a handler started, a batch was read). On the hot path:
    /// a relaxed load, and a store only when the millisecond changed, so handlers starting
    /// on many cores do not fight over the cache line.
    pub fn started(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.born).as_millis() as u64 + 1;
        if self.last.load(Ordering::Relaxed) < ms {
            self.last.store(ms, Ordering::Relaxed);
        }
    }

    /// When the pool last took up work, if ever (to the millisecond).
    pub fn last(&self) -> Option<Instant> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.born + Duration::from_millis(ms - 1)),
        }
    }

    /// Asks every reader of the pool to start over on a new connection.
    pub fn heal(&self) {
        self.heal.notify_waiters();
    }

    /// Resolves when the stall detector asks the readers to start over.
    pub async fn heal_requested(&self) {
        self.heal.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_is_none_until_a_start_and_never_goes_back() {
        let progress = Progress::default();
        assert!(progress.last().is_none());
        let later = Instant::now() + Duration::from_millis(50);
        progress.started(later);
        let seen = progress.last().expect("a start");
        assert!(seen <= later && later - seen < Duration::from_millis(2));
        progress.started(later - Duration::from_millis(30));
        assert_eq!(
            progress.last(),
            Some(seen),
            "an older start does not move it back"
        );
    }
}
