//! The disk behind a block backend, as the protocol logic sees it.

#[cfg(doc)]
use super::{MAX_BYTES_PER_REQUEST, MAX_INDIRECT_SEGMENTS, serve_batch};
#[cfg(doc)]
use crate::grant_table::GrantMapper;

/// Why a [`BlockStore`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockIoError {
    /// The I/O failed (`errno` from the OS, or 0 if there is none). The request gets
    /// `BLKIF_RSP_ERROR`.
    #[error("I/O error (errno {errno})")]
    Io {
        /// The OS error number, or 0.
        errno: i32,
    },
    /// The store cannot perform this kind of operation at all (e.g. discard on a file system
    /// without hole punching). The request gets `BLKIF_RSP_EOPNOTSUPP`.
    #[error("operation not supported by the store")]
    Unsupported,
}

/// The disk behind a block backend: the VMM implements it over a raw image file (`pread`,
/// `pwrite`, `fdatasync`, `fallocate(PUNCH_HOLE)`), tests over memory.
///
/// [`serve_batch`] validates every request before it calls the store: offsets and lengths are
/// always multiples of 512 and inside `0..sectors() * 512` (no overflow), buffers are at most
/// [`MAX_BYTES_PER_REQUEST`] bytes (larger requests without a vectored path come in pieces),
/// vectored transfers at most [`MAX_INDIRECT_SEGMENTS`] segments, and `write_at`/`discard` are never called when
/// [`read_only`](Self::read_only) is `true`. Calls come from the one backend thread serving the
/// ring, in ring order.
///
/// `P` is the type of the granted pages the backend maps ([`GrantMapper::Mapping`]): a store
/// that can move bytes straight between the disk and those pages implements the vectored calls
/// for it; any other store implements `BlockStore<P>` for every `P` and keeps their defaults.
pub trait BlockStore<P = ()> {
    /// The disk's size in 512-byte sectors (constant while the device is connected).
    fn sectors(&self) -> u64;

    /// Whether the disk refuses writes and discards (checked by [`serve_batch`]).
    fn read_only(&self) -> bool;

    /// Fills `buf` with the bytes at `offset`. Must fill all of it or fail (a short read of a
    /// file is retried or reported, never answered as success).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockIoError>;

    /// Writes all of `buf` at `offset`. When it returns `Ok` the data is in the store (the
    /// page cache, for a file): a later [`read_at`](Self::read_at) sees it, and a later
    /// [`flush`](Self::flush) makes it durable.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), BlockIoError>;

    /// Makes every write that returned so far durable (`fdatasync` for a file).
    fn flush(&self) -> Result<(), BlockIoError>;

    /// Makes `len` bytes at `offset` read back as zeros (`len > 0`), freeing their storage if it
    /// can (`fallocate(PUNCH_HOLE | KEEP_SIZE)`, or writing zeros where holes are unsupported).
    /// Durability follows the same rule as writes.
    fn discard(&self, offset: u64, len: u64) -> Result<(), BlockIoError>;

    /// Reads the bytes at `offset` straight into the pages `segments` name, in order (their
    /// lengths add up to the request's, as for [`read_at`](Self::read_at)), or returns `None` if
    /// the store cannot: [`serve_batch`] then reads into a bounce buffer with `read_at` and
    /// copies it into the pages. The default returns `None`.
    ///
    /// [`serve_batch`] calls it after the same validation as `read_at`, with pages mapped
    /// writable. A failure may leave the pages partly written, like a failed `read_at`.
    fn read_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, P>],
    ) -> Option<Result<(), BlockIoError>> {
        let _ = (offset, segments);
        None
    }

    /// Writes the pages `segments` name, in order, at `offset`, like
    /// [`write_at`](Self::write_at), or returns `None` if the store cannot (then
    /// [`serve_batch`] copies the pages into a bounce buffer and calls `write_at`). The same
    /// rules as [`read_vectored`](Self::read_vectored) apply, with pages mapped read-only.
    fn write_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, P>],
    ) -> Option<Result<(), BlockIoError>> {
        let _ = (offset, segments);
        None
    }
}

/// The bytes `range` of one granted `page`, for [`BlockStore::read_vectored`] and
/// [`BlockStore::write_vectored`]: the store, which knows what the page is, finds its memory.
#[derive(Debug)]
pub struct PageSegment<'a, P> {
    /// The mapped page.
    pub page: &'a P,
    /// Bytes within the page (a multiple of 512 long, inside the page).
    pub range: core::ops::Range<usize>,
}

impl<P, S: BlockStore<P> + ?Sized> BlockStore<P> for &S {
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }

    fn read_only(&self) -> bool {
        (**self).read_only()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockIoError> {
        (**self).read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), BlockIoError> {
        (**self).write_at(offset, buf)
    }

    fn flush(&self) -> Result<(), BlockIoError> {
        (**self).flush()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BlockIoError> {
        (**self).discard(offset, len)
    }

    fn read_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, P>],
    ) -> Option<Result<(), BlockIoError>> {
        (**self).read_vectored(offset, segments)
    }

    fn write_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, P>],
    ) -> Option<Result<(), BlockIoError>> {
        (**self).write_vectored(offset, segments)
    }
}
