//! `cargo xtask bench`, the core suite: runs the bench guest, the floor and (if given) the Solo5
//! peer, and prints one table; writes `results.json` and `chart.svg` under `target/bench/`.
//!
//! Method (docs/benchmarks.md has the long version):
//!
//! - Every row runs in its own process: `parapet run --stats bench --cmdline "<name> iters=N"`
//!   for the guest's rows, `parapet-floor <op> iters=N` for the floor's. A row's exits per
//!   operation are the difference between its `--stats` counters and those of a run of the same
//!   guest with the same options that measures nothing, divided by the operations run (warm-up
//!   included): userspace exits (`exit.total`) and every exit KVM counts (`kvm.exits`).
//! - `--rounds` rounds run every row once each, in table order, so that slow drifts of this
//!   kind of host hit all rows alike; the table shows the median of the round medians, the
//!   median of the round p99s, and the smallest minimum. The floor ratios pair each Parapet row
//!   with its floor row within a round.
//! - Boot rows (spawn to exit, host wall clock) alternate their programs run by run.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::BenchArgs;
use super::parse;
use super::process::{PROCESS_LIMIT, capture, wait_limited};
use super::report::{self, HostInfo, Outcome, Report, RowResult, Sample};
use super::rows::{self, Boot, ROWS, Row, Source};
use super::suite::{self, Cells};
use crate::Workspace;

/// The programs the benchmark runs.
#[derive(Debug)]
struct Bins {
    vmm: PathBuf,
    guest: PathBuf,
    hello: PathBuf,
    floor: PathBuf,
}

/// A built Solo5 checkout: the hvt tender and the test unikernels used.
#[derive(Debug)]
struct Solo5 {
    root: PathBuf,
    tender: PathBuf,
    hello: PathBuf,
    quiet: PathBuf,
    time: PathBuf,
}

impl Solo5 {
    fn locate(root: &Path) -> Result<Solo5> {
        let s = Solo5 {
            root: root.to_path_buf(),
            tender: root.join("tenders/hvt/solo5-hvt"),
            hello: root.join("tests/test_hello/test_hello.hvt"),
            quiet: root.join("tests/test_quiet/test_quiet.hvt"),
            time: root.join("tests/test_time/test_time.hvt"),
        };
        for f in [&s.tender, &s.hello, &s.quiet, &s.time] {
            if !f.is_file() {
                bail!(
                    "--peer-solo5 {}: no {} (is it a Solo5 checkout built with \
                     `./configure.sh && make`? see docs/benchmarks.md)",
                    root.display(),
                    f.display()
                );
            }
        }
        Ok(s)
    }
}

/// The core suite: every selected row, once per round.
pub struct Core {
    runner: Runner,
    selected: Vec<&'static Row>,
    /// Per row (its index in `selected`): a sample per round, or how it ended.
    cells: Cells<usize, Sample, Outcome>,
    host: HostInfo,
    rounds: u32,
    iters: u32,
    boot_runs: u32,
}

