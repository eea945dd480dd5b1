//! `cargo xtask bench containers`: Parapet guests as containers under containerd (issue 15), in
//! one run, side by side (docs/benchmarks.md, "Containers"). Needs root: it starts a containerd
//! of its own and makes network namespaces.
//!
//! Everything is built with the release profile: `parapet` and `parapet-runc` as static
//! binaries (`x86_64-unknown-linux-musl`, as docs/containers.md says to install them) into one
//! directory (`parapet-runc` runs the `parapet` beside it), and the `hello` and `net-http`
//! guests. Two OCI images are made with `cargo xtask oci-image`'s code
//! ([`crate::oci_image::write_image`]), as the user would make them, and imported into a private
//! containerd: its root, state, sockets and configuration under `target/bench/containers/` (its
//! CRI plugin disabled), started for the run and always stopped with its shims, anything
//! mounted under its directory unmounted, the directory removed (also at the next start, if a
//! run was killed).
//!
//! - **Rows**, `--runs` (default 30) each per round, rotating which goes first; every time is
//!   wall-clock, from just before the spawn:
//!   - `parapet run HELLO`: to the first line on its standard output (the guest's first console
//!     line) and to its exit.
//!   - `ctr run --rm --runc-binary parapet-runc IMAGE ID` (a new ID each time; the runtime's
//!     state and ctr's FIFOs under the containerd's directory): the same two times, through
//!     ctr, containerd and its runc shim (`containerd-shim-runc-v2`). The difference of the
//!     medians is what ctr, containerd, the shim and parapet-runc add to `parapet run`.
//!   - parapet-runc alone: a bundle made once the way the shim makes it: the `config.json` a
//!     real `ctr run` of the image produced, and a copy of that container's rootfs. Then, as
//!     the shim calls it (`--root`, `--log … --log-format json`): `parapet-runc create --bundle B
//!     --pid-file P ID` with a pipe as standard output, and `parapet-runc start ID`, each timed
//!     as a process (spawn to exit, as the shim pays them); then the guest's first line on the
//!     pipe and the VMM's exit (the bench is a child subreaper while it runs, as the shim is,
//!     and reaps the VMM), both from the start of `create`; then `parapet-runc delete ID`, and
//!     `parapet-runc --version` for scale (a process of the runtime that does nothing). Each
//!     run also times the kernel's part of joining a cgroup alone: a new `sleep` process
//!     written into a new cgroup of every mounted hierarchy (on cgroup v1 the first move waits
//!     for an RCU grace period; runc pays it too).
//!   - the same with the bundle's `linux.cgroupsPath` removed: parapet-runc's own work, with no
//!     cgroup to move the container's process into. Its create + start is parapet-runc's own
//!     share of what `ctr run` adds, and the goal (≤ 5 ms) is judged on it.
//!   - the same in a network namespace (with ctr's cgroup): the bundle's `linux.namespaces` has `{"type":
//!     "network", "path": "/var/run/netns/NAME"}`, a namespace holding a veth (`eth0`, an address
//!     in a /30 and a default route) whose peer is in the bench's hub namespace, so parapet-runc's
//!     TAP and tc plumbing (and `ip=… gw=…` on the guest's command line) are in the timing. After
//!     each `delete`, no TAP device and no `mirred` filter on `eth0` may be left in the
//!     namespace.
//! - **Density**, once per round: `--containers` (default 20) `ctr run -d --with-ns
//!   network:/var/run/netns/NAME_i` of the net-http image, started at once from as many
//!   threads, each in its own namespace (as above, container `i` at
//!   10.213.(i/64).(4(i%64)+2)/30, its peer at +1 in the hub namespace `ppbench-<pid>-hub`;
//!   nothing in the host's own namespace). A thread in the hub namespace per container sends
//!   `GET /` every 20 ms (100 ms to connect) until a `200` with the page comes back (or
//!   `--deadline`, default 60 s): the time from the first start to each container's first
//!   answer, and to all answering. Then `ctr task kill`, `ctr task delete` (retried until the
//!   task has stopped) and `ctr container rm` of every container, in parallel, and the checks:
//!   every container answered; no `parapet` VMM or parapet-runc process of this containerd
//!   left, no shim, no TAP device and no `mirred` filter on `eth0` in any of the namespaces,
//!   nothing mounted under the containerd's directory, no container or task left in containerd
//!   (each waited for up to 10 s). A failed check or container fails the bench (non-zero exit
//!   status), after the table is printed.
//! - **Rounds** (`--rounds`, default 3): each runs the rows, then the density test. Samples are
//!   pooled over the rounds (p50, p99, max); the goal is judged on create + start's p50 (its p99
//!   shown too).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::chart::{self, LogBar, Series};
use super::netns::{self, Netns};
use super::process::{Captured, capture, wait_limited};
use super::report::{HostInfo, fmt_ns, median};
use super::snapshot::{met, percentile};
use super::suite::{self, Cells};
use super::table::{Align, Column, Table};
use crate::Workspace;
use crate::oci_image::{ImageSpec, write_image};

/// The goal for parapet-runc's create + start (ns).
const GOAL_NS: f64 = 5e6;
/// The containerd namespace the bench uses.
const NAMESPACE: &str = "parapet-bench";
const HELLO_IMAGE: &str = "localhost/parapet-bench/hello:latest";
const HTTP_IMAGE: &str = "localhost/parapet-bench/net-http:latest";
/// How the hello guest's first line starts.
const HELLO_LINE: &str = "Hello from Parapet!";
/// What net-http's page holds.
const HTTP_PAGE: &str = "Hello from Parapet";
/// Any one run (a process and what it starts) is killed after this long.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long the leak checks wait for things to go away.
const SETTLE: Duration = Duration::from_secs(10);
/// Between two HTTP attempts at one container.
const POLL: Duration = Duration::from_millis(20);
/// How long an HTTP attempt waits for the connection: short, since a SYN sent before the guest
/// listens is lost and TCP would resend it only after a second.
const CONNECT_LIMIT: Duration = Duration::from_millis(100);
/// How long a connected HTTP attempt waits for the answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// The network index of the runc-netns row's namespace (above every density container's).
const RUNC_NET_INDEX: usize = 1000;
/// The network namespace path form the specs use (`ip netns` keeps them in /run/netns).
const NETNS_DIR: &str = "/var/run/netns";

#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Runs per row per round (parapet run, ctr run, parapet-runc alone, in a network
    /// namespace).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Rounds: each runs every row `--runs` times, rotating, then the density test.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Containers started at once in the density test.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    containers: u32,
    /// Seconds the density test waits for every container to answer.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    deadline: u64,
    /// Only the rows whose id contains PATTERN (repeatable); the ids: parapet-run, ctr-run,
    /// runc, runc-netns, density.
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// Where containers.json and containers.svg go (default: target/bench); containerd, the
    /// images and the bundles live in its `containers/` while the bench runs.
    #[arg(long, value_name = "DIR")]
    pub(super) out: Option<PathBuf>,
    /// A directory holding `parapet` and `parapet-runc` (release builds) to use instead of
    /// building them.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Use this hello guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    hello: Option<PathBuf>,
    /// Use this net-http guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    net_http: Option<PathBuf>,
}

/// A test: a cell of samples over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    ParapetRun,
    CtrRun,
    Runc,
    RuncOwn,
    RuncNetns,
    Density,
}

impl Cell {
    /// The rows measured `--runs` times per round, in rotation.
    const ROWS: [Cell; 5] = [
        Cell::ParapetRun,
        Cell::CtrRun,
        Cell::Runc,
        Cell::RuncOwn,
        Cell::RuncNetns,
    ];

    /// The id `--only` matches.
    fn id(self) -> &'static str {
        match self {
            Cell::ParapetRun => "parapet-run",
            Cell::CtrRun => "ctr-run",
            Cell::Runc => "runc",
            Cell::RuncOwn => "runc-own",
            Cell::RuncNetns => "runc-netns",
            Cell::Density => "density",
        }
    }
}

/// A run timed to the guest's first line and to the exit.
#[derive(Clone, Debug, Serialize)]
struct BootRun {
    first_line_ns: f64,
    exit_ns: f64,
}

/// A run of parapet-runc alone.
#[derive(Clone, Debug, Serialize)]
struct RuncRun {
    /// `create`, spawn to exit.
    create_ns: f64,
    /// `start`, spawn to exit.
    start_ns: f64,
    /// The guest's first line, from the spawn of `create`.
    first_line_ns: f64,
    /// The VMM's exit (reaped), from the spawn of `create`.
    exit_ns: f64,
    /// `delete`, spawn to exit.
    delete_ns: f64,
    /// `parapet-runc --version`, spawn to exit: a process of the runtime that does nothing.
    noop_ns: f64,
    /// A new process moved into a new cgroup of every hierarchy (the bench's, beside the run):
    /// the kernel's part of a `create` whose spec has `linux.cgroupsPath`, runc's too.
    cgroup_move_ns: f64,
}

impl RuncRun {
    fn create_start_ns(&self) -> f64 {
        self.create_ns + self.start_ns
    }
}

/// One container of a density test.
#[derive(Clone, Debug, Serialize)]
struct ContainerRun {
    id: String,
    netns: String,
    address: String,
    /// `ctr run -d`, spawn to exit, from the first start.
    run_ns: Option<f64>,
    /// The first `200` to `GET /`, from the first start.
    first_answer_ns: Option<f64>,
    /// HTTP attempts made.
    attempts: u32,
    /// Why it did not answer.
    error: Option<String>,
    /// What went wrong taking it down.
    teardown_error: Option<String>,
}

/// A pass/fail check of a density test.
#[derive(Clone, Debug, Serialize)]
struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

