//! Pass 1: every line checked, counts and the first invalid lines kept, nothing written.

use std::io::{BufReader, BufWriter, Write};

use weir::publisher::{NewEvent, Publisher};

use super::input::{Input, Lines, content};
use super::{READ_BUFFER, SHOWN_ERRORS};
use crate::cli::publish::hint;
use crate::cli::{Failure, progress};

pub(super) fn parse(line: &[u8]) -> Result<NewEvent, serde_json::Error> {
    serde_json::from_slice(line)
}

/// What pass 1 counted.
pub(super) struct Checked {
    pub(super) lines: usize,
    pub(super) events: usize,
}

/// The first [`SHOWN_ERRORS`] invalid lines' messages, and how many there were.
#[derive(Default)]
pub(super) struct Errors {
    shown: Vec<String>,
    count: usize,
}

impl Errors {
    /// Counts an invalid line; `message` is only formatted for the ones shown.
    pub(super) fn add(&mut self, message: impl FnOnce() -> String) {
        self.count += 1;
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(message());
        }
    }

    pub(super) fn into_failure(self, name: &str) -> Failure {
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
pub(super) fn check_all(input: &mut Input, publisher: &Publisher) -> Result<Checked, Failure> {
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
pub(super) fn check_line(
    text: &[u8],
    publisher: &Publisher,
) -> Result<(), Box<dyn FnOnce() -> String>> {
    match parse(text) {
        Err(e) => Err(Box::new(move || {
            format!("not an event line ({{\"type\",\"data\",\"id\"?,\"fields\"?}}): {e}")
        })),
        Ok(event) => publisher
            .check(&event)
            .map_err(|r| Box::new(move || format!("{r}{}", hint(&r))) as _),
    }
}
