//! `cargo xtask bench snapshot`: what snapshots buy (issue 14), in one run, side by side
//! (docs/benchmarks.md, "Snapshots"). The guest is `tests/guests/snapshot` with `init-mib=N`
//! (`--init-mib`, default 32: N MiB of pseudo-random state built before the snapshot) in
//! `--memory` of guest RAM (default 64M); every snapshot is made once per run with
//! `parapet run GUEST --memory M --snapshot FILE` under `target/bench/snapshots/` (removed at the
//! end), so it sits in the page cache when it is restored.
//!
//! - **Warm reset.** One `parapet restore FILE --warm --stats=json` process per row, fed
//!   `--invocations` lines (default 1000) of `ping` on standard input: one trivial invocation
//!   each. The snapshots are `mode=serve dirty-kib=K resume-check=no`, for each K of
//!   `--dirty-kib` (default 0, 64, 1024, 8192): each invocation writes K KiB of distinct pages
//!   (and, as always, the guest's stack, statics, console ring and a 64 KiB heap allocation)
//!   and does not re-read its state. The reset times (p50, p99, max: from the end of one
//!   invocation to just before the next one's first `KVM_RUN`) are the VMM's own
//!   (`warm.reset_*_ns`); invocations per second are N over the process's wall time, spawn to
//!   exit. One more row (`--read-invocations`, default 50) uses a `mode=serve` snapshot with the
//!   guest's default `resume-check=yes`: each invocation re-reads all N MiB of state (its
//!   checksum), as a request that uses its state would. Every reply must say `leak=no`.
//! - **A process per request.** `--spawns` times (default 200), rotating which goes first:
//!   `parapet restore FILE --stats=json` of a `mode=once` snapshot (the guest resumes, re-reads
//!   and checks its N MiB, powers off with 0), and a cold `parapet run GUEST --memory M
//!   --stats=json` of the same guest and command line without `--snapshot` (it builds the same
//!   state, checks it, and exits 3 where the other suspended: the cold run to the same point).
//!   A third kind, in the same rotation, restores a `mode=once resume-check=no` snapshot: the
//!   same state, not re-read after the restore, which separates what the restore itself costs
//!   from what the guest's first touch of each restored page costs. Each is timed wall-clock
//!   from spawn to exit; p50, p99, max, and requests per second as one process after another
//!   (count over the summed wall time). The ratio restore/cold is of these p50s and p99s (goal
//!   ≤ 0.5), judged on the restore that does not re-read its state: issue 14's measure is the
//!   restore up to the guest's first instruction against the cold run up to the same point,
//!   and that row adds to it only the process's start and exit, as the cold run does. The
//!   re-reading restore's ratio is shown too: it adds the cost of the guest's first touch of
//!   each restored page. The breakdown comes from `--stats`: `restore.vm_ns`
//!   (the VMM's start to VM and vCPU made), `restore.snapshot_ns` (the file checked and its
//!   memory mapped), `restore.state_ns` (devices, event channels, vCPU state), and for both
//!   `start.to_guest_ns` (the VMM's start to just before the first `KVM_RUN`), medians; with
//!   `kvm.pf_fixed`, the guest page faults KVM fixed (the pages the guest touched that were not
//!   mapped yet).
//! - **Density.** `--clones` (default 100) `parapet restore FILE` processes started at once from
//!   one `mode=serve` snapshot (`resume-check=yes`: each clone reads all its state once), their
//!   standard input a pipe the bench keeps open, so each waits for a console line after its
//!   `resumed` line. When all have printed it the bench reads `/proc/meminfo` (`MemAvailable`,
//!   also read before the first start) and each clone's `/proc/PID/smaps_rollup`: private
//!   memory (`Private_Clean + Private_Dirty`, goal ≤ 2 MiB each), `Pss`, `Rss`; then it kills
//!   them. The snapshot file is in the page cache before the clones start, so the drop in
//!   `MemAvailable` is what the clones add: their private pages, page tables, the kernel's KVM
//!   state.
//! - **Rounds** (`--rounds`, default 1): each runs all of the above once, in that order. Over
//!   rounds the warm figures are medians (max: the largest), the per-process samples and the
//!   clones are pooled, the host totals are medians.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::chart::{self, LogBar, Series};
use super::parse;
use super::process::{Captured, PROCESS_LIMIT, capture, wait_limited};
use super::report::{HostInfo, fmt_ns, median};
use super::suite::{self, Cells};
use super::table::{Align, Column, Table};
use crate::Workspace;

/// The goal for restore / cold (wall time, p50 and p99).
const RATIO_GOAL: f64 = 0.5;
/// The goal for each clone's private memory, KiB.
const PRIVATE_GOAL_KIB: u64 = 2048;
/// The request line of a warm invocation.
const REQUEST: &str = "ping";
/// The `--stats` counters a per-process sample keeps.
const SPAWN_STATS: [&str; 6] = [
    "restore.vm_ns",
    "restore.snapshot_ns",
    "restore.state_ns",
    "start.to_guest_ns",
    "kvm.pf_fixed",
    "kvm.exits",
];

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// MiB of state the guest builds before it suspends (`init-mib=`).
    #[arg(long, default_value_t = 32)]
    init_mib: u32,
    /// Guest RAM (`parapet run --memory`), e.g. 64M.
    #[arg(long, default_value = "64M")]
    memory: String,
    /// Invocations per warm-reset process (each row one process).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    invocations: u32,
    /// KiB each warm invocation dirties: one row each (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [0u32, 64, 1024, 8192])]
    dirty_kib: Vec<u32>,
    /// Invocations of the warm row whose guest re-reads all its state each time (0: no row).
    #[arg(long, default_value_t = 50)]
    read_invocations: u32,
    /// Processes of each kind (restore, cold run) for the process-per-request rows.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    spawns: u32,
    /// Restored clones running at once for the density test.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    clones: u32,
    /// Rounds: each measures everything once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Where snapshot.json and snapshot.svg go (default: target/bench); the snapshots go in
    /// its `snapshots/` while the bench runs.
    #[arg(long, value_name = "DIR")]
    pub(super) out: Option<PathBuf>,
    /// Use this `parapet` binary instead of building it (release).
    #[arg(long, value_name = "PATH")]
    vmm: Option<PathBuf>,
    /// Use this snapshot guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
}

