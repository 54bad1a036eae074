//! The only module that talks to the Redis client. Every command weir sends is a plain,
//! non-generic method of [`Redis`], so the rest of the crate speaks in [`StreamId`]s and
//! [`RawEntry`]s and fred's generic API is compiled once.
//!
//! One file per command family, like mini-redis's `cmd/*`:
//!
//! - `connection`: the [`Redis`] handle, connecting, resets, PING.
//! - `command`: what the families share: routing, timeouts, error mapping, running scripts.
//! - `group`: consumer groups: create, read, acknowledge, claim, pending lists, consumers.
//! - `dead_letter`: moves to the DLQ (one entry, a sweep) and back (reprocess).
//! - `write`: appends (one, many, at most once, with progress), deletes, trims, hashes, sets.
//! - `inspect`: XINFO, lengths, ranges, plain keys, durability settings.
//! - `preflight`: what `weir check` asks: may this user send a command, the server clock.
//! - `scheduled`: delayed events' sorted sets: add (with dedup), move what is due, page,
//!   cancel by id, count (contract §13).
//! - `telemetry`: the monitor hash (replaced whole, with an expiry) and the per-value
//!   telemetry counters (one pipeline per flush).
//! - `schedule`: recurring schedules' state hashes, the claim-and-publish script, pause.
//! - `reply`: typed parsing of replies, never panicking.
//! - `tls`: rustls setup for `rediss://`.
//! - `lua/*.lua`: the scripts, one per file, each with a KEYS/ARGV header.

mod command;
mod connection;
mod dead_letter;
mod group;
mod inspect;
mod lease;
mod preflight;
mod rate;
mod reply;
mod schedule;
mod scheduled;
mod telemetry;
mod tls;
mod write;

pub use crate::vocab::{RawEntry, StreamId};
pub use command::key_slot;
pub use connection::{Redis, RedisConfig, validate_url};
pub use dead_letter::{IdleSweep, Reprocessing, SweepResult, SweptEntry};
pub use group::{AutoClaim, ConsumerInfo};
pub use inspect::{GroupInfo, StreamInfo};
pub use lease::LeaseClaim;
pub use rate::{Bucket, Taken};
pub use schedule::{Fired, ScheduleState, TickClaim};
pub use scheduled::{Due, MoveKeys, MovedBatch, ScheduledOnce, ScheduledSummary};
pub use telemetry::HashDelta;
pub use write::{JobOwner, LedEntry};
