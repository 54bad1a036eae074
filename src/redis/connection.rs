//! The connection: building the client from the config, connecting, a second connection for
//! a blocking reader, resets after a timeout, PING and QUIT. TLS setup lives in `tls.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{
    Config as FredConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy, TlsConnector,
    UnresponsiveConfig,
};

use super::command::{COMMAND_TIMEOUT, map_err};
use super::tls;
use crate::error::{RedisError, RedisErrorKind};

/// How to reach Redis (the `[redis]` table, validated by `config`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://`, `rediss://`, `redis+unix://` or a cluster URL; may hold a password.
    pub url: String,
    /// With `rediss://`: trust this CA instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, when Redis requires one.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub key_file: Option<PathBuf>,
    /// Skip certificate checks (set explicitly, logged at WARN).
    pub insecure_skip_verify: bool,
}

/// A connection (with automatic, jittered reconnects) to the configured Redis.
#[derive(Clone)]
pub struct Redis {
    pub(super) client: Client,
    /// The URL with any password replaced, for messages.
    pub(super) url: String,
    /// When the connection was last reset on purpose (unix ms), to rate-limit resets.
    last_reset: Arc<AtomicU64>,
    /// Cleared once the server refuses EVALSHA or SCRIPT LOAD to this user (an ACL that grants
    /// only EVAL): from then on scripts go as EVAL.
    pub(super) scripts_by_sha: Arc<AtomicBool>,
}

/// Checks that `url` is a URL the client accepts; the error says what is wrong with it
/// (without the URL, which may hold a password).
pub fn validate_url(url: &str) -> Result<(), String> {
    FredConfig::from_url(url)
        .map(|_| ())
        .map_err(|e| e.details().to_string())
}

impl Redis {
    /// Builds a client for `config` without connecting; see [`Redis::connect`].
    pub fn new(config: &RedisConfig) -> Result<Redis, RedisError> {
        let url = crate::redact_url(&config.url);
        let mut fred_config = FredConfig::from_url(&config.url).map_err(|e| RedisError {
            command: "connect",
            message: format!("{url}: {}", e.details()),
            kind: RedisErrorKind::Server,
        })?;
        fred_config.tls = tls_connector(config)?.map(Into::into);
        let mut policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
        policy.set_jitter(250);
        let performance = PerformanceConfig {
            default_command_timeout: COMMAND_TIMEOUT,
            ..Default::default()
        };
        let client = fred::types::Builder::from_config(fred_config)
            .set_policy(policy)
            .set_performance_config(performance)
            .set_connection_config(connection_config())
            .build()
            .map_err(|e| map_err("connect", e))?;
        Ok(Redis::from_client(client, url))
    }

    fn from_client(client: Client, url: String) -> Redis {
        Redis {
            client,
            url,
            last_reset: Default::default(),
            scripts_by_sha: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Connects; from then on reconnects happen in the background (capped, jittered backoff).
    /// Fails when the first attempt fails, so callers can report and retry at their pace.
    pub async fn connect(&self) -> Result<(), RedisError> {
        match self.client.init().await {
            Ok(_task) => Ok(()),
            Err(e) => Err(RedisError {
                command: "connect",
                message: format!("cannot reach Redis at {}: {}", self.url, e.details()),
                kind: if matches!(e.kind(), fred::error::ErrorKind::Auth)
                    || e.details().contains("WRONGPASS")
                    || e.details().contains("NOAUTH")
                {
                    RedisErrorKind::NoPermission
                } else {
                    RedisErrorKind::Connection
                },
            }),
        }
    }

    /// A second, independent connection: blocking reads hold their connection, so each reader
    /// gets its own.
    pub async fn dedicated(&self) -> Result<Redis, RedisError> {
        let other = Redis::from_client(self.client.clone_new(), self.url.clone());
        other.connect().await?;
        Ok(other)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }

    /// Drops the connection and reconnects (at most once a second). Callers use it when a
    /// reply did not fit its command: requests and replies are out of step.
    pub fn reset_connection(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let last = self.last_reset.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .last_reset
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::warn!(redis = %self.url, "resetting the Redis connection after a timeout or an out-of-step reply");
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.force_reconnection().await;
        });
    }

    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisError> {
        self.call_timeout("PING", Vec::new(), timeout)
            .await
            .map(|_| ())
    }
}

/// The rustls connector for `rediss://` URLs, `None` for plain ones.
fn tls_connector(config: &RedisConfig) -> Result<Option<TlsConnector>, RedisError> {
    if !config.url.starts_with("rediss://") {
        return Ok(None);
    }
    let tls = tls::client_config(config).map_err(|(key, message)| RedisError {
        command: "connect",
        message: format!("TLS setup ({key}): {message}"),
        kind: RedisErrorKind::Server,
    })?;
    Ok(Some(TlsConnector::from(tls)))
}

fn connection_config() -> ConnectionConfig {
    ConnectionConfig {
        connection_timeout: Duration::from_secs(3),
        internal_command_timeout: Duration::from_secs(3),
        // A reply lost with its connection is not resent blindly: a resent XADD would make
        // two entries. Callers retry what is safe to retry.
        max_command_attempts: 1,
        unresponsive: UnresponsiveConfig {
            // Below COMMAND_TIMEOUT: a silent connection is replaced before commands on
            // it time out one by one.
            max_timeout: Some(Duration::from_secs(3)),
            interval: Duration::from_millis(500),
        },
        ..Default::default()
    }
}
