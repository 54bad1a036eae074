//! The words every layer shares, written once: stream entry IDs, raw entries, the entry
//! field names of contract §1, the `dlq_*` fields and `dlq_reason` values. A leaf module: it
//! imports nothing from the crate, so pure modules (envelope, dispatch, settle decisions) can
//! name these without depending on the Redis layer.

use std::fmt;

use bytes::Bytes;

/// `<ms>-<seq>`, ordered the way Redis orders entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the epoch when Redis added the entry: IDs double as timestamps.
    pub ms: u64,
    /// Orders entries added in the same millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry; a group created here reads the whole stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `1700000000000-3`, or a bare `1700000000000` (sequence 0).
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (text, "0"),
        };
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest ID after this one.
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A dead letter as operators name it: its DLQ entry ID, qualified with the partition whose
/// DLQ holds it (`1/1796391658546-0`) when the stream is partitioned — two partitions' DLQs
/// can hold the same stream ID, and an operation must touch only the letter named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LetterId {
    /// The partition (0-based); `None` for a bare ID, which names a letter only where one
    /// partition alone holds that ID.
    pub partition: Option<usize>,
    /// The entry ID in that partition's DLQ.
    pub id: StreamId,
}

impl LetterId {
    /// How the API, `--json` and the dashboard name the letter `id` of `partition`: bare with
    /// one partition (as before partitions existed), qualified with more.
    pub fn shown(partition: usize, partitions: usize, id: StreamId) -> LetterId {
        LetterId {
            partition: (partitions > 1).then_some(partition),
            id,
        }
    }
}

impl std::str::FromStr for LetterId {
    type Err = String;

