//! `[schemas] align` (contract §12): entry fields that must carry the body's value. The engine
//! dead-letters a mismatch `invalid`; `weir publish` (one event and NDJSON) and
//! `weir validate --field` refuse it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use weir::Engine;

use crate::support::*;

const T: Duration = Duration::from_secs(20);

const ALIGN: &str = r#"align = { "x-kind" = "/kind", "x-connector" = "/connectorKey", "x-run" = "/runId", "x-n" = "/n", type = "/kind" }"#;

/// A config with the shipped schemas (or none) and the alignment above; one pool takes all.
fn toml(server: &RedisServer, stream: &str, schemas: bool) -> String {
    let dir = if schemas {
        format!("dir = {:?}\n", repo().join("schemas"))
    } else {
        String::new()
    };
    format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[schemas]\n{dir}{ALIGN}\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url()
    )
}

fn xadd(server: &RedisServer, stream: &str, fields: &[(&str, &str)], data: &str) -> String {
    let mut args = vec!["XADD", stream, "*"];
    for (k, v) in fields {
        args.extend([*k, *v]);
    }
    args.extend(["data", data]);
    server.cli(&args)
}

/// Dead letters of `stream` as (source entry ID, reason, error).
fn dead_letters(server: &RedisServer, stream: &str) -> Vec<(String, String, String)> {
    let text = server.cli(&["XRANGE", &format!("{stream}:dlq"), "-", "+"]);
    let lines: Vec<&str> = text.lines().collect();
    let value = |from: usize, name: &str| {
        lines[from..]
            .iter()
            .position(|l| *l == name)
            .map(|i| lines[from + i + 1].to_string())
            .unwrap_or_default()
    };
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "dlq_source_id")
        .map(|(i, _)| {
            let start = lines[..i].iter().rposition(|l| *l == "type").unwrap_or(0);
            (
                lines[i + 1].to_string(),
                value(start, "dlq_reason"),
                value(start, "dlq_error"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_engine_dead_letters_misaligned_entries_naming_field_pointer_and_values() {
    let server = RedisServer::start();
    let stream = stream_name("align");
    let handler = Recorder::ok();
    let running =
        run(Engine::new(config(&toml(&server, &stream, true))).with_handler("p", handler.clone()));
    let body = envelope("incident.event");
    let t = ("type", "incident.event");
    let aligned = xadd(
        &server,
        &stream,
        &[
            t,
            ("x-kind", "incident.event"),
            ("x-connector", "servicenow"),
        ],
        &body,
    );
    let no_headers = xadd(&server, &stream, &[t], &body);
    let wrong_connector = xadd(&server, &stream, &[t, ("x-connector", "jira")], &body);
    let no_run_id = xadd(&server, &stream, &[t, ("x-run", "run-7")], &body);
    let wrong_type = xadd(&server, &stream, &[("type", "asset.discovery")], &body);
    wait_for("three dead letters", T, || async {
        dead_letters(&server, &stream).len() == 3
    })
    .await;
    wait_for("two handled", T, || async { handler.count() == 2 }).await;
    let mut handled: Vec<String> = handler
        .seen()
        .iter()
        .map(|s| s.entry_id.to_string())
        .collect();
    handled.sort();
    assert_eq!(handled, [aligned, no_headers]);
    let letters = dead_letters(&server, &stream);
    let error_of = |id: &str| {
        let (_, reason, error) = letters
            .iter()
            .find(|(s, _, _)| s == id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered: {letters:?}"));
        assert_eq!(reason, "invalid", "{error}");
        error.clone()
    };
    let e = error_of(&wrong_connector);
    for part in [
        "`x-connector`",
        "\"jira\"",
        "/connectorKey",
        "\"servicenow\"",
    ] {
        assert!(e.contains(part), "{part} not in {e}");
    }
    let e = error_of(&no_run_id);
    assert!(
        e.contains("`x-run`") && e.contains("/runId") && e.contains("nothing there"),
        "{e}"
    );
    let e = error_of(&wrong_type);
    assert!(
        e.contains("`type` is \"asset.discovery\"") && e.contains("\"incident.event\""),
        "{e}"
    );
    running.stop().await;
}

/// Without schemas the body is parsed for alignment alone, and numbers compare as written.
#[tokio::test]
async fn alignment_holds_without_schemas_and_compares_numbers_as_text() {
    let server = RedisServer::start();
    let stream = stream_name("alignplain");
    let handler = Recorder::ok();
    let running =
        run(Engine::new(config(&toml(&server, &stream, false))).with_handler("p", handler.clone()));
    let ok = xadd(
        &server,
        &stream,
        &[("type", "k"), ("x-n", "7")],
        r#"{"kind":"k","n":7}"#,
    );
    let bad = xadd(
        &server,
        &stream,
        &[("type", "k"), ("x-n", "8")],
        r#"{"kind":"k","n":7}"#,
    );
    wait_for("one dead letter", T, || async {
        dead_letters(&server, &stream).len() == 1
    })
    .await;
    wait_for("one handled", T, || async { handler.count() == 1 }).await;
    assert_eq!(handler.seen()[0].entry_id.to_string(), ok);
    let (source, _, error) = &dead_letters(&server, &stream)[0];
    assert_eq!(source, &bad);
    assert!(
        error.contains("\"8\"") && error.contains("\"7\"") && error.contains("/n"),
        "{error}"
    );
    running.stop().await;
}

struct Cli {
    dir: tempfile::TempDir,
    stream: String,
}

impl Cli {
    fn new(server: &RedisServer) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let stream = stream_name("alignpub");
        std::fs::write(dir.path().join("streams.toml"), toml(server, &stream, true)).unwrap();
        Cli { dir, stream }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("streams.toml")
    }

    fn run(&self, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
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
        let out: Output = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn publish_refuses_a_misaligned_event_and_writes_nothing() {
    let server = RedisServer::start();
    let cli = Cli::new(&server);
    let body = envelope("incident.event");
    let publish = |fields: &[&str]| {
        let mut args = vec!["publish", "--type", "incident.event", "--data", "-"];
        for f in fields {
            args.extend(["--field", f]);
        }
        cli.run(&args, &body)
    };
    let (code, _, err) = publish(&["x-connector=jira"]);
    assert_eq!(code, Some(1), "{err}");
    for part in [
        "`x-connector`",
        "\"jira\"",
        "/connectorKey",
        "\"servicenow\"",
        "nothing was written",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0");
    let (code, _, err) = publish(&["x-run=r1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/runId") && err.contains("nothing there"),
        "{err}"
    );
    let (code, _, err) = cli.run(
        &["publish", "--type", "vendor.profile", "--data", "-"],
        &body,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("`type` is \"vendor.profile\""), "{err}");
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0");
    let (code, _, err) = publish(&["x-connector=servicenow", "x-kind=incident.event"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.cli(&["XLEN", &cli.stream]), "1");
}

#[test]
fn an_ndjson_batch_with_one_misaligned_line_writes_nothing() {
    let server = RedisServer::start();
    let cli = Cli::new(&server);
    let body = envelope("incident.event");
    let line = |connector: &str| {
        format!(
            r#"{{"type":"incident.event","data":{body},"fields":{{"x-connector":"{connector}"}}}}"#
        )
    };
    let mut lines: Vec<String> = (0..20).map(|_| line("servicenow")).collect();
    lines[12] = line("jira");
    let (code, _, err) = cli.run(&["publish", "--ndjson", "-"], &lines.join("\n"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("-:13:") && err.contains("`x-connector`") && err.contains("1 invalid line(s)"),
        "{err}"
    );
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0");
    lines[12] = line("servicenow");
    let (code, _, err) = cli.run(&["publish", "--ndjson", "-"], &lines.join("\n"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.cli(&["XLEN", &cli.stream]), "20");
}

#[test]
fn validate_checks_fields_against_the_alignment() {
    let server = RedisServer::start();
    let cli = Cli::new(&server);
    let body = envelope("incident.event");
    let validate = |extra: &[&str]| {
        let mut args = vec!["validate", "--type", "incident.event", "-"];
        args.extend(extra);
        cli.run(&args, &body)
    };
    let (code, out, err) = validate(&[
        "--field",
        "x-connector=servicenow",
        "--field",
        "x-kind=incident.event",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = validate(&["--field", "x-connector=jira", "--json"]);
    assert_eq!(code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["pointer"], "/connectorKey");
    assert_eq!(report["errors"][0]["rule"], "align");
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("\"jira\"") && message.contains("\"servicenow\""),
        "{message}"
    );
    let (code, out, _) = cli.run(&["validate", "--type", "cyber.metric", "-"], &body);
    assert_eq!(code, Some(1));
    assert!(out.contains("`type` is \"cyber.metric\""), "{out}");
    let (code, _, err) = validate(&["--field", "novalue"]);
    assert_eq!(code, Some(2), "{err}");
}
