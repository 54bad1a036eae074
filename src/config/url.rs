//! Redis URL handling: the one spot in `config` that uses the Redis client library (fred),
//! to parse URLs and compute cluster key slots. It moves into `redis/` as a whole.

use crate::error::ConfigError;

/// Whether `url` names a Redis Cluster (`redis-cluster://` or `rediss-cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://")
}

/// `redis-cluster://[user:pass@]h1:p1,h2:p2[/…]` in the form fred reads:
/// `redis-cluster://[user:pass@]h1:p1?node=h2:p2`. Other URLs are returned as they are.
pub fn normalize_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if !is_cluster_url(url) {
        return url.to_string();
    }
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let mut nodes = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    let Some(first) = nodes.next() else {
        return url.to_string();
    };
    let extra: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
    if extra.is_empty() {
        return url.to_string();
    }
    let tail = tail
        .trim_start_matches('/')
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let query = tail.trim_start_matches('?');
    let mut params = extra;
    if !query.is_empty() {
        params.push(query.to_string());
    }
    format!("{scheme}://{userinfo}{first}?{}", params.join("&"))
}

pub(super) fn validate_url(url: &str) -> Result<(), ConfigError> {
    let scheme_ok = [
        "redis://",
        "rediss://",
        "redis-cluster://",
        "rediss-cluster://",
        "redis+unix://",
    ]
    .iter()
    .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(super::validate::invalid(
            "redis.url",
            format!(
                "`{}` is not a Redis URL; write it like redis://127.0.0.1:6379/0",
                crate::redact_url(url)
            ),
        ));
    }
    crate::redis::validate_url(url).map_err(|e| {
        super::validate::invalid("redis.url", format!("{}: {e}", crate::redact_url(url)))
    })
}

/// The Redis Cluster slot `key` hashes to.
pub(super) fn key_slot(key: &str) -> u16 {
    crate::redis::key_slot(key)
}
