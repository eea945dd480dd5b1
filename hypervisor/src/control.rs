//! Reaching the vCPU thread from any other thread: messages ([`Control`]), and the kick that
//! interrupts its `KVM_RUN` so that it reads them ([`VcpuWake`], [`kick_signal`]).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

/// Messages to a running vCPU thread (it is kicked out of `KVM_RUN` to read them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop now (timeout, or the VMM is shutting down).
    Stop,
    /// A backend caught the guest breaking its protocol: stop it with this report.
    Fault(String),
    /// The debugger wants the guest paused (gdb's Ctrl-C).
    DebugInterrupt,
}

/// The signal that kicks a vCPU out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// Whether the vCPU is blocked in `SCHEDOP_block`, and how to wake it without an event.
#[derive(Debug, Default)]
pub struct VcpuWake {
    blocked: AtomicBool,
    /// Kernel thread ID of the vCPU thread, 0 until it runs.
    thread: AtomicI32,
}

impl VcpuWake {
    /// Records the calling thread as the vCPU thread.
    pub fn set_vcpu_thread(&self) {
        self.thread.store(crate::sys::current_thread(), SeqCst);
    }

    /// Marks the vCPU blocked (or not); returns the previous state.
    pub fn set_blocked(&self, blocked: bool) -> bool {
        self.blocked.swap(blocked, SeqCst)
    }

    /// Whether the vCPU is blocked.
    pub fn blocked(&self) -> bool {
        self.blocked.load(SeqCst)
    }

    /// Interrupts the vCPU thread's `KVM_RUN` (a halted vCPU returns with `EINTR`).
    pub fn kick(&self) {
        let thread = self.thread.load(SeqCst);
        if thread != 0 {
            // The vCPU thread is the main thread, which outlives every thread that kicks it: the
            // VMM stops them all before it returns.
            crate::sys::signal_thread(thread, kick_signal());
        }
    }
}