/// One density test.
#[derive(Clone, Debug, Serialize)]
struct DensityRun {
    containers: Vec<ContainerRun>,
    /// From the first start to the last container's first answer, if all answered.
    all_answering_ns: Option<f64>,
    /// Kill, delete and remove, all containers in parallel.
    teardown_ns: f64,
    checks: Vec<Check>,
}

impl DensityRun {
    fn pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

#[derive(Clone, Debug)]
enum Sample {
    Boot(BootRun),
    Runc(RuncRun),
    Density(DensityRun),
}

/// The programs the bench runs.
struct Bins {
    vmm: PathBuf,
    runc: PathBuf,
    hello: PathBuf,
}

/// A bundle for parapet-runc alone.
struct Bundle {
    dir: PathBuf,
}

/// A container's network: a namespace with `eth0` at `address`/30, its veth peer in the hub.
struct ContainerNet {
    ns: Netns,
    address: Ipv4Addr,
}

/// The `bench containers` suite. Fields drop in order: containerd (and its shims) first, then
/// the namespaces, then the work directory.
pub struct Containers {
    args: ContainersArgs,
    bins: Bins,
    ctrd: Containerd,
    containerd_version: String,
    /// The plain bundle and the one in a network namespace.
    bundles: Vec<(Cell, Bundle)>,
    /// parapet-runc alone's `--root`.
    runc_root: PathBuf,
    /// Per density container.
    nets: Vec<ContainerNet>,
    /// The runc-netns row's namespace.
    runc_net: Option<ContainerNet>,
    hub: Option<Netns>,
    cells: Cells<Cell, Sample>,
    _work: WorkDir,
}

impl Containers {
    /// Builds (or takes) the programs, makes and imports the images, starts containerd, makes
    /// the bundles and the namespaces.
    pub fn new(ws: &Workspace, args: ContainersArgs, out_dir: &Path) -> Result<Containers> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "bench containers needs root: it starts a containerd of its own and makes \
                 network namespaces"
            );
        }
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "ip", "tc"] {
            if !on_path(tool) {
                bail!(
                    "`{tool}` is not on PATH: bench containers needs containerd (Debian's \
                     containerd package: containerd, ctr, containerd-shim-runc-v2) and iproute2"
                );
            }
        }
        let wanted = |c: Cell| wanted(&args.only, c);
        let (vmm, runc) = match &args.bin_dir {
            Some(dir) => (dir.join("parapet"), dir.join("parapet-runc")),
            // As docs/containers.md says to install them: static (musl) release binaries, which
            // start in less than half the time of dynamically linked ones (each runtime command
            // is a process the shim spawns).
            None => {
                let vmm = ws.build_static(
                    &["-p", "parapet", "-p", "parapet-runc", "--bins"],
                    "parapet",
                )?;
                let runc = vmm.with_file_name("parapet-runc");
                (vmm, runc)
            }
        };
        if vmm.parent() != runc.parent() || !vmm.is_file() || !runc.is_file() {
            bail!(
                "parapet-runc runs the `parapet` beside it: {} and {} must both be files of one \
                 directory",
                vmm.display(),
                runc.display()
            );
        }
        let hello = suite::prebuilt_or(args.hello.as_deref(), || ws.build_guest("hello", true))?;
        let net_http = suite::prebuilt_or(args.net_http.as_deref(), || {
            ws.build_guest("net-http", true)
        })?;
        let bins = Bins { vmm, runc, hello };

        netns::remove_stale();
        let dir = out_dir.join("containers");
        let work = WorkDir::create(dir.clone())?;
        let images = dir.join("images");
        let mut tarballs = Vec::new();
        for (kernel, reference, file) in [
            (&bins.hello, HELLO_IMAGE, "hello.tar"),
            (&net_http, HTTP_IMAGE, "net-http.tar"),
        ] {
            let spec = ImageSpec {
                kernel: kernel.clone(),
                disks: Vec::new(),
                cmdline: String::new(),
                memory: None,
                reference: reference.to_owned(),
            };
            let path = images.join(file);
            write_image(&spec, &path).with_context(|| format!("making the image {reference}"))?;
            tarballs.push(path);
        }
        eprintln!(
            "xtask bench containers: starting a containerd in {}",
            dir.display()
        );
        let ctrd = Containerd::start(dir.join("containerd"), bins.runc.clone())?;
        for t in &tarballs {
            ctrd.ok(&["images", "import", &t.display().to_string()])
                .with_context(|| format!("importing {}", t.display()))?;
        }
        let containerd_version = Command::new("containerd")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();

        let net_wanted = wanted(Cell::RuncNetns) || wanted(Cell::Density);
        let hub = net_wanted.then(|| Netns::new("hub")).transpose()?;
        let runc_net = match &hub {
            Some(hub) if wanted(Cell::RuncNetns) => Some(container_net(hub, "rn", RUNC_NET_INDEX)?),
            _ => None,
        };
        let mut nets = Vec::new();
        if let Some(hub) = hub.as_ref().filter(|_| wanted(Cell::Density)) {
            eprintln!(
                "xtask bench containers: making {} network namespaces",
                args.containers
            );
            for i in 0..args.containers as usize {
                nets.push(container_net(hub, &format!("c{i}"), i)?);
            }
        }
        let mut bundles = Vec::new();
        if wanted(Cell::Runc) || wanted(Cell::RuncOwn) || wanted(Cell::RuncNetns) {
            let netns = runc_net.as_ref().map(|n| n.ns.name().to_owned());
            bundles = make_bundles(&ctrd, &dir, netns.as_deref())?
                .into_iter()
                .filter(|(c, _)| wanted(*c))
                .collect();
        }
        Ok(Containers {
            runc_root: dir.join("runc-alone"),
            args,
            bins,
            ctrd,
            containerd_version,
            bundles,
            nets,
            runc_net,
            hub,
            cells: Cells::default(),
            _work: work,
        })
    }

    fn rows(&self) -> Vec<Cell> {
        Cell::ROWS
            .into_iter()
            .filter(|&c| wanted(&self.args.only, c))
            .filter(|&c| {
                !matches!(c, Cell::Runc | Cell::RuncOwn | Cell::RuncNetns)
                    || self.bundle(c).is_some()
            })
            .collect()
    }

    fn bundle(&self, cell: Cell) -> Option<&Bundle> {
        self.bundles
            .iter()
            .find_map(|(c, b)| (*c == cell).then_some(b))
    }

    fn measure(&self, cell: Cell, id: &str) -> Result<Sample> {
        match cell {
            Cell::ParapetRun => {
                let mut cmd = Command::new(&self.bins.vmm);
                cmd.arg("run").arg(&self.bins.hello);
                boot_run(&mut cmd).map(Sample::Boot)
            }
            Cell::CtrRun => {
                let mut args = vec!["run".to_owned(), "--rm".to_owned()];
                args.extend(self.ctrd.run_options());
                args.extend([HELLO_IMAGE.to_owned(), id.to_owned()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let r = boot_run(&mut self.ctrd.command(&args));
                if r.is_err() {
                    self.ctrd.force_remove(id);
                }
                r.map(Sample::Boot)
            }
            Cell::Runc | Cell::RuncOwn | Cell::RuncNetns => {
                let bundle = self.bundle(cell).context("no bundle")?;
                let r = runc_run(
                    &self.bins.runc,
                    &self.runc_root,
                    bundle,
                    id,
                    self.ctrd.daemon.id() as i32,
                )?;
                if let Some(net) = self.runc_net.as_ref().filter(|_| cell == Cell::RuncNetns) {
                    let left: Vec<String> = taps(&net.ns)
                        .into_iter()
                        .chain(redirects(&net.ns))
                        .collect();
                    if !left.is_empty() {
                        bail!(
                            "left in {} after delete: {}",
                            net.ns.name(),
                            left.join(", ")
                        );
                    }
                }
                Ok(Sample::Runc(r))
            }
            Cell::Density => unreachable!("the density test is not a row"),
        }
    }
}

/// Whether `--only` selects `cell`.
fn wanted(only: &[String], cell: Cell) -> bool {
    only.is_empty() || only.iter().any(|p| cell.id().contains(p.as_str()))
}

impl suite::Suite for Containers {
    const NAME: &'static str = "bench containers";
    type Report = ContainersReport;

    fn rounds(&self) -> u32 {
        self.args.rounds
    }

    /// The rows, `--runs` times each, rotating which goes first; then the density test.
    fn round(&mut self, round: u32) -> Result<()> {
        let rows = self.rows();
        if !rows.is_empty() {
            eprintln!(
                "xtask bench containers: {} runs each of {}, rotating",
                self.args.runs,
                rows.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ")
            );
        }
        for i in 0..self.args.runs as usize {
            for k in 0..rows.len() {
                let cell = rows[(i + k) % rows.len()];
                if self.cells.is_over(cell) {
                    continue;
                }
                let id = format!("{}-{round}-{i}", cell.id());
                let r = self.measure(cell, &id).map_err(|e| format!("{e:#}"));
                self.cells.record(cell, r);
            }
        }
        if wanted(&self.args.only, Cell::Density) && !self.cells.is_over(Cell::Density) {
            eprintln!(
                "xtask bench containers: {} net-http containers at once",
                self.args.containers
            );
            let hub = self.hub.as_ref().context("no hub namespace")?;
            let r = density(
                &self.ctrd,
                hub,
                &self.nets,
                round,
                Duration::from_secs(self.args.deadline),
            );
            self.cells.record(
                Cell::Density,
                r.map(Sample::Density).map_err(|e| format!("{e:#}")),
            );
        }
        Ok(())
    }

    fn report(mut self) -> Result<ContainersReport> {
        let only = self.args.only.clone();
        let mut take = |cell: Cell| {
            let (samples, failure) = self.cells.take(cell);
            (samples, failure, wanted(&only, cell))
        };
        let boot = |(samples, failure, selected): (Vec<Sample>, Option<String>, bool)| BootRow {
            runs: samples
                .into_iter()
                .filter_map(|s| match s {
                    Sample::Boot(b) => Some(b),
                    _ => None,
                })
                .collect(),
            failure,
            selected,
        };
        let runc = |(samples, failure, selected): (Vec<Sample>, Option<String>, bool)| RuncRow {
            runs: samples
                .into_iter()
                .filter_map(|s| match s {
                    Sample::Runc(r) => Some(r),
                    _ => None,
                })
                .collect(),
            failure,
            selected,
        };
        let parapet_run = boot(take(Cell::ParapetRun));
        let ctr_run = boot(take(Cell::CtrRun));
        let runc_plain = runc(take(Cell::Runc));
        let runc_own = runc(take(Cell::RuncOwn));
        let runc_netns = runc(take(Cell::RuncNetns));
        let (samples, density_failure, density_selected) = take(Cell::Density);
        let density = samples
            .into_iter()
            .filter_map(|s| match s {
                Sample::Density(d) => Some(d),
                _ => None,
            })
            .collect();
        reap_orphans(self.ctrd.daemon.id() as i32, Duration::from_secs(5));
        Ok(ContainersReport {
            host: HostInfo::read_proc(),
            containerd: self.containerd_version.clone(),
            runs: self.args.runs,
            rounds: self.args.rounds,
            containers: self.args.containers,
            parapet_run,
            ctr_run,
            runc: runc_plain,
            runc_own,
            runc_netns,
            density,
            density_failure,
            density_selected,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/// Reads lines from `r` until its end: the time from `start` to the first whole line, and all
/// the text.
fn line_reader(
    r: impl Read + Send + 'static,
    start: Instant,
) -> std::thread::JoinHandle<(Option<f64>, String)> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut first = None;
        let mut all = Vec::new();
        loop {
            match r.read_until(b'\n', &mut all) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if first.is_none() && all.ends_with(b"\n") {
                        first = Some(start.elapsed().as_nanos() as f64);
                    }
                }
            }
        }
        (first, String::from_utf8_lossy(&all).into_owned())
    })
}

