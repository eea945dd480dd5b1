//! `sched_op` (hypercall 29): yield, block, shut down, report a fault.
//!
//! `sched_op(cmd, arg_gpa)`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Give up the CPU; returns at once on a single-vCPU domain. `arg` is ignored.
pub const SCHEDOP_YIELD: u64 = 0;
/// Sleep until an event is pending for this vCPU: the armed `set_timer_op` deadline passes, or
/// (from the PV-core milestone on) an event channel fires. Returns at once if no wake-up source
/// is armed, so a guest cannot hang itself by accident. `arg` is ignored.
pub const SCHEDOP_BLOCK: u64 = 1;
/// Stop the domain; `arg` points at a [`SchedShutdown`]. Does not return on success.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// Parapet extension: the guest took an exception it cannot handle. `arg` points at a
/// [`FaultReport`]; the VMM prints it (with the symbol of `rip`) and stops the domain.
/// Does not return on success.
pub const SCHEDOP_FAULT: u64 = 32;

/// Shutdown reasons (Xen's `SHUTDOWN_*`).
pub mod reason {
    /// Normal power-off: the VMM exits with the guest's `exit_code`.
    pub const POWEROFF: u32 = 0;
    /// Reboot request: the VMM stops and reports it (Parapet does not restart domains).
    pub const REBOOT: u32 = 1;
    /// Suspend (Xen's `SHUTDOWN_suspend`): the VMM writes a snapshot of the domain. The call
    /// returns [`super::SUSPEND_RESUMED`] (0) in a domain restored from that snapshot and
    /// [`super::SUSPEND_CANCELLED`] (1) when the domain goes on where it was (as in Xen); or
    /// `-ENOSYS` if the VMM has nowhere to write a snapshot (docs/snapshots.md).
    pub const SUSPEND: u32 = 2;
    /// The guest crashed (e.g. a panic).
    pub const CRASH: u32 = 3;
    /// A guest watchdog fired.
    pub const WATCHDOG: u32 = 4;
}

/// `SHUTDOWN_suspend` returned in a domain restored from the snapshot it wrote (Xen: "resumed
/// in a new domain"); the generation in start-info has changed.
pub const SUSPEND_RESUMED: u64 = 0;
/// `SHUTDOWN_suspend` returned in the same domain: the snapshot was written (or could not be)
/// and the domain goes on where it was (Xen: "cancelled").
pub const SUSPEND_CANCELLED: u64 = 1;

/// Argument of `SCHEDOP_SHUTDOWN`: Xen's `sched_shutdown` extended with an exit code (Xen reads
/// only `reason`; the extension keeps its layout as a prefix).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SchedShutdown {
    /// One of [`reason`].
    pub reason: u32,
    /// For `POWEROFF`: the VMM's exit status (low 8 bits).
    pub exit_code: u32,
}

/// Argument of `SCHEDOP_FAULT`: the exception frame and registers at the fault.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FaultReport {
    /// Exception vector (0–31).
    pub vector: u64,
    /// Error code pushed by the CPU, or 0 for vectors without one.
    pub error_code: u64,
    /// CR2 for a page fault, else 0.
    pub cr2: u64,
    /// Interrupted RIP.
    pub rip: u64,
    /// Interrupted CS.
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted RSP.
    pub rsp: u64,
    /// Interrupted SS.
    pub ss: u64,
    /// General-purpose registers in the order RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8–R15.
    pub gprs: [u64; 15],
}

/// Names of [`FaultReport::gprs`], in order.
pub const FAULT_GPR_NAMES: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

/// The conventional mnemonic of an exception vector.
pub const fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        _ => "reserved exception",
    }
}
