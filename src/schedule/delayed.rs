//! Delayed events (contract §13): what a member of `<stream>:scheduled` looks like, and the
//! operations `weir scheduled`, `/api/v1/scheduled` and the dashboard share — a page of
//! events soonest first, cancel by id, and the count with how overdue the soonest is.
//!
//! A member is one event as a JSON object of strings: `type`, `data`, optional `id`, and any
//! other field (`tenant`, `correlation_id`…; `_lane` is reserved for the priority lanes of
//! §14 and, until they exist, passed through as a plain field). The score is the due time in
//! unix ms. Members are a set, so every member weir writes carries an `id` (generated when
//! the publisher gives none) and two events never collapse into one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, StreamConfig};
use crate::error::{InputError, OpError, RedisError};
use crate::redis::Redis;
use crate::vocab::{DATA, EVENT_ID, TYPE};

/// Members read per round trip while paging or filtering.
const CHUNK: usize = 500;
/// Ids cancelled per script (each script walks the whole set once).
const CANCEL_IDS_PER_SCAN: usize = 200;

/// A member's text for an event of `event_type` with `data`, `id` and pass-through `fields`:
/// a JSON object of strings, `type`, `data`, `id` first.
pub fn member(event_type: &str, data: &str, id: &str, fields: &BTreeMap<String, String>) -> String {
    let mut object = serde_json::Map::with_capacity(3 + fields.len());
    for (k, v) in fields {
        object.insert(k.clone(), serde_json::Value::from(v.as_str()));
    }
    // serde_json's map is ordered by key; written by hand so `type`, `data`, `id` lead.
    let mut text = String::with_capacity(32 + event_type.len() + data.len() * 5 / 4);
    text.push('{');
    for (i, (k, v)) in [(TYPE, event_type), (DATA, data), (EVENT_ID, id)]
        .into_iter()
        .chain(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .enumerate()
    {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::Value::from(k).to_string());
        text.push(':');
        text.push_str(&serde_json::Value::from(v).to_string());
    }
    text.push('}');
    text
}

/// The scheduled set beside `stream` (a partition's stream, when partitioned).
pub fn scheduled_key(stream: &str) -> String {
    crate::keys::scheduled(stream)
}

/// A new event id for a delayed event published without one: unix ms and 64 random bits,
/// in hex (`sch-018c6a3f9b2e-5f0c…`), sortable by creation.
pub fn generated_id() -> String {
    format!(
        "sch-{:012x}-{:016x}",
        crate::clock::now_ms(),
        rand::random::<u64>()
    )
}

/// A member's fields, if it is an event as the mover sees one (a JSON object of strings).
fn fields_of(member: &str) -> Option<BTreeMap<String, String>> {
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(member).ok()?;
    object
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect()
}

/// One delayed event as the listings show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEvent {
    /// The event's `id` ("" when the member has none: added by hand without one).
    pub id: String,
    /// The `type` field ("" when missing: such a member is dead-lettered when due).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it is due, RFC 3339 (UTC, milliseconds).
    pub due_at: String,
    /// When it is due, unix ms.
    pub due_ms: u64,
    /// Every field of the member (`type`, `data`, `id` included). A member that is no JSON
    /// object of strings shows as one field, `scheduled_member`, with its raw text.
    pub fields: BTreeMap<String, String>,
    /// The partition whose set holds it (0 without partitions).
    #[serde(skip)]
    pub partition: usize,
    /// The exact score, for ordering.
    #[serde(skip)]
    score: f64,
    /// The member text, for ordering ties.
    #[serde(skip)]
    member: String,
}

impl ScheduledEvent {
    fn new(member: String, score: f64, partition: usize) -> ScheduledEvent {
        let fields = fields_of(&member).unwrap_or_else(|| {
            BTreeMap::from([(crate::vocab::SCHEDULED_MEMBER.to_string(), member.clone())])
        });
        let due_ms = due_ms(score);
        ScheduledEvent {
            id: fields.get(EVENT_ID).cloned().unwrap_or_default(),
            event_type: fields.get(TYPE).cloned().unwrap_or_default(),
            due_at: rfc3339(due_ms),
            due_ms,
            fields,
            partition,
            score,
            member,
        }
    }

