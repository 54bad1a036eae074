//! Operator commands of the `weir` binary against a real redis-server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::*;

mod ndjson;

struct Cli {
    dir: tempfile::TempDir,
    stream: String,
}

impl Cli {
    fn new(server: &RedisServer, test: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let stream = stream_name(test);
        let text = format!(
            "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\ndedup_window_seconds = 60\n{}[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n[[pools]]\nname = \"q\"\ntypes = [\"x\"]\nhandler = {{ kind = \"log\" }}\n",
            server.url(),
            schemas_section()
        );
        std::fs::write(dir.path().join("streams.toml"), text).unwrap();
        Cli { dir, stream }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("streams.toml")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .current_dir(self.dir.path())
            .arg("-c")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(path: &str) -> String {
    repo()
        .join("tests/fixtures")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn publish_validates_writes_fields_and_deduplicates_by_id() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "publish");
    let data = format!("@{}", fixture("valid/incident.event.json"));
    let out = cli.run(&[
        "publish",
        "--type",
        "incident.event",
        "--data",
        &data,
        "--id",
        "EV-1",
        "--field",
        "tenant=acme",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(first["duplicate"], false);
    let again = cli.run(&[
        "publish",
        "--type",
        "incident.event",
        "--data",
        &data,
        "--id",
        "EV-1",
        "--json",
    ]);
    let second: serde_json::Value = serde_json::from_str(&text(&again).0).unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["entryId"], first["entryId"]);
    assert_eq!(
        server.cli(&["XLEN", &cli.stream]),
        "1",
        "a duplicate id wrote a second entry"
    );
    let entry = server.cli(&["XRANGE", &cli.stream, "-", "+"]);
    for expected in [
        "type",
        "incident.event",
        "id",
        "EV-1",
        "tenant",
        "acme",
        "INC0012345",
    ] {
        assert!(entry.contains(expected), "entry lacks {expected}: {entry}");
    }
    let ttl: i64 = server
        .cli(&["TTL", &format!("{}:dedup:EV-1", cli.stream)])
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&ttl),
        "dedup key lives for the configured window, got {ttl}"
    );

    // stdin works too
    let json = std::fs::read_to_string(fixture("valid/incident.event.json")).unwrap();
    let out = cli.run_with_stdin(
        &["publish", "--type", "incident.event", "--data", "-"],
        &json,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(server.cli(&["XLEN", &cli.stream]), "2");
}

#[test]
fn invalid_publishes_write_nothing_and_exit_1_with_the_pointer() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "invalid");
    let missing = format!("@{}", fixture("invalid/missing-payload-field.json"));
    let cases: [(&[&str], &str); 4] = [
        (
            &["publish", "--type", "incident.event", "--data", &missing],
            "/payload",
        ),
        (
            &["publish", "--type", "incident.event", "--data", "{not json"],
            "not valid JSON",
        ),
        (
            &[
                "publish",
                "--type",
                "incident.event",
                "--data",
                &missing,
                "--field",
                "dlq_reason=x",
            ],
            "reserved",
        ),
        (&["publish", "--type", "", "--data", "{}"], "type"),
    ];
    for (args, needle) in cases {
        let out = cli.run(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("nothing was written"),
            "{args:?}: {stderr}"
        );
    }
    let out = cli.run(&[
        "publish",
        "--type",
        "incident.event",
        "--data",
        "{}",
        "--field",
        "novalue",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed flag is a usage error"
    );
    assert_eq!(
        server.cli(&["EXISTS", &cli.stream]),
        "0",
        "something was written"
    );
}

