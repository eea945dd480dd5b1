//! Event channels (docs/abi.md §7): [`Port`]s, the `event_channel_op` operations, the doorbell,
//! per-port handlers, and the upcall that runs them.
//!
//! # Ports, handlers and latches
//!
//! A port is one bit in the shared-info page's `evtchn_pending` bitmap and one in `evtchn_mask`
//! (which this module reaches through `page`'s view of the shared-info page, as atomics).
//! When a port fires, the upcall handler clears its pending bit, then
//!
//! 1. sets the port's *latch* (a guest-private bit that [`take_event`] and
//!    [`wait_any`](crate::timer::wait_any) consume: "this port fired since you last looked"), and
//! 2. runs the handler registered with [`set_handler`], if any, with interrupts masked.
//!
//! Handlers are plain `fn(Port)`s in a static table (no allocation), which is locked only with
//! interrupts masked. They run in interrupt context: they must be short, must not block or
//! sleep, and may print (the console falls back to polling there).
//!
//! # Masking
//!
//! [`mask`] and [`unmask_local`] flip the port's mask bit in shared memory (no hypercall);
//! [`unmask_local`] then handles an event that pended while the port was masked, as §7.2
//! requires. [`unmask`] is `EVTCHNOP_unmask`, which makes the VMM re-raise a pending port.
//!
//! # The upcall
//!
//! The VMM raises `StartInfo::upcall_vector`; its IDT gate (`idt`) is a naked stub that saves
//! every caller-saved register, aligns the stack and calls the upcall handler on the interrupted
//! stack. The handler masks interrupts (kvm_pvm clears the VIF byte when it delivers through the
//! gate; the handler makes sure of it), sends the x2APIC EOI (`wrmsr 0x80b`, handled in the
//! kernel), clears `evtchn_upcall_pending`, and scans: it exchanges `evtchn_pending_sel` with 0
//! and, for every word it names, test-and-clears each bit of `pending & !mask` before
//! dispatching it, until `evtchn_pending_sel` stays 0. The stub then restores the registers,
//! sets the VIF byte again (kvm_pvm) and returns with `iretq`,
//! which traps on kvm_pvm, so an upcall that was held back meanwhile is delivered right after it
//! returns rather than nested inside it. On VT-x/AMD-V the interrupt gate and `iretq` do the
//! masking.
//!
//! # Interrupts at boot
//!
//! The SDK boots with interrupts masked, installs the upcall gate with the rest of the IDT,
//! starts event handling on the shared-info page (`init`), starts the console ring, and then — just before the
//! guest's `main` — clears `evtchn_upcall_mask` and enables interrupts (VIF byte 1, or `sti`).
//! `main` therefore runs with event delivery on; handlers run whenever an unmasked port fires.
//! A newly allocated port starts unmasked; the ports the domain builder connects to backends
//! start masked until their driver unmasks them.
//!
//! Before boot (and on the host) the bitmap operations do nothing and the hypercalls return
//! `-ENOSYS`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parapet_abi::Errno;
use parapet_abi::event_channel::{
    AllocUnbound, BindInterdomain, BindVirq, DOMID_SELF, DomId, NR_PORTS, Status, status,
};
use parapet_abi::shared_info::EVTCHN_WORDS;
use spin::Mutex;

pub use crate::cpu::X2APIC_EOI_MSR;
use crate::page::SharedInfoPage;
use crate::{hypercall, pvops};

/// An event-channel port: 1 … [`NR_PORTS`]` - 1` for a valid one (port 0 is never valid).
///
/// A typed port number, so that ports and the other numbers of the ABI (grant references,
/// device indices, virtual IRQs) cannot be mixed up; the raw number is `.0` (what the ABI's
/// structures, such as `DeviceInfo::evtchn`, carry). Functions of this module that take a port
/// treat an invalid one as the ABI does: the hypercalls refuse it, the bitmap operations ignore
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Port(pub u32);

