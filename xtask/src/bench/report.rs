//! The results of `cargo xtask bench`: aggregation over rounds, the table, the JSON and the SVG
//! chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

#[cfg(test)]
use super::rows::ROWS;
use super::rows::{Kind, Row};

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
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, Default)]
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

impl Report {
    /// The table `cargo xtask bench` prints.
    pub fn table(&self) -> String {
        let h = &self.host;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Parapet bench: platform {}, hypercall transport {}, TSC {} kHz (start-info)",
            h.platform, h.transport, h.tsc_khz
        );
        let _ = writeln!(
            out,
            "host: Linux {}, {}, {} CPUs; {} rounds interleaved, --iters {}: median = median of \
             the round medians, p99 = median of the round p99s, min = smallest; per operation",
            h.kernel, h.cpu, h.cpus, self.rounds, self.iters
        );
        let _ = writeln!(
            out,
            "exits/op: VMM = userspace exits (`parapet run --stats` exit.total, less a run that \
             measures nothing), KVM = all exits KVM counts (kvm.exits), over every operation run"
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<w$} {:<8} {:>10} {:>9} {:>10} {:>9} {:>10} {:>9} {:>7} {:>7} {:>7}",
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
            w = LABEL_WIDTH + 2
        );
        let mut section = "";
        for r in &self.rows {
            if r.row.section != section {
                section = r.row.section;
                let _ = writeln!(out, "-- {section}");
            }
            let _ = write!(
                out,
                "  {:<w$} {:<8} ",
                r.row.label,
                r.row.kind.name(),
                w = LABEL_WIDTH
            );
            match &r.outcome {
                Outcome::Measured(a) => {
                    let c = a.cycles;
                    let _ = writeln!(
                        out,
                        "{:>10} {:>9} {:>10} {:>9} {:>10} {:>9} {:>7} {:>7} {:>7}",
                        fmt_cycles(c.map(|c| c.median)),
                        fmt_ns(a.ns.median),
                        fmt_cycles(c.map(|c| c.p99)),
                        fmt_ns(a.ns.p99),
                        fmt_cycles(c.map(|c| c.min)),
                        fmt_ns(a.ns.min),
                        a.iters,
                        fmt_exits(a.exits),
                        fmt_exits(a.kvm_exits),
                    );
                }
                Outcome::Failed(why) => {
                    let _ = writeln!(out, "failed: {why}");
                }
                Outcome::Skipped(why) => {
                    let _ = writeln!(out, "skipped: {why}");
                }
                Outcome::Unavailable(why) => {
                    let _ = writeln!(out, "not on this host: {why}");
                }
                Outcome::NotRun(why) => {
                    let _ = writeln!(out, "not measured: {why}");
                }
            }
        }
        let _ = writeln!(out);
        if !self.ratios.is_empty() {
            let _ = writeln!(
                out,
                "Dispatch overhead: Parapet over the floor (bench/floor: a bare KVM guest making \
                 the same exit): medians paired per round (median of the rounds' ratios), and \
                 minimums:"
            );
            for q in &self.ratios {
                let _ = writeln!(
                    out,
                    "  {:<22} / {:<16} median {:>5.2}x ({}{} per operation), min {:>5.2}x",
                    q.parapet,
                    q.floor,
                    q.ratio,
                    if q.extra_ns < 0.0 { "-" } else { "+" },
                    fmt_ns(q.extra_ns.abs()),
                    q.min_ratio
                );
            }
        }
        match &self.peer {
            Some(path) => {
                let _ = writeln!(out, "Peer: Solo5 hvt from {path}.");
            }
            None => {
                let _ = writeln!(
                    out,
                    "Peer: none measured (no --peer-solo5 PATH given; build Solo5 by hand outside \
                     this tree, see docs/benchmarks.md)."
                );
            }
        }
        out
    }

    /// The results as JSON.
    pub fn json(&self) -> Value {
        let h = &self.host;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "id": r.row.id,
                    "section": r.row.section,
                    "label": r.row.label,
                    "kind": r.row.kind.name(),
                });
                let (status, extra) = match &r.outcome {
                    Outcome::Measured(a) => (
                        "measured",
                        json!({
                            "iters": a.iters,
                            "batch": a.batch,
                            "rounds": a.rounds,
                            "median_cycles": a.cycles.map(|c| c.median),
                            "p99_cycles": a.cycles.map(|c| c.p99),
                            "min_cycles": a.cycles.map(|c| c.min),
                            "median_ns": a.ns.median,
                            "p99_ns": a.ns.p99,
                            "min_ns": a.ns.min,
                            "vmm_exits_per_op": a.exits,
                            "kvm_exits_per_op": a.kvm_exits,
                            "round_medians_ns": a.round_medians_ns,
                        }),
                    ),
                    Outcome::Failed(w) => ("failed", json!({ "reason": w })),
                    Outcome::Skipped(w) => ("skipped", json!({ "reason": w })),
                    Outcome::Unavailable(w) => ("unavailable", json!({ "reason": w })),
                    Outcome::NotRun(w) => ("not_run", json!({ "reason": w })),
                };
                v["status"] = status.into();
                if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
                    obj.extend(more);
                }
                v
            })
            .collect();
        json!({
            "schema": "parapet-bench/1",
            "host": {
                "kernel": h.kernel,
                "cpu": h.cpu,
                "cpus": h.cpus,
                "platform": h.platform,
                "transport": h.transport,
                "tsc_khz": h.tsc_khz,
                "kvm_msr": h.kvm_msr,
            },
            "method": {
                "rounds": self.rounds,
                "iters": self.iters,
                "boot_runs": self.boot_runs,
                "median": "median of the round medians",
                "p99": "median of the round p99s",
                "min": "smallest over the rounds",
                "exits_per_op": "(counter of the run - counter of a run that measures nothing) / operations run, warm-up included",
            },
            "peer": { "solo5": self.peer },
            "rows": rows,
            "floor_ratios": self.ratios.iter().map(|q| json!({
                "parapet": q.parapet,
                "floor": q.floor,
                "ratio": q.ratio,
                "extra_ns": q.extra_ns,
                "min_ratio": q.min_ratio,
                "rounds": q.rounds,
            })).collect::<Vec<_>>(),
        })
    }

    /// Draws the chart: one bar per measured row, median ns on a log scale, coloured by kind.
    pub fn svg(&self, path: &Path) -> Result<()> {
        use plotters::coord::ranged1d::SegmentValue;
        use plotters::prelude::*;

        let bars: Vec<(&Row, f64)> = self
            .rows
            .iter()
            .filter_map(|r| Some((r.row, r.measured()?.ns.median)))
            .filter(|(_, ns)| ns.is_finite() && *ns > 0.0)
            .collect();
        let n = bars.len().max(1);
        let (lo, hi) = bars
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), (_, ns)| {
                (lo.min(*ns), hi.max(*ns))
            });
        let lo = if lo.is_finite() { lo / 2.0 } else { 1.0 }.max(1.0);
        let hi = (hi * 4.0).max(lo * 10.0);
        let colour = |k: Kind| match k {
            Kind::Floor => RGBColor(140, 140, 140),
            Kind::Pv => RGBColor(46, 139, 87),
            Kind::Hypercall => RGBColor(230, 145, 30),
            Kind::Trap => RGBColor(200, 50, 50),
            Kind::Other => RGBColor(70, 110, 170),
            Kind::Peer => RGBColor(130, 80, 170),
        };
        let height = 90 + 18 * n as u32;
        let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let title = format!(
            "Parapet bench: median per operation ({}, {}, {} rounds)",
            self.host.platform, self.host.transport, self.rounds
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(360)
            .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())
            .map_err(|e| draw(&e))?;
        let labels: Vec<String> = bars
            .iter()
            .map(|(r, _)| format!("{} [{}]", r.label, r.kind.name()))
            .collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < labels.len() => {
                    labels[labels.len() - 1 - *i].clone()
                }
                _ => String::new(),
            })
            .x_desc("median per operation (ns, log scale)")
            .x_label_formatter(&|x| fmt_ns(*x))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| draw(&e))?;
        for kind in [
            Kind::Floor,
            Kind::Pv,
            Kind::Hypercall,
            Kind::Trap,
            Kind::Other,
            Kind::Peer,
        ] {
            let c = colour(kind);
            let series = bars
                .iter()
                .enumerate()
                .filter(|(_, (r, _))| r.kind == kind)
                .map(|(i, (_, ns))| {
                    let y = n - 1 - i;
                    let mut bar = Rectangle::new(
                        [
                            (lo, SegmentValue::Exact(y)),
                            (*ns, SegmentValue::Exact(y + 1)),
                        ],
                        c.filled(),
                    );
                    bar.set_margin(2, 2, 0, 0);
                    bar
                });
            chart
                .draw_series(series)
                .map_err(|e| draw(&e))?
                .label(kind.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, ns))| {
                Text::new(
                    fmt_ns(*ns),
                    (*ns * 1.08, SegmentValue::CenterOf(n - 1 - i)),
                    ("sans-serif", 10).into_font(),
                )
            }))
            .map_err(|e| draw(&e))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present()
            .map_err(|e| draw(&e))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
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
        let json = report.json();
        assert_eq!(json["rows"].as_array().unwrap().len(), ROWS.len());
        assert_eq!(json["rows"][1]["status"], "measured");
        assert_eq!(json["rows"][1]["median_cycles"], 70_000.0);
        assert_eq!(json["rows"][2]["status"], "unavailable");
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("chart.svg");
        report.svg(&svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("35.0 us"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
