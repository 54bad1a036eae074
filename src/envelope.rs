//! Decoding a raw stream entry into an [`Event`]: the `type`, the `data` and the
//! pass-through fields of contract §1, all checked to be UTF-8.

use std::borrow::Cow;

use bytes::Bytes;

use crate::pointer::Found;

/// Field names with a meaning to weir; every other field passes through to handlers.
pub use crate::vocab::{
    DATA, EVENT_ID, REPLAY_GROUP, REPLAY_JOB, REPLAY_OF, RawEntry, StreamId, TYPE,
};

/// A decoded entry.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: StreamId,
    pub event_type: String,
    pub data: String,
    /// The publisher's `id` field, if any.
    pub event_id: Option<String>,
    /// Only this pool handles the entry (set by reprocess and replay).
    pub replay_group: Option<String>,
    /// Every field other than `type`, `data` and `id`.
    pub fields: Vec<(String, String)>,
    /// Its `[telemetry] key` value: found by dispatch as it checks the body.
    pub telemetry: Option<Found>,
}

/// Why an entry cannot be decoded. `event_type` is set when the type itself was readable, so
/// the pool that takes that type can dead-letter it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub event_type: Option<String>,
    pub error: String,
}

fn utf8(name: &Bytes, value: &Bytes) -> Result<String, String> {
    String::from_utf8(value.to_vec()).map_err(|e| {
        format!(
            "field `{}` is not valid UTF-8 (invalid byte at offset {})",
            String::from_utf8_lossy(name),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The readable `type` of an entry, if it has one.
pub fn event_type(entry: &RawEntry) -> Option<String> {
    let value = entry.field(TYPE)?;
    std::str::from_utf8(value)
        .ok()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

pub use crate::pointer::text_at;

/// The event id in the body `data` at `pointer`, for entries without an `id` field.
pub fn event_id_in(data: &str, pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    text_at(&value, pointer).map(Cow::into_owned)
}

/// Decodes `entry`. `fields` must be present (deleted entries are handled before this).
pub fn decode(entry: &RawEntry) -> Result<Event, Malformed> {
    let fields = entry.fields.as_deref().unwrap_or_default();
    let event_type = event_type(entry);
    let malformed = |error: String| Malformed {
        event_type: event_type.clone(),
        error,
    };
    let Some(ty) = event_type.clone() else {
        let error = match entry.field(TYPE) {
            None => "entry has no `type` field".to_string(),
            Some(v) if v.is_empty() => "field `type` is empty".to_string(),
            Some(v) => utf8(&Bytes::from_static(b"type"), v)
                .err()
                .unwrap_or_default(),
        };
        return Err(malformed(error));
    };
    let mut data = None;
    let mut event_id = None;
    let mut replay_group = None;
    let mut rest = Vec::with_capacity(fields.len().saturating_sub(2));
    for (name, value) in fields {
        let name_text = String::from_utf8(name.to_vec())
            .map_err(|_| malformed("a field name is not valid UTF-8".into()))?;
        let value = utf8(name, value).map_err(&malformed)?;
        match name_text.as_str() {
            TYPE => {}
            DATA => data = Some(value),
            EVENT_ID => event_id = Some(value),
            _ => {
                if name_text == REPLAY_GROUP {
                    replay_group = Some(value.clone());
                }
                rest.push((name_text, value));
            }
        }
    }
    let data = data.ok_or_else(|| malformed("entry has no `data` field".into()))?;
    Ok(Event {
        id: entry.id,
        event_type: ty,
        data,
        event_id,
        replay_group,
        fields: rest,
        telemetry: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&[u8], &[u8])]) -> RawEntry {
        RawEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn decodes_type_data_id_and_pass_through() {
        let e = decode(&entry(&[
            (b"type", b"a.b"),
            (b"data", b"{}"),
            (b"id", b"E1"),
            (b"tenant", b"t1"),
            (b"replay_group", b"p"),
        ]))
        .unwrap();
        assert_eq!(e.event_type, "a.b");
        assert_eq!(e.data, "{}");
        assert_eq!(e.event_id.as_deref(), Some("E1"));
        assert_eq!(e.replay_group.as_deref(), Some("p"));
        assert_eq!(e.fields[0], ("tenant".into(), "t1".into()));
    }

    #[test]
    fn event_ids_come_from_strings_or_numbers_at_the_pointer() {
        let data = r#"{"id":"E1","n":7,"o":{"a~b":"x"},"list":[1]}"#;
        assert_eq!(event_id_in(data, "/id").as_deref(), Some("E1"));
        assert_eq!(event_id_in(data, "/n").as_deref(), Some("7"));
        assert_eq!(event_id_in(data, "/o/a~0b").as_deref(), Some("x"));
        assert_eq!(event_id_in(data, "/list"), None);
        assert_eq!(event_id_in(data, "/missing"), None);
        assert_eq!(event_id_in("not json", "/id"), None);
    }

    #[test]
    fn reports_what_is_malformed() {
        let no_type = decode(&entry(&[(b"foo", b"bar")])).unwrap_err();
        assert_eq!(no_type.event_type, None);
        assert!(no_type.error.contains("no `type`"));
        let no_data = decode(&entry(&[(b"type", b"x")])).unwrap_err();
        assert_eq!(no_data.event_type.as_deref(), Some("x"));
        let bad = decode(&entry(&[(b"type", b"x"), (b"data", b"{\xff}")])).unwrap_err();
        assert!(
            bad.error
                .contains("`data` is not valid UTF-8 (invalid byte at offset 1)"),
            "{}",
            bad.error
        );
        let bad_type = decode(&entry(&[(b"type", b"\xfe"), (b"data", b"{}")])).unwrap_err();
        assert!(bad_type.error.contains("`type` is not valid UTF-8"));
    }
}