impl core::fmt::Display for Port {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// A per-port event handler. Runs in interrupt context with interrupts masked.
pub type Handler = fn(Port);

/// Handlers by port. Locked only with interrupts masked (handlers run masked; thread-context
/// users hold `pvops::irq_save`), so the lock is never contended on the one vCPU.
static HANDLERS: Mutex<[Option<Handler>; NR_PORTS as usize]> =
    Mutex::new([None; NR_PORTS as usize]);
/// Ports that fired since their latch was last consumed.
static LATCHES: [AtomicU64; EVTCHN_WORDS] = [const { AtomicU64::new(0) }; EVTCHN_WORDS];
/// Upcalls taken.
static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Port events dispatched (by upcalls and by local unmasks).
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Whether the CPU is inside the upcall handler (or a handler run by [`unmask_local`]).
static IN_HANDLER: AtomicBool = AtomicBool::new(false);
/// Whether the boot code has started event handling (`init`).
static STARTED: AtomicBool = AtomicBool::new(false);

/// The shared-info page's event words, once event handling has started.
fn shared() -> Option<SharedInfoPage> {
    if !STARTED.load(Ordering::Acquire) {
        return None;
    }
    SharedInfoPage::get()
}

/// Starts event handling on the shared-info page. Called once by the boot code (interrupts
/// still masked).
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init() {
    STARTED.store(true, Ordering::Release);
}

/// Lets the VMM send upcalls: clears `evtchn_upcall_mask` (it does not touch the interrupt
/// flag). If an upcall pended meanwhile, it is delivered once interrupts are enabled.
pub fn enable_upcalls() {
    if let Some(sh) = shared() {
        sh.upcall_mask().store(0, Ordering::SeqCst);
        if sh.upcall_pending().load(Ordering::SeqCst) != 0 && !in_handler() {
            // §7.2: whoever clears the mask runs the handler for an upcall that pended.
            let _irq = pvops::irq_save();
            IN_HANDLER.store(true, Ordering::SeqCst);
            scan(sh);
            IN_HANDLER.store(false, Ordering::SeqCst);
        }
    }
}

/// Sets `evtchn_upcall_mask`: the VMM pends events without interrupting. Returns the old value.
pub fn disable_upcalls() -> bool {
    shared().is_some_and(|sh| sh.upcall_mask().swap(1, Ordering::SeqCst) != 0)
}

/// Whether the vCPU's `evtchn_upcall_pending` is set.
pub fn upcall_pending() -> bool {
    shared().is_some_and(|sh| sh.upcall_pending().load(Ordering::SeqCst) != 0)
}

/// Splits a port into its bitmap word and bit, or `None` for port 0 and ports ≥ [`NR_PORTS`].
fn word_bit(Port(port): Port) -> Option<(usize, u64)> {
    (port != 0 && port < NR_PORTS).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
}

// ---------------------------------------------------------------------------------------------
// Hypercalls.

/// `EVTCHNOP_alloc_unbound`: a new port that `remote_dom` may bind to (`DOMID_SELF` for a loop
/// inside the guest). The port starts unmasked.
pub fn alloc_unbound(remote_dom: DomId) -> Result<Port, Errno> {
    let mut arg = AllocUnbound {
        dom: DOMID_SELF,
        remote_dom,
        port: 0,
    };
    hypercall::evtchn_alloc_unbound(&mut arg)?;
    Ok(Port(arg.port))
}

/// `EVTCHNOP_bind_interdomain`: a new local port connected to `remote_port` of `remote_dom`
/// (`DOMID_SELF`: another port of this guest, giving a loop).
pub fn bind_interdomain(remote_dom: DomId, remote_port: Port) -> Result<Port, Errno> {
    let mut arg = BindInterdomain {
        remote_dom,
        pad: 0,
        remote_port: remote_port.0,
        local_port: 0,
    };
    hypercall::evtchn_bind_interdomain(&mut arg)?;
    Ok(Port(arg.local_port))
}

/// `EVTCHNOP_bind_virq`: a new port for virtual IRQ `virq` (see
/// [`parapet_abi::event_channel::virq`]) on vCPU 0.
pub fn bind_virq(virq: u32) -> Result<Port, Errno> {
    let mut arg = BindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    hypercall::evtchn_bind_virq(&mut arg)?;
    Ok(Port(arg.port))
}

/// `EVTCHNOP_send`: raises the other end of `port`. Costs an exit; prefer [`notify`].
pub fn send(port: Port) -> Result<(), Errno> {
    hypercall::evtchn_send(port.0).map(drop)
}

/// `EVTCHNOP_close`. The handler stays registered; remove it with [`clear_handler`].
pub fn close(port: Port) -> Result<(), Errno> {
    hypercall::evtchn_close(port.0).map(drop)
}

/// `EVTCHNOP_unmask`: clears the mask bit; the VMM re-raises the port if it is pending.
/// [`unmask_local`] does the same without a hypercall.
pub fn unmask(port: Port) -> Result<(), Errno> {
    hypercall::evtchn_unmask(port.0).map(drop)
}

/// What `EVTCHNOP_status` says about a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortStatus {
    /// Not in use.
    Closed,
    /// Allocated; `remote_dom` may bind to it.
    Unbound {
        /// The domain allowed to bind.
        remote_dom: DomId,
    },
    /// Connected to `remote_port` of `remote_dom`.
    Interdomain {
        /// The remote domain (`DOMID_GUEST` for a loop, `DOMID_BACKEND` for a backend).
        remote_dom: DomId,
        /// The remote port.
        remote_port: Port,
    },
    /// Bound to a virtual IRQ.
    Virq(u32),
    /// A status this SDK does not know.
    Other {
        /// The raw status.
        status: u32,
        /// The raw detail.
        detail: u64,
    },
}