#[test]
fn ndjson_batches_are_checked_first_then_written_in_order() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "ndjson");
    let envelope = envelope("incident.event");
    let good = |i: usize| {
        format!("{{\"type\":\"incident.event\",\"data\":{envelope},\"fields\":{{\"n\":\"{i}\"}}}}")
    };
    let mut lines: Vec<String> = (0..2500).map(good).collect();
    lines.insert(
        1200,
        "{\"type\":\"incident.event\",\"data\":{\"x\":1}}".into(),
    );
    lines.insert(1800, "not json at all".into());
    let path = cli.dir.path().join("batch.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = cli.run(&["publish", "--ndjson", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("batch.ndjson:1201:") && stderr.contains("batch.ndjson:1801:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 invalid line(s)") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0");

    let mut lines: Vec<String> = (0..2500).map(good).collect();
    lines.insert(
        10,
        format!("{{\"type\":\"incident.event\",\"data\":{envelope},\"id\":\"dup\"}}"),
    );
    lines.insert(
        20,
        format!("{{\"type\":\"incident.event\",\"data\":{envelope},\"id\":\"dup\"}}"),
    );
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = cli.run(&["publish", "--ndjson", path.to_str().unwrap(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["published"], 2501);
    assert_eq!(summary["duplicates"], 1);
    assert_eq!(server.cli(&["XLEN", &cli.stream]), "2501");
    let first = server.cli(&["XRANGE", &cli.stream, "-", "+", "COUNT", "1"]);
    assert!(first.contains("\nn\n0"), "order kept: {first}");
    let last = server.cli(&["XREVRANGE", &cli.stream, "+", "-", "COUNT", "1"]);
    assert!(last.contains("\nn\n2499"), "order kept: {last}");
}

#[test]
fn validate_lists_every_error_with_its_path() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "validate");
    let ok = cli.run(&[
        "validate",
        "--type",
        "incident.event",
        &fixture("valid/incident.event.json"),
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok).1);
    assert!(text(&ok).0.contains("valid incident.event"));
    let two_errors = r#"{"id":"x","busVersion":"1.0.0","connectorKey":"c","kind":"indicator.metric","event":"a.b","emittedAt":"2026-01-01T00:00:00Z","payload":{"indicatorId":"i","value":"high","observedAt":"2026-01-01T00:00:00Z"},"provenance":{"source":"s","externalId":"e","ingestedAt":"2026-01-01T00:00:00Z"}}"#;
    let bad = cli.run_with_stdin(
        &["validate", "--type", "indicator.metric", "-", "--json"],
        two_errors,
    );
    assert_eq!(bad.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&text(&bad).0).unwrap();
    assert_eq!(report["valid"], false);
    let pointers: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/id") && pointers.contains(&"/payload/value"),
        "{report}"
    );
    let missing = cli.run(&["validate", "--type", "incident.event", "no-such-file.json"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn pause_and_resume_use_the_paused_set_and_reject_unknown_pools() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "pause");
    let key = format!("{}:paused", cli.stream);
    assert_eq!(cli.run(&["pause", "q"]).status.code(), Some(0));
    assert_eq!(server.cli(&["SMEMBERS", &key]), "q");
    let again = cli.run(&["pause", "q", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&text(&again).0).unwrap();
    assert_eq!(report["changed"], false);
    assert_eq!(cli.run(&["resume", "q"]).status.code(), Some(0));
    assert_eq!(server.cli(&["SCARD", &key]), "0");
    let unknown = cli.run(&["pause", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).1.contains("no pool named `nope`"));
}

#[test]
fn an_unreachable_redis_is_exit_1_naming_the_redacted_url() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1: nothing listens there.
    let port = 1;
    let path: &Path = &dir.path().join("streams.toml");
    std::fs::write(path, format!("[redis]\nurl = \"redis://app:hunter2@127.0.0.1:{port}/0\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(path)
        .args(["pause", "p"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("redis://app:***@127.0.0.1:{port}/0")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn connection_errors_read_as_words_not_rust_debug_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("streams.toml");
    std::fs::write(path, "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = { kind = \"log\" }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(path)
        .arg("status")
        .env("WEIR_REDIS__URL", "redis://ops:hunter2@127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("Os {"), "{stderr}");
    assert!(!stderr.contains("kind:"), "{stderr}");
    assert!(
        stderr.contains("redis://ops:***@127.0.0.1:1: connection refused (os error 111)"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn status_reports_pending_lag_oldest_age_and_paused_per_pool() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "status");
    let s = cli.stream.as_str();
    for i in 0..3 {
        server.cli(&[
            "XADD",
            s,
            "*",
            "type",
            "x",
            "data",
            &format!("{{\"i\":{i}}}"),
        ]);
    }
    server.cli(&[
        "XADD",
        &format!("{s}:dlq"),
        "*",
        "type",
        "x",
        "dlq_reason",
        "invalid",
    ]);
    server.cli(&["XGROUP", "CREATE", s, "q", "0"]);
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "q",
        "c1",
        "COUNT",
        "2",
        "STREAMS",
        s,
        ">",
    ]);
    server.cli(&["XGROUP", "CREATE", s, "stranger", "$"]);
    server.cli(&["SADD", &format!("{s}:paused"), "q"]);
    let out = cli.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(report["streamLength"], 3);
    assert_eq!(report["dlqLength"], 1);
    assert_eq!(report["otherGroups"], serde_json::json!(["stranger"]));
    let pools = report["pools"].as_array().unwrap();
    let p = pools.iter().find(|p| p["name"] == "p").unwrap();
    assert_eq!(p["exists"], false);
    let q = pools.iter().find(|p| p["name"] == "q").unwrap();
    assert_eq!(
        (q["exists"].clone(), q["paused"].clone()),
        (serde_json::json!(true), serde_json::json!(true))
    );
    assert_eq!(
        (
            q["consumers"].as_u64(),
            q["pending"].as_u64(),
            q["lag"].as_u64()
        ),
        (Some(1), Some(2), Some(1))
    );
    let age = q["oldestPendingAgeSeconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("AOF"))
    );
    let human = cli.run(&["status"]);
    assert!(text(&human).0.contains("paused"), "{}", text(&human).0);
}

#[test]
fn stray_weir_variables_are_ignored_and_real_overrides_apply() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    // The file points at nothing; only the WEIR_REDIS__URL override makes `status` work.
    std::fs::write(&path, "[redis]\nurl = \"redis://127.0.0.1:1/0\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = { kind = \"log\" }\n").unwrap();
    let weir = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(&path)
            .arg("status")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.code(), text(&out).1)
    };
    let url = server.url();
    let (code, stderr) = weir(&[
        ("WEIR_BIN", "/usr/local/bin/weir"),
        ("WEIR_FOO__BAR", "1"),
        ("WEIR_REDIS__URL", &url),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // A misspelled key under a real section is refused, naming the key and the variable.
    let (code, stderr) = weir(&[("WEIR_REDIS__URL", &url), ("WEIR_REDIS__URLL", &url)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("redis.urll") && stderr.contains("WEIR_REDIS__URLL"),
        "{stderr}"
    );
}

#[test]
fn publishing_a_type_no_pool_takes_is_refused_unless_allowed() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "unrouted");
    let s = cli.stream.as_str();
    // No "*" pool here (Cli::new has one, which routes everything).
    let text_config = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{s}\"\n[[pools]]\nname = \"p\"\ntypes = [\"b.type\", \"a.type\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url()
    );
    std::fs::write(cli.config(), text_config).unwrap();
    let out = cli.run(&["publish", "--type", "nope.type", "--data", "{}"]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nope.type") && stderr.contains("routed types: a.type, b.type"),
        "{stderr}"
    );
    assert_eq!(server.cli(&["XLEN", s]), "0");

    let lines = "{\"type\":\"a.type\",\"data\":{}}\n{\"type\":\"nope.type\",\"data\":{}}\n";
    let path = cli.dir.path().join("batch.ndjson");
    std::fs::write(&path, lines).unwrap();
    let out = cli.run(&["publish", "--ndjson", path.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("batch.ndjson:2: no pool takes type `nope.type`"),
        "{stderr}"
    );
    assert_eq!(server.cli(&["XLEN", s]), "0", "all or nothing");

    let out = cli.run(&[
        "publish",
        "--type",
        "nope.type",
        "--data",
        "{}",
        "--allow-unrouted",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let out = cli.run(&[
        "publish",
        "--ndjson",
        path.to_str().unwrap(),
        "--allow-unrouted",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(server.cli(&["XLEN", s]), "3");
}

#[test]
fn every_json_flag_has_help_text() {
    let commands: &[&[&str]] = &[
        &["publish"],
        &["validate"],
        &["pause"],
        &["resume"],
        &["status"],
        &["replay"],
        &["dlq", "list"],
        &["dlq", "show"],
        &["dlq", "stats"],
        &["dlq", "reprocess"],
        &["dlq", "forget"],
        &["dlq", "purge"],
    ];
    for command in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        let help = text(&out).0;
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command:?}: no --json in\n{help}"));
        assert!(
            line.trim_start().trim_start_matches("--json").trim().len() > 10,
            "{command:?}: --json has no help text: {line:?}"
        );
    }
}

#[test]
fn publish_dedups_by_the_body_id_when_event_id_points_at_it() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "bodyid");
    let text_config = std::fs::read_to_string(cli.config()).unwrap().replace(
        "dedup_window_seconds = 60\n",
        "dedup_window_seconds = 60\nevent_id = \"/id\"\n",
    );
    std::fs::write(cli.config(), text_config).unwrap();
    let data = envelope("incident.event");
    let id = serde_json::from_str::<serde_json::Value>(&data).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let publish = || {
        cli.run(&[
            "publish",
            "--type",
            "incident.event",
            "--data",
            &data,
            "--json",
        ])
    };
    let first: serde_json::Value = serde_json::from_slice(&publish().stdout).unwrap();
    let second = publish();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second).1);
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["entryId"], first["entryId"]);
    assert_eq!(server.cli(&["XLEN", &cli.stream]), "1");
    assert_eq!(
        server.cli(&["EXISTS", &format!("{}:dedup:{id}", cli.stream)]),
        "1"
    );
}
