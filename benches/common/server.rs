//! The bench's own redis-server: its CLI, the `redis-benchmark XADD -P16` reference every
//! throughput is divided by, pre-filling, Redis's CPU and per-command readings, and the weir
//! configs that point at it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use weir::Config;
use weir::redis::Redis;

use super::free_port;

/// The stream every scenario reads and writes.
pub(crate) const STREAM: &str = "bench";

/// The commands a consumer sends: what "Redis µs per consumed entry" adds up.
pub(crate) const CONSUME_COMMANDS: [&str; 5] =
    ["xreadgroup", "xack", "xclaim", "xautoclaim", "xpending"];

pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// Without persistence, or with `appendonly yes, appendfsync always` when `aof`.
    pub(crate) fn start(aof: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let persistence: &[&str] = if aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = super::spawn_redis(port, dir.path(), persistence);
        Server { port, dir, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is needed: apt-get install -y redis-tools");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `redis-benchmark -P16` of `XADD key * type <ty> data {"i":1}`: entries/s.
    pub(crate) fn xadd_benchmark(&self, key: &str, ty: &str, n: u64) -> f64 {
        let out = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-q", "-P", "16", "-n"])
            .arg(n.to_string())
            .args(["XADD", key, "*", "type", ty, "data", r#"{"i":1}"#])
            .output()
            .expect("redis-benchmark is needed: apt-get install -y redis-tools");
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        text.lines()
            .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
            .next_back()
            .unwrap_or(0.0)
    }

    /// CPU seconds (user + system) redis-server has used (`INFO cpu`): its whole cost,
    /// socket reads and writes included, where commandstats counts command execution only.
    pub(crate) fn cpu(&self) -> f64 {
        let info = self.cli(&["INFO", "cpu"]);
        info.lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    }

    /// Microseconds Redis spent in `commands` since the last CONFIG RESETSTAT.
    pub(crate) fn usec(&self, commands: &[&str]) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .filter(|l| {
                commands
                    .iter()
                    .any(|c| l.starts_with(&format!("cmdstat_{c}:")))
            })
            .filter_map(|l| {
                l.split("usec=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Calls of `command` since the last CONFIG RESETSTAT.
    pub(crate) fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Pipes `n` XADDs of `type noop.x data {"i":1} key k<i % keys>` (keys round-robin)
    /// through `redis-cli --pipe`.
    pub(crate) fn prefill_keyed(&self, n: u64, keys: u64) {
        use std::io::Write;
        let bulk = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        };
        let mut out = Vec::with_capacity(n as usize * 90);
        for i in 0..n {
            out.extend_from_slice(b"*9\r\n");
            for part in [
                &b"XADD"[..],
                STREAM.as_bytes(),
                b"*",
                b"type",
                b"noop.x",
                b"data",
            ] {
                bulk(&mut out, part);
            }
            bulk(&mut out, br#"{"i":1}"#);
            bulk(&mut out, b"key");
            bulk(&mut out, format!("k{}", i % keys).as_bytes());
        }
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(child.wait().unwrap().success(), "redis-cli --pipe failed");
    }

    /// A weir config file for this server with `pools` and `extra` top-level sections, and
    /// an HTTP listener on a free port.
    pub(crate) fn config(&self, pools: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("weir-{}.toml", free_port()));
        std::fs::write(
            &path,
            format!(
                "shutdown_grace_seconds = 2\n[redis]\nurl = \"{}\"\n[stream]\nname = \"{STREAM}\"\n\
                 max_len = 100000000\n{extra}[http]\nlisten = \"127.0.0.1:{}\"\n{pools}",
                self.url(),
                free_port()
            ),
        )
        .unwrap();
        path
    }

    /// A connected library client, for the harness's own reads and writes.
    pub(crate) async fn client(&self) -> Redis {
        let config = Config::from_toml(
            &format!(
                "[redis]\nurl = \"{}\"\n[stream]\nname = \"{STREAM}\"\n[[pools]]\nname = \"x\"\ntypes = [\"*\"]\n",
                self.url()
            ),
            self.dir.path(),
        )
        .unwrap();
        let redis = Redis::new(&config.redis).unwrap();
        redis.connect().await.unwrap();
        redis
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pool `p` over every type with `handler` (a TOML inline table) at `concurrency`.
pub(crate) fn pool(concurrency: usize, handler: &str) -> String {
    format!(
        "[[pools]]\nname = \"p\"\nconcurrency = {concurrency}\ntypes = [\"*\"]\nhandler = {handler}\n"
    )
}