/// Runs `cmd` (a `parapet run` or a `ctr run` of hello): from the spawn to its first line on
/// standard output, and to its exit, which must be 0 after the hello line.
fn boot_run(cmd: &mut Command) -> Result<BootRun> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let out = line_reader(child.stdout.take().expect("piped"), start);
    let err = line_reader(child.stderr.take().expect("piped"), start);
    let (status, killed) = wait_limited(child, RUN_LIMIT)?;
    let exit_ns = start.elapsed().as_nanos() as f64;
    let (first, stdout) = out.join().unwrap_or_default();
    let (_, mut stderr) = err.join().unwrap_or_default();
    if killed {
        stderr.insert_str(0, "killed after the time limit\n");
    }
    let cap = Captured {
        status: status.code(),
        stdout,
        stderr,
    };
    match first {
        Some(first_line_ns) if cap.status == Some(0) && cap.stdout.starts_with(HELLO_LINE) => {
            Ok(BootRun {
                first_line_ns,
                exit_ns,
            })
        }
        _ => bail!(
            "{} (stdout: {:?})",
            cap.failure(),
            cap.stdout.lines().next().unwrap_or("")
        ),
    }
}

/// The bench as a child subreaper, as containerd's shim is, while parapet-runc alone runs: the
/// container's process (`create`'s child) becomes the bench's when `create` exits, and the
/// bench reaps it. Off again when dropped, and what it adopted and has ended is reaped.
struct Subreaper {
    /// A child of the bench that must not be reaped here (containerd).
    keep: i32,
}

impl Subreaper {
    fn on(keep: i32) -> Result<Subreaper> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            bail!(
                "prctl(PR_SET_CHILD_SUBREAPER): {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Subreaper { keep })
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
        reap_ended(self.keep);
    }
}

/// Reaps every ended child but `keep` (the processes a subreaper adopted: a VMM's teardown
/// child outlives it briefly). Called only when no child the bench waits for itself has ended.
fn reap_ended(keep: i32) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid output buffer for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid output buffer; WNOWAIT only looks.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid is 0 when no child has ended).
        let pid = unsafe { info.si_pid() };
        if r != 0 || pid == 0 || pid == keep {
            return;
        }
        // SAFETY: reaps the ended child just seen.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

/// Waits (up to `limit`) for the adopted children other than `keep` to end, reaping them.
fn reap_orphans(keep: i32, limit: Duration) {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + limit;
    loop {
        reap_ended(keep);
        let left = processes()
            .into_iter()
            .any(|p| p.ppid == me && p.pid != keep);
        if !left || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the adopted process `pid` to exit (killing it after `limit`) and reaps it;
/// returns its exit code (128 + N for signal N).
fn wait_adopted(pid: i32, limit: Duration) -> Result<i32> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on a child of this process with a valid status buffer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                let _ = tx.send(Ok(status));
                return;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    let status = match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: kill(2) of a child this process has not reaped (the waiter has not
            // returned), so the id is still its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            rx.recv().context("the waiting thread died")?
        }
    }
    .with_context(|| format!("waiting for the container's process {pid}"))?;
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// Runs `cmd` to its exit with stdin and stdout on /dev/null and stderr piped (read after the
/// exit: a few lines at most); returns the time from the spawn to the exit.
fn run_quick(cmd: &mut Command) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let err = child.stderr.take();
    let (status, _) = wait_limited(child, RUN_LIMIT)?;
    let ns = start.elapsed().as_nanos() as f64;
    if !status.success() {
        let mut text = String::new();
        if let Some(mut e) = err {
            let _ = e.read_to_string(&mut text);
        }
        let cap = Captured {
            status: status.code(),
            stderr: text,
            ..Captured::default()
        };
        bail!(
            "{:?}: {}",
            cmd.get_args().collect::<Vec<_>>(),
            cap.failure()
        );
    }
    Ok(ns)
}

/// One run of parapet-runc alone: create, start, the guest's first line and exit, delete.
fn runc_run(runc: &Path, root: &Path, bundle: &Bundle, id: &str, keep: i32) -> Result<RuncRun> {
    let b = &bundle.dir;
    let log = b.join("log.json");
    let pid_file = b.join("init.pid");
    let _ = std::fs::remove_file(&pid_file);
    let runc_cmd = |args: &[&str]| {
        let mut c = Command::new(runc);
        c.arg("--root")
            .arg(root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args)
            .current_dir(b);
        c
    };
    let _subreaper = Subreaper::on(keep)?;
    // The container's stdout is a pipe, as the shim gives it; its stderr (the VMM's too) a file.
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let err_path = b.join("stderr");
    let err_file = std::fs::File::create(&err_path)
        .with_context(|| format!("cannot create {}", err_path.display()))?;
    let stderr_text = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let mut create = runc_cmd(&[
        "create",
        "--bundle",
        &b.display().to_string(),
        "--pid-file",
        &pid_file.display().to_string(),
        id,
    ]);
    create.stdin(Stdio::null()).stdout(writer).stderr(err_file);
    let t0 = Instant::now();
    let child = create.spawn().context("cannot start parapet-runc create")?;
    // The command holds the pipe's write end: only the container keeps it now.
    drop(create);
    let lines = line_reader(reader, t0);
    let (status, _) = wait_limited(child, RUN_LIMIT)?;
    let create_ns = t0.elapsed().as_nanos() as f64;
    if !status.success() {
        let cap = Captured {
            status: status.code(),
            stderr: stderr_text(),
            ..Captured::default()
        };
        bail!("parapet-runc create: {}", cap.failure());
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("no PID in {}", pid_file.display()))?;
    let start_ns = match run_quick(&mut runc_cmd(&["start", id])) {
        Ok(ns) => ns,
        Err(e) => {
            let _ = run_quick(&mut runc_cmd(&["delete", "--force", id]));
            return Err(e.context("parapet-runc start"));
        }
    };
    let code = wait_adopted(pid, RUN_LIMIT)?;
    let exit_ns = t0.elapsed().as_nanos() as f64;
    let (first, stdout) = lines.join().unwrap_or_default();
    let delete_ns = run_quick(&mut runc_cmd(&["delete", id])).context("parapet-runc delete")?;
    let noop_ns =
        run_quick(Command::new(runc).arg("--version")).context("parapet-runc --version")?;
    let cgroup_move_ns = cgroup_move(id).context("moving a process into new cgroups")?;
    match first {
        Some(first_line_ns) if code == 0 && stdout.starts_with(HELLO_LINE) => Ok(RuncRun {
            create_ns,
            start_ns,
            first_line_ns,
            exit_ns,
            delete_ns,
            noop_ns,
            cgroup_move_ns,
        }),
        _ => {
            let cap = Captured {
                status: Some(code),
                stderr: stderr_text(),
                ..Captured::default()
            };
            bail!(
                "the container: {} (stdout: {:?})",
                cap.failure(),
                stdout.lines().next().unwrap_or("")
            )
        }
    }
}

