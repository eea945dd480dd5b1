//! `cargo xtask bench`: runs the bench guest, the floor and (if given) the Solo5 peer, and
//! prints one table; writes `results.json` and `chart.svg` under `target/bench/`.
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

pub mod blk;
pub mod cpu;
pub mod net;
pub mod netns;
pub mod parse;
pub mod ratio_chart;
pub mod report;
pub mod rows;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::Workspace;
use report::{HostInfo, Outcome, Report, RowResult, Sample};
use rows::{Boot, ROWS, Row, Source};

/// Any one process is killed after this long (a safety net, not a measurement).
pub(crate) const PROCESS_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A device benchmark instead of the hypercall-vs-trap table.
    #[command(subcommand)]
    suite: Option<Suite>,
    /// Samples per benchmark for operations that exit once; rows scale it (cheap operations
    /// take more samples, slow ones fewer).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(2..))]
    iters: u32,
    /// Rounds: each measures every row once, rows interleaved.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Spawn-to-exit runs per boot row and round.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    boot_runs: u32,
    /// A Solo5 checkout built by hand outside this tree (docs/benchmarks.md): measures its hvt
    /// tender's boot and hypercall round trip next to Parapet's, in the same run.
    #[arg(long, value_name = "PATH")]
    peer_solo5: Option<PathBuf>,
    /// Only the rows whose id contains PATTERN (repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// Where results.json and chart.svg go (default: target/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Use this `parapet` binary instead of building it (release).
    #[arg(long, value_name = "PATH")]
    vmm: Option<PathBuf>,
    /// Use this bench guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
    /// Use this hello guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    hello: Option<PathBuf>,
    /// Use this `parapet-floor` binary instead of building it (release).
    #[arg(long, value_name = "PATH")]
    floor: Option<PathBuf>,
}

/// The device benchmarks, each with its own table (docs/benchmarks.md).
#[derive(Debug, Subcommand)]
enum Suite {
    /// PV block: 4 KiB random and 1 MiB sequential I/O in a guest through Parapet next to the
    /// host doing the same I/O on the same image; prints one table, writes blk.json and blk.svg.
    Blk(Box<blk::BlkArgs>),
    /// The host side of one `bench blk` test (run by `bench blk`, built with the release
    /// profile).
    #[command(hide = true)]
    BlkHost(Box<blk::HostArgs>),
    /// PV network: TCP both ways and UDP round trips between the host and a guest on a TAP
    /// device, next to the same traffic over a veth pair and loopback; prints one table,
    /// writes net.json and net.svg. Needs root (network namespaces).
    Net(Box<net::NetArgs>),
}

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

