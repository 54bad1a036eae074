//! The text at a JSON pointer in `data`, found without building the document: one pass that
//! descends only along the pointer and skips everything else (serde's `IgnoredAny`). A 1 KB
//! envelope costs about what checking its syntax costs, a fraction of a parse into a
//! `serde_json::Value`, so the hot path can afford it per entry (telemetry values, ordering
//! keys); and [`text_at`], the same reading of a parsed document.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::OrderKey;

/// Where a key is in an entry (`[telemetry] key`, an ordered pool's `order_key`): an entry
/// field (`type` and `id` included), or a JSON pointer into `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Field(String),
    Pointer(Pointer),
}

impl Place {
    /// The place `key` names, its pointer split once.
    pub fn new(key: &OrderKey) -> Place {
        match key {
            OrderKey::Field(name) => Place::Field(name.clone()),
            OrderKey::Pointer(p) => Place::Pointer(Pointer::new(p)),
        }
    }
}

/// A JSON pointer split into its unescaped segments (`/a~1b` is the one key `a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// As configured, for a walk over an already parsed document.
    text: String,
    segments: Vec<String>,
}

impl Pointer {
    /// `text`, already validated as a pointer by the config (starts with `/`, no bad `~`).
    pub fn new(text: &str) -> Pointer {
        Pointer {
            text: text.to_string(),
            segments: text
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        }
    }

    /// The value at this pointer in the JSON text `data`: a string as it is, a number as
    /// written (like [`text_at`]); `None` for other types, nothing there,
    /// or `data` that is not JSON.
    pub fn text_in(&self, data: &str) -> Option<String> {
        let found = self.checking(data).ok()??;
        found.text(data).map(str::to_owned)
    }

    /// [`Pointer::text_in`] that tells broken JSON from a value that is not there, and
    /// allocates nothing for a value written as is (a string without escapes, an integer):
    /// that one is found as its place in `data`. The walk reads the whole text, so it is
    /// also the syntax check (with `serde_json`'s own errors, the same as parsing it whole).
    pub fn checking(&self, data: &str) -> Result<Option<Found>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(data);
        let found = Walk(&self.segments).deserialize(&mut de)?;
        de.end()?;
        Ok(found.map(|leaf| match leaf {
            Leaf::Slice(slice) => match offset_in(data, slice) {
                Some(at) => Found::At(at),
                None => Found::Text(slice.to_owned()),
            },
            Leaf::Text(text) => Found::Text(text),
        }))
    }

    /// The value at this pointer in a parsed document, as [`Pointer::text_in`] reads it.
    pub fn text_at(&self, value: &serde_json::Value) -> Option<String> {
        text_at(value, &self.text).map(Cow::into_owned)
    }
}

/// The value at `pointer` in `value` as text: a string as it is, a number as written
/// (`7` and `"7"` are one value). Other JSON types, or nothing there, give `None`.
pub fn text_at<'v>(value: &'v serde_json::Value, pointer: &str) -> Option<Cow<'v, str>> {
    match value.pointer(pointer)? {
        serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
        serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// A value a [`Pointer`] found in a JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Written as is at these bytes of the text (a string's content without escapes, an
    /// integer).
    At(Range<usize>),
    /// Its text (an escaped string unescaped, a number as [`text_at`]
    /// writes it).
    Text(String),
}

impl Found {
    /// The value's text, `data` being the text it was found in.
    pub fn text<'a>(&'a self, data: &'a str) -> Option<&'a str> {
        match self {
            Found::At(at) => data.get(at.clone()),
            Found::Text(text) => Some(text),
        }
    }
}

/// Where `slice`, a piece of `data`, starts and ends in it.
fn offset_in(data: &str, slice: &str) -> Option<Range<usize>> {
    let start = (slice.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let at = start..start + slice.len();
    (data.get(at.clone()) == Some(slice)).then_some(at)
}

/// The leaf's value, borrowed from the text when it can be.
enum Leaf<'de> {
    Slice(&'de str),
    Text(String),
}

/// The value a leaf's raw JSON text stands for: a string's content, a number's text as a
/// parsed `Value` writes it (an integer as written, which is the common case, stays a
/// slice), nothing for other types.
fn leaf(raw: &str) -> Option<Leaf<'_>> {
    let raw = raw.trim();
    match raw.as_bytes().first()? {
        b'"' => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(raw).ok().map(Leaf::Text)
            } else {
                Some(Leaf::Slice(inner))
            }
        }
        b'-' | b'0'..=b'9' => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            // Up to 18 digits fit an i64, written back the same; "-0" is not written back.
            let plain = !digits.is_empty()
                && digits.len() <= 18
                && digits.bytes().all(|b| b.is_ascii_digit());
            if plain && raw != "-0" {
                Some(Leaf::Slice(raw))
            } else {
                let number = serde_json::from_str::<serde_json::Number>(raw).ok()?;
                Some(Leaf::Text(number.to_string()))
            }
        }
        _ => None,
    }
}

