//! Turning raw Redis replies into typed values. Redis is an input like any other: a reply of
//! the wrong shape is a [`RedisErrorKind::Protocol`] error, never a panic.

use bytes::Bytes;
use fred::types::{Resp3Frame, Value};

use crate::error::{RedisError, RedisErrorKind};
use crate::vocab::{RawEntry, StreamId};

pub(crate) fn protocol(command: &'static str, what: impl Into<String>) -> RedisError {
    RedisError {
        command,
        message: format!("unexpected reply: {}", what.into()),
        kind: RedisErrorKind::Protocol,
    }
}

pub(crate) fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::Bytes(b) => Some(b.clone()),
        Value::String(s) => Some(s.inner().clone()),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        Value::Double(d) => Some(Bytes::from(d.to_string())),
        _ => None,
    }
}

pub(crate) fn text(value: &Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

pub(crate) fn id(value: &Value) -> Option<StreamId> {
    StreamId::parse(&text(value)?)
}

/// The elements of an array reply; nil reads as empty.
pub(crate) fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        Value::Null => Some(Vec::new()),
        Value::Map(map) => Some(
            map.inner()
                .into_iter()
                .flat_map(|(k, v)| [Value::from(k), v])
                .collect(),
        ),
        _ => None,
    }
}

/// A `[k1, v1, k2, v2, …]` reply as pairs with text keys.
pub(crate) fn pairs(
    command: &'static str,
    value: Value,
) -> Result<Vec<(String, Value)>, RedisError> {
    let items = array(value).ok_or_else(|| protocol(command, "expected an array of pairs"))?;
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
        out.push((text(&k).unwrap_or_default(), v));
    }
    Ok(out)
}

/// `[id, [f1, v1, …]]` or `[id, nil]`.
pub(crate) fn entry(command: &'static str, value: Value) -> Result<RawEntry, RedisError> {
    let mut parts = array(value)
        .ok_or_else(|| protocol(command, "entry is not an array"))?
        .into_iter();
    let id = parts
        .next()
        .as_ref()
        .and_then(id)
        .ok_or_else(|| protocol(command, "entry without a valid ID"))?;
    let fields = match parts.next() {
        None | Some(Value::Null) => None,
        Some(list) => {
            let items = array(list).ok_or_else(|| protocol(command, "fields are not an array"))?;
            let mut fields = Vec::with_capacity(items.len() / 2);
            let mut iter = items.iter();
            while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                let (Some(k), Some(v)) = (bytes(k), bytes(v)) else {
                    return Err(protocol(command, "field is not a string"));
                };
                fields.push((k, v));
            }
            Some(fields)
        }
    };
    Ok(RawEntry { id, fields })
}

pub(crate) fn entries(command: &'static str, value: Value) -> Result<Vec<RawEntry>, RedisError> {
    array(value)
        .ok_or_else(|| protocol(command, "expected a list of entries"))?
        .into_iter()
        .map(|v| entry(command, v))
        .collect()
}

