//! One entry's trip through dispatch, the handler and settle.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Pool;
use super::job::Job;
use crate::dispatch::Decision;
use crate::flow::Admit;
use crate::handler::{Delivery, Outcome};
use crate::pointer::Found;
use crate::settle::{self, Settlement};
use crate::telemetry::Counts;
use crate::vocab::{RawEntry, StreamId};
use futures::FutureExt;

/// What the entries of a batch run on one task (an inline handler's reader) leave to send
/// at once: their acknowledgements, as one message to the acker, and their telemetry counts.
pub(super) struct Batch {
    acked: Vec<StreamId>,
    counts: Counts,
}

impl Batch {
    /// Room for `entries` acknowledgements.
    pub(super) fn new(entries: usize) -> Batch {
        Batch {
            acked: Vec::with_capacity(entries),
            counts: Counts::default(),
        }
    }

    /// Dispatches and handles `entry` on the calling task (an ordered pool's under the owner
    /// `epoch`), keeping its acknowledgement and counts for [`Batch::finish`].
    pub(super) async fn handle(
        &mut self,
        pool: &Pool,
        entry: &RawEntry,
        attempt: u64,
        epoch: Option<u64>,
    ) -> Done {
        let done = handle_guarded(pool, entry, attempt, epoch, &mut self.counts).await;
        if let Done::Ack = done {
            self.acked.push(entry.id);
        }
        done
    }

    /// Sends the acknowledgements and adds the counts.
    pub(super) fn finish(mut self, pool: &Pool) {
        pool.telemetry.add(&mut self.counts);
        pool.ack_many(self.acked);
    }
}

/// Runs `job` on the calling task (an inline handler's reader), with a worker's checks; its
/// acknowledgement and counts go into `batch`.
pub(super) async fn run_here(job: Job, batch: &mut Batch) {
    if may_run(&job) {
        process(job, Some(batch)).await;
    }
}

/// Whether a worker may still run `job`: not after the shutdown grace, and for ordered
/// pools only at the owner epoch it was handed out under (fencing).
fn may_run(job: &Job) -> bool {
    if job.pool.abandon.is_cancelled() {
        return false; // what is still queued stays pending
    }
    job.pool
        .ordered
        .as_ref()
        .is_none_or(|ordered| ordered.may_run(job.epoch))
}

/// One of the pool's `concurrency` long-lived workers, shared by all its partitions: runs
/// jobs until the queue is closed and empty. Long-lived tasks, not one task per entry:
/// spawning a task per entry costs more than reusing one.
pub(crate) async fn worker_loop(jobs: async_channel::Receiver<Job>) {
    while let Ok(job) = jobs.recv().await {
        // Adaptive concurrency: wait for a slot (at once for a fixed pool).
        let _slot = job.pool.scale.slot().await;
        if job.pool.abandon.is_cancelled() {
            break; // shutdown grace is over: what is still queued stays pending
        }
        if !may_run(&job) {
            continue; // fencing: handed out under an epoch this process no longer owns
        }
        // Boxed: the job's future (handler, settle, Redis calls) is several KB, and an idle
        // worker should not hold that much; one allocation per entry is cheaper than
        // `concurrency` times the largest state.
        Box::pin(process(job, None)).await;
    }
}

/// What became of an entry: for the caller to acknowledge, and for an ordered pool's lane.
pub(super) enum Done {
    /// Handled, or not this pool's: acknowledge it (the key's next entry may go).
    Ack,
    /// Settled otherwise (dead-lettered, scheduled for a retry, found deleted).
    Settled,
    /// Failed with attempts left: retry after this long, keeping the key.
    RetryAfter(Duration),
    /// Shutdown abandoned it: it stays pending.
    Abandoned,
    /// Its rate key's waiting slots were all taken (contract §14): queue it again after
    /// this long, still leased, not an attempt.
    RateLater(Duration),
}

/// Handles `job`, acknowledges it and counts it (at once, or into `batch`, which the caller
/// sends) and moves its key's lane on. The job's worker slot is free once it is over (a job
/// kept for a retry keeps it).
async fn process(job: Job, batch: Option<&mut Batch>) {
    let pool = job.pool.clone();
    let done = match batch {
        Some(batch) => {
            batch
                .handle(&pool, &job.entry, job.attempt, job.epoch)
                .await
        }
        None => {
            let mut counts = Counts::default();
            let done = handle_guarded(&pool, &job.entry, job.attempt, job.epoch, &mut counts).await;
            pool.telemetry.add(&mut counts);
            if let Done::Ack = done {
                pool.ack(job.entry.id);
            }
            done
        }
    };
    match (pool.ordered.as_ref(), done) {
        (Some(_), Done::RetryAfter(after)) => super::ordered::retry_later(&pool, job, after),
        (Some(ordered), Done::Settled | Done::Ack) => {
            super::ordered::settled(&pool, ordered, job.lane)
        }
        (_, Done::RateLater(after)) => requeue_after(job, after),
        _ => {}
    }
}