/// A test: a cell of samples over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    /// A warm row: its index in `--dirty-kib`.
    Warm(usize),
    /// The warm row whose guest re-reads its state.
    WarmRead,
    Restore,
    /// A restore whose guest does not re-read its state.
    RestoreLight,
    Cold,
    Density,
}

/// One warm-reset process.
#[derive(Clone, Debug, Serialize)]
struct WarmRun {
    wall_ns: f64,
    invocations: u64,
    reset_p50_ns: u64,
    reset_p99_ns: u64,
    reset_max_ns: u64,
    slot_reloads: u64,
    to_guest_ns: u64,
}

impl WarmRun {
    fn per_second(&self) -> f64 {
        self.invocations as f64 * 1e9 / self.wall_ns
    }
}

/// One process of a process-per-request row.
#[derive(Clone, Debug, Serialize)]
struct SpawnRun {
    wall_ns: f64,
    stats: BTreeMap<String, u64>,
}

/// One clone's memory, from its `smaps_rollup` (KiB).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct CloneMem {
    rss_kib: u64,
    pss_kib: u64,
    private_clean_kib: u64,
    private_dirty_kib: u64,
}

impl CloneMem {
    fn private_kib(&self) -> u64 {
        self.private_clean_kib + self.private_dirty_kib
    }

    /// Parses `/proc/PID/smaps_rollup`.
    fn parse(text: &str) -> Result<CloneMem, String> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("smaps_rollup has no `{name}` in kB"))
        };
        Ok(CloneMem {
            rss_kib: field("Rss")?,
            pss_kib: field("Pss")?,
            private_clean_kib: field("Private_Clean")?,
            private_dirty_kib: field("Private_Dirty")?,
        })
    }
}

/// One density test.
#[derive(Clone, Debug, Serialize)]
struct DensityRun {
    clones: Vec<CloneMem>,
    mem_available_before_kib: u64,
    mem_available_after_kib: u64,
    /// From the first spawn to the last clone's `resumed` line.
    all_resumed_ns: f64,
}

impl DensityRun {
    fn pss_sum_kib(&self) -> u64 {
        self.clones.iter().map(|c| c.pss_kib).sum()
    }

    fn mem_used_kib(&self) -> f64 {
        self.mem_available_before_kib as f64 - self.mem_available_after_kib as f64
    }
}

#[derive(Clone, Debug)]
enum Sample {
    Warm(WarmRun),
    Spawn(SpawnRun),
    Density(DensityRun),
}

/// A snapshot made for the run.
#[derive(Clone, Debug, Serialize)]
struct Made {
    path: PathBuf,
    cmdline: String,
    /// What the VMM said when it wrote it.
    written: String,
    /// Bytes the file occupies on disk (it is sparse).
    disk_bytes: u64,
}

struct Bins {
    vmm: PathBuf,
    guest: PathBuf,
}

/// The `bench snapshot` suite.
pub struct Snapshot {
    args: SnapshotArgs,
    bins: Bins,
    dir: PathBuf,
    /// Per `--dirty-kib` entry.
    warm: Vec<Made>,
    /// `mode=serve`, the state re-read at each resume: the read row and the clones.
    serve: Made,
    once: Made,
    /// `mode=once resume-check=no`.
    once_light: Made,
    cells: Cells<Cell, Sample>,
}

