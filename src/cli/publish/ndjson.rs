//! `weir publish --ndjson FILE|-`: all or nothing in flat memory, by reading the input twice.
//!
//! Pass 1 reads line by line into one reused buffer and checks every line (JSON shape, type,
//! routing, size, schema, alignment), keeping only counts and the first [`SHOWN_ERRORS`]
//! messages; if any line is invalid, nothing is written. Pass 2 reads the input again and
//! writes it in scripts of [`CHUNK`] events, in file order, with [`IN_FLIGHT`] of them on
//! the connection: Redis runs one while the next is already queued behind it, and weir
//! parses the one after. Memory does not grow with the input.
//!
//! Stdin (and any input that is not a regular file: a pipe, `<(…)`) cannot be read twice:
//! pass 1 copies it to a spool file in the system temp dir (`TMPDIR`), which pass 2 reads.
//! The spool is unlinked as soon as it is open, so it never outlives the process; it takes
//! as much disk as the input.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Instant, SystemTime};

use weir::Config;
use weir::error::{RedisError, RedisErrorKind};
use weir::publisher::{NewEvent, Published, Publisher};

use super::{hint, publisher};
use crate::cli::{Failure, Outcome, print_json, progress};

/// Events per write (one script).
const CHUNK: usize = 2000;
/// Writes on the connection at once: Redis runs one while the next waits behind it, so it
/// never idles while weir parses and encodes.
const IN_FLIGHT: usize = 2;
/// Invalid lines reported one by one; beyond these they are only counted.
const SHOWN_ERRORS: usize = 100;
/// Read buffer: large reads, a fixed amount of memory.
const READ_BUFFER: usize = 256 * 1024;

pub async fn batch(config: &Config, source: &str, allow_unrouted: bool, json: bool) -> Outcome {
    let publisher = publisher(config, allow_unrouted).await?;
    let started = Instant::now();
    let mut input = Input::open(source)?;
    let checked = check_all(&mut input, &publisher)?;
    let check_seconds = started.elapsed().as_secs_f64();
    let reader = input.rewind()?;
    let written = write_all(reader, &publisher, source, checked.events).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = written.published as f64 / seconds.max(1e-9);
    if json {
        print_json(&serde_json::json!({
            "published": written.published,
            "duplicates": written.duplicates,
            "lines": checked.lines,
            "seconds": seconds,
            "checkSeconds": check_seconds,
            "perSecond": rate.round(),
        }));
    } else {
        println!(
            "published {} event(s), {} duplicate(s) skipped, to {} in {seconds:.2}s ({} line(s), {rate:.0}/s; checking took {check_seconds:.2}s)",
            written.published, written.duplicates, config.stream.name, checked.lines
        );
    }
    Ok(())
}

/// The input, read twice: a regular file from its start again, anything else through a
/// spool that pass 1 fills.
struct Input {
    /// For messages: the path, or `-` (stdin).
    name: String,
    /// What pass 1 reads.
    first: Box<dyn Read>,
    /// The file pass 2 reads: the input itself, or the spool.
    again: File,
    spooled: Option<Spool>,
    /// The input file's size and modification time when opened: pass 2 refuses a file that
    /// changed while it was being checked.
    stamp: Option<(u64, Option<SystemTime>)>,
}

impl Input {
    fn open(source: &str) -> Result<Input, Failure> {
        if source == "-" {
            let spool = Spool::create()?;
            return Ok(Input {
                name: source.into(),
                first: Box::new(std::io::stdin()),
                again: spool.file()?,
                spooled: Some(spool),
                stamp: None,
            });
        }
        let cannot = |e: std::io::Error| Failure::usage(format!("cannot read {source}: {e}"));
        let file = File::open(source).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            let spool = Spool::create()?;
            return Ok(Input {
                name: source.into(),
                first: Box::new(file),
                again: spool.file()?,
                spooled: Some(spool),
                stamp: None,
            });
        }
        Ok(Input {
            name: source.into(),
            first: Box::new(file.try_clone().map_err(cannot)?),
            again: file,
            spooled: None,
            stamp: Some(stamp(&meta)),
        })
    }

    /// The reader for pass 2, at the start of the input.
    fn rewind(self) -> Result<BufReader<File>, Failure> {
        let Input {
            name,
            mut again,
            stamp: before,
            spooled,
            ..
        } = self;
        let cannot = |e: std::io::Error| {
            Failure::runtime(format!(
                "cannot read {name} again: {e}; nothing was written"
            ))
        };
        if let Some(before) = before {
            let now = again.metadata().map(|m| stamp(&m)).map_err(cannot)?;
            if now != before {
                return Err(Failure::runtime(format!(
                    "{name} changed while it was being checked; nothing was written. Publish it again once nothing writes to it"
                )));
            }
        }
        again.rewind().map_err(cannot)?;
        drop(spooled);
        Ok(BufReader::with_capacity(READ_BUFFER, again))
    }
}