    /// Ordered as the listings show: soonest first, then by partition and member, the
    /// order of one set's own ties.
    fn order(&self, other: &ScheduledEvent) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.partition.cmp(&other.partition))
            .then_with(|| self.member.cmp(&other.member))
    }
}

/// A score as unix ms (a score set by hand may be fractional, negative or infinite).
fn due_ms(score: f64) -> u64 {
    if score.is_nan() || score <= 0.0 {
        0
    } else {
        score.min(u64::MAX as f64).floor() as u64
    }
}

/// Unix ms as RFC 3339 in UTC with milliseconds; far futures clamp to the last instant
/// RFC 3339 can name.
pub fn rfc3339(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX);
    format!("{t:.3}")
}

/// Where the next page starts: events due at `due_ms` or later, less the first `seen` of
/// those due in that very millisecond (already shown). Written `<due ms>-<seen>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub due_ms: u64,
    pub seen: usize,
}

impl std::str::FromStr for Cursor {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Cursor, InputError> {
        let bad = || {
            InputError::new(
                "cursor",
                format!("`{text}` is not a cursor: pass the `next` of the previous page"),
            )
        };
        let (due, seen) = text.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(due) || !digits(seen) {
            return Err(bad());
        }
        Ok(Cursor {
            due_ms: due.parse().map_err(|_| bad())?,
            seen: seen.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.due_ms, self.seen)
    }
}

/// One page of delayed events.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// Soonest first.
    pub entries: Vec<ScheduledEvent>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next: Option<String>,
}

/// The events of one set, from `from` on, of `types` (all when empty): at least `want` of
/// them unless the set ends first.
async fn matching(
    redis: &Redis,
    key: &str,
    partition: usize,
    from: Option<u64>,
    types: &[String],
    want: usize,
) -> Result<Vec<ScheduledEvent>, RedisError> {
    let mut found = Vec::new();
    // Each chunk starts at the last millisecond read, skipping the members of it already
    // read: an offset into the whole set would make a long walk quadratic.
    let (mut min, mut skip) = (from, 0usize);
    loop {
        let chunk = redis.scheduled_page(key, min, skip, CHUNK).await?;
        let full = chunk.len() == CHUNK;
        let last_ms = chunk.last().map_or(0, |(_, score)| due_ms(*score));
        let at_last = chunk.iter().filter(|(_, s)| due_ms(*s) == last_ms).count();
        for (member, score) in chunk {
            let event = ScheduledEvent::new(member, score, partition);
            if types.is_empty() || types.contains(&event.event_type) {
                found.push(event);
            }
        }
        if !full || found.len() >= want {
            return Ok(found);
        }
        skip = if min == Some(last_ms) {
            skip + at_last
        } else {
            at_last
        };
        min = Some(last_ms);
    }
}

/// A page of delayed events over every partition, soonest first, only `types` when given;
/// `after` is the previous page's `next`.
pub async fn page(
    redis: &Redis,
    stream: &StreamConfig,
    types: &[String],
    limit: usize,
    after: Option<Cursor>,
) -> Result<Page, RedisError> {
    let skip = after.map_or(0, |c| c.seen);
    let from = after.map(|c| c.due_ms);
    let want = skip + limit + 1;
    let mut all = Vec::new();
    for (index, part) in stream.partitions().iter().enumerate() {
        let key = part.scheduled_key();
        all.extend(matching(redis, &key, index, from, types, want).await?);
    }
    all.sort_by(ScheduledEvent::order);
    let mut skipped = 0;
    let rest: Vec<ScheduledEvent> = all
        .into_iter()
        .filter(|e| {
            let shown = from == Some(e.due_ms) && skipped < skip;
            skipped += usize::from(shown);
            !shown
        })
        .collect();
    let more = rest.len() > limit;
    let entries: Vec<ScheduledEvent> = rest.into_iter().take(limit).collect();
    let next = match entries.last() {
        Some(last) if more => {
            let here = entries.iter().filter(|e| e.due_ms == last.due_ms).count();
            let before = if from == Some(last.due_ms) { skip } else { 0 };
            Some(
                Cursor {
                    due_ms: last.due_ms,
                    seen: before + here,
                }
                .to_string(),
            )
        }
        _ => None,
    };
    Ok(Page { entries, next })
}

