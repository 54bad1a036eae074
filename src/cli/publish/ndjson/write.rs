//! Pass 2: the events written in file order, in scripts of [`CHUNK`] with [`IN_FLIGHT`] on
//! the connection, and the resume hint when a write fails half-way.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::BufReader;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::Poll;

use weir::error::{RedisError, RedisErrorKind};
use weir::publisher::{NewEvent, Published, Publisher, Scheduled};
use weir::redis::Due;

use super::check::{Parsed, parse};
use super::input::{Lines, content};
use super::{CHUNK, IN_FLIGHT};
use crate::cli::publish::hint;
use crate::cli::{Failure, Outcome, progress};

/// What pass 2 wrote.
pub(super) struct Written {
    pub(super) published: usize,
    pub(super) duplicates: usize,
}

/// Pass 2: writes every event, in file order.
pub(super) async fn write_all(
    reader: BufReader<File>,
    publisher: &Publisher,
    name: &str,
    events: usize,
) -> Result<Written, Failure> {
    let bar = progress(Some(events as u64), "publish");
    let mut writer = Writer::new(publisher, name, bar.clone());
    let mut lines = Lines::new(reader);
    loop {
        let upcoming = lines.n + 1;
        let line = match lines.next() {
            Ok(line) => line,
            Err(e) => return Err(writer.stop(upcoming, &format!("cannot read: {e}")).await),
        };
        let Some((n, line)) = line else { break };
        let Some(text) = content(line) else { continue };
        match parse(text) {
            Ok(Parsed { event, due: None }) => writer.add(n, event).await?,
            Ok(Parsed {
                event,
                due: Some(due),
            }) => writer.add_delayed(n, event, due).await?,
            Err(e) => {
                let why = format!("changed since it was checked, now not an event line: {e}");
                return Err(writer.stop(n, &why).await);
            }
        }
    }
    writer.finish().await?;
    bar.finish_and_clear();
    Ok(Written {
        published: writer.published,
        duplicates: writer.duplicates,
    })
}

/// A write on the connection: the lines it holds and its reply.
pub(super) struct Flight<'a> {
    lines: RangeInclusive<usize>,
    events: usize,
    reply: Pin<Box<dyn Future<Output = Result<(), RedisError>> + Send + 'a>>,
}