/// Moves a new process (`sleep`) into a new cgroup `parapet-bench-move/NAME` of every mounted
/// hierarchy, as a runtime does in `create` (cgroup v1's cpuset gets its parent's CPUs and memory
/// nodes first); returns the time of the moves alone, then ends the process and removes the
/// cgroups.
fn cgroup_move(name: &str) -> Result<f64> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("/proc/self/mounts")?;
    let mut dirs = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 4 || !matches!(f[2], "cgroup" | "cgroup2") {
            continue;
        }
        let top = Path::new(f[1]).join("parapet-bench-move");
        let dir = top.join(name);
        for d in [&top, &dir] {
            match std::fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", d.display())),
            }
            if f[3].split(',').any(|o| o == "cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let parent = d.parent().context("a cgroup has a parent")?;
                    let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                    let mine = std::fs::read_to_string(d.join(file)).unwrap_or_default();
                    if mine.trim().is_empty() {
                        std::fs::write(d.join(file), theirs.trim())
                            .with_context(|| format!("{}", d.join(file).display()))?;
                    }
                }
            }
        }
        dirs.push(dir);
    }
    let mut child = Command::new("sleep")
        .arg("60")
        .spawn()
        .context("cannot start sleep")?;
    let pid = child.id().to_string();
    let t0 = Instant::now();
    let moved = dirs
        .iter()
        .try_for_each(|d| std::fs::write(d.join("cgroup.procs"), &pid));
    let ns = t0.elapsed().as_nanos() as f64;
    let _ = child.kill();
    let _ = child.wait();
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
    moved.context("writing cgroup.procs")?;
    Ok(ns)
}

/// `GET /` of net-http at `addr` (connecting for up to `connect`): a `200` with its page.
fn http_get(addr: Ipv4Addr, connect: Duration) -> Result<(), String> {
    let sa = SocketAddr::V4(SocketAddrV4::new(addr, 80));
    let mut s = TcpStream::connect_timeout(&sa, connect).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(ANSWER_LIMIT));
    let _ = s.set_write_timeout(Some(ANSWER_LIMIT));
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // Read the head and Content-Length bytes, then close: the server waits for the client to
    // close first.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .ok_or("no Content-Length")?;
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]);
                if !head.starts_with("HTTP/1.1 200") || !body.contains(HTTP_PAGE) {
                    return Err(format!(
                        "unexpected answer: {:?}",
                        head.lines().next().unwrap_or("")
                    ));
                }
                return Ok(());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("the connection closed early".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Force-removes the density test's containers when dropped, unless disarmed.
struct Leftovers<'a> {
    ctrd: &'a Containerd,
    ids: Vec<String>,
    armed: bool,
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        if self.armed {
            for id in &self.ids {
                self.ctrd.force_remove(id);
            }
        }
    }
}

/// The density test: every container started at once, polled until it answers, taken down,
/// and the checks.
fn density(
    ctrd: &Containerd,
    hub: &Netns,
    nets: &[ContainerNet],
    round: u32,
    deadline: Duration,
) -> Result<DensityRun> {
    let ids: Vec<String> = (0..nets.len()).map(|i| format!("d{round}-{i}")).collect();
    let mut leftovers = Leftovers {
        ctrd,
        ids: ids.clone(),
        armed: true,
    };
    let t0 = Instant::now();
    let until = t0 + deadline;
    let mut containers: Vec<ContainerRun> = std::thread::scope(|s| {
        let handles: Vec<_> = nets
            .iter()
            .zip(&ids)
            .map(|(net, id)| {
                s.spawn(move || {
                    let mut c = ContainerRun {
                        id: id.clone(),
                        netns: net.ns.name().to_owned(),
                        address: net.address.to_string(),
                        run_ns: None,
                        first_answer_ns: None,
                        attempts: 0,
                        error: None,
                        teardown_error: None,
                    };
                    let with_ns = format!("network:{NETNS_DIR}/{}", net.ns.name());
                    let mut args = vec!["run".to_owned(), "-d".to_owned()];
                    args.extend(ctrd.run_options());
                    args.extend([
                        "--with-ns".to_owned(),
                        with_ns,
                        HTTP_IMAGE.into(),
                        id.clone(),
                    ]);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    match ctrd.ctr(&args) {
                        Ok(out) if out.status == Some(0) => {
                            c.run_ns = Some(t0.elapsed().as_nanos() as f64);
                        }
                        Ok(out) => {
                            c.error = Some(format!("ctr run -d: {}", out.failure()));
                            return c;
                        }
                        Err(e) => {
                            c.error = Some(format!("ctr run -d: {e:#}"));
                            return c;
                        }
                    }
                    if let Err(e) = hub.enter_this_thread() {
                        c.error = Some(format!("{e:#}"));
                        return c;
                    }
                    let mut last = String::new();
                    while Instant::now() < until {
                        c.attempts += 1;
                        let left = until.saturating_duration_since(Instant::now());
                        match http_get(net.address, left.min(CONNECT_LIMIT)) {
                            Ok(()) => {
                                c.first_answer_ns = Some(t0.elapsed().as_nanos() as f64);
                                return c;
                            }
                            Err(e) => last = e,
                        }
                        std::thread::sleep(POLL);
                    }
                    c.error = Some(format!(
                        "no answer within {deadline:?} ({} attempts; the last: {last}; the \
                         task: {})",
                        c.attempts,
                        ctrd.task_status(id)
                    ));
                    c
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a density thread panicked"))
            .collect()
    });
    let all_answering_ns = containers
        .iter()
        .map(|c| c.first_answer_ns)
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.into_iter().fold(0.0, f64::max));

    // Take them all down, in parallel.
    let t1 = Instant::now();
    std::thread::scope(|s| {
        for c in containers.iter_mut() {
            s.spawn(move || {
                c.teardown_error = take_down(ctrd, &c.id).err().map(|e| format!("{e:#}"));
            });
        }
    });
    let teardown_ns = t1.elapsed().as_nanos() as f64;
    leftovers.armed = containers.iter().any(|c| c.teardown_error.is_some());
    drop(leftovers);

    // The checks, once everything had time to go.
    let answered = containers
        .iter()
        .filter(|c| c.first_answer_ns.is_some())
        .count();
    let torn = containers
        .iter()
        .filter(|c| c.teardown_error.is_none())
        .count();
    let n = containers.len();
    let settle_until = Instant::now() + SETTLE;
    let leaks = loop {
        let leaks = Leaks::find(ctrd, nets, &ids);
        if leaks.is_empty() || Instant::now() > settle_until {
            break leaks;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let checks = vec![
        Check {
            name: "containers answering",
            pass: answered == n,
            detail: format!("{answered}/{n}"),
        },
        Check {
            name: "taken down (kill, delete, rm)",
            pass: torn == n,
            detail: format!("{torn}/{n}"),
        },
        Check {
            name: "VMM and runtime processes left",
            pass: leaks.processes.is_empty(),
            detail: list(&leaks.processes),
        },
        Check {
            name: "shims left",
            pass: leaks.shims.is_empty(),
            detail: list(&leaks.shims),
        },
        Check {
            name: "TAP devices left",
            pass: leaks.taps.is_empty(),
            detail: list(&leaks.taps),
        },
        Check {
            name: "tc redirects left on eth0",
            pass: leaks.redirects.is_empty(),
            detail: list(&leaks.redirects),
        },
        Check {
            name: "mounts left",
            pass: leaks.mounts.is_empty(),
            detail: list(&leaks.mounts),
        },
        Check {
            name: "containers and tasks left",
            pass: leaks.containers.is_empty(),
            detail: list(&leaks.containers),
        },
    ];
    containers.sort_by_key(|c| c.id.split('-').nth(1).and_then(|i| i.parse::<u32>().ok()));
    Ok(DensityRun {
        containers,
        all_answering_ns,
        teardown_ns,
        checks,
    })
}

/// `ctr task kill`, `ctr task delete` until the task has stopped, `ctr container rm`. A task
/// that has already exited cannot be signalled: that is not an error here (it is one of the
/// container's, reported as such).
fn take_down(ctrd: &Containerd, id: &str) -> Result<()> {
    let kill = ctrd.ctr(&["task", "kill", id])?;
    if kill.status != Some(0) && !kill.stderr.contains("already finished") {
        bail!("ctr task kill {id}: {}", kill.failure());
    }
    let until = Instant::now() + SETTLE;
    loop {
        let out = ctrd.ctr(&["task", "delete", id])?;
        if out.status == Some(0) {
            break;
        }
        if Instant::now() > until {
            bail!("ctr task delete {id}: {}", out.failure());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ctrd.ok(&["container", "rm", id])?;
    Ok(())
}

/// What a density test left behind.
#[derive(Debug, Default)]
struct Leaks {
    processes: Vec<String>,
    shims: Vec<String>,
    taps: Vec<String>,
    redirects: Vec<String>,
    mounts: Vec<String>,
    containers: Vec<String>,
}

impl Leaks {
    fn find(ctrd: &Containerd, nets: &[ContainerNet], ids: &[String]) -> Leaks {
        let describe = |p: &Proc| format!("{} ({})", p.pid, p.comm);
        let mut containers = Vec::new();
        for what in ["task", "container"] {
            if let Ok(out) = ctrd.ctr(&[what, "ls", "-q"]) {
                containers.extend(
                    out.stdout
                        .lines()
                        .map(str::trim)
                        .filter(|l| ids.iter().any(|id| id == l))
                        .map(|l| format!("{what} {l}")),
                );
            }
        }
        Leaks {
            processes: ctrd.runtime_processes().iter().map(describe).collect(),
            shims: ctrd.shims().iter().map(describe).collect(),
            taps: nets
                .iter()
                .flat_map(|n| {
                    taps(&n.ns)
                        .into_iter()
                        .map(|t| format!("{}/{t}", n.ns.name()))
                })
                .collect(),
            redirects: nets
                .iter()
                .flat_map(|n| {
                    redirects(&n.ns)
                        .into_iter()
                        .map(|t| format!("{}/{t}", n.ns.name()))
                })
                .collect(),
            mounts: ctrd.mounts(),
            containers,
        }
    }

    fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.shims.is_empty()
            && self.taps.is_empty()
            && self.redirects.is_empty()
            && self.mounts.is_empty()
            && self.containers.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up: containerd, bundles, namespaces, the work directory.

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|d| d.join(tool).is_file())
}

/// A process, from /proc.
#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
    /// The command line, arguments joined with spaces.
    cmdline: String,
    zombie: bool,
}

/// Every process in /proc.
fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid = f.next()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            Some(Proc {
                pid,
                ppid,
                comm,
                cmdline,
                zombie: matches!(state, "Z" | "X"),
            })
        })
        .collect()
}

/// The mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| *t == prefix || t.starts_with(&format!("{prefix}/")))
        .map(str::to_owned)
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.len()));
    v
}

