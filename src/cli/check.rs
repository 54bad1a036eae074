//! `weir check`: the start-up checks as a command, one line per finding (`--json` for
//! scripts); exit 0 when nothing fails, 1 otherwise. The checks are the library's
//! (`weir::preflight`), the ones `weir run` relies on at start.

use std::path::Path;
use std::process::ExitCode;

use weir::Config;
use weir::preflight::{Finding, Level};

/// Loads the config at `path` (a broken one is the first and only finding), then runs every
/// check against its Redis.
pub fn check(path: &Path, json: bool, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let findings = match Config::load(path) {
        Ok(config) => {
            let mut findings = vec![Finding {
                check: "config",
                level: Level::Ok,
                message: format!(
                    "{} is valid: stream `{}`, {} pool(s)",
                    path.display(),
                    config.stream.name,
                    config.pools.len()
                ),
            }];
            findings.extend(runtime.block_on(weir::preflight::check(&config)));
            findings
        }
        Err(e) => vec![Finding {
            check: "config",
            level: Level::Fail,
            message: format!("{}: {e}", path.display()),
        }],
    };
    let passed = findings.iter().all(|f| f.level != Level::Fail);
    if json {
        super::print_json(&serde_json::json!({ "ok": passed, "findings": findings }));
    } else {
        for f in &findings {
            println!("{:<4} {}: {}", label(f.level), f.check, f.message);
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn label(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "FAIL",
    }
}
