//! Paravirtual operations: privileged operations done the way the platform wants them
//! (docs/abi.md §5).
//!
//! | operation | `kvm-pvm` (start-info `flags & VIF`) | `kvm-hw` |
//! |---|---|---|
//! | [`irq_disable`] | store 0 to the VIF byte | `cli` |
//! | [`irq_enable`] | store 1 to the VIF byte, then one cheap trap if an interrupt is pending | `sti` |
//! | [`block`] | `sched_op(SCHEDOP_block)`: enables events, halts until one arrives | same |
//! | [`poweroff`] | `sched_op(SCHEDOP_shutdown)` | same |
//!
//! On kvm_pvm, CLI and STI trap (~3 µs each) and do not gate interrupt delivery; only the VIF
//! byte does. The guest boots with interrupts masked on both platforms.
//!
//! Before boot (and on the host) the interrupt operations do nothing and
//! [`irqs_enabled`] is `false`.

use core::sync::atomic::{AtomicU8, Ordering, compiler_fence};

use parapet_abi::sched::reason;
use parapet_abi::start_info::{StartInfo, flags};

use crate::page::VifPage;
use crate::{cpu, hypercall};

/// How interrupts are masked on this platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IrqMode {
    /// Not booted (or on the host): interrupt operations do nothing.
    None = 0,
    /// kvm_pvm: the virtual interrupt flag is byte 0 of the VIF page.
    Vif = 1,
    /// VT-x/AMD-V: architectural `cli`/`sti`.
    Hardware = 2,
}

static IRQ_MODE: AtomicU8 = AtomicU8::new(IrqMode::None as u8);

/// Chooses the interrupt mode from start-info. Called once by the boot code.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init(info: &StartInfo) {
    let mode = if info.flags & flags::VIF != 0 {
        VifPage::init();
        IrqMode::Vif
    } else {
        IrqMode::Hardware
    };
    IRQ_MODE.store(mode as u8, Ordering::Relaxed);
}

/// How interrupts are masked on this platform.
pub fn irq_mode() -> IrqMode {
    match IRQ_MODE.load(Ordering::Relaxed) {
        1 => IrqMode::Vif,
        2 => IrqMode::Hardware,
        _ => IrqMode::None,
    }
}

/// Masks interrupts.
#[inline]
pub fn irq_disable() {
    match irq_mode() {
        IrqMode::Vif => {
            if let Some(vif) = VifPage::get() {
                vif.set_interrupt_flag(0);
            }
        }
        IrqMode::Hardware => cpu::cli(),
        IrqMode::None => {}
    }
    // Nothing from the critical section may move above the mask.
    compiler_fence(Ordering::SeqCst);
}

/// Unmasks interrupts. On kvm_pvm, if the host held an interrupt back while they were masked,
/// makes one cheap trap so that it is delivered now rather than at the next unrelated exit.
#[inline]
pub fn irq_enable() {
    // Nothing from the critical section may move below the unmask.
    compiler_fence(Ordering::SeqCst);
    match irq_mode() {
        IrqMode::Vif => {
            if let Some(vif) = VifPage::get() {
                vif.set_interrupt_flag(1);
                if vif.pending() != 0 {
                    hypercall::pvm_kick();
                }
            }
        }
        IrqMode::Hardware => cpu::sti(),
        IrqMode::None => {}
    }
}

/// Whether interrupts are currently unmasked.
pub fn irqs_enabled() -> bool {
    match irq_mode() {
        IrqMode::Vif => VifPage::get().is_some_and(|vif| vif.interrupt_flag() != 0),
        IrqMode::Hardware => cpu::interrupt_flag(),
        IrqMode::None => false,
    }
}

/// The raw virtual interrupt flag (byte 0 of the VIF page) on kvm_pvm, `None` on other
/// platforms. A diagnostic: use [`irqs_enabled`] to ask whether interrupts are unmasked.
pub fn vif_flag() -> Option<u8> {
    match irq_mode() {
        IrqMode::Vif => VifPage::get().map(VifPage::interrupt_flag),
        IrqMode::Hardware | IrqMode::None => None,
    }
}

/// Masks interrupts until the guard is dropped, then restores the previous state.
///
/// ```
/// let _guard = guest_sdk::pvops::irq_save();
/// // interrupts are masked here
/// ```
#[must_use = "interrupts are unmasked again when the guard is dropped"]
pub fn irq_save() -> IrqGuard {
    let was_enabled = irqs_enabled();
    irq_disable();
    IrqGuard { was_enabled }
}

/// Restores the interrupt state saved by [`irq_save`] when dropped.
#[derive(Debug)]
pub struct IrqGuard {
    was_enabled: bool,
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        if self.was_enabled {
            irq_enable();
        }
    }
}

/// `SCHEDOP_block` (docs/abi.md §7.3): the idle instruction of a Parapet guest (never `hlt`).
///
/// Returns at once if `evtchn_upcall_pending` is set, an armed timer has expired, or nothing
/// could wake the vCPU (no timer armed, no unmasked port bound to a VIRQ, a backend or another
/// port). Otherwise the VMM enables interrupts and event delivery (VIF byte / RFLAGS.IF and
/// `evtchn_upcall_mask`), halts until an event arrives, and runs the upcall handler before the
/// hypercall returns; interrupts stay enabled afterwards.
///
/// To wait for a condition without losing a wake-up, mask interrupts, check the condition,
/// and only then block (an event that arrives in between leaves `evtchn_upcall_pending` set, so
/// the block returns at once); then unmask interrupts. [`crate::timer::wait_until`] does this.
pub fn block() {
    let _ = hypercall::sched_block();
}

/// Powers the domain off; the VMM exits with `exit_code & 0xff`. The VMM drains the console
/// ring before it exits (docs/abi.md §9.2), so output still in the ring is not lost, and waiting
/// for the backend here would only cost exits.
pub fn poweroff(exit_code: u32) -> ! {
    hypercall::shutdown(reason::POWEROFF, exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbooted_interrupt_ops_are_inert() {
        assert_eq!(irq_mode(), IrqMode::None);
        irq_disable();
        assert!(!irqs_enabled());
        {
            let _g = irq_save();
            assert!(!irqs_enabled());
        }
        irq_enable();
        assert!(!irqs_enabled());
    }
}
