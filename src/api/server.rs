//! The engine's HTTP listener (contract §8): one accept loop for plain and TLS connections,
//! each connection served by hyper on its own task, under three limits a slow or idle client
//! cannot get around:
//!
//! - request headers (and a TLS handshake) must arrive within [`Limits::header_read`] of the
//!   connection or of the request's first byte;
//! - a connection with no progress (no byte read or written) for [`Limits::idle`] is closed,
//!   between requests (keep-alive) or while the client does not read its answer;
//! - at most [`Limits::max_connections`] at once: one more is closed as soon as it is accepted.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a keep-alive connection
//! waits for its next request, so idle connections would close after the header timeout.
//! Each connection keeps its own [`Timing`] instead, fed by its socket and its requests.
//!
//! On shutdown the listener is closed at once (the port is free), idle connections close,
//! requests under way get [`Limits::shutdown_grace`] to finish; whatever is left is dropped.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// The listener's limits; [`Limits::default`] holds contract §8's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers (or the TLS handshake) must arrive within this.
    pub header_read: Duration,
    /// A connection without progress this long is closed.
    pub idle: Duration,
    /// Connections open at once; one more is closed when accepted.
    pub max_connections: usize,
    /// On shutdown, how long requests under way may take before their connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max_connections: 1_000,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Raises the soft open-file limit to the hard one, so [`Limits::max_connections`] sockets
/// fit beside Redis connections and files; warns when the hard limit leaves too little room.
pub fn raise_open_files(limits: &Limits) {
    let wanted = limits.max_connections as u64 + 1024;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) if now < wanted => tracing::warn!(
            open_files = now,
            wanted,
            "the open-file limit is low for {} HTTP connections beside Redis; raise it (ulimit -n, LimitNOFILE=)",
            limits.max_connections
        ),
        Ok(now) => tracing::debug!(open_files = now, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `cancel`, then stops within
/// [`Limits::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let abandon = CancellationToken::new();
    let mut refused = Refused::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: give closing connections a moment.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.note(peer, limits.max_connections);
            drop(stream);
            continue;
        };
        let conn = Connection {
            peer,
            app: app.clone(),
            limits,
            cancel: cancel.clone(),
            abandon: abandon.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            conn.run(stream, tls).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "HTTP connections still open after the shutdown grace; closing them"
        );
        abandon.cancel();
        connections.wait().await;
    }
}

/// Connections closed over the cap: logged at most once per 10 s.
#[derive(Default)]
struct Refused {
    count: u64,
    logged: Option<Instant>,
}

