//! Reading query strings and JSON bodies so that every mistake is a 400 naming the parameter
//! or field at fault (serde alone says "invalid type" without saying where).

use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::dlq::Cursor;

/// Default and largest page size of the listings.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// A query string as pairs: a parameter may repeat (`type=a&type=b`).
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The pairs, or a 400 for a malformed query; names outside `known` are a 400 too.
    pub fn read(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(pairs) = query.map_err(|e| ApiError::input("query", e.body_text()))?;
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(ApiError::input(
                name.clone(),
                format!("unknown parameter `{name}` (known: {})", known.join(", ")),
            ));
        }
        Ok(Params(pairs))
    }

    /// Every value of `name`, repeated or comma separated; empty ones dropped.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    }

    /// Every non-empty value of a repeated `name`, as given (no comma splitting: a `where`
    /// condition's value may hold commas).
    pub fn repeated(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The last non-empty value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent. Unlike a filter, an empty
    /// `limit=` is no number (so a 400), as the OpenAPI document's `integer` says.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let given = self.0.iter().rev().find(|(k, _)| k == "limit");
        let Some(text) = given.map(|(_, v)| v.as_str()) else {
            return Ok(DEFAULT_LIMIT);
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::input(
                "limit",
                format!("limit must be a whole number from 1 to {MAX_LIMIT}, not `{text}`"),
            )),
        }
    }

    /// `cursor`: the `next` of a previous page.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.one("cursor")
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    ApiError::input("cursor", "not a cursor this API returned as `next`")
                })
            })
            .transpose()
    }
}

/// A JSON object body as `T` (every field of `T` optional). An empty body is `{}`. Errors:
/// 413 past the size cap, 400 naming the field at fault otherwise.
pub fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = bytes.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the body is larger than {} bytes", super::MAX_BODY),
                field: Some("body".into()),
                candidates: None,
            }
        } else {
            ApiError::input("body", e.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_str("{}").map_err(|e| ApiError::input("body", e.to_string()));
    }
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::input("body", format!("not JSON: {e}")))?;
    whole_numbers(&mut value);
    let Some(object) = value.as_object() else {
        return Err(ApiError::input("body", "the body must be a JSON object"));
    };
    serde_json::from_value(value.clone()).map_err(|e| {
        // Find the field: the first one that fails on its own.
        let field = object
            .iter()
            .find(|(k, v)| {
                let alone = serde_json::json!({ k.as_str(): v });
                serde_json::from_value::<T>(alone).is_err()
            })
            .map_or_else(|| "body".to_string(), |(k, _)| k.clone());
        ApiError::input(field, e.to_string())
    })
}

/// A whole number written with a fraction (`157.0`) becomes that integer, as JSON (and JSON
/// Schema's `integer`) reads it; serde would refuse it for an integer field.
fn whole_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && (0.0..=u64::MAX as f64).contains(&f)
                && let Ok(whole) = format!("{f:.0}").parse::<u64>()
            {
                *value = whole.into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}
