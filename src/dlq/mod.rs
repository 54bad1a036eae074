//! Reading and working the dead-letter stream: filtered scans in pages (memory stays flat on
//! any DLQ size), atomic reprocess, forget and purge. `ops` (reads) and `moves` (writes)
//! hold the operations across partitions that the CLI and the HTTP API share; `ids` places
//! the letters an operator names (`<partition>/<entry ID>` with partitions).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::conditions::Conditions;
use crate::error::{InputError, RedisError};
use crate::redis::Redis;
use crate::timespec;
use crate::vocab::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_FAILED_AT, DLQ_GROUP, DLQ_REASON, DLQ_SOURCE_ID, DlqReason,
    RawEntry, StreamId, TYPE,
};

mod ids;
mod moves;
mod ops;

pub use moves::{Purged, Reprocessed, Selection, Skipped, forget, purge, reprocess};
pub use ops::{Cursor, Page, find, page, stats as stats_all, visit};

/// Entries per XRANGE page.
pub const PAGE: usize = 500;

/// Which dead letters a command applies to. Times bound the DLQ entry ID (when it failed).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The original event types (`dlq_*` aside, `type` is kept); empty matches all.
    pub types: Vec<String>,
    /// A `dlq_reason` ([`crate::DlqReason`] as text); `None` matches all.
    pub reason: Option<String>,
    /// Failed at or after (a DLQ ID is the time of failure).
    pub start: Option<StreamId>,
    /// Failed at or before.
    pub end: Option<StreamId>,
    /// Case-sensitive text anywhere in the entry's field values.
    pub grep: Option<String>,
    /// Only dead letters of this pool (`dlq_group`).
    pub group: Option<String>,
    /// `--where` conditions on the original fields and body; all must hold.
    pub conditions: Conditions,
}

/// A dead letter, its `dlq_*` fields read out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The DLQ entry's ID, which `forget` and `reprocess` take; with partitions qualified
    /// as `<partition>/<entry ID>` (`1/1796391658546-0`), since two partitions' DLQs can
    /// hold the same entry ID.
    pub id: String,
    /// The event type, to see at a glance which producer or handler is at fault.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `dlq_reason`: what to fix (the handler, the publisher, the schema…).
    pub reason: String,
    /// The pool that gave up; reprocess sends the entry back to it only.
    pub group: String,
    /// The handler's or validator's last message.
    pub error: String,
    /// Deliveries made, as stored (text: operators may have edited it).
    pub attempts: String,
    /// When it was dead-lettered, as stored.
    pub failed_at: String,
    /// The entry's ID on the main stream, which a reprocessed copy carries as `replay_of`.
    pub source_id: String,
    /// Every field as it is stored, `dlq_*` included.
    pub fields: BTreeMap<String, String>,
}