impl PortStatus {
    /// Decodes `EVTCHNOP_status`'s output fields.
    pub fn decode(raw_status: u32, detail: u64) -> PortStatus {
        match raw_status {
            status::CLOSED => PortStatus::Closed,
            status::UNBOUND => PortStatus::Unbound {
                remote_dom: detail as DomId,
            },
            status::INTERDOMAIN => PortStatus::Interdomain {
                remote_dom: detail as DomId,
                remote_port: Port((detail >> 32) as u32),
            },
            status::VIRQ => PortStatus::Virq(detail as u32),
            other => PortStatus::Other {
                status: other,
                detail,
            },
        }
    }
}

/// `EVTCHNOP_status` of one of this guest's ports.
pub fn status(port: Port) -> Result<PortStatus, Errno> {
    let mut arg = Status {
        dom: DOMID_SELF,
        port: port.0,
        ..Default::default()
    };
    hypercall::evtchn_status(&mut arg)?;
    Ok(PortStatus::decode(arg.status, arg.detail))
}

/// Notifies the other end of `port` through the doorbell (hypercall-page stub 127,
/// `Hypercall::EVTCHN_NOTIFY`): for a port served by a backend thread this signals the backend
/// inside the kernel without an exit to the VMM; any other port exits and is treated as
/// [`send`]. Errors are ignored.
#[inline]
pub fn notify(port: Port) {
    hypercall::evtchn_notify(port.0);
}

// ---------------------------------------------------------------------------------------------
// Bitmaps.

/// Sets `port`'s mask bit: the VMM keeps its events pending without an upcall.
pub fn mask(port: Port) {
    if let (Some(sh), Some((w, bit))) = (shared(), word_bit(port)) {
        sh.mask(w).fetch_or(bit, Ordering::SeqCst);
    }
}

/// Clears `port`'s mask bit in shared memory (no hypercall), then handles an event that pended
/// while it was masked: its latch is set and its handler runs, right here with interrupts
/// masked.
pub fn unmask_local(port: Port) {
    let (Some(sh), Some((w, bit))) = (shared(), word_bit(port)) else {
        return;
    };
    let _irq = pvops::irq_save();
    sh.mask(w).fetch_and(!bit, Ordering::SeqCst);
    if sh.pending(w).fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
        let nested = IN_HANDLER.swap(true, Ordering::SeqCst);
        dispatch(port);
        IN_HANDLER.store(nested, Ordering::SeqCst);
    }
}

