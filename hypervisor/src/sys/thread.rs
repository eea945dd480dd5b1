//! Threads: ids, signals between them, timer slack.

/// Sets the calling thread's timer slack: how late the kernel may wake it from a timed sleep
/// (50 µs by default, which would make every guest timer late).
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

/// A thread's kernel thread ID, which [`signal_thread`] takes. Portable across C libraries,
/// unlike `pthread_t` (an integer in glibc, a pointer in musl).
pub type ThreadId = libc::pid_t;

/// The calling thread's kernel thread ID.
pub fn current_thread() -> ThreadId {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Sends `signal` to `thread` of this process, which must be alive (not exited); the caller
/// guarantees that.
pub fn signal_thread(thread: ThreadId, signal: libc::c_int) {
    // SAFETY: tgkill takes plain integers and only queues a signal; the process ID pins the
    // target to this process, and the caller guarantees the thread is still alive.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), thread, signal) };
}

/// The host CPU's time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter into EDX:EAX and touches no memory.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
