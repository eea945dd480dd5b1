//! Hypercall numbers and the hypercall page.
//!
//! The VMM writes one transfer stub per hypercall number into the hypercall page before the guest
//! starts. Stub `nr` sits at offset `nr * 32` and loads `nr` into RAX, traps to the VMM with the
//! host's transport (see [`Transport`](crate::start_info::Transport)) and returns. Guests never
//! hard-code the trap instruction, so the same kernel runs on every host.

/// Size of one stub in the hypercall page.
pub const STUB_SIZE: usize = 32;
/// Number of stubs (and the exclusive upper bound of hypercall numbers).
pub const NR_STUBS: usize = 4096 / STUB_SIZE;

/// The I/O port a port-I/O stub writes to (`out 0xe8, al`); the VMM reads the arguments from the
/// vCPU registers.
pub const PIO_HYPERCALL_PORT: u16 = 0xe8;

/// The I/O port the event-channel doorbell stub writes the port number to (`out 0xec, eax`).
/// The VMM registers an ioeventfd for each port that a backend thread serves, so those
/// notifications never leave the kernel; any other port exits to the VMM like `EVTCHNOP_send`.
pub const PIO_DOORBELL_PORT: u16 = 0xec;

/// A hypercall number. Numbers are Xen's where the operation is Xen's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Hypercall(pub u32);

impl Hypercall {
    /// Run several hypercalls with one trap ([`multicall`](crate::multicall)).
    pub const MULTICALL: Hypercall = Hypercall(13);
    /// Arm (or cancel, with 0) the one-shot timer: absolute system time in ns.
    pub const SET_TIMER_OP: Hypercall = Hypercall(15);
    /// Hypervisor version and features ([`version`](crate::version)).
    pub const XEN_VERSION: Hypercall = Hypercall(17);
    /// Early/emergency console ([`console`](crate::console)).
    pub const CONSOLE_IO: Hypercall = Hypercall(18);
    /// Grant table operations ([`grant_table`](crate::grant_table)).
    pub const GRANT_TABLE_OP: Hypercall = Hypercall(20);
    /// Per-vCPU operations (reserved).
    pub const VCPU_OP: Hypercall = Hypercall(24);
    /// Scheduler operations: yield, block, shutdown ([`sched`](crate::sched)).
    pub const SCHED_OP: Hypercall = Hypercall(29);
    /// Event channel operations ([`event_channel`](crate::event_channel)).
    pub const EVENT_CHANNEL_OP: Hypercall = Hypercall(32);
    /// Parapet: connect and disconnect split-driver frontends ([`device`](crate::device)).
    pub const DEVICE_OP: Hypercall = Hypercall(64);
    /// Parapet: notify an event channel (`port` in RDI) without a result: the doorbell. Its stub
    /// is `mov eax, edi; out 0xec, eax; ret`, which a backend-served port absorbs in the kernel.
    /// Equivalent to `EVTCHNOP_send`, errors ignored.
    pub const EVTCHN_NOTIFY: Hypercall = Hypercall(127);

    /// The Xen name of this hypercall, for logs and statistics.
    pub const fn name(self) -> &'static str {
        match self.0 {
            13 => "multicall",
            15 => "set_timer_op",
            17 => "xen_version",
            18 => "console_io",
            20 => "grant_table_op",
            24 => "vcpu_op",
            29 => "sched_op",
            32 => "event_channel_op",
            64 => "device_op",
            127 => "evtchn_notify",
            _ => "unknown",
        }
    }

    /// Offset of this hypercall's stub in the hypercall page, if the number has a stub.
    pub const fn stub_offset(self) -> Option<usize> {
        if (self.0 as usize) < NR_STUBS {
            Some(self.0 as usize * STUB_SIZE)
        } else {
            None
        }
    }
}

impl core::fmt::Display for Hypercall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}
