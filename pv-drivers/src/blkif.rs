//! PV block devices (docs/abi.md §10.2): [`BlkifFront`] for the guest, [`serve_batch`] and the
//! [`BlockStore`] trait for the VMM's backend.
//!
//! One ring of 32 [`BlkifRequest`]/[`BlkifResponse`] slots per disk (Xen's `io/blkif.h`). A
//! request names up to 11 segments, each a granted page and the sectors
//! `first_sect..=last_sect` (0–7) within it; the segments' sectors are consecutive on the disk
//! from `sector_number`. Sectors are 512 bytes. A discard request ([`BlkifRequestDiscard`])
//! occupies the same slot, and so does an indirect read or write ([`BlkifRequestIndirect`]),
//! whose up to [`MAX_INDIRECT_SEGMENTS`] segments are listed in granted indirect pages: one
//! request, and one vectored transfer, for a whole MiB.
//!
//! # Backend loop
//!
//! ```text
//! let mut ring = BlkifBackRing::attach(mapped_ring_page);
//! loop {
//!     let outcome = serve_batch(&mut ring, &grants, &disk, &mut || raise the event channel)?;
//!                                          // Err: stop the guest (102)
//!     if stopping { break }
//!     if !outcome.more { wait for the doorbell }
//! }
//! ```
//!
//! [`serve_batch`] consumes every request the frontend has published, copying each out of its
//! slot exactly once and validating the copy, performs it on the [`BlockStore`], and publishes
//! its response at once (`rsp_prod` per request), calling the caller's `notify` as soon as a
//! response crosses the frontend's `rsp_event`: the frontend consumes and refills the ring while
//! the backend works through the rest of the burst, instead of the two taking turns. It returns
//! after its final check found the ring empty with `req_event` armed, so sleeping afterwards
//! loses no request, or after [`BATCH_BUDGET`] requests with [`ServeOutcome::more`] set, so that
//! the caller can notice a stop request however fast the ring refills. Notifications follow io/ring.h: only when the frontend armed
//! `rsp_event`, so a frontend that consumes in batches gets about one per batch.
//!
//! # Validation (what a request must satisfy, else `BLKIF_RSP_ERROR` for that request alone)
//!
//! | check | read / write | flush / barrier | discard | indirect |
//! |---|---|---|---|---|
//! | `nr_segments` | 1–11 | 0–11 | — | 1–[`MAX_INDIRECT_SEGMENTS`] |
//! | `indirect_op` | — | — | — | read or write |
//! | the indirect pages' grants map for reading | — | — | — | yes |
//! | every segment `first_sect <= last_sect <= 7` | yes | yes | — | yes |
//! | `sector_number + sectors` (checked) `<=` disk size | yes | if it has segments | `nr_sectors` | yes |
//! | disk writable | write | if it has segments | yes | write |
//! | every grant maps with the right access (reads need writable grants) | yes | yes | — | yes |
//!
//! An unknown `operation` is `BLKIF_RSP_EOPNOTSUPP`. All checks, grant mappings included, happen
//! before the store is touched, so a failed request neither reads nor writes anything. An
//! indirect request's segments are copied out of its indirect pages once, and the pages
//! released, before they are checked. A flush
//! or barrier performs its segments' write first, then [`BlockStore::flush`]: because requests
//! are processed in ring order and writes are answered only after [`BlockStore::write_at`]
//! returned, every write answered before the flush's response is then durable. A discard of
//! zero sectors (at a sector inside the disk, or at its end) succeeds and does nothing.

use parapet_abi::blkif::{
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
    BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
    BLKIF_SECTOR_SIZE, BLKIF_SECTORS_PER_PAGE, BLKIF_SEGMENTS_PER_INDIRECT_PAGE, BlkifRequest,
    BlkifRequestDiscard, BlkifRequestIndirect, BlkifResponse, BlkifSegment,
};
use parapet_abi::grant_table::GrantRef;
use zerocopy::{FromZeros, IntoBytes};

use crate::grant_table::GrantMapper;
use crate::ring::{BackRing, FrontRing, RingError, RingFull};
use crate::shared::{PAGE_SIZE, SharedPage};

/// Slots in a block ring.
pub const BLKIF_RING_SIZE: u32 = FrontRing::<BlkifRequest, BlkifResponse, ()>::SIZE;
const _: () = assert!(BLKIF_RING_SIZE == 32);

/// Bytes per sector, as a `usize`.
pub const SECTOR_SIZE: usize = BLKIF_SECTOR_SIZE as usize;
/// The most sectors one direct (not indirect) read or write request can carry (11 whole pages).
pub const MAX_SECTORS_PER_REQUEST: u64 =
    BLKIF_MAX_SEGMENTS_PER_REQUEST as u64 * BLKIF_SECTORS_PER_PAGE as u64;
/// The most bytes one direct read or write request can carry.
pub const MAX_BYTES_PER_REQUEST: usize = MAX_SECTORS_PER_REQUEST as usize * SECTOR_SIZE;
/// The most segments [`serve_batch`] accepts in an indirect request (1 MiB; Linux's blkback
/// offers the same). The VMM advertises it in `config[CONFIG_MAX_INDIRECT_SEGMENTS]`.
pub const MAX_INDIRECT_SEGMENTS: usize = 256;
/// The most sectors one indirect request can carry.
pub const MAX_INDIRECT_SECTORS: u64 = MAX_INDIRECT_SEGMENTS as u64 * BLKIF_SECTORS_PER_PAGE as u64;
const _: () = assert!(
    MAX_INDIRECT_SEGMENTS
        <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGMENTS_PER_INDIRECT_PAGE
);
const _: () = assert!(MAX_INDIRECT_SEGMENTS <= u16::MAX as usize);
const _: () = assert!(SECTOR_SIZE * BLKIF_SECTORS_PER_PAGE as usize == PAGE_SIZE);

/// The block ring, as the frontend sees it.
pub type BlkifFrontRing<P> = FrontRing<BlkifRequest, BlkifResponse, P>;
/// The block ring, as the backend sees it.
pub type BlkifBackRing<P> = BackRing<BlkifRequest, BlkifResponse, P>;

mod back;
mod front;
mod request;
mod store;

pub use back::*;
pub use front::*;
pub use request::*;
pub use store::*;

#[cfg(test)]
mod tests;
