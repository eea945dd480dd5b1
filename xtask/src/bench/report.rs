//! The results of `cargo xtask bench`: aggregation over rounds, the table, the JSON and the SVG
//! chart.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::chart::{self, LogBar, Series};
#[cfg(test)]
use super::rows::ROWS;
use super::rows::{Kind, Row};
use super::suite;
use super::table::{Align, Column, Table};

/// The widest label in the table.
pub const LABEL_WIDTH: usize = 48;

/// One round's measurement of a row.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Median, p99 and min per operation in TSC cycles (rows timed in the guest).
    pub cycles: Option<[u64; 3]>,
    /// The same in nanoseconds.
    pub ns: [f64; 3],
    /// Measured samples.
    pub iters: u64,
    /// Operations per sample.
    pub batch: u64,
    pub exits: Option<f64>,
    pub kvm_exits: Option<f64>,
}

impl Sample {
    /// A sample timed with the TSC at `tsc_khz`.
    pub fn from_cycles(cycles: [u64; 3], tsc_khz: u64, iters: u64, batch: u64) -> Sample {
        let ns = cycles.map(|c| c as f64 * 1e6 / tsc_khz as f64);
        Sample {
            cycles: Some(cycles),
            ns,
            iters,
            batch,
            exits: None,
            kvm_exits: None,
        }
    }

    /// A sample from wall-clock durations (ns), timed by the host.
    pub fn from_durations(mut ns: Vec<f64>) -> Sample {
        ns.sort_by(f64::total_cmp);
        let n = ns.len();
        Sample {
            cycles: None,
            ns: [ns[n / 2], ns[(n * 99 / 100).min(n - 1)], ns[0]],
            iters: n as u64,
            batch: 1,
            exits: None,
            kvm_exits: None,
        }
    }
}

/// Median, p99 and min of a row over the rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats3 {
    pub median: f64,
    pub p99: f64,
    pub min: f64,
}

/// A row over all rounds: medians of the round medians and p99s, the smallest minimum.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    pub cycles: Option<Stats3>,
    pub ns: Stats3,
    /// Measured samples over all rounds.
    pub iters: u64,
    pub batch: u64,
    pub rounds: usize,
    pub exits: Option<f64>,
    pub kvm_exits: Option<f64>,
    pub round_medians_ns: Vec<f64>,
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_of(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = samples.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median(&v))
}

/// Aggregates the rounds of one row (at least one sample).
pub fn aggregate(samples: &[Sample]) -> Agg {
    assert!(!samples.is_empty());
    let ns = Stats3 {
        median: median_of(samples, |s| Some(s.ns[0])).unwrap_or(f64::NAN),
        p99: median_of(samples, |s| Some(s.ns[1])).unwrap_or(f64::NAN),
        min: samples
            .iter()
            .map(|s| s.ns[2])
            .fold(f64::INFINITY, f64::min),
    };
    let cycles = samples.iter().all(|s| s.cycles.is_some()).then(|| Stats3 {
        median: median_of(samples, |s| s.cycles.map(|c| c[0] as f64)).unwrap_or(f64::NAN),
        p99: median_of(samples, |s| s.cycles.map(|c| c[1] as f64)).unwrap_or(f64::NAN),
        min: samples
            .iter()
            .filter_map(|s| s.cycles.map(|c| c[2] as f64))
            .fold(f64::INFINITY, f64::min),
    });
    Agg {
        cycles,
        ns,
        iters: samples.iter().map(|s| s.iters).sum(),
        batch: samples[0].batch,
        rounds: samples.len(),
        exits: median_of(samples, |s| s.exits),
        kvm_exits: median_of(samples, |s| s.kvm_exits),
        round_medians_ns: samples.iter().map(|s| s.ns[0]).collect(),
    }
}

/// How a row ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Measured(Box<Agg>),
    /// The run failed (the first line of the error).
    Failed(String),
    /// The benchmark skipped itself.
    Skipped(String),
    /// The host does not offer the mechanism (e.g. VMCALL on kvm_pvm): the VMM's one-line error.
    Unavailable(String),
    /// Not measured in this run, and why.
    NotRun(String),
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub row: &'static Row,
    pub outcome: Outcome,
}

impl RowResult {
    pub fn measured(&self) -> Option<&Agg> {
        match &self.outcome {
            Outcome::Measured(a) => Some(a),
            _ => None,
        }
    }
}

/// Parapet's cost over the floor's for the same exit, paired round by round.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratio {
    pub parapet: &'static str,
    pub floor: &'static str,
    /// Median over rounds of (Parapet median / floor median).
    pub ratio: f64,
    /// Median over rounds of (Parapet median - floor median), ns.
    pub extra_ns: f64,
    /// Parapet's smallest sample over the floor's: the overhead without the host's noise.
    pub min_ratio: f64,
    pub rounds: usize,
}