fn stamp(meta: &std::fs::Metadata) -> (u64, Option<SystemTime>) {
    (meta.len(), meta.modified().ok())
}

/// Stdin's copy for pass 2, in the system temp dir. Unlinked right after it is created, so
/// it disappears when weir exits, however it exits; removed on drop where unlinking an open
/// file is not possible.
struct Spool {
    file: File,
    /// Set while the file still has a name.
    path: Option<PathBuf>,
}

impl Spool {
    fn create() -> Result<Spool, Failure> {
        let dir = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = None;
        for attempt in 0..8 {
            let path = dir.join(format!(
                "weir-publish-{}-{nanos}-{attempt}.ndjson",
                std::process::id()
            ));
            let created = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path);
            match created {
                Ok(file) => {
                    let path = std::fs::remove_file(&path).err().map(|_| path);
                    return Ok(Spool { file, path });
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.map_or_else(|| "unknown error".to_string(), |e| e.to_string());
        Err(Failure::runtime(format!(
            "cannot create a spool file for the input in {}: {e}; NDJSON from a pipe is copied there to be read twice. Set TMPDIR to a writable directory, or pass a file",
            dir.display()
        )))
    }

    /// Another handle on the spool (pass 1 writes through one, pass 2 reads the other).
    fn file(&self) -> Result<File, Failure> {
        self.file
            .try_clone()
            .map_err(|e| Failure::runtime(format!("cannot open the spool file: {e}")))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Lines read into one reused buffer, numbered from 1.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// The number of the line in `buf`.
    n: usize,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(4096),
            n: 0,
        }
    }

    /// The next line's number and text as read (newline included); `None` at the end.
    fn next(&mut self) -> std::io::Result<Option<(usize, &[u8])>> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        self.n += 1;
        Ok(Some((self.n, &self.buf)))
    }
}

/// A line's content without surrounding whitespace; `None` for a blank line (skipped).
fn content(line: &[u8]) -> Option<&[u8]> {
    let text = line.trim_ascii();
    (!text.is_empty()).then_some(text)
}

fn parse(line: &[u8]) -> Result<NewEvent, serde_json::Error> {
    serde_json::from_slice(line)
}

/// What pass 1 counted.
struct Checked {
    lines: usize,
    events: usize,
}

/// The first [`SHOWN_ERRORS`] invalid lines' messages, and how many there were.
#[derive(Default)]
struct Errors {
    shown: Vec<String>,
    count: usize,
}

impl Errors {
    /// Counts an invalid line; `message` is only formatted for the ones shown.
    fn add(&mut self, message: impl FnOnce() -> String) {
        self.count += 1;
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(message());
        }
    }

    fn into_failure(self, name: &str) -> Failure {
        for e in &self.shown {
            eprintln!("{e}");
        }
        let more = self.count - self.shown.len();
        if more > 0 {
            eprintln!("… and {more} more invalid line(s) not shown");
        }
        Failure::runtime(format!(
            "{} invalid line(s) in {name}; nothing was written",
            self.count
        ))
    }
}

/// Pass 1: checks every line, copying the input to the spool when there is one.
fn check_all(input: &mut Input, publisher: &Publisher) -> Result<Checked, Failure> {
    let name = input.name.clone();
    let mut spool = match &input.spooled {
        Some(s) => Some(BufWriter::with_capacity(READ_BUFFER, s.file()?)),
        None => None,
    };
    let spool_failed = |e: std::io::Error| {
        Failure::runtime(format!(
            "cannot copy {name} to the spool file in {}: {e} (disk full? set TMPDIR elsewhere); nothing was written",
            std::env::temp_dir().display()
        ))
    };
    let bar = progress(None, "check");
    let mut lines = Lines::new(BufReader::with_capacity(READ_BUFFER, &mut input.first));
    let (mut events, mut errors) = (0, Errors::default());
    loop {
        let upcoming = lines.n + 1;
        let line = lines
            .next()
            .map_err(|e| Failure::usage(format!("{name}:{upcoming}: cannot read: {e}")))?;
        let Some((n, line)) = line else { break };
        if let Some(spool) = spool.as_mut() {
            spool.write_all(line).map_err(spool_failed)?;
        }
        if n % 4096 == 0 {
            bar.set_position(n as u64);
        }
        let Some(text) = content(line) else { continue };
        match check_line(text, publisher) {
            Ok(()) => events += 1,
            Err(why) => errors.add(|| format!("{name}:{n}: {}", why())),
        }
    }
    bar.finish_and_clear();
    if let Some(mut spool) = spool {
        spool.flush().map_err(spool_failed)?;
    }
    if errors.count > 0 {
        return Err(errors.into_failure(&name));
    }
    Ok(Checked {
        lines: lines.n,
        events,
    })
}

