//! A pool: one consumer group, read by one blocking reader on its own connection, handled by
//! up to `concurrency` workers. Beside them per pool: the lease keeper (keeps in-flight
//! entries from being reclaimed, schedules retries inside the PEL) and the acker (batches
//! XACKs).

mod ack;
mod job;
mod lease;
pub(crate) mod ordered;
pub(crate) mod ownership;
mod progress;
mod reader;
pub(crate) mod scale;
pub(crate) mod summary;
mod worker;

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use job::{Job, enqueue, enqueue_as};
pub use lease::Leases;
pub use ordered::{Membership, Ordered};
pub use progress::Progress;
pub(crate) use reader::read_until;
pub(crate) use worker::worker_loop;

use crate::config::{PoolConfig, StreamConfig};
use crate::dispatch::Router;
use crate::handler::Handler;
use crate::redis::Redis;
use crate::settle::{self, DlqTarget};
use crate::sync::lock;
use crate::telemetry::Counts;
use crate::vocab::{DlqReason, RawEntry, StreamId};

/// Entries to acknowledge, on their way to the pool's acker: one from a worker, or a whole
/// read batch the reader settled inline.
#[derive(Debug)]
pub enum Acks {
    One(StreamId),
    Many(Vec<StreamId>),
}

/// The set of paused pool names, refreshed from `<stream>:paused`.
pub type Paused = watch::Receiver<Arc<HashSet<String>>>;

/// When the engine last settled an entry (unix ms; 0 = never), for `/healthz`.
#[derive(Default)]
pub struct Activity(AtomicI64);

impl Activity {
    pub fn touch(&self) {
        let now = crate::clock::now_ms() as i64;
        self.0.store(now, Ordering::Relaxed);
    }

    pub fn last_ms(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }
}

/// Everything the tasks of one pool share.
pub struct Pool {
    pub index: usize,
    pub name: Arc<str>,
    pub config: PoolConfig,
    pub stream: StreamConfig,
    /// This process's consumer name in the group: `<host>-<pid>-<random>`.
    pub consumer: String,
    /// Shared connection for everything but the blocking read.
    pub redis: Redis,
    pub router: Arc<Router>,
    pub handler: Arc<dyn Handler>,
    pub leases: Leases,
    pub acks: mpsc::UnboundedSender<Acks>,
    /// One permit per worker slot: the reader and the janitor take one per entry they hand
    /// to the workers, and the job carries it until the entry is settled.
    pub permits: Arc<Semaphore>,
    /// The workers' queue; closed at shutdown once the reader and janitor have stopped.
    pub jobs: async_channel::Sender<Job>,
    /// How many handlers may run at once (shared by the partitions); for an adaptive pool
    /// the gate its workers pass, moved by the pool's controller.
    pub scale: Arc<scale::Scale>,
    /// Metric handles of this pool, resolved once per type instead of per entry.
    pub metrics: crate::metrics::PoolMetrics,
    pub in_flight: AtomicUsize,
    /// The newest ID this process received from the group: where a vanished group is
    /// recreated.
    pub last_delivered: Mutex<StreamId>,
    pub paused: Paused,
    pub activity: Arc<Activity>,
    /// Cancelled when reading must stop (shutdown begins).
    pub stop: CancellationToken,
    /// Cancelled when the drain grace is over: unfinished handlers are abandoned.
    pub abandon: CancellationToken,
    pub workers: TaskTracker,
    /// Set for an ordered pool: its key lanes and ownership lease on this partition.
    pub ordered: Option<Ordered>,
    /// The engine's telemetry tallies (`[telemetry] key`); its hooks return at once when off.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// `[logging] each_entry`: every success gets its `entry settled` line at INFO.
    pub log_each_entry: bool,
    /// The engine's tracing (contract §15): each delivery's trace context and exported span.
    pub tracer: Arc<crate::trace::Tracer>,
    /// `rate` (contract §14): the pool's limiter, shared by its partitions; `None` without a
    /// limit (the workers' one check).
    pub rate: Option<Arc<crate::flow::RateLimiter>>,
    /// When the pool last took up work here, for the stall detector; shared by the
    /// partitions.
    pub progress: Arc<Progress>,
}

impl Pool {
    pub fn is_paused(&self) -> bool {
        self.paused.borrow().contains(&*self.name)
    }

    /// A read batch ended at `id`: where a vanished group is recreated, and progress.
    pub fn note_delivered(&self, id: StreamId) {
        self.progress.started(Instant::now());
        let mut last = lock(&self.last_delivered);
        if id > *last {
            *last = id;
        }
    }

    pub fn last_delivered(&self) -> StreamId {
        *lock(&self.last_delivered)
    }