impl Snapshot {
    /// Builds (or takes) the programs and makes the snapshots.
    pub fn new(ws: &Workspace, args: SnapshotArgs, out_dir: &Path) -> Result<Snapshot> {
        if args.dirty_kib.is_empty() {
            bail!("--dirty-kib needs at least one value");
        }
        let bins = Bins {
            guest: suite::prebuilt_or(args.guest.as_deref(), || ws.build_guest("snapshot", true))?,
            vmm: suite::prebuilt_or(args.vmm.as_deref(), || ws.build_vmm(true))?,
        };
        let dir = out_dir.join("snapshots");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let init = format!("init-mib={}", args.init_mib);
        let make = |name: &str, words: &str| {
            eprintln!("xtask bench snapshot: making {name} ({init} {words})");
            make_snapshot(
                &bins,
                &args.memory,
                &dir.join(name),
                &format!("{init} {words}"),
            )
            .with_context(|| format!("making the snapshot {name}"))
        };
        let warm = args
            .dirty_kib
            .iter()
            .map(|k| {
                make(
                    &format!("serve-dirty{k}.snap"),
                    &format!("mode=serve dirty-kib={k} resume-check=no"),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let serve = make("serve.snap", "mode=serve")?;
        let once = make("once.snap", "mode=once")?;
        let once_light = make("once-light.snap", "mode=once resume-check=no")?;
        Ok(Snapshot {
            args,
            bins,
            dir,
            warm,
            serve,
            once,
            once_light,
            cells: Cells::default(),
        })
    }

    fn warm_cells(&self) -> Vec<(Cell, &Made, u32)> {
        let mut cells: Vec<(Cell, &Made, u32)> = self
            .warm
            .iter()
            .enumerate()
            .map(|(i, m)| (Cell::Warm(i), m, self.args.invocations))
            .collect();
        if self.args.read_invocations > 0 {
            cells.push((Cell::WarmRead, &self.serve, self.args.read_invocations));
        }
        cells
    }
}

impl suite::Suite for Snapshot {
    const NAME: &'static str = "bench snapshot";
    type Report = SnapshotReport;

    fn rounds(&self) -> u32 {
        self.args.rounds
    }

    /// The warm rows, then the processes per request (which goes first rotating), then the
    /// clones.
    fn round(&mut self, _round: u32) -> Result<()> {
        let mut results = Vec::new();
        for (cell, made, n) in self.warm_cells() {
            if self.cells.is_over(cell) {
                continue;
            }
            eprintln!(
                "xtask bench snapshot: warm reset, {n} invocations of {}",
                made.cmdline
            );
            let r = warm_run(&self.bins.vmm, &made.path, n).map(Sample::Warm);
            results.push((cell, r.map_err(|e| format!("{e:#}"))));
        }
        for (cell, r) in results {
            self.cells.record(cell, r);
        }
        eprintln!(
            "xtask bench snapshot: {} each of restore, restore without re-reading, cold run, \
             rotating",
            self.args.spawns
        );
        let kinds = [Cell::Restore, Cell::RestoreLight, Cell::Cold];
        for i in 0..self.args.spawns as usize {
            for k in 0..kinds.len() {
                let cell = kinds[(i + k) % kinds.len()];
                if self.cells.is_over(cell) {
                    continue;
                }
                let r = match cell {
                    Cell::Restore => restore_once(&self.bins.vmm, &self.once.path),
                    Cell::RestoreLight => restore_once(&self.bins.vmm, &self.once_light.path),
                    _ => cold_run(&self.bins, &self.args.memory, &self.once.cmdline),
                };
                self.cells
                    .record(cell, r.map(Sample::Spawn).map_err(|e| format!("{e:#}")));
            }
        }
        if !self.cells.is_over(Cell::Density) {
            eprintln!(
                "xtask bench snapshot: {} clones of {} at once",
                self.args.clones,
                self.serve.path.display()
            );
            let r = density(
                &self.bins.vmm,
                &self.serve.path,
                self.args.clones,
                &self.dir,
            );
            self.cells.record(
                Cell::Density,
                r.map(Sample::Density).map_err(|e| format!("{e:#}")),
            );
        }
        Ok(())
    }

    fn report(mut self) -> Result<SnapshotReport> {
        let mut warm = Vec::new();
        let cells: Vec<(Cell, Made, u32)> = self
            .warm_cells()
            .into_iter()
            .map(|(c, m, n)| (c, m.clone(), n))
            .collect();
        for (cell, made, n) in cells {
            let (samples, failure) = self.cells.take(cell);
            warm.push(WarmRow {
                dirty_kib: match cell {
                    Cell::Warm(i) => self.args.dirty_kib[i],
                    _ => 0,
                },
                reads_state: cell == Cell::WarmRead,
                invocations: n,
                snapshot: made,
                runs: samples
                    .into_iter()
                    .filter_map(|s| match s {
                        Sample::Warm(w) => Some(w),
                        _ => None,
                    })
                    .collect(),
                failure,
            });
        }
        let mut spawn = |cell| {
            let (samples, failure) = self.cells.take(cell);
            SpawnRow {
                runs: samples
                    .into_iter()
                    .filter_map(|s| match s {
                        Sample::Spawn(r) => Some(r),
                        _ => None,
                    })
                    .collect(),
                failure,
            }
        };
        let restore = spawn(Cell::Restore);
        let restore_light = spawn(Cell::RestoreLight);
        let cold = spawn(Cell::Cold);
        let (samples, density_failure) = self.cells.take(Cell::Density);
        let density = samples
            .into_iter()
            .filter_map(|s| match s {
                Sample::Density(d) => Some(d),
                _ => None,
            })
            .collect();
        let mut snapshots: Vec<Made> = self.warm.clone();
        snapshots.extend([
            self.serve.clone(),
            self.once.clone(),
            self.once_light.clone(),
        ]);
        for m in &snapshots {
            let _ = std::fs::remove_file(&m.path);
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(SnapshotReport {
            host: HostInfo::read_proc(),
            init_mib: self.args.init_mib,
            memory: self.args.memory,
            rounds: self.args.rounds,
            spawns: self.args.spawns,
            clones: self.args.clones,
            snapshots,
            warm,
            restore,
            restore_light,
            cold,
            density,
            density_failure,
        })
    }
}

/// Writes a snapshot of the guest with `cmdline` to `path`.
fn make_snapshot(bins: &Bins, memory: &str, path: &Path, cmdline: &str) -> Result<Made> {
    let _ = std::fs::remove_file(path);
    let mut cmd = Command::new(&bins.vmm);
    cmd.arg("run")
        .arg(&bins.guest)
        .args(["--memory", memory, "--cmdline", cmdline, "--snapshot"])
        .arg(path);
    let run = capture(&mut cmd, None)?;
    if run.status != Some(0) || !run.stdout.contains("snapshot-guest: ready") {
        bail!("{}", run.failure());
    }
    let written = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("parapet: guest suspended; "))
        .unwrap_or("")
        .to_owned();
    use std::os::unix::fs::MetadataExt;
    let disk_bytes = std::fs::metadata(path)
        .with_context(|| format!("no snapshot at {}", path.display()))?
        .blocks()
        * 512;
    Ok(Made {
        path: path.to_owned(),
        cmdline: cmdline.to_owned(),
        written,
        disk_bytes,
    })
}

/// Runs `cmd` to completion with `input` on its standard input (or none), capturing its output;
/// returns it with the wall time from just before the spawn to the exit, in ns.
fn run_timed(cmd: &mut Command, input: Option<Vec<u8>>) -> Result<(Captured, f64)> {
    let read = |r: Option<Box<dyn Read + Send>>| {
        r.map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        })
    };
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            // The VMM may exit before it has read everything (a failure): not this one's.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let (status, timed_out) = wait_limited(child, PROCESS_LIMIT)?;
    let wall_ns = start.elapsed().as_nanos() as f64;
    if let Some(w) = writer {
        let _ = w.join();
    }
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let stdout = join(out);
    let mut stderr = join(err);
    if timed_out {
        stderr.insert_str(0, "killed after the safety limit\n");
    }
    Ok((
        Captured {
            status: status.code(),
            stdout,
            stderr,
        },
        wall_ns,
    ))
}

/// A `--stats` counter that must be there.
fn stat(stats: &BTreeMap<String, u64>, name: &str) -> Result<u64> {
    stats
        .get(name)
        .copied()
        .with_context(|| format!("--stats=json has no `{name}`"))
}

/// One warm-reset process serving `n` invocations from `snapshot`.
fn warm_run(vmm: &Path, snapshot: &Path, n: u32) -> Result<WarmRun> {
    let mut cmd = Command::new(vmm);
    cmd.arg("restore")
        .arg(snapshot)
        .args(["--warm", "--stats=json"]);
    let input = format!("{REQUEST}\n").repeat(n as usize).into_bytes();
    let (run, wall_ns) = run_timed(&mut cmd, Some(input))?;
    if run.status != Some(0) {
        bail!("{}", run.failure());
    }
    let replies: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("snapshot-guest: reply "))
        .collect();
    let leaks = replies.iter().filter(|l| !l.ends_with(" leak=no")).count();
    if replies.len() != n as usize || leaks > 0 {
        bail!(
            "{} replies to {n} requests, {leaks} of them not `leak=no`",
            replies.len()
        );
    }
    let stats = parse::stats(&run.stderr);
    let invocations = stat(&stats, "warm.invocations")?;
    if invocations != u64::from(n) {
        bail!("the VMM counted {invocations} invocations for {n} requests");
    }
    Ok(WarmRun {
        wall_ns,
        invocations,
        reset_p50_ns: stat(&stats, "warm.reset_p50_ns")?,
        reset_p99_ns: stat(&stats, "warm.reset_p99_ns")?,
        reset_max_ns: stat(&stats, "warm.reset_max_ns")?,
        slot_reloads: stat(&stats, "warm.slot_reloads")?,
        to_guest_ns: stat(&stats, "start.to_guest_ns")?,
    })
}

