//! The runtime's commands: the container lifecycle (`create`, `start`, `kill`, `delete`), the
//! read-only ones (`state`, `ps`, `list`, `features`) and `init`, the container's process until
//! `start`.

use crate::cgroup;
use crate::console;
use crate::error::{Context, Error, Result};
use crate::guest;
use crate::log::rfc3339;
use crate::network::{self, Attached, Namespace};
use crate::state::{State, Status, Store, proc_stat, validate_id, write_atomic};
use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, FdFlags};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// How long `delete` waits for a killed VMM to die.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `create` waits for the container's process to set up its network.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// What `create` records of the plumbing for `delete` to undo: `ROOT/ID/network.json`.
const NETWORK_FILE: &str = "network.json";

/// What `init` tells `create` once it is in its network namespace: the first line on the sync
/// socket. `create` answers with the command to become (NUL-terminated arguments, then EOF).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Report {
    /// Ready, with the network plumbed for the guest, or none to plumb.
    Ready { net: Option<Attached> },
    /// Setting up failed; the process exits.
    Failed { error: String },
}

/// `ROOT/ID/network.json`: the namespace and what was plumbed in it.
#[derive(Debug, Serialize, Deserialize)]
struct NetworkRecord {
    netns: PathBuf,
    attached: Attached,
}

/// What `create` needs from its command line.
#[derive(Debug)]
pub struct CreateOptions {
    /// The container ID.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write the container process's PID.
    pub pid_file: Option<PathBuf>,
    /// Where to send a pseudoterminal's master end.
    pub console_socket: Option<PathBuf>,
}

