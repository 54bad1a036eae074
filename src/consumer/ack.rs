//! Batched acknowledgements: workers send IDs, this task XACKs them many at a time. An ID
//! leaves the lease table only once Redis confirmed the XACK, so a slow or failed XACK never
//! lets the entry be reclaimed by someone else meanwhile.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Acks, Pool};
use crate::streak::FailureStreak;
use crate::vocab::StreamId;

const BATCH: usize = 1024;

async fn flush(pool: &Pool, batch: &[StreamId]) -> bool {
    match pool.redis.ack(&pool.stream.name, &pool.name, batch).await {
        Ok(_) => {
            pool.leases.release(batch);
            true
        }
        Err(e) => {
            if e.is(crate::error::RedisErrorKind::Protocol) {
                pool.redis.reset_connection();
            }
            tracing::warn!(pool = %pool.name, entries = batch.len(), error = %e, "XACK failed; retrying");
            false
        }
    }
}

fn add(batch: &mut Vec<StreamId>, acks: Acks) {
    match acks {
        Acks::One(id) => batch.push(id),
        Acks::Many(ids) => batch.extend(ids),
    }
}

pub(super) async fn ack_loop(pool: Arc<Pool>, mut rx: mpsc::UnboundedReceiver<Acks>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            acks = rx.recv() => acks,
            _ = pool.abandon.cancelled() => None,
        };
        let Some(first) = first else { break };
        add(&mut batch, first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(acks) => add(&mut batch, acks),
                Err(_) => break,
            }
        }
        for chunk in batch.chunks(BATCH) {
            let mut streak = FailureStreak::default();
            while !flush(&pool, chunk).await {
                streak.failed();
                streak.wait(&pool.abandon).await;
                if pool.abandon.is_cancelled() {
                    break;
                }
            }
        }
        batch.clear();
    }
    // Last chance at shutdown: whatever finished is acknowledged once more, best effort.
    while let Ok(acks) = rx.try_recv() {
        add(&mut batch, acks);
    }
    if !batch.is_empty() {
        for chunk in batch.chunks(BATCH) {
            flush(&pool, chunk).await;
        }
    }
}