/// Whether `port`'s mask bit is set.
pub fn is_masked(port: Port) -> bool {
    match (shared(), word_bit(port)) {
        (Some(sh), Some((w, bit))) => sh.mask(w).load(Ordering::SeqCst) & bit != 0,
        _ => false,
    }
}

/// Whether `port`'s pending bit is set (it fired and has not been handled: it is masked, or
/// interrupts are).
pub fn is_pending(port: Port) -> bool {
    match (shared(), word_bit(port)) {
        (Some(sh), Some((w, bit))) => sh.pending(w).load(Ordering::SeqCst) & bit != 0,
        _ => false,
    }
}

/// Clears `port`'s pending bit; returns whether it was set. The handler does not run.
pub fn clear_pending(port: Port) -> bool {
    match (shared(), word_bit(port)) {
        (Some(sh), Some((w, bit))) => sh.pending(w).fetch_and(!bit, Ordering::SeqCst) & bit != 0,
        _ => false,
    }
}

/// Consumes `port`'s latch: whether the port fired (was dispatched) since the last call.
pub fn take_event(port: Port) -> bool {
    match word_bit(port) {
        Some((w, bit)) => LATCHES[w].fetch_and(!bit, Ordering::SeqCst) & bit != 0,
        None => false,
    }
}

/// Whether `port`'s latch is set, without consuming it.
pub fn event_seen(port: Port) -> bool {
    word_bit(port).is_some_and(|(w, bit)| LATCHES[w].load(Ordering::SeqCst) & bit != 0)
}

// ---------------------------------------------------------------------------------------------
// Handlers and the upcall.

/// Registers `handler` for `port`, replacing (and returning) the previous one. Returns `None`
/// and registers nothing for an invalid port.
pub fn set_handler(port: Port, handler: Handler) -> Option<Handler> {
    word_bit(port)?;
    let _irq = pvops::irq_save();
    HANDLERS.lock()[port.0 as usize].replace(handler)
}

/// Removes `port`'s handler and returns it.
pub fn clear_handler(port: Port) -> Option<Handler> {
    word_bit(port)?;
    let _irq = pvops::irq_save();
    HANDLERS.lock()[port.0 as usize].take()
}

/// `port`'s handler.
pub fn handler(port: Port) -> Option<Handler> {
    word_bit(port)?;
    let _irq = pvops::irq_save();
    HANDLERS.lock()[port.0 as usize]
}

/// Upcalls taken since boot.
pub fn upcall_count() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// Port events dispatched since boot.
pub fn event_count() -> u64 {
    EVENTS.load(Ordering::Relaxed)
}

/// Whether the code calling this runs inside an event handler (interrupt context).
pub fn in_handler() -> bool {
    IN_HANDLER.load(Ordering::Relaxed)
}

/// Latches `port` and runs its handler.
fn dispatch(port: Port) {
    EVENTS.fetch_add(1, Ordering::Relaxed);
    if let Some((w, bit)) = word_bit(port) {
        LATCHES[w].fetch_or(bit, Ordering::SeqCst);
    }
    if let Some(h) = handler(port) {
        h(port);
    }
}

/// §7.2's scan: clear `evtchn_upcall_pending`, then drain `evtchn_pending_sel` and each word's
/// unmasked pending bits, test-and-clearing each bit before dispatching its port. Calls
/// `on_event` for every port it takes.
fn scan_with(sh: SharedInfoPage, mut on_event: impl FnMut(Port)) {
    sh.upcall_pending().store(0, Ordering::SeqCst);
    loop {
        let mut sel = sh.pending_sel().swap(0, Ordering::SeqCst);
        if sel == 0 {
            break;
        }
        while sel != 0 {
            let w = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            if w >= EVTCHN_WORDS {
                break;
            }
            loop {
                let ready =
                    sh.pending(w).load(Ordering::SeqCst) & !sh.mask(w).load(Ordering::SeqCst);
                if ready == 0 {
                    break;
                }
                let bit = 1u64 << ready.trailing_zeros();
                if sh.pending(w).fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
                    on_event(Port(w as u32 * 64 + ready.trailing_zeros()));
                }
            }
        }
    }
}

