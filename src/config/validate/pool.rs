//! A pool's section (`[[pools]]`) and the retry policy it layers over `[retry]`.

use std::collections::BTreeMap;

use super::pointer::order_key;
use super::{at_most, invalid, seconds};
use crate::config::model::{HandlerConfig, PoolConfig, RateLimit, RetryPolicy, Scaling};
use crate::config::raw::{RawConcurrency, RawPool, RawRetry};
use crate::config::url::redact_webhook_url;
use crate::error::ConfigError;

/// The longest a failed entry may wait for its retry: a week. Every retry (a webhook's
/// `Retry-After` included) is capped at `max_backoff_seconds`, so this bounds how long any
/// entry can be parked.
const MAX_BACKOFF_SECONDS: f64 = 7.0 * 86_400.0;

/// `max_backoff_seconds`: a number of seconds of at most [`MAX_BACKOFF_SECONDS`].
fn max_backoff(key: &str, value: f64) -> Result<std::time::Duration, ConfigError> {
    let duration = seconds(key, value, false)?;
    at_most(key, value, MAX_BACKOFF_SECONDS, "a week")?;
    Ok(duration)
}

/// The most handlers one pool may run at once in one process.
const MAX_CONCURRENCY: usize = 10_000;

impl RawRetry {
    /// Layers `self` over `base` and validates, naming keys under `prefix`.
    pub(super) fn resolve(
        &self,
        base: &RawRetry,
        prefix: &str,
    ) -> Result<RetryPolicy, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let max_attempts = self.max_attempts.or(base.max_attempts).unwrap_or(5);
        if max_attempts == 0 {
            return Err(invalid(key("max_attempts"), "must be at least 1"));
        }
        let pick = |own: Option<f64>, inherited: Option<f64>, default: f64| {
            own.or(inherited).unwrap_or(default)
        };
        let backoff_exp = pick(self.backoff_exp, base.backoff_exp, 2.0);
        if !backoff_exp.is_finite() || backoff_exp < 1.0 {
            return Err(invalid(key("backoff_exp"), "must be a number of 1 or more"));
        }
        Ok(RetryPolicy {
            max_attempts,
            retry: seconds(
                &key("retry_seconds"),
                pick(self.retry_seconds, base.retry_seconds, 120.0),
                false,
            )?,
            backoff_exp,
            max_backoff: max_backoff(
                &key("max_backoff_seconds"),
                pick(self.max_backoff_seconds, base.max_backoff_seconds, 3600.0),
            )?,
            visibility_timeout: seconds(
                &key("visibility_timeout_seconds"),
                pick(
                    self.visibility_timeout_seconds,
                    base.visibility_timeout_seconds,
                    900.0,
                ),
                true,
            )?,
        })
    }
}

impl RawPool {
    pub(super) fn validate(
        &self,
        index: usize,
        defaults: &RawRetry,
    ) -> Result<PoolConfig, ConfigError> {
        let key = |k: &str| format!("pools[{index}].{k}");
        let name = self.validate_name(&key("name"))?;
        let (concurrency, scaling) = self.validate_concurrency(&key)?;
        if self.types.is_empty() {
            return Err(invalid(
                key("types"),
                "list the event types this pool handles, or [\"*\"] for every unlisted type",
            ));
        }
        if let Some(t) = self.types.iter().find(|t| t.is_empty()) {
            return Err(invalid(key("types"), format!("`{t}` is not a type name")));
        }
        let start = self.start.clone().unwrap_or_else(|| "0".into());
        if start != "0" && start != "$" && crate::vocab::StreamId::parse(&start).is_none() {
            return Err(invalid(
                key("start"),
                format!("`{start}` must be \"0\", \"$\" or a stream ID like 1700000000000-0"),
            ));
        }
        self.validate_handler(index)?;
        let read_count = match self.read_count.unwrap_or(0) as usize {
            0 => (concurrency * 2).clamp(64, 512),
            n => n,
        };
        let inline_read_count = match self.read_count {
            Some(n) if n > 0 => n as usize,
            _ => 512,
        };
        let order_key = self
            .order_key
            .as_deref()
            .map(|k| order_key(&key("order_key"), k))
            .transpose()?;
        let rate = self.validate_rate(&key, &name)?;
        Ok(PoolConfig {
            order_key,
            rate,
            name,
            concurrency,
            scaling,
            types: self.types.clone(),
            timeout: seconds(
                &key("timeout_seconds"),
                self.timeout_seconds.unwrap_or(120.0),
                true,
            )?,
            handler: self.handler.clone(),
            start,
            read_count,
            inline_read_count,
            stall: seconds(
                &key("stall_seconds"),
                self.stall_seconds.unwrap_or(60.0),
                true,
            )?,
            retry: self
                .retry_overrides()
                .resolve(defaults, &format!("pools[{index}]"))?,
        })
    }