impl Core {
    /// Builds (or takes) the programs, selects the rows and reads the bench guest's
    /// `bench-info`.
    pub fn new(ws: &Workspace, args: &BenchArgs, out_dir: &Path) -> Result<Core> {
        let solo5 = args.peer_solo5.as_deref().map(Solo5::locate).transpose()?;
        let bins = Bins {
            guest: suite::prebuilt_or(args.guest.as_deref(), || ws.build_guest("bench", true))?,
            hello: suite::prebuilt_or(args.hello.as_deref(), || ws.build_guest("hello", true))?,
            vmm: suite::prebuilt_or(args.vmm.as_deref(), || ws.build_vmm(true))?,
            floor: suite::prebuilt_or(args.floor.as_deref(), || {
                ws.build_host_bin("bench-floor", "parapet-floor", true)
            })?,
        };
        let selected: Vec<&'static Row> = ROWS
            .iter()
            .filter(|r| args.only.is_empty() || args.only.iter().any(|p| r.id.contains(p.as_str())))
            .collect();
        if selected.is_empty() {
            bail!("no row matches --only {:?}", args.only);
        }

        let raw_dir = out_dir.join("raw");
        std::fs::create_dir_all(&raw_dir)
            .with_context(|| format!("cannot create {}", raw_dir.display()))?;
        let mut runner = Runner {
            bins,
            raw_dir,
            solo5,
            baselines: HashMap::new(),
        };
        let mut host = HostInfo::read_proc();
        let info = runner
            .guest_info()
            .context("the bench guest does not run")?;
        host.platform = info.get("platform").cloned().unwrap_or_default();
        host.transport = info.get("transport").cloned().unwrap_or_default();
        host.tsc_khz = info
            .get("tsc_khz")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        host.kvm_msr = info.get("kvm_msr").cloned().unwrap_or_default();

        let mut cells = Cells::default();
        for (i, row) in selected.iter().enumerate() {
            if row.is_peer() && runner.solo5.is_none() {
                cells.end(i, Outcome::NotRun("no --peer-solo5 PATH given".into()));
            }
        }
        Ok(Core {
            runner,
            selected,
            cells,
            host,
            rounds: args.rounds,
            iters: args.iters,
            boot_runs: args.boot_runs,
        })
    }
}

/// Rows timed by the host, run by run, rather than measured by a program.
fn host_timed(row: &Row) -> bool {
    matches!(row.source, Source::Boot(_) | Source::Solo5Yield)
}

impl suite::Suite for Core {
    const NAME: &'static str = "bench";
    type Report = Report;

    fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Every measured row once, in table order; then the host-timed rows, alternating their
    /// programs run by run.
    fn round(&mut self, _round: u32) -> Result<()> {
        self.runner.baselines.clear();
        for (i, row) in self.selected.iter().enumerate() {
            if self.cells.is_over(i) || host_timed(row) {
                continue;
            }
            let sample = self.runner.measure(row, row.iters(self.iters));
            self.cells.record(i, sample);
        }
        let boots: Vec<usize> = (0..self.selected.len())
            .filter(|&i| !self.cells.is_over(i) && host_timed(self.selected[i]))
            .collect();
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); boots.len()];
        'runs: for _ in 0..self.boot_runs {
            for (k, &i) in boots.iter().enumerate() {
                if self.cells.is_over(i) {
                    continue;
                }
                match self.runner.time_once(self.selected[i].source) {
                    Ok(ns) => runs[k].push(ns),
                    Err(outcome) => {
                        self.cells.end(i, outcome);
                        continue 'runs;
                    }
                }
            }
        }
        for (k, &i) in boots.iter().enumerate() {
            if !self.cells.is_over(i) && !runs[k].is_empty() {
                self.cells
                    .push(i, Sample::from_durations(std::mem::take(&mut runs[k])));
            }
        }
        Ok(())
    }

    fn report(mut self) -> Result<Report> {
        let index = |id: &str| self.selected.iter().position(|r| r.id == id);
        let ratios = rows::FLOOR_PAIRS
            .iter()
            .filter_map(|&(p, f)| {
                let (a, b) = (index(p)?, index(f)?);
                report::ratio(p, f, self.cells.samples(a), self.cells.samples(b))
            })
            .collect();
        let rows = self
            .selected
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let (samples, ended) = self.cells.take(i);
                RowResult {
                    row,
                    outcome: match (ended, samples.is_empty()) {
                        (Some(o), true) => o,
                        (_, false) => Outcome::Measured(Box::new(report::aggregate(&samples))),
                        (None, true) => Outcome::NotRun("no samples".into()),
                    },
                }
            })
            .collect();
        Ok(Report {
            host: self.host,
            rounds: self.rounds,
            iters: self.iters,
            boot_runs: self.boot_runs,
            peer: self
                .runner
                .solo5
                .as_ref()
                .map(|s| s.root.display().to_string()),
            rows,
            ratios,
        })
    }
}

