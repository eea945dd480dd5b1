//! The kernel heap: a [`linked_list_allocator::Heap`] behind a spin lock, installed as the
//! `#[global_allocator]` of guest kernels, so guests can use the `alloc` crate (`Box`, `Vec`,
//! `String`, …) after `extern crate alloc;`.
//!
//! At boot the heap is given the largest `USABLE` memory-map region above the kernel image
//! ([`heap_region`]). Allocation failure panics (the `alloc` crate's default), which stops the
//! domain as crashed.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use parapet_abi::start_info::{MemMapEntry, PAGE_SIZE, mem_kind};
use spin::Mutex;

/// A lock-protected [`Heap`] usable as a global allocator.
pub struct LockedHeap(Mutex<Heap>);

impl core::fmt::Debug for LockedHeap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("LockedHeap");
        match self.0.try_lock() {
            Some(heap) => d.field("size", &heap.size()).field("used", &heap.used()),
            None => d.field("locked", &true),
        };
        d.finish()
    }
}

impl LockedHeap {
    /// A heap with no memory: every allocation fails until [`LockedHeap::init`].
    pub const fn empty() -> Self {
        LockedHeap(Mutex::new(Heap::empty()))
    }

    /// Hands the heap `size` bytes at `start`.
    ///
    /// # Safety
    ///
    /// The range must be mapped, writable, unused by anything else for the rest of the guest's
    /// life, and this must be called at most once.
    pub unsafe fn init(&self, start: *mut u8, size: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.lock().init(start, size) }
    }

    /// Total bytes under management.
    pub fn size(&self) -> usize {
        self.0.lock().size()
    }

    /// Bytes currently allocated.
    pub fn used(&self) -> usize {
        self.0.lock().used()
    }
}

// SAFETY: allocation and deallocation are delegated to `linked_list_allocator::Heap`, which
// returns blocks that fit `layout` and are not handed out twice; the mutex serialises access.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this `layout`.
            unsafe { self.0.lock().deallocate(ptr, layout) }
        }
    }
}

/// The heap: in a guest kernel, the `#[global_allocator]`, given its memory at boot.
///
/// It exists on every target, so code that reports on it builds for the host too (where every
/// guest crate also compiles, to a stub); there it is not the allocator and stays empty.
///
/// ```
/// use guest_sdk::heap::HEAP;
///
/// let (used, size) = (HEAP.used(), HEAP.size());
/// assert!(used <= size); // in a guest: `println!("heap: {used} of {size} bytes in use")`
/// ```
#[cfg_attr(target_os = "none", global_allocator)]
pub static HEAP: LockedHeap = LockedHeap::empty();

/// The heap's memory: the largest `USABLE` region of `memmap`, clipped to start at or above
/// `kernel_end` and trimmed to whole pages. `None` if no region has a page left.
pub fn heap_region(memmap: &[MemMapEntry], kernel_end: u64) -> Option<(u64, u64)> {
    memmap
        .iter()
        .filter(|e| e.kind == mem_kind::USABLE)
        .filter_map(|e| {
            let end = e.addr.checked_add(e.len)? & !(PAGE_SIZE - 1);
            let start = e.addr.max(kernel_end).checked_next_multiple_of(PAGE_SIZE)?;
            (end > start).then(|| (start, end - start))
        })
        .max_by_key(|&(_, len)| len)
}

/// Gives [`HEAP`] its memory from the memory map. Called once by the boot code.
#[cfg(target_os = "none")]
pub(crate) fn init(info: &parapet_abi::start_info::StartInfo) {
    unsafe extern "C" {
        /// End of the kernel image (linker script), page-aligned.
        static __kernel_end: u8;
    }
    let kernel_end = (&raw const __kernel_end) as u64;
    match heap_region(info.memmap(), kernel_end) {
        Some((start, len)) => {
            // SAFETY: a USABLE region lies in guest RAM, which the domain builder identity-maps
            // read/write; it is clipped above the kernel image, and nothing else in the SDK
            // uses free RAM. Boot calls this once.
            unsafe { HEAP.init(start as *mut u8, len as usize) };
            log::debug!(target: "parapet::heap", "{} KiB at {start:#x}", len / 1024);
        }
        None => log::warn!(target: "parapet::heap", "no usable memory; allocations will fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(addr: u64, len: u64, kind: u32) -> MemMapEntry {
        MemMapEntry {
            addr,
            len,
            kind,
            pad: 0,
        }
    }

    #[test]
    fn picks_the_largest_usable_region_above_the_kernel() {
        let map = [
            region(0, 0x10_0000, mem_kind::BOOT),
            region(0x10_0000, 0x5_0000, mem_kind::KERNEL),
            region(0x15_0000, 0x10_0000, mem_kind::USABLE),
            region(0x30_0000, 0x100_0000, mem_kind::BOOT),
            region(0x200_0000, 0x20_0000, mem_kind::USABLE),
        ];
        assert_eq!(heap_region(&map, 0x15_0000), Some((0x200_0000, 0x20_0000)));
    }

    #[test]
    fn clips_regions_that_overlap_the_kernel() {
        let map = [region(0x10_0000, 0x40_0000, mem_kind::USABLE)];
        assert_eq!(heap_region(&map, 0x18_0000), Some((0x18_0000, 0x38_0000)));
        // Unaligned ends are trimmed to pages.
        let map = [region(0x10_0010, 0x40_0000, mem_kind::USABLE)];
        assert_eq!(heap_region(&map, 0x10_0000), Some((0x10_1000, 0x3f_f000)));
        // Nothing left above the kernel.
        let map = [region(0x10_0000, 0x1000, mem_kind::USABLE)];
        assert_eq!(heap_region(&map, 0x20_0000), None);
        // Overflowing entries are ignored.
        let map = [region(u64::MAX - 10, 100, mem_kind::USABLE)];
        assert_eq!(heap_region(&map, 0), None);
    }

    #[test]
    fn locked_heap_allocates_from_its_region() {
        let mut backing = std::vec![0u64; 1024];
        let heap = LockedHeap::empty();
        // SAFETY: `backing` outlives `heap` and is used by nothing else.
        unsafe { heap.init(backing.as_mut_ptr().cast(), 8192) };
        let layout = Layout::from_size_align(100, 16).unwrap();
        // SAFETY: a non-zero-size layout.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null());
        assert!(heap.used() >= 100);
        // SAFETY: `p` came from `alloc` with `layout`.
        unsafe { heap.dealloc(p, layout) };
        assert_eq!(heap.used(), 0);
        assert_eq!(heap.size(), 8192);
    }
}
