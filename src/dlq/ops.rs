//! The DLQ's read operations, across every partition (the writes are in `moves.rs`): the
//! CLI's `weir dlq …` and the HTTP API call these, so the two cannot drift apart. With
//! partitions, every letter is named with its partition (`1/1796391658546-0`).

use serde::Serialize;

use super::ids::{self, Placed};
use super::{DeadLetter, Filter, Stats, scan};
use crate::config::Config;
use crate::error::{OpError, RedisError};
use crate::redis::Redis;
use crate::vocab::{LetterId, StreamId};

/// One page of dead letters and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The dead letters of this page, oldest first.
    pub entries: Vec<DeadLetter>,
    /// Pass back as `after` for the next page; `None` at the end.
    pub next: Option<Cursor>,
}

/// Where a listing stopped: the partition and the last DLQ ID returned. Opaque to API
/// users (`<partition>-<ms>-<seq>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Index of the partition.
    pub partition: usize,
    /// The last ID returned in it.
    pub last: StreamId,
}

impl Cursor {
    /// The cursor as text.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.partition, self.last)
    }

    /// Reads back [`Cursor::encode`]'s text.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (partition, last) = text.split_once('-')?;
        Some(Cursor {
            partition: partition.parse().ok()?,
            last: StreamId::parse(last)?,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

/// Every partition's DLQ key, in partition order.
fn dlq_keys(config: &Config) -> Vec<String> {
    config.partitions().iter().map(|p| p.dlq.clone()).collect()
}

/// Visits matching dead letters, partition by partition, in ID order, each named as the
/// listing names it; `visit` returns `false` to stop. Returns how many entries were scanned.
pub async fn visit(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    mut visit: impl FnMut(DeadLetter) -> bool,
) -> Result<u64, RedisError> {
    let mut scanned = 0;
    let mut go_on = true;
    for part in config.partitions() {
        if !go_on {
            break;
        }
        scanned += scan(redis, &part.dlq, filter, |entry| {
            go_on = visit(letter(config, part.index, &entry));
            go_on
        })
        .await?;
    }
    Ok(scanned)
}

/// The dead letter `entry` of partition `partition`, its `id` qualified with partitions.
fn letter(config: &Config, partition: usize, entry: &crate::vocab::RawEntry) -> DeadLetter {
    let mut letter = DeadLetter::from_entry(entry);
    letter.id = ids::shown(
        config,
        Placed {
            partition,
            id: entry.id,
        },
    );
    letter
}

/// Up to `limit` matching dead letters after `after` (from the start when `None`).
pub async fn page(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Page, RedisError> {
    let limit = limit.max(1);
    let mut entries = Vec::new();
    let mut next = None;
    let keys = dlq_keys(config);
    let first = after.map_or(0, |c| c.partition);
    for (partition, dlq) in keys.iter().enumerate().skip(first) {
        let mut from = filter.clone();
        if let Some(c) = after.filter(|c| c.partition == partition) {
            from.start = Some(from.start.unwrap_or(StreamId::ZERO).max(c.last.next()));
        }
        let mut last = None;
        scan(redis, dlq, &from, |entry| {
            if entries.len() == limit {
                // One more exists: the page ends at the previous entry.
                next = last.map(|last| Cursor { partition, last });
                return false;
            }
            last = Some(entry.id);
            entries.push(letter(config, partition, &entry));
            true
        })
        .await?;
        if next.is_some() {
            break;
        }
    }
    Ok(Page { entries, next })
}

/// The dead letter `id` (qualified, or bare where one partition alone holds it), and the
/// DLQ key that holds it.
pub async fn find(
    redis: &Redis,
    config: &Config,
    id: LetterId,
) -> Result<Option<(String, DeadLetter)>, OpError> {
    let placement = ids::place(redis, config, &[id], "id").await?;
    let Some(placed) = placement.placed.first() else {
        return Ok(None);
    };
    let Some(part) = config.partitions().get(placed.partition) else {
        return Ok(None);
    };
    let at = placed.id.to_string();
    let entries = redis.range(&part.dlq, &at, &at, 1).await?;
    Ok(entries
        .first()
        .map(|entry| (part.dlq.clone(), letter(config, placed.partition, entry))))
}

/// Counts over every partition's DLQ.
pub async fn stats(redis: &Redis, config: &Config, filter: &Filter) -> Result<Stats, RedisError> {
    super::stats(redis, &dlq_keys(config), filter).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            partition: 2,
            last: StreamId { ms: 17, seq: 3 },
        };
        assert_eq!(c.encode(), "2-17-3");
        assert_eq!(Cursor::decode("2-17-3"), Some(c));
        assert_eq!(Cursor::decode("x-17-3"), None);
        assert_eq!(Cursor::decode("2"), None);
        assert_eq!(Cursor::decode("2-abc"), None);
    }
}
