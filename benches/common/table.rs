//! The results table: each scenario adds rows as it goes (and prints a line for each), and
//! the whole table is printed at the end as Markdown, ready for BENCHMARKS.md.

use std::time::Duration;

pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) figure: String,
    /// Ratio to the reference, for throughputs.
    pub(crate) ratio: Option<f64>,
    pub(crate) target: &'static str,
    pub(crate) met: bool,
}

/// The rows so far, and the reference (`redis-benchmark XADD -P16`, entries/s) that
/// throughputs are divided by.
pub(crate) struct Table {
    pub(crate) reference: f64,
    pub(crate) rows: Vec<Row>,
}

impl Table {
    pub(crate) fn new(reference: f64) -> Table {
        Table {
            reference,
            rows: Vec::new(),
        }
    }

    /// A throughput row: `n` entries in `took`, its ratio to the reference against `target`
    /// (0 for none); `extra` follows the rate in the figure.
    pub(crate) fn rate(
        &mut self,
        name: &'static str,
        n: u64,
        took: Duration,
        target: f64,
        extra: &str,
    ) {
        let rate = n as f64 / took.as_secs_f64();
        let ratio = rate / self.reference;
        println!(
            "  {name}: {n} in {:.2} s = {rate:.0}/s, ratio {ratio:.2}{extra}",
            took.as_secs_f64()
        );
        self.rows.push(Row {
            name,
            figure: format!("{rate:.0}/s{extra}"),
            ratio: Some(ratio),
            target: target_label(target),
            met: target == 0.0 || ratio >= target,
        });
    }

    /// A row that is not a throughput (a time, a size, a ratio between two runs).
    pub(crate) fn figure(
        &mut self,
        name: &'static str,
        figure: String,
        target: &'static str,
        met: bool,
    ) {
        println!("  {name}: {figure} (target {target})");
        self.rows.push(Row {
            name,
            figure,
            ratio: None,
            target,
            met,
        });
    }

    pub(crate) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// The table, then the reference and the entry count `n` it was measured with.
    pub(crate) fn print(&self, n: u64) {
        println!("\n| scenario | result | ratio to XADD -P16 | target | met |");
        println!("| --- | --- | --- | --- | --- |");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.name,
                r.figure,
                r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
                r.target,
                if r.met { "yes" } else { "no" }
            );
        }
        println!("\nreference: {:.0}/s, N = {n}", self.reference);
    }
}

/// How a ratio target reads in the table.
fn target_label(target: f64) -> &'static str {
    match target {
        t if t >= 0.8 => "≥ 0.80",
        t if t >= 0.6 => "≥ 0.60",
        t if t >= 0.4 => "≥ 0.40",
        t if t >= 0.3 => "≥ 0.30",
        _ => "—",
    }
}
