//! POSTs `data` to a webhook over a keep-alive client. Status mapping per contract §3.
//!
//! The client (`client.rs`) keeps its own keep-alive connections on hyper's connection
//! API, each polled by the task that uses it. The URL is parsed once, and a request is its
//! body and headers. `https://` goes over rustls (ring), trusting the handler's `ca_file`, or
//! else the system's CA certificates (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`).
//! The environment's HTTP proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) is
//! used as curl uses it: plain requests go to it by their whole URL, `https://` through its
//! CONNECT tunnel.

mod client;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

use super::{Delivery, Handler, Outcome};
use crate::config::url::redact_webhook_url;
use crate::pem::client_config as tls_config;
use crate::vocab::truncate;

const BODY_LIMIT: usize = 1024;
/// An error response's body is read up to this much (its first [`BODY_LIMIT`] bytes become
/// the error); past it the connection is dropped rather than drained.
const ERROR_BODY_READ: usize = 64 * 1024;

pub struct HttpHandler {
    client: client::Client,
    /// The request target, parsed once: in origin form (`/path?query`), or the whole URL
    /// for a plain `http://` webhook behind a proxy.
    path: Uri,
    /// As configured but redacted (no user info, no query values): it names the webhook in
    /// every error, and so in `dlq_error` and the log.
    url: String,
    headers: HeaderMap,
}

impl HttpHandler {
    /// The handler for webhook `url` with extra `headers`, trusting `ca_file` (or the
    /// system's roots) for `https://`, through the environment's proxy where one applies.
    /// Every error names the URL redacted.
    pub fn new(
        url: &str,
        headers: &BTreeMap<String, String>,
        ca_file: Option<&Path>,
    ) -> Result<HttpHandler, String> {
        let shown = redact_webhook_url(url);
        let mut map = header_map(headers)?;
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{shown}` is not a valid URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{shown}` must start with http:// or https://")),
        };
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
            return Err(format!("`{shown}` names no host"));
        };
        // HTTP/1.1 needs the Host header; credentials in the URL are not sent (use headers).
        let host = authority
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let host_header = HeaderValue::from_str(&host)
            .map_err(|_| format!("`{shown}`: the host is not a valid Host header"))?;
        map.insert(header::HOST, host_header);
        let origin_form = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        check_proxy_variables(|name| std::env::var(name).ok())?;
        let proxy = proxy_for(&Matcher::from_env(), &uri, &shown, https)?;
        let route = Route {
            uri,
            host,
            origin_form,
            https,
            shown: &shown,
        };
        let (connector, target, path) = route.connect(proxy, ca_file, &mut map)?;
        Ok(HttpHandler {
            client: client::Client::new(connector, target),
            path,
            url: shown,
            headers: map,
        })
    }
}

/// The configured headers plus `Content-Type: application/json`.
fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not valid"))?;
        map.insert(name, value);
    }
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(map)
}

/// Where a webhook's requests go: what [`Route::connect`] needs of its URL.
struct Route<'a> {
    uri: Uri,
    host: String,
    origin_form: Uri,
    https: bool,
    /// The URL redacted, for errors.
    shown: &'a str,
}

impl Route<'_> {
    /// The connector, the address it dials and the request target: straight to the webhook,
    /// through a proxy's CONNECT tunnel (`https://`, TLS end to end), or to the proxy by the
    /// whole URL (`http://`, with `Proxy-Authorization` added to `map`).
    fn connect(
        self,
        proxy: Option<Intercept>,
        ca_file: Option<&Path>,
        map: &mut HeaderMap,
    ) -> Result<(client::Connector, Uri, Uri), String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(self.https, ca_file)?)
            .https_or_http()
            .enable_http1();
        Ok(match proxy {
            None => (
                client::Connector::Direct(tls.wrap_connector(http)),
                self.uri,
                self.origin_form,
            ),
            Some(proxy) if self.https => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let connector = client::Connector::Tunnel(tls.wrap_connector(tunnel));
                (connector, self.uri, self.origin_form)
            }
            Some(proxy) => {
                if let Some(auth) = proxy.basic_auth() {
                    let mut auth = auth.clone();
                    auth.set_sensitive(true);
                    map.insert(header::PROXY_AUTHORIZATION, auth);
                }
                let absolute = Uri::builder()
                    .scheme("http")
                    .authority(self.host)
                    .path_and_query(self.origin_form.to_string())
                    .build()
                    .map_err(|e| format!("`{}` is not a valid URL: {e}", self.shown))?;
                let connector = client::Connector::Direct(tls.wrap_connector(http));
                (connector, proxy.uri().clone(), absolute)
            }
        })
    }
}