    /// `concurrency` (a number, or `{ min, max }`) and `scale_cooldown_seconds`: the most
    /// handlers at once, and the adaptive bounds if any.
    fn validate_concurrency(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(usize, Option<Scaling>), ConfigError> {
        let count = |k: &str, n: Option<i64>| -> Result<usize, ConfigError> {
            let n = n.ok_or_else(|| {
                invalid(
                    key(k),
                    "is required: write concurrency = { min = 2, max = 16 }",
                )
            })?;
            match usize::try_from(n) {
                Ok(n @ 1..=MAX_CONCURRENCY) => Ok(n),
                _ => Err(invalid(
                    key(k),
                    format!("{n} must be between 1 and {MAX_CONCURRENCY}"),
                )),
            }
        };
        let (min, max) = match self.concurrency.unwrap_or(RawConcurrency::Fixed(1)) {
            RawConcurrency::Fixed(n) => {
                if self.scale_cooldown_seconds.is_some() {
                    return Err(invalid(
                        key("scale_cooldown_seconds"),
                        "applies only to adaptive pools: write concurrency = { min = …, max = … }, or remove it",
                    ));
                }
                return Ok((count("concurrency", Some(n))?, None));
            }
            RawConcurrency::Range { min, max } => (
                count("concurrency.min", min)?,
                count("concurrency.max", max)?,
            ),
        };
        if min > max {
            return Err(invalid(
                key("concurrency"),
                format!(
                    "min {min} is above max {max}; min is where the pool starts and the least it shrinks to, max the most"
                ),
            ));
        }
        let cooldown = seconds(
            &key("scale_cooldown_seconds"),
            self.scale_cooldown_seconds.unwrap_or(3.0),
            true,
        )?;
        Ok((max, Some(Scaling { min, cooldown })))
    }

    /// `rate = { limit, per }` and `rate_key` (contract §14), errors naming pool `name`.
    fn validate_rate(
        &self,
        key: &dyn Fn(&str) -> String,
        name: &str,
    ) -> Result<Option<RateLimit>, ConfigError> {
        let Some(rate) = &self.rate else {
            if self.rate_key.is_some() {
                return Err(invalid(
                    key("rate_key"),
                    format!(
                        "pool `{name}`: rate_key needs a limit: add rate = {{ limit = 50, per = \"1s\" }}"
                    ),
                ));
            }
            return Ok(None);
        };
        let limit = match rate.limit {
            None => {
                return Err(invalid(
                    key("rate.limit"),
                    format!("pool `{name}`: is required: write rate = {{ limit = 50, per = \"1s\" }}"),
                ));
            }
            Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(
                    key("rate.limit"),
                    format!("pool `{name}`: {n} is not a limit: handler starts per `per`, a whole number of at least 1 (remove `rate` for no limit)"),
                )
            })?,
        };
        let per_text = rate.per.as_deref().ok_or_else(|| {
            invalid(
                key("rate.per"),
                format!("pool `{name}`: is required: a duration like \"1s\", \"250ms\" or \"1m\""),
            )
        })?;
        let per = crate::timespec::duration(per_text)
            .map_err(|e| invalid(key("rate.per"), format!("pool `{name}`: {e}")))?;
        if per.is_zero() {
            return Err(invalid(
                key("rate.per"),
                format!("pool `{name}`: `{per_text}` is shorter than 1ms"),
            ));
        }
        let rate_key = match self.rate_key.as_deref() {
            None => None,
            Some(k) => Some(order_key(&key("rate_key"), k).map_err(|e| match e {
                ConfigError::Invalid { key, problem } => {
                    invalid(key, format!("pool `{name}`: {problem}"))
                }
                other => other,
            })?),
        };
        Ok(Some(RateLimit {
            limit,
            per,
            key: rate_key,
        }))
    }

    fn validate_name(&self, key: &str) -> Result<String, ConfigError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| invalid(key, "every pool needs a name"))?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !name_ok {
            return Err(invalid(
                key,
                format!("`{name}` must be non-empty and use only letters, digits, - _ . :"),
            ));
        }
        Ok(name)
    }

    fn validate_handler(&self, index: usize) -> Result<(), ConfigError> {
        match &self.handler {
            Some(HandlerConfig::Exec { command, .. }) if command.is_empty() => Err(invalid(
                format!("pools[{index}].handler.command"),
                "must list the program and its arguments",
            )),
            Some(HandlerConfig::Exec { command, env }) => exec_nul(index, command, env),
            Some(HandlerConfig::Http {
                url,
                ca_file: Some(_),
                ..
            }) if !url.starts_with("https://") => Err(invalid(
                format!("pools[{index}].handler.ca_file"),
                format!(
                    "is for https:// webhooks; `{}` is not one",
                    redact_webhook_url(url)
                ),
            )),
            Some(HandlerConfig::Http { url, .. })
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                Err(invalid(
                    format!("pools[{index}].handler.url"),
                    format!(
                        "`{}` must start with http:// or https://",
                        redact_webhook_url(url)
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// An exec handler's argv and environment cannot hold a NUL byte (it ends a C string), nor an
/// environment name an `=`: every spawn would fail, and every entry be retried in vain.
fn exec_nul(
    index: usize,
    command: &[String],
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(i) = command.iter().position(|arg| arg.contains('\0')) {
        return Err(invalid(
            format!("pools[{index}].handler.command[{i}]"),
            "contains a NUL byte, which no program argument can hold",
        ));
    }
    for (name, value) in env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(invalid(
                format!("pools[{index}].handler.env"),
                format!(
                    "`{}` is not an environment variable name (no `=`, no NUL byte)",
                    name.escape_debug()
                ),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(
                format!("pools[{index}].handler.env.{name}"),
                "contains a NUL byte, which no environment value can hold",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::load::{Overrides, load_with};
    use crate::error::ConfigError;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, text).expect("write config");
        load_with(&path, Overrides::default())
    }

    /// `top` keys, then one pool with `extra` lines and `handler`.
    fn text(top: &str, extra: &str, handler: &str) -> String {
        format!("{top}\n[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = {handler}\n{extra}")
    }

    fn problem(text: &str) -> (String, String) {
        match load(text) {
            Err(ConfigError::Invalid { key, problem }) => (key, problem),
            other => panic!("expected a keyed error for {text}, got {other:?}"),
        }
    }

    const LOG: &str = "{ kind = \"log\" }";

    #[test]
    fn durations_that_feed_clocks_are_bounded() {
        for (top, extra, key, words) in [
            (
                "[retry]\nmax_backoff_seconds = 604801",
                "",
                "retry.max_backoff_seconds",
                "a week",
            ),
            (
                "",
                "max_backoff_seconds = 1e20",
                "pools[0].max_backoff_seconds",
                "10 years",
            ),
            (
                "",
                "max_backoff_seconds = 1e7",
                "pools[0].max_backoff_seconds",
                "a week",
            ),
            (
                "[retry]\nvisibility_timeout_seconds = 1e12",
                "",
                "retry.visibility_timeout_seconds",
                "10 years",
            ),
            (
                "[retry]\nretry_seconds = 1e19",
                "",
                "retry.retry_seconds",
                "10 years",
            ),
            (
                "",
                "timeout_seconds = 1e19",
                "pools[0].timeout_seconds",
                "10 years",
            ),
            (
                "[janitor]\ninterval_seconds = 1e15",
                "",
                "janitor.interval_seconds",
                "10 years",
            ),
            (
                "shutdown_grace_seconds = 1e300",
                "",
                "shutdown_grace_seconds",
                "10 years",
            ),
        ] {
            let (got_key, got) = problem(&text(top, extra, LOG));
            assert_eq!(got_key, key, "{got}");
            assert!(
                got.contains("is more than") && got.contains(words),
                "{key}: {got}"
            );
        }
        let week = load(&text("[retry]\nmax_backoff_seconds = 604800", "", LOG)).expect("a week");
        assert_eq!(week.pools[0].retry.max_backoff.as_secs(), 604_800);
    }

    #[test]
    fn config_errors_show_a_webhook_url_without_its_secrets() {
        for handler in [
            "{ kind = \"http\", url = \"ftp://u:s3cret@hooks.example/x?token=t0k\" }",
            "{ kind = \"http\", url = \"http://u:s3cret@hooks.example/x?token=t0k\", ca_file = \"ca.pem\" }",
        ] {
            let (key, got) = problem(&text("", "", handler));
            assert!(key.starts_with("pools[0].handler."), "{key}");
            assert!(got.contains("hooks.example/x?token=***"), "{got}");
            assert!(!got.contains("s3cret") && !got.contains("t0k"), "{got}");
        }
    }

    #[test]
    fn an_exec_command_or_environment_with_a_nul_byte_is_refused() {
        for (handler, key) in [
            (
                "{ kind = \"exec\", command = [\"sh\", \"a\\u0000b\"] }",
                "pools[0].handler.command[1]",
            ),
            (
                "{ kind = \"exec\", command = [\"sh\"], env = { A = \"x\\u0000\" } }",
                "pools[0].handler.env.A",
            ),
            (
                "{ kind = \"exec\", command = [\"sh\"], env = { \"A=B\" = \"x\" } }",
                "pools[0].handler.env",
            ),
        ] {
            let (got_key, got) = problem(&text("", "", handler));
            assert_eq!(got_key, key, "{got}");
        }
    }
}