/// `create`: checks the bundle, records the container and starts its waiting process.
pub fn create(store: &Store, opts: &CreateOptions) -> Result<()> {
    validate_id(&opts.id)?;
    let bundle = std::path::absolute(&opts.bundle)
        .context(|| format!("bundle {}", opts.bundle.display()))?;
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config).context(|| config.display().to_string())?;
    let spec: Spec = serde_json::from_str(&text).map_err(|source| Error::Spec {
        bundle: bundle.clone(),
        source,
    })?;
    let plan = guest::plan(&bundle, &spec)?;
    let vmm = find_vmm()?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(Error::Other(
            "process.terminal is set, so a --console-socket is needed for the terminal".into(),
        ));
    }
    let size = spec
        .process()
        .as_ref()
        .and_then(|p| p.console_size())
        .map(|b| (b.width() as u16, b.height() as u16));

    let netns = Namespace::of(&spec);
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());

    let dir = store.create_dir(&opts.id)?;
    let mut pid = None;
    let mut plumbed: Option<NetworkRecord> = None;
    let mut cgroups = Vec::new();
    let mut joining = None;
    let result = (|| {
        let fifo = store.fifo(&opts.id);
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600))
            .context(|| format!("mkfifo {}", fifo.display()))?;
        // Above the standard descriptors, whatever this process was given (the child's may
        // become a terminal's).
        let fifo_fd = above_stdio(
            rustix::fs::open(&fifo, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .context(|| format!("open {}", fifo.display()))?,
        )?;

        let pty = match &opts.console_socket {
            Some(socket) => {
                let pty = console::open_pty(size)?;
                console::send_fd(socket, &pty.name, &pty.master)?;
                Some(pty)
            }
            None => None,
        };

        // The sync socket: `init` reports on it once in its network namespace, and reads the
        // command to become.
        let (sync, sync_child) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .context(|| "socketpair")?;
        let sync_child = above_stdio(sync_child)?;

        let setup = InitSetup {
            bundle: &bundle,
            terminal: pty.as_ref().map(|p| &p.slave),
            parent_sync: &sync,
            netns: &netns,
        };
        let child_pid = spawn_init(&setup, fifo_fd, sync_child)?;
        pid = Some(child_pid);
        // Before it starts, everything the VMM uses must count in the container's cgroup. On
        // cgroup v1 the kernel makes the first move wait for an RCU grace period (7-40 ms
        // here), so the move runs beside the child's set-up instead of after it.
        if let Some(path) = &cgroups_path {
            let path = path.to_string_lossy().into_owned();
            joining = Some(std::thread::spawn(move || {
                let mut joined = Vec::new();
                let result = cgroup::join(&path, child_pid, &mut joined);
                (joined, result)
            }));
        }
        // The child is not waited for: it outlives this process, and the shim (a child
        // subreaper) inherits it.

        // The container's process is in its namespace and has plumbed the network; it waits
        // for the command that makes it the VMM.
        let mut sync = UnixStream::from(sync);
        sync.set_read_timeout(Some(SETUP_WAIT))
            .context(|| "sync socket")?;
        let net = match read_report(&mut sync)? {
            Report::Ready { net } => net,
            Report::Failed { error } => return Err(Error::Other(error)),
        };
        if let (Some(attached), Namespace::Join(path)) = (&net, &netns) {
            let record = NetworkRecord {
                netns: path.clone(),
                attached: attached.clone(),
            };
            write_atomic(
                &dir.join(NETWORK_FILE),
                serde_json::to_string(&record).expect("JSON").as_bytes(),
            )?;
            plumbed = Some(record);
        }
        let mut plan = plan.clone();
        let mut args = vec![vmm.clone().into_os_string()];
        if let Some(a) = &net {
            plan.cmdline = a.amend_cmdline(&plan.cmdline);
        }
        args.extend(plan.vmm_args());
        if let Some(a) = &net {
            args.push("--net".into());
            args.push(a.vmm_net().into());
        }
        let mut command = Vec::new();
        for a in &args {
            command.extend_from_slice(a.as_bytes());
            command.push(0);
        }
        sync.write_all(&command)
            .and_then(|()| sync.shutdown(std::net::Shutdown::Write))
            .context(|| "hand the VMM's command to the container's process")?;

        let (_, start_time) = proc_stat(child_pid).ok_or_else(|| {
            Error::Other(format!("the container's process {child_pid} died at once"))
        })?;
        if let Some(handle) = joining.take() {
            finish_joining(handle, &mut cgroups)?;
        }
        let state = State {
            id: opts.id.clone(),
            bundle: bundle.clone(),
            rootfs: guest::rootfs(&bundle, &spec),
            pid: child_pid,
            start_time,
            status: Status::Created,
            created: rfc3339(SystemTime::now()),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroups: cgroups.clone(),
        };
        store.save(&state)?;
        if let Some(path) = &opts.pid_file {
            let path = std::path::absolute(path).context(|| path.display().to_string())?;
            write_atomic(&path, child_pid.to_string().as_bytes())?;
        }
        Ok(())
    })();
    if let Some(handle) = joining.take() {
        let _ = finish_joining(handle, &mut cgroups);
    }
    if result.is_err() {
        if let Some(pid) = pid.and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        if let Some(record) = &plumbed {
            let _ = network::release(&record.netns, &record.attached);
        }
        cgroup::remove(&cgroups);
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Waits for the thread moving the container's process into its cgroups; `cgroups` gets every
/// directory it made, whether or not it succeeded.
fn finish_joining(handle: CgroupJoin, cgroups: &mut Vec<PathBuf>) -> Result<()> {
    let (joined, result) = handle
        .join()
        .map_err(|_| Error::Other("the thread joining the container's cgroups failed".into()))?;
    *cgroups = joined;
    result
}

/// The thread moving the container's process into its cgroups.
type CgroupJoin = std::thread::JoinHandle<(Vec<PathBuf>, Result<()>)>;

/// The first line `init` writes on the sync socket.
fn read_report(sync: &mut UnixStream) -> Result<Report> {
    let mut line = String::new();
    let read = BufReader::new(&*sync).read_line(&mut line);
    match read {
        Ok(0) => Err(Error::Other(
            "the container's process exited while setting up (see its standard error)".into(),
        )),
        Ok(_) => serde_json::from_str(&line).map_err(|e| {
            Error::Other(format!(
                "the container's process said `{}`: {e}",
                line.trim_end()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Other(format!(
            "the container's process did not set up its network within {SETUP_WAIT:?}"
        ))),
        Err(e) => Err(e).context(|| "read the container's process's report"),
    }
}

/// `fd` moved to a number above 2.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3).context(|| "dup a descriptor above stdio")
}

/// What the container's process is given when `create` forks it.
struct InitSetup<'a> {
    /// Its working directory.
    bundle: &'a Path,
    /// The terminal's slave end, to become its stdio and controlling terminal.
    terminal: Option<&'a OwnedFd>,
    /// `create`'s end of the sync socket, which the child closes: if `create` dies, the child
    /// reads the end of the socket and exits.
    parent_sync: &'a OwnedFd,
    /// The network namespace to move to.
    netns: &'a Namespace,
}

/// Forks the container's process, which runs [`init`] with the start FIFO (open read-write) and
/// its end of the sync socket. There is no exec: the child has this process's code and memory
/// already, which keeps an exec and a start of the runtime out of `create`'s time. The child
/// never returns: it becomes the VMM or exits. The parent's copies of `fifo` and `sync` close.
fn spawn_init(setup: &InitSetup, fifo: OwnedFd, sync: OwnedFd) -> Result<i32> {
    // SAFETY: `create` has one thread here (the cgroup thread starts after), so the child may run
    // any code, allocation included; it leaves only through `exec` or `_exit`, never back into
    // `create`.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context(|| "fork the container's process"),
        0 => {
            // SAFETY: the child's copy of `create`'s end; its owner is never dropped in the
            // child, which leaves through `exec` or `_exit`, so it is closed once.
            unsafe { libc::close(setup.parent_sync.as_raw_fd()) };
            let status = match init(setup, fifo, sync) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("parapet-runc: {e}");
                    1
                }
            };
            // SAFETY: ends the forked child without running the parent's exit handlers or
            // flushing its buffers twice.
            unsafe { libc::_exit(status) }
        }
        pid => Ok(pid),
    }
}

