//! `SIGUSR1`: the host asks for a snapshot of the running guest (docs/snapshots.md). The handler
//! only raises a flag and kicks the vCPU thread out of `KVM_RUN`; the vCPU loop takes the flag
//! at its next exit and suspends the domain there.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static VCPU_THREAD: AtomicI32 = AtomicI32::new(0);
static KICK_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    REQUESTED.store(true, SeqCst);
    let thread = VCPU_THREAD.load(SeqCst);
    if thread != 0 {
        // SAFETY: getpid and tgkill are async-signal-safe system calls with no memory
        // arguments; a stale thread ID of this process at worst signals nobody.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                thread,
                KICK_SIGNAL.load(SeqCst),
            );
        }
    }
}

/// Kicks `vcpu_thread` (a kernel thread ID) with `kick` when `SIGUSR1` requests a snapshot;
/// returns whether one was requested before (the caller kicks it then).
pub fn kick_on_snapshot_signal(vcpu_thread: i32, kick: libc::c_int) -> bool {
    KICK_SIGNAL.store(kick, SeqCst);
    VCPU_THREAD.store(vcpu_thread, SeqCst);
    REQUESTED.load(SeqCst)
}

/// Makes `SIGUSR1` request a snapshot rather than end the process: installed first thing, so
/// that a signal early in the run finds it.
pub fn on_snapshot_signal() -> io::Result<()> {
    let handler: extern "C" fn(libc::c_int) = on_usr1;
    // SAFETY: the handler only touches atomics and makes async-signal-safe system calls;
    // SA_RESTART keeps other threads' interrupted system calls going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a snapshot was requested since the last call.
pub fn take_snapshot_request() -> bool {
    REQUESTED.swap(false, SeqCst)
}