pub fn run(ws: &Workspace, args: BenchArgs) -> Result<ExitCode> {
    match args.suite {
        Some(Suite::Blk(a)) => return blk::run(ws, *a),
        Some(Suite::BlkHost(a)) => return blk::host(*a),
        Some(Suite::Net(a)) => return net::run(ws, *a),
        None => {}
    }
    let solo5 = args.peer_solo5.as_deref().map(Solo5::locate).transpose()?;
    let bins = Bins {
        guest: match &args.guest {
            Some(p) => p.clone(),
            None => ws.build_guest("bench", true)?,
        },
        hello: match &args.hello {
            Some(p) => p.clone(),
            None => ws.build_guest("hello", true)?,
        },
        vmm: match &args.vmm {
            Some(p) => p.clone(),
            None => ws.build_vmm(true)?,
        },
        floor: match &args.floor {
            Some(p) => p.clone(),
            None => ws.build_host_bin("bench-floor", "parapet-floor", true)?,
        },
    };
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| ws.target_dir.join("bench"));
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
    let mut bench = Runner {
        bins: &bins,
        raw_dir,
        solo5: solo5.as_ref(),
        baselines: HashMap::new(),
    };
    let mut host = HostInfo::read_proc();
    let info = bench.guest_info().context("the bench guest does not run")?;
    host.platform = info.get("platform").cloned().unwrap_or_default();
    host.transport = info.get("transport").cloned().unwrap_or_default();
    host.tsc_khz = info
        .get("tsc_khz")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    host.kvm_msr = info.get("kvm_msr").cloned().unwrap_or_default();

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); selected.len()];
    let mut ended: Vec<Option<Outcome>> = vec![None; selected.len()];
    for (i, row) in selected.iter().enumerate() {
        if row.is_peer() && bench.solo5.is_none() {
            ended[i] = Some(Outcome::NotRun("no --peer-solo5 PATH given".into()));
        }
    }
    let started = Instant::now();
    for round in 1..=args.rounds {
        eprintln!(
            "xtask bench: round {round}/{} ({:.0} s so far)",
            args.rounds,
            started.elapsed().as_secs_f64()
        );
        bench.baselines.clear();
        for (i, row) in selected.iter().enumerate() {
            if ended[i].is_some() || matches!(row.source, Source::Boot(_) | Source::Solo5Yield) {
                continue;
            }
            match bench.measure(row, row.iters(args.iters)) {
                Ok(s) => samples[i].push(s),
                Err(outcome) => ended[i] = Some(outcome),
            }
        }
        let boots: Vec<usize> = (0..selected.len())
            .filter(|&i| {
                ended[i].is_none()
                    && matches!(selected[i].source, Source::Boot(_) | Source::Solo5Yield)
            })
            .collect();
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); boots.len()];
        'runs: for _ in 0..args.boot_runs {
            for (k, &i) in boots.iter().enumerate() {
                if ended[i].is_some() {
                    continue;
                }
                match bench.time_once(selected[i].source) {
                    Ok(ns) => runs[k].push(ns),
                    Err(outcome) => {
                        ended[i] = Some(outcome);
                        continue 'runs;
                    }
                }
            }
        }
        for (k, &i) in boots.iter().enumerate() {
            if ended[i].is_none() && !runs[k].is_empty() {
                samples[i].push(Sample::from_durations(std::mem::take(&mut runs[k])));
            }
        }
    }

    let results: Vec<RowResult> = selected
        .iter()
        .enumerate()
        .map(|(i, row)| RowResult {
            row,
            outcome: match (&ended[i], samples[i].is_empty()) {
                (Some(o), true) => o.clone(),
                (_, false) => Outcome::Measured(Box::new(report::aggregate(&samples[i]))),
                (None, true) => Outcome::NotRun("no samples".into()),
            },
        })
        .collect();
    let index = |id: &str| selected.iter().position(|r| r.id == id);
    let ratios = rows::FLOOR_PAIRS
        .iter()
        .filter_map(|&(p, f)| {
            let (a, b) = (index(p)?, index(f)?);
            report::ratio(p, f, &samples[a], &samples[b])
        })
        .collect();
    let report = Report {
        host,
        rounds: args.rounds,
        iters: args.iters,
        boot_runs: args.boot_runs,
        peer: solo5.as_ref().map(|s| s.root.display().to_string()),
        rows: results,
        ratios,
    };

    print!("{}", report.table());
    let json_path = out_dir.join("results.json");
    let text = serde_json::to_string_pretty(&report.json()).context("encoding the results")?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let svg_path = out_dir.join("chart.svg");
    report.svg(&svg_path)?;
    println!(
        "results: {}\nchart:   {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `--stats` counters of a run that measures nothing.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    exits: u64,
    kvm_exits: u64,
}

struct Runner<'a> {
    bins: &'a Bins,
    /// Where each guest row's standard output of its last round is kept.
    raw_dir: PathBuf,
    solo5: Option<&'a Solo5>,
    /// Per (`--loopback`, VMCALL transport), for the current round.
    baselines: HashMap<(bool, bool), Baseline>,
}

/// The command line that runs nothing in the bench guest (no benchmark has this name).
const NOTHING: &str = "baseline-none";

