//! `cargo xtask bench blk`: the PV block device against the host doing the same I/O on the same
//! image file, in the same run (docs/benchmarks.md, "PV block").
//!
//! - The guest side is `bench/guests/blk-bench`, one `parapet run --stats --disk IMAGE` process
//!   per test; the host side is [`host`] (`cargo xtask bench blk-host`, built with the release
//!   profile), one process per test: `pread`/`pwrite` for the queue-depth-1 and sequential
//!   tests, `io_uring` with 32 requests in flight for the QD32 tests. Both replay the same
//!   requests: the random offsets come from the same SplitMix64 sequence and seed
//!   ([`bench_protocol::splitmix64`]), the sequential ones walk the file from offset 0 in 1 MiB
//!   steps; both stop after `--seconds` (or `--ops`). Both print `bench-protocol`'s lines.
//! - Both sides do buffered I/O (the VMM's backend `pread`s/`pwrite`s the image without
//!   `O_DIRECT`) with the image warm in the page cache and clean: before every run of either
//!   side the bench `fdatasync`s the image and reads it through.
//! - `--rounds` rounds; within a round each test runs on both sides back to back, the side that
//!   goes first alternating from round to round. Each round also runs the guest once with no
//!   test (`none`: boot, connect the disk, power off): exits per request are a test run's
//!   `--stats` counters less that baseline's, over the requests it performed (warm-up
//!   included).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use bench_protocol::{self as protocol, BlkResult, splitmix64};

use super::chart::{self, Bar};
use super::cpu::Cpu;
use super::parse;
use super::process::{PROCESS_LIMIT, capture};
use super::report::{HostInfo, fmt_ns, median};
use super::suite::{self, Cells};
use super::table::{Align, Column, Table};
use crate::Workspace;

/// Sectors per 4 KiB block, and bytes per sector.
const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct BlkArgs {
    /// Size of the scratch image (bytes, or with a suffix K, M, G).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    size: u64,
    /// Measuring time per test and side, in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds: each runs every test on both sides.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// At most this many measured operations per test (4 KiB requests, or MiB for the
    /// sequential tests); the time limit usually ends a test first.
    #[arg(long)]
    ops: Option<u64>,
    /// Seed of the random offsets (both sides).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The guest polls its ring up to this many µs before it blocks for a completion.
    #[arg(long, default_value_t = 0)]
    spin: u64,
    /// Only the tests whose id contains PATTERN (repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// The scratch image (default: target/bench/blk.img); made or resized to --size, its
    /// contents overwritten.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Where blk.json goes (default: target/bench).
    #[arg(long, value_name = "DIR")]
    pub(super) out: Option<PathBuf>,
    /// Use this `parapet` binary instead of building it (release).
    #[arg(long, value_name = "PATH")]
    vmm: Option<PathBuf>,
    /// Use this blk-bench guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
    /// Use this xtask binary for the host side instead of building xtask (release).
    #[arg(long, value_name = "PATH")]
    harness: Option<PathBuf>,
}

/// `256M`-style sizes.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size"))?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(format!("`{text}`: the suffix must be K, M or G")),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b >= MIB && b % BLOCK == 0)
        .ok_or_else(|| format!("`{text}`: at least 1M, a multiple of 4K"))
}

/// How a test's result is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// Requests per second.
    Iops,
    /// Bytes per second (shown as MB/s, 10^6 bytes).
    Throughput,
}

/// One test: the same operations on both sides.
#[derive(Debug)]
pub struct BlkTest {
    pub id: &'static str,
    label: &'static str,
    write: bool,
    /// Requests in flight (4 KiB random tests); the sequential tests are 1 MiB operations.
    qd: usize,
    sequential: bool,
    unit: Unit,
    /// The goal for guest/host, if any.
    goal: Option<f64>,
}

pub const TESTS: &[BlkTest] = &[
    BlkTest {
        id: "randread_qd1",
        label: "4 KiB random read, QD1",
        write: false,
        qd: 1,
        sequential: false,
        unit: Unit::Iops,
        goal: None,
    },
    BlkTest {
        id: "randread_qd32",
        label: "4 KiB random read, QD32",
        write: false,
        qd: 32,
        sequential: false,
        unit: Unit::Iops,
        goal: Some(0.5),
    },
    BlkTest {
        id: "randwrite_qd1",
        label: "4 KiB random write, QD1",
        write: true,
        qd: 1,
        sequential: false,
        unit: Unit::Iops,
        goal: None,
    },
    BlkTest {
        id: "randwrite_qd32",
        label: "4 KiB random write, QD32",
        write: true,
        qd: 32,
        sequential: false,
        unit: Unit::Iops,
        goal: Some(0.5),
    },
    BlkTest {
        id: "seqread",
        label: "1 MiB sequential read",
        write: false,
        qd: 1,
        sequential: true,
        unit: Unit::Throughput,
        goal: Some(0.8),
    },
    BlkTest {
        id: "seqwrite",
        label: "1 MiB sequential write",
        write: true,
        qd: 1,
        sequential: true,
        unit: Unit::Throughput,
        goal: Some(0.8),
    },
];

