//! Dead-letter operations that must touch exactly what the operator named and report exactly
//! what they did: colliding IDs across partitions (item 4), letters reprocess cannot move and
//! operations stopped midway (item 9), unrouted letters routed again by type (item 11).
//!
//! Numbers held to: with two partitions holding `1000-0`, a bare ID deletes nothing (409 /
//! exit 2, both candidates listed) and a qualified one deletes one letter; a reprocess of 4
//! letters of which 2 cannot move moves 2 and names the other 2; a reprocess or purge of
//! 1,200 letters stopped after its first page reports exactly 500.

use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weir::dlq::{self, Filter, Selection};
use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const ADMIN: &str = "adm-partition-token-7Q";

fn toml(server: &RedisServer, stream: &str, partitions: usize, port: u16, pools: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 2
[redis]
url = "{url}"
[stream]
name = "{stream}"
partitions = {partitions}
[retry]
max_attempts = 1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:{port}"
{pools}
"#,
        url = server.url(),
    )
}

/// A dead letter written by hand with an explicit ID (`*` for a new one).
fn letter(server: &RedisServer, dlq: &str, id: &str, ty: &str) -> String {
    server
        .cli(&[
            "XADD",
            dlq,
            id,
            "type",
            ty,
            "data",
            "{}",
            "dlq_group",
            "p",
            "dlq_reason",
            "rejected",
            "dlq_source_id",
            "1-0",
        ])
        .trim()
        .to_string()
}

fn xlen(server: &RedisServer, key: &str) -> u64 {
    server.cli(&["XLEN", key]).trim().parse().unwrap()
}

