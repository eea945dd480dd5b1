//! `SIGTERM`: the host asks the guest to shut down (docs/abi.md §7.5).
//!
//! The handler is installed one-shot (`SA_RESETHAND`): the kernel puts `SIGTERM` back to its
//! default action as it enters the handler, so any later `SIGTERM` ends the process at once
//! without running VMM code. The handler itself decides with one atomic load: if the guest has
//! no port bound to `VIRQ_SHUTDOWN`, or no longer runs ([`set_guest_listening`]), it sends
//! `SIGTERM` again to its own thread, which ends the process by the default action as soon as
//! the handler returns, exactly as without a handler; otherwise it raises a flag and kicks the
//! vCPU thread out of `KVM_RUN`, and the vCPU loop raises the VIRQ at its next exit
//! ([`take_shutdown_request`]).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

/// Whether the guest has a port bound to `VIRQ_SHUTDOWN`.
static LISTENING: AtomicBool = AtomicBool::new(false);
static REQUESTED: AtomicBool = AtomicBool::new(false);
static VCPU_THREAD: AtomicI32 = AtomicI32::new(0);
static KICK_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_term(_: libc::c_int) {
    if !LISTENING.load(SeqCst) {
        // SAFETY: the disposition is already SIG_DFL (SA_RESETHAND); SIGTERM is blocked while
        // this handler runs, so the process ends when it returns. getpid, gettid and tgkill are
        // async-signal-safe system calls with no memory arguments.
        unsafe { raise_default() };
        return;
    }
    REQUESTED.store(true, SeqCst);
    let thread = VCPU_THREAD.load(SeqCst);
    if thread != 0 {
        // SAFETY: as above; a stale thread ID of this process at worst signals nobody.
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

/// Sends `SIGTERM` to the calling thread.
///
/// # Safety
///
/// Only async-signal-safe calls: callable from a signal handler.
unsafe fn raise_default() {
    // SAFETY: plain integer system calls, async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid) as libc::pid_t,
            libc::SIGTERM,
        );
    }
}

/// Makes `SIGTERM` a shutdown request for a guest that listens for one (and, as before, the end
/// of the VMM for one that does not). Installed first thing, so that a signal early in the run
/// finds it.
pub fn on_shutdown_signal() -> io::Result<()> {
    let handler: extern "C" fn(libc::c_int) = on_term;
    // SAFETY: the handler only touches atomics and makes async-signal-safe system calls;
    // SA_RESETHAND makes it one-shot (a second SIGTERM has the default action); SA_RESTART keeps
    // other threads' interrupted system calls going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Records whether the guest listens: has a port bound to `VIRQ_SHUTDOWN` (the event-channel
/// table calls it whenever that changes) and runs (the VMM calls it with `false` once the
/// guest's run is over, and between warm-reset invocations). The handler asks the guest only
/// then.
pub fn set_guest_listening(listening: bool) {
    LISTENING.store(listening, SeqCst);
}

/// Kicks `vcpu_thread` (a kernel thread ID) with `kick` when `SIGTERM` asks the guest to shut
/// down; returns whether that was asked before (the caller kicks it then).
pub fn kick_on_shutdown_signal(vcpu_thread: i32, kick: libc::c_int) -> bool {
    KICK_SIGNAL.store(kick, SeqCst);
    VCPU_THREAD.store(vcpu_thread, SeqCst);
    REQUESTED.load(SeqCst)
}

/// Whether `SIGTERM` asked the guest to shut down since the last call.
pub fn take_shutdown_request() -> bool {
    REQUESTED.swap(false, SeqCst)
}

/// Ends the process as `SIGTERM`'s default action does, for a request that found no port
/// bound after all (the guest closed it after the handler looked). Only valid after a request:
/// the handler has run, so the disposition is the default one.
pub fn terminate_by_sigterm() -> ! {
    // SAFETY: async-signal-safe system calls; SIGTERM is not blocked on the VMM's threads, so
    // the default action ends the process before tgkill returns. Should it not (a blocked
    // signal), `_exit` with the status a shell would show.
    unsafe {
        raise_default();
        libc::_exit(128 + libc::SIGTERM)
    }
}
