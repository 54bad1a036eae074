//! The ownership lease of an ordered pool on one stream or partition (contract §9): stand
//! by until the lease is free, take it (the epoch grows), claim every pending entry and hand
//! them out in ID order, read new ones while renewing, and stop handing out the moment the
//! lease is lost or could not be renewed in time. The key lanes are in [`super::ordered`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Pool;
use super::ordered::Ordered;
use crate::clock;
use crate::redis::{LeaseClaim, Redis};
use crate::vocab::{RawEntry, StreamId};

/// Claimed pending entries per XAUTOCLAIM page at takeover.
const TAKEOVER_PAGE: usize = 100;

/// The reader of an ordered pool on one stream or partition: stands by until it owns the
/// lease, takes over the pending entries, reads new ones while it owns, and starts over when
/// it loses the lease. Returns at shutdown; the lease is released after the drain
/// ([`release`]).
pub(crate) async fn run(pool: Arc<Pool>, conn: Redis) {
    let Some(ordered) = pool.ordered.as_ref() else {
        return;
    };
    while !pool.stop.is_cancelled() {
        let Some(epoch) = acquire(&pool, ordered).await else {
            break;
        };
        let lost = pool.stop.child_token();
        let renewer = tokio::spawn(renew_loop(pool.clone(), epoch, lost.clone()));
        if takeover(&pool, ordered, epoch, &lost).await {
            super::reader::read_until(&pool, &conn, &lost).await;
        }
        lost.cancel();
        let yielded = renewer.await.unwrap_or(false);
        if pool.stop.is_cancelled() {
            break;
        }
        // Lost or handed over: forget what is queued and wait for what runs, so the next
        // takeover (ours or another's) never overlaps a handler of the same key.
        ordered.disown();
        ordered.clear();
        pool.leases.clear();
        while pool.in_flight.load(Ordering::Acquire) > 0 && !pool.stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if yielded {
            // Nothing of ours runs any more: let a process with fewer partitions take it now.
            let released = pool
                .redis
                .release_lease(&ordered.lease_key, &pool.consumer, epoch)
                .await;
            tracing::info!(pool = %pool.name, stream = %pool.stream.name, epoch, released = released.unwrap_or(false), "handed the partition over to balance ownership");
        } else {
            ordered.members.gave_up();
        }
    }
}

/// Waits until this process owns the lease; `None` at shutdown.
async fn acquire(pool: &Pool, ordered: &Ordered) -> Option<u64> {
    let mut holder_seen = String::new();
    loop {
        if pool.stop.is_cancelled() {
            return None;
        }
        if !ordered.members.may_take() {
            // This process owns its share of the partitions; leave this one to another.
            tokio::select! {
                _ = tokio::time::sleep(ordered.renew_every()) => continue,
                _ = pool.stop.cancelled() => return None,
            }
        }
        let sent = Instant::now();
        let claim = pool
            .redis
            .take_lease(
                &ordered.lease_key,
                &pool.consumer,
                ordered.ttl,
                clock::now_ms(),
            )
            .await;
        match claim {
            Ok(LeaseClaim::Taken { epoch, fresh }) => {
                if fresh {
                    // Nothing in Redis says who owned before: a previous owner (Redis restarted
                    // without persistence) notices within one validity period; wait it out.
                    let wait = ordered.fresh_wait();
                    tracing::warn!(pool = %pool.name, stream = %pool.stream.name, epoch, wait_ms = wait.as_millis() as u64, "no earlier owner lease state (first start, or Redis lost its data); waiting before handing out work so two owners never overlap");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = pool.stop.cancelled() => {
                            // Stopped before handing out anything: give the lease up now, or
                            // a standby would wait out the whole lease.
                            give_up(pool, ordered, epoch).await;
                            return None;
                        }
                    }
                    if !renew(pool, ordered, epoch).await {
                        continue;
                    }
                } else {
                    ordered.confirm(sent);
                }
                ordered.epoch.store(epoch, Ordering::Release);
                ordered.members.took();
                tracing::info!(pool = %pool.name, stream = %pool.stream.name, consumer = %pool.consumer, epoch, "took ownership of the ordered pool");
                return Some(epoch);
            }
            Ok(LeaseClaim::Held { holder, epoch }) => {
                if holder != holder_seen {
                    tracing::info!(pool = %pool.name, stream = %pool.stream.name, owner = %holder, epoch, "standing by: another process owns this ordered pool");
                    holder_seen = holder;
                }
            }
            Err(e) => {
                tracing::debug!(pool = %pool.name, error = %e, "could not check the owner lease");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ordered.renew_every()) => {}
            _ = pool.stop.cancelled() => return None,
        }
    }
}

/// One renewal; true when the lease is still ours at `epoch`.
async fn renew(pool: &Pool, ordered: &Ordered, epoch: u64) -> bool {
    let sent = Instant::now();
    match pool
        .redis
        .renew_lease(&ordered.lease_key, &pool.consumer, epoch, ordered.ttl)
        .await
    {
        Ok(true) => {
            ordered.confirm(sent);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(pool = %pool.name, error = %e, "owner lease renewal failed; retrying");
            ordered.owned_epoch().is_some()
        }
    }
}

