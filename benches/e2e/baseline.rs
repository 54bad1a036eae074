//! The bare minimum consumer, on the driver weir uses (fred, built as
//! `src/redis/connection.rs` builds it): XREADGROUP COUNT 500 without BLOCK, and from the
//! second read on the XACK of the batch before, sent together on the one connection. No
//! handler, no leases, no metrics, no bookkeeping: what a consumer cannot do without. weir's
//! `noop` pool is measured against it (issue 24: ≥ 0.90 of it); when weir is that close, the
//! rest of the cost is Redis's.
//!
//! One read is in flight at a time: weir's reader keeps two pipelined while a backlog lasts,
//! so weir can come out ahead of this loop.
//!
//! The reply is walked as a raw frame for the entry IDs only, as weir's reader reads frames
//! (fred's conversion to `Value` would make the loop slower, and the ratio flattering).

use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{
    Config as FredConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy, UnresponsiveConfig,
};
use fred::types::{Builder, ClusterHash, CustomCommand, Resp3Frame, Value};

/// Entries per XREADGROUP.
pub(crate) const COUNT: usize = 500;

/// A connected client with weir's settings: reconnect policy, command timeout, no resent
/// commands.
pub(crate) async fn connect(url: &str) -> Client {
    let mut policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
    policy.set_jitter(250);
    let client = Builder::from_config(FredConfig::from_url(url).unwrap())
        .set_policy(policy)
        .set_performance_config(PerformanceConfig {
            default_command_timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .set_connection_config(ConnectionConfig {
            connection_timeout: Duration::from_secs(3),
            internal_command_timeout: Duration::from_secs(3),
            max_command_attempts: 1,
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(Duration::from_secs(3)),
                interval: Duration::from_millis(500),
            },
            ..Default::default()
        })
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Reads `group` of `stream` as `consumer` until nothing new is left, acknowledging each
/// batch with the next read; the number of entries read (and acknowledged).
pub(crate) async fn drain(client: &Client, stream: &str, group: &str, consumer: &str) -> u64 {
    let slot = fred::util::redis_keyslot(stream.as_bytes());
    let xreadgroup = CustomCommand::new_static("XREADGROUP", ClusterHash::Custom(slot), false);
    let xack = CustomCommand::new_static("XACK", ClusterHash::Custom(slot), false);
    let count = COUNT.to_string();
    let read: Vec<Value> = [
        "GROUP", group, consumer, "COUNT", &count, "STREAMS", stream, ">",
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    let (stream, group) = (Value::from(stream), Value::from(group));
    let (mut read_total, mut acked_total) = (0, 0);
    let mut last: Vec<Bytes> = Vec::new();
    loop {
        let next = client.custom_raw(xreadgroup.clone(), read.clone());
        let frame = if last.is_empty() {
            next.await.unwrap()
        } else {
            let mut args = Vec::with_capacity(last.len() + 2);
            args.extend([stream.clone(), group.clone()]);
            args.extend(last.drain(..).map(Value::Bytes));
            let ack = client.custom_raw(xack.clone(), args);
            // Both futures send on their first poll: fred writes the two commands before
            // either reply is back.
            let (acked, frame) = tokio::join!(ack, next);
            acked_total += match acked.unwrap() {
                Resp3Frame::Number { data, .. } => data as u64,
                other => panic!("XACK answered {other:?}"),
            };
            frame.unwrap()
        };
        last = entry_ids(frame);
        if last.is_empty() {
            break;
        }
        read_total += last.len() as u64;
    }
    assert_eq!(
        acked_total, read_total,
        "XACK acknowledged fewer than were read"
    );
    read_total
}

/// The entry IDs of an XREADGROUP reply `[[stream, [[id, fields], …]]]` (nil: none).
fn entry_ids(frame: Resp3Frame) -> Vec<Bytes> {
    let items = |frame: Resp3Frame| match frame {
        Resp3Frame::Array { data, .. } => data,
        Resp3Frame::Null => Vec::new(),
        other => panic!("XREADGROUP answered {other:?}"),
    };
    let mut ids = Vec::with_capacity(COUNT);
    for stream in items(frame) {
        let Some(entries) = items(stream).into_iter().nth(1) else {
            continue;
        };
        for entry in items(entries) {
            match items(entry).into_iter().next() {
                Some(Resp3Frame::BlobString { data, .. }) => ids.push(data),
                other => panic!("entry without an ID: {other:?}"),
            }
        }
    }
    ids
}