/// Kills (SIGKILL) the processes named in `comms` whose command line contains `needle`, but
/// not this one; returns how many.
fn kill_matching(needle: &str, comms: &[&str]) -> usize {
    let me = std::process::id() as i32;
    let victims: Vec<Proc> = processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie)
        .filter(|p| comms.contains(&p.comm.as_str()) && p.cmdline.contains(needle))
        .collect();
    for p in &victims {
        // SAFETY: kill(2) of a process found by its command line naming our own directory.
        unsafe { libc::kill(p.pid, libc::SIGKILL) };
    }
    victims.len()
}

/// The processes a run of this bench starts in its directory (containerd, its shims, the
/// runtime and the VMMs).
const OWN_COMMS: [&str; 5] = [
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "parapet-runc",
    "parapet",
];

/// The bench's directory (`target/bench/containers/`): what a killed run left there is cleaned
/// up before it is made afresh, and it is removed when dropped (unless something is still
/// mounted in it).
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(dir: PathBuf) -> Result<WorkDir> {
        if dir.exists() {
            let needle = dir.display().to_string();
            let n = kill_matching(&needle, &OWN_COMMS);
            if n > 0 {
                eprintln!(
                    "xtask bench containers: killed {n} process{} a previous run left in {needle}",
                    if n == 1 { "" } else { "es" }
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            unmount_all(&dir);
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {} (left by a previous run)", needle))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        unmount_all(&self.0);
        if mounts_under(&self.0).is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!(
                "xtask bench containers: {} still has mounts; not removed",
                self.0.display()
            );
        }
    }
}

fn unmount_all(dir: &Path) {
    for t in mounts_under(dir) {
        let _ = Command::new("umount")
            .args(["--lazy", &t])
            .stderr(Stdio::null())
            .status();
    }
}

/// A containerd of the bench's own, stopped (with its shims and anything they left running or
/// mounted) when dropped.
struct Containerd {
    dir: PathBuf,
    daemon: Child,
    runc: PathBuf,
}

impl Containerd {
    fn start(dir: PathBuf, runc: PathBuf) -> Result<Containerd> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let config = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n\
             [ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n",
            d = dir.display()
        );
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("containerd.log"))
            .context("cannot create containerd.log")?;
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("containerd.log")?)
            .stderr(log)
            .spawn()
            .context("cannot start containerd")?;
        let ctrd = Containerd { dir, daemon, runc };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ctrd.ctr(&["version"]).is_ok_and(|o| o.status == Some(0)) {
                return Ok(ctrd);
            }
            if Instant::now() > deadline {
                bail!("containerd did not come up\n{}", ctrd.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn address(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// `ctr --address … --namespace … ARGS`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.address())
            .args(["--namespace", NAMESPACE])
            .args(args);
        cmd
    }

    /// Runs ctr to completion, its output captured.
    fn ctr(&self, args: &[&str]) -> Result<Captured> {
        capture(&mut self.command(args), None)
    }

    /// Runs ctr, failing with its error unless it exits 0.
    fn ok(&self, args: &[&str]) -> Result<Captured> {
        let out = self.ctr(args)?;
        if out.status != Some(0) {
            bail!("ctr {}: {}", args.join(" "), out.failure());
        }
        Ok(out)
    }

    /// The options that make `ctr run` use parapet-runc, with the runtime's state and ctr's
    /// FIFOs in the containerd's directory.
    fn run_options(&self) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            self.runc.display().to_string(),
            "--runc-root".into(),
            self.dir.join("runc").display().to_string(),
            "--fifo-dir".into(),
            self.dir.join("fifo").display().to_string(),
        ]
    }

    /// The bundle the shim makes for container `id`.
    fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    /// The status `ctr task ls` shows for task `id` (`RUNNING`, `STOPPED`, …).
    fn task_status(&self, id: &str) -> String {
        let out = self
            .ctr(&["task", "ls"])
            .map(|o| o.stdout)
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == id).then(|| f[2].to_owned())
            })
            .next()
            .unwrap_or_else(|| "not listed".into())
    }

    /// Removes container `id` whatever its state (errors ignored).
    fn force_remove(&self, id: &str) {
        let _ = self.ctr(&["task", "delete", "--force", id]);
        let _ = self.ctr(&["container", "rm", id]);
    }

    /// The VMMs and parapet-runc processes of this containerd's containers (their command
    /// lines name a bundle in its state directory).
    fn runtime_processes(&self) -> Vec<Proc> {
        let state = self.dir.join("state").display().to_string();
        processes()
            .into_iter()
            .filter(|p| !p.zombie && p.cmdline.contains(&state))
            .filter(|p| matches!(p.comm.as_str(), "parapet" | "parapet-runc"))
            .collect()
    }

    /// This containerd's shims (their command lines name its address).
    fn shims(&self) -> Vec<Proc> {
        let address = self.address().display().to_string();
        processes()
            .into_iter()
            .filter(|p| !p.zombie && p.comm.starts_with("containerd-shim"))
            .filter(|p| p.cmdline.contains(&address))
            .collect()
    }

    /// What is mounted under its directory.
    fn mounts(&self) -> Vec<String> {
        mounts_under(&self.dir)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        format!("containerd log (tail):\n{}", tail.join("\n"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims outlive containerd: kill those serving this one (and what they run), then
        // containerd, then unmount what is left under its directory.
        let address = self.address().display().to_string();
        kill_matching(&address, &OWN_COMMS);
        for p in self.runtime_processes() {
            // SAFETY: kill(2) of a VMM or runtime process of this containerd's containers.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.daemon.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unmount_all(&self.dir);
    }
}

/// Copies the tree at `from` to `to` (files with their modes, directories, symbolic links).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The bundles for parapet-runc alone, made from a real `ctr run -d` of the hello image: its
/// `config.json` and a copy of its rootfs; the second joins `netns` (if given).
fn make_bundles(ctrd: &Containerd, dir: &Path, netns: Option<&str>) -> Result<Vec<(Cell, Bundle)>> {
    let id = "bundle-source";
    let mut args = vec!["run".to_owned(), "-d".to_owned()];
    args.extend(ctrd.run_options());
    args.extend([HELLO_IMAGE.to_owned(), id.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let made = (|| {
        ctrd.ok(&args)?;
        let src = ctrd.bundle(id);
        let text = std::fs::read_to_string(src.join("config.json"))
            .context("reading the shim's config.json")?;
        let config: serde_json::Value =
            serde_json::from_str(&text).context("the shim's config.json")?;
        let mut bundles = Vec::new();
        for (cell, name, ns) in [
            (Cell::Runc, "bundle", None),
            (Cell::RuncOwn, "bundle-own", None),
            (Cell::RuncNetns, "bundle-netns", netns),
        ] {
            if cell == Cell::RuncNetns && ns.is_none() {
                continue;
            }
            let b = dir.join(name);
            copy_tree(&src.join("rootfs"), &b.join("rootfs"))?;
            let mut c = config.clone();
            if let Some(ns) = ns {
                join_netns(&mut c, &format!("{NETNS_DIR}/{ns}"))?;
            }
            if cell == Cell::RuncOwn {
                // parapet-runc's own work: no cgroup to move the container's process into.
                if let Some(linux) = c.get_mut("linux").and_then(|l| l.as_object_mut()) {
                    linux.remove("cgroupsPath");
                }
            }
            std::fs::write(
                b.join("config.json"),
                serde_json::to_vec_pretty(&c).expect("JSON"),
            )
            .context("writing a bundle's config.json")?;
            bundles.push((cell, Bundle { dir: b }));
        }
        Ok(bundles)
    })();
    // hello has exited by now or soon: delete its task and container.
    let until = Instant::now() + SETTLE;
    while ctrd
        .ctr(&["task", "delete", id])
        .is_ok_and(|o| o.status != Some(0) && !o.stderr.contains("not found"))
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    ctrd.force_remove(id);
    made
}

/// Sets the spec's network namespace to the one at `path` (as `ctr run --with-ns` does).
fn join_netns(config: &mut serde_json::Value, path: &str) -> Result<()> {
    let namespaces = config
        .pointer_mut("/linux/namespaces")
        .and_then(|n| n.as_array_mut())
        .context("config.json has no linux.namespaces")?;
    let entry = serde_json::json!({"type": "network", "path": path});
    match namespaces.iter_mut().find(|n| n["type"] == "network") {
        Some(n) => *n = entry,
        None => namespaces.push(entry),
    }
    Ok(())
}

/// The addresses of container network `i`: the hub end and the container end of its /30.
fn addresses(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let (hi, lo) = ((i / 64) as u8, (i % 64 * 4) as u8);
    (
        Ipv4Addr::new(10, 213, hi, lo + 1),
        Ipv4Addr::new(10, 213, hi, lo + 2),
    )
}

/// Namespace `ppbench-<pid>-TAG` with `eth0` at the container address of network `i`, a
/// default route through its veth peer `vTAG` in `hub`.
fn container_net(hub: &Netns, tag: &str, i: usize) -> Result<ContainerNet> {
    let ns = Netns::new(tag)?;
    let (hub_addr, addr) = addresses(i);
    let peer = format!("v{tag}");
    hub.ip(&[
        "link",
        "add",
        &peer,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    hub.ip(&["addr", "add", &format!("{hub_addr}/30"), "dev", &peer])?;
    hub.ip(&["link", "set", &peer, "up"])?;
    ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", "eth0"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.ip(&["route", "add", "default", "via", &hub_addr.to_string()])?;
    Ok(ContainerNet { ns, address: addr })
}

/// The TAP devices in namespace `ns`.
fn taps(ns: &Netns) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-d", "-o", "link", "show"])
        .output();
    let Ok(out) = out else {
        return vec!["(ip failed)".into()];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" tun type tap") || l.contains(" tun type tun"))
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect()
}

/// The `mirred` redirects left on `eth0`'s ingress in namespace `ns` (parapet-runc removes its
/// own when the container is deleted).
fn redirects(ns: &Netns) -> Vec<String> {
    let out = Command::new("tc")
        .args(["-n", ns.name(), "filter", "show", "dev", "eth0", "ingress"])
        .output();
    let Ok(out) = out else {
        return vec!["(tc failed)".into()];
    };
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("mirred"))
        .count();
    (0..n)
        .map(|_| "eth0 ingress mirred filter".to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The report.

/// `parapet run` or `ctr run` over the rounds.
#[derive(Debug)]
struct BootRow {
    runs: Vec<BootRun>,
    failure: Option<String>,
    selected: bool,
}

impl BootRow {
    fn first(&self, p: usize) -> f64 {
        pct(self.runs.iter().map(|r| r.first_line_ns), p)
    }

    fn exit(&self, p: usize) -> f64 {
        pct(self.runs.iter().map(|r| r.exit_ns), p)
    }
}

/// parapet-runc alone over the rounds.
#[derive(Debug)]
struct RuncRow {
    runs: Vec<RuncRun>,
    failure: Option<String>,
    selected: bool,
}

impl RuncRow {
    fn stat(&self, f: impl Fn(&RuncRun) -> f64, p: usize) -> f64 {
        pct(self.runs.iter().map(f), p)
    }

    fn create_start(&self, p: usize) -> f64 {
        self.stat(RuncRun::create_start_ns, p)
    }
}

/// The `p`th percentile of `values` (nearest rank below), NaN if there are none.
fn pct(values: impl Iterator<Item = f64>, p: usize) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    percentile(&v, p)
}

pub struct ContainersReport {
    host: HostInfo,
    containerd: String,
    runs: u32,
    rounds: u32,
    containers: u32,
    parapet_run: BootRow,
    ctr_run: BootRow,
    runc: RuncRow,
    runc_own: RuncRow,
    runc_netns: RuncRow,
    density: Vec<DensityRun>,
    density_failure: Option<String>,
    density_selected: bool,
}

impl ContainersReport {
    /// Every container of every round.
    fn all_containers(&self) -> impl Iterator<Item = &ContainerRun> {
        self.density.iter().flat_map(|d| &d.containers)
    }

    /// ctr run's median less parapet run's, to the first line and to the exit.
    fn difference(&self) -> Option<(f64, f64)> {
        (!self.parapet_run.runs.is_empty() && !self.ctr_run.runs.is_empty()).then(|| {
            (
                self.ctr_run.first(50) - self.parapet_run.first(50),
                self.ctr_run.exit(50) - self.parapet_run.exit(50),
            )
        })
    }
}

/// The table's columns: what, p50, p99, max, runs, goal; then free text.
const COLUMNS: [Column; 6] = [
    (46, Align::Left),
    (10, Align::Right),
    (10, Align::Right),
    (10, Align::Right),
    (6, Align::Right),
    (8, Align::Right),
];

fn failed_row(t: &mut Table, label: &str, failure: Option<&str>, selected: bool) {
    if selected {
        t.row_then(
            [label],
            format_args!("failed: {}", failure.unwrap_or("no measurement")),
        );
    } else {
        t.row_then([label], "not measured (--only)");
    }
}

fn boot_rows(t: &mut Table, name: &str, r: &BootRow) {
    if r.runs.is_empty() {
        failed_row(t, &format!("  {name}"), r.failure.as_deref(), r.selected);
        return;
    }
    let note = r
        .failure
        .as_deref()
        .map_or(String::new(), |f| format!("then failed: {f}"));
    type Stat = fn(&BootRow, usize) -> f64;
    for (what, f) in [
        ("first line", BootRow::first as Stat),
        ("exit", BootRow::exit),
    ] {
        t.row_then(
            [
                format!("  {name}: {what}"),
                fmt_ns(f(r, 50)),
                fmt_ns(f(r, 99)),
                fmt_ns(f(r, 100)),
                r.runs.len().to_string(),
                "-".into(),
            ],
            &note,
        );
    }
}

fn runc_rows(t: &mut Table, title: &str, r: &RuncRow, parapet_first: Option<f64>, judged: bool) {
    t.row_then(
        [title, "p50", "p99", "max", "runs", "goal"],
        "each command spawn -> exit, as the shim runs it",
    );
    if r.runs.is_empty() {
        failed_row(t, "  parapet-runc", r.failure.as_deref(), r.selected);
        return;
    }
    let n = r.runs.len().to_string();
    type Stat = fn(&RuncRun) -> f64;
    let rows: [(&str, Stat, bool); 8] = [
        ("  create", |x| x.create_ns, false),
        ("  start", |x| x.start_ns, false),
        ("  create + start", RuncRun::create_start_ns, true),
        (
            "  guest's first line, from create",
            |x| x.first_line_ns,
            false,
        ),
        ("  VMM's exit (reaped), from create", |x| x.exit_ns, false),
        ("  delete (after the exit)", |x| x.delete_ns, false),
        (
            "  parapet-runc --version (does nothing)",
            |x| x.noop_ns,
            false,
        ),
        (
            "  kernel: a process into new cgroups",
            |x| x.cgroup_move_ns,
            false,
        ),
    ];
    for (label, f, goal) in rows {
        let goal = goal && judged;
        let tail = if goal {
            format!(
                "p50 {}, p99 {}",
                met(r.create_start(50) <= GOAL_NS),
                met(r.create_start(99) <= GOAL_NS)
            )
        } else {
            String::new()
        };
        t.row_then(
            [
                label.to_owned(),
                fmt_ns(r.stat(f, 50)),
                fmt_ns(r.stat(f, 99)),
                fmt_ns(r.stat(f, 100)),
                n.clone(),
                if goal {
                    format!("<={}", fmt_ns(GOAL_NS))
                } else {
                    "-".into()
                },
            ],
            tail,
        );
    }
    if let Some(p) = parapet_first {
        t.row_then(
            [
                "  first line - parapet run's (p50s)".to_owned(),
                fmt_signed(r.stat(|x| x.first_line_ns, 50) - p),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
            "what parapet-runc adds before the guest's first line (create, start, init's exec)",
        );
    }
    if let Some(f) = &r.failure {
        t.line(format_args!("  then failed: {f}"));
    }
}

fn fmt_signed(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", fmt_ns(-ns))
    } else {
        format!("+{}", fmt_ns(ns))
    }
}

/// `containers.json`.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    host: JsonHost<'a>,
    method: JsonMethod,
    parapet_run: JsonBoot<'a>,
    ctr_run: JsonBoot<'a>,
    ctr_minus_parapet_p50_ns: Option<BTreeMap<&'static str, f64>>,
    parapet_runc: JsonRunc<'a>,
    parapet_runc_own: JsonRunc<'a>,
    parapet_runc_netns: JsonRunc<'a>,
    goal: JsonGoal,
    density: JsonDensity<'a>,
}

#[derive(Serialize)]
struct JsonHost<'a> {
    kernel: &'a str,
    cpu: &'a str,
    cpus: usize,
    containerd: &'a str,
}

#[derive(Serialize)]
struct JsonMethod {
    runs_per_row_per_round: u32,
    rounds: u32,
    containers: u32,
    rows: &'static str,
    parapet_runc: &'static str,
    density: &'static str,
    percentiles: &'static str,
}

#[derive(Serialize)]
struct JsonBoot<'a> {
    status: &'static str,
    failure: Option<&'a str>,
    first_line_p50_ns: Option<f64>,
    first_line_p99_ns: Option<f64>,
    exit_p50_ns: Option<f64>,
    exit_p99_ns: Option<f64>,
    runs: &'a [BootRun],
}

fn status(some: bool, selected: bool) -> &'static str {
    match (some, selected) {
        (true, _) => "measured",
        (false, true) => "failed",
        (false, false) => "not_run",
    }
}