/// The exits-per-request goal (issue 4).
const EXIT_GOAL: f64 = 0.1;

fn test(id: &str) -> Option<&'static BlkTest> {
    TESTS.iter().find(|t| t.id == id)
}

/// A `blk-bench <name> …` line (the guest's, or the host harness's with `tsc_khz=1000000`, so
/// that its cycles are nanoseconds).
pub type Line = BlkResult<'static>;

/// What a run printed: result lines, and `(name, why)` of tests that skipped or failed.
#[derive(Debug, Default)]
pub struct Lines {
    pub info: BTreeMap<String, String>,
    pub results: Vec<Line>,
    pub problems: Vec<(String, String)>,
}

/// Parses `blk-bench-info …` and `blk-bench …` lines; everything else is ignored.
pub fn parse_lines(stdout: &str) -> Result<Lines, String> {
    let mut out = Lines::default();
    for line in stdout.lines().map(str::trim_end) {
        match BlkResult::parse_line(line).map_err(|e| format!("{e} in {line:?}"))? {
            None => {}
            Some(protocol::Line::Info(fields)) => out.info.extend(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            Some(protocol::Line::Result(l)) => out.results.push(l.into_owned()),
            Some(protocol::Line::Skipped { name, why }) => {
                out.problems.push((name.into(), format!("skipped: {why}")))
            }
            Some(protocol::Line::Failed { name, why }) => {
                out.problems.push((name.into(), format!("failed: {why}")))
            }
        }
    }
    Ok(out)
}

/// One run of one test on one side.
#[derive(Clone, Debug)]
struct Run {
    line: Line,
    /// Guest runs: `--stats` counters less the round's baseline run.
    stats: Option<BTreeMap<String, i64>>,
    /// Guest runs: CPU use of the VMM's threads and the host.
    cpu: Option<Cpu>,
}

impl Run {
    fn seconds(&self) -> f64 {
        self.line.cycles as f64 / (self.line.tsc_khz as f64 * 1e3)
    }

    /// IOPS or bytes per second.
    fn rate(&self, unit: Unit) -> f64 {
        match unit {
            Unit::Iops => self.line.requests as f64 / self.seconds(),
            Unit::Throughput => self.line.bytes as f64 / self.seconds(),
        }
    }

    fn lat_ns(&self, k: usize) -> f64 {
        self.line.lat[k] as f64 * 1e6 / self.line.tsc_khz as f64
    }

    /// A `--stats` counter per request performed (warm-up included).
    fn per_request(&self, counter: &str) -> Option<f64> {
        let n = self.stats.as_ref()?.get(counter).copied().unwrap_or(0);
        Some(n.max(0) as f64 / (self.line.requests + self.line.warmup_requests) as f64)
    }
}

/// The baseline counters a test run's are reduced by.
type Counters = BTreeMap<String, u64>;

fn fmt_rate(x: f64, unit: Unit) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    match unit {
        Unit::Iops if x >= 1e6 => format!("{:.2} MIOPS", x / 1e6),
        Unit::Iops => format!("{:.1} kIOPS", x / 1e3),
        Unit::Throughput => format!("{:.0} MB/s", x / 1e6),
    }
}

struct Bins {
    vmm: PathBuf,
    guest: PathBuf,
    harness: PathBuf,
}

/// One run of a test, on one side.
#[derive(Clone, Debug)]
enum Side {
    Guest(Run),
    Host(Run),
}

/// The `bench blk` suite: every selected test on both sides, once per round.
pub struct Blk {
    args: BlkArgs,
    bins: Bins,
    image: PathBuf,
    /// `--seconds` in ms.
    ms: u64,
    selected: Vec<&'static BlkTest>,
    /// Per test (its index in `selected`): its runs on both sides; a failure on either side
    /// ends the test.
    cells: Cells<usize, Side>,
    /// The guest's `blk-bench-info`.
    info: BTreeMap<String, String>,
}

impl Blk {
    /// Builds (or takes) the programs and makes the image.
    pub fn new(ws: &Workspace, args: BlkArgs) -> Result<Blk> {
        if !(args.seconds > 0.0 && args.seconds <= 600.0) {
            bail!("--seconds must be in (0, 600]");
        }
        let selected: Vec<&'static BlkTest> = TESTS
            .iter()
            .filter(|t| args.only.is_empty() || args.only.iter().any(|p| t.id.contains(p.as_str())))
            .collect();
        if selected.is_empty() {
            bail!("no test matches --only {:?}", args.only);
        }
        let bins = Bins {
            guest: suite::prebuilt_or(args.guest.as_deref(), || ws.build_guest("blk-bench", true))?,
            vmm: suite::prebuilt_or(args.vmm.as_deref(), || ws.build_vmm(true))?,
            harness: suite::prebuilt_or(args.harness.as_deref(), || {
                ws.build_host_bin("xtask", "xtask", true)
            })?,
        };
        let out_dir = suite::out_dir(ws, args.out.as_deref());
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let image = args
            .image
            .clone()
            .unwrap_or_else(|| ws.target_dir.join("bench/blk.img"));
        make_image(&image, args.size)?;
        let ms = (args.seconds * 1000.0).round().max(1.0) as u64;
        Ok(Blk {
            args,
            bins,
            image,
            ms,
            selected,
            cells: Cells::default(),
            info: BTreeMap::new(),
        })
    }
}