impl Refused {
    fn note(&mut self, peer: SocketAddr, cap: usize) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.logged = Some(Instant::now());
            tracing::warn!(peer = %peer, refused = self.count, "{cap} HTTP connections open: closed a new one (slow or leaking clients?)");
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    /// Shutdown began: finish the request under way, then close.
    cancel: CancellationToken,
    /// The shutdown grace is over: close now.
    abandon: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let timing = Arc::new(Timing::new());
        let stream = Watched {
            inner: stream,
            timing: timing.clone(),
        };
        let Some(tls) = tls else {
            return self.http(stream, timing).await;
        };
        let handshake = tokio::select! {
            done = tokio::time::timeout(self.limits.header_read, tls.accept(stream)) => done,
            _ = self.cancel.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => self.http(stream, timing).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// HTTP/1.1 on `io` until the client closes, a limit is hit, or shutdown.
    async fn http<I>(self, io: I, timing: Arc<Timing>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, peer, on_request) = (self.app.clone(), self.peer, timing.clone());
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            on_request.request_started();
            request.extensions_mut().insert(ConnectInfo(peer));
            let (mut app, timing) = (app.clone(), on_request.clone());
            async move {
                let response = app
                    .call(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(response.map(|body| Body::new(Answer { body, timing })))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(true).header_read_timeout(None);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let mut closing = false;
        loop {
            let deadline = timing.deadline(&self.limits);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::trace!(peer = %peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if timing.deadline(&self.limits) <= Instant::now() {
                        tracing::debug!(peer = %peer, "HTTP client too slow or idle: connection closed");
                        return;
                    }
                }
                _ = self.cancel.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = self.abandon.cancelled() => return,
            }
        }
    }
}

/// Sentinel of [`Timing::head_since`]: no request head is being waited for.
const NOT_WAITING: u64 = u64::MAX;

/// When a connection last made progress and since when it has been sending a request head,
/// in milliseconds since it was accepted. Written by its socket and its requests, read by
/// its watchdog.
struct Timing {
    accepted: Instant,
    last_progress: AtomicU64,
    head_since: AtomicU64,
    in_request: AtomicBool,
}

impl Timing {
    /// A new connection waits for its first request head from the start.
    fn new() -> Timing {
        Timing {
            accepted: Instant::now(),
            last_progress: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            in_request: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_progress.store(now, Ordering::Relaxed);
        if !self.in_request.load(Ordering::Relaxed) {
            // The first byte of the next request: its head is due within the header timeout.
            let _ = self.head_since.compare_exchange(
                NOT_WAITING,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn wrote(&self) {
        self.last_progress.store(self.now_ms(), Ordering::Relaxed);
    }

    /// hyper parsed a request head.
    fn request_started(&self) {
        self.in_request.store(true, Ordering::Relaxed);
        self.head_since.store(NOT_WAITING, Ordering::Relaxed);
        self.wrote();
    }

    /// The answer's last byte went to the socket's buffer: the connection is idle.
    fn request_done(&self) {
        self.in_request.store(false, Ordering::Relaxed);
        self.wrote();
    }

    /// When the connection is to be closed unless it makes the progress it owes.
    fn deadline(&self, limits: &Limits) -> Instant {
        let at = |ms: u64, limit: Duration| {
            self.accepted + Duration::from_millis(ms).saturating_add(limit)
        };
        let idle = at(self.last_progress.load(Ordering::Relaxed), limits.idle);
        match self.head_since.load(Ordering::Relaxed) {
            NOT_WAITING => idle,
            since => idle.min(at(since, limits.header_read)),
        }
    }
}

/// A socket that tells its [`Timing`] about every byte read or written.
struct Watched<S> {
    inner: S,
    timing: Arc<Timing>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.timing.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.timing.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.timing.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An answer's body: when hyper is done with it (sent whole, or dropped), the connection's
/// request is over.
struct Answer {
    body: Body,
    timing: Arc<Timing>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.timing.request_done();
    }
}

impl hyper::body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_are_the_contracts() {
        let limits = Limits::default();
        assert_eq!(limits.header_read, Duration::from_secs(10));
        assert_eq!(limits.idle, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 1_000);
    }

    #[test]
    fn a_request_head_is_due_within_the_header_timeout_an_idle_connection_within_idle() {
        let limits = Limits::default();
        let timing = Timing::new();
        let at = |ms: u64| timing.accepted + Duration::from_millis(ms);
        // A new connection owes its first head.
        assert_eq!(timing.deadline(&limits), at(0) + limits.header_read);
        timing.request_started();
        timing.request_done();
        // Between requests: the idle timeout, from the answer.
        timing.last_progress.store(2_000, Ordering::Relaxed);
        assert_eq!(timing.deadline(&limits), at(2_000) + limits.idle);
        // The next request's first byte: its head is due within the header timeout, and
        // more bytes do not push that back.
        timing.read();
        let first = timing.head_since.load(Ordering::Relaxed);
        assert_ne!(first, NOT_WAITING);
        timing.read();
        assert_eq!(timing.head_since.load(Ordering::Relaxed), first);
        assert_eq!(timing.deadline(&limits), at(first) + limits.header_read);
        // Bytes read while a request is under way (its body) owe no head.
        timing.request_started();
        timing.read();
        assert_eq!(timing.head_since.load(Ordering::Relaxed), NOT_WAITING);
    }
}
