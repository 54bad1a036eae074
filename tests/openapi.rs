//! The OpenAPI document is the truth (issue 22 item 12): the document a live engine serves
//! passes a standard validator (openapi-spec-validator), and requests generated from it
//! (schemathesis, every check) find the engine answering as it says — statuses, bodies,
//! headers, what it accepts and what it refuses. Both tools come from PyPI, installed on
//! first use into `target/openapi-tools` by `ops/openapi-tools.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const ADMIN: &str = "adm-openapi-token-XYZ";
/// Generated requests per operation and phase (the coverage phase adds each parameter's
/// edges and each keyword's violations).
const EXAMPLES: &str = "5";
/// The run's time budget, seconds: phases repeat with new cases until it is spent, so the
/// test takes as long on a busy machine as on an idle one (and finds less, not fails).
const BUDGET: &str = "40";
/// A fixed seed: a failure reproduces with the same command.
const SEED: &str = "22";

/// The tools' directory, installed if missing; panics saying how to install them.
fn tools() -> PathBuf {
    let bin = repo().join("target/openapi-tools/bin");
    let script = repo().join("ops/openapi-tools.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "installing openapi-spec-validator and schemathesis failed (run `ops/openapi-tools.sh`; \
         it needs python3 with the venv module and PyPI):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn toml(server: &RedisServer, stream: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 2
[redis]
url = "{url}"
[stream]
name = "{stream}"
partitions = 2
[retry]
max_attempts = 1
retry_seconds = 0.1
[http]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
[[pools]]
name = "p"
types = ["t.ok", "t.bad"]
handler = {{ kind = "noop" }}
[[pools]]
name = "q"
types = ["t.q"]
handler = {{ kind = "noop" }}
"#,
        url = server.url(),
    )
}

/// Runs `program args` in `dir` (at most 3 minutes); panics with its output unless it succeeds.
async fn passes(what: &str, program: &Path, args: &[&str], dir: &Path) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        // The one rule JSON Schema cannot state (since ≤ until), kept by the generator.
        .env(
            "SCHEMATHESIS_HOOKS",
            repo().join("tests/fixtures/openapi_hooks.py"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 3 minutes"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}): {} {}\n{}\n{}",
        out.status,
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_openapi_and_the_engine_answers_as_it_says() {
    let bin = tools();
    let server = RedisServer::start();
    let stream = stream_name("openapi");
    let handler = Recorder::with(|d| match d.event_type.as_str() {
        "t.bad" => Outcome::permanent("bad on purpose"),
        _ => Outcome::Success,
    });
    let cfg = config(&toml(&server, &stream));
    let engine = Engine::new(cfg.clone())
        .with_handler("p", handler)
        .with_handler("q", Recorder::ok());
    let running = run(engine);
    let base = running.url("/api/v1").await;

    // Something to list, show, reprocess and forget, on both partitions.
    let schemas = std::sync::Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::Publisher::new(server.client().await, &cfg, schemas);
    for n in 0..6 {
        let event = weir::NewEvent {
            event_type: if n % 2 == 0 { "t.ok" } else { "t.bad" }.into(),
            data: format!("{{\"n\":{n}}}"),
            id: None,
            fields: Default::default(),
            key: Some(format!("k{n}")),
        };
        publisher.publish(&event).await.unwrap().unwrap();
    }
    let client = reqwest::Client::new();
    wait_for("three dead letters", Duration::from_secs(20), || async {
        let stats = client
            .get(format!("{base}/dlq/stats"))
            .bearer_auth(ADMIN)
            .send()
            .await;
        match stats {
            Ok(r) => {
                let text = r.text().await.unwrap();
                serde_json::from_str::<serde_json::Value>(&text).unwrap()["total"] == 3
            }
            Err(_) => false,
        }
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let document = client
        .get(format!("{base}/openapi.json"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    passes(
        "openapi-spec-validator",
        &bin.join("openapi-spec-validator"),
        &[file.to_str().unwrap()],
        dir.path(),
    )
    .await;

    let auth = format!("Authorization: Bearer {ADMIN}");
    let url = format!("{base}/openapi.json");
    passes(
        "schemathesis (against `weir run` with this test's config, SCHEMATHESIS_HOOKS=tests/fixtures/openapi_hooks.py)",
        &bin.join("schemathesis"),
        &[
            "run",
            &url,
            "--header",
            &auth,
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--max-time",
            BUDGET,
            "--seed",
            SEED,
            // One worker: CPython 3.11's parser is not safe across schemathesis's threads
            // ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--no-shrink",
        ],
        dir.path(),
    )
    .await;
    running.stop().await;
}