/// Descends along the remaining segments.
struct Walk<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Leaf<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Leaf<'de>>, D::Error> {
        if self.0.is_empty() {
            // The leaf: read as its raw text, nothing built.
            let raw = <&'de RawValue>::deserialize(d)?;
            return Ok(leaf(raw.get()));
        }
        d.deserialize_any(self)
    }
}

use serde::Deserialize;

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Leaf<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Leaf<'de>>, A::Error> {
        let (segment, rest) = (&self.0[0], &self.0[1..]);
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(segment))? {
            if hit {
                // The last duplicate wins, as in a parsed `Value`.
                found = map.next_value_seed(Walk(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Leaf<'de>>, A::Error> {
        let index = array_index(&self.0[0]);
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(Walk(&self.0[1..]))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Leaf<'de>>, E> {
        Ok(None)
    }
}

/// An array index segment as RFC 6901 writes it: digits, no leading zero.
fn array_index(segment: &str) -> Option<usize> {
    let digits = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    let canonical = segment == "0" || !segment.starts_with('0');
    (digits && canonical)
        .then(|| segment.parse().ok())
        .flatten()
}

/// Whether an object key equals the segment, compared without allocating.
struct KeyIs<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"{"id":"E1","n":7,"f":1.5,"o":{"a~b":"x","a/b":"y","deep":{"k":"v"}},"list":[1,{"k":"in"}],"t":true,"z":null,"connectorKey":"first","connectorKey":"aws-config","esc":"a\"b\u00e9","nums":[-0,0,-5,1e3,1.50,123456789012345678,1234567890123456789,12345678901234567890,-9223372036854775808,0.1e-2, 7 ],"u":"\u0041"}"#;

    #[test]
    fn agrees_with_a_parsed_value_on_every_pointer() {
        let value: serde_json::Value = serde_json::from_str(DATA).unwrap();
        for pointer in [
            "/id",
            "/n",
            "/f",
            "/o/a~0b",
            "/o/a~1b",
            "/o/deep/k",
            "/o/deep",
            "/list/0",
            "/list/1/k",
            "/list/2",
            "/list/01",
            "/list/x",
            "/t",
            "/z",
            "/missing",
            "/id/deeper",
            "/connectorKey",
            "/esc",
            "/nums/0",
            "/nums/1",
            "/nums/2",
            "/nums/3",
            "/nums/4",
            "/nums/5",
            "/nums/6",
            "/nums/7",
            "/nums/8",
            "/nums/9",
            "/nums/10",
            "/u",
        ] {
            let expected = text_at(&value, pointer).map(|c| c.into_owned());
            assert_eq!(Pointer::new(pointer).text_in(DATA), expected, "{pointer}");
        }
        assert_eq!(
            Pointer::new("/connectorKey").text_in(DATA).as_deref(),
            Some("aws-config")
        );
        assert_eq!(Pointer::new("/esc").text_in(DATA).as_deref(), Some("a\"bé"));
    }

    #[test]
    fn broken_json_has_no_value() {
        let p = Pointer::new("/id");
        assert_eq!(p.text_in(r#"{"id":"E1""#), None);
        assert_eq!(p.text_in(r#"{"id":"E1"} trailing"#), None);
        assert_eq!(p.text_in("not json"), None);
        assert_eq!(p.text_in(r#"["E1"]"#), None);
    }

    #[test]
    fn the_walk_is_a_syntax_check_with_serde_json_errors() {
        let p = Pointer::new("/a/0");
        for broken in [
            r#"{"a":[1,2"#,
            r#"{"a":[1] "b":2}"#,
            r#"{"x":{"y":tru}}"#,
            r#"{"a":["\q"]}"#,
            "{} {}",
            "",
        ] {
            let whole = serde_json::from_str::<serde::de::IgnoredAny>(broken).unwrap_err();
            let walked = p.checking(broken).unwrap_err();
            assert_eq!(walked.to_string(), whole.to_string(), "{broken}");
        }
        let data = r#"{"a":["v",{"x":[]}]}"#;
        let found = p.checking(data).unwrap().expect("found");
        assert_eq!(found, Found::At(7..8), "written as is: no copy");
        assert_eq!(found.text(data), Some("v"));
        let escaped = r#"{"a":["\u0076"]}"#;
        assert_eq!(p.checking(escaped).unwrap(), Some(Found::Text("v".into())));
        assert_eq!(p.checking(r#"{"b":1}"#).unwrap(), None);
        let value = serde_json::json!({"a": [12]});
        assert_eq!(p.text_at(&value).as_deref(), Some("12"));
    }
}
