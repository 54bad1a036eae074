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

use std::time::Instant;

use weir::Config;

use super::publisher;
use crate::cli::{Outcome, print_json};

mod check;
mod input;
mod write;

use check::check_all;
use input::Input;
use write::write_all;

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
