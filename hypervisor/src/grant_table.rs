//! The guest's grant table, from the backend side (docs/abi.md §8).
//!
//! Backends touch guest memory only through a [`GrantMapping`]: [`GrantTable::map`] validates the
//! reference and the entry (type, grantee, read-only flag, frame), marks the entry
//! `GTF_reading`/`GTF_writing` with a compare-and-swap on the flags and grantee together (so a
//! guest cannot swap the grantee between check and mark), and the mark is cleared when the last
//! mapping of that kind is dropped. Every access through a mapping stays inside its page.

use crate::memory::{GuestPage, GuestRam};
use parapet_abi::event_channel::DOMID_BACKEND;
use parapet_abi::grant_table::{GrantEntry, GrantRef, gtf};
use parapet_abi::start_info::{KERNEL_MIN_ADDR, PAGE_SIZE};
use pv_drivers::grant_table::{GrantError, GrantMapper};
use pv_drivers::shared::SharedPage;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use vm_memory::GuestAddress;

/// How often the VMM retries marking an entry in use against a guest that keeps changing it
/// (QEMU's Xen grant emulation gives up after 5).
const MAX_MARK_ATTEMPTS: usize = 8;

/// The grant table: a cheap handle, shared by the backends.
#[derive(Clone, Debug)]
pub struct GrantTable {
    inner: Arc<Table>,
}

#[derive(Debug)]
struct Table {
    ram: Arc<GuestRam>,
    base: u64,
    nr_entries: u32,
    /// Indexed by reference: a flat table, because backends map and release a reference per
    /// page of every request.
    in_use: Mutex<Vec<InUse>>,
    /// GPAs of the pages connected devices use as rings (one entry per ring mapping). A ring
    /// page is never also a backend's writable data page: a block read into the live ring would
    /// let the guest make the backend produce its own requests.
    rings: Mutex<Vec<u64>>,
}

/// Mappings of one reference that are alive.
#[derive(Clone, Copy, Debug, Default)]
struct InUse {
    readers: u32,
    writers: u32,
    frame_gpa: u64,
}