/// Per-round ratios of two rows' medians.
pub fn ratio(
    parapet: &'static str,
    floor: &'static str,
    p: &[Sample],
    f: &[Sample],
) -> Option<Ratio> {
    let pairs: Vec<(f64, f64)> = p.iter().zip(f).map(|(a, b)| (a.ns[0], b.ns[0])).collect();
    if pairs.is_empty() || pairs.iter().any(|&(_, b)| b <= 0.0) {
        return None;
    }
    let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    let extra: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
    let min = |s: &[Sample]| s.iter().map(|x| x.ns[2]).fold(f64::INFINITY, f64::min);
    Some(Ratio {
        parapet,
        floor,
        ratio: median(&ratios),
        extra_ns: median(&extra),
        min_ratio: min(p) / min(f),
        rounds: pairs.len(),
    })
}

/// The host and the run's settings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostInfo {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub platform: String,
    pub transport: String,
    pub tsc_khz: u64,
    pub kvm_msr: String,
}

impl HostInfo {
    /// Kernel, CPU model and CPU count from /proc; the rest comes from the bench guest.
    pub fn read_proc() -> HostInfo {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        HostInfo {
            kernel,
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            ..HostInfo::default()
        }
    }
}

/// Everything `cargo xtask bench` found.
#[derive(Clone, Debug)]
pub struct Report {
    pub host: HostInfo,
    pub rounds: u32,
    pub iters: u32,
    pub boot_runs: u32,
    /// The Solo5 checkout measured, if any.
    pub peer: Option<String>,
    pub rows: Vec<RowResult>,
    pub ratios: Vec<Ratio>,
}

