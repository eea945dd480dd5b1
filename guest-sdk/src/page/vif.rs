//! kvm_pvm's VIF page (`struct pvm_vif`, docs/abi.md §5): byte [`IF`] is the virtual interrupt
//! flag the guest writes, byte [`PENDING`] the host's "an interrupt is held back" byte.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use parapet_abi::start_info::flags;
use parapet_abi::start_info::vif::{IF, PENDING};

/// The VIF page, once [`VifPage::init`] found it; null before (and on other platforms). Only
/// `init` stores it.
static VIF: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

/// The VIF page. Only [`VifPage::init`] and [`VifPage::get`] make one, from the start-info page
/// recorded at boot, so it is the page the VMM registered with kvm_pvm, guest-writable for the
/// guest's life.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VifPage(NonNull<u8>);

impl VifPage {
    /// Finds the VIF page, if the recorded start-info page announces one (`flags & VIF`, on
    /// kvm_pvm), and keeps it for [`get`](Self::get), which the interrupt operations call often.
    pub(crate) fn init() -> Option<VifPage> {
        let info = crate::start_info::try_start_info()?;
        if info.flags & flags::VIF == 0 {
            return None;
        }
        let page = NonNull::new(info.vif_page as *mut u8)?;
        VIF.store(page.as_ptr(), Ordering::Relaxed);
        Some(VifPage(page))
    }

    /// The VIF page [`init`](Self::init) found; `None` before boot, on the host and on other
    /// platforms.
    #[inline]
    pub(crate) fn get() -> Option<VifPage> {
        NonNull::new(VIF.load(Ordering::Relaxed)).map(VifPage)
    }

    /// Writes the virtual interrupt flag (1 = interrupts enabled).
    #[inline]
    pub(crate) fn set_interrupt_flag(self, value: u8) {
        // SAFETY: byte IF of the registered VIF page (see the type); volatile, because the host
        // reads it to decide whether to deliver.
        unsafe { self.0.as_ptr().wrapping_add(IF).write_volatile(value) };
    }

    /// The virtual interrupt flag.
    #[inline]
    pub(crate) fn interrupt_flag(self) -> u8 {
        // SAFETY: byte IF of the registered VIF page, readable by the guest.
        unsafe { self.0.as_ptr().wrapping_add(IF).read_volatile() }
    }

    /// The host's pending byte: non-zero if it held an interrupt back while the flag was clear.
    #[inline]
    pub(crate) fn pending(self) -> u8 {
        // SAFETY: byte PENDING of the registered VIF page, readable by the guest.
        unsafe { self.0.as_ptr().wrapping_add(PENDING).read_volatile() }
    }
}
