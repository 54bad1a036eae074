//! One integration test binary, a module per area; every test runs against its own real
//! redis-server (see `support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acl;
mod adapt;
mod align;
mod api;
mod bad_input;
mod cli;
mod cluster;
mod dashboard;
mod dlq;
mod engine;
mod faults;
mod flow;
mod handlers;
mod hostile;
mod liveness;
mod observability;
mod openapi;
mod ordered;
mod packaging;
mod process;
mod props;
mod replay;
mod runbook;
mod schedule;
mod schedules;
#[allow(dead_code)]
mod support;
mod telemetry;
mod tls;
#[path = "tracing.rs"]
mod trace_context;
