//! Memory: RSS of an engine with 10k entries in flight, with handlers that hold them (the
//! library engine, re-run from this bench as `--hold-engine`) and with the `http` handler
//! against an endpoint that never answers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use weir::{Config, Delivery, Engine, Handler, Outcome};

use super::Bench;
use super::common::endpoint::{Endpoint, serve};
use super::common::process::Weir;
use super::common::server::{STREAM, pool};
use super::common::wait::wait_until;

impl Bench {
    /// 8. RSS of an engine process with 10k entries in flight: first with handlers that only
    ///    hold their entries (this harness re-run as a library engine: the engine's own
    ///    cost), then with the `http` handler to a server that never answers (10k open HTTP
    ///    requests on top).
    pub(crate) async fn rss(&mut self) {
        self.reset().await;
        let config = self
            .server
            .config("[[pools]]\nname = \"p\"\nconcurrency = 10000\ntypes = [\"*\"]\ntimeout_seconds = 600\n", "");
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("--hold-engine")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let held = Weir(child);
        self.reader_blocked().await;
        let idle = held.rss_kib();
        self.prefill(10_000);
        let health = format!("http://127.0.0.1:{}/healthz", http_port(&config));
        wait_until("10k in flight", Duration::from_secs(120), || async {
            in_flight(&health).await >= 10_000
        })
        .await;
        let kib = held.rss_kib();
        drop(held);
        self.figure(
            "RSS, 10k in flight (library handler)",
            format!(
                "{:.1} MiB ({:.1} MiB before, concurrency 10000)",
                kib as f64 / 1024.0,
                idle as f64 / 1024.0
            ),
            "< 64 MiB",
            kib < 64 * 1024,
        );

        self.reset().await;
        let endpoint = Arc::new(Endpoint::default());
        let port = serve(endpoint.clone()).await;
        let hang = format!(
            "{{ kind = \"http\", url = \"http://127.0.0.1:{port}/hang\" }}\ntimeout_seconds = 600"
        );
        let config = self.server.config(&pool(10_000, &hang), "");
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        let weir = Weir::start(&config);
        self.reader_blocked().await;
        self.prefill(10_000);
        wait_until("10k in flight", Duration::from_secs(120), || async {
            endpoint.hits.load(Ordering::Relaxed) >= 10_000
        })
        .await;
        let kib = weir.rss_kib();
        drop(weir);
        self.figure(
            "RSS, 10k in flight (http handler)",
            format!("{:.1} MiB", kib as f64 / 1024.0),
            "—",
            true,
        );
    }
}

/// The `listen` port of a config written by `Server::config`.
fn http_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .unwrap()
}

/// Sum of the pools' `inFlight` in `/healthz`.
async fn in_flight(url: &str) -> u64 {
    let Ok(response) = reqwest::get(url).await else {
        return 0;
    };
    let Ok(body) = response.bytes().await else {
        return 0;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return 0;
    };
    body["pools"]
        .as_array()
        .map(|pools| pools.iter().filter_map(|p| p["inFlight"].as_u64()).sum())
        .unwrap_or(0)
}

/// A handler that holds every entry until the process ends.
struct Hold;

#[async_trait::async_trait]
impl Handler for Hold {
    async fn handle(&self, _: &Delivery) -> Outcome {
        std::future::pending().await
    }
}

/// `--hold-engine CONFIG`: the library engine with [`Hold`] handlers, for the RSS scenario.
pub(crate) fn hold_engine(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let config = Config::from_toml(&text, config.parent().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = runtime.block_on(
        Engine::new(config)
            .with_handler("p", Hold)
            .run(std::future::pending()),
    );
}
