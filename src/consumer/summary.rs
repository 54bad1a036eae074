//! Each pool's summary line: what its partitions in this process handled over the last
//! `[logging] summary_seconds` (default 10 s), at INFO. It stands in for a line per success
//! (`[logging] each_entry`), which at full speed would cost a third of the throughput.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Pool;
use crate::metrics::Summary;

/// Logs `pools`' (one pool, its partitions) summary every `every` when anything happened;
/// once more at stop for the last part window.
pub(crate) async fn run(pools: Vec<Arc<Pool>>, every: Duration, stop: CancellationToken) {
    let Some(name) = pools.first().map(|p| p.name.clone()) else {
        return;
    };
    let mut before = total(&pools);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            _ = stop.cancelled() => true,
        };
        let now = total(&pools);
        log(&name, &now.since(&before), every);
        before = now;
        if stopping {
            return;
        }
    }
}

fn total(pools: &[Arc<Pool>]) -> Summary {
    let mut sum = Summary::default();
    for pool in pools {
        sum.add(&pool.metrics.summary());
    }
    sum
}

fn log(pool: &str, window: &Summary, every: Duration) {
    if window.is_empty() {
        return;
    }
    let ms = |q| window.quantile(q).map(format_ms).unwrap_or_default();
    tracing::info!(
        pool,
        processed = window.processed,
        failed = window.failed,
        retried = window.retried,
        dead_lettered = window.dead_lettered,
        p50_ms = %ms(0.5),
        p99_ms = %ms(0.99),
        window_s = every.as_secs_f64(),
        "pool summary"
    );
}

/// A bucket bound in milliseconds, `≤0.05`, or `>900000` past the last bound.
fn format_ms(d: Duration) -> String {
    if d == Duration::MAX {
        return ">900000".to_string();
    }
    let ms = d.as_secs_f64() * 1000.0;
    format!("≤{}", (ms * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_milliseconds() {
        assert_eq!(format_ms(Duration::from_micros(50)), "≤0.05");
        assert_eq!(format_ms(Duration::from_millis(250)), "≤250");
        assert_eq!(format_ms(Duration::MAX), ">900000");
    }
}
