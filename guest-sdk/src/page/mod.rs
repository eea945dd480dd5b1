//! Memory shared with the VMM: [`GuestPage`], a view of a page the VMM also accesses, and
//! [`PageBox`], an owned, zeroed, page-aligned page from the heap. Both implement
//! [`pv_drivers::shared::SharedPage`], so the drivers of `pv-drivers` (rings, the console page,
//! the loopback device) run over them.
//!
//! Neither ever hands out a Rust reference to the page's bytes: the VMM (or a backend) may write
//! them at any time. Indices are accessed with atomics, bytes with copies the compiler cannot
//! see into (`rep movsb`).
//!
//! The SDK's other modules reach the pages the domain builder shares with the guest through
//! this module too, as safe, typed views made only from the start-info page recorded at boot:
//! the shared-info page (event-channel bitmaps, the PV clock, the wall clock), the grant
//! table's entries, kvm_pvm's VIF page and the console page. This module (with [`crate::heap`])
//! is where the SDK turns addresses into memory accesses.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use parapet_abi::start_info::PAGE_SIZE;
use pv_drivers::shared::SharedPage;

mod grant_table;
mod shared_info;
mod vif;

pub(crate) use grant_table::GrantTable;
pub(crate) use shared_info::SharedInfoPage;
pub(crate) use vif::VifPage;

const PAGE: usize = PAGE_SIZE as usize;

/// A 4 KiB page of guest memory that the VMM may access concurrently (the console page, a ring
/// page). A `GuestPage` is only an address: it does not own the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPage(NonNull<u8>);

// SAFETY: a `GuestPage` is an address; every access through it is atomic or volatile, as it
// must be anyway because the VMM writes the page concurrently.
unsafe impl Send for GuestPage {}
// SAFETY: as for `Send`.
unsafe impl Sync for GuestPage {}

impl GuestPage {
    /// A view of the page at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be page-aligned, and the page must stay mapped read/write and not be used
    /// through Rust references for as long as the `GuestPage` (or a copy) is used.
    pub const unsafe fn from_addr(addr: u64) -> GuestPage {
        // SAFETY: the caller guarantees a mapped, aligned page, hence a non-null address.
        GuestPage(unsafe { NonNull::new_unchecked(addr as *mut u8) })
    }

    /// The page's guest-physical address (= virtual address).
    pub fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    /// The page's frame number (address / 4096).
    pub fn frame(&self) -> u64 {
        self.addr() / PAGE_SIZE
    }

    fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset <= PAGE && len <= PAGE - offset,
            "access outside the page"
        );
        self.0.as_ptr().wrapping_add(offset)
    }
}

impl SharedPage for GuestPage {
    fn load_u32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0);
        // SAFETY: in bounds (`at`), 4-aligned, in a mapped page (`from_addr`'s contract) that
        // both sides access atomically.
        unsafe { AtomicU32::from_ptr(self.at(offset, 4).cast()) }.load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0);
        // SAFETY: as in `load_u32`.
        unsafe { AtomicU32::from_ptr(self.at(offset, 4).cast()) }.store(value, Ordering::Release)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        let src = self.at(offset, buf.len());
        // SAFETY: `src..src + buf.len()` is inside the mapped page (`at`) and `buf` is a
        // distinct, writable buffer of that length.
        unsafe { copy_shared(src, buf.as_mut_ptr(), buf.len()) };
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        let dst = self.at(offset, buf.len());
        // SAFETY: as in `read`, the other way round.
        unsafe { copy_shared(buf.as_ptr(), dst, buf.len()) };
    }
}