/// Queues `job` again after `after`, off the workers (a rate key whose waiting slots are
/// taken): it keeps its lease and its read-ahead permit, and counts as waiting meanwhile.
/// At shutdown it stays pending.
pub(super) fn requeue_after(job: Job, after: Duration) {
    let pool = job.pool.clone();
    pool.workers.spawn(async move {
        let pool = job.pool.clone();
        let Some(rate) = pool.rate.clone() else {
            return;
        };
        let _waiting = rate.enter_waiting();
        tokio::select! {
            _ = tokio::time::sleep(after) => super::job::send(&pool, job),
            _ = pool.stop.cancelled() => {}
        }
    });
}

/// [`handle`], where a panic on the way (dispatch, settle, a handler's future dropped at its
/// timeout: anything the handler call's own guard does not cover) fails the entry instead of
/// killing the worker and stranding the entry: its lease would be renewed forever and it
/// would never be retried. The entry is retried after the policy's backoff, as after any
/// retryable failure, and the panic is logged at ERROR.
async fn handle_guarded(
    pool: &Pool,
    entry: &RawEntry,
    attempt: u64,
    epoch: Option<u64>,
    counts: &mut Counts,
) -> Done {
    let run = AssertUnwindSafe(handle(pool, entry, attempt, epoch, counts)).catch_unwind();
    match run.await {
        Ok(done) => done,
        Err(panic) => failed_by_panic(
            pool,
            entry.id,
            attempt,
            &crate::task::panic_message(&*panic),
        ),
    }
}

/// Schedules the retry of entry `id` after a panic outside the handler call: an ordered pool
/// keeps it (and its key) in-process, others hand it to the PEL schedule.
fn failed_by_panic(pool: &Pool, id: StreamId, attempt: u64, message: &str) -> Done {
    let after = pool.config.retry.backoff(attempt);
    tracing::error!(
        pool = %pool.name,
        entry_id = %id,
        attempt,
        error = %format!("handler panicked: {message}"),
        retry_in = ?after,
        "a panic outside the handler call (dispatch, settle or dropping the handler); the entry failed and is retried"
    );
    if pool.ordered.is_some() {
        return Done::RetryAfter(after);
    }
    pool.leases.retry_at(id, settle::retry_due(after));
    Done::Settled
}

/// Counts an entry in flight while it lives, a panic's unwinding included.
struct InFlight<'p>(&'p AtomicUsize);

