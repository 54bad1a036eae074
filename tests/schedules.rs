//! Recurring schedules (contract §13): each tick published once across engines, catch-up
//! after downtime as `catch_up` says, a kill -9 losing and doubling nothing, pause and
//! resume from the CLI and the API, and start-up refusing a schedule whose event breaks the
//! schemas. The DST rules and the config errors are unit tests (`schedule/cron.rs`,
//! `config/validate/schedule.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir::Engine;
use weir::redis::Redis;

use crate::support::*;

const ADMIN: &str = "adm-schedules-token";

/// A config with one noop pool taking `tick`, the admin API on, and `schedules` appended.
fn toml(server: &RedisServer, stream: &str, schedules: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 2
[redis]
url = "{url}"
[stream]
name = "{stream}"
[http]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
[[pools]]
name = "p"
types = ["tick"]
handler = {{ kind = "noop" }}
{schedules}
"#,
        url = server.url(),
    )
}

fn every_second(name: &str, catch_up: &str) -> String {
    format!(
        "[[schedules]]\nname = \"{name}\"\nevery = \"1s\"\ntype = \"tick\"\ndata = '{{\"n\": 1}}'\ncatch_up = \"{catch_up}\"\n"
    )
}

/// A published tick: its `scheduled_for`, its event id and when the stream got it (the
/// entry ID's ms).
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    at: i64,
    id: String,
    written: i64,
}

impl Tick {
    /// Published after the next tick was due already: a catch-up of a missed tick.
    fn missed(&self) -> bool {
        self.written - self.at >= 1000
    }
}