impl suite::Suite for Blk {
    const NAME: &'static str = "bench blk";
    type Report = BlkReport;

    fn rounds(&self) -> u32 {
        self.args.rounds
    }

    /// The baseline guest run, then each test on both sides back to back, the side that goes
    /// first alternating from round to round.
    fn round(&mut self, round: u32) -> Result<()> {
        let (bins, image, args, ms) = (&self.bins, &self.image, &self.args, self.ms);
        warm(image)?;
        let base = guest_run(bins, image, "none", args, ms)
            .context("the baseline guest run (blk-bench none)")?;
        self.info.extend(base.info);
        let base = base.stats;
        for (i, t) in self.selected.iter().enumerate() {
            if self.cells.is_over(i) {
                continue;
            }
            let guest_first = round % 2 == 1;
            for side in 0..2 {
                let on_guest = (side == 0) == guest_first;
                warm(image)?;
                let result = if on_guest {
                    guest_run(bins, image, t.id, args, ms).and_then(|r| {
                        let line = one_line(r.lines, t.id)?;
                        let stats = r
                            .stats
                            .iter()
                            .map(|(k, &v)| {
                                (
                                    k.clone(),
                                    v as i64 - base.get(k).copied().unwrap_or(0) as i64,
                                )
                            })
                            .collect();
                        Ok(Side::Guest(Run {
                            line,
                            stats: Some(stats),
                            cpu: r.cpu,
                        }))
                    })
                } else {
                    host_run(bins, image, t, args, ms).map(Side::Host)
                };
                let result = result
                    .map_err(|e| format!("{}: {e:#}", if on_guest { "guest" } else { "host" }));
                if !self.cells.record(i, result) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn report(mut self) -> Result<BlkReport> {
        // The image stays (it is reused); its dirty pages need not.
        warm(&self.image)?;
        let rows = self
            .selected
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (runs, failure) = self.cells.take(i);
                let (mut guest, mut host) = (Vec::new(), Vec::new());
                for r in runs {
                    match r {
                        Side::Guest(r) => guest.push(r),
                        Side::Host(r) => host.push(r),
                    }
                }
                BlkRow {
                    test: t,
                    guest,
                    host,
                    failure,
                }
            })
            .collect();
        Ok(BlkReport {
            host: HostInfo::read_proc(),
            info: self.info,
            image: self.image,
            size: self.args.size,
            seconds: self.args.seconds,
            rounds: self.args.rounds,
            seed: self.args.seed,
            spin: self.args.spin,
            rows,
        })
    }
}

/// Makes `path` a `size`-byte file of pseudo-random data (rewritten when its size differs).
fn make_image(path: &Path, size: u64) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    eprintln!(
        "xtask bench blk: writing a {} MiB image at {}",
        size >> 20,
        path.display()
    );
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut chunk = vec![0u8; MIB as usize];
    for mib in 0..size.div_ceil(MIB) {
        for (k, word) in chunk.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&splitmix64(0x1a9e, mib * MIB / 8 + k as u64).to_le_bytes());
        }
        let n = (size - mib * MIB).min(MIB) as usize;
        f.write_all(&chunk[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes the image clean and warm: `fdatasync` (so the previous run's dirty pages are written
/// back now, not during the next run), then reads it through (so it is all in the page cache).
fn warm(path: &Path) -> Result<()> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.sync_data()
        .with_context(|| format!("fdatasync {}", path.display()))?;
    let mut buf = vec![0u8; MIB as usize];
    while f
        .read(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?
        > 0
    {}
    Ok(())
}

/// A guest run's output.
struct GuestOutput {
    info: BTreeMap<String, String>,
    lines: Lines,
    stats: Counters,
    /// The VMM's threads' CPU use over the run.
    cpu: Option<Cpu>,
}

fn ops_words(t_sequential: bool, args: &BlkArgs, ms: u64) -> String {
    let ops = args
        .ops
        .unwrap_or(if t_sequential { 1_000_000 } else { 100_000_000 });
    format!("ops={ops} ms={ms} seed={}", args.seed)
}

fn guest_run(
    bins: &Bins,
    image: &Path,
    name: &str,
    args: &BlkArgs,
    ms: u64,
) -> Result<GuestOutput> {
    let sequential = test(name).is_some_and(|t| t.sequential);
    let mut cmd = Command::new(&bins.vmm);
    cmd.arg("run")
        .arg("--stats=json")
        .arg("--disk")
        .arg(image)
        .arg(&bins.guest)
        .arg("--cmdline")
        .arg(format!(
            "{name} {} spin={}",
            ops_words(sequential, args, ms),
            args.spin
        ));
    let (run, cpu) = super::cpu::capture_sampled(&mut cmd, PROCESS_LIMIT)?;
    if run.status != Some(0) {
        bail!("{}", run.failure());
    }
    let lines = parse_lines(&run.stdout).map_err(anyhow::Error::msg)?;
    Ok(GuestOutput {
        info: lines.info.clone(),
        lines,
        stats: parse::stats(&run.stderr),
        cpu,
    })
}

/// The one result line of test `name`, or why there is none.
fn one_line(lines: Lines, name: &str) -> Result<Line> {
    if let Some((_, why)) = lines.problems.iter().find(|(n, _)| n == name) {
        bail!("{why}");
    }
    lines
        .results
        .into_iter()
        .find(|l| l.name == name)
        .with_context(|| format!("no `blk-bench {name}` line"))
}

fn host_run(bins: &Bins, image: &Path, t: &BlkTest, args: &BlkArgs, ms: u64) -> Result<Run> {
    let mut cmd = Command::new(&bins.harness);
    cmd.args(["bench", "blk-host", t.id, "--image"])
        .arg(image)
        .args([
            "--ops",
            &args
                .ops
                .unwrap_or(if t.sequential { 1_000_000 } else { 100_000_000 })
                .to_string(),
            "--ms",
            &ms.to_string(),
            "--seed",
            &args.seed.to_string(),
        ]);
    let run = capture(&mut cmd, None)?;
    if run.status != Some(0) {
        bail!("{}", run.failure());
    }
    let lines = parse_lines(&run.stdout).map_err(anyhow::Error::msg)?;
    Ok(Run {
        line: one_line(lines, t.id)?,
        stats: None,
        cpu: None,
    })
}

/// `cargo xtask bench blk-host TEST`: the host side of one test (what `bench blk` runs).
#[derive(Debug, Args)]
pub struct HostArgs {
    /// The test id (randread_qd1, randread_qd32, randwrite_qd1, randwrite_qd32, seqread,
    /// seqwrite).
    test: String,
    #[arg(long)]
    image: PathBuf,
    /// Measured operations at most (4 KiB requests, or MiB).
    #[arg(long)]
    ops: u64,
    /// Stop issuing after this many ms of measuring.
    #[arg(long)]
    ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unmeasured operations first (default: as the guest, 64 requests or 2 MiB).
    #[arg(long)]
    warmup: Option<u64>,
}

/// Runs the host side of a test and prints its `blk-bench` line (`tsc_khz=1000000`: cycles are
/// nanoseconds).
pub fn host(args: HostArgs) -> Result<ExitCode> {
    let t = test(&args.test).with_context(|| format!("unknown test `{}`", args.test))?;
    let file = File::options()
        .read(true)
        .write(t.write)
        .open(&args.image)
        .with_context(|| format!("cannot open {}", args.image.display()))?;
    let len = file.metadata()?.len();
    let warmup = args.warmup.unwrap_or(if t.sequential { 2 } else { 64 });
    let limit = Duration::from_millis(args.ms);
    let h = Harness {
        t,
        file: &file,
        seed: args.seed,
        units: if t.sequential { len / MIB } else { len / BLOCK },
    };
    if h.units == 0 {
        bail!("{} is too small for {}", args.image.display(), t.id);
    }
    let (w, m) = if t.qd > 1 {
        let w = h.uring(0, warmup, None)?;
        (w.requests, h.uring(w.requests, args.ops, Some(limit))?)
    } else {
        let w = h.sync(0, warmup, None)?;
        let done = if t.sequential {
            w.bytes / MIB
        } else {
            w.requests
        };
        (w.requests, h.sync(done, args.ops, Some(limit))?)
    };
    let mut lat = m.latencies;
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    let line = BlkResult {
        name: t.id.into(),
        requests: m.requests,
        bytes: m.bytes,
        cycles: m.ns.max(1),
        tsc_khz: 1_000_000,
        qd: t.qd as u64,
        warmup_requests: w,
        lat: [pct(50), pct(99), lat[0]],
        notifies: 0,
        waits: 0,
        split: None,
    };
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// What a host phase did.
#[derive(Debug, Default)]
struct HostPhase {
    requests: u64,
    bytes: u64,
    ns: u64,
    latencies: Vec<u64>,
}

struct Harness<'a> {
    t: &'static BlkTest,
    file: &'a File,
    seed: u64,
    /// 4 KiB blocks or whole MiB in the file.
    units: u64,
}

impl Harness<'_> {
    /// Operation `i`'s byte offset and length.
    fn op(&self, i: u64) -> (u64, usize) {
        if self.t.sequential {
            (i % self.units * MIB, MIB as usize)
        } else {
            (
                splitmix64(self.seed, i) % self.units * BLOCK,
                BLOCK as usize,
            )
        }
    }

    /// Operations `first..first + max`, one at a time with `pread`/`pwrite`.
    fn sync(&self, first: u64, max: u64, limit: Option<Duration>) -> Result<HostPhase> {
        let mut buf = vec![0u8; MIB as usize];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        let mut p = HostPhase::default();
        let start = Instant::now();
        for i in first..first.saturating_add(max) {
            let t0 = Instant::now();
            if limit.is_some_and(|l| t0 - start >= l) {
                break;
            }
            let (at, len) = self.op(i);
            if self.t.write {
                self.file.write_all_at(&buf[..len], at)?;
            } else {
                self.file.read_exact_at(&mut buf[..len], at)?;
            }
            p.latencies.push(t0.elapsed().as_nanos() as u64);
            p.requests += 1;
            p.bytes += len as u64;
        }
        p.ns = start.elapsed().as_nanos() as u64;
        Ok(p)
    }

    /// Operations `first..first + max` through io_uring with `qd` in flight.
    fn uring(&self, first: u64, max: u64, limit: Option<Duration>) -> Result<HostPhase> {
        use io_uring::{IoUring, opcode, types};
        use std::os::fd::AsRawFd;
        let qd = self.t.qd;
        // As fio sets up its rings where the kernel allows: completions are run by this thread
        // when it enters the kernel, not pushed to it with interrupts (which cost an exit to the
        // outer hypervisor each on a nested host).
        let entries = 2 * qd as u32;
        let mut ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))
            .context("io_uring_setup")?;
        let mut bufs: Vec<Vec<u8>> = (0..qd).map(|_| vec![0x5a; BLOCK as usize]).collect();
        let mut issued_at: Vec<Instant> = vec![Instant::now(); qd];
        let mut free: Vec<usize> = (0..qd).collect();
        let fd = types::Fd(self.file.as_raw_fd());
        let mut p = HostPhase::default();
        let (mut next, end) = (first, first.saturating_add(max));
        let start = Instant::now();
        loop {
            let expired = limit.is_some_and(|l| start.elapsed() >= l);
            while !expired && next < end {
                let Some(slot) = free.pop() else { break };
                let (at, len) = self.op(next);
                let buf = bufs[slot].as_mut_ptr();
                let entry = if self.t.write {
                    opcode::Write::new(fd, buf, len as u32).offset(at).build()
                } else {
                    opcode::Read::new(fd, buf, len as u32).offset(at).build()
                }
                .user_data(slot as u64);
                issued_at[slot] = Instant::now();
                // SAFETY: the buffer (`bufs[slot]`) lives until this function returns, and its
                // slot is not reused until the entry's completion has been reaped; the fd is
                // `self.file`'s, open for the whole call.
                unsafe { ring.submission().push(&entry) }
                    .map_err(|_| anyhow::anyhow!("the submission queue is full"))?;
                next += 1;
            }
            if free.len() == qd {
                break;
            }
            ring.submit_and_wait(1).context("io_uring_enter")?;
            let now = Instant::now();
            for cqe in ring.completion() {
                let slot = cqe.user_data() as usize;
                if cqe.result() != BLOCK as i32 {
                    bail!(
                        "io_uring request failed or was short: {}",
                        if cqe.result() < 0 {
                            std::io::Error::from_raw_os_error(-cqe.result()).to_string()
                        } else {
                            format!("{} bytes", cqe.result())
                        }
                    );
                }
                p.latencies.push((now - issued_at[slot]).as_nanos() as u64);
                p.requests += 1;
                p.bytes += BLOCK;
                free.push(slot);
            }
        }
        p.ns = start.elapsed().as_nanos() as u64;
        Ok(p)
    }
}

