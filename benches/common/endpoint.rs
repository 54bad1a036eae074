//! A local HTTP endpoint for the `http` handler: `/ok` answers at once, `/hang` never.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests received, on either route.
#[derive(Default)]
pub(crate) struct Endpoint {
    pub(crate) hits: AtomicU64,
}

/// Serves `endpoint` on a free loopback port (a task on the current runtime); the port.
pub(crate) async fn serve(endpoint: Arc<Endpoint>) -> u16 {
    use axum::routing::post;
    let ok = {
        let e = endpoint.clone();
        move || {
            e.hits.fetch_add(1, Ordering::Relaxed);
            async { "ok" }
        }
    };
    let hang = {
        let e = endpoint.clone();
        move || {
            e.hits.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<&'static str>()
        }
    };
    let app = axum::Router::new()
        .route("/ok", post(ok))
        .route("/hang", post(hang));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}