/// The `--stats` counters of a run that measures nothing.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    exits: u64,
    kvm_exits: u64,
}

struct Runner {
    bins: Bins,
    /// Where each guest row's standard output of its last round is kept.
    raw_dir: PathBuf,
    solo5: Option<Solo5>,
    /// Per (`--loopback`, VMCALL transport), for the current round.
    baselines: HashMap<(bool, bool), Baseline>,
}

/// The command line that runs nothing in the bench guest (no benchmark has this name).
const NOTHING: &str = "baseline-none";

impl Runner {
    fn parapet(&self, loopback: bool, vmcall: bool, cmdline: &str) -> Command {
        let mut cmd = Command::new(&self.bins.vmm);
        cmd.arg("run").arg("--stats=json");
        if loopback {
            cmd.arg("--loopback");
        }
        if vmcall {
            cmd.args(["--hypercall-transport", "vmcall"]);
        }
        cmd.arg(&self.bins.guest).args(["--cmdline", cmdline]);
        cmd
    }

    /// The guest's `bench-info` (from a run that measures nothing).
    fn guest_info(&mut self) -> Result<BTreeMap<String, String>> {
        let run = capture(&mut self.parapet(false, false, NOTHING), None)?;
        if run.status != Some(0) {
            bail!("{}", run.failure());
        }
        let out = parse::output(&run.stdout).map_err(anyhow::Error::msg)?;
        if out.info.is_empty() {
            bail!("the bench guest printed no bench-info line");
        }
        Ok(out.info)
    }

    fn baseline(&mut self, loopback: bool, vmcall: bool) -> Result<Baseline, Outcome> {
        if let Some(b) = self.baselines.get(&(loopback, vmcall)) {
            return Ok(*b);
        }
        let run = capture(&mut self.parapet(loopback, vmcall, NOTHING), None)
            .map_err(|e| Outcome::Failed(format!("{e:#}")))?;
        if run.status != Some(0) {
            return Err(Outcome::Failed(format!("baseline run: {}", run.failure())));
        }
        let stats = parse::stats(&run.stderr);
        let b = Baseline {
            exits: stats.get("exit.total").copied().unwrap_or(0),
            kvm_exits: stats.get("kvm.exits").copied().unwrap_or(0),
        };
        self.baselines.insert((loopback, vmcall), b);
        Ok(b)
    }

    /// One round of one guest or floor row.
    fn measure(&mut self, row: &Row, iters: u32) -> Result<Sample, Outcome> {
        let failed = |e: anyhow::Error| Outcome::Failed(format!("{e:#}"));
        match row.source {
            Source::Guest {
                bench,
                loopback,
                vmcall,
            } => {
                let raw = self.raw_dir.join(format!("{}.out", row.id));
                let run = capture(
                    &mut self.parapet(loopback, vmcall, &format!("{bench} iters={iters}")),
                    Some(&raw),
                )
                .map_err(failed)?;
                if run.status != Some(0) {
                    let why = run.failure();
                    return Err(if vmcall && run.status == Some(1) {
                        Outcome::Unavailable(why)
                    } else {
                        Outcome::Failed(why)
                    });
                }
                let out = parse::output(&run.stdout).map_err(Outcome::Failed)?;
                if let Some(why) = out.skip_reason(bench) {
                    return Err(Outcome::Skipped(why.to_owned()));
                }
                let r = out
                    .result(bench)
                    .ok_or_else(|| Outcome::Failed(format!("no `bench {bench}` line")))?;
                let stats = parse::stats(&run.stderr);
                let base = self.baseline(loopback, vmcall)?;
                let per_op = |now: Option<&u64>, before: u64| {
                    now.map(|&n| n.saturating_sub(before) as f64 / r.operations() as f64)
                };
                Ok(Sample {
                    exits: per_op(stats.get("exit.total"), base.exits),
                    kvm_exits: per_op(stats.get("kvm.exits"), base.kvm_exits),
                    ..Sample::from_cycles([r.median, r.p99, r.min], r.tsc_khz, r.iters, r.batch)
                })
            }
            Source::Floor { op } => {
                let mut cmd = Command::new(&self.bins.floor);
                cmd.arg(op).arg(format!("iters={iters}"));
                let run = capture(&mut cmd, None).map_err(failed)?;
                if run.status != Some(0) {
                    return Err(Outcome::Failed(run.failure()));
                }
                let out = parse::output(&run.stdout).map_err(Outcome::Failed)?;
                let name = format!("floor_{op}");
                if let Some(why) = out.skip_reason(&name) {
                    return Err(Outcome::Skipped(why.to_owned()));
                }
                let r = out
                    .result(&name)
                    .ok_or_else(|| Outcome::Failed(format!("no `bench {name}` line")))?;
                Ok(Sample {
                    exits: r.exits_per_op,
                    kvm_exits: r.kvm_exits_per_op,
                    ..Sample::from_cycles([r.median, r.p99, r.min], r.tsc_khz, r.iters, r.batch)
                })
            }
            Source::Boot(_) | Source::Solo5Yield => Err(Outcome::Failed(
                "timed by the host, not measured here".into(),
            )),
        }
    }