fn scan(sh: SharedInfoPage) {
    scan_with(sh, dispatch);
}

/// The Rust half of the upcall, called by the IDT stub (`idt`) with every caller-saved
/// register saved, on the interrupted stack.
#[cfg(target_os = "none")]
pub(crate) extern "C" fn upcall_handler() {
    // kvm_pvm clears the VIF byte when it delivers through the gate (measured); keep it clear
    // on every platform so that nothing nests. The stub sets it again just before `iretq`.
    pvops::irq_disable();
    let nested = IN_HANDLER.swap(true, Ordering::SeqCst);
    crate::cpu::x2apic_eoi();
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    if let Some(sh) = shared() {
        scan(sh);
    }
    IN_HANDLER.store(nested, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn page() -> SharedInfoPage {
        SharedInfoPage::leaked()
    }

    fn raise(sh: SharedInfoPage, port: Port) {
        let (w, bit) = word_bit(port).unwrap();
        let was = sh.pending(w).fetch_or(bit, Ordering::SeqCst);
        if was & bit == 0 && sh.mask(w).load(Ordering::SeqCst) & bit == 0 {
            sh.pending_sel().fetch_or(1 << w, Ordering::SeqCst);
            sh.upcall_pending().store(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn scan_takes_unmasked_ports_in_order_and_clears_them() {
        let sh = page();
        sh.mask(1).store(1 << 3, Ordering::SeqCst); // port 67 masked
        for p in [5, 64, 67, 130, 4095] {
            raise(sh, Port(p));
        }
        let mut seen = Vec::new();
        scan_with(sh, |p| seen.push(p.0));
        assert_eq!(seen, [5, 64, 130, 4095]);
        assert_eq!(sh.upcall_pending().load(Ordering::SeqCst), 0);
        assert_eq!(sh.pending_sel().load(Ordering::SeqCst), 0);
        // The masked port stays pending for whoever unmasks it.
        assert_eq!(sh.pending(1).load(Ordering::SeqCst), 1 << 3);
        assert_eq!(sh.pending(0).load(Ordering::SeqCst), 0);
    }

    #[test]
    fn scan_picks_up_ports_raised_by_a_handler() {
        let sh = page();
        raise(sh, Port(9));
        let mut seen = Vec::new();
        scan_with(sh, |p| {
            seen.push(p.0);
            if p == Port(9) {
                raise(sh, Port(200));
            }
        });
        assert_eq!(seen, [9, 200]);
    }

    #[test]
    fn status_details_decode() {
        assert_eq!(PortStatus::decode(0, 0), PortStatus::Closed);
        assert_eq!(
            PortStatus::decode(1, 0x7ff0),
            PortStatus::Unbound { remote_dom: 0x7ff0 }
        );
        assert_eq!(
            PortStatus::decode(2, 1 | (12 << 32)),
            PortStatus::Interdomain {
                remote_dom: 1,
                remote_port: Port(12)
            }
        );
        assert_eq!(PortStatus::decode(4, 0), PortStatus::Virq(0));
    }

    #[test]
    fn handlers_and_latches_without_a_page() {
        fn h(_: Port) {}
        let p = Port(7);
        assert!(set_handler(Port(0), h).is_none());
        assert!(set_handler(p, h).is_none());
        assert!(handler(p).is_some());
        assert!(clear_handler(p).is_some());
        assert!(!take_event(p));
        dispatch(p);
        assert!(event_seen(p));
        assert!(take_event(p));
        assert!(!take_event(p));
        assert!(!is_pending(p));
        assert_eq!(send(p), Err(Errno::ENOSYS));
        assert_eq!(alloc::format!("{p} {p:?}"), "7 Port(7)");
    }
}
