//! `parapet-runc`: an OCI runtime with runc's command line, for containerd's runc shim
//! (`containerd-shim-runc-v2`, e.g. `ctr run --runc-binary /path/to/parapet-runc IMAGE ID`).
//!
//! The container's process is the `parapet` VMM running the guest the bundle describes
//! (`/parapet.json` in the rootfs, or `org.parapet.guest.*` annotations; see [`guest`]), so the
//! guest's console is the container's stdio and the VMM's exit status is the container's.
//!
//! - `create` checks the bundle, records the container under `--root`, and forks the
//!   container's process, which moves into the container's network namespace and plumbs the
//!   guest's network there ([`network`]), tells `create` how that went, waits on
//!   `ROOT/ID/exec.fifo` and then becomes `parapet run …` (the PID in `--pid-file` is that process
//!   throughout). It keeps the stdio `create` was given, or with `--console-socket` gets a new
//!   pseudoterminal whose master end goes over the socket; `create` puts it into the container's
//!   cgroup ([`cgroup`]) meanwhile.
//! - `start` writes a byte into the FIFO: the VMM starts.
//! - `state`, `kill`, `delete`, `ps`, `list` and `features` do what runc's do; `delete` also
//!   undoes the network plumbing. Other runc commands (`exec`, `update`, …) fail with one line
//!   saying why.
//! - Bundles that are no Parapet guest (a Kubernetes pod's sandbox, an ordinary image) go to
//!   runc ([`delegate`]), and so does every later command about them.

mod cgroup;
mod console;
mod container;
mod delegate;
mod error;
mod guest;
mod log;
mod netlink;
mod network;
mod state;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// An OCI runtime that runs a Parapet guest as the container's process.
#[derive(Debug, Parser)]
#[command(name = "parapet-runc", version, about)]
struct Cli {
    /// Where containers' state is kept.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/run/parapet-runc"
    )]
    root: PathBuf,
    /// Append errors to FILE (containerd reads the last one back).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// How `--log` entries are written.
    #[arg(long, global = true, value_enum, default_value_t = log::LogFormat::Text)]
    log_format: log::LogFormat,
    /// Accepted for runc compatibility: cgroupfs paths are joined as without it, and systemd's
    /// `slice:prefix:name` paths are left alone (the VMM joins no cgroup).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, value_name = "VALUE")]
    rootless: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, value_name = "PATH")]
    criu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle: its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container: the VMM boots the guest.
    Start {
        /// The container ID.
        id: String,
    },
    /// Print a container's state as JSON.
    State {
        /// The container ID.
        id: String,
    },
    /// Send a signal to a container's process (default SIGTERM).
    Kill {
        /// Signal every process of the container (there is one: the VMM).
        #[arg(short, long)]
        all: bool,
        /// The container ID.
        id: String,
        /// A signal number or name (`9`, `KILL`, `SIGKILL`).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Forget a stopped container (with --force, kill it first).
    Delete {
        /// Kill the container if it still runs.
        #[arg(short, long)]
        force: bool,
        /// The container ID.
        id: String,
    },
    /// List a container's processes.
    Ps {
        /// `table` or `json`.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// The container ID.
        id: String,
        /// ps(1) options (ignored).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        /// `table` or `json`.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

/// `create`'s options, as runc takes them.
#[derive(Debug, Args)]
struct CreateArgs {
    /// The bundle: config.json and the rootfs.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
    /// Write the container process's PID to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Send the master end of a new pseudoterminal over this Unix socket.
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    no_new_keyring: bool,
    /// Accepted for runc compatibility (no extra descriptors are passed to the VMM).
    #[arg(long, value_name = "N")]
    preserve_fds: Option<u32>,
    /// The container ID.
    id: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.clone(), cli.log_format);
    let store = state::Store::new(cli.root.clone());
    let delegate = delegate::Delegate::find(&cli.root);
    // A container this runtime does not hold but runc does is runc's.
    let held_by_runc = |id: &str| {
        delegate
            .as_ref()
            .filter(|d| !store.dir(id).exists() && d.holds(id))
    };
    let handed_over = match &cli.command {
        Command::Start { id }
        | Command::State { id }
        | Command::Kill { id, .. }
        | Command::Delete { id, .. }
        | Command::Ps { id, .. } => held_by_runc(id),
        // `exec`, `update`, `pause`, … of runc's container (the shim puts the ID last).
        Command::Other(args) => container_args(args).find_map(held_by_runc),
        _ => None,
    };
    if let Some(runc) = handed_over {
        return fail(&logger, runc.exec(&runc_args()));
    }
    let result = match cli.command {
        Command::Create(a) => container::create(
            &store,
            &container::CreateOptions {
                id: a.id,
                bundle: a.bundle,
                pid_file: a.pid_file,
                console_socket: a.console_socket,
            },
        ),
        Command::Start { id } => container::start(&store, &id),
        Command::State { id } => container::state(&store, &id),
        Command::Kill { id, signal, .. } => container::kill(&store, &id, &signal),
        Command::Delete { id, force } => container::delete(&store, &id, force),
        Command::Ps { id, format, .. } => container::ps(&store, &id, &format),
        Command::List { format, quiet } => container::list(&store, &format, quiet),
        Command::Features => container::features(),
        Command::Other(args) => Err(error::Error::unsupported(
            &args
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error::Error::NotParapet { .. }) if delegate.is_some() => {
            let runc = delegate.as_ref().expect("checked");
            fail(&logger, runc.exec(&runc_args()))
        }
        Err(e) => fail(&logger, e),
    }
}

/// The arguments of a command this runtime does not have (`args[0]` is the command) that could
/// be a container ID: those that are not options.
fn container_args(args: &[OsString]) -> impl Iterator<Item = &str> {
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .filter(|a| !a.starts_with('-'))
}

/// This process's arguments, for runc.
fn runc_args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

/// Reports `e` on stderr and in the log.
fn fail(logger: &log::Logger, e: error::Error) -> ExitCode {
    let mut msg = e.to_string();
    if matches!(e, error::Error::NotParapet { .. }) {
        msg.push_str(&format!(
            " (and there is no runc to hand it to: install runc or set {})",
            delegate::ENV
        ));
    }
    eprintln!("parapet-runc: {msg}");
    logger.log("error", &msg);
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_among_other_commands_arguments() {
        let args: Vec<OsString> = [
            "exec",
            "--process",
            "/tmp/runc-process1",
            "--detach",
            "--pid-file",
            "/b/p.pid",
            "c1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            container_args(&args).collect::<Vec<_>>(),
            ["/tmp/runc-process1", "/b/p.pid", "c1"]
        );
        let update: Vec<OsString> = ["update", "--resources", "-", "c2"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(container_args(&update).collect::<Vec<_>>(), ["c2"]);
    }

    #[test]
    fn unsupported_commands_say_why_in_one_line() {
        let exec = error::Error::unsupported("exec").to_string();
        assert!(
            exec.starts_with("`exec` is not supported by parapet-runc: ") && !exec.contains('\n'),
            "{exec}"
        );
        assert!(
            error::Error::unsupported("frobnicate")
                .to_string()
                .starts_with("`frobnicate` is not supported by parapet-runc: ")
        );
    }
}
