//! Phase-one errors (wrong types, unknown or missing keys, TOML syntax) turned into keyed,
//! human messages. The `config` crate's own rendering joins array indices and keys without
//! a dot (`pools[0]concurrency`) and quotes keys in Rust debug form; this does neither.

use std::path::Path;

use crate::error::ConfigError;

/// `e`, read from `origin`, as a [`ConfigError`]: [`ConfigError::Invalid`] when it is about
/// one key, else [`ConfigError::Parse`]. `overrides` are the environment variables in effect.
pub(super) fn convert(e: config::ConfigError, origin: &Path, overrides: &[String]) -> ConfigError {
    let note = if overrides.is_empty() {
        String::new()
    } else {
        format!(
            " (environment overrides in effect: {})",
            overrides.join(", ")
        )
    };
    match keyed(&e) {
        Some((key, problem)) => ConfigError::Invalid {
            key,
            problem: format!("{problem}{note}"),
        },
        None => ConfigError::Parse {
            path: origin.to_path_buf(),
            message: format!("{}{note}", unkeyed(e)),
        },
    }
}

/// The key path and the problem, when the error names a key.
fn keyed(e: &config::ConfigError) -> Option<(String, String)> {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key: Some(key),
            ..
        } => Some((
            human_path(key),
            format!("expected {}, found {unexpected}", human_type(expected)),
        )),
        config::ConfigError::NotFound(key) => Some((human_path(key), "is required".into())),
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => Some(match keyed(error) {
            Some((inner, problem)) => (join(&human_path(key), &inner), problem),
            None => within(&human_path(key), &unkeyed_ref(error)),
        }),
        config::ConfigError::Message(message) => {
            let (key, problem) = within("", message);
            (!key.is_empty()).then_some((key, problem))
        }
        _ => None,
    }
}

/// A message found under `key`: an unknown field is named as a key of its own.
fn within(key: &str, message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, tail)) = rest.split_once('`')
    {
        let tail = tail.trim_start_matches(", ");
        let problem = match tail {
            "" => "is not a known key".to_string(),
            _ => format!("is not a known key; {tail}"),
        };
        return (join(key, field), problem);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return (
            key.to_string(),
            format!("expected {}, found {found}", human_type(expected)),
        );
    }
    (key.to_string(), message.to_string())
}

/// `parent.child`, or `parent[0]` for an index.
fn join(parent: &str, child: &str) -> String {
    match (
        parent.is_empty(),
        child.starts_with('[') || child.is_empty(),
    ) {
        (true, _) => child.to_string(),
        (false, true) => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// `pools[0]concurrency` → `pools[0].concurrency`.
fn human_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut after_index = false;
    for c in key.chars() {
        if after_index && c != '[' && c != '.' {
            out.push('.');
        }
        after_index = c == ']';
        out.push(c);
    }
    out
}

/// Serde's name for what it wanted, in words.
fn human_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" | "an integer" => "a whole number".into(),
        "an unsigned 64 bit or less integer" => "a whole number, 0 or more".into(),
        "f32" | "f64" | "a float" | "a floating point" => "a number".into(),
        "bool" | "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table".into(),
        other if other.starts_with("internally tagged enum") => {
            "a table like { kind = \"http\", url = \"…\" }".into()
        }
        other => other.into(),
    }
}

fn unkeyed(e: config::ConfigError) -> String {
    unkeyed_ref(&e)
}

/// The message without the `config` crate's debug-quoted key decorations.
fn unkeyed_ref(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::FileParse { cause, .. } => cause.to_string(),
        config::ConfigError::At { error, .. } => unkeyed_ref(error),
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {}, found {unexpected}", human_type(expected)),
        other => other.to_string(),
    }
}