/// The child's first steps: a session of its own, the terminal as stdio and controlling
/// terminal, the bundle as working directory.
fn become_session_leader(setup: &InitSetup) -> Result<()> {
    rustix::process::setsid().context(|| "setsid")?;
    if let Some(slave) = setup.terminal {
        for fd in 0..3 {
            // SAFETY: 0, 1 and 2 are this process's standard descriptors, replaced in place.
            let mut target = unsafe { OwnedFd::from_raw_fd(fd) };
            rustix::io::dup2(slave, &mut target).context(|| "the terminal as stdio")?;
            std::mem::forget(target);
        }
        // SAFETY: fd 0 is open: it was just made the terminal.
        rustix::process::ioctl_tiocsctty(unsafe { BorrowedFd::borrow_raw(0) })
            .context(|| "the terminal as controlling terminal")?;
    }
    std::env::set_current_dir(setup.bundle).context(|| setup.bundle.display().to_string())
}

/// The container's process until `start`. It joins (or makes) its network namespace and
/// plumbs the guest's network there, reports to `create` on the sync socket and reads the command
/// to become, waits for `start`'s byte on the FIFO, then becomes the VMM, which inherits the TAP.
fn init(setup: &InitSetup, fifo: OwnedFd, sync: OwnedFd) -> Result<()> {
    let mut sync = UnixStream::from(sync);
    let set_up = (|| -> Result<Option<(Attached, OwnedFd)>> {
        become_session_leader(setup)?;
        let netns = setup.netns;
        netns.enter()?;
        match netns {
            Namespace::Join(_) => network::plumb(),
            Namespace::Host | Namespace::New => Ok(None),
        }
    })();
    let (report, tap) = match set_up {
        Ok(Some((attached, tap))) => (
            Report::Ready {
                net: Some(attached),
            },
            Some(tap),
        ),
        Ok(None) => (Report::Ready { net: None }, None),
        Err(e) => (
            Report::Failed {
                error: e.to_string(),
            },
            None,
        ),
    };
    let mut line = serde_json::to_string(&report).expect("JSON");
    line.push('\n');
    sync.write_all(line.as_bytes())
        .context(|| "report to create")?;
    if matches!(report, Report::Failed { .. }) {
        // `create` says why; nothing was left behind.
        std::process::exit(1);
    }
    let mut command = Vec::new();
    sync.read_to_end(&mut command)
        .context(|| "read the command from create")?;
    drop(sync);
    let program: Vec<OsString> = command
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let Some((prog, args)) = program.split_first() else {
        // `create` failed and is killing this process.
        std::process::exit(1);
    };

    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(&fifo, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err(Error::Other("the start FIFO closed".into())),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e).context(|| "wait for start"),
        }
    }
    drop(fifo);
    close_inherited_fds();
    if let Some(tap) = &tap {
        // The VMM takes it over as `--net fd=N`.
        rustix::io::fcntl_setfd(tap, FdFlags::empty()).context(|| "pass the TAP on")?;
    }
    let err = Command::new(prog).args(args).exec();
    Err(Error::Io {
        what: format!("run {}", Path::new(prog).display()),
        source: err,
    })
}

