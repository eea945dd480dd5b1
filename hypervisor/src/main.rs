//! The `parapet` command.

use clap::{ArgAction, Parser, Subcommand};
use parapet::config::{
    DiskSpec, GdbAddr, MemSize, NetSpec, RestoreConfig, StatsFormat, TransportChoice, VmConfig,
};
use parapet::outcome::status;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Parapet: a Xen-style paravirtualization hypervisor on KVM.
#[derive(Debug, Parser)]
#[command(name = "parapet", version, about)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); PARAPET_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a guest kernel and run it until it powers off.
    ///
    /// Exit status: the guest's power-off code; 1 VMM error; 101 guest crash; 102 guest fault;
    /// 103 reboot request; 104 guest watchdog; 124 timeout; 137 killed from gdb.
    Run(RunArgs),
    /// Restore a snapshot in this process and run the guest on from it.
    ///
    /// The guest's memory is mapped copy-on-write from the file, so restores of one snapshot
    /// share its pages. Exit status as for `run` (docs/snapshots.md).
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The snapshot file (written by `parapet run --snapshot FILE`).
    snapshot: PathBuf,
    /// A disk image for the snapshot's next block device, in order; by default the images it
    /// was taken with. Only read-only disks can be restored.
    #[arg(long, value_name = "PATH[,readonly]")]
    disk: Vec<DiskSpec>,
    /// A TAP device for the snapshot's next network interface, in order, with the MAC this
    /// clone gets; by default the TAPs it was taken with (needed for an interface that was on an
    /// inherited descriptor, `fd=N`).
    #[arg(long, value_name = "tap=NAME|fd=N[,mac=MAC][,mtu=M]")]
    net: Vec<NetSpec>,
    /// Warm reset: one VM serves an invocation per line of standard input, each starting from
    /// the snapshot, with the line as its console input; it ends when the guest suspends again.
    #[arg(long)]
    warm: bool,
    /// Where a further suspend writes a snapshot.
    #[arg(long = "snapshot", value_name = "FILE", conflicts_with = "warm")]
    snapshot_out: Option<PathBuf>,
    /// Stop the guest after SECS seconds (exit status 124).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Print statistics to stderr at exit: `text` or `json`.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "text")]
    stats: Option<StatsFormat>,
    /// Do not confine the VMM's threads with seccomp filters (for debugging).
    #[arg(long)]
    no_seccomp: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The guest kernel: an ELF64 x86-64 executable built with the Parapet guest SDK.
    kernel: PathBuf,
    /// Guest RAM, a multiple of 2 MiB (e.g. 64M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    memory: MemSize,
    /// Kernel command line, passed in the start-info page.
    #[arg(long, value_name = "STR", default_value = "")]
    cmdline: String,
    /// Stop the guest after SECS seconds (exit status 124).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Print exit, hypercall, device and KVM statistics to stderr at exit: `text` (the default)
    /// or `json` (one object on one line).
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
          default_missing_value = "text")]
    stats: Option<StatsFormat>,
    /// How hypercalls reach the VMM.
    #[arg(long, value_enum, value_name = "TRANSPORT", default_value_t = TransportChoice::Auto)]
    hypercall_transport: TransportChoice,
    /// Give the guest a loopback test device (docs/abi.md §10.1).
    #[arg(long)]
    loopback: bool,
    /// A raw disk image as a PV block device (docs/abi.md §10.2); repeat for more disks.
    #[arg(long, value_name = "PATH[,readonly]")]
    disk: Vec<DiskSpec>,
    /// A PV network interface on a host TAP device (docs/abi.md §10.3): `tap=NAME` attaches to
    /// (or creates) it, `fd=N` takes over an attached TAP descriptor inherited from the parent;
    /// `mtu=M` (68-1500) is the MTU the guest is told. Repeat for more.
    #[arg(long, value_name = "tap=NAME|fd=N[,mac=MAC][,mtu=M]")]
    net: Vec<NetSpec>,
    /// Do not confine the VMM's threads with seccomp filters (for debugging).
    #[arg(long)]
    no_seccomp: bool,
    /// Serve gdb on ADDR: HOST:PORT (TCP), a Unix socket path (with a `/`), or a serial line
    /// (a character device such as /dev/ttyS1, put in raw mode at the speed it has; gdb at its
    /// other end). The guest waits for gdb before its first instruction (docs/debugging.md).
    #[arg(long, value_name = "ADDR")]
    gdb: Option<GdbAddr>,
    /// If the guest faults or panics, write an ELF core dump to FILE (`gdb GUEST FILE`).
    #[arg(long, value_name = "FILE")]
    core: Option<PathBuf>,
    /// When the guest suspends (`SHUTDOWN_suspend`), or on `SIGUSR1`, write a snapshot of it to
    /// FILE and exit 0; `parapet restore FILE` runs it on (docs/snapshots.md).
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("the timeout must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("PARAPET_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Restore(args) => {
            let config = RestoreConfig {
                snapshot: args.snapshot,
                disks: args.disk,
                nets: args.net,
                timeout: args.timeout,
                stats: args.stats,
                seccomp: !args.no_seccomp,
                snapshot_out: args.snapshot_out,
                warm: args.warm,
            };
            return exit_code(parapet::vmm::restore(&config));
        }
    };
    let config = VmConfig {
        kernel: args.kernel,
        memory: args.memory,
        cmdline: args.cmdline,
        timeout: args.timeout,
        stats: args.stats,
        transport: args.hypercall_transport,
        loopback: args.loopback,
        disks: args.disk,
        nets: args.net,
        seccomp: !args.no_seccomp,
        gdb: args.gdb,
        core: args.core,
        snapshot: args.snapshot,
    };
    exit_code(parapet::vmm::run(&config))
}

fn exit_code(result: parapet::error::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("parapet: error: {e}");
            ExitCode::from(status::VMM_ERROR)
        }
    }
}
