//! The grant table's entries (docs/abi.md §8), shared with the VMM: `flags` as an atomic (the
//! VMM sets and clears `GTF_reading`/`GTF_writing` with compare-and-swap), `domid` and `frame`
//! with volatile accesses.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, Ordering, fence};

use parapet_abi::event_channel::DomId;
use parapet_abi::grant_table::{ENTRIES_PER_FRAME, GrantEntry};
use parapet_abi::start_info::PAGE_SIZE;

/// The grant table. Only [`GrantTable::get`] makes one, from the start-info page recorded at
/// boot, so the entries are guest RAM the VMM keeps mapped read/write for the guest's life.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrantTable {
    base: NonNull<GrantEntry>,
    len: u32,
}

impl GrantTable {
    /// The table `StartInfo::grant_table` names (`nr_grant_frames` frames of entries), or
    /// `None` before boot, on the host, or if the VMM announced no (page-aligned) table.
    pub(crate) fn get() -> Option<GrantTable> {
        let info = crate::start_info::try_start_info()?;
        if !info.grant_table.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let base = NonNull::new(info.grant_table as *mut GrantEntry)?;
        let len = info.nr_grant_frames.saturating_mul(ENTRIES_PER_FRAME);
        Some(GrantTable { base, len })
    }

    /// Entries in the table.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Entry `index`, or `None` outside the table.
    fn entry(&self, index: u32) -> Option<*mut GrantEntry> {
        (index < self.len).then(|| self.base.as_ptr().wrapping_add(index as usize))
    }

    /// The `flags` of entry `index` (`None` outside the table), which the VMM changes only
    /// atomically.
    pub(crate) fn flags(&self, index: u32) -> Option<&'static AtomicU16> {
        let e = self.entry(index)?;
        // SAFETY: `e` is an entry of the table (bounds-checked by `entry`), guest RAM mapped
        // read/write for the guest's life; `flags` is 2-aligned and the VMM changes it only
        // atomically.
        Some(unsafe { AtomicU16::from_ptr(&raw mut (*e).flags) })
    }

    /// A snapshot of entry `index`, or `None` outside the table.
    pub(crate) fn read(&self, index: u32) -> Option<GrantEntry> {
        let flags = self.flags(index)?.load(Ordering::SeqCst);
        let e = self.entry(index)?;
        // SAFETY: as in `flags`; volatile because the entry is shared with the VMM.
        let (domid, frame) = unsafe {
            (
                (&raw const (*e).domid).read_volatile(),
                (&raw const (*e).frame).read_volatile(),
            )
        };
        Some(GrantEntry {
            flags,
            domid,
            frame,
        })
    }

    /// Writes entry `index`: `frame` and `domid`, a write barrier, then `flags`. `None` (and
    /// nothing written) outside the table.
    pub(crate) fn write(&self, index: u32, frame: u32, domid: DomId, flags: u16) -> Option<()> {
        let e = self.entry(index)?;
        // SAFETY: as in `flags`.
        unsafe {
            (&raw mut (*e).frame).write_volatile(frame);
            (&raw mut (*e).domid).write_volatile(domid);
        }
        fence(Ordering::Release);
        self.flags(index)?.store(flags, Ordering::SeqCst);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_before_boot() {
        assert!(GrantTable::get().is_none());
    }
}
