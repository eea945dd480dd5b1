//! Parsing what the bench guest, the floor and `parapet run --stats` print.
//!
//! The bench guest (examples/bench) and the floor (bench/floor) print
//! `bench <name> iters=<n> batch=<k> median=<c> p99=<c> min=<c> total=<c> tsc_khz=<khz>
//! [warmup=<w>] [exits_per_op=<x> kvm_exits_per_op=<y>]`, `bench <name> skipped: <why>`, and the
//! guest a `bench-info key=value…` header. Everything else on standard output (console data) is
//! ignored.

use std::collections::BTreeMap;

/// One measured benchmark line.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub name: String,
    pub iters: u64,
    pub batch: u64,
    /// Per operation, TSC cycles.
    pub median: u64,
    pub p99: u64,
    pub min: u64,
    /// All samples together, TSC cycles.
    pub total: u64,
    pub tsc_khz: u64,
    /// Unmeasured samples run before the measured ones.
    pub warmup: u64,
    /// Exits the floor counted itself, per operation.
    pub exits_per_op: Option<f64>,
    pub kvm_exits_per_op: Option<f64>,
}

impl BenchResult {
    /// Operations the benchmark performed, warm-up included.
    pub fn operations(&self) -> u64 {
        (self.warmup + self.iters) * self.batch
    }
}

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
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("bench-info ") {
            out.info.extend(key_values(rest)?);
        } else if let Some(rest) = line.strip_prefix("bench ") {
            let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(why) = rest.strip_prefix("skipped: ") {
                out.skipped.push((name.to_owned(), why.to_owned()));
            } else {
                out.results
                    .push(result(name, rest).map_err(|e| format!("{e} in {line:?}"))?);
            }
        }
    }
    Ok(out)
}

fn key_values(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split_whitespace()
        .map(|word| {
            word.split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("`{word}` is not key=value"))
        })
        .collect()
}

fn result(name: &str, fields: &str) -> Result<BenchResult, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("bad benchmark name {name:?}"));
    }
    let kv = key_values(fields)?;
    let int = |key: &str| -> Result<u64, String> {
        kv.get(key)
            .ok_or_else(|| format!("no {key}="))?
            .parse()
            .map_err(|_| format!("{key}= is not an integer"))
    };
    let float = |key: &str| -> Result<Option<f64>, String> {
        kv.get(key)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("{key}= is not a non-negative number"))
            })
            .transpose()
    };
    let iters = int("iters")?;
    let r = BenchResult {
        name: name.to_owned(),
        iters,
        batch: int("batch")?,
        median: int("median")?,
        p99: int("p99")?,
        min: int("min")?,
        total: int("total")?,
        tsc_khz: int("tsc_khz")?,
        warmup: if kv.contains_key("warmup") {
            int("warmup")?
        } else {
            iters.min(50)
        },
        exits_per_op: float("exits_per_op")?,
        kvm_exits_per_op: float("kvm_exits_per_op")?,
    };
    if r.iters == 0 || r.batch == 0 || r.tsc_khz == 0 {
        return Err("iters, batch and tsc_khz must be positive".into());
    }
    if !(r.min <= r.median && r.median <= r.p99) {
        return Err("min <= median <= p99 does not hold".into());
    }
    Ok(r)
}

/// The `parapet stats:` block of `parapet run --stats` on standard error.
pub fn stats(stderr: &str) -> BTreeMap<String, u64> {
    stderr
        .lines()
        .skip_while(|l| l.trim_end() != "parapet stats:")
        .skip(1)
        .map_while(|l| {
            let mut words = l.strip_prefix("  ")?.split_whitespace();
            let (name, value) = (words.next()?, words.next()?.parse().ok()?);
            Some((name.to_owned(), value))
        })
        .collect()
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
        let s = stats(
            "warning\nparapet stats:\n  exit.total 2054\n  exit.io 2054\n  kvm.exits 2113\nlater\n",
        );
        assert_eq!(s["exit.total"], 2054);
        assert_eq!(s["kvm.exits"], 2113);
        assert_eq!(s.len(), 3);
        assert!(stats("no stats here").is_empty());
    }
}