    /// Where this pool's dead letters go.
    pub fn dlq_target(&self) -> DlqTarget<'_> {
        DlqTarget {
            redis: &self.redis,
            stream: &self.stream.name,
            dlq: &self.stream.dlq,
            group: &self.name,
            metrics: &self.metrics,
        }
    }

    /// Acknowledge (batched): success, or an entry that is not this pool's.
    pub fn ack(&self, id: StreamId) {
        self.send_acks(Acks::One(id));
    }

    /// Acknowledge a batch the reader settled inline, in one message to the acker.
    pub fn ack_many(&self, ids: Vec<StreamId>) {
        if !ids.is_empty() {
            self.send_acks(Acks::Many(ids));
        }
    }

    fn send_acks(&self, acks: Acks) {
        if self.acks.send(acks).is_err() {
            // The acker is gone (shutdown): the entries stay pending and are redelivered later.
            tracing::debug!(pool = %self.name, "acknowledgement dropped at shutdown");
        }
    }

    /// Whether the reader runs the handler itself: a handler that answers at once (see
    /// [`Handler::runs_inline`]).
    pub fn runs_inline(&self) -> bool {
        self.handler.runs_inline()
    }

    /// The rule for an entry claimed from the PEL (by the janitor after the visibility
    /// timeout, or by a new owner of an ordered pool), written once: the claim itself counted
    /// a delivery, so the handler has seen `count - 1`; when those used up `max_attempts`,
    /// the entry is dead-lettered (`max_attempts`, naming `why` the last delivery ended) and
    /// this returns true; else the caller hands it out.
    pub(crate) async fn dead_letter_if_used_up(
        &self,
        entry: &RawEntry,
        count: u64,
        why: &str,
    ) -> bool {
        let made = count.saturating_sub(1);
        if !self.config.retry.exhausted(made) {
            return false;
        }
        let error =
            format!("no success after {made} deliveries; the last one timed out or its {why}");
        self.dead_letter(entry, made, DlqReason::MaxAttempts, &error)
            .await;
        true
    }

    /// Moves `entry` to the DLQ and lets go of it; if the move fails it is handed back to
    /// the visibility timeout.
    pub async fn dead_letter(
        &self,
        entry: &RawEntry,
        attempts: u64,
        reason: DlqReason,
        error: &str,
    ) {
        let mut counts = Counts::default();
        self.dead_letter_counting(entry, attempts, reason, error, &mut counts)
            .await;
        self.telemetry.add(&mut counts);
    }

    /// [`Pool::dead_letter`] for an entry of a batch: its telemetry goes into the batch's
    /// `counts`, after what the batch counted before it.
    pub(crate) async fn dead_letter_counting(
        &self,
        entry: &RawEntry,
        attempts: u64,
        reason: DlqReason,
        error: &str,
        counts: &mut Counts,
    ) {
        if settle::dead_letter(&self.dlq_target(), entry, attempts, reason, error).await {
            self.telemetry
                .dead_lettered(counts, &self.name, entry, reason);
            self.leases.release(&[entry.id]);
        } else {
            self.leases.retry_at(entry.id, Instant::now());
        }
    }

    /// Pending entries found deleted: acknowledged, counted, released.
    pub async fn lost(&self, ids: &[StreamId]) {
        settle::lost(&self.dlq_target(), ids).await;
        self.leases.release(ids);
    }

    /// Recreates the group after NOGROUP at the last ID this process saw delivered, and
    /// says what was lost when the stream itself went back (Redis restarted without
    /// persistence, or someone deleted the stream).
    pub async fn recreate_group(&self) {
        let at = self.last_delivered();
        let start = if at == StreamId::ZERO {
            self.config.start.clone()
        } else {
            at.to_string()
        };
        let stream = &self.stream.name;
        let before = self.redis.stream_info(stream).await.ok();
        match self.redis.create_group(stream, &self.name, &start).await {
            Ok(true) => {
                tracing::warn!(pool = %self.name, at = %start, "consumer group was gone (NOGROUP); recreated it at the last delivered ID");
                let went_back = before.as_ref().is_none_or(|i| i.last_generated < at);
                if at != StreamId::ZERO && went_back {
                    let held = self.leases.len();
                    tracing::error!(
                        pool = %self.name,
                        last_delivered = %at,
                        stream_ends_at = %before.map(|i| i.last_generated).unwrap_or(StreamId::ZERO),
                        pending_here = held,
                        "Redis lost data: the stream now ends before the last entry this pool read (restart without persistence, or the stream was deleted). Entries published after {at} that no pool had read, and entries pending in other processes, are gone; the {held} entries in flight here finish but cannot be acknowledged or retried"
                    );
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pool = %self.name, error = %e, "could not recreate the consumer group")
            }
        }
    }
}

/// Entries of pool `name` waiting for a rate token in this process (flow control); `None`
/// when it has no limit (or does not run here).
pub(crate) fn rate_waiting(running: &[Arc<Pool>], name: &str) -> Option<u64> {
    let pool = running.iter().find(|p| *p.name == *name)?;
    pool.rate.as_ref().map(|rate| rate.waiting() as u64)
}

/// Start the per-pool background tasks and return their tracker.
pub(crate) fn spawn_pool_tasks(
    pool: &Arc<Pool>,
    acks: mpsc::UnboundedReceiver<Acks>,
    tasks: &crate::task::Tasks,
) {
    tasks.spawn("acker", ack::ack_loop(pool.clone(), acks));
    tasks.spawn("lease keeper", lease::keep_loop(pool.clone()));
}
