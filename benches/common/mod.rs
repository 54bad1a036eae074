//! Shared by the benchmarks: a redis-server of their own on a free loopback port, and the rest
//! of the end-to-end harness (`benches/e2e/`):
//!
//! - `server`: that redis-server, the `redis-benchmark XADD -P16` reference, and Redis's own
//!   readings (CPU, commandstats);
//! - `process`: `weir run` processes, and CPU and memory readings from `/proc`;
//! - `wait`: bounded polling on observable state (drained, pending);
//! - `endpoint`: a local HTTP endpoint for the `http` handler;
//! - `table`: the results table every scenario adds its rows to.
//!
//! Each bench uses part of this kit (`settle` only the redis-server): what one of them leaves
//! unused is not dead code.
#![allow(dead_code)]

pub(crate) mod endpoint;
pub(crate) mod process;
pub(crate) mod server;
pub(crate) mod table;
pub(crate) mod wait;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `redis-server` on `port` (no RDB snapshots) in `dir` with `extra` arguments, and
/// waits until it accepts connections.
pub(crate) fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed: apt-get install -y redis-server redis-tools");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
