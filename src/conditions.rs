//! `--where` conditions of replay and the DLQ commands: `FIELD=VALUE` compares an entry field,
//! `/pointer=VALUE` the value at a JSON pointer in `data` (a string as it is, a number as
//! written). Every condition must hold, so a replay can stay inside one tenant.

use std::borrow::Cow;

use crate::envelope::{self, DATA};
use crate::error::InputError;
use crate::vocab::RawEntry;

/// Where a condition looks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// An entry field (`tenant`, `type`…).
    Field(String),
    /// A JSON pointer into `data` (`/tenantId`).
    Pointer(String),
}

/// One `FIELD=VALUE` or `/pointer=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    target: Target,
    value: String,
}

/// Every `--where` of a command; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions(Vec<Condition>);

impl Conditions {
    /// Parses each `FIELD=VALUE` / `/pointer=VALUE` (split at the first `=`).
    pub fn parse(texts: &[String]) -> Result<Conditions, InputError> {
        texts
            .iter()
            .map(|t| parse_one(t))
            .collect::<Result<_, _>>()
            .map(Conditions)
    }

    /// True when no condition was given (everything matches).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The conditions as they were written, for a job hash or a report.
    pub fn texts(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|c| match &c.target {
                Target::Field(f) | Target::Pointer(f) => format!("{f}={}", c.value),
            })
            .collect()
    }

    /// Whether every condition holds for `entry`. `data` is parsed once, and only when a
    /// pointer condition needs it; a body that is not JSON matches no pointer.
    pub fn matches(&self, entry: &RawEntry) -> bool {
        let mut body: Option<Option<serde_json::Value>> = None;
        self.0.iter().all(|c| match &c.target {
            Target::Field(name) => entry
                .field(name)
                .is_some_and(|v| v.as_ref() == c.value.as_bytes()),
            Target::Pointer(pointer) => body
                .get_or_insert_with(|| {
                    entry
                        .field(DATA)
                        .and_then(|d| serde_json::from_slice(d).ok())
                })
                .as_ref()
                .and_then(|v| envelope::text_at(v, pointer))
                .is_some_and(|found: Cow<'_, str>| found == c.value),
        })
    }
}

fn parse_one(text: &str) -> Result<Condition, InputError> {
    let bad = |why: &str| {
        InputError::new(
            "where",
            format!("--where `{text}` {why}: write FIELD=VALUE or /json/pointer=VALUE"),
        )
    };
    let (target, value) = text.split_once('=').ok_or_else(|| bad("has no `=`"))?;
    if target.is_empty() || target == "/" {
        return Err(bad("names no field"));
    }
    let target = if target.starts_with('/') {
        if target.split('/').skip(1).any(str::is_empty) {
            return Err(bad("has an empty pointer segment"));
        }
        Target::Pointer(target.to_string())
    } else {
        Target::Field(target.to_string())
    };
    Ok(Condition {
        target,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> RawEntry {
        RawEntry::of_texts(fields)
    }

    fn when(texts: &[&str]) -> Conditions {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        Conditions::parse(&texts).unwrap()
    }

    #[test]
    fn fields_and_pointers_must_all_match() {
        let e = entry(&[
            ("type", "a"),
            ("tenant", "t1"),
            ("data", r#"{"tenantId":"t1","n":7,"x":{"y":"a=b"}}"#),
        ]);
        assert!(when(&[]).matches(&e));
        assert!(when(&["tenant=t1"]).matches(&e));
        assert!(when(&["/tenantId=t1", "/n=7", "/x/y=a=b"]).matches(&e));
        assert!(!when(&["tenant=t1", "/tenantId=t2"]).matches(&e));
        assert!(!when(&["missing=t1"]).matches(&e));
        assert!(!when(&["/x=t1"]).matches(&e), "an object is no value");
        assert!(!when(&["/n=7"]).matches(&entry(&[("data", "not json")])));
    }

    #[test]
    fn bad_conditions_name_the_flag() {
        for bad in ["tenant", "=x", "/=x", "/a//b=x"] {
            let err = Conditions::parse(&[bad.to_string()]).unwrap_err();
            assert_eq!(err.field, "where", "{bad}");
        }
        assert_eq!(when(&["/a=b", "t="]).texts(), ["/a=b", "t="]);
    }
}
