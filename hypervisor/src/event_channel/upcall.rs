//! Raising event channels: the pending and mask bits in shared info, and the upcall interrupt.
//!
//! Any thread may raise a port (backends do, from their own threads): everything here is atomic
//! operations on the shared-info page and a write to the upcall irqfd, which KVM turns into an
//! interrupt on the guest's upcall vector without involving the vCPU thread.

use crate::memory::GuestRam;
use parapet_abi::shared_info::{SharedInfo, VcpuInfo};
use std::mem::offset_of;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

/// The guest's shared-info page as the event machinery sees it.
#[derive(Debug)]
pub struct Upcall {
    ram: Arc<GuestRam>,
    shared_info: u64,
    /// KVM irqfd routed to the upcall vector; `None` in unit tests without KVM.
    irqfd: Option<EventFd>,
}

const PENDING: u64 = offset_of!(SharedInfo, evtchn_pending) as u64;
const MASK: u64 = offset_of!(SharedInfo, evtchn_mask) as u64;
const UPCALL_PENDING: u64 = offset_of!(VcpuInfo, evtchn_upcall_pending) as u64;
const UPCALL_MASK: u64 = offset_of!(VcpuInfo, evtchn_upcall_mask) as u64;
const PENDING_SEL: u64 = offset_of!(VcpuInfo, evtchn_pending_sel) as u64;

impl Upcall {
    /// Raises events in the shared-info page at `shared_info`, interrupting through `irqfd`.
    pub fn new(ram: Arc<GuestRam>, shared_info: u64, irqfd: Option<EventFd>) -> Upcall {
        Upcall {
            ram,
            shared_info,
            irqfd,
        }
    }

    fn word(&self, base: u64, port: u32) -> &std::sync::atomic::AtomicU64 {
        let gpa = self.shared_info + base + u64::from(port / 64) * 8;
        self.ram
            .atomic_u64(GuestAddress(gpa))
            .expect("the shared-info page lies inside guest RAM")
    }

    fn byte(&self, offset: u64) -> &std::sync::atomic::AtomicU8 {
        self.ram
            .atomic_u8(GuestAddress(self.shared_info + offset))
            .expect("the shared-info page lies inside guest RAM")
    }

    /// Marks `port` pending and, unless it is masked, interrupts the guest (docs/abi.md §7.2).
    /// Returns whether the upcall interrupt was sent.
    pub fn raise(&self, port: u32) -> bool {
        let bit = 1u64 << (port % 64);
        if self.word(PENDING, port).fetch_or(bit, SeqCst) & bit != 0 {
            return false; // already pending: the guest has yet to see the previous one
        }
        if self.is_masked(port) {
            return false;
        }
        self.notify_word(port / 64)
    }

    /// Whether the guest has masked `port`.
    pub fn is_masked(&self, port: u32) -> bool {
        self.word(MASK, port).load(SeqCst) & (1u64 << (port % 64)) != 0
    }

    /// Whether `port` is pending.
    pub fn is_pending(&self, port: u32) -> bool {
        self.word(PENDING, port).load(SeqCst) & (1u64 << (port % 64)) != 0
    }

    /// Sets or clears the mask bit of `port`.
    pub fn set_masked(&self, port: u32, masked: bool) {
        let bit = 1u64 << (port % 64);
        let mask = self.word(MASK, port);
        if masked {
            mask.fetch_or(bit, SeqCst);
        } else {
            mask.fetch_and(!bit, SeqCst);
        }
    }

    /// Clears the pending bit of `port` (when the port is closed).
    pub fn clear_pending(&self, port: u32) {
        self.word(PENDING, port)
            .fetch_and(!(1u64 << (port % 64)), SeqCst);
    }

    /// Unmasks `port`; if it is pending, delivers it now (`EVTCHNOP_unmask`).
    pub fn unmask(&self, port: u32) {
        self.set_masked(port, false);
        if self.is_pending(port) {
            self.notify_word(port / 64);
        }
    }

    fn notify_word(&self, word: u32) -> bool {
        let sel = self
            .ram
            .atomic_u64(GuestAddress(self.shared_info + PENDING_SEL))
            .expect("the shared-info page lies inside guest RAM");
        sel.fetch_or(1u64 << word, SeqCst);
        self.byte(UPCALL_PENDING).store(1, SeqCst);
        let deliver = !self.upcall_masked();
        if deliver {
            self.interrupt();
        }
        deliver
    }

    /// Whether an upcall is pending (`evtchn_upcall_pending`).
    pub fn upcall_pending(&self) -> bool {
        self.byte(UPCALL_PENDING).load(SeqCst) != 0
    }

    /// Whether the guest holds back upcalls (`evtchn_upcall_mask`).
    pub fn upcall_masked(&self) -> bool {
        self.byte(UPCALL_MASK).load(SeqCst) != 0
    }

    /// Clears `evtchn_upcall_mask` (`SCHEDOP_block` re-enables event delivery).
    pub fn unmask_upcalls(&self) {
        self.byte(UPCALL_MASK).store(0, SeqCst);
    }

    /// Sends the upcall interrupt, whether or not anything is pending (wakes a blocked vCPU).
    pub fn interrupt(&self) {
        if let Some(fd) = &self.irqfd
            && let Err(e) = fd.write(1)
        {
            tracing::warn!("cannot signal the upcall irqfd: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upcall() -> (Arc<GuestRam>, Upcall, EventFd) {
        let ram = Arc::new(GuestRam::new(1 << 20).unwrap());
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let up = Upcall::new(ram.clone(), 0x2000, Some(fd.try_clone().unwrap()));
        (ram, up, fd)
    }

    #[test]
    fn raising_sets_bits_and_interrupts_once() {
        let (ram, up, fd) = upcall();
        up.raise(70);
        assert_eq!(
            ram.read_obj::<u64>(GuestAddress(0x2000 + PENDING + 8)),
            Ok(1 << 6)
        );
        assert_eq!(
            ram.read_obj::<u64>(GuestAddress(0x2000 + PENDING_SEL)),
            Ok(1 << 1)
        );
        assert!(up.upcall_pending());
        assert_eq!(fd.read().unwrap(), 1);
        up.raise(70); // still pending: coalesced
        assert!(fd.read().is_err());
    }

    #[test]
    fn masks_hold_events_back_until_unmasked() {
        let (_ram, up, fd) = upcall();
        up.set_masked(5, true);
        up.raise(5);
        assert!(up.is_pending(5));
        assert!(!up.upcall_pending());
        assert!(fd.read().is_err());
        up.unmask(5);
        assert!(up.upcall_pending());
        assert_eq!(fd.read().unwrap(), 1);
    }

    #[test]
    fn the_upcall_mask_suppresses_the_interrupt_not_the_event() {
        let (ram, up, fd) = upcall();
        ram.write_obj(GuestAddress(0x2000 + UPCALL_MASK), &1u8)
            .unwrap();
        up.raise(3);
        assert!(up.upcall_pending());
        assert!(fd.read().is_err());
    }
}