/// One test over all rounds.
struct BlkRow {
    test: &'static BlkTest,
    guest: Vec<Run>,
    host: Vec<Run>,
    failure: Option<String>,
}

impl BlkRow {
    fn rates(runs: &[Run], unit: Unit) -> Vec<f64> {
        runs.iter().map(|r| r.rate(unit)).collect()
    }

    fn guest_rate(&self) -> f64 {
        median(&Self::rates(&self.guest, self.test.unit))
    }

    fn host_rate(&self) -> f64 {
        median(&Self::rates(&self.host, self.test.unit))
    }

    fn ratio(&self) -> f64 {
        self.guest_rate() / self.host_rate()
    }

    fn per_request(&self, counter: &str) -> Option<f64> {
        let v: Vec<f64> = self
            .guest
            .iter()
            .filter_map(|r| r.per_request(counter))
            .collect();
        (!v.is_empty()).then(|| median(&v))
    }

    fn lat(runs: &[Run], k: usize) -> f64 {
        median(&runs.iter().map(|r| r.lat_ns(k)).collect::<Vec<_>>())
    }
}

pub struct BlkReport {
    host: HostInfo,
    info: BTreeMap<String, String>,
    image: PathBuf,
    size: u64,
    seconds: f64,
    rounds: u32,
    seed: u64,
    spin: u64,
    rows: Vec<BlkRow>,
}