    /// One run of a host-timed row, in ns.
    fn time_once(&self, source: Source) -> Result<f64, Outcome> {
        let solo5 = || {
            self.solo5
                .as_ref()
                .ok_or_else(|| Outcome::NotRun("no --peer-solo5 PATH given".into()))
        };
        let mut cmd = match source {
            Source::Boot(Boot::ParapetHello) => {
                let mut c = Command::new(&self.bins.vmm);
                c.arg("run").arg(&self.bins.hello);
                c
            }
            Source::Boot(Boot::Solo5Hello) => {
                let s = solo5()?;
                let mut c = Command::new(&s.tender);
                c.arg("--mem=8").arg(&s.hello);
                c
            }
            Source::Boot(Boot::Solo5Quiet) => {
                let s = solo5()?;
                let mut c = Command::new(&s.tender);
                c.arg("--mem=8").arg(&s.quiet).arg("--solo5:quiet");
                c
            }
            Source::Solo5Yield => return solo5_yield(solo5()?),
            Source::Guest { .. } | Source::Floor { .. } => {
                return Err(Outcome::Failed("not a host-timed row".into()));
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| Outcome::Failed(format!("cannot start {:?}: {e}", cmd.get_program())))?;
        let (status, _) =
            wait_limited(child, PROCESS_LIMIT).map_err(|e| Outcome::Failed(format!("{e:#}")))?;
        let ns = start.elapsed().as_nanos() as f64;
        if !status.success() {
            return Err(Outcome::Failed(format!(
                "{:?} exited with {status}",
                cmd.get_program()
            )));
        }
        Ok(ns)
    }
}

/// Runs Solo5's `test_time` until it prints `Overhead of solo5_yield(): N ns` (its own in-guest
/// measurement of one `solo5_yield()`: a POLL hypercall with an expired deadline), then stops
/// it (the rest of the test sleeps for seconds).
fn solo5_yield(s: &Solo5) -> Result<f64, Outcome> {
    let failed = |e: String| Outcome::Failed(e);
    let mut child = Command::new(&s.tender)
        .arg("--mem=8")
        .arg(&s.time)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", s.tender.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let found = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split_once("Overhead of solo5_yield(): ")
                    .and_then(|(_, rest)| rest.trim_end_matches(" ns").trim().parse::<f64>().ok())
            });
        let _ = tx.send(found);
    });
    let found = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
        .flatten();
    // The test would go on sleeping for five seconds: stop the tender this function started.
    let _ = child.kill();
    let _ = child.wait();
    found.ok_or_else(|| failed("test_time printed no `Overhead of solo5_yield()` line".into()))
}
