//! The operator dashboard (contract §11): one page and its assets, compiled into the binary
//! so it works offline and needs no Node toolchain. The page is a client of the admin API
//! (`/api/v1`, Bearer token kept in `sessionStorage`, no cookies); it holds no secrets
//! itself, so serving it needs no token — it is only mounted when a token is configured.
//!
//! Every response carries a strict Content-Security-Policy (`default-src 'self'`: no inline
//! script or style, no third-party origin), `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer` and `nosniff`. The page renders every value from Redis as text.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const ICON: &str = include_str!("icon.svg");

/// The policy for every dashboard response; `connect-src 'self'` is implied by `default-src`.
pub(crate) const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// `GET /` and `GET /assets/{app.js,app.css,icon.svg}`, stateless so it merges into any router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // A new binary serves new assets; the browser revalidates instead of guessing.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_only_its_own_assets_and_has_no_inline_code() {
        let html = super::INDEX;
        assert!(html.contains(r#"src="/assets/app.js""#));
        assert!(html.contains(r#"href="/assets/app.css""#));
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style");
        let handler = html
            .split_whitespace()
            .find(|w| w.starts_with("on") && w.contains('='));
        assert_eq!(handler, None, "inline event handler");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_script_never_parses_html_from_data() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!super::APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