/// Marks every descriptor above stderr close-on-exec, so the VMM gets only its stdio (not,
/// say, a socket the shim left open in `create`).
fn close_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: only the descriptor's flags change; a descriptor that has gone (the
        // directory's own) just fails.
        let _ = rustix::io::fcntl_setfd(unsafe { BorrowedFd::borrow_raw(fd) }, FdFlags::CLOEXEC);
    }
}

/// `start`: releases the created container's process.
pub fn start(store: &Store, id: &str) -> Result<()> {
    let mut state = store.load(id)?;
    match state.status() {
        Status::Created => {}
        Status::Running => return Err(bad_status(id, Status::Running, "it has already started")),
        Status::Stopped => return Err(bad_status(id, Status::Stopped, "it cannot start again")),
    }
    let path = store.fifo(id);
    let fifo = rustix::fs::open(
        &path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {}", path.display()))?;
    // The byte goes last: it wakes the container's process, which then competes with this one
    // for the CPU while it becomes the VMM.
    state.status = Status::Running;
    store.save(&state)?;
    let _ = std::fs::remove_file(&path);
    if let Err(e) = rustix::io::write(&fifo, b"0") {
        state.status = Status::Created;
        let _ = store.save(&state);
        return Err(e).context(|| format!("write {}", path.display()));
    }
    Ok(())
}

/// `state`: prints the container's OCI state.
pub fn state(store: &Store, id: &str) -> Result<()> {
    let state = store.load(id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&state.oci_json()).expect("JSON")
    );
    Ok(())
}

/// `kill`: signals the container's process.
pub fn kill(store: &Store, id: &str, signal: &str) -> Result<()> {
    let state = store.load(id)?;
    let sig = parse_signal(signal)?;
    let not_running = || Error::Other(format!("cannot signal `{id}`: container not running"));
    if state.status() == Status::Stopped {
        return Err(not_running());
    }
    let pid = Pid::from_raw(state.pid).ok_or_else(not_running)?;
    match rustix::process::kill_process(pid, sig) {
        Ok(()) => Ok(()),
        Err(Errno::SRCH) => Err(not_running()),
        Err(e) => Err(e).context(|| format!("kill {} {}", state.pid, sig.as_raw())),
    }
}