/// The `--stats` counters a per-process sample keeps.
fn spawn_stats(stderr: &str) -> BTreeMap<String, u64> {
    let all = parse::stats(stderr);
    SPAWN_STATS
        .iter()
        .filter_map(|&k| Some((k.to_owned(), *all.get(k)?)))
        .collect()
}

/// `parapet restore` of the `mode=once` snapshot: resumes, checks its state, exits 0.
fn restore_once(vmm: &Path, snapshot: &Path) -> Result<SpawnRun> {
    let mut cmd = Command::new(vmm);
    cmd.arg("restore").arg(snapshot).arg("--stats=json");
    let (run, wall_ns) = run_timed(&mut cmd, None)?;
    if run.status != Some(0) || !run.stdout.contains("snapshot-guest: resumed ") {
        bail!("restore: {}", run.failure());
    }
    Ok(SpawnRun {
        wall_ns,
        stats: spawn_stats(&run.stderr),
    })
}

/// A cold `parapet run` of the guest to the point where the other suspended (exit 3).
fn cold_run(bins: &Bins, memory: &str, cmdline: &str) -> Result<SpawnRun> {
    let mut cmd = Command::new(&bins.vmm);
    cmd.arg("run").arg(&bins.guest).args([
        "--memory",
        memory,
        "--cmdline",
        cmdline,
        "--stats=json",
    ]);
    let (run, wall_ns) = run_timed(&mut cmd, None)?;
    if run.status != Some(3) || !run.stdout.contains("snapshot-guest: no snapshots") {
        bail!("cold run (expected exit 3): {}", run.failure());
    }
    Ok(SpawnRun {
        wall_ns,
        stats: spawn_stats(&run.stderr),
    })
}

/// `MemAvailable` from /proc/meminfo, KiB.
fn mem_available_kib() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .context("/proc/meminfo has no MemAvailable")
}

/// The clones of a density test: killed and reaped when dropped, whatever happened.
struct Clones(Vec<Child>);

impl Drop for Clones {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // These are this process's own children, not yet reaped.
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// `n` restores of `snapshot` (a `mode=serve` guest) running at once, their memory read once
/// all have resumed; then they are killed.
fn density(vmm: &Path, snapshot: &Path, n: u32, dir: &Path) -> Result<DensityRun> {
    let before = mem_available_kib()?;
    let mut clones = Clones(Vec::new());
    let (tx, rx) = mpsc::channel::<(usize, bool)>();
    let err_path = |i: usize| dir.join(format!("clone-{i}.err"));
    let start = Instant::now();
    for i in 0..n as usize {
        let err = std::fs::File::create(err_path(i))
            .with_context(|| format!("cannot create {}", err_path(i).display()))?;
        let mut child = Command::new(vmm)
            .arg("restore")
            .arg(snapshot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start clone {i}"))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let resumed = lines
                .by_ref()
                .any(|l| l.starts_with("snapshot-guest: resumed "));
            let _ = tx.send((i, resumed));
            // Drain whatever else comes until the clone is killed.
            lines.for_each(drop);
        });
        clones.0.push(child);
    }
    drop(tx);
    let deadline = start + PROCESS_LIMIT;
    let mut waiting = n as usize;
    while waiting > 0 {
        let (i, resumed) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| anyhow::anyhow!("{waiting} clones had not resumed after the limit"))?;
        if !resumed {
            let why = std::fs::read_to_string(err_path(i)).unwrap_or_default();
            let cap = Captured {
                status: clones.0[i].try_wait().ok().flatten().and_then(|s| s.code()),
                stderr: why,
                ..Captured::default()
            };
            bail!("clone {i} ended before its resumed line: {}", cap.failure());
        }
        waiting -= 1;
    }
    let all_resumed_ns = start.elapsed().as_nanos() as f64;
    // Let the VMMs' threads settle into waiting for input.
    std::thread::sleep(Duration::from_millis(500));
    let mut mems = Vec::new();
    for (i, c) in clones.0.iter().enumerate() {
        let path = format!("/proc/{}/smaps_rollup", c.id());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        mems.push(CloneMem::parse(&text).map_err(|e| anyhow::anyhow!("clone {i}: {e}"))?);
    }
    let after = mem_available_kib()?;
    drop(clones);
    for i in 0..n as usize {
        let _ = std::fs::remove_file(err_path(i));
    }
    Ok(DensityRun {
        clones: mems,
        mem_available_before_kib: before,
        mem_available_after_kib: after,
        all_resumed_ns,
    })
}