async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn weir(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// Item 4: two partitions' DLQs both hold `1000-0` (and later `3000-0`). The API and the CLI
/// name each letter with its partition; a bare ID held twice is refused with both
/// candidates; a qualified one (its `/` sent as `%2F`) touches exactly one letter.
#[tokio::test]
async fn colliding_dlq_ids_across_partitions_are_named_and_touched_one_at_a_time() {
    let server = RedisServer::start();
    let stream = stream_name("part-ids");
    let pools = format!(
        "admin_token = \"{ADMIN}\"\n[[pools]]\nname = \"p\"\ntypes = [\"t.ok\", \"t.x\"]\nhandler = {{ kind = \"noop\" }}\n"
    );
    let text = toml(&server, &stream, 2, 0, &pools);
    let cfg = config(&text);
    let dlqs: Vec<String> = cfg
        .stream
        .partition_list()
        .into_iter()
        .map(|p| p.dlq)
        .collect();
    for dlq in &dlqs {
        assert_eq!(letter(&server, dlq, "1000-0", "t.x"), "1000-0");
    }
    letter(&server, &dlqs[1], "2000-0", "t.x");
    let running = run(Engine::new(cfg.clone()));
    let api = running.url("/api/v1").await;

    let (status, list) = call("GET", &format!("{api}/dlq"), None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0/1000-0", "1/1000-0", "1/2000-0"]);

    let (status, one) = call("GET", &format!("{api}/dlq/1%2F1000-0"), None).await;
    assert_eq!(
        (status, one["id"].as_str()),
        (200, Some("1/1000-0")),
        "{one}"
    );

    // A bare ID held twice: 409 with both candidates, nothing deleted or moved.
    let (status, refused) = call("DELETE", &format!("{api}/dlq/1000-0"), None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["candidates"], json!(["0/1000-0", "1/1000-0"]));
    let (status, refused) = call("GET", &format!("{api}/dlq/1000-0"), None).await;
    assert_eq!(status, 409, "{refused}");
    let body = json!({"ids": ["1000-0"]});
    let (status, refused) = call("POST", &format!("{api}/dlq/reprocess"), Some(body)).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!((xlen(&server, &dlqs[0]), xlen(&server, &dlqs[1])), (1, 2));

    // Qualified: exactly one letter. A bare ID one partition alone holds is that one.
    let (status, gone) = call("DELETE", &format!("{api}/dlq/0%2F1000-0"), None).await;
    assert_eq!((status, gone["deleted"].as_u64()), (200, Some(1)), "{gone}");
    assert_eq!((xlen(&server, &dlqs[0]), xlen(&server, &dlqs[1])), (0, 2));
    let (status, gone) = call("DELETE", &format!("{api}/dlq/2000-0"), None).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(xlen(&server, &dlqs[1]), 1);
    let (status, bad) = call("DELETE", &format!("{api}/dlq/5%2F1000-0"), None).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("id")), "{bad}");
    let body = json!({"ids": ["1/1000-0"]});
    let (status, moved) = call("POST", &format!("{api}/dlq/reprocess"), Some(body)).await;
    assert_eq!((status, moved["moved"].as_u64()), (200, Some(1)), "{moved}");
    assert_eq!(xlen(&server, &dlqs[1]), 0);
    running.stop().await;

    // The CLI: the same names; a bare ID held twice is exit 2 listing both.
    for dlq in &dlqs {
        letter(&server, dlq, "3000-0", "t.x");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, &text).unwrap();
    let listed = weir(&path, &["dlq", "list", "--json"]);
    let listed: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = listed.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0/3000-0", "1/3000-0"]);
    let out = weir(&path, &["dlq", "forget", "3000-0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("0/3000-0") && stderr.contains("1/3000-0"),
        "{stderr}"
    );
    assert_eq!((xlen(&server, &dlqs[0]), xlen(&server, &dlqs[1])), (1, 1));
    let out = weir(&path, &["dlq", "show", "1/3000-0", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let out = weir(&path, &["dlq", "forget", "1/3000-0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!((xlen(&server, &dlqs[0]), xlen(&server, &dlqs[1])), (1, 0));
}

/// Item 9: among four letters, one has nothing to copy and one is wider than a script can
/// copy. Reprocess moves the other two, names the two it skipped with why (API and CLI), and
/// the audit log has a line before and after with the counts, the filter and the client's
/// address; a 401 is logged without the token.
#[tokio::test]
async fn reprocess_skips_letters_it_cannot_move_moves_the_rest_and_audits_exactly_that() {
    let server = RedisServer::start();
    let stream = stream_name("part-skip");
    let dlq = format!("{stream}:dlq");
    let good = letter(&server, &dlq, "*", "t.x");
    let empty = server
        .cli(&[
            "XADD",
            &dlq,
            "*",
            "dlq_reason",
            "rejected",
            "dlq_group",
            "p",
        ])
        .trim()
        .to_string();
    let redis = server.client().await;
    let names: Vec<String> = (0..4_000).map(|i| format!("f{i}")).collect();
    let mut fields: Vec<(&str, &[u8])> = vec![("type", b"t.x"), ("data", b"{}")];
    fields.extend(names.iter().map(|n| (n.as_str(), n.as_bytes())));
    let wide = redis.add(&dlq, &fields).await.unwrap().to_string();
    let good2 = letter(&server, &dlq, "*", "t.x");

    let port = free_port();
    let pools = "[[pools]]\nname = \"p\"\ntypes = [\"t.x\"]\nhandler = { kind = \"noop\" }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, toml(&server, &stream, 1, port, pools)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--log-format", "json", "-c", path.to_str().unwrap()])
        .env("WEIR_LOG", "info")
        .env("WEIR_HTTP__ADMIN_TOKEN", ADMIN)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the engine's HTTP listener", T, || async {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;

    let body = json!({"all": true});
    let (status, done) = call("POST", &format!("{base}/api/v1/dlq/reprocess"), Some(body)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["moved"], 2, "{done}");
    assert_eq!(done["complete"], true, "{done}");
    let skipped = done["skipped"].as_array().unwrap();
    let ids: Vec<&str> = skipped.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [empty.as_str(), wide.as_str()], "{done}");
    assert!(
        skipped[0]["error"]
            .as_str()
            .unwrap()
            .contains("nothing to copy"),
        "{done}"
    );
    assert!(
        skipped[1]["error"].as_str().unwrap().contains("too wide"),
        "{done}"
    );
    let left: Vec<String> = redis
        .range(&dlq, "-", "+", 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(left, [empty.clone(), wide.clone()]);
    let copies = redis.range(&stream, "-", "+", 10).await.unwrap();
    let sources: Vec<String> = copies.iter().map(|e| field(e, "type")).collect();
    assert_eq!(
        sources,
        ["t.x", "t.x"],
        "the two good letters, and only them"
    );
    assert!(!good.is_empty() && !good2.is_empty());
    let (status, _) = reqwest::Client::new()
        .post(format!("{base}/api/v1/dlq/purge"))
        .bearer_auth("wrong-token-zz")
        .body(r#"{"all": true}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401);

    // The CLI names them too, and exits 1: not everything moved.
    let out = weir(&path, &["dlq", "reprocess", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reprocessed"], 0);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 2, "{report}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    for secret in [ADMIN, "wrong-token-zz"] {
        assert!(!logs.contains(secret), "a token in the logs:\n{logs}");
    }
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let with = |message: &str| -> Vec<&Value> {
        lines.iter().filter(|v| v["message"] == message).collect()
    };
    let started = with("admin API write started");
    assert_eq!(started.len(), 1, "{logs}");
    assert_eq!(started[0]["action"], "dlq.reprocess");
    assert_eq!(started[0]["filter"], "all");
    assert!(
        started[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{logs}"
    );
    let ended = with("admin API write");
    assert_eq!(ended.len(), 1, "{logs}");
    assert_eq!(
        (
            &ended[0]["entries"],
            &ended[0]["skipped"],
            &ended[0]["complete"]
        ),
        (&json!(2), &json!(2), &json!(true)),
        "{logs}"
    );
    assert_eq!(ended[0]["by_type"], r#"{"t.x":2}"#);
    let refused = with("admin API refused");
    assert_eq!(refused.len(), 1, "{logs}");
    assert_eq!(refused[0]["status"], 401);
}

/// Lets an operation do its first page, then stops it, as a deadline would.
fn after_one_page<T>() -> impl FnMut(&T) -> ControlFlow<String> + Send {
    let mut pages = 0;
    move |_| {
        pages += 1;
        if pages == 1 {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break("out of time".to_string())
        }
    }
}

/// Item 9: an operation stopped between pages (the API stops before its request timeout)
/// reports exactly what it moved or deleted, and touched nothing past that.
#[tokio::test]
async fn a_reprocess_or_purge_stopped_midway_reports_exactly_what_it_did() {
    let server = RedisServer::start();
    let stream = stream_name("part-stop");
    let dlq = format!("{stream}:dlq");
    let cfg = config(&toml(
        &server,
        &stream,
        1,
        0,
        "[[pools]]\nname = \"p\"\ntypes = [\"t.ok\"]\n",
    ));
    let redis = server.client().await;
    for _ in 0..1_200 {
        redis
            .add(
                &dlq,
                &[
                    ("type", b"t.x" as &[u8]),
                    ("data", b"{}"),
                    ("dlq_group", b"p"),
                ],
            )
            .await
            .unwrap();
    }
    let all = Selection::Matching(Filter::default());
    let done = dlq::reprocess(&redis, &cfg, &all, false, after_one_page())
        .await
        .unwrap();
    assert_eq!((done.moved, done.complete), (500, false));
    assert_eq!(done.stopped.as_deref(), Some("out of time"));
    assert_eq!(done.by_type["t.x"], 500);
    assert_eq!(xlen(&server, &dlq), 700);
    assert_eq!(xlen(&server, &stream), 500);

    let purged = dlq::purge(&redis, &cfg, &Filter::default(), after_one_page())
        .await
        .unwrap();
    assert_eq!((purged.deleted, purged.complete), (500, false));
    assert_eq!(purged.by_type["t.x"], 500);
    assert_eq!(xlen(&server, &dlq), 200);
}

/// Item 11: an `unrouted` letter names the first pool as `dlq_group`, but that pool never
/// took its type. Once the config routes the type, reprocess sends it to the pool that
/// lists it now (no `replay_group`), instead of back to the first pool, which skipped it.
#[tokio::test]
async fn an_unrouted_letter_is_routed_again_by_type_when_reprocessed() {
    let server = RedisServer::start();
    let stream = stream_name("part-unrouted");
    let dlq = format!("{stream}:dlq");
    let before = "[[pools]]\nname = \"first\"\ntypes = [\"a\"]\n[[pools]]\nname = \"second\"\ntypes = [\"b\"]\n";
    let running = run(Engine::new(config(&toml(&server, &stream, 1, 0, before)))
        .with_handler("first", Recorder::ok())
        .with_handler("second", Recorder::ok()));
    let redis = server.client().await;
    publish(&redis, &stream, "c", "{\"n\":1}").await;
    wait_for("the unrouted letter", T, || async {
        xlen(&server, &dlq) == 1
    })
    .await;
    running.stop().await;
    let dead = redis.range(&dlq, "-", "+", 1).await.unwrap();
    assert_eq!(field(&dead[0], "dlq_reason"), "unrouted");
    assert_eq!(field(&dead[0], "dlq_group"), "first");

    let after = "[[pools]]\nname = \"first\"\ntypes = [\"a\"]\n[[pools]]\nname = \"second\"\ntypes = [\"b\", \"c\"]\n";
    let cfg = config(&toml(&server, &stream, 1, 0, after));
    let second = Recorder::with(|_| Outcome::Success);
    let first = Recorder::ok();
    let running = run(Engine::new(cfg.clone())
        .with_handler("first", first.clone())
        .with_handler("second", second.clone()));
    let all = Selection::Matching(Filter::default());
    let done = dlq::reprocess(&redis, &cfg, &all, false, |_: &_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert_eq!(done.moved, 1);
    wait_for("the pool that lists `c` now handled it", T, || async {
        second.seen().iter().any(|s| s.event_type == "c")
    })
    .await;
    assert_eq!(first.count(), 0);
    assert_eq!(xlen(&server, &dlq), 0, "not dead-lettered again");
    let copy = redis.range(&stream, "-", "+", 10).await.unwrap();
    let copy = copy.last().unwrap();
    assert_eq!(field(copy, "replay_of"), field(&dead[0], "dlq_source_id"));
    assert_eq!(copy.field("replay_group"), None);
    running.stop().await;
}
