//! The text at a JSON pointer in `data`, found without building the document: one pass that
//! descends only along the pointer and skips everything else (serde's `IgnoredAny`). A 1 KB
//! envelope costs about what checking its syntax costs, a fraction of a parse into a
//! `serde_json::Value`, so the hot path can afford it per entry.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON pointer split into its unescaped segments (`/a~1b` is the one key `a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    segments: Vec<String>,
}

impl Pointer {
    /// `text`, already validated as a pointer by the config (starts with `/`, no bad `~`).
    pub fn new(text: &str) -> Pointer {
        Pointer {
            segments: text
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        }
    }

    /// The value at this pointer in the JSON text `data`: a string as it is, a number as
    /// written (like [`crate::envelope::text_at`]); `None` for other types, nothing there,
    /// or `data` that is not JSON.
    pub fn text_in(&self, data: &str) -> Option<String> {
        let mut de = serde_json::Deserializer::from_str(data);
        let found = Walk(&self.segments).deserialize(&mut de).ok()?;
        de.end().ok()?;
        found
    }
}

/// Descends along the remaining segments.
struct Walk<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        if self.0.is_empty() {
            // The leaf: only this subtree is built.
            return Ok(match serde_json::Value::deserialize(d)? {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        }
        d.deserialize_any(self)
    }
}

use serde::Deserialize;

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
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

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
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
    use crate::envelope::text_at;

    const DATA: &str = r#"{"id":"E1","n":7,"f":1.5,"o":{"a~b":"x","a/b":"y","deep":{"k":"v"}},"list":[1,{"k":"in"}],"t":true,"z":null,"connectorKey":"first","connectorKey":"aws-config","esc":"a\"b\u00e9"}"#;

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
}
