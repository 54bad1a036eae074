//! The `weir` binary as a real process: crash handover, SIGTERM, config errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::{Config, Engine};

use crate::support::*;

const T: Duration = Duration::from_secs(20);

fn weir(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(dir)
        .args(args)
        .env("WEIR_LOG", "info")
        .env_remove("WEIR_CONFIG");
    cmd
}

fn write_config(
    dir: &Path,
    server: &RedisServer,
    stream: &str,
    handler: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("streams.toml");
    let text = format!(
        r#"
shutdown_grace_seconds = 10
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
visibility_timeout_seconds = 1
retry_seconds = 0.1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
concurrency = 8
types = ["job"]
timeout_seconds = 60
handler = {handler}
{extra}
"#,
        url = server.url(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Pending entries owned by consumers other than `except`.
fn pending_count(server: &RedisServer, stream: &str) -> u64 {
    server
        .cli(&["XPENDING", stream, "p"])
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn kill_9_with_entries_in_flight_hands_them_all_to_another_process() {
    let server = RedisServer::start();
    let stream = stream_name("kill9");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &server,
        &stream,
        r#"{ kind = "exec", command = ["sleep", "30"] }"#,
        "",
    );
    // Hundreds in flight at once: one exec child per entry.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("concurrency = 8", "concurrency = 200");
    std::fs::write(&path, text).unwrap();
    let mut first = weir(dir.path(), &["run", "-c", path.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(first.id());
    let redis = server.client().await;
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(publish(&redis, &stream, "job", &format!("{{\"i\":{i}}}")).await);
    }
    wait_for("all 200 in flight in the first process", T, || async {
        pending_count(&server, &stream) == 200
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let config = Config::load(&path).unwrap();
    let handler = Recorder::ok();
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    wait_for("all 200 redelivered to the second process", T, || async {
        handler.per_entry().len() == 200
    })
    .await;
    let mut got: Vec<_> = handler.per_entry().into_keys().collect();
    got.sort();
    assert_eq!(got, ids);
    assert!(
        handler.seen().iter().all(|s| s.attempt == 2),
        "redeliveries carry attempt 2"
    );
    wait_for("all acknowledged", T, || async {
        pending_count(&server, &stream) == 0
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_work_and_exits_0() {
    let server = RedisServer::start();
    let stream = stream_name("sigterm");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &server,
        &stream,
        r#"{ kind = "exec", command = ["sleep", "1"] }"#,
        "",
    );
    let mut child = weir(dir.path(), &["run", "-c", path.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let redis = server.client().await;
    for _ in 0..3 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("three in flight", T, || async {
        pending_count(&server, &stream) == 3
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, T).expect("weir did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        pending_count(&server, &stream),
        0,
        "in-flight entries were not finished and acknowledged"
    );
}

#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[retry]\nmax_attempts = 0\n[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"log\" }\n",
            "retry.max_attempts",
        ),
        ("[stream]\nnmae = \"x\"\n", "nmae"),
        (
            "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"log\" }\nretry_seconds = -1\n",
            "pools[0].retry_seconds",
        ),
        (
            "[[pools]]\nname = \"p\"\ntypes = []\nhandler = { kind = \"log\" }\n",
            "pools[0].types",
        ),
        (
            "[http]\nlisten = \"nowhere\"\n[[pools]]\nname = \"p\"\ntypes = [\"a\"]\n",
            "http.listen",
        ),
        (
            "[redis]\nurl = \"http://u:hunter2@x\"\n[[pools]]\nname = \"p\"\ntypes = [\"a\"]\n",
            "redis.url",
        ),
        (
            "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"smtp\" }\n",
            "smtp",
        ),
        (
            "[schemas]\ndir = \"nope\"\n[[pools]]\nname = \"p\"\ntypes = [\"a\"]\n",
            "schemas.dir",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = weir(dir.path(), &["run", "-c", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "config {text:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "error for {text:?} should name `{key}`: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
    }
    let out = weir(dir.path(), &["run", "-c", "missing.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn environment_overrides_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(
        &path,
        "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = { kind = \"log\" }\nconcurrency = 2\n",
    )
    .unwrap();
    let out = weir(dir.path(), &["run", "-c", path.to_str().unwrap()])
        .env("WEIR_RETRY__MAX_ATTEMPTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retry.max_attempts"));
}

#[test]
fn the_shipped_streams_toml_is_the_integration_bus_topology() {
    let config = Config::load(&repo().join("streams.toml")).unwrap();
    assert_eq!(config.stream.name, "integration-bus");
    assert_eq!(config.stream.dlq, "integration-bus:dlq");
    let align: Vec<(&str, &str)> = config
        .align
        .iter()
        .map(|(f, p)| (f.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        align,
        [
            ("type", "/kind"),
            ("x-phpgrc-bus-version", "/busVersion"),
            ("x-phpgrc-connector", "/connectorKey"),
            ("x-phpgrc-kind", "/kind"),
            ("x-phpgrc-run-id", "/runId"),
        ]
    );
    let pools: Vec<(&str, usize)> = config
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.concurrency))
        .collect();
    assert_eq!(
        pools,
        [
            ("bus-general", 6),
            ("bus-incident", 3),
            ("bus-auth", 2),
            ("bus-cyber", 4)
        ]
    );
    let general = &config.pools[0];
    assert_eq!(
        general.types,
        ["asset.discovery", "vendor.profile", "indicator.metric"]
    );
    assert_eq!(general.retry.max_attempts, 5);
    assert_eq!(general.retry.backoff(1), Duration::from_secs(120));
    assert_eq!(general.retry.backoff(3), Duration::from_secs(480));
    assert_eq!(general.retry.visibility_timeout, Duration::from_secs(900));
    assert!(config.schemas_dir.is_some(), "schemas/ is picked up");
    let schemas = weir::schema::Schemas::load(config.schemas_dir.as_deref()).unwrap();
    for kind in [
        "asset.discovery",
        "vendor.profile",
        "indicator.metric",
        "incident.event",
        "auth.provider",
        "cyber.metric",
    ] {
        assert!(
            schemas.check(kind, &envelope(kind)).is_ok(),
            "fixture {kind} is valid"
        );
    }
    for bad in std::fs::read_dir(repo().join("tests/fixtures/invalid")).unwrap() {
        let text = std::fs::read_to_string(bad.unwrap().path()).unwrap();
        let kind = serde_json::from_str::<serde_json::Value>(&text).unwrap()["kind"]
            .as_str()
            .unwrap_or("x")
            .to_string();
        assert!(
            schemas.check(&kind, &text).is_err(),
            "invalid fixture accepted: {text}"
        );
    }
}

#[test]
fn systemd_units_stop_with_sigterm_and_outlast_the_drain_grace() {
    let config = Config::load(&repo().join("streams.toml")).unwrap();
    for unit in ["weir.service", "weir@.service"] {
        let text = std::fs::read_to_string(repo().join("ops/systemd").join(unit)).unwrap();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{unit} has no {key}"))
        };
        assert_eq!(value("KillSignal"), "SIGTERM", "{unit}");
        let stop: f64 = value("TimeoutStopSec").parse().unwrap();
        assert!(
            stop > config.shutdown_grace.as_secs_f64() + 5.0,
            "{unit}: TimeoutStopSec {stop} must exceed shutdown_grace_seconds"
        );
        let exec = value("ExecStart");
        assert!(exec.contains(" run -c "), "{unit}: {exec}");
        // The unit's command line parses: same flags, our binary.
        let args: Vec<&str> = exec
            .split_whitespace()
            .skip(1)
            .map(|a| if a == "%i" { "bus-general" } else { a })
            .collect();
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args[2] = repo().join("streams.toml").display().to_string();
        args.push("--help".into());
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{unit}: `weir {}` is not a valid command line",
            args.join(" ")
        );
    }
}

/// A shell command line split into words: spaces separate, single quotes group.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => (word, any) = (word + &c.to_string(), true),
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// The README's quick start, end to end on the shipped config: the envelope carries its id in
/// the body (`[stream] event_id = "/id"`), and the handler and the log both show it; its
/// `x-phpgrc-*` headers pass the shipped `[schemas] align`, and the same event with a header
/// that disagrees is dead-lettered `invalid`.
#[test]
fn the_quick_start_event_shows_its_envelope_id_in_handler_and_log() {
    let server = RedisServer::start();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let xadd = readme
        .lines()
        .find(|l| l.starts_with("redis-cli XADD integration-bus '*' type incident.event "))
        .expect("the quick start's XADD");
    let words = shell_words(xadd);
    assert_eq!(words[..4], ["redis-cli", "XADD", "integration-bus", "*"]);
    let fields = &words[4..];
    let data = fields
        .chunks(2)
        .find(|kv| kv[0] == "data")
        .map(|kv| kv[1].clone())
        .unwrap();
    assert!(
        fields.iter().any(|w| w.starts_with("x-phpgrc-")),
        "the quick start shows the aligned headers: {xadd}"
    );
    let id = serde_json::from_str::<serde_json::Value>(&data).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("weir.log");
    let shipped = repo().join("streams.toml");
    let mut child = weir(&repo(), &["run", "-c", shipped.to_str().unwrap()])
        .env("WEIR_REDIS__URL", server.url())
        .env("WEIR_HTTP__LISTEN", "127.0.0.1:0")
        .env("WEIR_LOGGING__SUMMARY_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let reaper = Reaper(child.id());
    let mut args: Vec<&str> = vec!["XADD", "integration-bus", "*"];
    args.extend(fields.iter().map(String::as_str));
    server.cli(&args);
    // The same event with a header that disagrees with the body.
    let misaligned: Vec<&str> = args
        .iter()
        .map(|w| {
            if *w == "servicenow" && args.contains(&"x-phpgrc-connector") {
                "jira"
            } else {
                w
            }
        })
        .collect();
    assert_ne!(
        misaligned, args,
        "the quick start carries x-phpgrc-connector servicenow"
    );
    let bad_id = server.cli(&misaligned);
    let deadline = Instant::now() + T;
    let line_with = |text: &str, needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
    };
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // At the default level a success has no line of its own (issue 24): the `log`
        // handler's line names the event, and the pool's summary counts it.
        let summary = text
            .lines()
            .find(|l| l.contains("pool summary") && l.contains("pool=\"bus-incident\""))
            .map(str::to_string);
        if let (Some(received), Some(summary)) = (line_with(&text, "event received"), summary) {
            assert!(
                received.contains(&format!("event_id=\"{id}\"")),
                "{received}"
            );
            assert!(summary.contains("processed=1"), "{summary}");
            assert!(summary.contains("p99_ms="), "{summary}");
            assert!(
                !text.contains("outcome=\"processed\""),
                "a success logged one line at the default level:\n{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no settled entry in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let dlq = server.cli(&["XRANGE", "integration-bus:dlq", "-", "+"]);
        if !dlq.is_empty() {
            assert_eq!(dlq.matches("dlq_source_id").count(), 1, "{dlq}");
            assert!(dlq.contains(&bad_id), "only the misaligned copy: {dlq}");
            assert!(
                dlq.contains("invalid") && dlq.contains("field `x-phpgrc-connector` is \"jira\""),
                "{dlq}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the misaligned copy was not dead-lettered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(reaper);
    let _ = child.wait();
}