/// `1.23 µs`-style durations.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "-".into();
    }
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "us")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if value < 10.0 && unit != "ns" {
        format!("{value:.2} {unit}")
    } else if value < 100.0 && unit != "ns" {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

fn fmt_cycles(c: Option<f64>) -> String {
    c.filter(|c| c.is_finite())
        .map_or_else(|| "-".into(), |c| format!("{c:.0}"))
}

fn fmt_exits(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 0.995 || x == 0.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// The table's columns: operation, kind, median, p99 and min (cycles and time), iterations,
/// exits per operation (VMM, KVM).
const COLUMNS: [Column; 11] = [
    (LABEL_WIDTH + 2, Align::Left),
    (8, Align::Left),
    (10, Align::Right),
    (9, Align::Right),
    (10, Align::Right),
    (9, Align::Right),
    (10, Align::Right),
    (9, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
];

/// The chart's series: one per kind of row, in legend order.
const KINDS: [(Kind, (u8, u8, u8)); 6] = [
    (Kind::Floor, (140, 140, 140)),
    (Kind::Pv, (46, 139, 87)),
    (Kind::Hypercall, (230, 145, 30)),
    (Kind::Trap, (200, 50, 50)),
    (Kind::Other, (70, 110, 170)),
    (Kind::Peer, (130, 80, 170)),
];

/// `results.json`.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    host: &'a HostInfo,
    method: JsonMethod,
    peer: JsonPeer<'a>,
    rows: Vec<JsonRow<'a>>,
    floor_ratios: &'a [Ratio],
}

#[derive(Serialize)]
struct JsonMethod {
    rounds: u32,
    iters: u32,
    boot_runs: u32,
    median: &'static str,
    p99: &'static str,
    min: &'static str,
    exits_per_op: &'static str,
}

#[derive(Serialize)]
struct JsonPeer<'a> {
    solo5: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    id: &'static str,
    section: &'static str,
    label: &'static str,
    kind: &'static str,
    status: &'static str,
    #[serde(flatten)]
    outcome: JsonOutcome<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonOutcome<'a> {
    Measured(JsonMeasured<'a>),
    Reason { reason: &'a str },
}

/// A row that was not measured: its status, and why.
fn reason<'a>(status: &'static str, why: &'a str) -> (&'static str, JsonOutcome<'a>) {
    (status, JsonOutcome::Reason { reason: why })
}

#[derive(Serialize)]
struct JsonMeasured<'a> {
    iters: u64,
    batch: u64,
    rounds: usize,
    median_cycles: Option<f64>,
    p99_cycles: Option<f64>,
    min_cycles: Option<f64>,
    median_ns: f64,
    p99_ns: f64,
    min_ns: f64,
    vmm_exits_per_op: Option<f64>,
    kvm_exits_per_op: Option<f64>,
    round_medians_ns: &'a [f64],
}

impl suite::Report for Report {
    const JSON: &'static str = "results.json";
    const SVG: &'static str = "chart.svg";

    /// The table `cargo xtask bench` prints.
    fn table(&self) -> String {
        let h = &self.host;
        let mut t = Table::new(&COLUMNS);
        t.line(format_args!(
            "Parapet bench: platform {}, hypercall transport {}, TSC {} kHz (start-info)",
            h.platform, h.transport, h.tsc_khz
        ));
        t.line(format_args!(
            "host: Linux {}, {}, {} CPUs; {} rounds interleaved, --iters {}: median = median of \
             the round medians, p99 = median of the round p99s, min = smallest; per operation",
            h.kernel, h.cpu, h.cpus, self.rounds, self.iters
        ));
        t.line(
            "exits/op: VMM = userspace exits (`parapet run --stats` exit.total, less a run that \
             measures nothing), KVM = all exits KVM counts (kvm.exits), over every operation run",
        );
        t.line("");
        t.row([
            "operation",
            "kind",
            "med cyc",
            "median",
            "p99 cyc",
            "p99",
            "min cyc",
            "min",
            "iters",
            "VMM x",
            "KVM x",
        ]);
        let mut section = "";
        for r in &self.rows {
            if r.row.section != section {
                section = r.row.section;
                t.line(format_args!("-- {section}"));
            }
            let lead = [format!("  {}", r.row.label), r.row.kind.name().to_owned()];
            match &r.outcome {
                Outcome::Measured(a) => {
                    let c = a.cycles;
                    t.row(lead.into_iter().chain([
                        fmt_cycles(c.map(|c| c.median)),
                        fmt_ns(a.ns.median),
                        fmt_cycles(c.map(|c| c.p99)),
                        fmt_ns(a.ns.p99),
                        fmt_cycles(c.map(|c| c.min)),
                        fmt_ns(a.ns.min),
                        a.iters.to_string(),
                        fmt_exits(a.exits),
                        fmt_exits(a.kvm_exits),
                    ]));
                }
                Outcome::Failed(why) => t.row_then(lead, format_args!("failed: {why}")),
                Outcome::Skipped(why) => t.row_then(lead, format_args!("skipped: {why}")),
                Outcome::Unavailable(why) => {
                    t.row_then(lead, format_args!("not on this host: {why}"))
                }
                Outcome::NotRun(why) => t.row_then(lead, format_args!("not measured: {why}")),
            }
        }
        t.line("");
        if !self.ratios.is_empty() {
            t.line(
                "Dispatch overhead: Parapet over the floor (bench/floor: a bare KVM guest making \
                 the same exit): medians paired per round (median of the rounds' ratios), and \
                 minimums:",
            );
            for q in &self.ratios {
                t.line(format_args!(
                    "  {:<22} / {:<16} median {:>5.2}x ({}{} per operation), min {:>5.2}x",
                    q.parapet,
                    q.floor,
                    q.ratio,
                    if q.extra_ns < 0.0 { "-" } else { "+" },
                    fmt_ns(q.extra_ns.abs()),
                    q.min_ratio
                ));
            }
        }
        match &self.peer {
            Some(path) => t.line(format_args!("Peer: Solo5 hvt from {path}.")),
            None => t.line(
                "Peer: none measured (no --peer-solo5 PATH given; build Solo5 by hand outside \
                 this tree, see docs/benchmarks.md).",
            ),
        }
        t.into_string()
    }

    /// The results as JSON.
    fn json(&self) -> impl Serialize + '_ {
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let (status, outcome) = match &r.outcome {
                    Outcome::Measured(a) => (
                        "measured",
                        JsonOutcome::Measured(JsonMeasured {
                            iters: a.iters,
                            batch: a.batch,
                            rounds: a.rounds,
                            median_cycles: a.cycles.map(|c| c.median),
                            p99_cycles: a.cycles.map(|c| c.p99),
                            min_cycles: a.cycles.map(|c| c.min),
                            median_ns: a.ns.median,
                            p99_ns: a.ns.p99,
                            min_ns: a.ns.min,
                            vmm_exits_per_op: a.exits,
                            kvm_exits_per_op: a.kvm_exits,
                            round_medians_ns: &a.round_medians_ns,
                        }),
                    ),
                    Outcome::Failed(w) => reason("failed", w),
                    Outcome::Skipped(w) => reason("skipped", w),
                    Outcome::Unavailable(w) => reason("unavailable", w),
                    Outcome::NotRun(w) => reason("not_run", w),
                };
                JsonRow {
                    id: r.row.id,
                    section: r.row.section,
                    label: r.row.label,
                    kind: r.row.kind.name(),
                    status,
                    outcome,
                }
            })
            .collect();
        Json {
            schema: "parapet-bench/1",
            host: &self.host,
            method: JsonMethod {
                rounds: self.rounds,
                iters: self.iters,
                boot_runs: self.boot_runs,
                median: "median of the round medians",
                p99: "median of the round p99s",
                min: "smallest over the rounds",
                exits_per_op: "(counter of the run - counter of a run that measures nothing) / operations run, warm-up included",
            },
            peer: JsonPeer {
                solo5: self.peer.as_deref(),
            },
            rows,
            floor_ratios: &self.ratios,
        }
    }

    /// Draws the chart: one bar per measured row, median ns on a log scale, coloured by kind.
    fn chart(&self, path: &Path) -> Result<()> {
        let bars: Vec<LogBar> = self
            .rows
            .iter()
            .filter_map(|r| Some((r.row, r.measured()?.ns.median)))
            .filter(|(_, ns)| ns.is_finite() && *ns > 0.0)
            .map(|(row, ns)| LogBar {
                label: format!("{} [{}]", row.label, row.kind.name()),
                ns,
                series: KINDS.iter().position(|(k, _)| *k == row.kind).unwrap_or(0),
            })
            .collect();
        let series = KINDS.map(|(kind, rgb)| Series {
            name: kind.name(),
            rgb,
        });
        chart::log_bars(
            path,
            &format!(
                "Parapet bench: median per operation ({}, {}, {} rounds)",
                self.host.platform, self.host.transport, self.rounds
            ),
            "median per operation (ns, log scale)",
            &bars,
            &series,
        )
    }
}

