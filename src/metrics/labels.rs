//! The `type` label, bounded (contract §7): the one rule behind every metric that names an
//! event type (processed, failed, dead-lettered, handler duration, published) and the
//! telemetry hashes' `kind:<type>` fields, so a publisher cannot grow `/metrics`, the
//! telemetry hashes or the engine's memory by inventing types.
//!
//! - a type some pool lists by name is its own label (the config bounds those);
//! - in a scope that takes every type (a `"*"` pool; for the publisher and telemetry: an
//!   engine with a `"*"` pool) the first [`MAX_WILDCARD_TYPES`] other distinct types are their
//!   own label, later ones are [`OTHER`];
//! - a type no pool takes is [`UNROUTED`];
//! - an entry without a readable type (no `type` field, an empty one, or not UTF-8) is
//!   [`MISSING`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::config::{Config, PoolConfig};
use crate::sync::lock;

/// The label of a type that no pool takes.
pub const UNROUTED: &str = "(unrouted)";
/// The label of the types a wildcard scope sees after its first [`MAX_WILDCARD_TYPES`].
pub const OTHER: &str = "(other)";
/// The label of an entry without a readable type.
pub const MISSING: &str = "(missing)";
/// Distinct unlisted types a wildcard scope labels as themselves.
pub const MAX_WILDCARD_TYPES: usize = 100;

/// Which label a type gets in one scope (a pool, or the whole engine), built from the config.
#[derive(Debug)]
pub struct TypeLabels {
    /// Types some pool lists by name.
    listed: HashSet<Box<str>>,
    /// Whether this scope takes every type (`"*"`).
    wildcard: bool,
    /// The unlisted types labelled as themselves so far, at most [`MAX_WILDCARD_TYPES`]: once
    /// full, it never changes again.
    admitted: Mutex<HashSet<Box<str>>>,
}

impl TypeLabels {
    fn new(config: &Config, wildcard: bool) -> TypeLabels {
        let listed = config
            .pools
            .iter()
            .flat_map(|p| &p.types)
            .filter(|ty| *ty != "*")
            .map(|ty| ty.as_str().into())
            .collect();
        TypeLabels {
            listed,
            wildcard,
            admitted: Mutex::default(),
        }
    }

    /// The labels of `pool`'s metrics: a `"*"` pool admits unlisted types.
    pub fn for_pool(config: &Config, pool: &PoolConfig) -> TypeLabels {
        TypeLabels::new(config, takes_all(pool))
    }

    /// The labels of engine-wide metrics (published) and telemetry: unlisted types are
    /// admitted when some pool takes every type.
    pub fn for_engine(config: &Config) -> TypeLabels {
        TypeLabels::new(config, config.pools.iter().any(takes_all))
    }

    /// The label of `ty`: `ty` itself, or one of [`UNROUTED`], [`OTHER`], [`MISSING`]. No
    /// allocation except the first time a wildcard scope admits a type.
    pub fn label<'a>(&self, ty: &'a str) -> &'a str {
        self.bucket(ty).unwrap_or(ty)
    }

    /// The fixed label `ty` counts under, or `None` when `ty` is its own label.
    pub fn bucket(&self, ty: &str) -> Option<&'static str> {
        if ty.is_empty() {
            return Some(MISSING);
        }
        if self.listed.contains(ty) {
            return None;
        }
        if !self.wildcard {
            return Some(UNROUTED);
        }
        let mut admitted = lock(&self.admitted);
        if admitted.contains(ty) {
            None
        } else if admitted.len() < MAX_WILDCARD_TYPES {
            admitted.insert(ty.into());
            None
        } else {
            Some(OTHER)
        }
    }
}

fn takes_all(pool: &PoolConfig) -> bool {
    pool.types.iter().any(|ty| ty == "*")
}

/// Something resolved once per label (a set of metric handles), looked up by raw type: a known
/// type costs one map lookup and no allocation; the map holds at most one entry per label.
pub(crate) struct ByLabel<T> {
    labels: Arc<TypeLabels>,
    pub(super) handles: Mutex<HashMap<Box<str>, Arc<T>>>,
}

impl<T> ByLabel<T> {
    pub(crate) fn new(labels: Arc<TypeLabels>) -> ByLabel<T> {
        ByLabel {
            labels,
            handles: Mutex::default(),
        }
    }

    /// What `ty`'s label resolves to, made by `make(label)` the first time.
    pub(crate) fn get(&self, ty: &str, make: impl FnOnce(&str) -> T) -> Arc<T> {
        let mut handles = lock(&self.handles);
        // Keys are labels: a type found here is its own label.
        if let Some(h) = handles.get(ty) {
            return h.clone();
        }
        let label = self.labels.label(ty);
        if let Some(h) = handles.get(label) {
            return h.clone();
        }
        let made = Arc::new(make(label));
        handles.insert(label.into(), made.clone());
        made
    }

    pub(crate) fn labels(&self) -> &TypeLabels {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pools: &[&[&str]]) -> Config {
        let mut text = String::new();
        for (i, types) in pools.iter().enumerate() {
            let types: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
            text += &format!(
                "[[pools]]\nname = \"p{i}\"\ntypes = [{}]\nhandler = {{ kind = \"log\" }}\n",
                types.join(", ")
            );
        }
        Config::from_toml(&text, std::path::Path::new(".")).expect("test config")
    }

    #[test]
    fn listed_types_pass_unrouted_and_missing_are_fixed() {
        let config = config(&[&["a", "b"], &["c"]]);
        let first = TypeLabels::for_pool(&config, &config.pools[0]);
        assert_eq!(first.label("a"), "a");
        assert_eq!(
            first.label("c"),
            "c",
            "listed by another pool: from the config"
        );
        assert_eq!(first.label("zz"), UNROUTED);
        assert_eq!(first.label(""), MISSING);
        let engine = TypeLabels::for_engine(&config);
        assert_eq!(engine.label("zz"), UNROUTED);
    }

    #[test]
    fn a_wildcard_scope_admits_a_hundred_types_then_other() {
        let config = config(&[&["a"], &["*"]]);
        let star = TypeLabels::for_pool(&config, &config.pools[1]);
        let narrow = TypeLabels::for_pool(&config, &config.pools[0]);
        let engine = TypeLabels::for_engine(&config);
        let types: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
        let labels: HashSet<&str> = types.iter().map(|t| star.label(t)).collect();
        assert_eq!(labels.len(), MAX_WILDCARD_TYPES + 1);
        assert!(labels.contains(OTHER));
        assert_eq!(star.label("t7"), "t7", "admitted types keep their label");
        assert_eq!(star.label("t149"), OTHER);
        assert_eq!(
            star.label("a"),
            "a",
            "listed types never count toward the cap"
        );
        assert_eq!(narrow.label("t7"), UNROUTED);
        assert_eq!(engine.label("t7"), "t7");
    }

    #[test]
    fn handles_are_made_once_per_label() {
        let config = config(&[&["a"]]);
        let by = ByLabel::new(Arc::new(TypeLabels::for_engine(&config)));
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = |label: &str| {
            made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            label.to_string()
        };
        for i in 0..1000 {
            assert_eq!(*by.get(&format!("u{i}"), make), UNROUTED);
        }
        assert_eq!(*by.get("a", make), "a");
        assert_eq!(made.into_inner(), 2);
        assert_eq!(lock(&by.handles).len(), 2);
    }
}