/// A warm row over the rounds.
#[derive(Debug)]
struct WarmRow {
    dirty_kib: u32,
    /// The guest re-reads its state in every invocation (`resume-check=yes`).
    reads_state: bool,
    invocations: u32,
    snapshot: Made,
    runs: Vec<WarmRun>,
    failure: Option<String>,
}

impl WarmRow {
    fn med(&self, f: impl Fn(&WarmRun) -> f64) -> f64 {
        median(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn max_ns(&self) -> f64 {
        self.runs
            .iter()
            .map(|r| r.reset_max_ns as f64)
            .fold(f64::NAN, f64::max)
    }

    fn label(&self, init_mib: u32) -> String {
        if self.reads_state {
            format!("  re-reads its {init_mib} MiB, dirties 0")
        } else {
            format!("  dirties {}", fmt_kib(f64::from(self.dirty_kib)))
        }
    }
}

/// A process-per-request row: samples pooled over the rounds.
#[derive(Debug)]
struct SpawnRow {
    runs: Vec<SpawnRun>,
    failure: Option<String>,
}

impl SpawnRow {
    fn walls(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.runs.iter().map(|r| r.wall_ns).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The `p`th percentile of the wall times (nearest rank below).
    fn wall(&self, p: usize) -> f64 {
        percentile(&self.walls(), p)
    }

    /// Processes per second, one after another.
    fn per_second(&self) -> f64 {
        let total: f64 = self.runs.iter().map(|r| r.wall_ns).sum();
        self.runs.len() as f64 * 1e9 / total
    }

    /// The median of a `--stats` counter, if every run has it.
    fn stat(&self, name: &str) -> Option<f64> {
        let v: Option<Vec<f64>> = self
            .runs
            .iter()
            .map(|r| r.stats.get(name).map(|&x| x as f64))
            .collect();
        v.filter(|v| !v.is_empty()).map(|v| median(&v))
    }
}

/// The `p`th percentile of sorted `v` (the sample at rank `len * p / 100`), NaN if empty.
pub(super) fn percentile(v: &[f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() * p / 100).min(v.len() - 1)]
}

pub struct SnapshotReport {
    host: HostInfo,
    init_mib: u32,
    memory: String,
    rounds: u32,
    spawns: u32,
    clones: u32,
    snapshots: Vec<Made>,
    warm: Vec<WarmRow>,
    restore: SpawnRow,
    restore_light: SpawnRow,
    cold: SpawnRow,
    density: Vec<DensityRun>,
    density_failure: Option<String>,
}

impl SnapshotReport {
    /// Restore / cold of the `p`th percentile wall times.
    fn ratio(&self, p: usize) -> f64 {
        self.restore.wall(p) / self.cold.wall(p)
    }

    /// The same for the restore that does not re-read its state.
    fn light_ratio(&self, p: usize) -> f64 {
        self.restore_light.wall(p) / self.cold.wall(p)
    }

    /// Every clone of every round, sorted by `f`.
    fn clone_values(&self, f: impl Fn(&CloneMem) -> u64) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .density
            .iter()
            .flat_map(|d| d.clones.iter().map(&f))
            .map(|x| x as f64)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn density_med(&self, f: impl Fn(&DensityRun) -> f64) -> f64 {
        median(&self.density.iter().map(f).collect::<Vec<_>>())
    }
}

/// `848 KiB`, `1.50 MiB`, `2.3 GiB`.
fn fmt_kib(kib: f64) -> String {
    if !kib.is_finite() {
        "-".into()
    } else if kib.abs() < 1024.0 {
        format!("{kib:.0} KiB")
    } else if kib.abs() < 1024.0 * 1024.0 {
        let mib = kib / 1024.0;
        if mib.abs() < 10.0 && mib.fract() != 0.0 {
            format!("{mib:.2} MiB")
        } else {
            format!("{mib:.0} MiB")
        }
    } else {
        format!("{:.2} GiB", kib / (1024.0 * 1024.0))
    }
}

fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}/s")
    } else {
        format!("{x:.1}/s")
    }
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The table's columns: what, four figures, the goal; then free text.
const COLUMNS: [Column; 6] = [
    (40, Align::Left),
    (10, Align::Right),
    (10, Align::Right),
    (10, Align::Right),
    (10, Align::Right),
    (12, Align::Right),
];

/// `snapshot.json`.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    host: JsonHost<'a>,
    method: JsonMethod<'a>,
    snapshots: &'a [Made],
    warm: Vec<JsonWarm<'a>>,
    process_per_request: JsonSpawns<'a>,
    density: JsonDensity<'a>,
}

#[derive(Serialize)]
struct JsonHost<'a> {
    kernel: &'a str,
    cpu: &'a str,
    cpus: usize,
}

#[derive(Serialize)]
struct JsonMethod<'a> {
    guest: &'static str,
    init_mib: u32,
    memory: &'a str,
    rounds: u32,
    processes_per_kind: u32,
    warm: &'static str,
    process_per_request: &'static str,
    density: &'static str,
}

#[derive(Serialize)]
struct JsonWarm<'a> {
    dirty_kib: u32,
    reads_state: bool,
    invocations: u32,
    snapshot_cmdline: &'a str,
    status: &'static str,
    failure: Option<&'a str>,
    reset_p50_ns: Option<f64>,
    reset_p99_ns: Option<f64>,
    reset_max_ns: Option<f64>,
    invocations_per_second: Option<f64>,
    rounds: &'a [WarmRun],
}