fn fmt_x(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() && x >= 0.995 => format!("{x:.2}"),
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "-".into(),
    }
}

/// The table's columns: test, guest and host rates, their ratio and goal, exits per request
/// (VMM, KVM), latencies (guest, host: median, p99).
const COLUMNS: [Column; 11] = [
    (26, Align::Left),
    (12, Align::Right),
    (12, Align::Right),
    (7, Align::Right),
    (6, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
    (9, Align::Right),
    (9, Align::Right),
    (9, Align::Right),
    (9, Align::Right),
];

/// `blk.json`.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    host: JsonHost<'a>,
    method: JsonMethod,
    rows: Vec<JsonRow<'a>>,
}

#[derive(Serialize)]
struct JsonHost<'a> {
    kernel: &'a str,
    cpu: &'a str,
    cpus: usize,
    guest_info: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct JsonMethod {
    image: String,
    image_bytes: u64,
    page_cache: &'static str,
    io: &'static str,
    guest: &'static str,
    host: &'static str,
    pattern: &'static str,
    seed: u64,
    seconds_per_test: f64,
    rounds: u32,
    guest_spin_us: u64,
    rate: &'static str,
    exits_per_request: &'static str,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    id: &'static str,
    label: &'static str,
    unit: &'static str,
    status: &'static str,
    failure: Option<&'a str>,
    guest_rate: Option<f64>,
    host_rate: Option<f64>,
    ratio: Option<f64>,
    goal: Option<f64>,
    vmm_exits_per_request: Option<f64>,
    kvm_exits_per_request: Option<f64>,
    blocks_per_request: Option<f64>,
    guest_lat_median_ns: Option<f64>,
    guest_lat_p99_ns: Option<f64>,
    host_lat_median_ns: Option<f64>,
    host_lat_p99_ns: Option<f64>,
    guest_rounds: Vec<JsonRun<'a>>,
    host_rounds: Vec<JsonRun<'a>>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    requests: u64,
    bytes: u64,
    seconds: f64,
    rate: f64,
    warmup_requests: u64,
    lat_median_ns: f64,
    lat_p99_ns: f64,
    lat_min_ns: f64,
    notifies: u64,
    waits: u64,
    stats_less_baseline: Option<&'a BTreeMap<String, i64>>,
    guest_split_cycles: Option<JsonSplit>,
    cpu_threads: Option<&'a BTreeMap<String, f64>>,
    cpu_system: Option<f64>,
}

