//! The OTLP/HTTP exporter: finished spans wait in a bounded queue, and one background task
//! posts them in batches (every second, or at [`BATCH`] spans) to `<endpoint>/v1/traces` as
//! protobuf. The consumer only ever `try_send`s: a collector that is down, slow or hanging
//! fills the queue, and further spans are dropped and counted
//! (`weir_trace_spans_dropped_total`); handling never waits and memory never grows past
//! [`QUEUE`] spans.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::span::{Finished, encode_request};
use crate::streak::FailureStreak;

/// Spans waiting for export at most: beyond this they are dropped.
pub const QUEUE: usize = 4096;
/// Spans per request at most.
pub const BATCH: usize = 512;
/// How long spans wait for a fuller batch.
const INTERVAL: Duration = Duration::from_secs(1);
/// Batches posted at shutdown at most.
const LAST_POSTS: usize = 4;
/// A post that takes longer is abandoned and its spans dropped: a hanging collector costs
/// this much per batch, while the queue fills and drops.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The export task's state: the queue's receiving end and where batches go.
pub struct Exporter {
    spans: mpsc::Receiver<Finished>,
    client: Client<Https, Full<Bytes>>,
    /// `<endpoint>/v1/traces`.
    url: Uri,
    service: String,
    stop: CancellationToken,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("url", &self.url).finish()
    }
}

impl Exporter {
    /// The queue's sending end and the exporter posting to `endpoint` (`http://` or
    /// `https://`, trusting the system's CAs) as `service`.
    pub fn new(
        endpoint: &str,
        service: &str,
        stop: CancellationToken,
    ) -> Result<(mpsc::Sender<Finished>, Exporter), String> {
        let url = traces_url(endpoint)?;
        let https = url.scheme_str() == Some("https");
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let tls = crate::pem::client_config(https, None)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let (tx, rx) = mpsc::channel(QUEUE);
        let exporter = Exporter {
            spans: rx,
            client,
            url,
            service: service.to_string(),
            stop,
        };
        Ok((tx, exporter))
    }

    /// Posts batches until `stop`, then what is still queued (at most [`LAST_POSTS`]
    /// batches: a hanging collector must not hold shutdown up for long).
    pub async fn run(mut self) {
        let mut streak = FailureStreak::default();
        let mut batch = Vec::with_capacity(BATCH);
        let stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = self.fill(&mut batch) => {}
                _ = stop.cancelled() => break,
            }
            self.post(&mut batch, &mut streak).await;
        }
        for _ in 0..LAST_POSTS {
            while batch.len() < BATCH
                && let Ok(span) = self.spans.try_recv()
            {
                batch.push(span);
            }
            if batch.is_empty() {
                return;
            }
            self.post(&mut batch, &mut streak).await;
        }
    }

    /// Waits for a span, then up to [`INTERVAL`] for [`BATCH`] of them.
    async fn fill(&mut self, batch: &mut Vec<Finished>) {
        let Some(first) = self.spans.recv().await else {
            return std::future::pending().await; // every sender gone: wait for stop
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + INTERVAL;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, self.spans.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Sends `batch` (emptied either way); what the collector did not take is counted as
    /// dropped, and failures are logged 1st, 2nd, 4th… in a row.
    async fn post(&self, batch: &mut Vec<Finished>, streak: &mut FailureStreak) {
        let body = encode_request(&self.service, batch);
        let count = batch.len() as u64;
        batch.clear();
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            crate::metrics::trace_spans_dropped(count);
            return;
        };
        let sent = tokio::time::timeout(POST_TIMEOUT, self.client.request(request)).await;
        let problem = match sent {
            Ok(Ok(response)) if response.status().is_success() => {
                streak.succeeded();
                return;
            }
            Ok(Ok(response)) => format!("the collector answered {}", response.status()),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => format!("no answer within {POST_TIMEOUT:?}"),
        };
        crate::metrics::trace_spans_dropped(count);
        if streak.failed() {
            tracing::warn!(
                endpoint = %self.url,
                spans = count,
                failures_in_a_row = streak.count(),
                error = %problem,
                "trace export failed; these spans are dropped (weir_trace_spans_dropped_total), handling goes on"
            );
        }
    }
}

/// `<endpoint>/v1/traces` for an `http://` or `https://` endpoint.
fn traces_url(endpoint: &str) -> Result<Uri, String> {
    let base = endpoint.trim_end_matches('/');
    let url = format!("{base}/v1/traces");
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{endpoint}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(uri),
        _ => Err(format!(
            "`{endpoint}` must be http://host:port or https://host:port (OTLP over HTTP, usually port 4318)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        let url = traces_url("http://127.0.0.1:4318/").expect("valid");
        assert_eq!(url.to_string(), "http://127.0.0.1:4318/v1/traces");
        assert!(traces_url("grpc://collector:4317").is_err());
        assert!(traces_url("127.0.0.1:4318").is_err());
    }
}