/// Batches events without a dedup id and keeps up to [`IN_FLIGHT`] writes on the connection;
/// events with one go alone, in order, through the dedup script.
pub(super) struct Writer<'a> {
    publisher: &'a Publisher,
    name: &'a str,
    bar: indicatif::ProgressBar,
    /// Events waiting for a full batch, and the line of the first.
    pending: Vec<NewEvent>,
    pending_from: usize,
    /// The line of the last pending event.
    pending_to: usize,
    /// Delayed events without a dedup id waiting for a full batch, and the lines of the
    /// first and the last. Never pending at the same time as `pending`: each kind is written
    /// before the other is queued, so the file's order holds.
    delayed: Vec<(NewEvent, Due)>,
    delayed_lines: (usize, usize),
    in_flight: VecDeque<Flight<'a>>,
    pub(super) published: usize,
    pub(super) duplicates: usize,
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        publisher: &'a Publisher,
        name: &'a str,
        bar: indicatif::ProgressBar,
    ) -> Writer<'a> {
        Writer {
            publisher,
            name,
            bar,
            pending: Vec::with_capacity(CHUNK),
            pending_from: 0,
            pending_to: 0,
            delayed: Vec::new(),
            delayed_lines: (0, 0),
            in_flight: VecDeque::with_capacity(IN_FLIGHT),
            published: 0,
            duplicates: 0,
        }
    }

    /// Adds line `n`'s delayed event: with others in one script, or alone through the
    /// dedup script when it has a dedup id.
    pub(super) async fn add_delayed(&mut self, n: usize, event: NewEvent, due: Due) -> Outcome {
        self.send().await?;
        self.drain().await?;
        if self.publisher.dedup_id(&event).is_none() {
            if self.delayed.is_empty() {
                self.delayed_lines.0 = n;
            }
            self.delayed_lines.1 = n;
            self.delayed.push((event, due));
            if self.delayed.len() >= CHUNK {
                self.send_delayed().await?;
            }
            return Ok(());
        }
        self.send_delayed().await?;
        let partition = self.publisher.partition(&event);
        match self.publisher.schedule_to(&event, due, partition).await {
            Ok(Ok(Scheduled::Added { .. })) => self.published += 1,
            Ok(Ok(_)) => self.duplicates += 1,
            Ok(Err(r)) => return Err(self.stop(n, &format!("{r}{}", hint(&r))).await),
            Err(e) => return Err(self.failed(n..=n, e).await),
        }
        self.bar.inc(1);
        Ok(())
    }

    /// Writes the pending delayed events (one script per partition).
    pub(super) async fn send_delayed(&mut self) -> Outcome {
        if self.delayed.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.delayed);
        let (from, to) = self.delayed_lines;
        match self.publisher.schedule_batch(events).await {
            Ok(added) => {
                self.published += added;
                self.bar.inc(added as u64);
                Ok(())
            }
            Err(e) => Err(self.failed(from..=to, e).await),
        }
    }

    /// Adds line `n`'s event.
    pub(super) async fn add(&mut self, n: usize, event: NewEvent) -> Outcome {
        self.send_delayed().await?;
        if self.publisher.dedup_id(&event).is_none() {
            if self.pending.is_empty() {
                self.pending_from = n;
            }
            self.pending_to = n;
            self.pending.push(event);
            if self.pending.len() >= CHUNK {
                self.send().await?;
            }
            return Ok(());
        }
        self.send().await?;
        self.drain().await?;
        match self.publisher.publish(&event).await {
            Ok(Ok(Published::Added(_))) => self.published += 1,
            Ok(Ok(Published::Duplicate(_) | Published::DuplicateScheduled(_))) => {
                self.duplicates += 1
            }
            Ok(Err(r)) => return Err(self.stop(n, &format!("{r}{}", hint(&r))).await),
            Err(e) => return Err(self.failed(n..=n, e).await),
        }
        self.bar.inc(1);
        Ok(())
    }

    /// Puts the pending batch on the connection, then waits until fewer than [`IN_FLIGHT`]
    /// writes are unanswered.
    pub(super) async fn send(&mut self) -> Outcome {
        if self.pending.is_empty() {
            return Ok(());
        }
        let events = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        let publisher = self.publisher;
        let mut flight = Flight {
            lines: self.pending_from..=self.pending_to,
            events: events.len(),
            reply: Box::pin(async move { publisher.write_batch(events).await.map(|_| ()) }),
        };
        // The first poll hands the script to the connection (the Redis client queues a
        // command when its future is first polled), so writes reach Redis in file order
        // although the previous one is still unanswered.
        match futures::poll!(flight.reply.as_mut()) {
            Poll::Ready(result) => self.landed(flight, result).await?,
            Poll::Pending => self.in_flight.push_back(flight),
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.land_oldest().await?;
        }
        Ok(())
    }

    pub(super) async fn land_oldest(&mut self) -> Outcome {
        if let Some(mut flight) = self.in_flight.pop_front() {
            let result = flight.reply.as_mut().await;
            self.landed(flight, result).await?;
        }
        Ok(())
    }

    pub(super) async fn landed(
        &mut self,
        flight: Flight<'a>,
        result: Result<(), RedisError>,
    ) -> Outcome {
        match result {
            Ok(()) => {
                self.published += flight.events;
                self.bar.inc(flight.events as u64);
                Ok(())
            }
            Err(e) => Err(self.failed(flight.lines, e).await),
        }
    }

    /// Waits for every write on the connection.
    pub(super) async fn drain(&mut self) -> Outcome {
        while !self.in_flight.is_empty() {
            self.land_oldest().await?;
        }
        Ok(())
    }

    pub(super) async fn finish(&mut self) -> Outcome {
        self.send_delayed().await?;
        self.send().await?;
        self.drain().await
    }

    /// The write of `lines` failed: waits for the writes behind it, then says exactly what
    /// was written and where to resume.
    pub(super) async fn failed(&mut self, lines: RangeInclusive<usize>, e: RedisError) -> Failure {
        let lost = e.is(RedisErrorKind::Connection);
        let mut later = Vec::new();
        while let Some(mut flight) = self.in_flight.pop_front() {
            if flight.reply.as_mut().await.is_ok() {
                self.published += flight.events;
                later.push(flight.lines);
            }
        }
        self.bar.finish_and_clear();
        let mut message = format!(
            "{}: writing lines {}-{} failed: {}{}. {} event(s) were written, every line before {}",
            self.name,
            lines.start(),
            lines.end(),
            e.reason(),
            redis_hint(&e),
            self.published,
            lines.start(),
        );
        for l in &later {
            message += &format!(
                "; lines {}-{} were written too (they were already on their way)",
                l.start(),
                l.end()
            );
        }
        if lost {
            message += &format!(
                "; lines {}-{} may or may not have been written (the connection failed while they were in flight): look at the stream's last entries",
                lines.start(),
                lines.end()
            );
        }
        message += &resume_hint(self.name, *lines.start(), !later.is_empty());
        Failure::runtime(message)
    }

    /// Stops at line `n` for `why` (a line that changed since pass 1): waits for the writes
    /// on the connection, then says what was written and where to resume.
    pub(super) async fn stop(&mut self, n: usize, why: &str) -> Failure {
        let from = if !self.delayed.is_empty() {
            self.delayed_lines.0
        } else if !self.pending.is_empty() {
            self.pending_from
        } else {
            n
        };
        self.pending.clear();
        self.delayed.clear();
        if let Err(f) = self.drain().await {
            return f;
        }
        self.bar.finish_and_clear();
        Failure::runtime(format!(
            "{}:{n}: {why}. {} event(s) were written, every line before {from}{}",
            self.name,
            self.published,
            resume_hint(self.name, from, false)
        ))
    }
}

/// How to publish the rest.
pub(super) fn resume_hint(name: &str, from: usize, gaps: bool) -> String {
    let skip = if gaps {
        " (leaving out those lines)"
    } else {
        ""
    };
    let command = if name == "-" {
        format!("pipe the same input through `tail -n +{from}` into `weir publish --ndjson -`")
    } else {
        format!("tail -n +{from} {name} | weir publish --ndjson -")
    };
    format!(". Resume from line {from}{skip}: {command}")
}

pub(super) fn redis_hint(e: &RedisError) -> &'static str {
    if e.is(RedisErrorKind::OutOfMemory) {
        " (Redis is out of memory: maxmemory reached with maxmemory-policy noeviction; free memory, trim or raise maxmemory)"
    } else if e.is(RedisErrorKind::NoPermission) {
        " (the Redis user lacks a permission: see ops/redis/README.md)"
    } else {
        ""
    }
}
