//! The shared-info page (docs/abi.md §4.2, §7): the event-channel bitmaps and the vCPU's upcall
//! bytes as atomics, and the PV clock and the wall clock as consistent copies (Xen's version
//! protocol).
//!
//! The VMM writes the page at any time, so nothing here hands out a reference to its fields:
//! the bitmaps and bytes are seen through atomics (which the VMM uses too), the clock records
//! are copied with volatile reads between two reads of their version.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

use parapet_abi::shared_info::{EVTCHN_WORDS, SharedInfo};
use parapet_abi::time::VcpuTimeInfo;

use crate::cpu;

/// The shared-info page. Only [`SharedInfoPage::get`] makes one (and, in tests, a leaked page of
/// ordinary memory), so the address is always a page that stays mapped read/write for the
/// guest's life and that anybody else changes only with atomic operations or, for the clocks,
/// the version protocol.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SharedInfoPage(NonNull<SharedInfo>);

impl SharedInfoPage {
    /// The VMM's shared-info page (`StartInfo::shared_info` of the start-info page recorded at
    /// boot), or `None` before boot (and on the host).
    pub(crate) fn get() -> Option<SharedInfoPage> {
        let info = crate::start_info::try_start_info()?;
        NonNull::new(info.shared_info as *mut SharedInfo).map(SharedInfoPage)
    }

    /// A zeroed page of ordinary memory, leaked so that it lives as long as the real one: for
    /// tests of the code that works on the page.
    #[cfg(test)]
    pub(crate) fn leaked() -> SharedInfoPage {
        use zerocopy::FromZeros;
        let page = std::boxed::Box::leak(std::boxed::Box::new(SharedInfo::new_zeroed()));
        SharedInfoPage(NonNull::from(page))
    }

    fn word(ptr: *mut u64) -> &'static AtomicU64 {
        // SAFETY: `ptr` points into the page, which lives forever (see the type), at an 8-byte
        // aligned u64 field; concurrent access is atomic on both sides.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    fn byte(ptr: *mut u8) -> &'static AtomicU8 {
        // SAFETY: as in `word`; bytes need no alignment.
        unsafe { AtomicU8::from_ptr(ptr) }
    }

    /// Word `w` of `evtchn_pending`.
    ///
    /// # Panics
    ///
    /// If `w` is not below [`EVTCHN_WORDS`].
    pub(crate) fn pending(self, w: usize) -> &'static AtomicU64 {
        let p = self.0.as_ptr();
        assert!(w < EVTCHN_WORDS);
        // SAFETY: in bounds of the page (checked above); no reference is created.
        Self::word(unsafe { (&raw mut (*p).evtchn_pending).cast::<u64>().add(w) })
    }

    /// Word `w` of `evtchn_mask`.
    ///
    /// # Panics
    ///
    /// If `w` is not below [`EVTCHN_WORDS`].
    pub(crate) fn mask(self, w: usize) -> &'static AtomicU64 {
        let p = self.0.as_ptr();
        assert!(w < EVTCHN_WORDS);
        // SAFETY: in bounds of the page (checked above); no reference is created.
        Self::word(unsafe { (&raw mut (*p).evtchn_mask).cast::<u64>().add(w) })
    }

    /// `vcpu_info[0].evtchn_pending_sel`.
    pub(crate) fn pending_sel(self) -> &'static AtomicU64 {
        let p = self.0.as_ptr();
        // SAFETY: a field of vcpu_info[0]; no reference is created.
        Self::word(unsafe { &raw mut (*p).vcpu_info[0].evtchn_pending_sel })
    }

    /// `vcpu_info[0].evtchn_upcall_pending`.
    pub(crate) fn upcall_pending(self) -> &'static AtomicU8 {
        let p = self.0.as_ptr();
        // SAFETY: a field of vcpu_info[0]; no reference is created.
        Self::byte(unsafe { &raw mut (*p).vcpu_info[0].evtchn_upcall_pending })
    }

    /// `vcpu_info[0].evtchn_upcall_mask`.
    pub(crate) fn upcall_mask(self) -> &'static AtomicU8 {
        let p = self.0.as_ptr();
        // SAFETY: a field of vcpu_info[0]; no reference is created.
        Self::byte(unsafe { &raw mut (*p).vcpu_info[0].evtchn_upcall_mask })
    }

    /// A consistent copy of the PV clock record `vcpu_info[0].time` and the TSC read while it
    /// was valid (docs/abi.md §4.2).
    pub(crate) fn vcpu_time(self) -> (VcpuTimeInfo, u64) {
        let p = self.0.as_ptr();
        // SAFETY: a field of vcpu_info[0]; no reference is created.
        let rec = unsafe { &raw const (*p).vcpu_info[0].time };
        read_time_info(rec)
    }

    /// A consistent copy of the wall clock, `(seconds, nanoseconds)` since the Unix epoch at
    /// system time 0 (`wc_sec_hi:wc_sec`, `wc_nsec`).
    pub(crate) fn wall_clock(self) -> (u64, u32) {
        let p = self.0.as_ptr();
        loop {
            // SAFETY: fields of the page, which is readable for the guest's life (see the
            // type); the reads are volatile because the VMM may update them, following the
            // version protocol.
            let (before, sec, sec_hi, nsec, after) = unsafe {
                let before = (&raw const (*p).wc_version).read_volatile();
                fence(Ordering::Acquire);
                let sec = (&raw const (*p).wc_sec).read_volatile();
                let sec_hi = (&raw const (*p).wc_sec_hi).read_volatile();
                let nsec = (&raw const (*p).wc_nsec).read_volatile();
                fence(Ordering::Acquire);
                (
                    before,
                    sec,
                    sec_hi,
                    nsec,
                    (&raw const (*p).wc_version).read_volatile(),
                )
            };
            if before & 1 == 0 && before == after {
                return (u64::from(sec_hi) << 32 | u64::from(sec), nsec);
            }
            core::hint::spin_loop();
        }
    }
}

