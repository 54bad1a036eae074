//! `weir publish --ndjson` on inputs too large to hold: all or nothing, file order, stdin
//! through a spool, and an exact account when Redis fails half-way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{Cli, text};
use crate::support::*;

/// An event line whose field `n` is `i`.
fn line(body: &str, i: usize) -> String {
    format!("{{\"type\":\"incident.event\",\"data\":{body},\"fields\":{{\"n\":\"{i}\"}}}}\n")
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        out.write_all(l.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// `weir publish --ndjson <input>`, with `stdin` fed in and `TMPDIR` set to `tmp`.
fn publish(cli: &Cli, input: &str, stdin: &[u8], tmp: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(cli.dir.path())
        .env("TMPDIR", tmp)
        .arg("-c")
        .arg(cli.config())
        .args(["publish", "--ndjson", input, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Asserts that the entries of `stream` carry `n` = 0, 1, … `count - 1`, in stream order.
fn assert_in_order(server: &RedisServer, stream: &str, count: usize) {
    let all = server.cli(&["XRANGE", stream, "-", "+"]);
    let lines: Vec<&str> = all.lines().collect();
    let ns: Vec<usize> = lines
        .windows(2)
        .filter(|w| w[0] == "n")
        .map(|w| w[1].parse().unwrap())
        .collect();
    if let Some(at) = (0..ns.len()).find(|&i| ns[i] != i) {
        panic!(
            "entry {at} of {} holds n = {} (then {:?}…)",
            ns.len(),
            ns[at],
            &ns[at..ns.len().min(at + 5)]
        );
    }
    assert_eq!(ns.len(), count, "entries in the stream");
}

#[test]
fn one_bad_line_at_the_end_of_50k_writes_nothing_and_is_named() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "ndjson-50k");
    let body = envelope("incident.event");
    let path = cli.dir.path().join("big.ndjson");
    let bad = "{\"type\":\"incident.event\",\"data\":{\"kind\":\"incident.event\"}}\n".to_string();
    write_lines(&path, (1..50_000).map(|i| line(&body, i)).chain([bad]));
    let out = publish(&cli, path.to_str().unwrap(), b"", cli.dir.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big.ndjson:50000: invalid data"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 invalid line(s) in") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0", "nothing written");
}

#[test]
fn a_20k_line_file_is_written_whole_and_in_file_order() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "ndjson-20k");
    let body = envelope("incident.event");
    let total = 20_500;
    // A blank line and an event with an id (written alone, through the dedup script) in
    // the middle: the batches around them keep their place.
    let lines = (0..total).map(|i| match i {
        7_000 => format!("\n{}", line(&body, i)),
        10_001 => format!(
            "{{\"type\":\"incident.event\",\"data\":{body},\"id\":\"evt-10001\",\"fields\":{{\"n\":\"{i}\"}}}}\n"
        ),
        _ => line(&body, i),
    });
    let path = cli.dir.path().join("order.ndjson");
    write_lines(&path, lines);
    let out = publish(&cli, path.to_str().unwrap(), b"", cli.dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["published"], total, "{stdout}");
    assert_eq!(summary["lines"], total + 1, "{stdout}");
    assert_eq!(summary["duplicates"], 0, "{stdout}");
    assert_in_order(&server, &cli.stream, total);
}

#[test]
fn stdin_is_spooled_checked_in_full_then_written_and_the_spool_is_gone() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "ndjson-stdin");
    let tmp = tempfile::tempdir().unwrap();
    let body = envelope("incident.event");
    let mut input: String = (0..5_000).map(|i| line(&body, i)).collect();
    let valid = input.clone();
    input.push_str("not json\n");
    let out = publish(&cli, "-", input.as_bytes(), tmp.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("-:5001: not an event line"), "{stderr}");
    assert_eq!(server.cli(&["EXISTS", &cli.stream]), "0", "nothing written");

    let out = publish(&cli, "-", valid.as_bytes(), tmp.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("\"published\":5000"), "{stdout}");
    assert_in_order(&server, &cli.stream, 5_000);
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
}

#[test]
fn redis_out_of_memory_half_way_reports_what_was_written_and_where_to_resume() {
    let server = RedisServer::start();
    let cli = Cli::new(&server, "ndjson-oom");
    let body = envelope("incident.event");
    let total = 20_000;
    let path = cli.dir.path().join("oom.ndjson");
    write_lines(&path, (0..total).map(|i| line(&body, i)));
    let used: u64 = server
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Room for a few thousand entries, not for 20k (each holds a ~300-byte body).
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let limit = (used + 4 * 1024 * 1024).to_string();
    server.cli(&["CONFIG", "SET", "maxmemory", &limit]);
    let out = publish(&cli, path.to_str().unwrap(), b"", cli.dir.path());
    let (_, stderr) = text(&out);
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("out of memory"), "{stderr}");
    let written: usize = stderr
        .split(" event(s) were written, every line before ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {stderr}"));
    let resume = written + 1;
    assert!(
        stderr.contains(&format!("every line before {resume}"))
            && stderr.contains(&format!("Resume from line {resume}: tail -n +{resume} ")),
        "{stderr}"
    );
    assert!(written > 0 && written < total, "half-way: {stderr}");
    assert_in_order(&server, &cli.stream, written);

    // Resuming from the named line completes the file, nothing twice.
    let rest = cli.dir.path().join("rest.ndjson");
    write_lines(&rest, (written..total).map(|i| line(&body, i)));
    let out = publish(&cli, rest.to_str().unwrap(), b"", cli.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_in_order(&server, &cli.stream, total);
}
