//! `event_channel_op` (hypercall 32): Xen's 2-level event channels (`event_channel.h`).
//!
//! `event_channel_op(cmd, arg_gpa)`. An event channel is a port with one pending bit and one mask
//! bit in the shared-info page. The VMM sets a pending bit (atomically) and, unless the port is
//! masked or `vcpu_info.evtchn_upcall_mask` is set, raises the upcall interrupt
//! (`StartInfo::upcall_vector`). Ports run from 1 to [`NR_PORTS`]` - 1`; port 0 is never valid.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Connect a local port to a remote domain's unbound port.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// Bind a virtual IRQ ([`virq`]) to a new port.
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
/// Close a port.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// Notify the other end of a port.
pub const EVTCHNOP_SEND: u64 = 4;
/// Query a port.
pub const EVTCHNOP_STATUS: u64 = 5;
/// Allocate a port that a remote domain may bind to.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// Unmask a port, re-raising the upcall if it is pending.
pub const EVTCHNOP_UNMASK: u64 = 9;

/// Ports addressable by the 2-level ABI (and by Parapet).
pub const NR_PORTS: u32 = crate::shared_info::NR_EVENT_CHANNELS as u32;

/// A domain id.
pub type DomId = u16;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7ff0;
/// The domain every Parapet guest is.
pub const DOMID_GUEST: DomId = 1;
/// The domain of the VMM's backends (Xen's dom0).
pub const DOMID_BACKEND: DomId = 0;

/// Virtual IRQs.
pub mod virq {
    /// The vCPU's one-shot timer (`set_timer_op`) fired.
    pub const TIMER: u32 = 0;
    /// Console input arrived (Xen's `VIRQ_CONSOLE`). Parapet raises it on the console port
    /// instead; binding it is accepted for compatibility and never fires.
    pub const CONSOLE: u32 = 2;
    /// Parapet's shutdown request: the host asks the guest to power off cleanly (the VMM got
    /// `SIGTERM`). Xen asks through xenstore's `control/shutdown`; Parapet has no xenstore, so
    /// it raises this VIRQ instead. A guest that binds it should power off soon after it fires,
    /// with an exit code of its choosing. It is raised at most once per VMM process; while no
    /// port is bound to it, `SIGTERM` ends the VMM at once.
    ///
    /// The number is Xen's `VIRQ_ARCH_1`: Xen reserves 16–23 (`VIRQ_ARCH_0`…`7`) for each
    /// architecture's own VIRQs, and x86 Xen uses only `VIRQ_ARCH_0` (16, `VIRQ_MCA`), so 17
    /// cannot clash with a Xen VIRQ a PV x86 guest knows. (The gaps below 16 belong to Xen's
    /// common VIRQs, which a future Xen may assign.)
    pub const SHUTDOWN: u32 = 17;
    /// Number of virtual IRQs.
    pub const NR: u32 = 24;
}

/// Port states reported by `EVTCHNOP_status`.
pub mod status {
    /// Not in use.
    pub const CLOSED: u32 = 0;
    /// Allocated, waiting for the remote domain to bind.
    pub const UNBOUND: u32 = 1;
    /// Connected to a port of another domain (or of a VMM backend).
    pub const INTERDOMAIN: u32 = 2;
    /// Bound to a virtual IRQ.
    pub const VIRQ: u32 = 4;
}

/// `EVTCHNOP_alloc_unbound`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AllocUnbound {
    /// In: the allocating domain, `DOMID_SELF`.
    pub dom: DomId,
    /// In: who may bind to it (`DOMID_SELF` for a loop inside the guest).
    pub remote_dom: DomId,
    /// Out: the new port.
    pub port: u32,
}

/// `EVTCHNOP_bind_interdomain`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BindInterdomain {
    /// In: the remote domain (`DOMID_SELF` to connect two of the guest's own ports).
    pub remote_dom: DomId,
    /// Padding.
    pub pad: u16,
    /// In: the remote domain's unbound port.
    pub remote_port: u32,
    /// Out: the new local port.
    pub local_port: u32,
}

/// `EVTCHNOP_bind_virq`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BindVirq {
    /// In: one of [`virq`].
    pub virq: u32,
    /// In: the vCPU, 0.
    pub vcpu: u32,
    /// Out: the new port.
    pub port: u32,
}

/// `EVTCHNOP_close`, `EVTCHNOP_send` and `EVTCHNOP_unmask`: just a port.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PortArg {
    /// The port.
    pub port: u32,
}

/// `EVTCHNOP_status` (Xen's `evtchn_status`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Status {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// In: the port.
    pub port: u32,
    /// Out: one of [`status`].
    pub status: u32,
    /// Out: the vCPU notified (0).
    pub vcpu: u32,
    /// Out, for `UNBOUND`: the domain allowed to bind (low 16 bits). For `INTERDOMAIN`: the
    /// remote domain (low 16 bits) and remote port (high 32 bits). For `VIRQ`: the virtual IRQ.
    pub detail: u64,
}

const _: () = assert!(core::mem::size_of::<Status>() == 24);
