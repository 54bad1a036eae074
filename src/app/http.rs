//! The HTTP listener of `weir run`, composed here at the root: `/healthz`, `/readyz` and
//! `/metrics` (`health`), and with a token the admin API (`api`) and the dashboard that is
//! its client (`dashboard`), all on one port, held to the slow-client limits of
//! `api::server`. The leaves never mount each other.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::dashboard;
use crate::health::{self, Health};

/// Binds `addr` now (so a busy port is a start-up error) and serves until `cancel`; with
/// `api`, `/api/v1` and the dashboard too; over HTTPS when `[http]` names a certificate and
/// key. Slow and idle clients are held to `limits` (contract §8, see [`api::server`]).
pub(crate) async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    api: Option<Arc<Api>>,
    limits: api::server::Limits,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    api::server::raise_open_files(&limits);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let tls = match &health.config.http.tls {
        Some((cert, key)) => Some(api::tls::acceptor(cert, key)?),
        None => None,
    };
    if api.is_some() && tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(listen = %local, "the admin API listens beyond loopback without TLS: tokens cross the network in clear text; set http.tls_cert_file and http.tls_key_file");
    }
    let mut app = health::router(health);
    if let Some(api) = api {
        // The page is a client of the API: both are served, or neither.
        app = app.merge(api.router()).merge(dashboard::router());
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(url = %format!("{scheme}://{local}/"), "dashboard served");
    }
    let task = tokio::spawn(api::server::serve(listener, tls, app, limits, cancel));
    Ok((local, task))
}
