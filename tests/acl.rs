//! The ACL users of ops/redis/users.acl against a real redis-server: the engine runs with its
//! user alone, the publisher can publish but not read or acknowledge, the replayer replays.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn config(
    dir: &std::path::Path,
    name: &str,
    server: &RedisServer,
    user: &str,
    password: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"integration-bus\"\nmax_len = 5\n[retry]\nvisibility_timeout_seconds = 1\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"p\"\nconcurrency = {{ min = 1, max = 2 }}\nscale_cooldown_seconds = 0.1\nrate = {{ limit = 1000, per = \"1s\" }}\ntypes = [\"job\"]\nhandler = {{ kind = \"exec\", command = [\"true\"] }}\n[[pools]]\nname = \"o\"\ntypes = [\"job\"]\norder_key = \"id\"\nhandler = {{ kind = \"exec\", command = [\"true\"] }}\n",
        server.url_as(user, password),
        "0"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn weir(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn as_user(server: &RedisServer, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(server.cli_target())
        .args(["--user", user, "--pass", password, "--no-auth-warning"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn users_have_exactly_the_rights_they_need() {
    let acl = repo().join("ops/redis/users.acl");
    let server = RedisServer::start_args(&["--aclfile", acl.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let engine = config(
        dir.path(),
        "engine.toml",
        &server,
        "engine",
        "change-me-engine",
    );
    let publisher = config(
        dir.path(),
        "publisher.toml",
        &server,
        "publisher",
        "change-me-publisher",
    );
    let replayer = config(
        dir.path(),
        "replayer.toml",
        &server,
        "replayer",
        "change-me-replayer",
    );

    let mut run = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&engine)
        .arg("run")
        .env("WEIR_LOG", "info")
        // Telemetry by event id: the monitor and telemetry hashes are written as `engine`.
        .env("WEIR_TELEMETRY__KEY", "id")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = Reaper(run.id());
    let redis = server.client().await;
    wait_for("the engine created its group", T, || async {
        group_pending(&redis, "integration-bus", "p").await == 0
    })
    .await;

    // The publisher publishes (idempotently, which needs EVAL, GET, SET)…
    for i in 0..10 {
        let out = weir(
            &publisher,
            &[
                "publish",
                "--type",
                "job",
                "--data",
                "{}",
                "--id",
                &format!("E{i}"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "publisher: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // …but cannot read, claim or acknowledge.
    for args in [
        vec![
            "XREADGROUP",
            "GROUP",
            "p",
            "thief",
            "STREAMS",
            "integration-bus",
            ">",
        ],
        vec!["XACK", "integration-bus", "p", "0-1"],
        vec!["XRANGE", "integration-bus", "-", "+"],
        vec!["XAUTOCLAIM", "integration-bus", "p", "thief", "0", "0"],
        vec!["XLEN", "integration-bus:dlq"],
    ] {
        let reply = as_user(&server, "publisher", "change-me-publisher", &args);
        assert!(
            reply.contains("NOPERM"),
            "publisher could run {args:?}: {reply}"
        );
    }
    // A raw, invalid entry: the engine must be able to dead-letter it (one script: XADD to the DLQ, XACK).
    as_user(
        &server,
        "publisher",
        "change-me-publisher",
        &[
            "XADD",
            "integration-bus",
            "*",
            "type",
            "job",
            "data",
            "{oops",
        ],
    );
    wait_for("all handled, the bad one dead-lettered", T, || async {
        redis.stream_len("integration-bus:dlq").await.unwrap() == 1
            && server
                .cli(&["XINFO", "GROUPS", "integration-bus"])
                .contains("entries-read\n11")
    })
    .await;
    wait_for("nothing pending", T, || async {
        group_pending(&redis, "integration-bus", "p").await == 0
    })
    .await;
    // The ordered pool takes its lease (owner hash, epoch counter, members hash) and works.
    wait_for(
        "the ordered pool owns its lease and handled everything",
        T,
        || async {
            !server
                .cli(&["HGET", "integration-bus:owner:o", "consumer"])
                .is_empty()
                && group_pending(&redis, "integration-bus", "o").await == 0
                && server
                    .cli(&["XINFO", "GROUPS", "integration-bus"])
                    .matches("entries-read\n11")
                    .count()
                    == 2
        },
    )
    .await;
    wait_for("the monitor and telemetry hashes written", T, || async {
        server.cli(&["HGET", "integration-bus:monitor", "p:pending"]) == "0"
            // Handled by both pools, `p` and the ordered `o`.
            && server.cli(&["HGET", "integration-bus:telemetry:E0", "processed"]) == "2"
    })
    .await;
    // Length 11 > max_len 5: trimming runs (EVAL over XRANGE, XTRIM) every second from here on;
    // `~` trimming removes only whole nodes, so nothing shrinks, but a missing permission
    // would show as NOPERM in the log checked below.
    wait_for("the trimmer ran XTRIM and EVAL", T, || async {
        let stats = server.cli(&["INFO", "commandstats"]);
        stats.contains("cmdstat_xtrim:") && stats.contains("cmdstat_eval:")
    })
    .await;

    // The adaptive pool publishes its concurrency for `weir status` (HSET, PEXPIRE).
    wait_for("the pool's concurrency published", T, || async {
        server.cli(&["HLEN", "integration-bus:concurrency:p"]) == "1"
    })
    .await;

    // The replayer replays.
    let out = weir(
        &replayer,
        &[
            "replay", "--since", "0", "--until", "-0s", "--limit", "2", "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "replayer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        as_user(
            &server,
            "replayer",
            "change-me-replayer",
            &[
                "XREADGROUP",
                "GROUP",
                "p",
                "x",
                "STREAMS",
                "integration-bus",
                ">"
            ]
        )
        .contains("NOPERM")
    );

    // A wrong password: a clear error, exit 1, and the secret nowhere.
    let wrong = config(
        dir.path(),
        "wrong.toml",
        &server,
        "engine",
        "not-the-password",
    );
    let out = weir(&wrong, &["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("://engine:***@") && !stderr.contains("not-the-password"),
        "{stderr}"
    );

    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let status = run.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        !log.contains("NOPERM"),
        "the engine lacked a permission:\n{log}"
    );
    assert!(!log.contains("change-me-engine"), "password in the log");
}