#[derive(Serialize)]
struct JsonSpawn<'a> {
    status: &'static str,
    failure: Option<&'a str>,
    processes: usize,
    wall_p50_ns: Option<f64>,
    wall_p99_ns: Option<f64>,
    wall_max_ns: Option<f64>,
    per_second: Option<f64>,
    stats_median: BTreeMap<&'static str, f64>,
    runs: &'a [SpawnRun],
}

impl<'a> JsonSpawn<'a> {
    fn of(r: &'a SpawnRow) -> JsonSpawn<'a> {
        let some = !r.runs.is_empty();
        JsonSpawn {
            status: if some { "measured" } else { "failed" },
            failure: r.failure.as_deref(),
            processes: r.runs.len(),
            wall_p50_ns: some.then(|| r.wall(50)),
            wall_p99_ns: some.then(|| r.wall(99)),
            wall_max_ns: some.then(|| r.wall(100)),
            per_second: some.then(|| r.per_second()),
            stats_median: SPAWN_STATS
                .iter()
                .filter_map(|&k| Some((k, r.stat(k)?)))
                .collect(),
            runs: &r.runs,
        }
    }
}

#[derive(Serialize)]
struct JsonSpawns<'a> {
    restore: JsonSpawn<'a>,
    restore_not_reread: JsonSpawn<'a>,
    cold: JsonSpawn<'a>,
    ratio_p50: Option<f64>,
    ratio_p99: Option<f64>,
    ratio_not_reread_p50: Option<f64>,
    ratio_not_reread_p99: Option<f64>,
    ratio_goal: f64,
}

#[derive(Serialize)]
struct JsonDensity<'a> {
    clones: u32,
    status: &'static str,
    failure: Option<&'a str>,
    private_goal_kib: u64,
    private_p50_kib: Option<f64>,
    private_max_kib: Option<f64>,
    pss_p50_kib: Option<f64>,
    rss_p50_kib: Option<f64>,
    pss_sum_kib: Option<f64>,
    mem_available_drop_kib: Option<f64>,
    rounds: &'a [DensityRun],
}

impl suite::Report for SnapshotReport {
    const JSON: &'static str = "snapshot.json";
    const SVG: &'static str = "snapshot.svg";

