//! The DLQ operations that change it — reprocess, forget, purge — across every partition.
//! Each works a page at a time and reports exactly what it moved or deleted, also when it
//! stops early (the caller's deadline, Redis failing): a letter that cannot be moved is
//! skipped and named, the rest goes on.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::Serialize;

use super::ids::{self, Placed};
use super::{Filter, PAGE, scan, text};
use crate::config::Config;
use crate::error::{OpError, RedisError};
use crate::keys::Partition;
use crate::redis::{Redis, Reprocessing};
use crate::vocab::{LetterId, StreamId, TYPE};

/// What to reprocess.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These dead letters: qualified IDs in their partition, bare ones where exactly one
    /// partition holds them.
    Ids(Vec<LetterId>),
    /// Every dead letter the filter matches (an empty filter matches all).
    Matching(Filter),
}

/// A dead letter reprocess left in the DLQ, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The dead letter, named as the listing names it.
    pub id: String,
    /// Why it could not be moved (nothing to copy, too many fields, a server error).
    pub error: String,
}

/// What a reprocess did (or, dry, would do).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reprocessed {
    /// Nothing was written.
    pub dry_run: bool,
    /// Dead letters selected (up to where it stopped).
    pub matched: u64,
    /// Moved back onto their stream.
    pub moved: u64,
    /// Given IDs no partition's DLQ holds (already reprocessed, forgotten, or never there).
    pub missing: Vec<String>,
    /// Letters left in the DLQ because they cannot be moved, each with the reason; the
    /// others moved.
    pub skipped: Vec<Skipped>,
    /// Moved (dry: selected) per type; `""` for IDs, whose type is not read.
    pub by_type: BTreeMap<String, u64>,
    /// False when it stopped before the end: the counts say what was done, and nothing past
    /// them was touched. Run it again for the rest.
    pub complete: bool,
    /// Why it stopped early (null when complete).
    pub stopped: Option<String>,
}

impl Reprocessed {
    fn new(dry_run: bool) -> Reprocessed {
        Reprocessed {
            dry_run,
            matched: 0,
            moved: 0,
            missing: Vec::new(),
            skipped: Vec::new(),
            by_type: BTreeMap::new(),
            complete: true,
            stopped: None,
        }
    }

    /// Whether anything was written yet (an error before that is simply an error).
    fn started(&self) -> bool {
        self.moved > 0 || !self.skipped.is_empty() || !self.missing.is_empty()
    }

    fn stop(&mut self, why: String) {
        self.complete = false;
        self.stopped = Some(why);
    }
}

/// What a purge deleted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    /// Dead letters deleted.
    pub deleted: u64,
    /// Deleted per type.
    pub by_type: BTreeMap<String, u64>,
    /// False when it stopped before the end (see [`Reprocessed::complete`]).
    pub complete: bool,
    /// Why it stopped early (null when complete).
    pub stopped: Option<String>,
}

/// Between pages, an operation asks its caller whether to go on: `Break(why)` stops it
/// there, reported (a request's deadline). Progress bars read the counts so far.
type Pace<'a, T> = &'a mut (dyn FnMut(&T) -> ControlFlow<String> + Send);

/// Moves the selected dead letters back onto the stream (partition) they came from, a page
/// at a time, each letter atomically in one script (XRANGE + XADD + XDEL), so a letter
/// reprocessed by two callers at once moves once. Fails only when Redis fails before
/// anything was written; later, the report says where it stopped.
pub async fn reprocess(
    redis: &Redis,
    config: &Config,
    selection: &Selection,
    dry_run: bool,
    mut pace: impl FnMut(&Reprocessed) -> ControlFlow<String> + Send,
) -> Result<Reprocessed, OpError> {
    let mut done = Reprocessed::new(dry_run);
    let worked = match selection {
        Selection::Ids(ids) => {
            let placement = ids::place(redis, config, ids, "ids").await?;
            by_ids(redis, config, placement, &mut done, &mut pace).await
        }
        Selection::Matching(filter) => matching(redis, config, filter, &mut done, &mut pace).await,
    };
    match worked {
        Err(e) if !done.started() => Err(e.into()),
        Err(e) => {
            done.stop(format!("Redis failed: {}", e.reason()));
            Ok(done)
        }
        Ok(()) => Ok(done),
    }
}

async fn by_ids(
    redis: &Redis,
    config: &Config,
    placement: ids::Placement,
    done: &mut Reprocessed,
    pace: Pace<'_, Reprocessed>,
) -> Result<(), RedisError> {
    done.missing = placement.missing;
    if done.dry_run {
        done.matched = placement.placed.len() as u64;
        done.by_type.insert(String::new(), done.matched);
        return Ok(());
    }
    for (index, part) in config.partitions().iter().enumerate() {
        let targets: Vec<(StreamId, String)> = placement
            .placed
            .iter()
            .filter(|p| p.partition == index)
            .map(|p| (p.id, String::new()))
            .collect();
        for chunk in targets.chunks(PAGE) {
            if let ControlFlow::Break(why) = pace(done) {
                done.stop(why);
                return Ok(());
            }
            done.matched += chunk.len() as u64;
            move_chunk(redis, config, part, chunk, done).await?;
        }
    }
    Ok(())
}

