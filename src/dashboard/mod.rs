//! The operator dashboard (contract §11): one page, a stylesheet and a script in native ES
//! modules (one per section, see `app.js`), compiled into the binary so it works offline and
//! needs no Node toolchain or bundler. The page is a client of the admin API
//! (`/api/v1`, Bearer token kept in `sessionStorage`, no cookies); it holds no secrets
//! itself, so serving it needs no token — it is only mounted when a token is configured.
//!
//! Every response carries a strict Content-Security-Policy (`default-src 'self'`: no inline
//! script or style, no third-party origin), `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer` and `nosniff`. The page renders every value from Redis as text.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::vocab::DlqReason;

/// The page as written; `{{dlq-reasons}}` is where [`PAGE`] puts the reason options.
const INDEX: &str = include_str!("index.html");
const APP_CSS: &str = include_str!("app.css");
const ICON: &str = include_str!("icon.svg");

/// The script: native ES modules, each served at `/assets/<name>` (the browser resolves
/// `import … from "./shared.js"` against `/assets/app.js`). `app.js` is the entry point and
/// holds the section registry: a new panel is its markup in index.html, its module (an
/// entry here) and one line in `app.js`'s `SECTIONS`.
const MODULES: &[(&str, &str)] = &[
    ("app.js", include_str!("app.js")),
    ("shared.js", include_str!("shared.js")),
    ("overview.js", include_str!("overview.js")),
    ("dlq.js", include_str!("dlq.js")),
    ("replay.js", include_str!("replay.js")),
    ("events.js", include_str!("events.js")),
    ("scheduled.js", include_str!("scheduled.js")),
    ("schedules.js", include_str!("schedules.js")),
];

/// The page served: the DLQ reason filter lists every [`DlqReason`], in the contract's
/// order, so a new reason shows up without touching the page or the script.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    let options: String = DlqReason::ALL
        .iter()
        .map(|r| format!(r#"<option value="{0}">{0}</option>"#, r.as_str()))
        .collect();
    INDEX.replace("{{dlq-reasons}}", &options)
});

/// The policy for every dashboard response; `connect-src 'self'` and `script-src 'self'`
/// are implied by `default-src`.
pub(crate) const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// `GET /`, `GET /assets/{app.css,icon.svg}` and each script module at `/assets/<name>.js`;
/// stateless so it merges into any router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE.as_str()) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        );
    for (name, body) in MODULES {
        router = router.route(
            &format!("/assets/{name}"),
            get(move || async move { asset("text/javascript; charset=utf-8", body) }),
        );
    }
    router
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
    use super::{DlqReason, MODULES, PAGE};

    #[test]
    fn the_page_loads_only_its_own_assets_and_has_no_inline_code() {
        let html = PAGE.as_str();
        assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));
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
    fn the_reason_filter_lists_every_reason_from_vocab() {
        let html = PAGE.as_str();
        assert!(!html.contains("{{"), "a placeholder left in the page");
        for reason in DlqReason::ALL {
            let option = format!(r#"<option value="{0}">{0}</option>"#, reason.as_str());
            assert!(html.contains(&option), "{option} missing");
        }
    }

    #[test]
    fn the_script_never_parses_html_from_data() {
        for (name, body) in MODULES {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!body.contains(sink), "{name} uses {sink}");
            }
        }
    }

    /// Every module a module imports is served, and every served module is small enough to
    /// read in one sitting.
    #[test]
    fn every_import_is_served_and_every_module_is_small() {
        let served: Vec<&str> = MODULES.iter().map(|(name, _)| *name).collect();
        for (name, body) in MODULES {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split(" from \"./")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("{name}: not a relative import: {line}"));
                assert!(
                    served.contains(&target),
                    "{name} imports {target}, which is not served"
                );
            }
            let lines = body.lines().count();
            assert!(lines <= 400, "{name} has {lines} lines; split it");
        }
    }
}
