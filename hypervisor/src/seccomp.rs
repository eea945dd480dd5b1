//! Seccomp filters, one per VMM thread (as Firecracker does): each thread may make only the
//! system calls its job needs. Any other system call raises `SIGSYS`, whose handler prints
//! `parapet: error: seccomp: thread NAME made forbidden system call NR` and ends the process
//! with status 1.
//!
//! Every thread the VMM starts goes through [`spawn`], which installs the thread's filter before
//! it runs anything else and returns only once it is installed; the vCPU thread installs its own
//! with [`install`] just before the guest's first instruction. So no guest code runs while an
//! unfiltered VMM thread exists (the kernel keeps filters across `clone`, and a thread's filters
//! only ever add up). Threads started after the guest runs (a backend on `DEVOP_connect`, the
//! timer on the first `set_timer_op`) come from the `spawner` thread, which is allowed to create
//! threads, so the vCPU thread is not.
//!
//! `parapet run --no-seccomp` turns this off, for debugging. For tests, the environment variable
//! `PARAPET_SECCOMP_SELFTEST=NAME` makes the thread named `NAME` make a forbidden system call
//! right after its filter is installed.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

/// What a thread does, which decides its filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The vCPU (the main thread once the guest runs).
    Vcpu,
    /// The vCPU thread when it also serves gdb (`--gdb`): the vCPU's calls and the socket's.
    DebuggedVcpu,
    /// Watches gdb's connection for Ctrl-C while the guest runs.
    GdbWatch,
    /// Writes a core dump (`--core`).
    CoreDump,
    /// The console backend.
    Console,
    /// A block backend.
    Block,
    /// A network backend.
    Net,
    /// The loopback backend.
    Loopback,
    /// The one-shot timer.
    Timer,
    /// The `--timeout` watchdog.
    Watchdog,
    /// Starts the threads that begin after the guest runs.
    Spawner,
}

impl Role {
    #[cfg(test)]
    const ALL: [Role; 11] = [
        Role::Vcpu,
        Role::DebuggedVcpu,
        Role::GdbWatch,
        Role::CoreDump,
        Role::Console,
        Role::Block,
        Role::Net,
        Role::Loopback,
        Role::Timer,
        Role::Watchdog,
        Role::Spawner,
    ];

    /// The system calls the role needs beyond [`BASE`].
    fn extra(self) -> &'static [libc::c_long] {
        use libc::*;
        match self {
            // KVM ioctls, the stats fd, eventfds for new backends, the kick signal, reading the
            // kernel file again for a fault report, and the teardown child (`fork`, only as a
            // process: see `rules`).
            Role::Vcpu => &[
                SYS_ioctl,
                SYS_pread64,
                SYS_lseek,
                SYS_fstat,
                SYS_statx,
                SYS_newfstatat,
                SYS_eventfd2,
                SYS_fcntl,
                SYS_clone,
                // musl's fork() is the fork system call (glibc's is clone).
                SYS_fork,
                SYS_close_range,
                SYS_pipe2,
                SYS_set_robust_list,
                SYS_sched_getaffinity,
                // Writing a snapshot (`--snapshot`): into the file opened at start, then renamed
                // over the target (or removed if the guest never suspends).
                SYS_pwrite64,
                SYS_ftruncate,
                SYS_fsync,
                SYS_rename,
                SYS_renameat,
                SYS_renameat2,
                SYS_unlink,
                SYS_unlinkat,
                SYS_linkat,
                SYS_getcwd,
            ],
            // The vCPU's calls (added in `allowed`) and the gdb connection's.
            Role::DebuggedVcpu => &[SYS_recvfrom, SYS_sendto, SYS_setsockopt, SYS_shutdown],
            Role::GdbWatch => &[],
            // Creating the core file, writing it and making it durable.
            Role::CoreDump => &[
                SYS_openat,
                SYS_pwrite64,
                SYS_pwritev,
                SYS_lseek,
                SYS_fstat,
                SYS_statx,
                SYS_newfstatat,
                SYS_ftruncate,
                SYS_fsync,
                SYS_fdatasync,
            ],
            // `ioctl` also for TIOCGPGRP and `getpgrp`: whether the VMM is in the foreground of
            // the terminal that is its standard input.
            Role::Console => &[
                SYS_fcntl,
                SYS_fstat,
                SYS_statx,
                SYS_newfstatat,
                SYS_ioctl,
                SYS_getpgrp,
            ],
            Role::Block => &[
                SYS_pread64,
                SYS_pwrite64,
                SYS_preadv,
                SYS_pwritev,
                SYS_preadv2,
                SYS_pwritev2,
                SYS_fdatasync,
                SYS_fsync,
                SYS_fallocate,
            ],
            Role::Net => &[SYS_readv, SYS_writev],
            Role::Loopback => &[],
            Role::Timer => &[SYS_prctl],
            Role::Watchdog => &[],
            // Creating threads and letting them install their own filter (`prctl`
            // no-new-privileges, `seccomp`), plus whatever those threads need (the kernel keeps
            // the spawner's filter on them too).
            Role::Spawner => &[
                SYS_seccomp,
                SYS_clone,
                SYS_clone3,
                SYS_set_robust_list,
                SYS_rseq,
                SYS_prctl,
                SYS_sched_getaffinity,
            ],
        }
    }

    /// The thread name, as the kernel shows it and as the SIGSYS message names it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Vcpu => "vcpu",
            Role::DebuggedVcpu => "vcpu",
            Role::GdbWatch => "gdb-watch",
            Role::CoreDump => "core-dump",
            Role::Console => "console",
            Role::Block => "block",
            Role::Net => "net",
            Role::Loopback => "loopback",
            Role::Timer => "timer",
            Role::Watchdog => "watchdog",
            Role::Spawner => "spawner",
        }
    }
}

