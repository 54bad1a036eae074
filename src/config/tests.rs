//! Keyed errors, table-driven: every rule names its key as a path (`pools[0].concurrency`)
//! and says what is wrong in words.

use std::path::Path;
use std::time::Duration;

use super::load::{Overrides, load_with};
use super::raw::RawConfig;
use super::*;
use crate::error::ConfigError;

/// A valid pool, with `extra` lines appended to its table.
fn pool(extra: &str) -> String {
    format!("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = {{ kind = \"log\" }}\n{extra}")
}

/// `top` (keys before any pool) followed by one valid pool.
fn with_pool(top: &str) -> String {
    format!("{top}\n{}", pool(""))
}

/// Loads `text` as a file with `env` as `WEIR_…` overrides.
fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).expect("write config");
    let overrides: Overrides = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_with(&path, overrides)
}

/// `text` as `streams.toml` in a folder that lives as long as the process.
fn write(text: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let path = dir.join("streams.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// (config text, environment overrides, key path, fragment of the problem)
type Case = (
    String,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

/// Every case, by area.
fn cases() -> Vec<Case> {
    [
        phase_one_cases,
        pool_cases,
        retry_cases,
        stream_cases,
        other_cases,
    ]
    .into_iter()
    .flat_map(|area| area())
    .collect()
}

#[rustfmt::skip]
fn phase_one_cases() -> Vec<Case> {
    let none: &'static [(&str, &str)] = &[];
    vec![
        // types and unknown keys (phase one)
        (pool("concurrency = \"x\""), none, "pools[0].concurrency", "expected a whole number or a table like { min = 2, max = 16 }, found string \"x\""),
        (pool("retry_seconds = \"soon\""), none, "pools[0].retry_seconds", "expected a number"),
        (with_pool("[retry]\nmax_attempts = -1"), none, "retry.max_attempts", "expected a whole number, 0 or more"),
        ("[[pools]]\nname = \"p\"\ntypes = \"a\"\n".into(), none, "pools[0].types", "expected a list, found string \"a\""),
        ("pools = 3\n".into(), none, "pools", "expected a list"),
        ("[stream]\nnmae = \"x\"\n".into(), none, "stream.nmae", "is not a known key; expected one of `name`"),
        ("nmae = 1\n".into(), none, "nmae", "is not a known key"),
        (pool("bogus = 1"), none, "pools[0].bogus", "is not a known key"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"smtp\" }\n".into(), none, "pools[0].handler.kind", "unknown variant `smtp`"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"http\" }\n".into(), none, "pools[0].handler.url", "is required"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"exec\", command = [\"x\"], url = \"x\" }\n".into(), none, "pools[0].handler.url", "is not a known key"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = \"log\"\n".into(), none, "pools[0].handler", "expected a table like { kind"),
        // environment overrides
        (pool(""), &[("WEIR_RETRY__MAX_ATTEMPTS", "0")], "retry.max_attempts", "must be at least 1"),
        (pool(""), &[("WEIR_STREAM__MAX_LEN", "lots")], "stream.max_len", "environment overrides in effect: WEIR_STREAM__MAX_LEN"),
        (pool(""), &[("WEIR_STREAM__NMAE", "x")], "stream.nmae", "is not a known key"),
    ]
}

#[rustfmt::skip]
fn pool_cases() -> Vec<Case> {
    let none: &'static [(&str, &str)] = &[];
    let two_pools = |a: &str, b: &str| format!("{a}\n{b}");
    vec![
        // pools
        ("".into(), none, "pools", "no [[pools]] configured"),
        ("[[pools]]\ntypes = [\"a\"]\n".into(), none, "pools[0].name", "every pool needs a name"),
        ("[[pools]]\nname = \"a b\"\ntypes = [\"a\"]\n".into(), none, "pools[0].name", "only letters, digits"),
        (two_pools(&pool(""), &pool("")), none, "pools[1].name", "pool `p` is defined twice"),
        (pool("concurrency = 0"), none, "pools[0].concurrency", "must be between 1 and 10000"),
        (pool("order_key = \"\""), none, "pools[0].order_key", "is empty"),
        (pool("order_key = \"/bad~pointer\""), none, "pools[0].order_key", "`~` must be followed by 0"),
        (pool("order_key = \"/a//b\""), none, "pools[0].order_key", "empty segment"),
        (pool("concurrency = 10001"), none, "pools[0].concurrency", "must be between 1 and 10000"),
        (pool("concurrency = -1"), none, "pools[0].concurrency", "-1 must be between 1 and 10000"),
        // adaptive concurrency
        (pool("concurrency = { min = 8, max = 2 }"), none, "pools[0].concurrency", "min 8 is above max 2"),
        (pool("concurrency = { min = 0, max = 2 }"), none, "pools[0].concurrency.min", "0 must be between 1 and 10000"),
        (pool("concurrency = { min = 1, max = 10001 }"), none, "pools[0].concurrency.max", "must be between 1 and 10000"),
        (pool("concurrency = { max = 4 }"), none, "pools[0].concurrency.min", "is required: write concurrency = { min = 2, max = 16 }"),
        (pool("concurrency = { min = 1 }"), none, "pools[0].concurrency.max", "is required"),
        (pool("concurrency = { min = 1, max = 4, step = 2 }"), none, "pools[0].concurrency.step", "is not a known key; expected `min` or `max`"),
        (pool("concurrency = { min = \"one\", max = 4 }"), none, "pools[0].concurrency.min", "expected a whole number, found string \"one\""),
        (pool("concurrency = 2.5"), none, "pools[0].concurrency", "expected a whole number or a table like { min = 2, max = 16 }, found floating point"),
        (pool("concurrency = [1, 4]"), none, "pools[0].concurrency", "expected a whole number or a table like { min = 2, max = 16 }"),
        (pool("concurrency = { min = 1, max = 4 }\nscale_cooldown_seconds = 0"), none, "pools[0].scale_cooldown_seconds", "0 is not a number of seconds above 0"),
        (pool("concurrency = 4\nscale_cooldown_seconds = 1"), none, "pools[0].scale_cooldown_seconds", "applies only to adaptive pools"),
        ("[[pools]]\nname = \"p\"\ntypes = []\n".into(), none, "pools[0].types", "list the event types"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"\"]\n".into(), none, "pools[0].types", "is not a type name"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n[[pools]]\nname = \"q\"\ntypes = [\"*\"]\n".into(), none, "pools[1].types", "`*` is already taken by pool `p`"),
        (pool("start = \"yesterday\""), none, "pools[0].start", "must be \"0\", \"$\" or a stream ID"),
        (pool("start = \"1700000000000-x\""), none, "pools[0].start", "a stream ID like 1700000000000-0"),
        (pool("timeout_seconds = 0"), none, "pools[0].timeout_seconds", "0 is not a number of seconds above 0"),
        (pool("stall_seconds = 0"), none, "pools[0].stall_seconds", "0 is not a number of seconds above 0"),
        (pool("stall_seconds = -5"), none, "pools[0].stall_seconds", "-5 is not a number of seconds above 0"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"exec\", command = [] }\n".into(), none, "pools[0].handler.command", "must list the program"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"http\", url = \"ftp://x\" }\n".into(), none, "pools[0].handler.url", "must start with http:// or https://"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"http\", url = \"http://x\", ca_file = \"ca.pem\" }\n".into(), none, "pools[0].handler.ca_file", "is for https:// webhooks; `http://x` is not one"),
    ]
}

#[rustfmt::skip]
fn retry_cases() -> Vec<Case> {
    let none: &'static [(&str, &str)] = &[];
    vec![
        // retry values and their layering: built-in defaults < [retry] < the pool's own keys
        (with_pool("[retry]\nmax_attempts = 0"), none, "retry.max_attempts", "must be at least 1"),
        (with_pool("[retry]\nbackoff_exp = 0.5"), none, "retry.backoff_exp", "must be a number of 1 or more"),
        (with_pool("[retry]\nretry_seconds = -1"), none, "retry.retry_seconds", "-1 is not a number of seconds 0 or more"),
        (with_pool("[retry]\nmax_backoff_seconds = -1"), none, "retry.max_backoff_seconds", "0 or more"),
        (with_pool("[retry]\nvisibility_timeout_seconds = 0"), none, "retry.visibility_timeout_seconds", "above 0"),
        (format!("[retry]\nmax_attempts = 0\n{}", pool("max_attempts = 3")), none, "retry.max_attempts", "must be at least 1"),
        (pool("max_attempts = 0"), none, "pools[0].max_attempts", "must be at least 1"),
        (pool("backoff_exp = 0"), none, "pools[0].backoff_exp", "1 or more"),
        (pool("retry_seconds = -1"), none, "pools[0].retry_seconds", "0 or more"),
        (pool("max_backoff_seconds = -0.5"), none, "pools[0].max_backoff_seconds", "0 or more"),
        (pool("visibility_timeout_seconds = 0"), none, "pools[0].visibility_timeout_seconds", "above 0"),
    ]
}

#[rustfmt::skip]
fn stream_cases() -> Vec<Case> {
    let none: &'static [(&str, &str)] = &[];
    vec![
        // stream, partitions, DLQ naming
        (with_pool("[stream]\nname = \"\""), none, "stream.name", "must not be empty"),
        (with_pool("[stream]\nname = \"bus\"\ndlq = \"bus\""), none, "stream.dlq", "a key other than the main stream"),
        (with_pool("[stream]\ndlq = \"\""), none, "stream.dlq", "a key other than the main stream"),
        (with_pool("[stream]\nmax_len = 0"), none, "stream.max_len", "must be at least 1"),
        (with_pool("[stream]\nmax_entry_bytes = 0"), none, "stream.max_entry_bytes", "must be at least 1"),
        (with_pool("[stream]\ndedup_window_seconds = 0"), none, "stream.dedup_window_seconds", "above 0"),
        (with_pool("[stream]\npartitions = 0"), none, "stream.partitions", "between 1 and 1024"),
        (with_pool("[stream]\npartitions = 1025"), none, "stream.partitions", "between 1 and 1024"),
        (with_pool("[stream]\nname = \"bus\"\ndlq = \"dead\"\npartitions = 2"), none, "stream.dlq", "start with the stream name, e.g. dlq = \"bus:dlq\""),
        (with_pool("[stream]\nname = \"{bus}:events\"\ndlq = \"bus:dlq\"\npartitions = 2"), none, "stream.dlq", "carry the stream's hash tag {bus}"),
        (with_pool( "[redis]\nurl = \"redis-cluster://127.0.0.1:7000\"\n[stream]\nname = \"events\"\ndlq = \"dead\""),
            none,
            "stream.dlq",
            "must hash to the same slot",
        ),
    ]
}

#[rustfmt::skip]
fn other_cases() -> Vec<Case> {
    let none: &'static [(&str, &str)] = &[];
    vec![
        // redis
        (with_pool("[redis]\nurl = \"http://u:hunter2@x\""), none, "redis.url", "is not a Redis URL"),
        (with_pool("[redis]\nurl = \"redis-cluster://127.0.0.1:notaport\""), none, "redis.url", "redis-cluster://127.0.0.1:notaport"),
        (with_pool("[redis]\nurl = \"redis://x\"\ninsecure_skip_verify = true"), none, "redis.url", "TLS options are set but the URL is not rediss://"),
        (with_pool("[stream]\nevent_id = \"id\""), none, "stream.event_id", "not a JSON pointer"),
        (with_pool("[stream]\nevent_id = \"/a//b\""), none, "stream.event_id", "empty segment"),
        (with_pool("[stream]\nmax_age_seconds = 0"), none, "stream.max_age_seconds", "above 0"),
        (with_pool("[schemas]\nalign = { x-kind = \"kind\" }"), none, "schemas.align.x-kind", "`kind` is not a JSON pointer into data: write it like \"/kind\""),
        (with_pool("[schemas]\nalign = { x-kind = \"/a//b\" }"), none, "schemas.align.x-kind", "empty segment"),
        (with_pool("[schemas]\nalign = { data = \"/kind\" }"), none, "schemas.align.data", "other than `data`"),
        // janitor, http, shutdown
        (with_pool("[janitor]\ninterval_seconds = 0"), none, "janitor.interval_seconds", "above 0"),
        (with_pool("[janitor]\nconsumer_gc_seconds = -1"), none, "janitor.consumer_gc_seconds", "above 0"),
        (with_pool("[http]\nlisten = \"nowhere\""), none, "http.listen", "`nowhere` is not an address"),
        (with_pool("shutdown_grace_seconds = -1"), none, "shutdown_grace_seconds", "0 or more"),
        // telemetry
        (with_pool("[telemetry]\nkey = \"\""), none, "telemetry.key", "is empty"),
        (with_pool("[telemetry]\nkey = \"/connector~Key\""), none, "telemetry.key", "`~` must be followed by 0"),
        (with_pool("[telemetry]\nkey = \"/a//b\""), none, "telemetry.key", "empty segment"),
        (with_pool("[telemetry]\nkey = \"data\""), none, "telemetry.key", "JSON pointer"),
        (with_pool("[telemetry]\ninterval_ms = 10"), none, "telemetry.interval_ms", "between 50 and 60000"),
        (with_pool("[telemetry]\nmax_values = 0"), none, "telemetry.max_values", "between 1 and 1000000"),
        (with_pool("[telemetry]\nkye = \"/x\""), none, "telemetry.kye", "is not a known key"),
        (pool(""), &[("WEIR_TELEMETRY__INTERVAL_MS", "5")], "telemetry.interval_ms", "between 50 and 60000"),
        // logging
        (with_pool("[logging]\nsummary_seconds = 0.5"), none, "logging.summary_seconds", "under a second"),
        (with_pool("[logging]\nsummary_seconds = -1"), none, "logging.summary_seconds", "above 0"),
        // files (checked by the loader)
        (with_pool("[redis]\nurl = \"rediss://x\"\nca_file = \"missing.pem\""), none, "redis.ca_file", "missing.pem does not exist"),
        (with_pool("[redis]\nurl = \"rediss://x\"\ncert_file = \"c.pem\""), none, "redis.cert_file", "c.pem does not exist"),
        (with_pool("[redis]\nkey_file = \"k.pem\""), none, "redis.key_file", "k.pem does not exist"),
        (with_pool("[schemas]\ndir = \"nope\""), none, "schemas.dir", "nope is not a directory"),
        ("[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"http\", url = \"https://x\", ca_file = \"nope.pem\" }\n".into(), none, "pools[0].handler.ca_file", "nope.pem does not exist"),
    ]
}

#[test]
fn every_rule_names_its_key_as_a_path() {
    let failures: Vec<String> = cases()
        .into_iter()
        .filter_map(|(text, env, key, fragment)| check(&text, env, key, fragment).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One case: the error names `key` first, says `fragment`, and is human text.
fn check(text: &str, env: &[(&str, &str)], key: &str, fragment: &str) -> Result<(), String> {
    let message = match load(text, env) {
        Ok(_) => return Err(format!("accepted, expected an error on `{key}`:\n{text}")),
        Err(e) => e.to_string(),
    };
    let debug_forms = [
        "Some(",
        "None",
        "\\\"",
        "Unexpected",
        "RawConfig",
        "HandlerConfig",
    ];
    if !message.starts_with(&format!("config key `{key}`: ")) || !message.contains(fragment) {
        Err(format!(
            "expected `{key}`: …{fragment}… for\n{text}\ngot: {message}"
        ))
    } else if let Some(form) = debug_forms.iter().find(|f| message.contains(**f)) {
        Err(format!("Rust debug form `{form}` in: {message}"))
    } else if message.contains("hunter2") {
        Err(format!("password leaked: {message}"))
    } else {
        Ok(())
    }
}

#[test]
fn raw_keys_are_the_top_level_keys_serde_knows() {
    let text = "no_such_key = 1";
    let err = load(text, &[]).expect_err("unknown key");
    let quoted: Vec<String> = RawConfig::KEYS.iter().map(|k| format!("`{k}`")).collect();
    assert!(
        err.to_string().contains(&quoted.join(", ")),
        "RawConfig::KEYS out of step with the struct: {err}"
    );
}

#[test]
fn only_variables_naming_a_config_path_are_overrides() {
    let vars = [
        "WEIR_BIN",
        "WEIR_FOO__BAR",
        "WEIR_CONFIG",
        "WEIR_LOG",
        "WEIR_LOG_FORMAT",
        "WEIR_REDIS__URL",
        "WEIR_REDIS__URLL",
        "WEIR_SHUTDOWN_GRACE_SECONDS",
        "PATH",
    ]
    .map(|k| (k.to_string(), "x".to_string()));
    let kept: Vec<String> = super::load::overrides(vars).into_keys().collect();
    let mut kept = kept;
    kept.sort();
    assert_eq!(
        kept,
        [
            "WEIR_REDIS__URL",
            "WEIR_REDIS__URLL",
            "WEIR_SHUTDOWN_GRACE_SECONDS"
        ]
    );
    let err = load(&pool(""), &[("WEIR_REDIS__URLL", "redis://x")]).expect_err("misspelled");
    let message = err.to_string();
    assert!(
        message.contains("redis.urll") && message.contains("WEIR_REDIS__URLL"),
        "{message}"
    );
}

#[test]
fn syntax_errors_name_the_file() {
    let err = load("[stream\n", &[]).expect_err("syntax error");
    let message = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }), "{message}");
    assert!(
        message.contains("streams.toml") && message.contains("line 1"),
        "{message}"
    );
}

#[test]
fn validation_is_pure_and_files_are_the_loaders_job() {
    let text = with_pool(
        "[redis]\nurl = \"rediss://x\"\nca_file = \"/nowhere/ca.pem\"\n[schemas]\ndir = \"/nowhere\"",
    );
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .expect("raw");
    let config = raw
        .into_config()
        .expect("no filesystem checks in validation");
    assert_eq!(
        config.redis.ca_file.as_deref(),
        Some(Path::new("/nowhere/ca.pem"))
    );
    let err = Config::from_toml(&text, Path::new(".")).expect_err("the loader checks files");
    assert!(err.to_string().contains("redis.ca_file"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_files_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("s")).expect("mkdir");
    std::fs::write(dir.path().join("ca.pem"), "").expect("ca");
    let text =
        with_pool("[redis]\nurl = \"rediss://x\"\nca_file = \"ca.pem\"\n[schemas]\ndir = \"s\"");
    let config = Config::from_toml(&text, dir.path()).expect("valid");
    assert_eq!(config.redis.ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(config.schemas_dir, Some(dir.path().join("s")));
    let beside = Config::from_toml(&pool(""), dir.path()).expect("valid");
    assert_eq!(beside.schemas_dir, None);
    let hook = "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"http\", url = \"https://x\", ca_file = \"ca.pem\" }\n";
    let config = Config::from_toml(hook, dir.path()).expect("valid");
    assert!(
        matches!(&config.pools[0].handler, Some(crate::config::HandlerConfig::Http { ca_file: Some(path), .. }) if *path == dir.path().join("ca.pem")),
        "{:?}",
        config.pools[0].handler
    );
}

#[test]
fn valid_edges_are_accepted() {
    for text in [
        pool("start = \"$\""),
        pool("start = \"1700000000000-0\""),
        pool("concurrency = 10000"),
        pool("concurrency = { min = 3, max = 3 }"),
        pool("concurrency = { min = 1, max = 10000 }\nscale_cooldown_seconds = 0.2"),
        with_pool("[stream]\npartitions = 1024"),
        with_pool("[retry]\nbackoff_exp = 1\nretry_seconds = 0"),
        with_pool("shutdown_grace_seconds = 0"),
    ] {
        if let Err(e) = load(&text, &[]) {
            panic!("rejected:\n{text}\n{e}");
        }
    }
}

#[test]
fn the_partition_list_is_computed_once_at_validation() {
    let text = with_pool(
        "[stream]\nname = \"{bus}:events\"\ndlq = \"{bus}:dlq\"\npartitions = 2\nmax_len = 11",
    );
    let config = load(&text, &[]).expect("valid");
    let keys: Vec<(&str, &str)> = config
        .partitions()
        .iter()
        .map(|p| (p.stream.as_str(), p.dlq.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("{bus:0}:events", "{bus:0}:dlq"),
            ("{bus:1}:events", "{bus:1}:dlq")
        ]
    );
    let parts = config.stream.partition_list();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (parts[1].name.as_str(), parts[1].max_len),
        ("{bus:1}:events", 6)
    );
    assert_eq!(parts[1].partitions(), &config.partitions()[1..]);
    let plain = load(&pool(""), &[]).expect("valid");
    assert_eq!(plain.partitions().len(), 1);
    assert_eq!(plain.partitions()[0].dlq, "integration-bus:dlq");
}

#[test]
fn telemetry_keys_are_fields_or_pointers_and_off_by_default() {
    let telemetry = |top: &str| load(&with_pool(top), &[]).map(|c| c.telemetry);
    let off = telemetry("").expect("valid");
    assert_eq!(off.key, None);
    assert!(off.monitor, "the monitor hash is on by default");
    assert_eq!(off.interval, std::time::Duration::from_secs(1));
    assert_eq!(off.max_values, 10_000);
    let on = telemetry("[telemetry]\nkey = \"/connectorKey\"\ninterval_ms = 200\nmonitor = false")
        .expect("valid");
    assert_eq!(on.key, Some(OrderKey::Pointer("/connectorKey".into())));
    assert_eq!(on.interval, std::time::Duration::from_millis(200));
    assert!(!on.monitor);
    let field = telemetry("[telemetry]\nkey = \"tenant\"").expect("valid");
    assert_eq!(field.key, Some(OrderKey::Field("tenant".into())));
}

#[test]
fn order_keys_are_fields_or_pointers() {
    let key = |v: &str| {
        load(&pool(&format!("order_key = \"{v}\"")), &[])
            .map(|c| c.pools[0].order_key.clone())
            .map_err(|e| e.to_string())
    };
    assert_eq!(key("key"), Ok(Some(OrderKey::Field("key".into()))));
    assert_eq!(
        key("/payload/incidentId"),
        Ok(Some(OrderKey::Pointer("/payload/incidentId".into())))
    );
    assert_eq!(
        key("/a~1b~0c"),
        Ok(Some(OrderKey::Pointer("/a~1b~0c".into())))
    );
    assert_eq!(
        load(&pool(""), &[])
            .map(|c| c.pools[0].order_key.clone())
            .ok(),
        Some(None)
    );
}

#[test]
fn concurrency_is_a_number_or_adaptive_bounds() {
    let pool_of = |extra: &str| load(&pool(extra), &[]).expect("valid").pools.remove(0);
    let fixed = pool_of("concurrency = 6");
    assert_eq!((fixed.concurrency, fixed.scaling), (6, None));
    assert_eq!(fixed.initial_concurrency(), 6);
    let adaptive = pool_of("concurrency = { min = 2, max = 16 }");
    assert_eq!(adaptive.concurrency, 16, "an adaptive pool has max workers");
    assert_eq!(
        adaptive.scaling,
        Some(Scaling {
            min: 2,
            cooldown: Duration::from_secs(3)
        }),
        "the cooldown defaults to 3 s"
    );
    assert_eq!(adaptive.initial_concurrency(), 2);
    assert_eq!(adaptive.read_count, 64, "read_count follows max");
    let quick = pool_of("concurrency = { max = 4, min = 1 }\nscale_cooldown_seconds = 0.5");
    assert_eq!(
        quick.scaling.map(|s| s.cooldown),
        Some(Duration::from_millis(500))
    );
}

#[test]
fn logging_defaults_to_a_summary_and_weir_log_stays_the_log_filter() {
    let env = [("WEIR_LOG".to_string(), "info".to_string())];
    let config = load_with(&write(&pool("")), super::load::overrides(env))
        .expect("WEIR_LOG is not a config key");
    assert!(!config.logging.each_entry);
    assert_eq!(
        config.logging.summary,
        Some(std::time::Duration::from_secs(10))
    );
    let config = load(
        &with_pool("[logging]\nsummary_seconds = 0"),
        &[("WEIR_LOGGING__EACH_ENTRY", "true")],
    )
    .expect("valid");
    assert!(config.logging.each_entry);
    assert_eq!(config.logging.summary, None);
}
