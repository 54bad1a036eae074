//! Field/body alignment (`[schemas] align`, contract §12): entry fields that repeat a value
//! of the body, such as the Integration Bus headers (`x-phpgrc-kind` beside `/kind`), must
//! agree with it. A field that is present must equal the body's value at its pointer, compared
//! as text (a string as it is, a number as written, like `--where`); an absent field is not
//! checked. Pure: the engine dead-letters a mismatch `invalid`, `weir publish` and
//! `weir validate` refuse it.

use std::borrow::Cow;

use crate::envelope::text_at;
use crate::schema::Invalid;

/// The `rule` of an [`Invalid`] that reports a mismatch, beside the JSON Schema keywords.
pub const RULE: &str = "align";

/// The configured pairs: entry field → JSON pointer into `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alignment {
    pairs: Vec<(String, String)>,
}

impl Alignment {
    /// From the config's `(field, pointer)` pairs (pointers already checked).
    pub fn new(pairs: &[(String, String)]) -> Alignment {
        Alignment {
            pairs: pairs.to_vec(),
        }
    }

    /// Whether the body is needed at all: some aligned field is present. `field` looks a
    /// field up by name (`type` included).
    pub fn applies<'a>(&self, field: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.pairs.iter().any(|(name, _)| field(name).is_some())
    }

    /// Every present field that disagrees with `body`, in config order; each names the field,
    /// the pointer and both values.
    pub fn check<'a>(
        &self,
        field: impl Fn(&str) -> Option<&'a str>,
        body: &serde_json::Value,
    ) -> Vec<Invalid> {
        self.pairs
            .iter()
            .filter_map(|(name, pointer)| {
                let value = field(name)?;
                mismatch(name, value, pointer, body)
            })
            .collect()
    }
}

fn mismatch(name: &str, value: &str, pointer: &str, body: &serde_json::Value) -> Option<Invalid> {
    let found: Result<Cow<'_, str>, &str> = match body.pointer(pointer) {
        None => Err("has nothing there"),
        Some(_) => text_at(body, pointer).ok_or("holds no string or number there"),
    };
    let problem = match found {
        Ok(text) if text == value => return None,
        Ok(text) => format!("but data at {pointer} is {text:?}"),
        Err(why) => format!("but data {why}"),
    };
    Some(Invalid {
        pointer: pointer.to_string(),
        rule: RULE.into(),
        message: format!("field `{name}` is {value:?} {problem}; publish both with the same value"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Alignment {
        Alignment::new(&[
            ("type".into(), "/kind".into()),
            ("x-kind".into(), "/kind".into()),
            ("x-n".into(), "/n".into()),
        ])
    }

    fn lookup<'a>(fields: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn present_fields_must_equal_the_body_as_text() {
        let body = serde_json::json!({"kind": "a.b", "n": 7});
        let ok = [("type", "a.b"), ("x-kind", "a.b"), ("x-n", "7")];
        assert!(kinds().check(lookup(&ok), &body).is_empty());
        assert!(
            kinds().check(lookup(&[]), &body).is_empty(),
            "absent: unchecked"
        );
        let bad = kinds().check(lookup(&[("type", "a.b"), ("x-kind", "c.d")]), &body);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].pointer, "/kind");
        assert_eq!(bad[0].rule, "align");
        let text = bad[0].to_string();
        for part in ["`x-kind`", "\"c.d\"", "/kind", "\"a.b\""] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }

    #[test]
    fn a_missing_or_non_text_body_value_is_a_mismatch_that_says_so() {
        let fields = [("x-kind", "a.b"), ("x-n", "7")];
        let bad = kinds().check(lookup(&fields), &serde_json::json!({"n": [7]}));
        assert_eq!(bad.len(), 2);
        assert!(
            bad[0].message.contains("data has nothing there"),
            "{}",
            bad[0]
        );
        assert!(bad[1].message.contains("no string or number"), "{}", bad[1]);
        assert!(kinds().applies(lookup(&fields)));
        assert!(!kinds().applies(lookup(&[("other", "x")])));
    }
}
