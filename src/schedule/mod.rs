//! Scheduled delivery (contract §13): events held until a time, and recurring schedules.
//!
//! - [`delayed`]: delayed events' member format (a JSON object of strings in
//!   `<stream>:scheduled`, scored by due unix ms) and the operations `weir scheduled`,
//!   `/api/v1/scheduled` and the dashboard share: a page soonest first, cancel by id, the
//!   count and how overdue the soonest is. The publisher adds them (`Publisher::publish_at`).
//! - `mover`: the loop every `weir run` runs that moves due members to the stream, one
//!   script per batch, each member exactly once across processes.
//! - `cron`: when a recurring schedule's ticks are (cron in a time zone, or `every`) and
//!   which due ticks to publish (`catch_up`): pure.
//! - `recurring`: the scheduler every `weir run` runs (each tick published once across all
//!   processes) and the operations behind `weir schedules` and `/api/v1/schedules`.

pub mod cron;
pub mod delayed;
pub(crate) mod mover;
pub mod recurring;
