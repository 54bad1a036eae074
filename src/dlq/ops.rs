//! The DLQ operations, across every partition: the CLI's `weir dlq …` and the HTTP API call
//! these, so the two cannot drift apart.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{DeadLetter, Filter, PAGE, Stats, scan, text};
use crate::config::Config;
use crate::error::{OpError, RedisError};
use crate::redis::{RawEntry, Redis, StreamId};
use crate::vocab::TYPE;

/// What to reprocess.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These dead letters, looked for in every partition's DLQ.
    Ids(Vec<StreamId>),
    /// Every dead letter the filter matches (an empty filter matches all).
    Matching(Filter),
}

/// What a reprocess did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reprocessed {
    /// Nothing was written.
    pub dry_run: bool,
    /// Dead letters selected.
    pub matched: u64,
    /// Moved back onto their stream.
    pub moved: u64,
    /// Given IDs no partition's DLQ holds (already reprocessed, forgotten, or never there).
    pub missing: Vec<String>,
    /// Moved (dry: selected) per type; `""` for IDs in a dry run, whose type is not read.
    pub by_type: BTreeMap<String, u64>,
}

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

/// Visits matching dead letters, partition by partition, in ID order; `visit` returns
/// `false` to stop. Returns how many entries were scanned.
pub async fn visit(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    mut visit: impl FnMut(RawEntry) -> bool,
) -> Result<u64, RedisError> {
    let mut scanned = 0;
    let mut go_on = true;
    for dlq in dlq_keys(config) {
        if !go_on {
            break;
        }
        scanned += scan(redis, &dlq, filter, |entry| {
            go_on = visit(entry);
            go_on
        })
        .await?;
    }
    Ok(scanned)
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
        scan(redis, dlq, &from, |entry| {
            if entries.len() == limit {
                // One more exists: the page ends at the previous entry.
                next = entries.last().map(|d: &DeadLetter| Cursor {
                    partition,
                    last: StreamId::parse(&d.id).unwrap_or(StreamId::ZERO),
                });
                return false;
            }
            entries.push(DeadLetter::from_entry(&entry));
            true
        })
        .await?;
        if next.is_some() {
            break;
        }
    }
    Ok(Page { entries, next })
}

/// The dead letter `id`, and the DLQ key that holds it.
pub async fn find(
    redis: &Redis,
    config: &Config,
    id: StreamId,
) -> Result<Option<(String, DeadLetter)>, RedisError> {
    let at = id.to_string();
    for dlq in dlq_keys(config) {
        let entries = redis.range(&dlq, &at, &at, 1).await?;
        if let Some(entry) = entries.into_iter().next() {
            return Ok(Some((dlq, DeadLetter::from_entry(&entry))));
        }
    }
    Ok(None)
}

/// Counts over every partition's DLQ.
pub async fn stats(redis: &Redis, config: &Config, filter: &Filter) -> Result<Stats, RedisError> {
    super::stats(redis, &dlq_keys(config), filter).await
}

/// Entries (ID and type) of one partition's DLQ matching `filter`; IDs only, so memory
/// stays small.
async fn matching(
    redis: &Redis,
    dlq: &str,
    filter: &Filter,
) -> Result<Vec<(StreamId, String)>, RedisError> {
    let mut found = Vec::new();
    scan(redis, dlq, filter, |entry| {
        found.push((entry.id, text(&entry, TYPE)));
        true
    })
    .await?;
    Ok(found)
}

/// Moves the selected dead letters back onto the stream (partition) they came from: one
/// script per page, each entry atomically (XRANGE + XADD + XDEL), so an entry reprocessed by
/// two callers at once moves once. `progress` is called with the number moved so far.
pub async fn reprocess(
    redis: &Redis,
    config: &Config,
    selection: &Selection,
    dry_run: bool,
    mut progress: impl FnMut(u64),
) -> Result<Reprocessed, OpError> {
    let mut done = Reprocessed {
        dry_run,
        ..Reprocessed::default()
    };
    // Given IDs are looked for in each partition in turn; what none holds is missing.
    let mut unplaced: Vec<(StreamId, String)> = match selection {
        Selection::Ids(ids) => ids.iter().map(|id| (*id, String::new())).collect(),
        Selection::Matching(_) => Vec::new(),
    };
    if let Selection::Ids(ids) = selection {
        done.matched = ids.len() as u64;
        if dry_run {
            done.by_type.insert(String::new(), done.matched);
            return Ok(done);
        }
    }
    for part in config.partitions() {
        let targets = match selection {
            Selection::Ids(_) => std::mem::take(&mut unplaced),
            Selection::Matching(filter) => {
                let found = matching(redis, &part.dlq, filter).await?;
                done.matched += found.len() as u64;
                found
            }
        };
        for chunk in targets.chunks(PAGE) {
            if dry_run {
                for (_, ty) in chunk {
                    *done.by_type.entry(ty.clone()).or_default() += 1;
                }
                continue;
            }
            let ids: Vec<StreamId> = chunk.iter().map(|(id, _)| *id).collect();
            let results = redis.reprocess(&part.dlq, &part.stream, &ids).await?;
            for ((id, ty), result) in chunk.iter().zip(results) {
                match result {
                    Some(_) => {
                        done.moved += 1;
                        *done.by_type.entry(ty.clone()).or_default() += 1;
                    }
                    None => unplaced.push((*id, ty.clone())),
                }
            }
            progress(done.moved);
        }
    }
    done.missing = unplaced.iter().map(|(id, _)| id.to_string()).collect();
    Ok(done)
}

/// Deletes the dead letters `ids` from every partition's DLQ; returns how many existed.
pub async fn forget(redis: &Redis, config: &Config, ids: &[StreamId]) -> Result<u64, RedisError> {
    let mut deleted = 0;
    for dlq in dlq_keys(config) {
        for chunk in ids.chunks(PAGE) {
            deleted += redis.delete_entries(&dlq, chunk).await?;
        }
    }
    Ok(deleted)
}

/// Deletes every dead letter `filter` matches, for good; `progress` gets the count so far.
pub async fn purge(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    mut progress: impl FnMut(u64),
) -> Result<u64, RedisError> {
    let mut deleted = 0;
    for dlq in dlq_keys(config) {
        let ids: Vec<StreamId> = matching(redis, &dlq, filter)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for chunk in ids.chunks(PAGE) {
            deleted += redis.delete_entries(&dlq, chunk).await?;
            progress(deleted);
        }
    }
    Ok(deleted)
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
