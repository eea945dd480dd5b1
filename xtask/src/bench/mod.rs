//! `cargo xtask bench`: five suites behind one driver ([`suite`]). The core suite
//! ([`core`]) runs the bench guest, the floor and (if given) the Solo5 peer, and prints the
//! hypercall-vs-trap table, writing `results.json` and `chart.svg` under `target/bench/`;
//! `bench blk` ([`blk`]) and `bench net` ([`net`]) measure the PV block and network devices
//! against the host; `bench snapshot` ([`snapshot`]) measures warm reset, restore against a cold
//! start, and the memory of restored clones; `bench containers` ([`containers`]) measures `ctr run`
//! through containerd and parapet-runc against `parapet run`, parapet-runc alone, and many
//! containers at once. Each runs its rounds, adds them up into a report, and the driver prints
//! its table and writes its JSON and SVG chart. Each suite's module describes its method;
//! docs/benchmarks.md has the long version.

pub mod blk;
pub mod chart;
pub mod containers;
pub mod core;
pub mod cpu;
pub mod net;
pub mod netns;
pub mod parse;
pub mod process;
pub mod report;
pub mod rows;
pub mod snapshot;
pub mod suite;
pub mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::Workspace;

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
    /// Snapshots: warm-reset latency against pages dirtied, a restored or a cold process per
    /// request, and the memory of 100 restored clones of one snapshot; prints one table,
    /// writes snapshot.json and snapshot.svg.
    Snapshot(Box<snapshot::SnapshotArgs>),
    /// Containers: `ctr run` of a guest through containerd and parapet-runc next to `parapet
    /// run`, parapet-runc's own create and start, and many net-http containers at once (all
    /// answer, none leak); prints one table, writes containers.json and containers.svg. Needs
    /// root and containerd.
    Containers(Box<containers::ContainersArgs>),
}

pub fn run(ws: &Workspace, args: BenchArgs) -> Result<ExitCode> {
    match args.suite {
        Some(Suite::Blk(a)) => {
            let out_dir = suite::out_dir(ws, a.out.as_deref());
            suite::run(blk::Blk::new(ws, *a)?, &out_dir)
        }
        Some(Suite::BlkHost(a)) => blk::host(*a),
        Some(Suite::Net(a)) => {
            let out_dir = suite::out_dir(ws, a.out.as_deref());
            suite::run(net::Net::new(ws, *a, &out_dir)?, &out_dir)
        }
        Some(Suite::Snapshot(a)) => {
            let out_dir = suite::out_dir(ws, a.out.as_deref());
            suite::run(snapshot::Snapshot::new(ws, *a, &out_dir)?, &out_dir)
        }
        Some(Suite::Containers(a)) => {
            let out_dir = suite::out_dir(ws, a.out.as_deref());
            suite::run(containers::Containers::new(ws, *a, &out_dir)?, &out_dir)
        }
        None => {
            let out_dir = suite::out_dir(ws, args.out.as_deref());
            suite::run(core::Core::new(ws, &args, &out_dir)?, &out_dir)
        }
    }
}