impl<'a> JsonBoot<'a> {
    fn of(r: &'a BootRow) -> JsonBoot<'a> {
        let some = !r.runs.is_empty();
        JsonBoot {
            status: status(some, r.selected),
            failure: r.failure.as_deref(),
            first_line_p50_ns: some.then(|| r.first(50)),
            first_line_p99_ns: some.then(|| r.first(99)),
            exit_p50_ns: some.then(|| r.exit(50)),
            exit_p99_ns: some.then(|| r.exit(99)),
            runs: &r.runs,
        }
    }
}

#[derive(Serialize)]
struct JsonRunc<'a> {
    status: &'static str,
    failure: Option<&'a str>,
    /// Per figure: p50, p99, max (ns).
    stats: BTreeMap<&'static str, [f64; 3]>,
    runs: &'a [RuncRun],
}

impl<'a> JsonRunc<'a> {
    fn of(r: &'a RuncRow) -> JsonRunc<'a> {
        let mut stats = BTreeMap::new();
        if !r.runs.is_empty() {
            type Stat = fn(&RuncRun) -> f64;
            let figures: [(&str, Stat); 8] = [
                ("noop_ns", |x| x.noop_ns),
                ("create_ns", |x| x.create_ns),
                ("start_ns", |x| x.start_ns),
                ("create_start_ns", RuncRun::create_start_ns),
                ("first_line_ns", |x| x.first_line_ns),
                ("exit_ns", |x| x.exit_ns),
                ("delete_ns", |x| x.delete_ns),
                ("cgroup_move_ns", |x| x.cgroup_move_ns),
            ];
            for (k, f) in figures {
                stats.insert(k, [r.stat(f, 50), r.stat(f, 99), r.stat(f, 100)]);
            }
        }
        JsonRunc {
            status: status(!r.runs.is_empty(), r.selected),
            failure: r.failure.as_deref(),
            stats,
            runs: &r.runs,
        }
    }
}

#[derive(Serialize)]
struct JsonGoal {
    create_start_goal_ns: f64,
    create_start_p50_ns: Option<f64>,
    create_start_p99_ns: Option<f64>,
    met_p50: Option<bool>,
    met_p99: Option<bool>,
    /// create + start (p50) over ctr run's extra time to the first line (p50).
    share_of_ctr_difference: Option<f64>,
}

#[derive(Serialize)]
struct JsonDensity<'a> {
    containers: u32,
    status: &'static str,
    pass: bool,
    failure: Option<&'a str>,
    first_answer_p50_ns: Option<f64>,
    first_answer_max_ns: Option<f64>,
    all_answering_p50_ns: Option<f64>,
    rounds: &'a [DensityRun],
}