/// `delete`: forgets a stopped container; a created one, or with `force` a running one, is
/// killed first and waited for.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<()> {
    let state = match store.load(id) {
        Ok(s) => s,
        Err(Error::NotExist(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match state.status() {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&state)?,
        Status::Running if force => kill_and_wait(&state)?,
        Status::Running => {
            return Err(bad_status(
                id,
                Status::Running,
                "stop it first or delete it with --force",
            ));
        }
    }
    release_network(store, id)?;
    cgroup::remove(&state.cgroups);
    store.remove(id)
}

/// Undoes what `create` plumbed in the container's network namespace, if anything.
fn release_network(store: &Store, id: &str) -> Result<()> {
    let path = store.dir(id).join(NETWORK_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(|| path.display().to_string()),
    };
    let record: NetworkRecord = serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    network::release(&record.netns, &record.attached)
}

fn kill_and_wait(state: &State) -> Result<()> {
    if let Some(pid) = Pid::from_raw(state.pid) {
        match rustix::process::kill_process(pid, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(e) => return Err(e).context(|| format!("kill {}", state.pid)),
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    while state.status() != Status::Stopped {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "process {} of `{}` did not die within {KILL_WAIT:?} of SIGKILL",
                state.pid, state.id
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// `ps`: the container's processes: the VMM, while it runs.
pub fn ps(store: &Store, id: &str, format: &str) -> Result<()> {
    let state = store.load(id)?;
    let pids: Vec<i32> = match state.status() {
        Status::Stopped => Vec::new(),
        _ => vec![state.pid],
    };
    match format {
        "json" => println!("{}", serde_json::to_string(&pids).expect("JSON")),
        "table" => {
            println!("PID");
            for pid in pids {
                println!("{pid}");
            }
        }
        other => return Err(Error::Other(format!("unknown format `{other}`"))),
    }
    Ok(())
}

/// `list`: every container under `--root`.
pub fn list(store: &Store, format: &str, quiet: bool) -> Result<()> {
    let states = store.list();
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let all: Vec<_> = states.iter().map(State::oci_json).collect();
            println!("{}", serde_json::to_string(&all).expect("JSON"));
        }
        "table" => {
            println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
            for s in &states {
                let j = s.oci_json();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t",
                    s.id,
                    j["pid"],
                    s.status().as_str(),
                    s.bundle.display(),
                    s.created
                );
            }
        }
        other => return Err(Error::Other(format!("unknown format `{other}`"))),
    }
    Ok(())
}

/// `features`: what this runtime supports, in the shape of runc's `features`.
pub fn features() -> Result<()> {
    let f = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": [],
        "mountOptions": [],
        "annotations": {
            "org.parapet.runtime": "parapet-runc",
        },
    });
    println!("{}", serde_json::to_string_pretty(&f).expect("JSON"));
    Ok(())
}

fn bad_status(id: &str, status: Status, msg: &'static str) -> Error {
    Error::BadStatus {
        id: id.to_string(),
        status: status.as_str(),
        msg,
    }
}

/// A signal by number (`9`) or name (`KILL`, `SIGKILL`, any case).
fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(bad);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let sig = match name {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "ILL" => Signal::ILL,
        "TRAP" => Signal::TRAP,
        "ABRT" | "IOT" => Signal::ABORT,
        "BUS" => Signal::BUS,
        "FPE" => Signal::FPE,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "SEGV" => Signal::SEGV,
        "USR2" => Signal::USR2,
        "PIPE" => Signal::PIPE,
        "ALRM" => Signal::ALARM,
        "TERM" => Signal::TERM,
        "STKFLT" => Signal::STKFLT,
        "CHLD" => Signal::CHILD,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "TSTP" => Signal::TSTP,
        "TTIN" => Signal::TTIN,
        "TTOU" => Signal::TTOU,
        "URG" => Signal::URG,
        "XCPU" => Signal::XCPU,
        "XFSZ" => Signal::XFSZ,
        "VTALRM" => Signal::VTALARM,
        "PROF" => Signal::PROF,
        "WINCH" => Signal::WINCH,
        "IO" | "POLL" => Signal::IO,
        "PWR" => Signal::POWER,
        "SYS" => Signal::SYS,
        _ => return Err(bad()),
    };
    Ok(sig)
}

/// The `parapet` VMM: beside this executable, else on PATH.
fn find_vmm() -> Result<PathBuf> {
    let exe = std::env::current_exe().unwrap_or_default();
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(dir) = exe.parent() {
        let beside = dir.join("parapet");
        if executable(&beside) {
            return Ok(beside);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("parapet"))
        .find(|p| executable(p))
        .ok_or(Error::NoVmm { exe })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        for (s, want) in [
            ("9", Signal::KILL),
            ("15", Signal::TERM),
            ("KILL", Signal::KILL),
            ("SIGTERM", Signal::TERM),
            ("sigusr1", Signal::USR1),
            ("hup", Signal::HUP),
        ] {
            assert_eq!(parse_signal(s).unwrap(), want, "{s}");
        }
        for bad in ["0", "-1", "999", "NOPE", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
