//! POSTs `data` to a webhook over a keep-alive client. Status mapping per contract §3.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Delivery, Handler, Outcome, truncate};

const BODY_LIMIT: usize = 1024;

pub struct HttpHandler {
    client: reqwest::Client,
    /// Parsed once: a `&str` would be parsed (and IDNA-checked) again for every request.
    url: reqwest::Url,
    headers: HeaderMap,
}

impl HttpHandler {
    pub fn new(url: &str, headers: &BTreeMap<String, String>) -> Result<HttpHandler, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header `{name}` is not valid"))?;
            map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let url =
            reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        map.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(HttpHandler {
            client,
            url,
            headers: map,
        })
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
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

#[async_trait::async_trait]
impl Handler for HttpHandler {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers_for(d))
            .body(d.data.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Outcome::retry(format!("POST {}: {e}", self.url)),
        };
        let status = response.status();
        if status.is_success() {
            // Read to the end, so the keep-alive connection goes back to the pool instead of
            // being closed with an unread body.
            let _ = response.bytes().await;
            return Outcome::Success;
        }
        let after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
