//! Which pool is responsible for an entry, and whether it can be handled at all. Pure
//! decisions, no I/O: the consumer asks, `settle` carries out the answer.

use std::collections::HashMap;
use std::sync::Arc;

use crate::align::Alignment;
use crate::config::Config;
use crate::envelope::{self, Event};
use crate::pointer::{Found, Place};
use crate::schema::{self, Schemas};
use crate::vocab::{DlqReason, REPLAY_GROUP, RawEntry};

#[derive(Debug)]
pub enum Decision {
    /// Give it to the pool's handler.
    Handle(Event),
    /// Not this pool's entry: acknowledge without a handler call.
    Skip,
    /// This pool is responsible and the entry can never be handled.
    DeadLetter { reason: DlqReason, error: String },
}

/// Which pools take which types, from the config's `types` lists. The engine routes with it
/// and `weir publish` asks it before writing an event no pool would take.
pub struct Routes {
    /// Type → indexes of the pools that list it.
    explicit: HashMap<String, Vec<usize>>,
    /// The pool that lists `"*"`.
    wildcard: Option<usize>,
}

impl Routes {
    pub fn new(config: &Config) -> Routes {
        let mut explicit: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard = None;
        for (i, pool) in config.pools.iter().enumerate() {
            for ty in &pool.types {
                if ty == "*" {
                    wildcard = Some(i);
                } else {
                    explicit.entry(ty.clone()).or_default().push(i);
                }
            }
        }
        Routes { explicit, wildcard }
    }

    /// Whether pool `pool` takes `event_type`.
    pub fn takes(&self, pool: usize, event_type: &str) -> bool {
        match self.explicit.get(event_type) {
            Some(pools) => pools.contains(&pool),
            None => self.wildcard == Some(pool),
        }
    }

    /// Whether some pool takes `event_type` (always, with a `"*"` pool).
    pub fn routed(&self, event_type: &str) -> bool {
        self.explicit.contains_key(event_type) || self.wildcard.is_some()
    }

    /// The types pools list by name, sorted (`"*"` last when a pool takes everything).
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.explicit.keys().cloned().collect();
        types.sort();
        if self.wildcard.is_some() {
            types.push("*".into());
        }
        types
    }
}

/// Routing table built once from the config.
pub struct Router {
    pools: Vec<String>,
    routes: Routes,
    max_entry_bytes: usize,
    schemas: Arc<Schemas>,
    /// `[stream] event_id`: where the body carries the event id.
    event_id: Option<String>,
    /// `[schemas] align`: fields that must agree with the body.
    align: Alignment,
    /// `[telemetry] key`: where the value telemetry counts under is.
    telemetry: Option<Place>,
}

impl Router {
    pub fn new(config: &Config, schemas: Arc<Schemas>) -> Router {
        Router {
            pools: config.pools.iter().map(|p| p.name.clone()).collect(),
            routes: Routes::new(config),
            max_entry_bytes: config.stream.max_entry_bytes,
            schemas,
            event_id: config.stream.event_id.clone(),
            align: Alignment::new(&config.align),
            telemetry: config.telemetry.key.as_ref().map(Place::new),
        }
    }

    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p == name)
    }

    /// Whether pool `pool` takes `event_type`.
    pub fn takes(&self, pool: usize, event_type: &str) -> bool {
        self.routes.takes(pool, event_type)
    }

    fn routed(&self, event_type: &str) -> bool {
        self.routes.routed(event_type)
    }

    /// Whether `pool` must act on the entry. Entries no pool can route are the first pool's
    /// job, so they are dead-lettered exactly once.
    fn responsible(&self, pool: usize, entry: &RawEntry, event_type: Option<&str>) -> bool {
        let replay_pool = entry
            .field(REPLAY_GROUP)
            .and_then(|g| std::str::from_utf8(g).ok())
            .and_then(|g| self.pool_index(g));
        match (replay_pool, event_type) {
            (Some(target), _) => target == pool,
            (None, Some(ty)) if self.routed(ty) => self.takes(pool, ty),
            _ => pool == 0,
        }
    }

    pub fn decide(&self, pool: usize, entry: &RawEntry) -> Decision {
        let event_type = envelope::event_type(entry);
        if !self.responsible(pool, entry, event_type.as_deref()) {
            return Decision::Skip;
        }
        let size = entry.size();
        if size > self.max_entry_bytes {
            return Decision::DeadLetter {
                reason: DlqReason::TooLarge,
                error: format!(
                    "entry is {size} bytes, above stream.max_entry_bytes = {}",
                    self.max_entry_bytes
                ),
            };
        }
        let mut event = match envelope::decode(entry) {
            Ok(event) => event,
            Err(m) => {
                return Decision::DeadLetter {
                    reason: DlqReason::Malformed,
                    error: m.error,
                };
            }
        };
        if !self.takes(pool, &event.event_type) {
            return Decision::DeadLetter {
                reason: DlqReason::Unrouted,
                error: format!("no pool takes type `{}`", event.event_type),
            };
        }
        let wants_id = event.event_id.is_none() && self.event_id.is_some();
        if let Err((reason, error)) = self.check_body(&mut event, wants_id) {
            return Decision::DeadLetter { reason, error };
        }
        Decision::Handle(event)
    }

    /// Validates `data` (schemas, then alignment) and fills in the event id and the
    /// telemetry value from it, reading the body once: parsed when a schema, an aligned field
    /// or the event id needs it, else one pass that checks the syntax and walks to the
    /// telemetry pointer on the way.
    fn check_body(&self, event: &mut Event, wants_id: bool) -> Result<(), (DlqReason, String)> {
        let invalid = |invalid: schema::Invalid| (DlqReason::Invalid, invalid.to_string());
        let aligned = self.align.applies(|name| field_of(event, name));
        let walk = match &self.telemetry {
            Some(Place::Pointer(pointer)) => Some(pointer),
            _ => None,
        };
        let keep = aligned || wants_id;
        let body = match walk {
            Some(pointer) if !keep && !self.schemas.applies(&event.event_type) => {
                event.telemetry = pointer
                    .checking(&event.data)
                    .map_err(|e| invalid(schema::json_error(&e)))?;
                None
            }
            _ => self
                .schemas
                .check_keeping(&event.event_type, &event.data, keep || walk.is_some())
                .map_err(invalid)?,
        };
        if let Some(body) = &body {
            if aligned {
                let mismatches = self.align.check(|name| field_of(event, name), body);
                if !mismatches.is_empty() {
                    let list: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
                    return Err((DlqReason::Invalid, list.join("; ")));
                }
            }
            if wants_id && let Some(pointer) = &self.event_id {
                event.event_id = envelope::text_at(body, pointer).map(|t| t.into_owned());
            }
            if let Some(pointer) = walk {
                event.telemetry = pointer.text_at(body).map(Found::Text);
            }
        }
        // After the event id: a key of `id` counts under the id found in the body too.
        if let Some(Place::Field(name)) = &self.telemetry {
            event.telemetry = field_of(event, name).map(|v| Found::Text(v.to_owned()));
        }
        Ok(())
    }
}

/// An entry field of `event` by name, `type` and `id` included.
fn field_of<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    match name {
        envelope::TYPE => Some(&event.event_type),
        envelope::EVENT_ID => event.event_id.as_deref(),
        _ => event
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str()),
    }
}
