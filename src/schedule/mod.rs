//! Scheduled delivery (contract §13): events held until a time, and recurring schedules.
//!
//! - `cron`: when a recurring schedule's ticks are (cron in a time zone, or `every`) and
//!   which due ticks to publish (`catch_up`): pure.
//! - `recurring`: the scheduler every `weir run` runs (each tick published once across all
//!   processes) and the operations behind `weir schedules` and `/api/v1/schedules`.

pub mod cron;
pub mod recurring;