    fn table(&self) -> String {
        let h = &self.host;
        let mut t = Table::new(&COLUMNS);
        t.line(format_args!(
            "Parapet bench snapshot: warm reset, a process per request (restore vs cold run), \
             clone density; guest tests/guests/snapshot init-mib={}, {} guest RAM",
            self.init_mib, self.memory
        ));
        t.line(format_args!(
            "host: Linux {}, {}, {} CPUs; snapshots in the page cache; {} processes of each kind \
             per request, rotating; {} round{}",
            h.kernel,
            h.cpu,
            h.cpus,
            self.spawns,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        ));
        t.line("");
        t.row_then(
            [
                "warm reset (restore --warm, 1 process)",
                "reset p50",
                "reset p99",
                "reset max",
                "inv/s",
                "goal",
            ],
            "reset: end of an invocation -> next KVM_RUN, timed by the VMM; inv/s: N / wall time",
        );
        for r in &self.warm {
            let label = r.label(self.init_mib);
            if r.runs.is_empty() {
                t.row_then(
                    [label.as_str()],
                    format_args!(
                        "failed: {}",
                        r.failure.as_deref().unwrap_or("no measurement")
                    ),
                );
                continue;
            }
            t.row_then(
                [
                    label,
                    fmt_ns(r.med(|w| w.reset_p50_ns as f64)),
                    fmt_ns(r.med(|w| w.reset_p99_ns as f64)),
                    fmt_ns(r.max_ns()),
                    fmt_rate(r.med(WarmRun::per_second)),
                    "-".into(),
                ],
                format_args!(
                    "{} invocations, slot reloads {}, first KVM_RUN {}{}",
                    r.invocations,
                    r.runs.iter().map(|w| w.slot_reloads).sum::<u64>(),
                    fmt_ns(r.med(|w| w.to_guest_ns as f64)),
                    r.failure
                        .as_deref()
                        .map_or(String::new(), |f| format!("; a later round failed: {f}"))
                ),
            );
        }
        t.line("");
        t.row_then(
            [
                "a process per request (wall, spawn-exit)",
                "p50",
                "p99",
                "max",
                "per s",
                "goal",
            ],
            "",
        );
        for (label, r) in [
            ("  parapet restore (mode=once)", &self.restore),
            ("  parapet restore, state not re-read", &self.restore_light),
            ("  cold parapet run (exit 3)", &self.cold),
        ] {
            if r.runs.is_empty() {
                t.row_then(
                    [label],
                    format_args!(
                        "failed: {}",
                        r.failure.as_deref().unwrap_or("no measurement")
                    ),
                );
                continue;
            }
            t.row_then(
                [
                    label.to_owned(),
                    fmt_ns(r.wall(50)),
                    fmt_ns(r.wall(99)),
                    fmt_ns(r.wall(100)),
                    fmt_rate(r.per_second()),
                    "-".into(),
                ],
                format_args!(
                    "{} processes{}",
                    r.runs.len(),
                    r.failure
                        .as_deref()
                        .map_or(String::new(), |f| format!("; then failed: {f}"))
                ),
            );
        }
        let both = !self.restore.runs.is_empty() && !self.cold.runs.is_empty();
        for (label, r, goal) in [
            ("  restore / cold", &self.restore_light, true),
            ("  restore, re-reading / cold", &self.restore, false),
        ] {
            if r.runs.is_empty() || self.cold.runs.is_empty() {
                continue;
            }
            let (p50, p99) = (
                r.wall(50) / self.cold.wall(50),
                r.wall(99) / self.cold.wall(99),
            );
            t.row_then(
                [
                    label.to_owned(),
                    format!("{p50:.3}"),
                    format!("{p99:.3}"),
                    "-".into(),
                    "-".into(),
                    if goal {
                        format!("<={RATIO_GOAL}")
                    } else {
                        "-".into()
                    },
                ],
                format_args!(
                    "{}mean {:.3}",
                    if goal {
                        format!(
                            "p50 {}, p99 {}; ",
                            met(p50 <= RATIO_GOAL),
                            met(p99 <= RATIO_GOAL)
                        )
                    } else {
                        String::new()
                    },
                    self.cold.per_second() / r.per_second()
                ),
            );
        }
        t.line("");
        t.row_then(
            [
                "where the time goes (medians)",
                "VM+vCPU",
                "snapshot",
                "state",
                "to guest",
                "",
            ],
            "VM+vCPU, snapshot (checked, mapped), state: restore.*_ns; to guest: \
             start.to_guest_ns; then the guest runs",
        );
        let stat = |r: &SpawnRow, k: &str| r.stat(k).map_or("-".into(), fmt_ns);
        for (label, r) in [
            ("  restore", &self.restore),
            ("  restore, state not re-read", &self.restore_light),
            ("  cold run", &self.cold),
        ] {
            if r.runs.is_empty() {
                continue;
            }
            let to_guest = r.stat("start.to_guest_ns");
            t.row_then(
                [
                    label.to_owned(),
                    stat(r, "restore.vm_ns"),
                    stat(r, "restore.snapshot_ns"),
                    stat(r, "restore.state_ns"),
                    to_guest.map_or("-".into(), fmt_ns),
                    String::new(),
                ],
                format_args!(
                    "guest after that {}; guest page faults (kvm.pf_fixed) {}",
                    to_guest.map_or("-".into(), |g| fmt_ns(r.wall(50) - g)),
                    r.stat("kvm.pf_fixed")
                        .map_or("-".into(), |x| format!("{x:.0}"))
                ),
            );
        }
        t.line("");
        t.row_then(
            [
                format!("density ({} clones at once)", self.clones),
                "p50".into(),
                "max".into(),
                String::new(),
                String::new(),
                "goal".into(),
            ],
            "per clone, /proc/PID/smaps_rollup",
        );
        if self.density.is_empty() {
            t.row_then(
                ["  clones"],
                format_args!(
                    "failed: {}",
                    self.density_failure.as_deref().unwrap_or("no measurement")
                ),
            );
        } else {
            let private = self.clone_values(CloneMem::private_kib);
            let pmax = percentile(&private, 100);
            for (label, v, goal) in [
                ("  private (Private_Clean+Private_Dirty)", &private, true),
                ("  Pss", &self.clone_values(|c| c.pss_kib), false),
                ("  Rss", &self.clone_values(|c| c.rss_kib), false),
            ] {
                t.row_then(
                    [
                        label.to_owned(),
                        fmt_kib(percentile(v, 50)),
                        fmt_kib(percentile(v, 100)),
                        String::new(),
                        String::new(),
                        if goal {
                            format!("<={}", fmt_kib(PRIVATE_GOAL_KIB as f64))
                        } else {
                            "-".into()
                        },
                    ],
                    if goal {
                        format!("max {}", met(pmax <= PRIVATE_GOAL_KIB as f64))
                    } else {
                        String::new()
                    },
                );
            }
            let n = f64::from(self.clones);
            let pss = self.density_med(|d| d.pss_sum_kib() as f64);
            let used = self.density_med(DensityRun::mem_used_kib);
            t.line(format_args!(
                "  host total: sum of Pss {} ({} a clone); MemAvailable {} before, {} with the \
                 clones: {} used ({} a clone); all resumed {} after the first spawn",
                fmt_kib(pss),
                fmt_kib(pss / n),
                fmt_kib(self.density_med(|d| d.mem_available_before_kib as f64)),
                fmt_kib(self.density_med(|d| d.mem_available_after_kib as f64)),
                fmt_kib(used),
                fmt_kib(used / n),
                fmt_ns(self.density_med(|d| d.all_resumed_ns)),
            ));
        }
        let mut goals = Vec::new();
        if both {
            goals.push(format!(
                "restore/cold p50 {:.3}, p99 {:.3} (goal <= {RATIO_GOAL}: {})",
                self.light_ratio(50),
                self.light_ratio(99),
                met(self.light_ratio(50) <= RATIO_GOAL && self.light_ratio(99) <= RATIO_GOAL)
            ));
        }
        if !self.density.is_empty() {
            let pmax = percentile(&self.clone_values(CloneMem::private_kib), 100);
            goals.push(format!(
                "private memory per clone at most {} (goal <= {}: {})",
                fmt_kib(pmax),
                fmt_kib(PRIVATE_GOAL_KIB as f64),
                met(pmax <= PRIVATE_GOAL_KIB as f64)
            ));
        }
        t.line(format_args!("goals (issue 14): {}", goals.join("; ")));
        t.into_string()
    }