    /// `<partition>/<ms>-<seq>` or a bare `<ms>-<seq>`; the error says which form is expected.
    fn from_str(text: &str) -> Result<LetterId, String> {
        let bad = || {
            format!(
                "`{text}` is not a dead-letter ID: expected a DLQ entry ID like 1700000000000-0, \
                 or with partitions <partition>/<entry ID> like 1/1700000000000-0"
            )
        };
        let (partition, id) = match text.split_once('/') {
            Some((p, id)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(p.parse().map_err(|_| bad())?), id)
            }
            Some(_) => return Err(bad()),
            None => (None, text),
        };
        let strict = id
            .split_once('-')
            .is_none_or(|(ms, seq)| !ms.is_empty() && !seq.is_empty());
        match StreamId::parse(id) {
            Some(id) if strict && !text.contains('+') => Ok(LetterId { partition, id }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{p}/{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// One stream entry as it came from Redis: the ID and the fields as bytes, in order.
/// `fields` is `None` when the entry was deleted but its ID is still pending.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// Where it sits on its stream.
    pub id: StreamId,
    /// Bytes, not text: a publisher may write anything, and a bad entry must still reach the
    /// DLQ intact.
    pub fields: Option<Vec<(Bytes, Bytes)>>,
}

impl RawEntry {
    /// Every field as text (invalid UTF-8 replaced), ordered by name: how the DLQ tools and
    /// the API show an entry.
    pub fn text_fields(&self) -> std::collections::BTreeMap<String, String> {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// A test entry `1-0` with these text fields.
    #[cfg(test)]
    pub(crate) fn of_texts(fields: &[(&str, &str)]) -> RawEntry {
        RawEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
                    .collect(),
            ),
        }
    }

    /// Bytes of all field names and values: what `max_entry_bytes` limits.
    pub fn size(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    /// The first value of field `name` (a stream entry may repeat a field; the first wins).
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Entry field: the event type (required).
pub const TYPE: &str = "type";
/// Entry field: the JSON body (required).
pub const DATA: &str = "data";
/// Entry field: the publisher's event id (optional; the idempotency key).
pub const EVENT_ID: &str = "id";
/// Written on re-published entries: the original entry's ID.
pub const REPLAY_OF: &str = "replay_of";
/// Written on re-published entries: only this pool handles it; the others skip it.
pub const REPLAY_GROUP: &str = "replay_group";
/// Written on replayed entries: the replay job's ID.
pub const REPLAY_JOB: &str = "replay_job";
/// Written on entries that waited in a scheduled set (contract §13): the due time, unix ms.
pub const SCHEDULED_FOR: &str = "scheduled_for";
/// Written on the events of a recurring schedule (contract §13): the schedule's name.
pub const SCHEDULE: &str = "schedule";
/// DLQ field of a scheduled member that was no event (not a JSON object of strings with
/// `type`): the member's raw text.
pub const SCHEDULED_MEMBER: &str = "scheduled_member";

/// The publisher's W3C trace context (contract §15): `00-<trace id>-<span id>-<flags>`;
/// weir continues it in the delivery's span and hands it on to the handler.
pub const TRACEPARENT: &str = "traceparent";
/// Vendors' trace state beside `traceparent`, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// DLQ field: ID of the entry in the main stream.
pub const DLQ_SOURCE_ID: &str = "dlq_source_id";
/// DLQ field: the pool (consumer group) in which it failed.
pub const DLQ_GROUP: &str = "dlq_group";
/// DLQ field: a [`DlqReason`].
pub const DLQ_REASON: &str = "dlq_reason";
/// DLQ field: the last error, at most [`DLQ_ERROR_LIMIT`] bytes.
pub const DLQ_ERROR: &str = "dlq_error";
/// DLQ field: deliveries made.
pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
/// DLQ field: unix milliseconds.
pub const DLQ_FAILED_AT: &str = "dlq_failed_at";
/// Every field weir adds to a dead letter starts with this; they are stripped when an entry
/// is dead-lettered again or reprocessed.
pub const DLQ_PREFIX: &str = "dlq_";
/// `dlq_error` is capped at 1 KiB.
pub const DLQ_ERROR_LIMIT: usize = 1024;

/// `dlq_reason` values of contract §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// `max_attempts` deliveries failed.
    MaxAttempts,
    /// The handler reported a permanent failure.
    Rejected,
    /// `data` is not JSON or breaks its schema.
    Invalid,
    /// `type` or `data` missing, or a field is not UTF-8.
    Malformed,
    /// Bigger than `stream.max_entry_bytes`.
    TooLarge,
    /// No pool takes the type.
    Unrouted,
}

impl DlqReason {
    /// Every reason, in the contract's order.
    pub const ALL: [DlqReason; 6] = [
        DlqReason::MaxAttempts,
        DlqReason::Rejected,
        DlqReason::Invalid,
        DlqReason::Malformed,
        DlqReason::TooLarge,
        DlqReason::Unrouted,
    ];

    /// The value stored in `dlq_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::MaxAttempts => "max_attempts",
            DlqReason::Rejected => "rejected",
            DlqReason::Invalid => "invalid",
            DlqReason::Malformed => "malformed",
            DlqReason::TooLarge => "too_large",
            DlqReason::Unrouted => "unrouted",
        }
    }

    /// The reason named `s`, as stored in `dlq_reason`.
    pub fn parse(s: &str) -> Option<DlqReason> {
        DlqReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for DlqReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keeps the first `max` bytes of `text` on a character boundary: the size cap of `dlq_error`
/// ([`DLQ_ERROR_LIMIT`]), of logged errors and of span status messages.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_steps() {
        let a = StreamId::parse("5-1").unwrap();
        let b = StreamId::parse("5").unwrap();
        assert!(b < a);
        assert_eq!(b.next(), a);
        assert_eq!(a.to_string(), "5-1");
        assert_eq!(StreamId::parse("x-1"), None);
        assert_eq!(StreamId::parse("1-"), None);
        let max = StreamId {
            ms: 1,
            seq: u64::MAX,
        };
        assert_eq!(max.next(), StreamId { ms: 2, seq: 0 });
    }

    #[test]
    fn letter_ids_read_bare_or_qualified_and_print_back() {
        let bare: LetterId = "5-1".parse().unwrap();
        assert_eq!(bare.partition, None);
        assert_eq!(bare.to_string(), "5-1");
        let qualified: LetterId = "1/5-1".parse().unwrap();
        assert_eq!(qualified.partition, Some(1));
        assert_eq!(qualified.id, bare.id);
        assert_eq!(qualified.to_string(), "1/5-1");
        for bad in [
            "", "/5-1", "x/5-1", "1/", "1/x", "1/2/5-1", "-1/5-1", "5-", "+5-1", "1/+5",
        ] {
            let err = bad.parse::<LetterId>().unwrap_err();
            assert!(err.contains("1/1700000000000-0"), "{bad}: {err}");
        }
        let id = StreamId { ms: 7, seq: 0 };
        assert_eq!(LetterId::shown(1, 1, id).to_string(), "7-0");
        assert_eq!(LetterId::shown(1, 2, id).to_string(), "1/7-0");
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in DlqReason::ALL {
            assert_eq!(DlqReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(DlqReason::parse("nope"), None);
    }
}
