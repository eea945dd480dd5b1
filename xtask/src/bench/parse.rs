//! Parsing what the bench guest, the floor and `parapet run --stats` print.
//!
//! The bench guest (bench/guests/bench) and the floor (bench/floor) print the lines of
//! `bench-protocol`: `bench <name> iters=<n> batch=<k> median=<c> p99=<c> min=<c> total=<c>
//! tsc_khz=<khz> [warmup=<w>] [exits_per_op=<x> kvm_exits_per_op=<y>]`,
//! `bench <name> skipped: <why>`, and the guest a `bench-info key=value…` header; this module
//! gathers one run's lines with that crate's reader. Everything else on standard output (console
//! data) is ignored.

use std::collections::BTreeMap;

use bench_protocol::Line;

/// One measured benchmark line.
pub type BenchResult = bench_protocol::BenchResult<'static>;

/// Everything of interest in one run's standard output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// The `bench-info` fields.
    pub info: BTreeMap<String, String>,
    pub results: Vec<BenchResult>,
    /// `(name, why)` of each skipped benchmark.
    pub skipped: Vec<(String, String)>,
}

impl Output {
    pub fn result(&self, name: &str) -> Option<&BenchResult> {
        self.results.iter().find(|r| r.name == name)
    }

    pub fn skip_reason(&self, name: &str) -> Option<&str> {
        self.skipped
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, why)| why.as_str())
    }
}

/// Parses a run's standard output; a malformed `bench` line is an error.
pub fn output(stdout: &str) -> Result<Output, String> {
    let mut out = Output::default();
    for line in stdout.lines() {
        match BenchResult::parse_line(line).map_err(|e| format!("{e} in {:?}", line.trim_end()))? {
            None => {}
            Some(Line::Info(fields)) => out.info.extend(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            Some(Line::Result(r)) => out.results.push(r.into_owned()),
            Some(Line::Skipped { name, why } | Line::Failed { name, why }) => {
                out.skipped.push((name.to_owned(), why.to_owned()))
            }
        }
    }
    Ok(out)
}

/// The counters of `parapet run --stats=json`: the one JSON object on standard error (empty if
/// there is none).
pub fn stats(stderr: &str) -> BTreeMap<String, u64> {
    stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str::<BTreeMap<String, serde_json::Value>>(l).ok())
        .map(|object| {
            object
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = "bench-info platform=kvm-pvm transport=pio tsc_khz=2445422 kvm_msr=0x4b564d13\n\
        ................\n\
        bench null_hypercall iters=500 batch=1 median=75019 p99=224322 min=73941 total=39863184 tsc_khz=2445422 warmup=50\n\
        bench multicall_null iters=500 batch=32 median=2454 p99=4448 min=2417 total=40006754 tsc_khz=2445422\n\
        bench ring_echo skipped: run with --loopback\n";

    #[test]
    fn parses_guest_output() {
        let out = output(GUEST).unwrap();
        assert_eq!(out.info["platform"], "kvm-pvm");
        assert_eq!(out.info["tsc_khz"], "2445422");
        let n = out.result("null_hypercall").unwrap();
        assert_eq!((n.iters, n.batch, n.median, n.warmup), (500, 1, 75019, 50));
        assert_eq!(n.operations(), 550);
        let m = out.result("multicall_null").unwrap();
        assert_eq!((m.warmup, m.operations()), (50, 550 * 32));
        assert_eq!(out.skip_reason("ring_echo"), Some("run with --loopback"));
        assert_eq!(n.exits_per_op, None);
    }

    #[test]
    fn parses_floor_exit_counts() {
        let out = output(
            "bench floor_out iters=10 batch=1 median=5 p99=9 min=4 total=50 tsc_khz=1000 \
             warmup=10 exits_per_op=1.000 kvm_exits_per_op=1.004\n",
        )
        .unwrap();
        let r = &out.results[0];
        assert_eq!(r.exits_per_op, Some(1.0));
        assert_eq!(r.kvm_exits_per_op, Some(1.004));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "bench x iters=1 batch=1 median=2 p99=1 min=1 total=2 tsc_khz=1",
            "bench x iters=1 batch=1 median=1 p99=1 min=1 total=1",
            "bench x iters=0 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1",
            "bench x iters=1 batch=1 median=a p99=1 min=1 total=1 tsc_khz=1",
            "bench x iters=1 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1 junk",
            "bench x! iters=1 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1",
        ] {
            assert!(output(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_stats_block() {
        let s =
            stats("warning\n{\"exit.total\":2054,\"exit.io\":2054,\"kvm.exits\":2113}\nlater\n");
        assert_eq!(s["exit.total"], 2054);
        assert_eq!(s["kvm.exits"], 2113);
        assert_eq!(s.len(), 3);
        assert!(stats("no stats here").is_empty());
    }
}