/// The HTTP proxy a request to `uri` (`url`, redacted, for the message) goes through, from `proxies` (the environment:
/// `HTTP_PROXY` for `http://`, `HTTPS_PROXY` for `https://`, else `ALL_PROXY`, lowercase names
/// too, unless `NO_PROXY` names the host; read as curl reads them). Another kind of proxy
/// (`socks5://`, a TLS `https://` proxy) is refused at start rather than bypassed. A webhook
/// on this machine (`localhost`, a loopback address) never goes through a proxy, as in Go's
/// `ProxyFromEnvironment`.
fn proxy_for(
    proxies: &Matcher,
    uri: &Uri,
    url: &str,
    https: bool,
) -> Result<Option<Intercept>, String> {
    if uri.host().is_some_and(is_loopback) {
        return Ok(None);
    }
    let Some(proxy) = proxies.intercept(uri) else {
        return Ok(None);
    };
    if proxy.uri().scheme_str() == Some("http") {
        return Ok(Some(proxy));
    }
    let var = if https { "HTTPS_PROXY" } else { "HTTP_PROXY" };
    Err(format!(
        "`{url}` would go through the proxy {}://{} ({var} or ALL_PROXY), but the webhook client speaks to http:// proxies only: point {var} at one, or name the webhook's host in NO_PROXY",
        proxy.uri().scheme_str().unwrap_or_default(),
        proxy
            .uri()
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default(),
    ))
}