/// A consistent copy of the PV clock record at `rec` and the TSC read while it was valid: copy
/// the record between two reads of `version`, retry if it was odd or changed.
fn read_time_info(rec: *const VcpuTimeInfo) -> (VcpuTimeInfo, u64) {
    loop {
        // SAFETY: `rec` is the clock record of a shared-info page (see `SharedInfoPage`), which
        // is readable; every read is volatile because the VMM may write the record at any time.
        let (before, copy, tsc, after) = unsafe {
            let before = (&raw const (*rec).version).read_volatile();
            fence(Ordering::Acquire);
            let copy = rec.read_volatile();
            let tsc = cpu::rdtsc();
            fence(Ordering::Acquire);
            (
                before,
                copy,
                tsc,
                (&raw const (*rec).version).read_volatile(),
            )
        };
        if before & 1 == 0 && before == after {
            return (copy, tsc);
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parapet_abi::time::TscScale;

    #[test]
    fn reads_a_consistent_clock_record() {
        let page = SharedInfoPage::leaked();
        let s = TscScale::from_tsc_khz(1_000_000);
        let rec = VcpuTimeInfo {
            version: 2,
            tsc_timestamp: cpu::rdtsc(),
            system_time: 42,
            tsc_to_system_mul: s.mul,
            tsc_shift: s.shift,
            ..Default::default()
        };
        // SAFETY: the leaked test page, which nobody else writes.
        unsafe { (&raw mut (*page.0.as_ptr()).vcpu_info[0].time).write(rec) };
        let (copy, tsc) = page.vcpu_time();
        assert_eq!(copy.system_time, 42);
        assert!(copy.system_time_at(tsc) >= 42);
    }

    #[test]
    fn reads_the_wall_clock() {
        let page = SharedInfoPage::leaked();
        assert_eq!(page.wall_clock(), (0, 0));
        // SAFETY: the leaked test page, which nobody else writes.
        unsafe {
            let p = page.0.as_ptr();
            (*p).wc_sec = 5;
            (*p).wc_sec_hi = 1;
            (*p).wc_nsec = 7;
        }
        assert_eq!(page.wall_clock(), ((1 << 32) | 5, 7));
    }

    #[test]
    fn no_page_before_boot() {
        assert!(SharedInfoPage::get().is_none());
    }
}