impl<'p> InFlight<'p> {
    fn enter(count: &'p AtomicUsize) -> InFlight<'p> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Dispatches `entry`, runs the handler and settles the outcome, all but the acknowledgement
/// and the telemetry counts (into `counts`), which the caller sends (one by one from a
/// worker, a batch at a time inline).
async fn handle(
    pool: &Pool,
    entry: &RawEntry,
    attempt: u64,
    epoch: Option<u64>,
    counts: &mut Counts,
) -> Done {
    if entry.fields.is_none() {
        Box::pin(pool.lost(&[entry.id])).await;
        return Done::Settled;
    }
    match pool.router.decide(pool.index, entry) {
        Decision::Skip => return Done::Ack,
        Decision::DeadLetter { reason, error } => {
            Box::pin(pool.dead_letter_counting(entry, attempt, reason, &error, counts)).await;
        }
        Decision::Handle(event) => {
            if let Some(rate) = &pool.rate {
                match rate.admit(entry, pool.jobs.len(), &pool.stop).await {
                    Admit::Go => {}
                    Admit::Later(after) => return Done::RateLater(after),
                    Admit::Stopped => return Done::Abandoned,
                }
            }
            let value = event.telemetry;
            let (trace_context, span) = pool.tracer.start(&event.fields);
            let delivery = Delivery {
                pool: pool.name.clone(),
                entry_id: event.id,
                event_type: event.event_type,
                data: event.data,
                event_id: event.event_id,
                fields: event.fields,
                attempt,
                owner_epoch: epoch,
                trace_context,
            };
            let _in_flight = InFlight::enter(&pool.in_flight);
            let started = Instant::now();
            pool.progress.started(started);
            let outcome = run_handler(pool, &delivery).await;
            return match outcome {
                Some(outcome) => {
                    let took = started.elapsed();
                    let settled = Settled {
                        value,
                        counts,
                        span,
                    };
                    settle_outcome(pool, entry, &delivery, outcome, took, settled).await
                }
                None => Done::Abandoned,
            };
        }
    }
    Done::Settled
}

/// Where a delivery's telemetry is counted: its value, the counts of its batch, and its
/// trace span when one is exported.
struct Settled<'c> {
    value: Option<Found>,
    counts: &'c mut Counts,
    span: Option<crate::trace::Started>,
}

/// Records the handler's answer and carries out what [`settle::decide`] makes of it.
async fn settle_outcome(
    pool: &Pool,
    entry: &RawEntry,
    d: &Delivery,
    outcome: Outcome,
    took: Duration,
    telemetry: Settled<'_>,
) -> Done {
    pool.activity.touch();
    pool.metrics.attempt(d.attempt);
    match &outcome {
        Outcome::Success => pool.metrics.processed(&d.event_type, took),
        _ => pool.metrics.failed(&d.event_type, took),
    }
    pool.scale.observe(took, outcome.is_overload());
    let settlement = settle::decide(outcome, d.attempt, &pool.config.retry);
    settle::log_settled(d, &settlement, took, pool.log_each_entry);
    if matches!(settlement, Settlement::Retry { .. }) {
        pool.metrics.retried();
    }
    (telemetry.counts).settled(&pool.name, d, telemetry.value.as_ref(), &settlement);
    if let Some(span) = telemetry.span {
        trace_settled(pool, d, &settlement, span);
    }
    match settlement {
        Settlement::Ack => return Done::Ack,
        // Ordered pools keep a failed entry (and its key) in-process; others hand it to the
        // PEL schedule, where the janitor picks it up when the backoff ends.
        Settlement::Retry { after, .. } if pool.ordered.is_some() => {
            return Done::RetryAfter(after);
        }
        // `after` is at most `max_backoff_seconds`, and `retry_due` cannot panic.
        Settlement::Retry { after, .. } => {
            pool.leases.retry_at(entry.id, settle::retry_due(after));
        }
        // Boxed: the DLQ move's state is large and rarely needed, and this future lives
        // inside every in-flight entry's.
        Settlement::DeadLetter { reason, error } => {
            let counts = &mut *telemetry.counts;
            Box::pin(pool.dead_letter_counting(entry, d.attempt, reason, &error, counts)).await;
        }
    }
    Done::Settled
}

/// Ends the delivery's exported span with what became of the entry.
fn trace_settled(pool: &Pool, d: &Delivery, settlement: &Settlement, span: crate::trace::Started) {
    let (error, dead_lettered) = match settlement {
        Settlement::Ack => (None, None),
        Settlement::Retry { error, .. } => (Some(error.as_str()), None),
        Settlement::DeadLetter { reason, error } => (Some(error.as_str()), Some(reason.as_str())),
    };
    let ending = crate::trace::Ending {
        pool: &pool.name,
        stream: &pool.stream.name,
        entry_id: d.entry_id,
        attempt: d.attempt,
        outcome: settlement.label(),
        error,
        dead_lettered,
    };
    pool.tracer.finish(span, ending);
}

/// The handler's outcome, bounded by the pool's timeout; a panic counts as a retryable
/// failure. `None` when shutdown abandoned the handler (the entry stays pending).
async fn run_handler(pool: &Pool, delivery: &Delivery) -> Option<Outcome> {
    let call = AssertUnwindSafe(pool.handler.handle(delivery)).catch_unwind();
    if pool.handler.runs_inline() {
        // It answers at once: no timer, no shutdown race to arm.
        return Some(call.await.unwrap_or_else(panicked));
    }
    let timeout = pool.config.timeout;
    tokio::select! {
        // The handler first: an answer that is ready costs no cancellation-token registration.
        biased;
        result = tokio::time::timeout(timeout, call) => Some(match result {
            Ok(result) => result.unwrap_or_else(panicked),
            Err(_) => Outcome::retry(format!("handler timed out after {:?} (pool timeout_seconds)", timeout)),
        }),
        _ = pool.abandon.cancelled() => {
            tracing::warn!(pool = %pool.name, entry_id = %delivery.entry_id, "shutdown grace over; handler abandoned, entry stays pending");
            None
        }
    }
}

/// A handler's panic, as a retryable failure naming the panic message.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Outcome {
    Outcome::retry(format!(
        "handler panicked: {}",
        crate::task::panic_message(&*panic)
    ))
}
