//! Fixed-bucket histograms for the per-entry metrics (handler duration, delivery attempt).
//!
//! The Prometheus exporter's histograms keep every raw sample (with a clock read) until
//! upkeep folds them into buckets: two of those per settled entry were about a seventh of
//! the engine's CPU on the consume benchmark. Here a sample is one bucket search and three
//! relaxed atomic adds, and the exposition text is rendered straight from the counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// One labelled series: a count per bucket (the last is `+Inf`), the sum and the count.
pub(crate) struct Buckets {
    /// Upper bounds in recording units (nanoseconds, attempts), ascending.
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [u64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Buckets of no exported family: a pool's summary window (`metrics::Summary`).
    pub(crate) fn detached(bounds: &'static [u64]) -> Buckets {
        Buckets::new(bounds)
    }

    /// The count in each bucket (not cumulative; the last is `+Inf`).
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Counts one sample of `value` units.
    pub(crate) fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }
}

/// The upper bound of the bucket that holds quantile `q` (0 < q ≤ 1) of samples counted
/// per bucket in `counts` (as [`Buckets::counts`], a difference of two is fine); `None` when
/// there are none, `Some(u64::MAX)` when it lies past the last bound.
pub(crate) fn quantile(bounds: &[u64], counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bounds.get(i).copied().unwrap_or(u64::MAX));
        }
    }
    Some(u64::MAX)
}

/// A series' label names and values, in order.
type Labels = Vec<(&'static str, String)>;

/// A histogram metric: its name, help, buckets and unit, and one [`Buckets`] per label set.
pub(crate) struct Family {
    name: &'static str,
    help: &'static str,
    bounds: &'static [u64],
    /// Divides recorded units into the exported unit (1e9 for ns → seconds).
    divisor: f64,
    series: Mutex<BTreeMap<Labels, Arc<Buckets>>>,
}

impl Family {
    pub(crate) const fn new(
        name: &'static str,
        help: &'static str,
        bounds: &'static [u64],
        divisor: f64,
    ) -> Family {
        Family {
            name,
            help,
            bounds,
            divisor,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The series for `labels`, created at zero the first time (resolve once, record often).
    pub(crate) fn series(&self, labels: &[(&'static str, &str)]) -> Arc<Buckets> {
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        lock(&self.series)
            .entry(key)
            .or_insert_with(|| Arc::new(Buckets::new(self.bounds)))
            .clone()
    }

    /// The family in the Prometheus text format (nothing when no series exists yet).
    pub(crate) fn render(&self, out: &mut String) {
        let series = lock(&self.series);
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (labels, buckets) in series.iter() {
            let labels: String = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\",", escape(v)))
                .collect();
            let mut cumulative = 0;
            for (i, count) in buckets.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = match self.bounds.get(i) {
                    Some(bound) => (*bound as f64 / self.divisor).to_string(),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{}_bucket{{{labels}le=\"{le}\"}} {cumulative}",
                    self.name
                );
            }
            let labels = labels.trim_end_matches(',');
            let sum = buckets.sum.load(Ordering::Relaxed) as f64 / self.divisor;
            let _ = writeln!(out, "{}_sum{{{labels}}} {sum}", self.name);
            let _ = writeln!(out, "{}_count{{{labels}}} {cumulative}", self.name);
        }
    }
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    static BOUNDS: &[u64] = &[1, 2, 5];

    #[test]
    fn quantiles_name_the_bucket_that_holds_them() {
        let bounds: &[u64] = &[10, 100, 1000];
        assert_eq!(quantile(bounds, &[0, 0, 0, 0], 0.5), None);
        // 90 samples ≤ 10, 9 ≤ 100, 1 past the last bound.
        let counts = [90, 9, 0, 1];
        assert_eq!(quantile(bounds, &counts, 0.5), Some(10));
        assert_eq!(quantile(bounds, &counts, 0.9), Some(10));
        assert_eq!(quantile(bounds, &counts, 0.99), Some(100));
        assert_eq!(quantile(bounds, &counts, 1.0), Some(u64::MAX));
    }

    #[test]
    fn samples_land_in_cumulative_buckets_with_sum_and_count() {
        let family = Family::new("t_attempts", "Attempts.", BOUNDS, 1.0);
        let a = family.series(&[("pool", "p")]);
        for v in [1, 1, 2, 3, 9] {
            a.record(v);
        }
        let again = family.series(&[("pool", "p")]);
        again.record(5);
        let mut text = String::new();
        family.render(&mut text);
        for line in [
            "# TYPE t_attempts histogram",
            "t_attempts_bucket{pool=\"p\",le=\"1\"} 2",
            "t_attempts_bucket{pool=\"p\",le=\"2\"} 3",
            "t_attempts_bucket{pool=\"p\",le=\"5\"} 5",
            "t_attempts_bucket{pool=\"p\",le=\"+Inf\"} 6",
            "t_attempts_sum{pool=\"p\"} 21",
            "t_attempts_count{pool=\"p\"} 6",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn seconds_are_scaled_and_label_values_escaped() {
        static NS: &[u64] = &[1_000_000, 2_500_000];
        let family = Family::new("t_seconds", "Seconds.", NS, 1e9);
        family.series(&[("type", "a\"b\\c\nd")]).record(2_000_000);
        let mut text = String::new();
        family.render(&mut text);
        assert!(
            text.contains("t_seconds_bucket{type=\"a\\\"b\\\\c\\nd\",le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(text.contains("le=\"0.001\"} 0"), "{text}");
        assert!(
            text.contains("t_seconds_sum{type=\"a\\\"b\\\\c\\nd\"} 0.002"),
            "{text}"
        );
    }
}
