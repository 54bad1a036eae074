//! Which partition's DLQ holds each dead letter an operator named. With partitions, two
//! DLQs can hold the same stream ID: a qualified ID (`1/1796391658546-0`) names one; a bare
//! one is taken only where exactly one partition holds it, and is otherwise refused with the
//! candidates, so no operation touches a letter the operator did not name.

use futures::future::try_join_all;

use crate::config::Config;
use crate::error::{InputError, OpError, RedisError};
use crate::redis::Redis;
use crate::vocab::{LetterId, StreamId};

/// Bare IDs looked up at once (each a one-entry XRANGE per partition, sent together).
const LOOKUP_BATCH: usize = 200;

/// A named dead letter and the partition whose DLQ holds it (or would, for an unchecked
/// qualified ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Placed {
    /// Index of the partition.
    pub partition: usize,
    /// The entry ID in that partition's DLQ.
    pub id: StreamId,
}

/// The named letters, placed; and the bare IDs that no partition holds (as given).
#[derive(Debug, Default)]
pub(crate) struct Placement {
    pub placed: Vec<Placed>,
    pub missing: Vec<String>,
}

/// How the letter at `placed` is shown under `config` (bare with one partition).
pub(crate) fn shown(config: &Config, placed: Placed) -> String {
    LetterId::shown(placed.partition, partition_count(config), placed.id).to_string()
}

fn partition_count(config: &Config) -> usize {
    config.partitions().len()
}

/// Places every ID: a qualified one in its partition (`field` names the argument in the
/// error when that partition does not exist), a bare one in the only partition holding it.
/// Fails with [`OpError::Ambiguous`] when a bare ID is in several partitions' DLQs: nothing
/// is touched then. Duplicates are placed once.
pub(crate) async fn place(
    redis: &Redis,
    config: &Config,
    ids: &[LetterId],
    field: &'static str,
) -> Result<Placement, OpError> {
    let count = partition_count(config);
    let mut placement = Placement::default();
    let mut bare = Vec::new();
    for letter in ids {
        match (letter.partition, count) {
            (Some(p), _) if p >= count => {
                return Err(InputError::new(
                    field,
                    format!(
                        "`{letter}`: there is no partition {p}; the stream has {count} partition(s), numbered from 0"
                    ),
                )
                .into());
            }
            (Some(partition), _) => placement.placed.push(Placed {
                partition,
                id: letter.id,
            }),
            (None, 1) => placement.placed.push(Placed {
                partition: 0,
                id: letter.id,
            }),
            (None, _) => bare.push(letter.id),
        }
    }
    let mut ambiguous = Vec::new();
    for batch in bare.chunks(LOOKUP_BATCH) {
        let holders = try_join_all(batch.iter().map(|id| holders(redis, config, *id))).await?;
        for (id, holders) in batch.iter().zip(holders) {
            match holders.as_slice() {
                [] => placement.missing.push(id.to_string()),
                [partition] => placement.placed.push(Placed {
                    partition: *partition,
                    id: *id,
                }),
                many => ambiguous.push((*id, many.to_vec())),
            }
        }
    }
    if !ambiguous.is_empty() {
        return Err(ambiguity(count, &ambiguous));
    }
    let mut seen = std::collections::HashSet::new();
    placement.placed.retain(|p| seen.insert(*p));
    Ok(placement)
}

/// The partitions whose DLQ holds `id`.
async fn holders(redis: &Redis, config: &Config, id: StreamId) -> Result<Vec<usize>, RedisError> {
    let at = id.to_string();
    let found = try_join_all(
        config
            .partitions()
            .iter()
            .map(|part| redis.range(&part.dlq, &at, &at, 1)),
    )
    .await?;
    Ok(found
        .iter()
        .enumerate()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(partition, _)| partition)
        .collect())
}

/// The 409 / exit 2 for bare IDs held by several partitions, listing every candidate.
fn ambiguity(count: usize, ambiguous: &[(StreamId, Vec<usize>)]) -> OpError {
    let mut candidates = Vec::new();
    let mut parts = Vec::new();
    for (id, partitions) in ambiguous {
        let names: Vec<String> = partitions
            .iter()
            .map(|p| LetterId::shown(*p, count, *id).to_string())
            .collect();
        parts.push(format!(
            "`{id}` is in {} partitions' DLQs: {}",
            names.len(),
            names.join(", ")
        ));
        candidates.extend(names);
    }
    OpError::Ambiguous {
        message: format!(
            "{}; name the letter with its partition (<partition>/<entry ID>) — nothing was changed",
            parts.join("; ")
        ),
        candidates,
    }
}