#[derive(Serialize)]
struct JsonSplit {
    submit: u64,
    blocked: u64,
    complete: u64,
    tsc_khz: u64,
}

impl<'a> JsonRun<'a> {
    fn of(r: &'a Run, unit: Unit) -> JsonRun<'a> {
        JsonRun {
            requests: r.line.requests,
            bytes: r.line.bytes,
            seconds: r.seconds(),
            rate: r.rate(unit),
            warmup_requests: r.line.warmup_requests,
            lat_median_ns: r.lat_ns(0),
            lat_p99_ns: r.lat_ns(1),
            lat_min_ns: r.lat_ns(2),
            notifies: r.line.notifies,
            waits: r.line.waits,
            stats_less_baseline: r.stats.as_ref(),
            guest_split_cycles: r.line.split.map(|[submit, blocked, complete]| JsonSplit {
                submit,
                blocked,
                complete,
                tsc_khz: r.line.tsc_khz,
            }),
            cpu_threads: r.cpu.as_ref().map(|c| &c.threads),
            cpu_system: r.cpu.as_ref().map(|c| c.system),
        }
    }
}

impl suite::Report for BlkReport {
    const JSON: &'static str = "blk.json";
    const SVG: &'static str = "blk.svg";

    fn table(&self) -> String {
        let h = &self.host;
        let mut t = Table::new(&COLUMNS);
        t.line(
            "Parapet bench blk: the PV block device (blk-bench guest, `parapet run --disk`) vs the \
             host on the same image, same requests",
        );
        t.line(format_args!(
            "host: Linux {}, {}, {} CPUs; image {} ({} MiB), buffered I/O, fdatasync'd and read \
             through before every run (warm, clean page cache)",
            h.kernel,
            h.cpu,
            h.cpus,
            self.image.display(),
            self.size >> 20
        ));
        t.line(format_args!(
            "guest: SDK submit/wait, 32 requests in flight (QD32) or 4 indirect 1 MiB requests \
             (sequential), {}; host: pread/pwrite (QD1, sequential 1 MiB), io_uring (QD32)",
            if self.spin > 0 {
                format!("polls {} us before blocking", self.spin)
            } else {
                "the SDK's polling (50 us, or twice the usual gap between completions up to 1 ms) \
                 before blocking"
                    .into()
            }
        ));
        t.line(format_args!(
            "{} rounds, guest and host alternating, {} s per test and side; medians of the \
             rounds; exits per request = (run - baseline run) / requests incl. warm-up",
            self.rounds, self.seconds
        ));
        t.line("");
        t.row([
            "test",
            "guest",
            "host",
            "g/h",
            "goal",
            "VMM x",
            "KVM x",
            "g lat p50",
            "g lat p99",
            "h lat p50",
            "h lat p99",
        ]);
        for r in &self.rows {
            if r.guest.is_empty() || r.host.is_empty() {
                t.row_then(
                    [r.test.label],
                    format_args!(
                        "failed: {}",
                        r.failure.as_deref().unwrap_or("no measurement")
                    ),
                );
                continue;
            }
            t.row([
                r.test.label.to_owned(),
                fmt_rate(r.guest_rate(), r.test.unit),
                fmt_rate(r.host_rate(), r.test.unit),
                format!("{:.3}", r.ratio()),
                r.test.goal.map_or("-".into(), |g| format!(">={g}")),
                fmt_x(r.per_request("exit.total")),
                fmt_x(r.per_request("kvm.exits")),
                fmt_ns(BlkRow::lat(&r.guest, 0)),
                fmt_ns(BlkRow::lat(&r.guest, 1)),
                fmt_ns(BlkRow::lat(&r.host, 0)),
                fmt_ns(BlkRow::lat(&r.host, 1)),
            ]);
            if let Some(f) = &r.failure {
                t.row_then([""], format_args!("(a later round failed: {f})"));
            }
        }
        t.line("");
        t.line(
            "guest, per request (medians): blocks (sched_op) / doorbells / halt wake-ups; the \
             guest's time: submitting / blocked / taking completions; CPU during the run \
             (1.0 = one core): the VMM's threads, whole host",
        );
        for r in self.rows.iter().filter(|r| !r.guest.is_empty()) {
            let med = |f: &dyn Fn(&Run) -> Option<f64>| {
                let v: Vec<f64> = r.guest.iter().filter_map(f).collect();
                (!v.is_empty()).then(|| median(&v))
            };
            let split = |k: usize| {
                med(&|x: &Run| {
                    let s = x.line.split?;
                    Some(s[k] as f64 * 1e6 / x.line.tsc_khz as f64 / x.line.requests as f64)
                })
                .map_or("-".into(), fmt_ns)
            };
            let mut names: Vec<&String> = r
                .guest
                .iter()
                .filter_map(|x| x.cpu.as_ref())
                .flat_map(|c| c.threads.keys())
                .collect();
            names.sort();
            names.dedup();
            let cpu: Vec<String> = names
                .iter()
                .filter_map(|n| {
                    let v = med(&|x: &Run| x.cpu.as_ref()?.threads.get(*n).copied())?;
                    (v >= 0.01).then(|| format!("{n} {v:.2}"))
                })
                .collect();
            t.line(format_args!(
                "  {:<15} {}/{}/{}; {} / {} / {}; CPU {}, host {}",
                r.test.id,
                fmt_x(r.per_request("hypercall.sched_op")),
                fmt_x(med(&|x: &Run| Some(
                    x.line.notifies as f64 / (x.line.requests + x.line.warmup_requests) as f64
                ))),
                fmt_x(r.per_request("kvm.halt_wakeup")),
                split(0),
                split(1),
                split(2),
                if cpu.is_empty() {
                    "-".into()
                } else {
                    cpu.join(", ")
                },
                fmt_x(med(&|x: &Run| Some(x.cpu.as_ref()?.system))),
            ));
        }
        let mut goals = Vec::new();
        for r in &self.rows {
            if let (Some(g), false) = (r.test.goal, r.guest.is_empty() || r.host.is_empty()) {
                goals.push(format!(
                    "{} {:.2}x (goal >= {g}: {})",
                    r.test.id,
                    r.ratio(),
                    if r.ratio() >= g { "met" } else { "NOT met" }
                ));
            }
        }
        let worst = self
            .rows
            .iter()
            .filter_map(|r| r.per_request("exit.total"))
            .fold(f64::NAN, f64::max);
        if worst.is_finite() {
            goals.push(format!(
                "VMM exits per request at most {} (goal <= {EXIT_GOAL}: {})",
                fmt_x(Some(worst)),
                if worst <= EXIT_GOAL { "met" } else { "NOT met" }
            ));
        }
        t.line(format_args!("goals: {}", goals.join("; ")));
        t.into_string()
    }