impl suite::Report for ContainersReport {
    const JSON: &'static str = "containers.json";
    const SVG: &'static str = "containers.svg";

    fn table(&self) -> String {
        let h = &self.host;
        let mut t = Table::new(&COLUMNS);
        t.line(format_args!(
            "Parapet bench containers: `ctr run` (containerd, its runc shim, parapet-runc) next \
             to `parapet run` of the same guest (hello), parapet-runc alone, and {} net-http \
             containers at once",
            self.containers
        ));
        t.line(format_args!(
            "host: Linux {}, {}, {} CPUs; {}; {} runs per row per round, rows rotating; {} \
             round{}; wall-clock times pooled over the rounds",
            h.kernel,
            h.cpu,
            h.cpus,
            self.containerd,
            self.runs,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        ));
        t.line("");
        t.row_then(
            [
                "spawn -> guest's first line, -> exit",
                "p50",
                "p99",
                "max",
                "runs",
                "",
            ],
            "",
        );
        boot_rows(&mut t, "parapet run hello", &self.parapet_run);
        boot_rows(&mut t, "ctr run --rm hello", &self.ctr_run);
        if let Some((first, exit)) = self.difference() {
            for (what, d) in [("first line", first), ("exit", exit)] {
                t.row_then(
                    [
                        format!("  ctr run - parapet run (p50s): {what}"),
                        fmt_signed(d),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ],
                    "what ctr, containerd, the shim and parapet-runc add",
                );
            }
        }
        t.line("");
        let parapet_first = (!self.parapet_run.runs.is_empty()).then(|| self.parapet_run.first(50));
        runc_rows(
            &mut t,
            "parapet-runc alone, no cgroup (its own work)",
            &self.runc_own,
            parapet_first,
            true,
        );
        t.line("");
        runc_rows(
            &mut t,
            "parapet-runc alone, ctr's cgroup (its spec as is)",
            &self.runc,
            parapet_first,
            false,
        );
        t.line("");
        runc_rows(
            &mut t,
            "parapet-runc alone, ctr's cgroup, network namespace",
            &self.runc_netns,
            parapet_first,
            false,
        );
        t.line("");
        if let (Some((first, _)), false) = (self.difference(), self.runc_own.runs.is_empty()) {
            let own = self.runc_own.create_start(50);
            t.line(format_args!(
                "parapet-runc's own share of what ctr run adds before the first line: create + \
                 start {} of {} ({:.1} %); ctr, containerd and the shim: the other {}",
                fmt_ns(own),
                fmt_ns(first),
                own / first * 100.0,
                fmt_ns(first - own)
            ));
            t.line("");
        }
        t.row_then(
            [
                format!("density: {} containers at once", self.containers),
                "p50".into(),
                "p99".into(),
                "max".into(),
                "n".into(),
                String::new(),
            ],
            "net-http, each in its own network namespace; times from the first start",
        );
        if self.density.is_empty() {
            failed_row(
                &mut t,
                "  density",
                self.density_failure.as_deref(),
                self.density_selected,
            );
        } else {
            let runs: Vec<f64> = self.all_containers().filter_map(|c| c.run_ns).collect();
            let answers: Vec<f64> = self
                .all_containers()
                .filter_map(|c| c.first_answer_ns)
                .collect();
            let all: Vec<f64> = self
                .density
                .iter()
                .filter_map(|d| d.all_answering_ns)
                .collect();
            let teardown: Vec<f64> = self.density.iter().map(|d| d.teardown_ns).collect();
            for (label, v, note) in [
                ("  ctr run -d returned", &runs, "each container"),
                (
                    "  first HTTP answer",
                    &answers,
                    "each container: GET / -> 200",
                ),
                ("  all answering", &all, "per round"),
                (
                    "  teardown (kill, delete, rm; in parallel)",
                    &teardown,
                    "per round, all containers",
                ),
            ] {
                let p = |q| pct(v.iter().copied(), q);
                t.row_then(
                    [
                        label.to_owned(),
                        fmt_ns(p(50)),
                        fmt_ns(p(99)),
                        fmt_ns(p(100)),
                        v.len().to_string(),
                        String::new(),
                    ],
                    note,
                );
            }
            for (i, d) in self.density.iter().enumerate() {
                t.line(format_args!(
                    "  round {}: {}",
                    i + 1,
                    d.checks
                        .iter()
                        .map(|c| format!(
                            "{} {} ({})",
                            c.name,
                            c.detail,
                            if c.pass { "pass" } else { "FAIL" }
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                for c in d.containers.iter().filter(|c| c.error.is_some()) {
                    t.line(format_args!(
                        "    {} ({}): {}",
                        c.id,
                        c.address,
                        c.error.as_deref().unwrap_or("")
                    ));
                }
                for c in d.containers.iter().filter(|c| c.teardown_error.is_some()) {
                    t.line(format_args!(
                        "    {} teardown: {}",
                        c.id,
                        c.teardown_error.as_deref().unwrap_or("")
                    ));
                }
            }
            if let Some(f) = &self.density_failure {
                t.line(format_args!("  then failed: {f}"));
            }
        }
        let mut goals = Vec::new();
        if !self.runc_own.runs.is_empty() {
            let (p50, p99) = (
                self.runc_own.create_start(50),
                self.runc_own.create_start(99),
            );
            goals.push(format!(
                "parapet-runc create + start p50 {} (goal <= {}: {}), p99 {} ({})",
                fmt_ns(p50),
                fmt_ns(GOAL_NS),
                met(p50 <= GOAL_NS),
                fmt_ns(p99),
                met(p99 <= GOAL_NS)
            ));
        }
        if !self.density.is_empty() || self.density_failure.is_some() {
            goals.push(format!(
                "{} containers at once in {} round{}: {}",
                self.containers,
                self.density.len(),
                if self.density.len() == 1 { "" } else { "s" },
                if self.density_failure.is_none() && self.density.iter().all(DensityRun::pass) {
                    "all answered, nothing leaked (pass)"
                } else {
                    "FAIL"
                }
            ));
        }
        t.line(format_args!("goals (issue 15): {}", goals.join("; ")));
        t.into_string()
    }

    fn json(&self) -> impl Serialize + '_ {
        let h = &self.host;
        let diff = self
            .difference()
            .map(|(first, exit)| BTreeMap::from([("first_line_ns", first), ("exit_ns", exit)]));
        let some = !self.runc_own.runs.is_empty();
        let answers = || self.all_containers().filter_map(|c| c.first_answer_ns);
        let d = !self.density.is_empty();
        Json {
            schema: "parapet-bench-containers/1",
            host: JsonHost {
                kernel: &h.kernel,
                cpu: &h.cpu,
                cpus: h.cpus,
                containerd: &self.containerd,
            },
            method: JsonMethod {
                runs_per_row_per_round: self.runs,
                rounds: self.rounds,
                containers: self.containers,
                rows: "rotating per run: `parapet run hello`, `ctr run --rm --runc-binary parapet-runc` of the hello image (a private containerd, its runc shim), parapet-runc alone (three bundles: the spec without linux.cgroupsPath, as ctr made it, and as ctr made it in a network namespace); wall-clock from just before the spawn to the first line on stdout and to the exit",
                parapet_runc: "a bundle made once from a real `ctr run` (its config.json, a copy of its rootfs); `parapet-runc --root R --log B/log.json --log-format json create --bundle B --pid-file P ID` (stdout a pipe) and `… start ID`, each spawn to exit; the guest's first line on the pipe and the VMM's exit (reaped by the bench as a child subreaper) from the spawn of create; then `… delete ID`. Network variant: the spec's network namespace is a path to a namespace with a veth (address /30, default route). Each run also times the kernel's part of a cgroup join alone: a new `sleep` process written into a new cgroup of every mounted hierarchy. The 5 ms goal is judged on the bundle without cgroupsPath: parapet-runc's own work",
                density: "N `ctr run -d --with-ns network:PATH` of net-http started at once, each in its own namespace; GET / from the hub namespace every 20 ms until 200; then ctr task kill, task delete (retried until stopped), container rm, in parallel; checks after up to 10 s: VMM/runtime processes, shims, TAP devices in the namespaces, mounts under the containerd's directory, containers/tasks left",
                percentiles: "samples pooled over the rounds; pN = the sample at rank len*N/100 of the sorted samples",
            },
            parapet_run: JsonBoot::of(&self.parapet_run),
            ctr_run: JsonBoot::of(&self.ctr_run),
            ctr_minus_parapet_p50_ns: diff,
            parapet_runc: JsonRunc::of(&self.runc),
            parapet_runc_own: JsonRunc::of(&self.runc_own),
            parapet_runc_netns: JsonRunc::of(&self.runc_netns),
            goal: JsonGoal {
                create_start_goal_ns: GOAL_NS,
                create_start_p50_ns: some.then(|| self.runc_own.create_start(50)),
                create_start_p99_ns: some.then(|| self.runc_own.create_start(99)),
                met_p50: some.then(|| self.runc_own.create_start(50) <= GOAL_NS),
                met_p99: some.then(|| self.runc_own.create_start(99) <= GOAL_NS),
                share_of_ctr_difference: self
                    .difference()
                    .filter(|_| some)
                    .map(|(first, _)| self.runc_own.create_start(50) / first),
            },
            density: JsonDensity {
                containers: self.containers,
                status: status(d, self.density_selected),
                pass: d
                    && self.density_failure.is_none()
                    && self.density.iter().all(DensityRun::pass),
                failure: self.density_failure.as_deref(),
                first_answer_p50_ns: d.then(|| pct(answers(), 50)),
                first_answer_max_ns: d.then(|| pct(answers(), 100)),
                all_answering_p50_ns: d
                    .then(|| {
                        let v: Vec<f64> = self
                            .density
                            .iter()
                            .filter_map(|r| r.all_answering_ns)
                            .collect();
                        (!v.is_empty()).then(|| median(&v))
                    })
                    .flatten(),
                rounds: &self.density,
            },
        }
    }

    /// Medians on a log scale: the two ways to the first line and the exit, parapet-runc's
    /// commands, the density test's times.
    fn chart(&self, path: &Path) -> Result<()> {
        let mut bars = Vec::new();
        for (name, r, series) in [
            ("parapet run hello", &self.parapet_run, 0),
            ("ctr run --rm hello", &self.ctr_run, 1),
        ] {
            if !r.runs.is_empty() {
                bars.push(LogBar {
                    label: format!("{name}: first line"),
                    ns: r.first(50),
                    series,
                });
                bars.push(LogBar {
                    label: format!("{name}: exit"),
                    ns: r.exit(50),
                    series,
                });
            }
        }
        for (name, r, series) in [
            ("parapet-runc, own", &self.runc_own, 2),
            ("parapet-runc", &self.runc, 2),
            ("parapet-runc, netns", &self.runc_netns, 3),
        ] {
            if r.runs.is_empty() {
                continue;
            }
            type Stat = fn(&RuncRun) -> f64;
            let figures: [(&str, Stat); 4] = [
                ("create", |x| x.create_ns),
                ("start", |x| x.start_ns),
                ("create + start", RuncRun::create_start_ns),
                ("first line from create", |x| x.first_line_ns),
            ];
            for (what, f) in figures {
                bars.push(LogBar {
                    label: format!("{name}: {what}"),
                    ns: r.stat(f, 50),
                    series,
                });
            }
        }
        if !self.density.is_empty() {
            let answers = self.all_containers().filter_map(|c| c.first_answer_ns);
            bars.push(LogBar {
                label: format!("density ({}): first answer, p50", self.containers),
                ns: pct(answers, 50),
                series: 4,
            });
            let all: Vec<f64> = self
                .density
                .iter()
                .filter_map(|d| d.all_answering_ns)
                .collect();
            if !all.is_empty() {
                bars.push(LogBar {
                    label: format!("density ({}): all answering", self.containers),
                    ns: median(&all),
                    series: 4,
                });
            }
        }
        bars.retain(|b| b.ns.is_finite() && b.ns > 0.0);
        chart::log_bars(
            path,
            "Containers: ctr run vs parapet run, parapet-runc alone, density (p50)",
            "time (log scale)",
            &bars,
            &[
                Series {
                    name: "parapet run",
                    rgb: (46, 139, 87),
                },
                Series {
                    name: "ctr run (containerd)",
                    rgb: (200, 50, 50),
                },
                Series {
                    name: "parapet-runc alone",
                    rgb: (230, 145, 30),
                },
                Series {
                    name: "parapet-runc, netns",
                    rgb: (130, 80, 170),
                },
                Series {
                    name: "density",
                    rgb: (70, 110, 170),
                },
            ],
        )
    }

    fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        for (name, failure) in [
            ("parapet run", &self.parapet_run.failure),
            ("ctr run", &self.ctr_run.failure),
            ("parapet-runc alone", &self.runc.failure),
            ("parapet-runc alone, no cgroup", &self.runc_own.failure),
            (
                "parapet-runc alone, network namespace",
                &self.runc_netns.failure,
            ),
            ("density", &self.density_failure),
        ] {
            if let Some(why) = failure {
                f.push(format!("{name}: {why}"));
            }
        }
        for (i, d) in self.density.iter().enumerate() {
            for c in d.checks.iter().filter(|c| !c.pass) {
                f.push(format!("density round {}: {}: {}", i + 1, c.name, c.detail));
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_slash_30s() {
        assert_eq!(
            addresses(0),
            (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(
            addresses(65),
            (Ipv4Addr::new(10, 213, 1, 5), Ipv4Addr::new(10, 213, 1, 6))
        );
        let mut all: Vec<Ipv4Addr> = (0..=RUNC_NET_INDEX)
            .flat_map(|i| <[Ipv4Addr; 2]>::from(addresses(i)))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2 * (RUNC_NET_INDEX + 1));
    }

    #[test]
    fn joins_a_network_namespace() {
        let mut c =
            serde_json::json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}});
        join_netns(&mut c, "/var/run/netns/x").unwrap();
        assert_eq!(
            c["linux"]["namespaces"][1],
            serde_json::json!({"type": "network", "path": "/var/run/netns/x"})
        );
        let mut c = serde_json::json!({"linux": {"namespaces": []}});
        join_netns(&mut c, "/p").unwrap();
        assert_eq!(c["linux"]["namespaces"][0]["path"], "/p");
        assert!(join_netns(&mut serde_json::json!({}), "/p").is_err());
    }

    fn report() -> ContainersReport {
        let boot = |first: f64, exit: f64| BootRow {
            runs: (0..10)
                .map(|i| BootRun {
                    first_line_ns: first + f64::from(i),
                    exit_ns: exit + f64::from(i),
                })
                .collect(),
            failure: None,
            selected: true,
        };
        let runc = RuncRow {
            runs: vec![RuncRun {
                create_ns: 2e6,
                start_ns: 1e6,
                first_line_ns: 6e6,
                exit_ns: 7e6,
                delete_ns: 1e6,
                noop_ns: 1e6,
                cgroup_move_ns: 1e6,
            }],
            failure: None,
            selected: true,
        };
        let container = |i: usize, answer: Option<f64>| ContainerRun {
            id: format!("d1-{i}"),
            netns: format!("ppbench-1-c{i}"),
            address: addresses(i).1.to_string(),
            run_ns: Some(80e6),
            first_answer_ns: answer,
            attempts: 3,
            error: answer.is_none().then(|| "no answer".to_owned()),
            teardown_error: None,
        };
        ContainersReport {
            host: HostInfo::read_proc(),
            containerd: "containerd 1.6.20".into(),
            runs: 10,
            rounds: 1,
            containers: 2,
            parapet_run: boot(3e6, 4e6),
            ctr_run: boot(73e6, 124e6),
            runc_own: RuncRow {
                runs: runc.runs.clone(),
                failure: None,
                selected: true,
            },
            runc,
            runc_netns: RuncRow {
                runs: Vec::new(),
                failure: None,
                selected: false,
            },
            density: vec![DensityRun {
                containers: vec![container(0, Some(150e6)), container(1, None)],
                all_answering_ns: None,
                teardown_ns: 300e6,
                checks: vec![
                    Check {
                        name: "containers answering",
                        pass: false,
                        detail: "1/2".into(),
                    },
                    Check {
                        name: "mounts left",
                        pass: true,
                        detail: "none".into(),
                    },
                ],
            }],
            density_failure: None,
            density_selected: true,
        }
    }

    #[test]
    fn table_json_svg_and_failures() {
        use crate::bench::suite::Report as _;
        let r = report();
        let table = r.table();
        for want in [
            "parapet run hello: first line",
            "ctr run - parapet run (p50s): first line       +70.0 ms",
            "create + start",
            "<=5.00 ms p50 met, p99 met",
            "create + start 3.00 ms of 70.0 ms (4.3 %)",
            "not measured (--only)",
            "containers answering 1/2 (FAIL); mounts left none (pass)",
            "d1-1 (10.213.0.6): no answer",
            "2 containers at once in 1 round: FAIL",
        ] {
            assert!(table.contains(want), "{want:?} not in\n{table}");
        }
        let json = serde_json::to_value(r.json()).unwrap();
        assert_eq!(json["goal"]["met_p50"], true);
        assert_eq!(json["density"]["pass"], false);
        assert_eq!(json["parapet_runc_netns"]["status"], "not_run");
        assert_eq!(json["parapet_runc"]["stats"]["create_start_ns"][0], 3e6);
        assert_eq!(
            r.failures(),
            ["density round 1: containers answering: 1/2".to_owned()]
        );
        let dir = std::env::temp_dir().join(format!("xtask-containers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("c.svg");
        r.chart(&svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("3.00 ms"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find(b"HTTP/1.1 200 OK\r\n\r\nbody", b"\r\n\r\n"), Some(15));
        assert_eq!(find(b"abc", b"\r\n\r\n"), None);
    }
}
