//! Reading the config: the file, `WEIR_…` environment overrides, and everything that looks
//! at the filesystem — relative paths resolved against the file's folder, TLS files and the
//! schema folder checked to exist. Validation proper is pure ([`super::validate`]).

use std::path::{Path, PathBuf};

use super::model::{Config, HandlerConfig};
use super::raw::RawConfig;
use super::validate::invalid;
use crate::error::ConfigError;

/// Where `weir` looks without `-c`: the working directory, like most tools' own files.
pub const DEFAULT_CONFIG_PATH: &str = "streams.toml";

/// Environment overrides: `WEIR_` + the key path joined with `__`, e.g. `WEIR_REDIS__URL`.
pub(super) type Overrides = config::Map<String, String>;

impl Config {
    /// Reads `path` (it must exist) and `WEIR_…` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load_with(path, overrides(std::env::vars()))
    }

    /// Parses TOML text directly (no environment), resolving relative paths against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let source = config::File::from_str(text, config::FileFormat::Toml);
        let raw = read(source, Overrides::new(), &base.join("<inline>"))?;
        raw.validate(base)
    }
}

/// The variables among `vars` that name a config path: `WEIR_` + a top-level key of the file
/// (`WEIR_REDIS__URL`, `WEIR_SHUTDOWN_GRACE_SECONDS`). Any other `WEIR_…` variable — the
/// binary's own `WEIR_CONFIG`/`WEIR_LOG`, or a shell's `WEIR_BIN` — is ignored, logged at
/// DEBUG. A misspelled key under a real section (`WEIR_REDIS__URLL`) stays an override, so
/// it is refused as an unknown key naming the variable rather than silently dropped.
pub(super) fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Overrides {
    vars.into_iter()
        .filter(|(name, _)| {
            let Some(path) = name.strip_prefix("WEIR_") else {
                return false;
            };
            let top = path.split("__").next().unwrap_or_default().to_lowercase();
            let known = RawConfig::KEYS.contains(&top.as_str());
            if !known {
                tracing::debug!(variable = %name, "not a config key; ignored");
            }
            known
        })
        .collect()
}

/// [`Config::load`] with the overrides given rather than read from the environment.
pub(super) fn load_with(path: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Missing {
            path: path.to_path_buf(),
        });
    }
    let source = config::File::from(path).format(config::FileFormat::Toml);
    let raw = read(source, overrides, path)?;
    raw.validate(path.parent().unwrap_or(Path::new(".")))
}

/// Phase one: the file (or text) with the overrides on top, as serde reads it.
fn read<S>(source: S, overrides: Overrides, origin: &Path) -> Result<RawConfig, ConfigError>
where
    S: config::Source + Send + Sync + 'static,
{
    let names: Vec<String> = overrides.keys().cloned().collect();
    let env = config::Environment::with_prefix("WEIR")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(overrides));
    config::Config::builder()
        .add_source(source)
        .add_source(env)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| super::parse_error::convert(e, origin, &names))
}

impl RawConfig {
    /// Phase two, with the file's location: relative paths resolved against `base`, the
    /// rules of [`RawConfig::into_config`], then the files the config names checked.
    pub fn validate(mut self, base: &Path) -> Result<Config, ConfigError> {
        resolve_paths(&mut self, base);
        let mut config = self.into_config()?;
        check_files(&mut config, base)?;
        Ok(config)
    }
}

/// Paths in the raw form resolved against `base` (the config file's folder).
fn resolve_paths(raw: &mut RawConfig, base: &Path) {
    let resolve = |p: &mut Option<PathBuf>| {
        if let Some(path) = p.take() {
            *p = Some(base.join(path));
        }
    };
    resolve(&mut raw.redis.ca_file);
    resolve(&mut raw.redis.cert_file);
    resolve(&mut raw.redis.key_file);
    resolve(&mut raw.http.tls_cert_file);
    resolve(&mut raw.http.tls_key_file);
    if let Some(schemas) = raw.schemas.as_mut() {
        resolve(&mut schemas.dir);
    }
    for pool in &mut raw.pools {
        if let Some(HandlerConfig::Http { ca_file, .. }) = pool.handler.as_mut() {
            resolve(ca_file);
        }
    }
}

/// The TLS files must exist; a configured schema folder must exist, and without one a
/// `schemas` folder beside the file is used when there is one.
fn check_files(config: &mut Config, base: &Path) -> Result<(), ConfigError> {
    let redis = &config.redis;
    let tls = config.http.tls.as_ref();
    for (key, path) in [
        ("redis.ca_file", &redis.ca_file),
        ("redis.cert_file", &redis.cert_file),
        ("redis.key_file", &redis.key_file),
        ("http.tls_cert_file", &tls.map(|t| t.0.clone())),
        ("http.tls_key_file", &tls.map(|t| t.1.clone())),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(invalid(key, format!("{} does not exist", path.display())));
        }
    }
    for (index, pool) in config.pools.iter().enumerate() {
        if let Some(HandlerConfig::Http {
            ca_file: Some(path),
            ..
        }) = &pool.handler
            && !path.is_file()
        {
            let key = format!("pools[{index}].handler.ca_file");
            return Err(invalid(key, format!("{} does not exist", path.display())));
        }
    }
    match &config.schemas_dir {
        Some(dir) if !dir.is_dir() => Err(invalid(
            "schemas.dir",
            format!("{} is not a directory", dir.display()),
        )),
        Some(_) => Ok(()),
        None => {
            let beside = base.join("schemas");
            config.schemas_dir = beside.is_dir().then_some(beside);
            Ok(())
        }
    }
}