/// Whether one line is a valid event; the error is formatted only when asked for.
fn check_line(text: &[u8], publisher: &Publisher) -> Result<(), Box<dyn FnOnce() -> String>> {
    match parse(text) {
        Err(e) => Err(Box::new(move || {
            format!("not an event line ({{\"type\",\"data\",\"id\"?,\"fields\"?}}): {e}")
        })),
        Ok(event) => publisher
            .check(&event)
            .map_err(|r| Box::new(move || format!("{r}{}", hint(&r))) as _),
    }
}

/// What pass 2 wrote.
struct Written {
    published: usize,
    duplicates: usize,
}

/// Pass 2: writes every event, in file order.
async fn write_all(
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
            Ok(event) => writer.add(n, event).await?,
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
struct Flight<'a> {
    lines: RangeInclusive<usize>,
    events: usize,
    reply: Pin<Box<dyn Future<Output = Result<(), RedisError>> + Send + 'a>>,
}

/// Batches events without a dedup id and keeps up to [`IN_FLIGHT`] writes on the connection;
/// events with one go alone, in order, through the dedup script.
struct Writer<'a> {
    publisher: &'a Publisher,
    name: &'a str,
    bar: indicatif::ProgressBar,
    /// Events waiting for a full batch, and the line of the first.
    pending: Vec<NewEvent>,
    pending_from: usize,
    /// The line of the last pending event.
    pending_to: usize,
    in_flight: VecDeque<Flight<'a>>,
    published: usize,
    duplicates: usize,
}

impl<'a> Writer<'a> {
    fn new(publisher: &'a Publisher, name: &'a str, bar: indicatif::ProgressBar) -> Writer<'a> {
        Writer {
            publisher,
            name,
            bar,
            pending: Vec::with_capacity(CHUNK),
            pending_from: 0,
            pending_to: 0,
            in_flight: VecDeque::with_capacity(IN_FLIGHT),
            published: 0,
            duplicates: 0,
        }
    }

    /// Adds line `n`'s event.
    async fn add(&mut self, n: usize, event: NewEvent) -> Outcome {
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
            Ok(Ok(Published::Duplicate(_))) => self.duplicates += 1,
            Ok(Err(r)) => return Err(self.stop(n, &format!("{r}{}", hint(&r))).await),
            Err(e) => return Err(self.failed(n..=n, e).await),
        }
        self.bar.inc(1);
        Ok(())
    }

    /// Puts the pending batch on the connection, then waits until fewer than [`IN_FLIGHT`]
    /// writes are unanswered.
    async fn send(&mut self) -> Outcome {
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

    async fn land_oldest(&mut self) -> Outcome {
        if let Some(mut flight) = self.in_flight.pop_front() {
            let result = flight.reply.as_mut().await;
            self.landed(flight, result).await?;
        }
        Ok(())
    }

    async fn landed(&mut self, flight: Flight<'a>, result: Result<(), RedisError>) -> Outcome {
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
    async fn drain(&mut self) -> Outcome {
        while !self.in_flight.is_empty() {
            self.land_oldest().await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Outcome {
        self.send().await?;
        self.drain().await
    }

    /// The write of `lines` failed: waits for the writes behind it, then says exactly what
    /// was written and where to resume.
    async fn failed(&mut self, lines: RangeInclusive<usize>, e: RedisError) -> Failure {
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
    async fn stop(&mut self, n: usize, why: &str) -> Failure {
        let from = if self.pending.is_empty() {
            n
        } else {
            self.pending_from
        };
        self.pending.clear();
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
fn resume_hint(name: &str, from: usize, gaps: bool) -> String {
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

fn redis_hint(e: &RedisError) -> &'static str {
    if e.is(RedisErrorKind::OutOfMemory) {
        " (Redis is out of memory: maxmemory reached with maxmemory-policy noeviction; free memory, trim or raise maxmemory)"
    } else if e.is(RedisErrorKind::NoPermission) {
        " (the Redis user lacks a permission: see ops/redis/README.md)"
    } else {
        ""
    }
}