/// What every thread needs: memory, locks and channels, signals, time, `poll`, reading and
/// writing its descriptors (standard error for logs and the SIGSYS message), kicking the vCPU
/// thread, and exiting.
const BASE: &[libc::c_long] = {
    use libc::*;
    &[
        SYS_read,
        SYS_write,
        SYS_close,
        // F_GETFD: debug builds check a descriptor is open before closing it.
        SYS_fcntl,
        SYS_futex,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_brk,
        SYS_rt_sigreturn,
        SYS_rt_sigprocmask,
        SYS_sigaltstack,
        SYS_sched_yield,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_poll,
        SYS_ppoll,
        SYS_getrandom,
        SYS_gettid,
        SYS_getpid,
        SYS_tgkill,
        SYS_restart_syscall,
        SYS_exit,
        SYS_exit_group,
    ]
};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The threads that have a filter: name and how many system calls it allows (for `--stats`).
static INSTALLED: Mutex<Vec<(&'static str, usize)>> = Mutex::new(Vec::new());
/// The spawner's queue, once it runs.
static SPAWNER: OnceLock<Mutex<crossbeam_channel::Sender<SpawnRequest>>> = OnceLock::new();

thread_local! {
    static FILTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

type SpawnRequest = (
    Box<dyn FnOnce() -> io::Result<JoinHandle<()>> + Send>,
    crossbeam_channel::Sender<io::Result<JoinHandle<()>>>,
);

/// Turns filtering on for this process and installs the `SIGSYS` reporter. Call once, before
/// any thread is started.
pub fn enable() -> io::Result<()> {
    crate::sys::install_sigsys_reporter()?;
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Whether filters are installed.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// The system calls `role` may make, sorted and without duplicates.
pub fn allowed(role: Role) -> Vec<libc::c_long> {
    let mut calls: Vec<libc::c_long> = BASE.iter().chain(role.extra()).copied().collect();
    if role == Role::Spawner {
        // The threads it starts inherit its filter until they install their own.
        calls.extend(
            [Role::Block, Role::Net, Role::Loopback, Role::Timer]
                .iter()
                .flat_map(|r| r.extra()),
        );
    }
    if role == Role::DebuggedVcpu {
        calls.extend(Role::Vcpu.extra());
    }
    calls.sort_unstable();
    calls.dedup();
    calls
}

/// The BPF program for `role`: its system calls allowed, anything else `SIGSYS`.
fn program(role: Role) -> Result<BpfProgram, seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed(role)
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    if matches!(role, Role::Vcpu | Role::DebuggedVcpu) {
        // `fork` for the teardown child, never a thread: CLONE_THREAD must be clear.
        let no_thread = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )?;
        rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![no_thread])?]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

/// Installs `role`'s filter on the calling thread (if filtering is on).
pub fn install(role: Role) -> io::Result<()> {
    if !enabled() {
        return Ok(());
    }
    let program = program(role).map_err(io::Error::other)?;
    crate::sys::set_sigsys_label(role.name());
    seccompiler::apply_filter(&program).map_err(io::Error::other)?;
    FILTERED.with(|f| f.set(true));
    let count = allowed(role).len();
    INSTALLED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((role.name(), count));
    tracing::info!(
        "seccomp: filter installed on thread {} ({count} system calls allowed)",
        role.name()
    );
    if std::env::var_os("PARAPET_SECCOMP_SELFTEST").is_some_and(|v| v == role.name()) {
        crate::sys::forbidden_system_call();
    }
    Ok(())
}

/// The filters installed so far, as `--stats` lines: `seccomp.NAME` = allowed system calls.
pub fn stats() -> Vec<(String, u64)> {
    INSTALLED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, n)| (format!("seccomp.{name}"), *n as u64))
        .collect()
}

