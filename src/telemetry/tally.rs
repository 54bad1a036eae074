//! What is counted for one telemetry value between two flushes, and how it becomes the
//! `HINCRBY`/`HSET` of its hash.

use std::sync::Arc;

use crate::clock;
use crate::redis::{HashDelta, StreamId};

/// What became of one delivery, as `last_status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Processed,
    Errored,
    DeadLettered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Errored => "errored",
            Status::DeadLettered => "dead_lettered",
        }
    }
}

/// The last delivery counted for a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Last {
    pub entry_id: StreamId,
    pub event_id: String,
    pub event_type: String,
    pub status: Status,
    pub pool: Arc<str>,
    pub at_ms: u64,
}

/// One value's counts since the last flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub received: u64,
    pub processed: u64,
    pub errored: u64,
    pub dead_lettered: u64,
    /// `received` by type; a handful of types per value, so a list beats a map.
    pub kinds: Vec<(String, u64)>,
    pub last: Option<Last>,
}

/// One delivery, as a hook saw it.
pub(super) struct Mark<'a> {
    pub(super) pool: &'a Arc<str>,
    pub(super) entry_id: StreamId,
    pub(super) event_id: Option<&'a str>,
    pub(super) event_type: &'a str,
    pub(super) status: Status,
    /// Counts toward `total_received` (a handler call, or a dead letter no handler saw).
    pub(super) received: bool,
}

impl Tally {
    pub(super) fn count(&mut self, m: &Mark) {
        if m.received {
            self.received += 1;
            match self.kinds.iter_mut().find(|(k, _)| k == m.event_type) {
                Some((_, n)) => *n += 1,
                None => self.kinds.push((m.event_type.to_string(), 1)),
            }
        }
        match m.status {
            Status::Processed => self.processed += 1,
            Status::Errored => self.errored += 1,
            Status::DeadLettered => self.dead_lettered += 1,
        }
        let at_ms = clock::now_ms();
        match &mut self.last {
            // Reuse the buffers: no allocation per entry once a value is known.
            Some(last) => {
                last.entry_id = m.entry_id;
                last.event_id.clear();
                last.event_id.push_str(m.event_id.unwrap_or_default());
                last.event_type.clear();
                last.event_type.push_str(m.event_type);
                last.status = m.status;
                if !Arc::ptr_eq(&last.pool, m.pool) {
                    last.pool = m.pool.clone();
                }
                last.at_ms = at_ms;
            }
            None => {
                self.last = Some(Last {
                    entry_id: m.entry_id,
                    event_id: m.event_id.unwrap_or_default().to_string(),
                    event_type: m.event_type.to_string(),
                    status: m.status,
                    pool: m.pool.clone(),
                    at_ms,
                })
            }
        }
    }

    /// Adds `older` (a batch that could not be written) under these newer counts.
    pub(super) fn absorb(&mut self, older: Tally) {
        self.received += older.received;
        self.processed += older.processed;
        self.errored += older.errored;
        self.dead_lettered += older.dead_lettered;
        for (kind, n) in older.kinds {
            match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, m)) => *m += n,
                None => self.kinds.push((kind, n)),
            }
        }
        if self.last.is_none() {
            self.last = older.last;
        }
    }

    /// The hash update for this tally under `key`.
    pub(super) fn delta(&self, key: String) -> HashDelta {
        let mut add = vec![
            ("total_received".to_string(), self.received),
            ("processed".to_string(), self.processed),
            ("errored".to_string(), self.errored),
            ("dead_lettered".to_string(), self.dead_lettered),
        ];
        add.extend(self.kinds.iter().map(|(k, n)| (format!("kind:{k}"), *n)));
        let set = self.last.as_ref().map_or_else(Vec::new, |l| {
            vec![
                ("last_entry_id", l.entry_id.to_string()),
                ("last_event_id", l.event_id.clone()),
                ("last_type", l.event_type.clone()),
                ("last_status", l.status.as_str().to_string()),
                ("last_pool", l.pool.to_string()),
                ("last_received_at", l.at_ms.to_string()),
            ]
        });
        HashDelta { key, add, set }
    }
}
