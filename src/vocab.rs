//! The words every layer shares: stream entry IDs and raw entries. A leaf module: it imports
//! nothing from the crate, so pure modules (envelope, dispatch, settle decisions) can name
//! these types without depending on the Redis layer.

use std::fmt;

use bytes::Bytes;

/// `<ms>-<seq>`, ordered the way Redis orders entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
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

/// One stream entry as it came from Redis: the ID and the fields as bytes, in order.
/// `fields` is `None` when the entry was deleted but its ID is still pending.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub id: StreamId,
    pub fields: Option<Vec<(Bytes, Bytes)>>,
}

impl RawEntry {
    /// Bytes of all field names and values: what `max_entry_bytes` limits.
    pub fn size(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
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
}