/// Refuses a proxy variable that is set but names no proxy: the matcher would ignore it, and
/// the webhook would go direct without a word. `var` reads the environment. The value is
/// never shown: it may hold a password.
fn check_proxy_variables(var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let pairs = [
        ["ALL_PROXY", "all_proxy"],
        ["HTTPS_PROXY", "https_proxy"],
        ["HTTP_PROXY", "http_proxy"],
    ];
    for names in pairs {
        // Read as the matcher reads it: the first of the pair that is set.
        let Some((name, value)) = names.iter().find_map(|n| var(n).map(|v| (n, v))) else {
            continue;
        };
        let names_a_proxy = value.parse::<Uri>().is_ok_and(|u| u.authority().is_some());
        if !value.trim().is_empty() && !names_a_proxy {
            return Err(format!(
                "{name} is set but is not a proxy URL (http://[user:password@]host:port); fix it or unset it (its value is not shown: it may hold a password)"
            ));
        }
    }
    Ok(())
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`).
fn is_loopback(host: &str) -> bool {
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `Retry-After` as seconds or an HTTP date. Any value is taken, however absurd (a number
/// past `u64` is [`Duration::MAX`]): `settle::decide` caps it at the pool's
/// `max_backoff_seconds`, and nothing here adds it to a clock.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let when = httpdate(value)?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

fn httpdate(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok().or_else(|| {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        let mut parts = text.split_whitespace().skip(1);
        let day = parts.next()?;
        let month = parts.next()?;
        let year = parts.next()?;
        let time = parts.next()?;
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let m = months.iter().position(|x| *x == month)? + 1;
        humantime::parse_rfc3339(&format!("{year}-{m:02}-{day:0>2}T{time}Z")).ok()
    })
}

/// 429 and 503: the downstream says it has too much to do, so an adaptive pool backs off.
fn is_overload(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

impl HttpHandler {
    fn headers_for(&self, d: &Delivery) -> HeaderMap {
        fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
            if let Some(v) = header_value(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
        let mut h = self.headers.clone();
        put(&mut h, "x-weir-type", &d.event_type);
        put(&mut h, "x-weir-entry-id", &d.entry_id.to_string());
        h.insert(
            HeaderName::from_static("x-weir-attempt"),
            HeaderValue::from(d.attempt),
        );
        put(&mut h, "x-weir-pool", &d.pool);
        if let Some(id) = &d.event_id {
            put(&mut h, "x-weir-event-id", id);
        }
        if let Some(context) = &d.trace_context {
            // W3C trace context: the delivery's span, for the webhook's own spans.
            put(&mut h, "traceparent", &context.traceparent());
            if let Some(state) = &context.tracestate {
                put(&mut h, "tracestate", state);
            }
        }
        if let Some(epoch) = d.owner_epoch {
            h.insert(
                HeaderName::from_static("x-weir-owner-epoch"),
                HeaderValue::from(epoch),
            );
        }
        for (name, value) in &d.fields {
            let name = format!("x-weir-field-{}", name.to_ascii_lowercase());
            if let (Ok(name), Some(value)) =
                (HeaderName::from_bytes(name.as_bytes()), header_value(value))
            {
                h.insert(name, value);
            }
        }
        h
    }
}

/// Reads `body` to the end, keeping at most `keep` bytes: a success's body is drained so its
/// keep-alive connection goes back to the pool. `None` when the body failed or ran past
/// [`ERROR_BODY_READ`] (the connection is then dropped, not reused).
async fn read_body(mut body: hyper::body::Incoming, keep: usize) -> Option<Vec<u8>> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > ERROR_BODY_READ {
                return None;
            }
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Some(kept)
}

#[async_trait::async_trait]
impl Handler for HttpHandler {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let mut request = Request::new(Full::new(Bytes::from(d.data.clone())));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers_for(d);
        let answer = self
            .client
            .send(request, |response| async move {
                let status = response.status();
                let after = retry_after(response.headers());
                // A success's body is drained so the connection can carry the next call.
                let keep = if status.is_success() { 0 } else { BODY_LIMIT };
                let body = read_body(response.into_body(), keep).await;
                let complete = body.is_some();
                ((status, after, body.unwrap_or_default()), complete)
            })
            .await;
        let (status, after, body) = match answer {
            Ok(answer) => answer,
            Err(e) => return Outcome::retry(format!("POST {}: {}", self.url, error_chain(&*e))),
        };
        if status.is_success() {
            return Outcome::Success;
        }
        let body = String::from_utf8_lossy(&body);
        let error = format!(
            "POST {} returned {status}: {}",
            self.url,
            truncate(body.trim(), BODY_LIMIT)
        );
        let retryable = matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS
        ) || status.is_server_error()
            || !status.is_client_error();
        if is_overload(status) {
            Outcome::Overloaded { after, error }
        } else if retryable {
            Outcome::Retry { after, error }
        } else {
            Outcome::Permanent { error }
        }
    }
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection
/// refused`): hyper's top-level message alone says little.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_variable_that_names_no_proxy_is_refused_without_its_value() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(check_proxy_variables(env(&[])).is_ok());
        assert!(check_proxy_variables(env(&[("HTTP_PROXY", "http://u:p@proxy:3128")])).is_ok());
        assert!(check_proxy_variables(env(&[("https_proxy", "proxy:3128")])).is_ok());
        assert!(check_proxy_variables(env(&[("NO_PROXY", "::: nonsense")])).is_ok());
        assert!(check_proxy_variables(env(&[("HTTP_PROXY", "")])).is_ok());
        let error = check_proxy_variables(env(&[("HTTPS_PROXY", "http://u:s3cret@ bad")]));
        let error = error.unwrap_err();
        assert!(error.starts_with("HTTPS_PROXY is set but"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        // The uppercase name wins, as in the matcher: a bad lowercase one behind it is unused.
        let shadowed = env(&[("HTTP_PROXY", "http://proxy:1"), ("http_proxy", "%%")]);
        assert!(check_proxy_variables(shadowed).is_ok());
    }

    #[test]
    fn only_http_proxies_are_used_and_others_are_refused_naming_the_variable() {
        let uri = |u: &str| u.parse::<Uri>().unwrap();
        let http = Matcher::builder()
            .http("http://u:p@proxy:3128")
            .no("internal.example")
            .build();
        let found = proxy_for(&http, &uri("http://hooks.example/x"), "", false).unwrap();
        assert_eq!(found.unwrap().uri(), &uri("http://proxy:3128/"));
        let skipped = proxy_for(&http, &uri("http://internal.example/x"), "", false).unwrap();
        assert!(skipped.is_none(), "NO_PROXY names the host");
        let https = proxy_for(&http, &uri("https://hooks.example/x"), "", true).unwrap();
        assert!(https.is_none(), "HTTP_PROXY is not for https://");
        for local in [
            "http://localhost:8080/x",
            "http://127.0.0.2/x",
            "http://[::1]:80/x",
        ] {
            let found = proxy_for(&http, &uri(local), "", false).unwrap();
            assert!(found.is_none(), "{local} went through the proxy");
        }
        let socks = Matcher::builder()
            .all("socks5://u:secret@proxy:1080")
            .build();
        let url = "https://hooks.example/x";
        let error = proxy_for(&socks, &uri(url), url, true).unwrap_err();
        assert!(
            error.contains("socks5://proxy:1080")
                && error.contains("HTTPS_PROXY")
                && error.contains("NO_PROXY")
                && !error.contains("secret"),
            "{error}"
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            "retry-after",
            HeaderValue::from_static("10000000000000000000"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_secs(10_000_000_000_000_000_000))
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("99999999999999999999999999"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::MAX),
            "past u64: as long as can be"
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"),
        );
        let far = retry_after(&h).expect("a date in 9999");
        assert!(far > Duration::from_secs(7_000 * 365 * 86_400), "{far:?}");
    }

    #[test]
    fn a_ca_file_that_is_not_pem_or_unreadable_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let missing = dir.path().join("missing.pem");
        for path in [&junk, &missing] {
            let err = HttpHandler::new("https://127.0.0.1:1/x", &BTreeMap::new(), Some(path))
                .err()
                .expect("refused");
            assert!(
                err.starts_with("handler.ca_file ") && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
        let no_host = HttpHandler::new("http:///x", &BTreeMap::new(), None).err();
        assert!(no_host.is_some_and(|e| e.contains("http:///x")));
    }
}
