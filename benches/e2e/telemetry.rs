//! What telemetry costs consumption (issue 16: at most 5 %).

use super::Bench;
use super::common::process::Logging;

impl Bench {
    /// 1b. `consume` with per-value counting and the monitor hash on
    /// (`[telemetry] key = "/i"`) against both off, five rounds each, alternating which goes
    /// first; medians compared, because single runs on a shared 2-core machine vary by ±10%.
    pub(crate) async fn telemetry(&mut self) {
        let off = "[telemetry]\nmonitor = false\n";
        let on = "[telemetry]\nkey = \"/i\"\n";
        let (mut rates, mut cpus) = ([vec![], vec![]], [vec![], vec![]]);
        for round in 0..10 {
            let which = [0, 1, 1, 0][round % 4];
            let run = self.drain_weir(Logging::Quiet, [off, on][which]).await;
            rates[which].push(self.n as f64 / run.took.as_secs_f64());
            cpus[which].push(run.consumer_cpu * 1e6 / self.n as f64);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (rate_off, rate_on) = (median(&mut rates[0]), median(&mut rates[1]));
        let (cpu_off, cpu_on) = (median(&mut cpus[0]), median(&mut cpus[1]));
        let drop = (1.0 - rate_on / rate_off) * 100.0;
        self.figure(
            "telemetry cost",
            format!(
                "consume {rate_on:.0}/s on vs {rate_off:.0}/s off (medians of 5): {drop:.1}% drop; \
                 engine CPU {cpu_on:.2} vs {cpu_off:.2} µs/entry"
            ),
            "drop ≤ 5%",
            drop <= 5.0,
        );
    }
}