    fn json(&self) -> impl Serialize + '_ {
        let h = &self.host;
        let warm = self
            .warm
            .iter()
            .map(|r| {
                let some = !r.runs.is_empty();
                JsonWarm {
                    dirty_kib: r.dirty_kib,
                    reads_state: r.reads_state,
                    invocations: r.invocations,
                    snapshot_cmdline: &r.snapshot.cmdline,
                    status: if some { "measured" } else { "failed" },
                    failure: r.failure.as_deref(),
                    reset_p50_ns: some.then(|| r.med(|w| w.reset_p50_ns as f64)),
                    reset_p99_ns: some.then(|| r.med(|w| w.reset_p99_ns as f64)),
                    reset_max_ns: some.then(|| r.max_ns()),
                    invocations_per_second: some.then(|| r.med(WarmRun::per_second)),
                    rounds: &r.runs,
                }
            })
            .collect();
        let both = !self.restore.runs.is_empty() && !self.cold.runs.is_empty();
        let light = !self.restore_light.runs.is_empty() && !self.cold.runs.is_empty();
        let d = !self.density.is_empty();
        let clone_p = |f: fn(&CloneMem) -> u64, p| d.then(|| percentile(&self.clone_values(f), p));
        Json {
            schema: "parapet-bench-snapshot/1",
            host: JsonHost {
                kernel: &h.kernel,
                cpu: &h.cpu,
                cpus: h.cpus,
            },
            method: JsonMethod {
                guest: "tests/guests/snapshot, release; snapshots made once per run with parapet run --snapshot, in the page cache when restored",
                init_mib: self.init_mib,
                memory: &self.memory,
                rounds: self.rounds,
                processes_per_kind: self.spawns,
                warm: "one `parapet restore --warm --stats=json` per row, N lines `ping`; snapshot `mode=serve dirty-kib=K resume-check=no` (the read row: `mode=serve`, re-reads its state each invocation); reset p50/p99/max: the VMM's warm.reset_*_ns; per second: N / wall time spawn to exit; medians over rounds (max: largest)",
                process_per_request: "rotating: `parapet restore` of a `mode=once` snapshot (exit 0), of a `mode=once resume-check=no` one (state not re-read), and a cold `parapet run` with the first's cmdline without --snapshot (exit 3 where the other suspended); wall time spawn to exit; samples pooled over rounds; per second: count / summed wall time; ratio: restore p / cold p",
                density: "N `parapet restore` of one `mode=serve` snapshot started at once, stdin a pipe kept open; after every `resumed` line (+500 ms): /proc/PID/smaps_rollup of each, MemAvailable before the first start and then; private = Private_Clean + Private_Dirty",
            },
            snapshots: &self.snapshots,
            warm,
            process_per_request: JsonSpawns {
                restore: JsonSpawn::of(&self.restore),
                restore_not_reread: JsonSpawn::of(&self.restore_light),
                cold: JsonSpawn::of(&self.cold),
                ratio_p50: both.then(|| self.ratio(50)),
                ratio_p99: both.then(|| self.ratio(99)),
                ratio_not_reread_p50: light.then(|| self.light_ratio(50)),
                ratio_not_reread_p99: light.then(|| self.light_ratio(99)),
                ratio_goal: RATIO_GOAL,
            },
            density: JsonDensity {
                clones: self.clones,
                status: if d { "measured" } else { "failed" },
                failure: self.density_failure.as_deref(),
                private_goal_kib: PRIVATE_GOAL_KIB,
                private_p50_kib: clone_p(CloneMem::private_kib, 50),
                private_max_kib: clone_p(CloneMem::private_kib, 100),
                pss_p50_kib: clone_p(|c| c.pss_kib, 50),
                rss_p50_kib: clone_p(|c| c.rss_kib, 50),
                pss_sum_kib: d.then(|| self.density_med(|r| r.pss_sum_kib() as f64)),
                mem_available_drop_kib: d.then(|| self.density_med(DensityRun::mem_used_kib)),
                rounds: &self.density,
            },
        }
    }

    /// Durations on a log scale: the warm resets and invocations, the processes per request.
    fn chart(&self, path: &Path) -> Result<()> {
        let mut bars = Vec::new();
        for r in self.warm.iter().filter(|r| !r.runs.is_empty()) {
            let label = r.label(self.init_mib);
            bars.push(LogBar {
                label: format!("warm reset p50, {}", label.trim()),
                ns: r.med(|w| w.reset_p50_ns as f64),
                series: 0,
            });
            bars.push(LogBar {
                label: format!("warm invocation (wall / N), {}", label.trim()),
                ns: 1e9 / r.med(WarmRun::per_second),
                series: 1,
            });
        }
        for (label, r, series) in [
            ("parapet restore, p50", &self.restore, 2),
            (
                "parapet restore, state not re-read, p50",
                &self.restore_light,
                2,
            ),
            ("cold parapet run, p50", &self.cold, 3),
        ] {
            if !r.runs.is_empty() {
                bars.push(LogBar {
                    label: label.into(),
                    ns: r.wall(50),
                    series,
                });
            }
        }
        bars.retain(|b| b.ns.is_finite() && b.ns > 0.0);
        chart::log_bars(
            path,
            &format!(
                "Snapshots: warm reset and a process per request (init-mib={}, {})",
                self.init_mib, self.memory
            ),
            "time (log scale)",
            &bars,
            &[
                Series {
                    name: "warm reset (VMM)",
                    rgb: (46, 139, 87),
                },
                Series {
                    name: "warm invocation",
                    rgb: (70, 110, 170),
                },
                Series {
                    name: "restore process",
                    rgb: (230, 145, 30),
                },
                Series {
                    name: "cold process",
                    rgb: (200, 50, 50),
                },
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smaps_rollup() {
        let text = "559e8a993000-7ffff0e62000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:               37416 kB\nPss:               35865 kB\n\
                    Pss_Dirty:           848 kB\nShared_Clean:       1660 kB\n\
                    Private_Clean:     34908 kB\nPrivate_Dirty:       848 kB\n";
        let m = CloneMem::parse(text).unwrap();
        assert_eq!(
            m,
            CloneMem {
                rss_kib: 37416,
                pss_kib: 35865,
                private_clean_kib: 34908,
                private_dirty_kib: 848,
            }
        );
        assert_eq!(m.private_kib(), 35756);
        assert!(CloneMem::parse("Rss: 1 kB\n").is_err());
    }

    #[test]
    fn percentiles_and_sizes() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50), 51.0);
        assert_eq!(percentile(&v, 99), 100.0);
        assert_eq!(percentile(&v, 100), 100.0);
        assert!(percentile(&[], 50).is_nan());
        assert_eq!(fmt_kib(848.0), "848 KiB");
        assert_eq!(fmt_kib(1536.0), "1.50 MiB");
        assert_eq!(fmt_kib(8192.0), "8 MiB");
        assert_eq!(fmt_kib(3.0 * 1024.0 * 1024.0), "3.00 GiB");
    }
}