/// A report of `rows` with no results (for tests and as a start).
#[cfg(test)]
fn empty_report() -> Report {
    Report {
        host: HostInfo {
            platform: "kvm-pvm".into(),
            transport: "pio".into(),
            tsc_khz: 2_000_000,
            ..HostInfo::default()
        },
        rounds: 2,
        iters: 10,
        boot_runs: 2,
        peer: None,
        rows: ROWS
            .iter()
            .map(|row| RowResult {
                row,
                outcome: Outcome::NotRun("test".into()),
            })
            .collect(),
        ratios: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::suite::Report as _;

    #[test]
    fn aggregates_medians_over_rounds() {
        let s = |m, p, lo| Sample::from_cycles([m, p, lo], 1_000_000, 100, 1);
        let a = aggregate(&[s(100, 300, 90), s(120, 500, 80), s(110, 400, 95)]);
        let c = a.cycles.unwrap();
        assert_eq!((c.median, c.p99, c.min), (110.0, 400.0, 80.0));
        assert_eq!((a.ns.median, a.iters, a.rounds), (110.0, 300, 3));
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        let r = ratio(
            "a",
            "b",
            &[s(200, 0, 150), s(330, 0, 300)],
            &[s(100, 0, 100), s(300, 0, 300)],
        );
        let r = r.unwrap();
        assert!((r.ratio - 1.55).abs() < 1e-9 && (r.extra_ns - 65.0).abs() < 1e-9);
        assert!((r.min_ratio - 1.5).abs() < 1e-9);
        let d = Sample::from_durations(vec![3.0, 1.0, 2.0]);
        assert_eq!((d.ns, d.cycles), ([2.0, 3.0, 1.0], None));
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_ns(98.4), "98 ns");
        assert_eq!(fmt_ns(31_512.0), "31.5 us");
        assert_eq!(fmt_ns(2_900.0), "2.90 us");
        assert_eq!(fmt_ns(34_600_000.0), "34.6 ms");
        assert_eq!(fmt_exits(Some(1.004)), "1.00");
        assert_eq!(fmt_exits(Some(0.031)), "0.031");
        assert_eq!(fmt_exits(Some(1024.4)), "1024");
    }

    #[test]
    fn table_json_and_svg_have_every_row() {
        let mut report = empty_report();
        let s = Sample {
            exits: Some(1.0),
            kvm_exits: Some(1.01),
            ..Sample::from_cycles([70_000, 150_000, 69_000], 2_000_000, 100, 1)
        };
        report.rows[1].outcome = Outcome::Measured(Box::new(aggregate(&[s.clone(), s])));
        report.rows[2].outcome = Outcome::Unavailable("parapet: error: no vmcall".into());
        let table = report.table();
        for r in ROWS {
            assert!(table.contains(r.label), "{}", r.label);
        }
        assert!(table.contains("35.0 us") && table.contains("not on this host"));
        assert!(table.contains("Peer: none measured"));
        let json = serde_json::to_value(report.json()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), ROWS.len());
        assert_eq!(json["rows"][1]["status"], "measured");
        assert_eq!(json["rows"][1]["median_cycles"], 70_000.0);
        assert_eq!(json["rows"][2]["status"], "unavailable");
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("chart.svg");
        report.chart(&svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("35.0 us"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
