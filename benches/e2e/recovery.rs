//! Recovery: entries held by a killed process (`reclaim`), and entries whose attempts are
//! used up moved to the DLQ by the janitor (`janitor`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Bench;
use super::common::endpoint::{Endpoint, serve};
use super::common::process::Weir;
use super::common::server::{STREAM, pool};
use super::common::wait::{drained, pending, wait_until};

impl Bench {
    /// 6. `kill -9` of a process with 1k entries in flight, until a second process has
    ///    handled them all.
    pub(crate) async fn reclaim(&mut self) {
        self.reset().await;
        let endpoint = Arc::new(Endpoint::default());
        let port = serve(endpoint.clone()).await;
        let extra = "[retry]\nvisibility_timeout_seconds = 2\n[janitor]\ninterval_seconds = 0.1\n";
        let hang = format!(
            "{{ kind = \"http\", url = \"http://127.0.0.1:{port}/hang\" }}\ntimeout_seconds = 600"
        );
        let first = self.server.config(&pool(1000, &hang), extra);
        let second = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        self.prefill(1000);
        let mut dying = Weir::start(&first);
        wait_until("1k in flight", Duration::from_secs(60), || async {
            endpoint.hits.load(Ordering::Relaxed) >= 1000
        })
        .await;
        dying.kill9();
        let killed = Instant::now();
        let rescuer = Weir::start(&second);
        let redis = self.redis.clone();
        wait_until("reclaim", Duration::from_secs(60), || drained(&redis)).await;
        let took = killed.elapsed();
        rescuer.stop();
        self.figure(
            "reclaim 1k after kill -9",
            format!("{:.2} s (visibility timeout 2 s)", took.as_secs_f64()),
            "≤ visibility + 1 s",
            took <= Duration::from_secs(3),
        );
    }

    /// 7a. One janitor pass over 100k over-attempted pending entries.
    pub(crate) async fn janitor(&mut self) {
        self.reset().await;
        let n = self.n / 10;
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        self.prefill(n);
        // Delivered once to a consumer that is gone; max_attempts = 1 makes each one due.
        let read = Command::new("redis-cli")
            .args(["-p", &self.server.port.to_string()])
            .args(["XREADGROUP", "GROUP", "p", "gone", "COUNT"])
            .arg(n.to_string())
            .args(["STREAMS", STREAM, ">"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(read.success());
        assert_eq!(pending(&self.redis).await, n);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let extra = "[retry]\nmax_attempts = 1\nvisibility_timeout_seconds = 1\n[janitor]\ninterval_seconds = 0.1\n";
        let config = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        let dlq = format!("{STREAM}:dlq");
        let first = wait_until("janitor's first move", Duration::from_secs(60), || async {
            redis.stream_len(&dlq).await.unwrap_or(0) > 0
        })
        .await;
        let pass = wait_until("janitor", Duration::from_secs(600), || async {
            redis.stream_len(&dlq).await.unwrap_or(0) >= n
        })
        .await;
        let took = first + pass;
        weir.stop();
        assert_eq!(pending(&self.redis).await, 0);
        let usec = self.server.usec(&["eval", "xpending"]);

        self.figure(
            "janitor: pending → DLQ",
            format!(
                "{n} in {:.2} s: {:.2} s to the first move (start-up, first tick), the pass {:.2} s ({:.0}/s), Redis {:.1} µs/entry",
                took.as_secs_f64(),
                first.as_secs_f64(),
                pass.as_secs_f64(),
                n as f64 / pass.as_secs_f64(),
                usec as f64 / n as f64
            ),
            "100k < 2 s",
            pass < Duration::from_secs(2) || n < 100_000,
        );
    }
}