impl GrantTable {
    /// The table of `nr_frames` pages at `base` in `ram`.
    pub fn new(ram: Arc<GuestRam>, base: u64, nr_frames: u32) -> GrantTable {
        let nr_entries = nr_frames * parapet_abi::grant_table::ENTRIES_PER_FRAME;
        GrantTable {
            inner: Arc::new(Table {
                ram,
                base,
                nr_entries,
                in_use: Mutex::new(vec![InUse::default(); nr_entries as usize]),
                rings: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The guest RAM the granted pages are in.
    pub fn ram(&self) -> &Arc<GuestRam> {
        &self.inner.ram
    }

    /// Where the table lives and how many pages it has.
    pub fn frames(&self) -> (u64, u32) {
        (
            self.inner.base,
            self.inner.nr_entries / parapet_abi::grant_table::ENTRIES_PER_FRAME,
        )
    }

    /// Validates `gref` for reading (or writing) and maps its page as a data page. A writable
    /// mapping of a page that is a connected device's ring is refused (`PermissionDenied`).
    pub fn map(&self, gref: GrantRef, writable: bool) -> Result<GrantMapping, GrantError> {
        self.map_as(gref, writable, false)
    }

    /// Validates `gref` for writing and maps its page as a device's ring: while the mapping
    /// lives, no backend may map the page as a writable data page, and no other device may use
    /// it as a ring (`PermissionDenied`).
    pub fn map_ring(&self, gref: GrantRef) -> Result<GrantMapping, GrantError> {
        self.map_as(gref, true, true)
    }

    fn map_as(
        &self,
        gref: GrantRef,
        writable: bool,
        ring: bool,
    ) -> Result<GrantMapping, GrantError> {
        let gpa = self.inner.map(gref, writable)?;
        let refuse = |e| {
            self.inner.release(gref, writable);
            Err(e)
        };
        let page = match GuestPage::new(self.inner.ram.clone(), gpa) {
            Ok(page) => page,
            Err(_) => return refuse(GrantError::BadPage),
        };
        {
            let mut rings = self.inner.rings();
            let is_ring = rings.contains(&gpa);
            if ring {
                if is_ring {
                    drop(rings);
                    return refuse(GrantError::PermissionDenied);
                }
                rings.push(gpa);
            } else if writable && is_ring {
                drop(rings);
                return refuse(GrantError::PermissionDenied);
            }
        }
        Ok(GrantMapping {
            table: self.clone(),
            gref,
            page,
            writable,
            ring,
        })
    }
}

impl Table {
    fn in_use(&self) -> MutexGuard<'_, Vec<InUse>> {
        self.in_use.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rings(&self) -> MutexGuard<'_, Vec<u64>> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry_gpa(&self, gref: GrantRef) -> Result<u64, GrantError> {
        if gref >= self.nr_entries {
            return Err(GrantError::BadRef);
        }
        Ok(self.base + u64::from(gref) * size_of::<GrantEntry>() as u64)
    }

    /// Validates `gref` and marks it in use; returns the page's GPA.
    fn map(&self, gref: GrantRef, writable: bool) -> Result<u64, GrantError> {
        let entry = self.entry_gpa(gref)?;
        let mut in_use = self.in_use();
        let u = &mut in_use[gref as usize];
        let mark = if writable { gtf::WRITING } else { gtf::READING };
        let mapped = if writable { u.writers } else { u.readers };
        if mapped == 0 {
            self.mark(entry, writable, mark)?;
            // The frame is read once, after the mark: from here on the guest may not change
            // the entry, and the VMM only ever uses this copy.
            let frame = self
                .ram
                .read_obj::<u32>(GuestAddress(entry + 4))
                .unwrap_or(0);
            let frame_gpa = u64::from(frame) * PAGE_SIZE;
            let other_kind_mapped = u.readers + u.writers > 0;
            let valid = frame_gpa >= KERNEL_MIN_ADDR
                && self
                    .ram
                    .check_range(GuestAddress(frame_gpa), PAGE_SIZE)
                    .is_ok()
                && (!other_kind_mapped || u.frame_gpa == frame_gpa);
            if !valid {
                self.unmark(entry, mark);
                return Err(GrantError::BadPage);
            }
            // The guest's page tables map it read-only (kernel text or read-only data): the
            // VMM does not write it for the guest either (W^X, docs/abi.md §1).
            if writable
                && self
                    .ram
                    .check_writable(GuestAddress(frame_gpa), PAGE_SIZE)
                    .is_err()
            {
                self.unmark(entry, mark);
                return Err(GrantError::PermissionDenied);
            }
            u.frame_gpa = frame_gpa;
        }
        if writable {
            u.writers += 1;
        } else {
            u.readers += 1;
        }
        Ok(u.frame_gpa)
    }

    /// Sets `mark` in the entry's flags if the entry grants the access, atomically with the check.
    fn mark(&self, entry: u64, writable: bool, mark: u16) -> Result<(), GrantError> {
        // Flags (low half) and grantee (high half) are checked and updated as one word.
        let word = self
            .ram
            .atomic_u32(GuestAddress(entry))
            .map_err(|_| GrantError::BadRef)?;
        for _ in 0..MAX_MARK_ATTEMPTS {
            let current = word.load(SeqCst);
            let (flags, domid) = (current as u16, (current >> 16) as u16);
            if flags & gtf::TYPE_MASK != gtf::PERMIT_ACCESS || domid != DOMID_BACKEND {
                return Err(GrantError::BadRef);
            }
            if writable && flags & gtf::READONLY != 0 {
                return Err(GrantError::PermissionDenied);
            }
            let new = current | u32::from(mark);
            if word.compare_exchange(current, new, SeqCst, SeqCst).is_ok() {
                return Ok(());
            }
        }
        Err(GrantError::Contended)
    }

    fn unmark(&self, entry: u64, mark: u16) {
        if let Ok(flags) = self.ram.atomic_u16(GuestAddress(entry)) {
            flags.fetch_and(!mark, SeqCst);
        }
    }

    fn release(&self, gref: GrantRef, writable: bool) {
        let Ok(entry) = self.entry_gpa(gref) else {
            return;
        };
        let mut in_use = self.in_use();
        let u = &mut in_use[gref as usize];
        let (count, mark) = if writable {
            (&mut u.writers, gtf::WRITING)
        } else {
            (&mut u.readers, gtf::READING)
        };
        let Some(left) = count.checked_sub(1) else {
            return;
        };
        *count = left;
        if left == 0 {
            self.unmark(entry, mark);
        }
    }
}

impl GrantMapper for GrantTable {
    type Mapping = GrantMapping;

    fn map(&self, gref: GrantRef, writable: bool) -> Result<GrantMapping, GrantError> {
        GrantTable::map(self, gref, writable)
    }
}

/// One granted page, mapped for reading or writing. Releases the grant when dropped.
#[derive(Debug)]
pub struct GrantMapping {
    table: GrantTable,
    gref: GrantRef,
    page: GuestPage,
    writable: bool,
    /// Mapped with [`GrantTable::map_ring`].
    ring: bool,
}

impl GrantMapping {
    /// The GPA of the page.
    pub fn gpa(&self) -> u64 {
        self.page.gpa()
    }

    /// Whether the mapping allows writing.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The guest-physical address of bytes `range` of the page, if they lie inside it and the
    /// mapping allows the access (`write`: the VMM writes into the page).
    pub fn guest_range(
        &self,
        range: std::ops::Range<usize>,
        write: bool,
    ) -> Option<vm_memory::GuestAddress> {
        if (write && !self.writable) || range.start > range.end || range.end > PAGE_SIZE as usize {
            return None;
        }
        Some(vm_memory::GuestAddress(
            self.page.gpa() + range.start as u64,
        ))
    }
}

// Writes through a read-only mapping are dropped: the drivers never make them, and the grant
// does not allow them. A writable mapping cannot drop a write: `map` refused the frame unless
// `GuestRam::write` accepts all of it, and the protected ranges never change after the build.
impl SharedPage for GrantMapping {
    fn load_u32(&self, offset: usize) -> u32 {
        self.page.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        debug_assert!(self.writable, "store through a read-only grant");
        if self.writable {
            self.page.store_u32(offset, value);
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        self.page.read(offset, buf);
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        debug_assert!(self.writable, "write through a read-only grant");
        if self.writable {
            self.page.write(offset, buf);
        }
    }
}

impl Drop for GrantMapping {
    fn drop(&mut self) {
        if self.ring {
            let mut rings = self.table.inner.rings();
            if let Some(i) = rings.iter().position(|&gpa| gpa == self.page.gpa()) {
                rings.swap_remove(i);
            }
        }
        self.table.inner.release(self.gref, self.writable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: u64 = 0xc000;

    fn table() -> (Arc<GuestRam>, GrantTable) {
        let ram = Arc::new(GuestRam::new(4 << 20).unwrap());
        (ram.clone(), GrantTable::new(ram, TABLE, 4))
    }

    fn grant(ram: &GuestRam, gref: u32, flags: u16, domid: u16, frame: u32) {
        let e = GrantEntry {
            flags,
            domid,
            frame,
        };
        ram.write_obj(GuestAddress(TABLE + u64::from(gref) * 8), &e)
            .unwrap();
    }

    fn flags(ram: &GuestRam, gref: u32) -> u16 {
        ram.read_obj::<GrantEntry>(GuestAddress(TABLE + u64::from(gref) * 8))
            .unwrap()
            .flags
    }

    #[test]
    fn maps_marks_and_releases() {
        let (ram, t) = table();
        grant(&ram, 3, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x200);
        let w = t.map(3, true).unwrap();
        assert_eq!(w.gpa(), 0x200 << 12);
        assert_eq!(flags(&ram, 3), gtf::PERMIT_ACCESS | gtf::WRITING);
        let r1 = t.map(3, false).unwrap();
        let r2 = t.map(3, false).unwrap();
        assert_eq!(
            flags(&ram, 3),
            gtf::PERMIT_ACCESS | gtf::WRITING | gtf::READING
        );
        w.store_u32(8, 0xabcd);
        assert_eq!(r1.load_u32(8), 0xabcd);
        drop(w);
        drop(r1);
        assert_eq!(
            flags(&ram, 3),
            gtf::PERMIT_ACCESS | gtf::READING,
            "one reader left"
        );
        drop(r2);
        assert_eq!(flags(&ram, 3), gtf::PERMIT_ACCESS);
    }

    #[test]
    fn refuses_what_was_not_granted() {
        let (ram, t) = table();
        grant(
            &ram,
            1,
            gtf::PERMIT_ACCESS | gtf::READONLY,
            DOMID_BACKEND,
            0x200,
        );
        grant(&ram, 2, gtf::PERMIT_ACCESS, 7, 0x200);
        grant(&ram, 3, 0, DOMID_BACKEND, 0x200);
        grant(&ram, 4, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x5);
        grant(&ram, 5, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x400);
        grant(&ram, 6, gtf::PERMIT_ACCESS, DOMID_BACKEND, u32::MAX);
        assert_eq!(t.map(1, true).err(), Some(GrantError::PermissionDenied));
        assert!(t.map(1, false).is_ok());
        assert_eq!(
            t.map(2, false).err(),
            Some(GrantError::BadRef),
            "foreign grantee"
        );
        assert_eq!(
            t.map(3, false).err(),
            Some(GrantError::BadRef),
            "not permitted"
        );
        assert_eq!(
            t.map(4, false).err(),
            Some(GrantError::BadPage),
            "boot structures"
        );
        assert_eq!(t.map(5, false).err(), Some(GrantError::BadPage), "past RAM");
        assert_eq!(t.map(6, true).err(), Some(GrantError::BadPage));
        assert_eq!(t.map(2048, false).err(), Some(GrantError::BadRef));
        // A frame the guest's page tables map read-only (kernel text, read-only data).
        grant(&ram, 7, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x300);
        ram.protect(vec![0x300_000..0x301_000, 0x301_000..0x302_000]);
        assert_eq!(
            t.map(7, true).err(),
            Some(GrantError::PermissionDenied),
            "a read-only page, writable"
        );
        assert_eq!(flags(&ram, 7), gtf::PERMIT_ACCESS, "no mark left");
        assert!(t.map(7, false).is_ok(), "reading it is fine");
        assert_eq!(t.map(u32::MAX, false).err(), Some(GrantError::BadRef));
        for gref in 4..=6 {
            assert_eq!(
                flags(&ram, gref),
                gtf::PERMIT_ACCESS,
                "a refused map leaves no mark"
            );
        }
    }

    #[test]
    fn a_ring_page_is_never_a_writable_data_page() {
        let (ram, t) = table();
        grant(&ram, 1, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x200);
        grant(&ram, 2, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x200);
        grant(&ram, 3, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x201);
        let ring = t.map_ring(1).unwrap();
        assert_eq!(
            t.map(2, true).err(),
            Some(GrantError::PermissionDenied),
            "the ring page through another reference"
        );
        assert_eq!(t.map(1, true).err(), Some(GrantError::PermissionDenied));
        assert_eq!(
            t.map_ring(2).err(),
            Some(GrantError::PermissionDenied),
            "one page, two rings"
        );
        assert!(t.map(2, false).is_ok(), "reading the ring page is harmless");
        assert!(t.map(3, true).is_ok(), "other pages are not affected");
        assert_eq!(
            flags(&ram, 2),
            gtf::PERMIT_ACCESS,
            "refused maps leave no mark"
        );
        drop(ring);
        assert!(
            t.map(2, true).is_ok(),
            "a disconnected ring is a page again"
        );
    }

    #[test]
    fn mapped_pages_keep_accesses_inside_the_page() {
        let (ram, t) = table();
        grant(&ram, 0, gtf::PERMIT_ACCESS, DOMID_BACKEND, 0x200);
        let m = t.map(0, true).unwrap();
        m.write(4090, &[1, 2, 3, 4, 5, 6]);
        let mut b = [0u8; 6];
        m.read(4090, &mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            ram.read_obj::<u8>(GuestAddress((0x201 << 12) as u64))
                .unwrap(),
            0
        );
    }
}