/// Renews the lease until `lost` fires; fires it when the lease is no longer ours or could
/// not be renewed in time, or when this process owns more partitions than its share (then
/// returns true: hand this one over).
async fn renew_loop(pool: Arc<Pool>, epoch: u64, lost: CancellationToken) -> bool {
    let Some(ordered) = pool.ordered.as_ref() else {
        return false;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ordered.renew_every()) => {}
            _ = lost.cancelled() => return false,
        }
        if ordered.members.should_yield() {
            ordered.disown();
            lost.cancel();
            return true;
        }
        // A process stopped past its validity must not renew its way back: it lost.
        let lapsed = ordered.owned_epoch().is_none();
        if lapsed || !renew(&pool, ordered, epoch).await {
            tracing::warn!(pool = %pool.name, stream = %pool.stream.name, epoch, lapsed, "lost ownership of the ordered pool; handing out nothing more");
            ordered.disown();
            lost.cancel();
            return false;
        }
    }
}

/// Tells the other processes this one serves `pool` (one heartbeat per renewal period in
/// the members hash), and counts the live ones for [`Membership`]. Removes itself at stop.
pub(crate) async fn members_loop(
    redis: Redis,
    key: String,
    consumer: String,
    every: Duration,
    members: Arc<super::ordered::Membership>,
    stop: CancellationToken,
) {
    // A process whose heartbeat is older than this is gone (crashed): not counted.
    let window = (every * 5).max(Duration::from_secs(3)).as_millis() as u64;
    loop {
        let now = clock::now_ms();
        match redis.heartbeat(&key, &consumer, now).await {
            Ok(seen) => {
                let live = seen
                    .iter()
                    .filter(|(c, at)| *c == consumer || now.saturating_sub(*at) <= window)
                    .count();
                members.set_live(live);
                let stale: Vec<&str> = seen
                    .iter()
                    .filter(|(_, at)| now.saturating_sub(*at) > window * 20)
                    .map(|(c, _)| c.as_str())
                    .collect();
                if !stale.is_empty() {
                    let _ = redis.forget_members(&key, &stale).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "ordered pool heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    let _ = redis.forget_members(&key, &[consumer.as_str()]).await;
}

/// Claims every pending entry of the group (any consumer's) and hands them out in ID order,
/// before anything new is read. False when ownership was lost or shutdown began meanwhile.
async fn takeover(
    pool: &Arc<Pool>,
    ordered: &Ordered,
    epoch: u64,
    lost: &CancellationToken,
) -> bool {
    let mut cursor = StreamId::ZERO;
    let mut taken = 0usize;
    loop {
        if lost.is_cancelled() {
            return false;
        }
        let page = pool
            .redis
            .autoclaim(
                &pool.stream.name,
                &pool.name,
                &pool.consumer,
                Duration::ZERO,
                cursor,
                TAKEOVER_PAGE,
            )
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(pool = %pool.name, error = %e, "taking over pending entries failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(ordered.renew_every()) => continue,
                    _ = lost.cancelled() => return false,
                }
            }
        };
        pool.lost(&page.deleted).await;
        taken += page.entries.len();
        if !hand_over_claimed(pool, epoch, page.entries, lost).await {
            return false;
        }
        cursor = page.next;
        if cursor == StreamId::ZERO {
            break;
        }
    }
    if taken > 0 {
        tracing::info!(pool = %pool.name, stream = %pool.stream.name, entries = taken, epoch, "took over pending entries; handling them first, in order");
    }
    true
}

/// Hands claimed entries out in order; those whose attempts are used up are dead-lettered.
async fn hand_over_claimed(
    pool: &Arc<Pool>,
    epoch: u64,
    entries: Vec<RawEntry>,
    lost: &CancellationToken,
) -> bool {
    if entries.is_empty() {
        return true;
    }
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    pool.leases.hold(ids.iter().copied());
    let counts = pool
        .redis
        .delivery_counts(&pool.stream.name, &pool.name, &ids)
        .await
        .unwrap_or_default();
    for entry in entries {
        let count = counts.get(&entry.id).copied().unwrap_or(1);
        if pool
            .dead_letter_if_used_up(&entry, count, "process stopped (ordered pool takeover)")
            .await
        {
            continue;
        }
        let permit: Option<OwnedSemaphorePermit> = tokio::select! {
            permit = pool.permits.clone().acquire_owned() => permit.ok(),
            _ = lost.cancelled() => None,
        };
        let Some(permit) = permit else {
            return false;
        };
        super::enqueue_as(pool, entry, count.max(1), permit, Some(epoch));
    }
    true
}

/// Gives the lease up at once after the drain, so a standby takes over without waiting for
/// the expiry.
pub(crate) async fn release(pool: &Pool) {
    let Some(ordered) = pool.ordered.as_ref() else {
        return;
    };
    let Some(epoch) = ordered.owned_epoch() else {
        return;
    };
    ordered.disown();
    give_up(pool, ordered, epoch).await;
}

/// Releases the lease taken at `epoch` (a no-op when it is no longer ours).
async fn give_up(pool: &Pool, ordered: &Ordered, epoch: u64) {
    match pool
        .redis
        .release_lease(&ordered.lease_key, &pool.consumer, epoch)
        .await
    {
        Ok(true) => {
            tracing::info!(pool = %pool.name, stream = %pool.stream.name, epoch, "released ownership of the ordered pool")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(pool = %pool.name, error = %e, "could not release the owner lease; a standby takes over after it expires")
        }
    }
}
