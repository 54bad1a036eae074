//! URL handling: Redis URLs (the one spot in `config` that uses the Redis client library,
//! fred, to parse URLs and compute cluster key slots), and the redaction every URL goes
//! through before it is shown — in a log line, an error, `dlq_error` or a status.

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

/// Whether `url` is a Redis URL the client reads; the message (the URL redacted) says why
/// not. `validate` turns it into a keyed error: this module imports nothing of `validate`.
pub(super) fn validate_url(url: &str) -> Result<(), String> {
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
        return Err(format!(
            "`{}` is not a Redis URL; write it like redis://127.0.0.1:6379/0",
            redact_url(url)
        ));
    }
    crate::redis::validate_url(url).map_err(|e| format!("{}: {e}", redact_url(url)))
}

/// The Redis Cluster slot `key` hashes to.
pub(super) fn key_slot(key: &str) -> u16 {
    crate::redis::key_slot(key)
}

/// A Redis URL with its password replaced by `***` (the ACL user name stays: it says who
/// connects, and is no secret): every log line and error that names a Redis URL goes through
/// here. `redis://app:pa/ss@h:6379/0` → `redis://app:***@h:6379/0`.
pub fn redact_url(url: &str) -> String {
    let Some(parts) = Parts::split(url) else {
        return url.to_string();
    };
    let userinfo = match parts.userinfo {
        None => String::new(),
        Some(info) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => "***@".to_string(),
        },
    };
    format!("{}://{userinfo}{}", parts.scheme, parts.rest)
}

/// A webhook URL fit to show: its user info (user name and password: a token may stand in
/// either) becomes `***`, and so does every query value (`?token=***&team=***`) and a
/// fragment, while the scheme, host, port, path and query keys stay readable. Every log
/// line, handler error (and so `dlq_error`) and config error that names a webhook URL goes
/// through here.
pub fn redact_webhook_url(url: &str) -> String {
    let Some(parts) = Parts::split(url) else {
        // Not a URL at all: nothing readable can be told from a secret.
        return "(not a URL)".to_string();
    };
    let userinfo = if parts.userinfo.is_some() { "***@" } else { "" };
    let (rest, fragment) = match parts.rest.split_once('#') {
        Some((rest, _)) => (rest, "#***"),
        None => (parts.rest, ""),
    };
    let (place, query) = match rest.split_once('?') {
        Some((place, query)) => (place, Some(query)),
        None => (rest, None),
    };
    let query = query.map_or_else(String::new, |q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if pair.is_empty() => String::new(),
                // `?s3cret` alone may be the secret itself.
                None => "***".to_string(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{}://{userinfo}{place}{query}{fragment}", parts.scheme)
}

/// A URL split where its credentials end.
struct Parts<'a> {
    scheme: &'a str,
    /// Everything before the `@` that ends the credentials.
    userinfo: Option<&'a str>,
    /// Host, port, path, query and fragment.
    rest: &'a str,
}

impl<'a> Parts<'a> {
    fn split(url: &'a str) -> Option<Parts<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        Some(match credentials_end(rest) {
            Some(at) => Parts {
                scheme,
                userinfo: Some(&rest[..at]),
                rest: &rest[at + 1..],
            },
            None => Parts {
                scheme,
                userinfo: None,
                rest,
            },
        })
    }
}

/// Where the credentials of `rest` (a URL after `scheme://`) end: the `@` before the host.
/// People write passwords with `/`, `?`, `#`, `:` and `@` unencoded, which a strict parser
/// reads as the end of the authority; the rule here errs on hiding too much rather than
/// showing a password: an `@` counts as part of a path or query only when the authority in
/// front of it is a plain `host[:port]`. Otherwise the credentials run to the last `@` before
/// the query or fragment that follows them.
fn credentials_end(rest: &str) -> Option<usize> {
    let first_at = rest.find('@')?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let from = if first_at < authority_end {
        rest[..authority_end].rfind('@').unwrap_or(first_at)
    } else if is_host_port(&rest[..authority_end]) {
        return None; // `host/path@…` or `host?mail=a@b`: no credentials
    } else {
        first_at
    };
    let stop = rest[from..]
        .find(['?', '#'])
        .map_or(rest.len(), |i| from + i);
    rest[..stop].rfind('@')
}

/// `host`, `host:port`, `[v6]:port` or a cluster's `h1:p1,h2:p2`: what an authority
/// without credentials looks like.
fn is_host_port(authority: &str) -> bool {
    authority.split(',').all(|node| {
        let (host, port) = match node.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((_, tail)) => ("v6", tail.strip_prefix(':').unwrap_or(tail)),
                None => return false,
            },
            None => node.split_once(':').unwrap_or((node, "")),
        };
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%'));
        host_ok && port.chars().all(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_are_redacted_whatever_they_contain() {
        for (url, shown) in [
            ("redis://u:secret@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:secret@h:1", "redis://:***@h:1"),
            ("redis://secret@h", "redis://***@h"),
            ("redis://h:1/0", "redis://h:1/0"),
            ("redis://u:p@ss@h/0", "redis://u:***@h/0"),
            ("redis://u:pa/ss@host:6379", "redis://u:***@host:6379"),
            ("redis://u:pa/ss@host:6379/2", "redis://u:***@host:6379/2"),
            ("redis://u:p#ss@host:6379/0", "redis://u:***@host:6379/0"),
            ("redis://u:p?ss@host:6379/0", "redis://u:***@host:6379/0"),
            ("redis://u:p:s:s@host", "redis://u:***@host"),
            (
                "rediss://u:a/b@c@[::1]:6380/0",
                "rediss://u:***@[::1]:6380/0",
            ),
            (
                "redis-cluster://u:p/w@h1:1,h2:2",
                "redis-cluster://u:***@h1:1,h2:2",
            ),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn webhook_urls_lose_user_info_and_query_values_and_keep_the_rest() {
        for (url, shown) in [
            (
                "http://user:pw@host/hook?token=abc",
                "http://***@host/hook?token=***",
            ),
            (
                "https://hooks.example:8443/a/b?token=t0k&team=ops",
                "https://hooks.example:8443/a/b?token=***&team=***",
            ),
            ("http://host:80/hook", "http://host:80/hook"),
            ("http://tok3n@host/hook", "http://***@host/hook"),
            ("http://u:p/w@host/hook", "http://***@host/hook"),
            (
                "http://u:p@w@host:1/hook?x=1",
                "http://***@host:1/hook?x=***",
            ),
            ("http://u:p:w@host/hook", "http://***@host/hook"),
            ("http://u:p#w@host/hook", "http://***@host/hook"),
            ("http://u:p?w@host/hook?k=v", "http://***@host/hook?k=***"),
            (
                "http://u:pw@[::1]:8080/hook?t=1",
                "http://***@[::1]:8080/hook?t=***",
            ),
            ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
            (
                "http://host/hook?mail=a@b.example&k=",
                "http://host/hook?mail=***&k=***",
            ),
            ("http://host/users/a@b", "http://host/users/a@b"),
            ("http://host/hook?s3cret", "http://host/hook?***"),
            ("http://host/hook?a=1&&b=2", "http://host/hook?a=***&&b=***"),
            ("http://host/hook#frag", "http://host/hook#***"),
            ("host/hook?token=abc", "(not a URL)"),
        ] {
            assert_eq!(redact_webhook_url(url), shown, "{url}");
        }
    }
}