/// What a cancel did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// Members removed (an id scheduled twice by hand counts twice).
    pub cancelled: u64,
    /// The ids asked for that no set held (already moved, cancelled, or never scheduled).
    pub missing: Vec<String>,
}

/// Cancels the delayed events with these `id`s in every partition, atomically per member:
/// one the mover moved first is not cancelled (and is listed in `missing`). The id's dedup
/// key goes too, so the id can be scheduled again.
pub async fn cancel(redis: &Redis, config: &Config, ids: &[String]) -> Result<Cancelled, OpError> {
    if ids.is_empty() {
        return Err(InputError::new("ids", "name at least one event id to cancel").into());
    }
    if ids.iter().any(String::is_empty) {
        return Err(InputError::new("ids", "an event id must not be empty").into());
    }
    let mut done = Cancelled::default();
    let mut found = std::collections::HashSet::new();
    for part in config.partitions() {
        let key = part.scheduled_key();
        for chunk in ids.chunks(CANCEL_IDS_PER_SCAN) {
            let dedup: Vec<String> = chunk.iter().map(|id| part.dedup_key(id)).collect();
            let mut cursor = "0".to_string();
            loop {
                let (next, removed) = redis
                    .cancel_scheduled_page(&key, &dedup, chunk, &cursor)
                    .await?;
                done.cancelled += removed.len() as u64;
                found.extend(removed);
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
    }
    done.missing = ids
        .iter()
        .filter(|id| !found.contains(*id))
        .cloned()
        .collect();
    done.missing.dedup();
    Ok(done)
}

/// The delayed events of a stream at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Members of every partition's set.
    pub scheduled: u64,
    /// How late the most overdue member is, by Redis's clock (0 when none is).
    pub overdue_seconds: f64,
    /// When the soonest is due (unix ms), if any.
    pub next_due_ms: Option<u64>,
}

/// Counts the delayed events and how overdue the soonest is: one script per partition.
pub async fn summary(redis: &Redis, stream: &StreamConfig) -> Result<Summary, RedisError> {
    let mut total = Summary::default();
    for part in stream.partitions() {
        let s = redis.scheduled_summary(&part.scheduled_key()).await?;
        total.scheduled += s.members;
        if let Some(first) = s.first_due {
            let late = s.now.saturating_sub(first) as f64 / 1000.0;
            total.overdue_seconds = total.overdue_seconds.max(late);
            total.next_due_ms = Some(total.next_due_ms.map_or(first, |n| n.min(first)));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_a_json_object_of_strings_type_first() {
        let fields = BTreeMap::from([("tenant".to_string(), "a\"b".to_string())]);
        let text = member("t.x", "{\"n\":1}", "e-1", &fields);
        assert_eq!(
            text,
            r#"{"type":"t.x","data":"{\"n\":1}","id":"e-1","tenant":"a\"b"}"#
        );
        let back = fields_of(&text).unwrap();
        assert_eq!(back["data"], "{\"n\":1}");
        assert_eq!(back["tenant"], "a\"b");
        assert_eq!(fields_of("[\"a\"]"), None);
        assert_eq!(fields_of("{\"type\":1}"), None);
    }

    #[test]
    fn a_broken_member_lists_with_its_raw_text() {
        let e = ScheduledEvent::new("not json".into(), 1_700_000_000_123.0, 0);
        assert_eq!(e.event_type, "");
        assert_eq!(e.fields["scheduled_member"], "not json");
        assert_eq!(e.due_at, "2023-11-14T22:13:20.123Z");
        assert_eq!(ScheduledEvent::new("{}".into(), -5.0, 0).due_ms, 0);
        assert_eq!(
            ScheduledEvent::new("{}".into(), f64::NEG_INFINITY, 0).due_ms,
            0
        );
    }

    #[test]
    fn cursors_read_back_what_they_print() {
        let c = Cursor {
            due_ms: 1_700_000_000_000,
            seen: 3,
        };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in [
            "",
            "5",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(generated_id(), generated_id());
        assert!(generated_id().starts_with("sch-"));
    }
}