async fn ticks(redis: &Redis, stream: &str, name: &str) -> Vec<Tick> {
    redis
        .range(stream, "-", "+", 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| field(e, "schedule") == name)
        .map(|e| Tick {
            at: field(e, "scheduled_for").parse().unwrap(),
            id: field(e, "id"),
            written: e.id.ms as i64,
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Each tick once, the next one a second after the previous, with its contract id.
fn assert_consecutive(name: &str, ticks: &[Tick]) {
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].at - pair[0].at,
            1000,
            "{name}: not consecutive: {ticks:#?}"
        );
    }
    for t in ticks {
        assert_eq!(t.at % 1000, 0, "{t:?}");
        assert_eq!(t.id, weir::schedule::cron::tick_id(name, t.at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_every_second_with_two_engines_fires_each_tick_once() {
    let server = RedisServer::start();
    let stream = stream_name("sched-two");
    let text = toml(&server, &stream, &every_second("beat", "last"));
    let a = run(Engine::new(config(&text)));
    let b = run(Engine::new(config(&text)));
    let redis = server.client().await;
    wait_for("six ticks", Duration::from_secs(30), || async {
        ticks(&redis, &stream, "beat").await.len() >= 6
    })
    .await;
    a.stop().await;
    b.stop().await;
    let seen = ticks(&redis, &stream, "beat").await;
    assert!(seen.len() >= 6, "{seen:#?}");
    assert_consecutive("beat", &seen);
    let mut ids: Vec<&str> = seen.iter().map(|t| t.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "an id twice: {seen:#?}");
    // The state hash names the last tick; the first start caught nothing up.
    let state = redis
        .hash_get_all(&format!("{stream}:schedule:beat"))
        .await
        .unwrap();
    assert_eq!(state["last_tick"], seen.last().unwrap().at.to_string());
    let since: i64 = state["since"].parse().unwrap();
    assert!(
        seen[0].at > since,
        "ticks before the first start: {seen:#?}"
    );
}

/// Runs an engine until two ticks, stops it for ~3 s, runs it again until two on-time
/// ticks after the restart; returns (ticks before the stop, ticks after it).
async fn stop_and_restart(server: &RedisServer, catch_up: &str) -> (Vec<Tick>, Vec<Tick>) {
    let stream = stream_name(&format!("sched-{catch_up}"));
    let text = toml(server, &stream, &every_second("beat", catch_up));
    let redis = server.client().await;
    let first = run(Engine::new(config(&text)));
    wait_for("two ticks", Duration::from_secs(30), || async {
        ticks(&redis, &stream, "beat").await.len() >= 2
    })
    .await;
    first.stop().await;
    let before = ticks(&redis, &stream, "beat").await;
    // Downtime: the time that passes is the thing under test.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let restarted = now_ms();
    let second = run(Engine::new(config(&text)));
    wait_for(
        "two ticks after the restart",
        Duration::from_secs(30),
        || async {
            let all = ticks(&redis, &stream, "beat").await;
            all.iter().filter(|t| t.at >= restarted + 1000).count() >= 2
        },
    )
    .await;
    second.stop().await;
    let all = ticks(&redis, &stream, "beat").await;
    assert_eq!(&all[..before.len()], &before[..], "{catch_up}");
    let after = all[before.len()..].to_vec();
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catch_up_after_a_stop_follows_catch_up() {
    let server = RedisServer::start();
    let (none, last, all) = tokio::join!(
        stop_and_restart(&server, "none"),
        stop_and_restart(&server, "last"),
        stop_and_restart(&server, "all"),
    );

    // none: no missed tick is published; the first tick after the restart is on time and
    // at least two seconds after the last one before the stop.
    let (before, after) = none;
    assert!(after.iter().all(|t| !t.missed()), "none: {after:#?}");
    assert!(
        after[0].at - before.last().unwrap().at >= 2000,
        "none: {before:#?} {after:#?}"
    );
    assert_consecutive("beat", &after);

    // last: exactly one missed tick, the latest missed one, then on time again.
    let (before, after) = last;
    let missed: Vec<&Tick> = after.iter().filter(|t| t.missed()).collect();
    assert_eq!(missed.len(), 1, "last: {after:#?}");
    assert_eq!(&after[0], missed[0], "last: {after:#?}");
    assert!(
        after[0].at - before.last().unwrap().at >= 2000,
        "last: {before:#?} {after:#?}"
    );
    assert_consecutive("beat", &after);

    // all: every tick of the downtime, in order, with no gap.
    let (before, after) = all;
    let mut whole = before.clone();
    whole.extend(after.iter().cloned());
    assert_consecutive("beat", &whole);
    assert!(
        after.iter().filter(|t| t.missed()).count() >= 2,
        "all: {after:#?}"
    );
}

fn weir_cmd(path: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("-c")
        .arg(path)
        .args(args)
        .env("WEIR_LOG", "warn")
        .env_remove("WEIR_CONFIG");
    cmd
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("streams.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_run(path: &Path) -> Child {
    weir_cmd(path, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_of_weir_run_loses_and_doubles_no_tick() {
    // Claim and publish are one script, so no kill can fall between them: what is left to
    // prove is that the process started after a kill -9 picks up exactly where the killed
    // one stopped (catch_up = "all": every tick of the gap, none twice).
    let server = RedisServer::start();
    let stream = stream_name("sched-kill");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &toml(&server, &stream, &every_second("beat", "all")),
    );
    let redis = server.client().await;
    let mut first = spawn_run(&path);
    let _reap_first = Reaper(first.id());
    wait_for("three ticks", Duration::from_secs(30), || async {
        ticks(&redis, &stream, "beat").await.len() >= 3
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Long enough that a tick is missed (a later one is due when the next process looks).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let restarted = now_ms();
    let mut second = spawn_run(&path);
    let _reap_second = Reaper(second.id());
    wait_for(
        "two ticks after the restart",
        Duration::from_secs(30),
        || async {
            let all = ticks(&redis, &stream, "beat").await;
            all.iter().filter(|t| t.at >= restarted + 1000).count() >= 2
        },
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    let all = ticks(&redis, &stream, "beat").await;
    assert_consecutive("beat", &all);
    assert!(
        all.iter().any(Tick::missed),
        "the gap was caught up: {all:#?}"
    );
}

async fn api(url: &str, method: reqwest::Method) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn cli_json(path: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = weir_cmd(path, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_resume_from_the_cli_and_the_api() {
    let server = RedisServer::start();
    let stream = stream_name("sched-pause");
    let dir = tempfile::tempdir().unwrap();
    let text = toml(&server, &stream, &every_second("beat", "all"));
    let path = write_config(dir.path(), &text);
    let redis = server.client().await;
    let engine = run(Engine::new(config(&text)));
    wait_for("a tick", Duration::from_secs(30), || async {
        !ticks(&redis, &stream, "beat").await.is_empty()
    })
    .await;

    // The CLI pauses: nothing is published while paused, whatever `catch_up` says.
    let (code, json, err) = cli_json(&path, &["schedules", "pause", "beat", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["changed"], true, "{json}");
    assert_eq!(json["schedule"]["paused"], true, "{json}");
    let paused_at = ticks(&redis, &stream, "beat").await.len();
    let (_, json, _) = cli_json(&path, &["schedules", "pause", "beat", "--json"]);
    assert_eq!(
        json["changed"], false,
        "pausing twice changes nothing: {json}"
    );
    let (code, list, err) = cli_json(&path, &["schedules", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(list["schedules"][0]["name"], "beat", "{list}");
    assert_eq!(list["schedules"][0]["paused"], true, "{list}");
    assert_eq!(list["schedules"][0]["timetable"], "every 1s", "{list}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ticks(&redis, &stream, "beat").await.len(),
        paused_at,
        "published while paused"
    );

    // The API resumes; the ticks missed while paused are skipped, not caught up.
    let base = engine.url("/api/v1/schedules").await;
    let (status, body) = api(&base, reqwest::Method::GET).await;
    assert_eq!(status, 200);
    assert_eq!(body["schedules"][0]["paused"], true, "{body}");
    let resumed = now_ms();
    let (status, body) = api(&format!("{base}/beat/resume"), reqwest::Method::POST).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], true, "{body}");
    assert_eq!(body["schedule"]["paused"], false, "{body}");
    wait_for(
        "a tick after the resume",
        Duration::from_secs(30),
        || async { ticks(&redis, &stream, "beat").await.len() > paused_at },
    )
    .await;
    let after = ticks(&redis, &stream, "beat").await;
    let first_after = &after[paused_at];
    assert!(
        first_after.at >= resumed - 1000,
        "a tick of the pause was caught up: {after:#?}"
    );

    // The API pauses and the CLI resumes: the same state.
    let (status, body) = api(&format!("{base}/beat/pause"), reqwest::Method::POST).await;
    assert_eq!(
        (status, &body["changed"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    let (code, json, err) = cli_json(&path, &["schedules", "resume", "beat", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["changed"], true, "{json}");

    // An unknown name: 404 from the API, a usage error naming the schedules from the CLI.
    let (status, body) = api(&format!("{base}/nope/pause"), reqwest::Method::POST).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no schedule named `nope`"),
        "{body}"
    );
    let (code, _, err) = cli_json(&path, &["schedules", "resume", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no schedule named `nope` (configured: beat)"),
        "{err}"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_data_breaks_the_schema_stops_the_start_naming_it() {
    let server = RedisServer::start();
    let stream = stream_name("sched-schema");
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("tick.schema.json"),
        r#"{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}"#,
    )
    .unwrap();
    let schedule = "[[schedules]]\nname = \"bad-body\"\nevery = \"1h\"\ntype = \"tick\"\ndata = '{\"n\": \"x\"}'\n";
    let path = write_config(dir.path(), &toml(&server, &stream, schedule));
    let out = weir_cmd(&path, &["run"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("schedules[0].data"), "{err}");
    assert!(err.contains("schedule `bad-body`"), "{err}");
    assert!(err.contains("/n"), "names the pointer: {err}");
}