/// Copies `len` bytes between a shared page and private memory.
///
/// The other side may write the shared page at any time, so the copy must be one the compiler
/// cannot reason about (it may not assume the bytes stay put, or merge and elide accesses):
/// `rep movsb`, which is also the fastest copy the guest has (no SSE in the kernel, and ERMS
/// makes it run at cache-line speed), instead of a volatile access per byte.
///
/// # Safety
///
/// `src..src + len` must be readable and `dst..dst + len` writable, and the two must not overlap.
unsafe fn copy_shared(src: *const u8, dst: *mut u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the ranges; `rep movsb` touches exactly them (DF is clear
    // as the ABI requires) and nothing else.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..len {
        // SAFETY: in bounds, as the caller guarantees; volatile, as explained above.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// Sets `len` bytes of a shared page to `value` (`rep stosb`, for the reasons of
/// [`copy_shared`]).
///
/// # Safety
///
/// `dst..dst + len` must be writable.
unsafe fn fill_shared(dst: *mut u8, value: u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the range; `rep stosb` writes exactly it.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") len => _,
            inout("rdi") dst => _,
            in("al") value,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..len {
        // SAFETY: in bounds, as the caller guarantees.
        unsafe { dst.add(i).write_volatile(value) };
    }
}

/// The console page (`StartInfo::console_page`), or `None` before boot, on the host, or if the
/// VMM gave the guest none (or a misaligned one).
pub(crate) fn console_page() -> Option<GuestPage> {
    let addr = crate::start_info::try_start_info()?.console_page;
    if addr == 0 || !addr.is_multiple_of(PAGE_SIZE) {
        return None;
    }
    // SAFETY: the console page is a boot page the VMM maps read/write for the guest's whole
    // life; the SDK accesses it only through `GuestPage` (atomics and copies, no references).
    Some(unsafe { GuestPage::from_addr(addr) })
}

/// `StartInfo::generation`, read afresh (0 before boot): the VMM rewrites it while the domain is
/// stopped for a restore, behind the `&'static StartInfo` the SDK holds.
pub(crate) fn start_info_generation() -> u64 {
    crate::start_info::try_start_info().map_or(0, |info| {
        // SAFETY: a valid, aligned u64 inside the start-info page, which lives as long as the
        // domain; volatile, because the VMM writes it while the guest holds a shared reference.
        unsafe { core::ptr::read_volatile(&raw const info.generation) }
    })
}

/// `DeviceInfo::config[word]` of start-info device `index`, read afresh (`None` before boot, or
/// for no such device or word): after a restore the VMM may rewrite a device's configuration
/// (a clone's MAC address) while the domain is stopped, behind the `&'static StartInfo` the SDK
/// holds.
pub(crate) fn start_info_device_config(index: u32, word: usize) -> Option<u64> {
    let info = crate::start_info::try_start_info()?;
    let index = usize::try_from(index).ok()?;
    if index >= info.devices().len() || word >= info.devices[index].config.len() {
        return None;
    }
    // SAFETY: a valid, aligned u64 inside the start-info page (both indices checked above),
    // which lives as long as the domain; volatile, because the VMM writes it while the guest
    // holds a shared reference.
    Some(unsafe { core::ptr::read_volatile(&raw const info.devices[index].config[word]) })
}

/// An owned, zeroed, page-aligned 4 KiB page from the heap, freed on drop. Use it for ring pages
/// and for pages granted to backends; read and write it through [`SharedPage`] (or
/// [`PageBox::to_array`]), never through references, while a backend may touch it.
///
/// Heap pages lie above the kernel image, so their frames are at or above 1 MiB and may be
/// granted.
#[derive(Debug)]
pub struct PageBox(GuestPage);

impl PageBox {
    const LAYOUT: Layout = match Layout::from_size_align(PAGE, PAGE) {
        Ok(l) => l,
        Err(_) => panic!("bad page layout"),
    };

    /// Allocates a zeroed page; `None` if the heap is exhausted.
    pub fn try_new() -> Option<PageBox> {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc::alloc_zeroed(Self::LAYOUT) };
        // SAFETY: a fresh, page-aligned allocation of one page, owned by the `PageBox` until
        // it is freed in `drop`.
        NonNull::new(p).map(|p| PageBox(unsafe { GuestPage::from_addr(p.as_ptr() as u64) }))
    }

    /// Allocates a zeroed page.
    ///
    /// # Panics
    ///
    /// If the heap is exhausted.
    pub fn new() -> PageBox {
        Self::try_new().unwrap_or_else(|| alloc::alloc::handle_alloc_error(Self::LAYOUT))
    }

    /// A non-owning view of the page (valid while the `PageBox` lives).
    pub fn page(&self) -> GuestPage {
        self.0
    }

    /// The page's address.
    pub fn addr(&self) -> u64 {
        self.0.addr()
    }

    /// The page's frame number, as grants name it.
    pub fn frame(&self) -> u64 {
        self.0.frame()
    }

    /// A copy of the whole page.
    pub fn to_array(&self) -> [u8; PAGE] {
        let mut out = [0u8; PAGE];
        self.0.read(0, &mut out);
        out
    }

    /// Sets every byte of `[offset, offset + len)` to `value`.
    pub fn fill(&self, offset: usize, len: usize, value: u8) {
        let dst = self.0.at(offset, len);
        // SAFETY: inside the owned page (`at`).
        unsafe { fill_shared(dst, value, len) };
    }
}

impl Default for PageBox {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPage for PageBox {
    fn load_u32(&self, offset: usize) -> u32 {
        self.0.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.0.store_u32(offset, value)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        self.0.read(offset, buf)
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        self.0.write(offset, buf)
    }
}

impl Drop for PageBox {
    fn drop(&mut self) {
        // SAFETY: allocated in `try_new` with `LAYOUT` and freed only here.
        unsafe { alloc::alloc::dealloc(self.0.0.as_ptr(), Self::LAYOUT) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_boxes_are_aligned_zeroed_and_shared() {
        let p = PageBox::new();
        assert_eq!(p.addr() % PAGE_SIZE, 0);
        assert!(p.to_array().iter().all(|&b| b == 0));
        p.fill(10, 3, 0xab);
        p.store_u32(100, 0x0102_0304);
        let a = p.to_array();
        assert_eq!(&a[9..14], &[0, 0xab, 0xab, 0xab, 0]);
        assert_eq!(&a[100..104], &[4, 3, 2, 1]);
        assert_eq!(p.page().load_u32(100), 0x0102_0304);
    }

    #[test]
    #[should_panic]
    fn accesses_outside_the_page_panic() {
        PageBox::new().write(4095, &[1, 2]);
    }
}