    fn json(&self) -> impl Serialize + '_ {
        let h = &self.host;
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let unit = r.test.unit;
                let measured = !r.guest.is_empty() && !r.host.is_empty();
                let lat = |runs: &[Run], k| (!runs.is_empty()).then(|| BlkRow::lat(runs, k));
                JsonRow {
                    id: r.test.id,
                    label: r.test.label,
                    unit: match unit {
                        Unit::Iops => "requests/s",
                        Unit::Throughput => "bytes/s",
                    },
                    status: if measured { "measured" } else { "failed" },
                    failure: r.failure.as_deref(),
                    guest_rate: measured.then(|| r.guest_rate()),
                    host_rate: measured.then(|| r.host_rate()),
                    ratio: measured.then(|| r.ratio()),
                    goal: r.test.goal,
                    vmm_exits_per_request: r.per_request("exit.total"),
                    kvm_exits_per_request: r.per_request("kvm.exits"),
                    blocks_per_request: r.per_request("hypercall.sched_op"),
                    guest_lat_median_ns: lat(&r.guest, 0),
                    guest_lat_p99_ns: lat(&r.guest, 1),
                    host_lat_median_ns: lat(&r.host, 0),
                    host_lat_p99_ns: lat(&r.host, 1),
                    guest_rounds: r.guest.iter().map(|x| JsonRun::of(x, unit)).collect(),
                    host_rounds: r.host.iter().map(|x| JsonRun::of(x, unit)).collect(),
                }
            })
            .collect();
        Json {
            schema: "parapet-bench-blk/1",
            host: JsonHost {
                kernel: &h.kernel,
                cpu: &h.cpu,
                cpus: h.cpus,
                guest_info: &self.info,
            },
            method: JsonMethod {
                image: self.image.display().to_string(),
                image_bytes: self.size,
                page_cache: "warm and clean before every run: fdatasync, then read through",
                io: "buffered on both sides (the VMM's backend preads/pwrites the image)",
                guest: "bench/guests/blk-bench: SDK BlockDevice submit/wait, 32 requests in flight for QD32, 4 indirect 1 MiB requests in flight for sequential, one process per test",
                host: "xtask bench blk-host (release): pread/pwrite for QD1 and 1 MiB sequential, io_uring with 32 in flight for QD32, one process per test",
                pattern: "random: 4 KiB block splitmix64(seed, i) % blocks; sequential: 1 MiB steps from offset 0",
                seed: self.seed,
                seconds_per_test: self.seconds,
                rounds: self.rounds,
                guest_spin_us: self.spin,
                rate: "median over rounds",
                exits_per_request: "(counter of the run - counter of a run that only connects the disk) / requests incl. warm-up",
            },
            rows,
        }
    }

    fn chart(&self, path: &Path) -> Result<()> {
        let bars: Vec<Bar> = self
            .rows
            .iter()
            .filter(|r| !r.guest.is_empty() && !r.host.is_empty())
            .map(|r| Bar {
                label: format!(
                    "{} ({} vs {})",
                    r.test.label,
                    fmt_rate(r.guest_rate(), r.test.unit),
                    fmt_rate(r.host_rate(), r.test.unit)
                ),
                ratio: r.ratio(),
                goal: r.test.goal,
            })
            .collect();
        chart::ratios(
            path,
            &format!(
                "PV block: guest through Parapet / host on the same file ({} rounds, medians)",
                self.rounds
            ),
            &bars,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("4K").is_err() && parse_size("1T").is_err() && parse_size("x").is_err());
    }

    #[test]
    fn parses_result_lines() {
        let out = parse_lines(
            "blk-bench-info sectors=2048 tsc_khz=1000 read_only=0 spin_us=0\nnoise\n\
             blk-bench randread_qd1 requests=10 bytes=40960 cycles=5000 tsc_khz=1000 qd=1 \
             warmup_requests=4 lat_median=400 lat_p99=900 lat_min=300 notifies=14 waits=2\n\
             blk-bench seqwrite skipped: read-only disk\n",
        )
        .unwrap();
        assert_eq!(out.info["sectors"], "2048");
        let l = &out.results[0];
        assert_eq!(
            (l.requests, l.cycles, l.lat, l.waits),
            (10, 5000, [400, 900, 300], 2)
        );
        assert_eq!(
            out.problems,
            [("seqwrite".into(), "skipped: read-only disk".into())]
        );
        let run = Run {
            line: l.clone(),
            stats: Some([("exit.total".to_string(), 7)].into()),
            cpu: None,
        };
        assert!((run.rate(Unit::Iops) - 2000.0).abs() < 1e-9);
        assert!((run.per_request("exit.total").unwrap() - 0.5).abs() < 1e-9);
        for bad in [
            "blk-bench x requests=1 bytes=1 cycles=1 tsc_khz=1 qd=1 warmup_requests=0 lat_median=2 lat_p99=1 lat_min=1 notifies=0 waits=0",
            "blk-bench x requests=1 bytes=1 cycles=1 tsc_khz=1 qd=1",
            "blk-bench x requests=a",
        ] {
            assert!(parse_lines(bad).is_err(), "{bad}");
        }
    }
}
