//! What an operator installs (issue 28): `weir init`, `weir check` against real
//! redis-servers with unsafe settings and a short ACL, shell completions, man pages and
//! `weir --version`. The Debian package itself is built and installed by
//! ops/package-test.sh (a release build: too slow for this binary).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `weir init` into `dir`, then the config's Redis URL pointed at `url` (and, with
/// `stream`, the stream renamed): what an operator edits first.
fn starter(dir: &Path, url: &str, stream: Option<&str>) -> PathBuf {
    let out = weir(&["init", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join("streams.toml");
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("redis://127.0.0.1:6379/0", url);
    if let Some(stream) = stream {
        text = text.replace("name = \"events\"", &format!("name = \"{stream}\""));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn check(config: &Path, json: bool) -> Output {
    let mut args = vec!["-c", config.to_str().unwrap(), "check"];
    if json {
        args.push("--json");
    }
    weir(&args)
}

/// The lines of `weir check` output that failed.
fn failures(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(String::from)
        .collect()
}

#[test]
fn init_into_an_empty_folder_writes_a_config_that_loads_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new");
    let out = weir(&["init", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = target.join("streams.toml");
    let schema = target.join("schemas/envelope.schema.json");
    assert!(stdout(&out).contains("streams.toml"), "{}", stdout(&out));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("kind = \"log\""), "{text}");
    assert_eq!(text.matches("[[pools]]").count(), 1, "{text}");

    let loaded = weir::Config::load(&config).unwrap();
    assert_eq!(loaded.pools.len(), 1);
    let data = dir.path().join("event.json");
    std::fs::write(&data, r#"{"id":"1","text":"hello"}"#).unwrap();
    let args = [
        "-c",
        config.to_str().unwrap(),
        "validate",
        "--type",
        "greeting",
    ];
    let valid = weir(&[&args[..], &[data.to_str().unwrap()]].concat());
    assert!(
        valid.status.success(),
        "{}{}",
        stdout(&valid),
        stderr(&valid)
    );
    assert!(stdout(&valid).contains(schema.to_str().unwrap()));
    // The envelope schema is in force: data that is not an object is refused.
    std::fs::write(&data, "[1]").unwrap();
    let invalid = weir(&[&args[..], &[data.to_str().unwrap()]].concat());
    assert_eq!(invalid.status.code(), Some(1), "{}", stdout(&invalid));
}

#[test]
fn init_into_a_folder_with_a_config_refuses_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Other files are no obstacle.
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let config = dir.path().join("streams.toml");
    std::fs::write(&config, "# my edited config\n").unwrap();

    let out = weir(&["init", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(config.to_str().unwrap())
            && stderr(&out).contains("never overwrites"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# my edited config\n"
    );
    assert!(!dir.path().join("schemas").exists(), "nothing is written");

    // Only the schema exists: refused too, naming the schema.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("schemas")).unwrap();
    let schema = other.path().join("schemas/envelope.schema.json");
    std::fs::write(&schema, "{}").unwrap();
    let out = weir(&["init", other.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("envelope.schema.json"),
        "{}",
        stderr(&out)
    );
    assert!(!other.path().join("streams.toml").exists());
}

#[test]
fn check_passes_on_a_safe_redis() {
    let server = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = starter(dir.path(), &server.url(), None);

    let out = check(&config, false);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for name in [
        "config",
        "slots",
        "redis",
        "aof",
        "maxmemory-policy",
        "acl",
        "clock",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("ok   {name}:"))),
            "no ok line for {name}:\n{text}"
        );
    }

    let out = check(&config, true);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["level"] == "ok"), "{doc}");
}

#[test]
fn check_names_aof_off() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = starter(dir.path(), &server.url(), None);

    let out = check(&config, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let failed = failures(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL aof:") && failed[0].contains("appendonly no"),
        "{failed:?}"
    );

    let doc: serde_json::Value = serde_json::from_slice(&check(&config, true).stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let fail: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "fail")
        .collect();
    assert_eq!(fail.len(), 1, "{doc}");
    assert_eq!(fail[0]["check"], "aof");
}

#[test]
fn check_names_an_evicting_maxmemory_policy() {
    let server = RedisServer::start_durable();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let dir = tempfile::tempdir().unwrap();
    let config = starter(dir.path(), &server.url(), None);

    let out = check(&config, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let failed = failures(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL maxmemory-policy:")
            && failed[0].contains("allkeys-lru")
            && failed[0].contains("noeviction"),
        "{failed:?}"
    );
}

/// The engine user of ops/redis/users.acl passes as shipped (so `check`'s command list and
/// the shipped ACL agree), and without `+xautoclaim` is named for exactly that command.
#[test]
fn check_names_a_command_the_acl_user_may_not_send() {
    let shipped = std::fs::read_to_string(repo().join("ops/redis/users.acl")).unwrap();
    assert!(shipped.contains(" +xautoclaim "));
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, &shipped).unwrap();
    let server =
        RedisServer::start_args(&["--aclfile", acl.to_str().unwrap(), "--appendonly", "yes"]);
    let url = server.url_as("engine", "change-me-engine");
    let config = starter(dir.path(), &url, Some("integration-bus"));

    let out = check(&config, false);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("ok   acl:"), "{}", stdout(&out));

    std::fs::write(&acl, shipped.replace(" +xautoclaim ", " ")).unwrap();
    server.cli(&["ACL", "LOAD"]);
    let out = check(&config, false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let failed = failures(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("FAIL acl:") && failed[0].contains("XAUTOCLAIM"),
        "{failed:?}"
    );
    assert!(
        !stdout(&out).contains("change-me-engine"),
        "no password in the output"
    );
}

#[test]
fn check_fails_on_an_unreachable_redis_and_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let config = starter(
        dir.path(),
        &format!("redis+unix://{}", socket.display()),
        None,
    );
    let out = check(&config, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        failures(&out)[0].starts_with("FAIL redis:"),
        "{}",
        stdout(&out)
    );

    std::fs::write(&config, "[redis]\nurl = 5\n").unwrap();
    let out = check(&config, true);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["findings"][0]["check"], "config", "{doc}");
    assert_eq!(doc["findings"][0]["level"], "fail", "{doc}");
}

#[test]
fn completions_load_in_bash_and_cover_every_subcommand() {
    let script = format!(
        "source <('{}' completions bash) && complete -p weir",
        env!("CARGO_BIN_EXE_weir")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("-F _weir weir"), "{}", stdout(&out));

    let subcommands = ["run", "publish", "dlq", "replay", "status", "init", "check"];
    for shell in ["bash", "zsh", "fish"] {
        let out = weir(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in subcommands {
            assert!(text.contains(sub), "{shell} completions miss {sub}");
        }
    }
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "weir.1",
        "weir-check.1",
        "weir-init.1",
        "weir-dlq-reprocess.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    // The generators are hidden: no page for them.
    assert!(!dir.path().join("weir-completions.1").exists());
}

#[test]
fn version_shows_the_commit_and_build_date() {
    let out = weir(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let expected = format!("weir {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text:?}");
    let commit = text[expected.len()..].split(',').next().unwrap();
    // In a checkout, a commit of this repository (HEAD when built; others may have committed
    // since); without git, "unknown".
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo())
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if git(&["rev-parse", "HEAD"]).is_some() {
        assert!(commit.len() >= 7, "{text}");
        assert!(
            git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]).is_some(),
            "{commit} is not a commit of this repository"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
    let date = text
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{text}"
    );
}
