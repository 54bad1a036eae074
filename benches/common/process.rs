//! Processes under measurement: `weir run` (this build's, or `BENCH_WEIR_BIN`), and CPU and
//! memory readings from `/proc`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// The `weir` binary to run: this build's, or `BENCH_WEIR_BIN` (another build's, e.g. the
/// commit before a change, run by this same harness).
pub(crate) fn weir_bin() -> String {
    std::env::var("BENCH_WEIR_BIN").unwrap_or_else(|_| WEIR.to_string())
}

/// How a `weir run` process logs.
pub(crate) enum Logging<'a> {
    /// `WEIR_LOG=$BENCH_WEIR_LOG`, `error` by default: the engine's own cost, without logs.
    Quiet,
    /// As shipped: no `WEIR_LOG`, `RUST_LOG` or `WEIR_LOG_FORMAT`, stderr to this file (not a
    /// terminal, as under a service manager).
    Shipped(&'a Path),
}

/// A `weir run` process, killed when dropped.
pub(crate) struct Weir(pub(crate) Child);

impl Weir {
    pub(crate) fn start(config: &Path) -> Weir {
        Weir::start_logging(config, Logging::Quiet)
    }

    pub(crate) fn start_logging(config: &Path, logging: Logging<'_>) -> Weir {
        let mut cmd = Command::new(weir_bin());
        cmd.arg("-c").arg(config).arg("run").stdout(Stdio::null());
        match logging {
            Logging::Quiet => {
                cmd.env(
                    "WEIR_LOG",
                    std::env::var("BENCH_WEIR_LOG").unwrap_or_else(|_| "error".into()),
                );
            }
            Logging::Shipped(stderr) => {
                cmd.env_remove("WEIR_LOG")
                    .env_remove("RUST_LOG")
                    .env_remove("WEIR_LOG_FORMAT")
                    .stderr(std::fs::File::create(stderr).unwrap());
            }
        }
        Weir(cmd.spawn().unwrap())
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds (user + system) this process has used.
    pub(crate) fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.0.id()))
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then waits for the process to exit.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) this process has used.
pub(crate) fn own_cpu() -> f64 {
    proc_cpu("/proc/self/stat")
}

/// CPU seconds (user + system) of the process whose `/proc/<pid>/stat` is `path`
/// (utime + stime, in clock ticks of 1/100 s).
pub(crate) fn proc_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A child process run to its end, watched through `/proc`: wall time, CPU and peak RSS.
pub(crate) struct Sampled {
    pub(crate) success: bool,
    pub(crate) took: Duration,
    /// user + system seconds, read from the exited (not yet reaped) child.
    pub(crate) cpu: f64,
    /// The largest VmHWM seen while it ran (polled every 2 ms).
    pub(crate) peak_rss_kib: u64,
}

impl Sampled {
    pub(crate) fn run(cmd: &mut Command) -> Sampled {
        let start = Instant::now();
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (stat, status) = (
            format!("/proc/{}/stat", child.id()),
            format!("/proc/{}/status", child.id()),
        );
        let mut peak_rss_kib = 0;
        // Not reaped until it is a zombie, so its CPU times can still be read.
        let cpu = loop {
            let text = std::fs::read_to_string(&stat).unwrap();
            let state = text.rsplit(')').next().unwrap().split_whitespace().next();
            if state == Some("Z") {
                break proc_cpu(&stat);
            }
            let hwm = std::fs::read_to_string(&status).unwrap_or_default();
            let kib = hwm
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            peak_rss_kib = peak_rss_kib.max(kib);
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = start.elapsed();
        let success = child.wait().unwrap().success();
        Sampled {
            success,
            took,
            cpu,
            peak_rss_kib,
        }
    }
}