pub(crate) fn text(entry: &RawEntry, name: &str) -> String {
    entry
        .field(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

impl DeadLetter {
    /// Reads the `dlq_*` fields of a DLQ entry; missing ones read as empty, never an error,
    /// so a hand-written or damaged entry still lists.
    pub fn from_entry(entry: &RawEntry) -> DeadLetter {
        let fields = entry.text_fields();
        DeadLetter {
            id: entry.id.to_string(),
            event_type: text(entry, TYPE),
            reason: text(entry, DLQ_REASON),
            group: text(entry, DLQ_GROUP),
            error: text(entry, DLQ_ERROR),
            attempts: text(entry, DLQ_ATTEMPTS),
            failed_at: text(entry, DLQ_FAILED_AT),
            source_id: text(entry, DLQ_SOURCE_ID),
            fields,
        }
    }
}

/// A filter as a user gives it (CLI flags, API query): text, checked by [`Filter::parse`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterInput<'a> {
    /// Only these types (none: every type).
    pub types: &'a [String],
    /// A `dlq_reason` value.
    pub reason: Option<&'a str>,
    /// TIME: failed at or after.
    pub since: Option<&'a str>,
    /// TIME: failed at or before.
    pub until: Option<&'a str>,
    /// Text anywhere in the entry's values.
    pub grep: Option<&'a str>,
    /// A pool name (`dlq_group`); the caller checks it is configured.
    pub group: Option<&'a str>,
    /// `FIELD=VALUE` / `/pointer=VALUE` conditions, all of which must hold.
    pub conditions: &'a [String],
}

impl Filter {
    /// Checks and converts a user's filter; errors name the field at fault.
    pub fn parse(input: FilterInput<'_>) -> Result<Filter, InputError> {
        if let Some(r) = input.reason
            && DlqReason::parse(r).is_none()
        {
            let all: Vec<&str> = DlqReason::ALL.iter().map(|r| r.as_str()).collect();
            return Err(InputError::new(
                "reason",
                format!("reason `{r}` is not one of {}", all.join(", ")),
            ));
        }
        let (start, end) = timespec::range(input.since, input.until)?;
        Ok(Filter {
            types: input.types.to_vec(),
            reason: input.reason.map(String::from),
            start: Some(start),
            end: Some(end),
            grep: input.grep.filter(|g| !g.is_empty()).map(String::from),
            group: input.group.map(String::from),
            conditions: Conditions::parse(input.conditions)?,
        })
    }

    /// Whether `entry` is selected.
    pub fn matches(&self, entry: &RawEntry) -> bool {
        let field_is = |name: &str, want: &str| {
            entry
                .field(name)
                .is_some_and(|v| v.as_ref() == want.as_bytes())
        };
        if !self.types.is_empty() && !self.types.iter().any(|t| field_is(TYPE, t)) {
            return false;
        }
        if let Some(reason) = &self.reason
            && !field_is(DLQ_REASON, reason)
        {
            return false;
        }
        if let Some(group) = &self.group
            && !field_is(DLQ_GROUP, group)
        {
            return false;
        }
        if !self.conditions.matches(entry) {
            return false;
        }
        if let Some(needle) = &self.grep {
            let needle = needle.as_bytes();
            let found = entry
                .fields
                .iter()
                .flatten()
                .any(|(_, v)| v.windows(needle.len().max(1)).any(|w| w == needle));
            if !found {
                return false;
            }
        }
        true
    }
}

/// Visits matching entries in ID order, a page at a time; `visit` returns `false` to stop.
/// Returns how many entries were scanned.
pub async fn scan<F>(
    redis: &Redis,
    dlq: &str,
    filter: &Filter,
    mut visit: F,
) -> Result<u64, RedisError>
where
    F: FnMut(RawEntry) -> bool,
{
    let mut start = filter.start.unwrap_or(StreamId::ZERO);
    let end = filter
        .end
        .map_or_else(|| "+".to_string(), |e| e.to_string());
    let mut scanned = 0;
    loop {
        let page = redis.range(dlq, &start.to_string(), &end, PAGE).await?;
        let full = page.len() == PAGE;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for entry in page {
            scanned += 1;
            if filter.matches(&entry) && !visit(entry) {
                return Ok(scanned);
            }
        }
        if !full {
            break;
        }
        start = last.next();
    }
    Ok(scanned)
}

/// Counts by type and by reason.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Dead letters scanned.
    pub total: u64,
    /// Which events fail.
    pub by_type: BTreeMap<String, u64>,
    /// Why they fail.
    pub by_reason: BTreeMap<String, u64>,
    /// Which pools gave up.
    pub by_group: BTreeMap<String, u64>,
}

/// Counts over the DLQs of every partition.
pub async fn stats(redis: &Redis, dlqs: &[String], filter: &Filter) -> Result<Stats, RedisError> {
    let mut stats = Stats::default();
    for dlq in dlqs {
        stats_of(redis, dlq, filter, &mut stats).await?;
    }
    Ok(stats)
}

async fn stats_of(
    redis: &Redis,
    dlq: &str,
    filter: &Filter,
    stats: &mut Stats,
) -> Result<(), RedisError> {
    scan(redis, dlq, filter, |entry| {
        stats.total += 1;
        *stats.by_type.entry(text(&entry, TYPE)).or_default() += 1;
        *stats.by_reason.entry(text(&entry, DLQ_REASON)).or_default() += 1;
        *stats.by_group.entry(text(&entry, DLQ_GROUP)).or_default() += 1;
        true
    })
    .await?;
    Ok(())
}