impl Runner<'_> {
    fn parapet(&self, loopback: bool, vmcall: bool, cmdline: &str) -> Command {
        let mut cmd = Command::new(&self.bins.vmm);
        cmd.arg("run").arg("--stats");
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
    fn guest_info(&mut self) -> Result<std::collections::BTreeMap<String, String>> {
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

/// What a child process did.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Captured {
    /// The first line of stderr that says what went wrong (the `--stats` block left out).
    fn failure(&self) -> String {
        let mut in_stats = false;
        let line = self
            .stderr
            .lines()
            .filter(|l| {
                if l.trim_end() == "parapet stats:" {
                    in_stats = true;
                    return false;
                }
                in_stats &= l.starts_with("  ");
                !in_stats && !l.trim().is_empty()
            })
            .map(str::trim)
            .next()
            .unwrap_or("");
        match self.status {
            Some(code) if line.is_empty() => format!("exit status {code}"),
            Some(_) => line.to_owned(),
            None => format!("killed by a signal; {line}"),
        }
    }
}

/// Runs `cmd` to completion (killing it after [`PROCESS_LIMIT`]), capturing its output. With
/// `stdout_file`, standard output goes to that file (and is read back from it): a guest's bulk
/// console output then costs what writing a file costs, not what a pipe to this process does.
fn capture(cmd: &mut Command, stdout_file: Option<&Path>) -> Result<Captured> {
    let stdout = match stdout_file {
        Some(path) => Stdio::from(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Stdio::piped(),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = child
        .stdout
        .take()
        .map(|pipe| read(Box::new(pipe) as Box<dyn Read + Send>));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let (status, timed_out) = wait_limited(child, PROCESS_LIMIT)?;
    let stdout = match (out, stdout_file) {
        (Some(reader), _) => reader.join().unwrap_or_default(),
        (None, Some(path)) => String::from_utf8_lossy(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .into_owned(),
        (None, None) => String::new(),
    };
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.insert_str(0, "killed after the safety limit\n");
    }
    Ok(Captured {
        status: status.code(),
        stdout,
        stderr,
    })
}

/// Waits for `child`, killing it if it runs longer than `limit`; returns its status and
/// whether it was killed. The waiting thread blocks (no polling, so wall-clock timings of short
/// runs stay exact); a watchdog thread kills the child at the limit. The child is reaped only
/// after the watchdog has been told it ended (`waitid` with `WNOWAIT` first), so the watchdog can
/// never signal a recycled process id.
fn wait_limited(mut child: Child, limit: Duration) -> Result<(std::process::ExitStatus, bool)> {
    use std::sync::{Arc, Condvar, Mutex};
    let pid = child.id();
    // (ended, killed)
    let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let watchdog = {
        let state = state.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*state;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = cv
                .wait_timeout_while(guard, limit, |(ended, _)| !*ended)
                .unwrap_or_else(|e| e.into_inner());
            if !guard.0 {
                // SAFETY: kill(2) on the child this process started; it has not been reaped (the
                // waiter reaps it only after setting `ended` under this lock), so the id is
                // still the child's.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                guard.1 = true;
            }
        })
    };
    // SAFETY: a zeroed siginfo_t is a valid output buffer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid on our own child with a valid output buffer; WNOWAIT leaves it
        // unreaped.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let killed = {
        let (lock, cv) = &*state;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = true;
        cv.notify_all();
        guard.1
    };
    let _ = watchdog.join();
    let status = child.wait().context("waiting for a child process")?;
    Ok((status, killed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_skips_the_stats_block() {
        let c = Captured {
            status: Some(102),
            stderr:
                "parapet stats:\n  exit.total 5\n  kvm.exits 49\nparapet: guest fault: #PF page \
                     fault (vector 14)\n  rip=0x1010fa\n"
                    .into(),
            ..Captured::default()
        };
        assert_eq!(
            c.failure(),
            "parapet: guest fault: #PF page fault (vector 14)"
        );
        let quiet = Captured {
            status: Some(3),
            ..Captured::default()
        };
        assert_eq!(quiet.failure(), "exit status 3");
    }

    #[test]
    fn waits_for_and_times_out_children() {
        let child = Command::new("true").spawn().unwrap();
        let (status, killed) = wait_limited(child, Duration::from_secs(30)).unwrap();
        assert!(status.success() && !killed);
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let (status, killed) = wait_limited(child, Duration::from_millis(50)).unwrap();
        assert!(!status.success() && killed);
    }
}