/// Starts a thread with `role`'s name and filter and runs `f` on it; returns once the filter is
/// installed. From a thread that already has a filter, the spawner starts it.
pub fn spawn(role: Role, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    let start = move || spawn_here(role, f);
    if !enabled() || !FILTERED.with(|f| f.get()) {
        return start();
    }
    let queue = SPAWNER
        .get()
        .ok_or_else(|| io::Error::other("the spawner thread is not running"))?
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    queue
        .send((Box::new(start), reply_tx))
        .map_err(|_| io::Error::other("the spawner thread has stopped"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread has stopped"))?
}

fn spawn_here(role: Role, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name(role.name().into())
        .spawn(move || {
            let installed = install(role);
            let ok = installed.is_ok();
            let _ = ready_tx.send(installed);
            if ok {
                f();
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(io::Error::other(format!(
                "cannot install the seccomp filter of thread {}: {e}",
                role.name()
            )))
        }
        Err(_) => Err(io::Error::other(format!(
            "thread {} ended before its seccomp filter was installed",
            role.name()
        ))),
    }
}

/// Starts the spawner thread (if filtering is on). Call before the vCPU thread installs its
/// filter.
pub fn start_spawner() -> io::Result<()> {
    if !enabled() || SPAWNER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = crossbeam_channel::unbounded::<SpawnRequest>();
    spawn(Role::Spawner, move || {
        for (start, reply) in rx {
            let _ = reply.send(start());
        }
    })?;
    let _ = SPAWNER.set(Mutex::new(tx));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_compiles_to_a_filter() {
        for role in Role::ALL {
            let program = program(role).unwrap();
            assert!(!program.is_empty());
        }
    }

    #[test]
    fn roles_get_only_what_they_need() {
        let vcpu = allowed(Role::Vcpu);
        assert!(vcpu.contains(&libc::SYS_ioctl));
        assert!(
            !vcpu.contains(&libc::SYS_clone3),
            "the vCPU starts no threads"
        );
        assert!(!vcpu.contains(&libc::SYS_openat), "the vCPU opens no files");
        let debugged = allowed(Role::DebuggedVcpu);
        assert!(vcpu.iter().all(|nr| debugged.contains(nr)));
        assert!(debugged.contains(&libc::SYS_recvfrom));
        assert!(!debugged.contains(&libc::SYS_openat));
        assert!(
            !debugged.contains(&libc::SYS_accept4),
            "gdb connects before the guest runs"
        );
        assert!(allowed(Role::CoreDump).contains(&libc::SYS_openat));
        let block = allowed(Role::Block);
        assert!(block.contains(&libc::SYS_fdatasync));
        assert!(!block.contains(&libc::SYS_ioctl));
        for role in [Role::Console, Role::Loopback, Role::Timer, Role::Watchdog] {
            let calls = allowed(role);
            for forbidden in [
                libc::SYS_openat,
                libc::SYS_execve,
                libc::SYS_socket,
                libc::SYS_clone,
                libc::SYS_fdatasync,
            ] {
                assert!(!calls.contains(&forbidden), "{role:?} allows {forbidden}");
            }
        }
        let spawner = allowed(Role::Spawner);
        assert!(spawner.contains(&libc::SYS_clone3));
        assert!(
            spawner.contains(&libc::SYS_fdatasync),
            "for the block threads it starts"
        );
        assert!(!spawner.contains(&libc::SYS_openat));
    }
}
