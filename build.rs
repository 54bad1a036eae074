//! Stamps the binary with what `weir --version` shows: the git commit it was built from and
//! the build date. `WEIR_GIT_COMMIT` is `git rev-parse --short HEAD`, or "unknown" in a
//! source tarball without `.git` (or without git). `WEIR_BUILD_DATE` is the UTC day of
//! `SOURCE_DATE_EPOCH` when set (reproducible builds), else of the build.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rustc-env=WEIR_GIT_COMMIT={}", commit());
    println!("cargo:rustc-env=WEIR_BUILD_DATE={}", date(build_time()));
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // A commit moves the branch HEAD names; a checkout moves HEAD. Only paths that exist are
    // named: cargo reruns the script on every build for a path that is missing.
    for path in [".git/HEAD", ".git/packed-refs"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = head_ref() {
        let path = format!(".git/{branch}");
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into())
}

/// `refs/heads/main` when `.git/HEAD` names a branch.
fn head_ref() -> Option<String> {
    let head = std::fs::read_to_string(".git/HEAD").ok()?;
    Some(head.trim().strip_prefix("ref: ")?.to_string())
}

/// Seconds since the epoch: `SOURCE_DATE_EPOCH` when it is set and a number, else now.
fn build_time() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// `YYYY-MM-DD` (UTC) of `secs`: Howard Hinnant's days-to-civil algorithm.
fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
