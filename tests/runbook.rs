//! Runs every `sh` block of ops/RUNBOOK.md, in order, against a real redis-server and a
//! running engine, so the runbook cannot rot.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use weir::{Config, Engine};

use crate::support::*;

fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_command_runs() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("streams.toml")).unwrap();
    let text = shipped
        .replace("redis://127.0.0.1:6379/0", &server.url())
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace("[http]\n", "[http]\nadmin_token = \"runbook-token\"\n")
        .replace(
            "dir = \"schemas\"",
            &format!("dir = {:?}", repo().join("schemas")),
        );
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, &text).unwrap();

    // `redis-cli` and `weir` on PATH, pointed at this test's server and config.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("redis-cli");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/env -u PATH PATH=/usr/bin:/bin redis-cli {} \"$@\"\n",
            server.cli_target().join(" ")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weir"), bin.join("weir")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let running = run(Engine::new(Config::load(&config_path).unwrap()));
    let http = running.http().await.to_string();
    let redis = server.client().await;
    publish(
        &redis,
        "integration-bus",
        "incident.event",
        &envelope("incident.event"),
    )
    .await;
    publish(
        &redis,
        "integration-bus",
        "incident.event",
        "{\"incidentId\":\"INC0012345\"}",
    )
    .await;
    publish(&redis, "integration-bus", "auth.provider", "{}").await;
    wait_for("two dead letters", Duration::from_secs(15), || async {
        redis.stream_len("integration-bus:dlq").await.unwrap() == 2
    })
    .await;
    let dlq_id = redis
        .range("integration-bus:dlq", "-", "+", 1)
        .await
        .unwrap()[0]
        .id
        .to_string();
    let job_out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "-c",
            config_path.to_str().unwrap(),
            "replay",
            "--since",
            "0",
            "--until",
            "-0s",
            "--type",
            "none",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let job: serde_json::Value = serde_json::from_slice(&job_out.stdout).unwrap();

    let runbook = std::fs::read_to_string(repo().join("ops/RUNBOOK.md")).unwrap();
    let blocks = sh_blocks(&runbook);
    assert!(blocks.len() >= 10, "the runbook lost its command blocks");
    for block in blocks {
        let out = tokio::process::Command::new("sh")
            .args(["-ec", &block])
            .current_dir(repo())
            .env("PATH", &path)
            .env("WEIR_CONFIG", &config_path)
            .env("HTTP_ADDR", &http)
            .env("TOKEN", "runbook-token")
            .env("DLQ_ID", &dlq_id)
            .env("JOB", job["job"].as_str().unwrap())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "runbook block failed:\n{block}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    running.stop().await;
}
