//! What is counted for one telemetry value between two flushes, and how it becomes the
//! `HINCRBY`/`HSET` of its hash; and [`Counts`], the tallies of one batch of deliveries
//! before they join the shared ones.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::handler::Delivery;
use crate::metrics::TypeLabels;
use crate::pointer::Found;
use crate::redis::HashDelta;
use crate::settle::Settlement;
use crate::vocab::StreamId;

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
    /// When it was counted (unix ms): set as a batch joins the shared tallies.
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
            }
            None => {
                self.last = Some(Last {
                    entry_id: m.entry_id,
                    event_id: m.event_id.unwrap_or_default().to_string(),
                    event_type: m.event_type.to_string(),
                    status: m.status,
                    pool: m.pool.clone(),
                    at_ms: 0,
                })
            }
        }
    }

    /// The deliveries counted: each is processed, errored or dead-lettered once.
    pub(super) fn deliveries(&self) -> u64 {
        self.processed + self.errored + self.dead_lettered
    }

    fn add_counts(&mut self, other: Tally) -> Option<Last> {
        self.received += other.received;
        self.processed += other.processed;
        self.errored += other.errored;
        self.dead_lettered += other.dead_lettered;
        for (kind, n) in other.kinds {
            match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, m)) => *m += n,
                None => self.kinds.push((kind, n)),
            }
        }
        other.last
    }

    /// Adds `older` (a batch that could not be written) under these newer counts.
    pub(super) fn absorb(&mut self, older: Tally) {
        let last = self.add_counts(older);
        if self.last.is_none() {
            self.last = last;
        }
    }

    /// Adds `newer` (a batch counted after these counts), whose last delivery becomes the
    /// last one.
    pub(super) fn merge(&mut self, newer: Tally) {
        if let Some(last) = self.add_counts(newer) {
            self.last = Some(last);
        }
    }

    /// Puts every `kind:` count under its type's bounded label ([`TypeLabels`]), merging
    /// types that share one. Allocates only when a type is relabelled.
    pub(super) fn relabel(&mut self, labels: &TypeLabels) {
        let mut moved: Vec<(&'static str, u64)> = Vec::new();
        self.kinds.retain(|(kind, n)| {
            let Some(label) = labels.bucket(kind) else {
                return true;
            };
            match moved.iter_mut().find(|(l, _)| *l == label) {
                Some((_, m)) => *m += n,
                None => moved.push((label, *n)),
            }
            false
        });
        for (label, n) in moved {
            match self.kinds.iter_mut().find(|(k, _)| k == label) {
                Some((_, m)) => *m += n,
                None => self.kinds.push((label.to_string(), n)),
            }
        }
    }

    /// Dates the last delivery: when its batch joined the shared tallies.
    pub(super) fn stamp(&mut self, at_ms: u64) {
        if let Some(last) = &mut self.last {
            last.at_ms = at_ms;
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

/// The tallies of one batch of deliveries (an inline reader's read, or one worker's entry),
/// counted without a lock or a clock read and added to the shared tallies in one go
/// ([`super::Telemetry::add`]). Values arrive in runs (one connector's events together),
/// so the last value touched is tried before the map.
#[derive(Default)]
pub struct Counts {
    pub(super) tallies: IndexMap<String, Tally>,
    recent: usize,
}

impl Counts {
    /// A handler answered `d` of `pool`, whose `[telemetry] key` value is `value` (dispatch
    /// found it, in `d.data` or as text: [`crate::dispatch::Router`]); `settlement` is what
    /// becomes of it.
    pub fn settled(
        &mut self,
        pool: &Arc<str>,
        d: &Delivery,
        value: Option<&Found>,
        settlement: &Settlement,
    ) {
        let Some(value) = value.and_then(|v| v.text(&d.data)) else {
            return;
        };
        let status = match settlement {
            Settlement::Ack => Status::Processed,
            _ => Status::Errored,
        };
        self.count(
            value,
            &Mark {
                pool,
                entry_id: d.entry_id,
                event_id: d.event_id.as_deref(),
                event_type: &d.event_type,
                status,
                received: true,
            },
        );
    }

    /// Counts under `value`, copying it only the first time the batch sees it.
    pub(super) fn count(&mut self, value: &str, mark: &Mark) {
        if let Some((known, tally)) = self.tallies.get_index_mut(self.recent)
            && known == value
        {
            tally.count(mark);
            return;
        }
        self.recent = match self.tallies.get_index_of(value) {
            Some(known) => known,
            None => {
                self.tallies
                    .insert_full(value.to_owned(), Tally::default())
                    .0
            }
        };
        self.tallies[self.recent].count(mark);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty()
    }
}