async fn matching(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    done: &mut Reprocessed,
    pace: Pace<'_, Reprocessed>,
) -> Result<(), RedisError> {
    for part in config.partitions() {
        let mut from = Some(filter.start.unwrap_or(StreamId::ZERO));
        while let Some(start) = from {
            if let ControlFlow::Break(why) = pace(done) {
                done.stop(why);
                return Ok(());
            }
            let (chunk, resume) = next_page(redis, &part.dlq, filter, start).await?;
            from = resume;
            done.matched += chunk.len() as u64;
            if done.dry_run {
                for (_, ty) in &chunk {
                    *done.by_type.entry(ty.clone()).or_default() += 1;
                }
            } else {
                move_chunk(redis, config, part, &chunk, done).await?;
            }
        }
    }
    Ok(())
}

/// Up to [`PAGE`] matching entries (ID and type) from `start` on, and where the next page
/// starts (`None`: the end of this DLQ).
async fn next_page(
    redis: &Redis,
    dlq: &str,
    filter: &Filter,
    start: StreamId,
) -> Result<(Vec<(StreamId, String)>, Option<StreamId>), RedisError> {
    let mut from = filter.clone();
    from.start = Some(start);
    let mut found = Vec::new();
    scan(redis, dlq, &from, |entry| {
        found.push((entry.id, text(&entry, TYPE)));
        found.len() < PAGE
    })
    .await?;
    let resume = (found.len() == PAGE).then(|| found[PAGE - 1].0.next());
    Ok((found, resume))
}

/// Reprocesses one page of one partition's letters and records each one's fate.
async fn move_chunk(
    redis: &Redis,
    config: &Config,
    part: &Partition,
    chunk: &[(StreamId, String)],
    done: &mut Reprocessed,
) -> Result<(), RedisError> {
    let ids: Vec<StreamId> = chunk.iter().map(|(id, _)| *id).collect();
    let results = redis.reprocess(&part.dlq, &part.stream, &ids).await?;
    for ((id, ty), result) in chunk.iter().zip(results) {
        let name = ids::shown(
            config,
            Placed {
                partition: part.index,
                id: *id,
            },
        );
        match result {
            Reprocessing::Moved(_) => {
                done.moved += 1;
                *done.by_type.entry(ty.clone()).or_default() += 1;
            }
            Reprocessing::Gone => done.missing.push(name),
            Reprocessing::Refused(error) => done.skipped.push(Skipped { id: name, error }),
        }
    }
    Ok(())
}

/// Deletes the named dead letters, each from the one partition's DLQ that holds it (see
/// [`Selection::Ids`]); returns how many existed.
pub async fn forget(redis: &Redis, config: &Config, ids: &[LetterId]) -> Result<u64, OpError> {
    let placement = ids::place(redis, config, ids, "id").await?;
    let mut deleted = 0;
    for (index, part) in config.partitions().iter().enumerate() {
        let mine: Vec<StreamId> = placement
            .placed
            .iter()
            .filter(|p| p.partition == index)
            .map(|p| p.id)
            .collect();
        for chunk in mine.chunks(PAGE) {
            deleted += redis.delete_entries(&part.dlq, chunk).await?;
        }
    }
    Ok(deleted)
}

/// Deletes every dead letter `filter` matches, for good, a page at a time. Fails only when
/// Redis fails before anything was deleted; later, the report says where it stopped.
pub async fn purge(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    mut pace: impl FnMut(&Purged) -> ControlFlow<String> + Send,
) -> Result<Purged, RedisError> {
    let mut done = Purged {
        deleted: 0,
        by_type: BTreeMap::new(),
        complete: true,
        stopped: None,
    };
    match purge_all(redis, config, filter, &mut done, &mut pace).await {
        Err(e) if done.deleted == 0 => Err(e),
        Err(e) => {
            done.complete = false;
            done.stopped = Some(format!("Redis failed: {}", e.reason()));
            Ok(done)
        }
        Ok(()) => Ok(done),
    }
}

async fn purge_all(
    redis: &Redis,
    config: &Config,
    filter: &Filter,
    done: &mut Purged,
    pace: Pace<'_, Purged>,
) -> Result<(), RedisError> {
    for part in config.partitions() {
        let mut from = Some(filter.start.unwrap_or(StreamId::ZERO));
        while let Some(start) = from {
            if let ControlFlow::Break(why) = pace(done) {
                done.complete = false;
                done.stopped = Some(why);
                return Ok(());
            }
            let (chunk, resume) = next_page(redis, &part.dlq, filter, start).await?;
            from = resume;
            // One XDEL per type: its count is exact per type even when someone else deletes
            // some of these letters meanwhile.
            let mut by_type: BTreeMap<String, Vec<StreamId>> = BTreeMap::new();
            for (id, ty) in chunk {
                by_type.entry(ty).or_default().push(id);
            }
            for (ty, ids) in by_type {
                let n = redis.delete_entries(&part.dlq, &ids).await?;
                done.deleted += n;
                if n > 0 {
                    *done.by_type.entry(ty).or_default() += n;
                }
            }
        }
    }
    Ok(())
}