/// A server error reply carried in a raw frame, as the message Redis sent.
pub(crate) fn frame_error(frame: &Resp3Frame) -> Option<String> {
    match frame {
        Resp3Frame::SimpleError { data, .. } => Some(data.to_string()),
        Resp3Frame::BlobError { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    }
}

/// The items of an array frame; nil reads as empty.
fn frame_items(frame: Resp3Frame) -> Option<Vec<Resp3Frame>> {
    match frame {
        Resp3Frame::Array { data, .. } | Resp3Frame::Push { data, .. } => Some(data),
        Resp3Frame::Null => Some(Vec::new()),
        _ => None,
    }
}

/// The bytes of a string frame, moved out without a copy.
fn frame_bytes(frame: Resp3Frame) -> Option<Bytes> {
    match frame {
        Resp3Frame::BlobString { data, .. } | Resp3Frame::SimpleString { data, .. } => Some(data),
        _ => None,
    }
}

/// One `[id, [f1, v1, …]]` (or `[id, nil]`) entry frame: the field values are the reply
/// buffer's own bytes, not copies.
fn frame_entry(command: &'static str, frame: Resp3Frame) -> Result<RawEntry, RedisError> {
    let mut parts = frame_items(frame)
        .ok_or_else(|| protocol(command, "entry is not an array"))?
        .into_iter();
    let id = parts
        .next()
        .and_then(frame_bytes)
        .and_then(|b| StreamId::parse(std::str::from_utf8(&b).ok()?))
        .ok_or_else(|| protocol(command, "entry without a valid ID"))?;
    let fields = match parts.next() {
        None | Some(Resp3Frame::Null) => None,
        Some(list) => {
            let items =
                frame_items(list).ok_or_else(|| protocol(command, "fields are not an array"))?;
            let mut fields = Vec::with_capacity(items.len() / 2);
            let mut iter = items.into_iter();
            while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                let (Some(k), Some(v)) = (frame_bytes(k), frame_bytes(v)) else {
                    return Err(protocol(command, "field is not a string"));
                };
                fields.push((k, v));
            }
            Some(fields)
        }
    };
    Ok(RawEntry { id, fields })
}

/// XREADGROUP's `[[stream, [entries…]], …]` (nil when the block timed out) from the raw
/// reply frame: no intermediate `Value` tree on the consumer's hot path.
pub(crate) fn xread_frame(frame: Resp3Frame) -> Result<Vec<RawEntry>, RedisError> {
    const XREADGROUP: &str = "XREADGROUP";
    let mut out = Vec::new();
    for stream in frame_items(frame).ok_or_else(|| protocol(XREADGROUP, "expected an array"))? {
        let mut parts = frame_items(stream)
            .ok_or_else(|| protocol(XREADGROUP, "stream reply is not an array"))?
            .into_iter();
        let _key = parts.next();
        if let Some(list) = parts.next() {
            let list = frame_items(list)
                .ok_or_else(|| protocol(XREADGROUP, "expected a list of entries"))?;
            out.reserve(list.len());
            for entry in list {
                out.push(frame_entry(XREADGROUP, entry)?);
            }
        }
    }
    Ok(out)
}

/// IDs as one string separated by spaces (a script's compact reply).
pub(crate) fn id_list(command: &'static str, value: &Value) -> Result<Vec<StreamId>, RedisError> {
    let text = bytes(value).ok_or_else(|| protocol(command, "expected IDs as a string"))?;
    let text = std::str::from_utf8(&text).map_err(|_| protocol(command, "IDs not UTF-8"))?;
    text.split_ascii_whitespace()
        .map(|id| {
            StreamId::parse(id).ok_or_else(|| protocol(command, format!("invalid ID `{id}`")))
        })
        .collect()
}

pub(crate) fn ids(command: &'static str, value: Value) -> Result<Vec<StreamId>, RedisError> {
    array(value)
        .ok_or_else(|| protocol(command, "expected a list of IDs"))?
        .iter()
        .map(|v| id(v).ok_or_else(|| protocol(command, "invalid ID")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_id_list_is_parsed_in_order_and_a_bad_one_is_a_protocol_error() {
        let ids = id_list("XADD", &Value::from("1-0 1-1 2-0")).unwrap();
        let want: Vec<StreamId> = ["1-0", "1-1", "2-0"]
            .iter()
            .map(|t| StreamId::parse(t).unwrap())
            .collect();
        assert_eq!(ids, want);
        assert_eq!(id_list("XADD", &Value::from("")).unwrap(), vec![]);
        let bad = id_list("XADD", &Value::from("1-0 nope")).unwrap_err();
        assert!(bad.is(RedisErrorKind::Protocol));
        assert!(bad.to_string().contains("`nope`"), "{bad}");
        let array = Value::Array(vec![Value::from("1-0")]);
        assert!(
            id_list("XADD", &array)
                .unwrap_err()
                .is(RedisErrorKind::Protocol)
        );
    }
}
