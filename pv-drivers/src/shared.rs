//! Memory shared between a frontend and a backend.
//!
//! A ring or console page is written concurrently by two parties that trust each other only as
//! far as the protocol says: the guest's frontend and the VMM's backend. Neither side may form a
//! Rust reference to the page (the other side can change it at any time), so every driver in
//! this crate touches shared memory only through [`SharedPage`]: atomic loads and stores of the
//! `u32` indices, and byte copies of everything else. The driver logic then works on private
//! copies, which the other side cannot change after validation (the XSA-155 "double fetch"
//! lesson).
//!
//! The guest implements [`SharedPage`] over a pointer to its own page; the VMM over a
//! grant-checked mapping of guest memory. [`TestPage`] is an implementation in ordinary memory,
//! for tests and for putting both halves of a protocol in one address space.
//!
//! # Implementing `SharedPage`
//!
//! * [`load_u32`](SharedPage::load_u32) must be an atomic load with (at least) `Acquire`
//!   ordering and [`store_u32`](SharedPage::store_u32) an atomic store with (at least) `Release`
//!   ordering: the drivers publish data with "copy the bytes, then store the index" and consume
//!   it with "load the index, then copy the bytes", and rely on those orderings for Xen's
//!   `wmb()`/`rmb()`. On x86-64 both are plain `mov`s (e.g. `AtomicU32::from_ptr`).
//! * [`read`](SharedPage::read) and [`write`](SharedPage::write) may be racy byte copies
//!   (volatile or relaxed-atomic accesses, never a Rust reference to the shared bytes): the
//!   drivers validate what they copy out and never read the same bytes twice.
//! * [`fence`](SharedPage::fence) must be a full (`SeqCst`) fence, Xen's `mb()`: it orders an
//!   index store before a later index load (store→load), which `Acquire`/`Release` do not.
//! * Offsets are always in bounds: the drivers pass `offset + len <= PAGE_SIZE` and 4-aligned
//!   offsets to the `u32` accessors, computing every offset from masked indices. An
//!   implementation may panic on anything else (it is a driver bug, never guest input).

use core::sync::atomic::{AtomicU32, Ordering, fence};

/// Size of a shared page: every ring and the console page are exactly one page.
pub const PAGE_SIZE: usize = parapet_abi::start_info::PAGE_SIZE as usize;

/// One 4 KiB page of memory shared with the other end of a split driver.
///
/// See the [module documentation](self) for the ordering and bounds requirements.
pub trait SharedPage {
    /// Atomically loads the `u32` at the 4-aligned `offset` (`< PAGE_SIZE`), with `Acquire`
    /// ordering.
    fn load_u32(&self, offset: usize) -> u32;

    /// Atomically stores `value` at the 4-aligned `offset` (`< PAGE_SIZE`), with `Release`
    /// ordering.
    fn store_u32(&self, offset: usize, value: u32);

    /// Copies `buf.len()` bytes starting at `offset` out of the page. The other side may be
    /// writing them concurrently: the copy may then be torn, and the caller validates it.
    fn read(&self, offset: usize, buf: &mut [u8]);

    /// Copies `buf` into the page starting at `offset`.
    fn write(&self, offset: usize, buf: &[u8]);

    /// A full memory fence (Xen's `mb()`), ordering earlier stores before later loads.
    fn fence(&self) {
        fence(Ordering::SeqCst)
    }
}

impl<P: SharedPage + ?Sized> SharedPage for &P {
    fn load_u32(&self, offset: usize) -> u32 {
        (**self).load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        (**self).store_u32(offset, value)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        (**self).read(offset, buf)
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        (**self).write(offset, buf)
    }

    fn fence(&self) {
        (**self).fence()
    }
}

/// A [`SharedPage`] in ordinary memory, made of 1024 `AtomicU32` words.
///
/// It is `Sync`, so a frontend and a backend can share it by reference (`&TestPage` is a
/// `SharedPage` too) from one thread or two. Byte copies are per-byte atomic read-modify-writes
/// of the containing word: slow, but free of data races. The page is little-endian like the
/// guest, so [`load_u32`](SharedPage::load_u32) and a 4-byte [`read`](SharedPage::read) of the
/// same offset agree.
#[derive(Debug)]
pub struct TestPage {
    words: [AtomicU32; PAGE_SIZE / 4],
}

impl TestPage {
    /// A zeroed page.
    pub const fn new() -> Self {
        Self {
            words: [const { AtomicU32::new(0) }; PAGE_SIZE / 4],
        }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        &self.words[offset / 4]
    }
}

impl Default for TestPage {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPage for TestPage {
    fn load_u32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned u32 load at {offset:#x}");
        self.word(offset).load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned u32 store at {offset:#x}");
        self.word(offset).store(value, Ordering::Release)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset <= PAGE_SIZE && buf.len() <= PAGE_SIZE - offset);
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = offset + i;
            let word = self.word(at).load(Ordering::Relaxed);
            *byte = word.to_le_bytes()[at % 4];
        }
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        assert!(offset <= PAGE_SIZE && buf.len() <= PAGE_SIZE - offset);
        for (i, &byte) in buf.iter().enumerate() {
            let at = offset + i;
            let shift = (at % 4) * 8;
            let mask = 0xffu32 << shift;
            // A compare-exchange loop rather than `fetch_update`, which newer toolchains
            // deprecate: one byte of the word changes, atomically.
            let word = self.word(at);
            let mut current = word.load(Ordering::Relaxed);
            loop {
                let new = (current & !mask) | (u32::from(byte) << shift);
                match word.compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => break,
                    Err(seen) => current = seen,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PAGE_SIZE, SharedPage, TestPage};

    #[test]
    fn bytes_and_words_agree_little_endian() {
        let page = TestPage::new();
        page.write(8, &[1, 2, 3, 4, 5]);
        assert_eq!(page.load_u32(8), 0x0403_0201);
        assert_eq!(page.load_u32(12), 5);
        page.store_u32(16, 0xaabb_ccdd);
        let mut buf = [0; 6];
        page.read(14, &mut buf);
        assert_eq!(buf, [0, 0, 0xdd, 0xcc, 0xbb, 0xaa]);
    }

    #[test]
    fn whole_page_round_trips_through_a_reference() {
        let page = TestPage::new();
        let by_ref: &TestPage = &page;
        let data: [u8; PAGE_SIZE] = core::array::from_fn(|i| (i * 7) as u8);
        by_ref.write(0, &data);
        let mut back = [0; PAGE_SIZE];
        SharedPage::read(&by_ref, 0, &mut back);
        assert_eq!(data, back);
    }

    #[test]
    #[should_panic]
    fn out_of_bounds_copy_panics() {
        TestPage::new().write(PAGE_SIZE - 1, &[0, 0]);
    }
}
