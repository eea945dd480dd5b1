//! Guest RAM: one anonymous mapping registered with KVM, and bounds-checked access to it.
//!
//! Every access whose address comes from the guest goes through [`GuestRam::read`] or
//! [`GuestRam::write`], which refuse any range not wholly inside RAM with `EFAULT` (overflow
//! included). Reads copy into VMM memory, so a value is validated after it has been copied and
//! cannot change under the check.

use parapet_abi::Errno;
use parapet_abi::start_info::PAGE_SIZE;
use pv_drivers::shared::SharedPage;
use std::sync::Arc;
use std::sync::atomic::Ordering::{self, Acquire, Release};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The guest's RAM, GPA 0 up to [`GuestRam::size`].
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
    /// Host address of GPA 0.
    base: u64,
    /// Ranges the guest's own page tables do not let it write, sorted; `write` refuses them.
    read_only: std::sync::OnceLock<Vec<std::ops::Range<u64>>>,
    /// Mapped copy-on-write from a snapshot file ([`GuestRam::from_snapshot`]).
    from_file: bool,
    /// With [`GuestRam::track_vmm_writes`]: one bit per page the VMM may have written (through
    /// any method here that can write) since [`GuestRam::take_vmm_writes`]. KVM's dirty log
    /// sees only the guest's writes; a warm reset needs both.
    vmm_writes: Option<Box<[AtomicU64]>>,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed guest RAM.
    pub fn new(size: u64) -> std::io::Result<GuestRam> {
        let len = usize::try_from(size).map_err(std::io::Error::other)?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(std::io::Error::other)?;
        let region = mem.iter().next().expect("guest RAM has one region");
        debug_assert_eq!(region.start_addr(), GuestAddress(0));
        let base = mem
            .get_host_address(GuestAddress(0))
            .map_err(std::io::Error::other)? as u64;
        // Transparent huge pages where the host offers them (`madvise` mode): backends copy
        // whole requests into and out of guest RAM, and 2 MiB pages save most of those copies'
        // TLB misses. Only advice: without THP, RAM is simply 4 KiB pages.
        // SAFETY: `base..base + len` is the mapping just made, owned by `mem`; the advice
        // changes no contents and no permissions.
        let _ = unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        Ok(GuestRam {
            mem,
            size,
            base,
            read_only: std::sync::OnceLock::new(),
            from_file: false,
            vmm_writes: None,
        })
    }

    /// Maps `size` bytes of `file` at `offset` as guest RAM, copy-on-write (`MAP_PRIVATE`): the
    /// guest reads the file's pages (shared in the page cache by every VM mapping the same
    /// snapshot) and its writes go to private copies that never reach the file. For restoring a
    /// snapshot ([`crate::snapshot`]); `offset` must be page-aligned.
    pub fn from_snapshot(
        file: &std::fs::File,
        offset: u64,
        size: u64,
    ) -> std::io::Result<GuestRam> {
        use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
        let len = usize::try_from(size).map_err(std::io::Error::other)?;
        let file_offset = vm_memory::FileOffset::new(file.try_clone()?, offset);
        let region = MmapRegionBuilder::new(len)
            .with_file_offset(file_offset)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(std::io::Error::other)?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or_else(|| std::io::Error::other("guest RAM does not fit the address space"))?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(std::io::Error::other)?;
        let base = mem
            .get_host_address(GuestAddress(0))
            .map_err(std::io::Error::other)? as u64;
        Ok(GuestRam {
            mem,
            size,
            base,
            read_only: std::sync::OnceLock::new(),
            from_file: true,
            vmm_writes: None,
        })
    }

    /// Drops every page the guest (or the VMM) wrote since RAM was mapped from a snapshot file
    /// ([`GuestRam::from_snapshot`]): the next access reads the file's page again. KVM notices
    /// through its MMU notifier; the guest must not run meanwhile. Refused for RAM not mapped
    /// from a file (it would be zeroed).
    pub fn revert_to_file(&self) -> std::io::Result<()> {
        if !self.from_file {
            return Err(std::io::Error::other(
                "guest RAM is not mapped from a snapshot",
            ));
        }
        // SAFETY: `base..base + size` is this RAM's own private file mapping; MADV_DONTNEED
        // drops the private copies, so later reads see the file again. No Rust reference into
        // guest RAM exists (all access is through copies and atomics), and the vCPU is stopped.
        let r = unsafe {
            libc::madvise(
                self.base as *mut libc::c_void,
                self.size as usize,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Reverts only the pages `dirty` marks (a bitmap, one bit per page, as `KVM_GET_DIRTY_LOG`
    /// returns it): [`GuestRam::revert_to_file`] for those, so pages the guest only read stay
    /// mapped. Runs separated by a few clean pages are merged (a clean page dropped is only
    /// read again); with very many runs the whole RAM is reverted in one call. Returns how many
    /// `madvise` calls it made.
    pub fn revert_pages(&self, dirty: &[u64]) -> std::io::Result<usize> {
        const MERGE_GAP: u64 = 8;
        const MAX_RUNS: usize = 64;
        if !self.from_file {
            return Err(std::io::Error::other(
                "guest RAM is not mapped from a snapshot",
            ));
        }
        let pages = self.size / PAGE_SIZE;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (w, &word) in dirty.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let page = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if page >= pages {
                    break;
                }
                match runs.last_mut() {
                    Some((_, end)) if page <= *end + MERGE_GAP => *end = page + 1,
                    _ => runs.push((page, page + 1)),
                }
            }
            if runs.len() > MAX_RUNS {
                self.revert_to_file()?;
                return Ok(1);
            }
        }
        for &(start, end) in &runs {
            // SAFETY: the range lies inside this RAM's private file mapping (pages < size);
            // MADV_DONTNEED drops the private copies there, as in `revert_to_file`.
            let r = unsafe {
                libc::madvise(
                    (self.base + start * PAGE_SIZE) as *mut libc::c_void,
                    ((end - start) * PAGE_SIZE) as usize,
                    libc::MADV_DONTNEED,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(runs.len())
    }

    /// Starts recording the pages the VMM writes ([`GuestRam::take_vmm_writes`]).
    pub fn track_vmm_writes(&mut self) {
        let words = (self.size / PAGE_SIZE).div_ceil(64) as usize;
        self.vmm_writes = Some((0..words).map(|_| AtomicU64::new(0)).collect());
    }

    /// The pages the VMM may have written since the last call (a bitmap, one bit per page);
    /// empty if it does not record them.
    pub fn take_vmm_writes(&self) -> Vec<u64> {
        self.vmm_writes.as_deref().map_or_else(Vec::new, |words| {
            words.iter().map(|w| w.swap(0, Ordering::AcqRel)).collect()
        })
    }

    /// Notes that the VMM may write `[gpa, gpa + len)` (inside RAM).
    fn note_write(&self, gpa: u64, len: u64) {
        let Some(words) = self.vmm_writes.as_deref() else {
            return;
        };
        let last = (gpa + len.max(1) - 1) / PAGE_SIZE;
        for page in gpa / PAGE_SIZE..=last {
            if let Some(w) = words.get((page / 64) as usize) {
                w.fetch_or(1 << (page % 64), Ordering::AcqRel);
            }
        }
    }

    /// The ranges [`GuestRam::protect`] set.
    pub fn read_only_ranges(&self) -> Vec<std::ops::Range<u64>> {
        self.read_only.get().cloned().unwrap_or_default()
    }

    /// RAM size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host virtual address of GPA 0 (RAM is one contiguous mapping).
    pub fn host_base(&self) -> u64 {
        self.base
    }

    /// Checks that `[gpa, gpa + len)` lies inside RAM.
    pub fn check_range(&self, gpa: GuestAddress, len: u64) -> Result<(), Errno> {
        let gpa = gpa.0;
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// Copies `buf.len()` bytes from guest RAM at `gpa`.
    pub fn read(&self, gpa: GuestAddress, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_range(gpa, buf.len() as u64)?;
        self.mem.read_slice(buf, gpa).map_err(|_| Errno::EFAULT)
    }

    /// Marks ranges the guest cannot write itself (the domain builder's read-only pages); from
    /// then on [`GuestRam::write`] refuses them, so a hypercall cannot write where the guest may
    /// not. Later calls are ignored.
    pub fn protect(&self, mut ranges: Vec<std::ops::Range<u64>>) {
        ranges.sort_by_key(|r| r.start);
        let _ = self.read_only.set(ranges);
    }

    /// Copies `buf` into guest RAM at `gpa`; `EFAULT` if the range leaves RAM or touches a
    /// protected range.
    pub fn write(&self, gpa: GuestAddress, buf: &[u8]) -> Result<(), Errno> {
        self.check_writable(gpa, buf.len() as u64)?;
        self.note_write(gpa.0, buf.len() as u64);
        self.mem.write_slice(buf, gpa).map_err(|_| Errno::EFAULT)
    }

    /// Writes `buf` at `gpa` as the VMM itself (the domain builder's structures, a restore's
    /// clock and start-info updates): read-only ranges included, which only bind backends.
    pub fn write_as_vmm(&self, gpa: GuestAddress, buf: &[u8]) -> Result<(), Errno> {
        self.check_range(gpa, buf.len() as u64)?;
        self.note_write(gpa.0, buf.len() as u64);
        self.mem.write_slice(buf, gpa).map_err(|_| Errno::EFAULT)
    }

    /// Copies `buf` into guest RAM at `gpa`, protected ranges included: for the debugger, which
    /// writes breakpoints into the guest's (read-only) code. `EFAULT` if the range leaves RAM.
    pub fn write_as_debugger(&self, gpa: GuestAddress, buf: &[u8]) -> Result<(), Errno> {
        self.check_range(gpa, buf.len() as u64)?;
        self.note_write(gpa.0, buf.len() as u64);
        self.mem.write_slice(buf, gpa).map_err(|_| Errno::EFAULT)
    }

    /// Checks that `[gpa, gpa + len)` lies inside RAM and touches no protected range: whether
    /// [`GuestRam::write`] would accept it.
    pub fn check_writable(&self, gpa: GuestAddress, len: u64) -> Result<(), Errno> {
        let gpa = gpa.0;
        self.check_range(GuestAddress(gpa), len)?;
        let end = gpa + len;
        let protected = self.read_only.get().map_or(&[][..], Vec::as_slice);
        if len > 0 && protected.iter().any(|r| r.start < end && gpa < r.end) {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// The host address of `[gpa, gpa + len)`, checked to lie inside RAM and, if `writable`,
    /// to touch no protected range: what [`GuestRam::write`] would accept. For handing guest
    /// memory to the kernel (vectored disk I/O); never made into a Rust reference.
    pub fn host_range(&self, gpa: GuestAddress, len: u64, writable: bool) -> Result<u64, Errno> {
        let gpa = gpa.0;
        if writable {
            self.check_writable(GuestAddress(gpa), len)?;
            self.note_write(gpa, len);
        } else {
            self.check_range(GuestAddress(gpa), len)?;
        }
        Ok(self.host_base() + gpa)
    }

    /// The host address of `[gpa, gpa + len)`, checked to lie inside RAM and to be aligned to
    /// `align`.
    fn host_ptr(&self, gpa: u64, len: u64, align: u64) -> Result<*mut u8, Errno> {
        self.check_range(GuestAddress(gpa), len)?;
        if !gpa.is_multiple_of(align) {
            return Err(Errno::EINVAL);
        }
        // An atomic view may be stored through: count it as a write.
        self.note_write(gpa, len);
        Ok((self.host_base() + gpa) as *mut u8)
    }

    /// The `u64` at `gpa` as an atomic, for state shared with a running guest (event bitmaps).
    pub fn atomic_u64(&self, gpa: GuestAddress) -> Result<&AtomicU64, Errno> {
        let gpa = gpa.0;
        let ptr = self.host_ptr(gpa, 8, 8)?;
        // SAFETY: `ptr` is 8-aligned and its 8 bytes lie inside the RAM mapping, which lives as
        // long as `self`. Any bit pattern is a valid `AtomicU64`, and the guest and the VMM only
        // ever access shared words like this one atomically or with plain copies of the whole
        // page, never through Rust references with other types.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast()) })
    }

    /// The `u32` at `gpa` as an atomic (ring and console indices).
    pub fn atomic_u32(&self, gpa: GuestAddress) -> Result<&AtomicU32, Errno> {
        let gpa = gpa.0;
        let ptr = self.host_ptr(gpa, 4, 4)?;
        // SAFETY: as for `atomic_u64`, with 4 bytes and 4-byte alignment.
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast()) })
    }

    /// The `u16` at `gpa` as an atomic (grant entry flags).
    pub fn atomic_u16(&self, gpa: GuestAddress) -> Result<&AtomicU16, Errno> {
        let gpa = gpa.0;
        let ptr = self.host_ptr(gpa, 2, 2)?;
        // SAFETY: as for `atomic_u64`, with 2 bytes and 2-byte alignment.
        Ok(unsafe { AtomicU16::from_ptr(ptr.cast()) })
    }

    /// The byte at `gpa` as an atomic (upcall flags, the VIF byte).
    pub fn atomic_u8(&self, gpa: GuestAddress) -> Result<&AtomicU8, Errno> {
        let gpa = gpa.0;
        let ptr = self.host_ptr(gpa, 1, 1)?;
        // SAFETY: as for `atomic_u64`, with one byte.
        Ok(unsafe { AtomicU8::from_ptr(ptr) })
    }

    /// Copies a `T` out of guest RAM.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, gpa: GuestAddress) -> Result<T, Errno> {
        let mut value = T::new_zeroed();
        self.read(gpa, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Copies a `T` into guest RAM.
    pub fn write_obj<T: IntoBytes + Immutable>(
        &self,
        gpa: GuestAddress,
        value: &T,
    ) -> Result<(), Errno> {
        self.write(gpa, value.as_bytes())
    }
}

/// One page of guest RAM shared with the guest: a ring or the console page. Every access stays
/// inside the page.
#[derive(Clone, Debug)]
pub struct GuestPage {
    ram: Arc<GuestRam>,
    gpa: u64,
    /// Whether the guest's page tables let it write the page (checked once: the protected
    /// ranges are fixed when the guest is built). Stores into a page that is not are refused.
    writable: bool,
}

impl GuestPage {
    /// The page at `gpa`, which must be page-aligned and inside RAM.
    pub fn new(ram: Arc<GuestRam>, gpa: u64) -> Result<GuestPage, Errno> {
        ram.check_range(GuestAddress(gpa), PAGE_SIZE)?;
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let writable = ram.check_writable(GuestAddress(gpa), PAGE_SIZE).is_ok();
        Ok(GuestPage { ram, gpa, writable })
    }

    /// The page's GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The page-relative range `[offset, offset + len)` as a GPA, if it lies in the page.
    fn range(&self, offset: usize, len: usize) -> Option<u64> {
        let end = offset.checked_add(len)?;
        (end as u64 <= PAGE_SIZE).then(|| self.gpa + offset as u64)
    }
}

// Offsets come from the drivers, never straight from the guest: an out-of-page access is a VMM
// bug, which debug builds catch and release builds turn into a no-op rather than a panic. So is
// a store into a page the guest may not write: the grant table refuses writable mappings of
// those, and the console page is writable.
impl SharedPage for GuestPage {
    fn load_u32(&self, offset: usize) -> u32 {
        let gpa = self.range(offset, 4);
        debug_assert!(gpa.is_some(), "load_u32 outside the page: {offset}");
        gpa.and_then(|g| self.ram.atomic_u32(GuestAddress(g)).ok())
            .map_or(0, |a| a.load(Acquire))
    }

    fn store_u32(&self, offset: usize, value: u32) {
        let gpa = self.range(offset, 4);
        debug_assert!(gpa.is_some(), "store_u32 outside the page: {offset}");
        debug_assert!(self.writable, "store_u32 into a read-only page");
        if !self.writable {
            tracing::error!("refused a store into the read-only page {:#x}", self.gpa);
            return;
        }
        if let Some(a) = gpa.and_then(|g| self.ram.atomic_u32(GuestAddress(g)).ok()) {
            a.store(value, Release);
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        let gpa = self.range(offset, buf.len());
        debug_assert!(
            gpa.is_some(),
            "read outside the page: {offset}+{}",
            buf.len()
        );
        if gpa
            .and_then(|g| self.ram.read(GuestAddress(g), buf).ok())
            .is_none()
        {
            buf.fill(0);
        }
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        let gpa = self.range(offset, buf.len());
        debug_assert!(
            gpa.is_some(),
            "write outside the page: {offset}+{}",
            buf.len()
        );
        debug_assert!(self.writable, "write into a read-only page");
        if let Some(g) = gpa
            && let Err(e) = self.ram.write(GuestAddress(g), buf)
        {
            // Grants refuse writable mappings of such pages, so this is a VMM bug.
            tracing::error!("a write into guest page {:#x} failed: {e:?}", self.gpa);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_ranges_outside_ram() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(ram.read(GuestAddress((1 << 20) - 16), &mut buf), Ok(()));
        assert_eq!(
            ram.read(GuestAddress((1 << 20) - 15), &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            ram.read(GuestAddress(u64::MAX - 4), &mut buf),
            Err(Errno::EFAULT)
        );
        assert_eq!(ram.write(GuestAddress(1 << 20), &[1]), Err(Errno::EFAULT));
        assert_eq!(ram.read(GuestAddress(0), &mut []), Ok(()));
    }

    #[test]
    fn atomics_are_checked_for_range_and_alignment() {
        use std::sync::atomic::Ordering::SeqCst;
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.atomic_u64(GuestAddress(0x100))
            .unwrap()
            .fetch_or(0b101, SeqCst);
        assert_eq!(ram.read_obj::<u64>(GuestAddress(0x100)), Ok(0b101));
        assert_eq!(
            ram.atomic_u64(GuestAddress(0x104)).err(),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            ram.atomic_u64(GuestAddress((1 << 20) - 4)).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(
            ram.atomic_u32(GuestAddress(u64::MAX - 3)).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(
            ram.atomic_u16(GuestAddress(0x101)).err(),
            Some(Errno::EINVAL)
        );
        assert_eq!(ram.atomic_u16(GuestAddress(0x102)).unwrap().load(SeqCst), 0);
    }

    #[test]
    fn protected_ranges_refuse_writes_but_not_reads() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write(GuestAddress(0x1000), &[7]).unwrap();
        ram.protect(vec![0x1000..0x2000, 0..0x1000]);
        assert_eq!(ram.write(GuestAddress(0x1000), &[1]), Err(Errno::EFAULT));
        assert_eq!(
            ram.write(GuestAddress(0xfff), &[1, 2]),
            Err(Errno::EFAULT),
            "straddling"
        );
        assert_eq!(ram.write(GuestAddress(0x0), &[1]), Err(Errno::EFAULT));
        assert_eq!(ram.write(GuestAddress(0x2000), &[1]), Ok(()));
        assert_eq!(ram.write(GuestAddress(0x1000), &[]), Ok(()));
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x1000)), Ok(7));
    }

    #[test]
    fn round_trips_objects() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write_obj(GuestAddress(0x1000), &0xdead_beef_u64)
            .unwrap();
        assert_eq!(ram.read_obj::<u64>(GuestAddress(0x1000)), Ok(0xdead_beef));
    }
}
