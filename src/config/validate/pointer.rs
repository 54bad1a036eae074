//! The JSON pointers and field names the config points into entries with: `[stream]
//! event_id`, `order_key`, `[telemetry] key`, `[schemas] align`.

use super::invalid;
use crate::config::model::OrderKey;
use crate::error::ConfigError;

/// `[stream] event_id`: a JSON pointer (the `id` field itself needs no setting).
pub(super) fn event_id_pointer(key: &str, value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') {
        return Err(invalid(
            key,
            format!("`{value}` is not a JSON pointer into data: write it like \"/id\""),
        ));
    }
    json_pointer(key, value)
}

/// An `order_key` value: a JSON pointer (`/a/b`, with `~0`/`~1` escapes) or a field name.
pub(super) fn order_key(key: &str, value: &str) -> Result<OrderKey, ConfigError> {
    if value.is_empty() {
        return Err(invalid(
            key,
            "is empty: name an entry field (\"key\") or a JSON pointer into data (\"/payload/incidentId\")",
        ));
    }
    if !value.starts_with('/') {
        return Ok(OrderKey::Field(value.to_string()));
    }
    json_pointer(key, value).map(OrderKey::Pointer)
}

/// `value`, which starts with `/`, checked to be a JSON pointer (`~0`/`~1` escapes, no
/// empty segment).
pub(super) fn json_pointer(key: &str, value: &str) -> Result<String, ConfigError> {
    let bad_escape = value
        .split('~')
        .skip(1)
        .any(|rest| !rest.starts_with('0') && !rest.starts_with('1'));
    if bad_escape {
        return Err(invalid(
            key,
            format!(
                "`{value}` is not a valid JSON pointer: `~` must be followed by 0 (for ~) or 1 (for /)"
            ),
        ));
    }
    if value.split('/').skip(1).any(str::is_empty) {
        return Err(invalid(
            key,
            format!(
                "`{value}` is not a valid JSON pointer: it has an empty segment (`//` or a trailing `/`)"
            ),
        ));
    }
    Ok(value.to_string())
}
