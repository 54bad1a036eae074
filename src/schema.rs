//! JSON Schema validation of `data`, compiled once at start: `envelope.schema.json` for every
//! type, `<type>.schema.json` for one type. JSON parsing lives behind [`parse_json`] so the
//! parser can change in one place.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use jsonschema::Validator;

use crate::error::ConfigError;

/// Why `data` was refused, precise enough to fix the publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// JSON pointer into `data` ("" for the document itself).
    pub pointer: String,
    /// The schema keyword that failed (`required`, `type`…), or `json` for a parse error.
    pub rule: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "at {pointer}: {} ({})", self.message, self.rule)
    }
}

/// Parses `data` as JSON.
pub fn parse_json(data: &str) -> Result<serde_json::Value, Invalid> {
    serde_json::from_str(data).map_err(|e| json_error(&e))
}

/// The violation `data` that is not JSON at all is reported as.
pub(crate) fn json_error(e: &serde_json::Error) -> Invalid {
    Invalid {
        pointer: String::new(),
        rule: "json".into(),
        message: format!("not valid JSON: {e}"),
    }
}

struct Compiled {
    file: PathBuf,
    validator: Validator,
}

/// Every schema of the configured folder, compiled.
#[derive(Default)]
pub struct Schemas {
    envelope: Option<Compiled>,
    by_type: HashMap<String, Compiled>,
}

const ENVELOPE_FILE: &str = "envelope.schema.json";
const SUFFIX: &str = ".schema.json";

fn compile(path: &Path) -> Result<Compiled, ConfigError> {
    let err = |message: String| ConfigError::Schema {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .map_err(|e| err(format!("not a valid JSON Schema: {e}")))?;
    Ok(Compiled {
        file: path.to_path_buf(),
        validator,
    })
}

impl Schemas {
    /// Compiles every `*.schema.json` in `dir`; `None` means no schemas (JSON is still checked).
    pub fn load(dir: Option<&Path>) -> Result<Schemas, ConfigError> {
        let mut schemas = Schemas::default();
        let Some(dir) = dir else { return Ok(schemas) };
        let listing = std::fs::read_dir(dir).map_err(|e| ConfigError::Schema {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        for item in listing.flatten() {
            let path = item.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name == ENVELOPE_FILE {
                schemas.envelope = Some(compile(&path)?);
            } else if let Some(ty) = name.strip_suffix(SUFFIX) {
                schemas.by_type.insert(ty.to_string(), compile(&path)?);
            }
        }
        Ok(schemas)
    }

    /// The schema files that apply to `event_type`, for messages.
    pub fn files_for(&self, event_type: &str) -> Vec<&Path> {
        self.envelope
            .iter()
            .chain(self.by_type.get(event_type))
            .map(|c| c.file.as_path())
            .collect()
    }

    /// Whether any schema applies to `event_type` (the envelope schema, or the type's own).
    pub fn applies(&self, event_type: &str) -> bool {
        self.envelope.is_some() || self.by_type.contains_key(event_type)
    }

    /// Parses and validates `data` for `event_type`; the first violation wins.
    pub fn check(&self, event_type: &str, data: &str) -> Result<(), Invalid> {
        self.check_keeping(event_type, data, false).map(|_| ())
    }

    /// [`Schemas::check`], returning the parsed body when a schema applied or `keep` asks
    /// for it, so callers that read values out of the body (alignment, the event id) parse
    /// it once. Without a schema and without `keep`, only the syntax is checked and no
    /// document is built.
    pub fn check_keeping(
        &self,
        event_type: &str,
        data: &str,
        keep: bool,
    ) -> Result<Option<serde_json::Value>, Invalid> {
        let mut applicable = self
            .envelope
            .iter()
            .chain(self.by_type.get(event_type))
            .peekable();
        if applicable.peek().is_none() && !keep {
            return serde_json::from_str::<serde::de::IgnoredAny>(data)
                .map(|_| None)
                .map_err(|e| json_error(&e));
        }
        let value = parse_json(data)?;
        if applicable.all(|c| c.validator.is_valid(&value)) {
            return Ok(Some(value));
        }
        match self.errors(event_type, &value).into_iter().next() {
            Some(first) => Err(first),
            None => Ok(Some(value)),
        }
    }

    /// Every violation of every schema that applies, in schema order.
    pub fn errors(&self, event_type: &str, value: &serde_json::Value) -> Vec<Invalid> {
        self.envelope
            .iter()
            .chain(self.by_type.get(event_type))
            .flat_map(|c| c.validator.iter_errors(value))
            .map(|e| Invalid {
                pointer: e.instance_path().to_string(),
                rule: e.kind().keyword().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}
