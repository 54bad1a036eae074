//! `weir replay`: scanned (`--dry-run`) and re-published.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::Bench;
use super::common::process::weir_bin;
use super::common::server::{STREAM, pool};

impl Bench {
    /// 7b. `weir replay`: scanned (dry run) and re-published.
    pub(crate) async fn replay(&mut self) {
        self.reset().await;
        let n = self.n / 5;
        self.prefill(n);
        let config = self.server.config(&pool(1, "{ kind = \"noop\" }"), "");
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        for (name, dry) in [("replay scan (--dry-run)", true), ("replay publish", false)] {
            let mut cmd = Command::new(weir_bin());
            cmd.arg("-c").arg(&config).args([
                "replay",
                "--since",
                "0",
                "--until",
                &until.to_string(),
                "--json",
            ]);
            if dry {
                cmd.arg("--dry-run");
            }
            let start = Instant::now();
            let out = cmd.stderr(Stdio::null()).output().unwrap();
            let took = start.elapsed();
            assert!(out.status.success(), "weir replay failed: {out:?}");
            self.rate(name, n, took, 0.0, "");
        }
        assert_eq!(self.redis.stream_len(STREAM).await.unwrap(), 2 * n);
    }
}
