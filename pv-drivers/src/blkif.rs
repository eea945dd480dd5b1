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

use crate::grant::GrantMapper;
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

/// A segment: sectors `first_sect..=last_sect` of the page granted by `gref`.
pub fn segment(gref: GrantRef, first_sect: u8, last_sect: u8) -> BlkifSegment {
    BlkifSegment {
        gref,
        first_sect,
        last_sect,
        pad: 0,
    }
}

/// Whether `seg` names a valid sector range of its page (`first_sect <= last_sect <= 7`).
pub fn segment_is_valid(seg: &BlkifSegment) -> bool {
    seg.first_sect <= seg.last_sect && seg.last_sect < BLKIF_SECTORS_PER_PAGE
}

/// Sectors covered by `segments`, or `None` if one of them is invalid.
pub fn segments_sectors(segments: &[BlkifSegment]) -> Option<u64> {
    segments.iter().try_fold(0u64, |sum, s| {
        segment_is_valid(s).then(|| sum + u64::from(s.last_sect - s.first_sect) + 1)
    })
}

/// A read, write, flush or barrier request with `segments` (at most 11; more are cut off, and
/// `nr_segments` says how many were given).
pub fn rw_request(
    operation: u8,
    id: u64,
    sector_number: u64,
    segments: &[BlkifSegment],
) -> BlkifRequest {
    let n = segments.len().min(BLKIF_MAX_SEGMENTS_PER_REQUEST);
    let mut request = BlkifRequest {
        operation,
        nr_segments: n as u8,
        id,
        sector_number,
        ..BlkifRequest::default()
    };
    request.seg[..n].copy_from_slice(&segments[..n]);
    request
}

/// A discard request, as the slot holds it (a [`BlkifRequestDiscard`] in [`BlkifRequest`]'s
/// clothing, padding zeroed).
pub fn discard_request(id: u64, sector_number: u64, nr_sectors: u64) -> BlkifRequest {
    let mut discard = BlkifRequestDiscard::new_zeroed();
    discard.operation = BLKIF_OP_DISCARD;
    discard.id = id;
    discard.sector_number = sector_number;
    discard.nr_sectors = nr_sectors;
    zerocopy::transmute!(discard)
}

/// The same slot bytes read as a discard request.
pub fn as_discard(request: &BlkifRequest) -> BlkifRequestDiscard {
    zerocopy::transmute!(*request)
}

/// An indirect request, as the slot holds it: `nr_segments` segments listed in the pages
/// `indirect_grefs` (at most 8; the rest of the field is zeroed).
pub fn indirect_request(
    indirect_op: u8,
    id: u64,
    sector_number: u64,
    nr_segments: u16,
    indirect_grefs: &[GrantRef],
) -> BlkifRequest {
    let mut indirect = BlkifRequestIndirect::new_zeroed();
    indirect.operation = BLKIF_OP_INDIRECT;
    indirect.indirect_op = indirect_op;
    indirect.nr_segments = nr_segments;
    indirect.id = id;
    indirect.sector_number = sector_number;
    let n = indirect_grefs
        .len()
        .min(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    indirect.indirect_grefs[..n].copy_from_slice(&indirect_grefs[..n]);
    zerocopy::transmute!(indirect)
}

/// The same slot bytes read as an indirect request.
pub fn as_indirect(request: &BlkifRequest) -> BlkifRequestIndirect {
    zerocopy::transmute!(*request)
}

/// Writes `segments` (at most 512) into `page` from its start, as an indirect page lists them.
pub fn write_indirect_page<P: SharedPage + ?Sized>(page: &P, segments: &[BlkifSegment]) {
    let n = segments.len().min(BLKIF_SEGMENTS_PER_INDIRECT_PAGE);
    page.write(0, segments[..n].as_bytes());
}

/// Indirect pages needed for `nr_segments` segments.
pub const fn indirect_pages(nr_segments: usize) -> usize {
    nr_segments.div_ceil(BLKIF_SEGMENTS_PER_INDIRECT_PAGE)
}

/// Why [`BlkifFront`] did not queue a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Every slot holds a request in flight: consume responses first.
    #[error("block ring full")]
    RingFull,
    /// Wrong number of segments for the operation (reads and writes need 1–11, flushes 0–11,
    /// indirect requests 1 to 8 × 512 with one page per 512), an indirect operation other than
    /// read or write, or a segment with `first_sect > last_sect` or `last_sect > 7`. (To send
    /// such a request on purpose, use [`BlkifFront::push_raw`].)
    #[error("bad segments for a block request")]
    BadSegments,
}

impl From<RingFull> for PushError {
    fn from(_: RingFull) -> Self {
        PushError::RingFull
    }
}

/// The guest's block driver: a [`FrontRing`] with helpers that build well-formed requests.
///
/// The `push_*` helpers only queue; [`commit`](Self::commit) publishes everything queued and
/// says whether to notify, so a batch of requests costs at most one doorbell. The caller owns
/// the grants its segments name and must keep them (and not revoke them) until the request's
/// response arrived.
#[derive(Debug)]
pub struct BlkifFront<P> {
    ring: BlkifFrontRing<P>,
}

impl<P: SharedPage> BlkifFront<P> {
    /// Initialises the ring page (see [`FrontRing::init`]). Grant the page and connect the
    /// device afterwards.
    pub fn new(page: P) -> Self {
        Self {
            ring: FrontRing::init(page),
        }
    }

    fn push_checked(
        &mut self,
        operation: u8,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
        min_segments: usize,
    ) -> Result<(), PushError> {
        if !(min_segments..=BLKIF_MAX_SEGMENTS_PER_REQUEST).contains(&segments.len())
            || segments_sectors(segments).is_none()
        {
            return Err(PushError::BadSegments);
        }
        let request = rw_request(operation, id, sector_number, segments);
        Ok(self.ring.push_request(&request)?)
    }

    /// Queues a read of the segments' sectors, from `sector_number` on, into their pages (which
    /// must be granted writable).
    pub fn push_read(
        &mut self,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
    ) -> Result<(), PushError> {
        self.push_checked(BLKIF_OP_READ, id, sector_number, segments, 1)
    }

    /// Queues a write of the segments' sectors (granted read-only or writable) to the disk from
    /// `sector_number` on.
    pub fn push_write(
        &mut self,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
    ) -> Result<(), PushError> {
        self.push_checked(BLKIF_OP_WRITE, id, sector_number, segments, 1)
    }

    /// Queues a `FLUSH_DISKCACHE`: writes the segments (if any) like
    /// [`push_write`](Self::push_write), then makes every write answered before, and this one,
    /// durable before answering. With no segments `sector_number` is ignored (use 0).
    pub fn push_flush(
        &mut self,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
    ) -> Result<(), PushError> {
        self.push_checked(BLKIF_OP_FLUSH_DISKCACHE, id, sector_number, segments, 0)
    }

    /// Queues a `WRITE_BARRIER` (the same as a flush in Parapet).
    pub fn push_barrier(
        &mut self,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
    ) -> Result<(), PushError> {
        self.push_checked(BLKIF_OP_WRITE_BARRIER, id, sector_number, segments, 0)
    }

    /// Queues a discard of `nr_sectors` sectors from `sector_number` (they read back as zeros).
    pub fn push_discard(
        &mut self,
        id: u64,
        sector_number: u64,
        nr_sectors: u64,
    ) -> Result<(), PushError> {
        let request = discard_request(id, sector_number, nr_sectors);
        Ok(self.ring.push_request(&request)?)
    }

    /// Queues an indirect read or write (`indirect_op` is `BLKIF_OP_READ` or `BLKIF_OP_WRITE`)
    /// of `segments`: writes them into the indirect pages, 512 per page in order, and queues a
    /// request naming those pages. `indirect_pages` must hold exactly
    /// [`indirect_pages`]`(segments.len())` pages, each granted read-only (or writable) with the
    /// given reference; the caller keeps them granted, like the data pages, until the response.
    /// The backend accepts at most the device's `config[CONFIG_MAX_INDIRECT_SEGMENTS]` segments.
    pub fn push_indirect<Q: SharedPage>(
        &mut self,
        indirect_op: u8,
        id: u64,
        sector_number: u64,
        segments: &[BlkifSegment],
        indirect_pages: &[(GrantRef, &Q)],
    ) -> Result<(), PushError> {
        let max = BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGMENTS_PER_INDIRECT_PAGE;
        if !matches!(indirect_op, BLKIF_OP_READ | BLKIF_OP_WRITE)
            || !(1..=max).contains(&segments.len())
            || indirect_pages.len() != self::indirect_pages(segments.len())
            || segments_sectors(segments).is_none()
        {
            return Err(PushError::BadSegments);
        }
        if self.ring.free_requests() == 0 {
            return Err(PushError::RingFull);
        }
        let mut grefs = [0; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
        for ((chunk, &(gref, page)), slot) in segments
            .chunks(BLKIF_SEGMENTS_PER_INDIRECT_PAGE)
            .zip(indirect_pages)
            .zip(&mut grefs)
        {
            write_indirect_page(page, chunk);
            *slot = gref;
        }
        let request = indirect_request(
            indirect_op,
            id,
            sector_number,
            segments.len() as u16,
            &grefs[..indirect_pages.len()],
        );
        Ok(self.ring.push_request(&request)?)
    }

    /// Queues `request` as it is, unchecked (for tests of the backend's validation).
    pub fn push_raw(&mut self, request: &BlkifRequest) -> Result<(), RingFull> {
        self.ring.push_request(request)
    }

    /// Publishes the queued requests. Returns whether the backend must be notified.
    #[must_use = "a `true` result means the backend must be notified"]
    pub fn commit(&mut self) -> bool {
        self.ring.commit_requests()
    }

    /// The next response, if one arrived.
    pub fn poll_response(&mut self) -> Option<BlkifResponse> {
        self.ring.next_response()
    }

    /// Call before sleeping for responses: see [`FrontRing::final_check_for_responses`].
    /// Returns `true` if a response is waiting: do not sleep.
    pub fn final_check_for_responses(&mut self) -> bool {
        self.ring.final_check_for_responses()
    }

    /// Whether a response is waiting (without consuming it; for polling).
    pub fn has_unconsumed_responses(&self) -> bool {
        self.ring.has_unconsumed_responses()
    }

    /// [`FrontRing::final_check_for_responses_after`]: wake after `n` more responses.
    pub fn final_check_for_responses_after(&mut self, n: u32) -> bool {
        self.ring.final_check_for_responses_after(n)
    }

    /// Requests that can be queued before the ring is full.
    pub fn free_requests(&self) -> u32 {
        self.ring.free_requests()
    }

    /// Requests published and not yet answered.
    pub fn requests_in_flight(&self) -> u32 {
        self.ring.requests_in_flight()
    }

    /// Whether the backend ever claimed more responses than requests were in flight (the
    /// device should then be treated as failed).
    pub fn backend_overflowed(&self) -> bool {
        self.ring.backend_overflowed()
    }

    /// The ring itself.
    pub fn ring(&mut self) -> &mut BlkifFrontRing<P> {
        &mut self.ring
    }

    /// The ring page.
    pub fn page(&self) -> &P {
        self.ring.page()
    }

    /// Gives the page back.
    pub fn into_page(self) -> P {
        self.ring.into_page()
    }
}

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

/// What one [`serve_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Requests answered.
    pub handled: usize,
    /// Of those, requests answered with an error status.
    pub failed: usize,
    /// Times the batch called `notify` (the frontend's `rsp_event` was crossed).
    pub notified: usize,
    /// The batch stopped at its budget ([`BATCH_BUDGET`] requests) with requests possibly still
    /// waiting and `req_event` not armed: the caller must call [`serve_batch`] again (after
    /// checking whether it should stop) instead of sleeping.
    pub more: bool,
}

/// The most requests one [`serve_batch`] answers (two rings' worth) before it returns to its
/// caller, which can then check for a stop request. A frontend that keeps the ring full, or a
/// guest that makes the backend produce its own requests, cannot keep the backend from
/// noticing that the VMM is stopping.
pub const BATCH_BUDGET: usize = 2 * BLKIF_RING_SIZE as usize;

/// Answers every request the frontend has published, until the final check finds the ring empty
/// (with `req_event` armed) or [`BATCH_BUDGET`] requests have been answered
/// ([`ServeOutcome::more`]: call again before sleeping). Each request is copied out of the ring once, validated and
/// performed (see the [module documentation](self)); its response is published as soon as it
/// is pushed, and `notify` is called right away if that crossed the frontend's `rsp_event`, so
/// the frontend can consume and refill while the backend goes on with the rest of the burst.
/// `notify` is called only when the frontend asked (armed `rsp_event`), so typically once per
/// batch; every published response whose index crossed `rsp_event` is followed by a call, so
/// none is lost.
/// Returns [`RingError`] if the frontend's `req_prod` is corrupt (the responses pushed so far
/// are already published, and notified if asked): the VMM then stops the guest.
pub fn serve_batch<P: SharedPage, G: GrantMapper, S: BlockStore<G::Mapping>>(
    ring: &mut BlkifBackRing<P>,
    grants: &G,
    store: &S,
    notify: &mut impl FnMut(),
) -> Result<ServeOutcome, RingError> {
    let mut outcome = ServeOutcome::default();
    // One bounce buffer for the whole batch (zeroed once, not per request).
    let mut buf = [0u8; MAX_BYTES_PER_REQUEST];
    loop {
        serve_available(ring, grants, store, &mut buf, &mut outcome, notify)?;
        if outcome.handled >= BATCH_BUDGET {
            outcome.more = true;
            return Ok(outcome);
        }
        if !ring.final_check_for_requests()? {
            return Ok(outcome);
        }
    }
}

/// Answers the requests available now, publishing each response at once.
fn serve_available<P: SharedPage, G: GrantMapper, S: BlockStore<G::Mapping>>(
    ring: &mut BlkifBackRing<P>,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
    outcome: &mut ServeOutcome,
    notify: &mut impl FnMut(),
) -> Result<(), RingError> {
    while outcome.handled < BATCH_BUDGET {
        let Some(request) = ring.next_request()? else {
            break;
        };
        let response = answer_with(&request, grants, store, buf);
        ring.push_response(&response)
            .expect("a consumed request always has a response slot");
        outcome.handled += 1;
        if response.status != BLKIF_RSP_OKAY {
            outcome.failed += 1;
        }
        if ring.commit_responses() {
            outcome.notified += 1;
            notify();
        }
    }
    Ok(())
}

/// Validates and performs one request (already copied out of the ring) and returns its
/// response.
pub fn answer<G: GrantMapper, S: BlockStore<G::Mapping>>(
    request: &BlkifRequest,
    grants: &G,
    store: &S,
) -> BlkifResponse {
    answer_with(request, grants, store, &mut [0; MAX_BYTES_PER_REQUEST])
}

fn answer_with<G: GrantMapper, S: BlockStore<G::Mapping>>(
    request: &BlkifRequest,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
) -> BlkifResponse {
    let result = match request.operation {
        BLKIF_OP_READ => transfer(request, Direction::Read, grants, store, buf),
        BLKIF_OP_WRITE => transfer(request, Direction::Write, grants, store, buf),
        BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => flush(request, grants, store, buf),
        BLKIF_OP_DISCARD => discard(&as_discard(request), store),
        BLKIF_OP_INDIRECT => indirect(&as_indirect(request), grants, store, buf),
        _ => Err(BLKIF_RSP_EOPNOTSUPP),
    };
    BlkifResponse {
        id: request.id,
        operation: request.operation,
        pad: 0,
        status: result.err().unwrap_or(BLKIF_RSP_OKAY),
        pad2: 0,
    }
}

/// A failed request's status.
type Status = i16;

fn io_status(e: BlockIoError) -> Status {
    match e {
        BlockIoError::Io { .. } => BLKIF_RSP_ERROR,
        BlockIoError::Unsupported => BLKIF_RSP_EOPNOTSUPP,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Disk to pages: the grants must be writable.
    Read,
    /// Pages to disk.
    Write,
}

/// The byte offset of `sectors` sectors from `sector`, if they lie inside the disk.
fn disk_range<P, S: BlockStore<P>>(
    store: &S,
    sector: u64,
    sectors: u64,
) -> Result<(u64, u64), Status> {
    let end = sector.checked_add(sectors).ok_or(BLKIF_RSP_ERROR)?;
    if end > store.sectors() {
        return Err(BLKIF_RSP_ERROR);
    }
    let offset = sector
        .checked_mul(BLKIF_SECTOR_SIZE)
        .ok_or(BLKIF_RSP_ERROR)?;
    let len = sectors
        .checked_mul(BLKIF_SECTOR_SIZE)
        .ok_or(BLKIF_RSP_ERROR)?;
    Ok((offset, len))
}

/// Reads or writes the request's segments (1–11 of them).
fn transfer<G: GrantMapper, S: BlockStore<G::Mapping>>(
    request: &BlkifRequest,
    direction: Direction,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
) -> Result<(), Status> {
    let n = usize::from(request.nr_segments);
    if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
        return Err(BLKIF_RSP_ERROR);
    }
    transfer_segments::<BLKIF_MAX_SEGMENTS_PER_REQUEST, _, _>(
        request.sector_number,
        &request.seg[..n],
        direction,
        grants,
        store,
        buf,
    )
}

/// `BLKIF_OP_INDIRECT`: copies the segments out of the indirect pages (once; the pages are
/// released before anything else happens), then reads or writes them.
fn indirect<G: GrantMapper, S: BlockStore<G::Mapping>>(
    request: &BlkifRequestIndirect,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
) -> Result<(), Status> {
    let direction = match request.indirect_op {
        BLKIF_OP_READ => Direction::Read,
        BLKIF_OP_WRITE => Direction::Write,
        _ => return Err(BLKIF_RSP_ERROR),
    };
    let n = usize::from(request.nr_segments);
    if n == 0 || n > MAX_INDIRECT_SEGMENTS {
        return Err(BLKIF_RSP_ERROR);
    }
    let mut segments = [BlkifSegment::default(); MAX_INDIRECT_SEGMENTS];
    for (chunk, &gref) in segments[..n]
        .chunks_mut(BLKIF_SEGMENTS_PER_INDIRECT_PAGE)
        .zip(&request.indirect_grefs)
    {
        let page = grants.map(gref, false).map_err(|_| BLKIF_RSP_ERROR)?;
        page.read(0, chunk.as_mut_bytes());
    }
    transfer_segments::<MAX_INDIRECT_SEGMENTS, _, _>(
        request.sector_number,
        &segments[..n],
        direction,
        grants,
        store,
        buf,
    )
}

/// Reads or writes `segments` (1 to `N`) from `sector_number` on: every check and grant mapping
/// first, then one vectored transfer straight between the store and the pages if both can, else
/// through `buf`, 11 pages at a time. `N` sizes the per-request arrays: 11 for direct requests,
/// so that a 4 KiB request does not set up a 1 MiB request's worth of them.
fn transfer_segments<const N: usize, G: GrantMapper, S: BlockStore<G::Mapping>>(
    sector_number: u64,
    segments: &[BlkifSegment],
    direction: Direction,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
) -> Result<(), Status> {
    let n = segments.len();
    if n > N {
        return Err(BLKIF_RSP_ERROR);
    }
    let sectors = segments_sectors(segments).ok_or(BLKIF_RSP_ERROR)?;
    let (offset, _) = disk_range(store, sector_number, sectors)?;
    if direction == Direction::Write && store.read_only() {
        return Err(BLKIF_RSP_ERROR);
    }
    let to_pages = direction == Direction::Read;
    // Map every grant before touching the store, so that a bad grant fails the request with
    // nothing done. Reads write into the pages, so they need writable grants.
    let mut pages: [Option<G::Mapping>; N] = core::array::from_fn(|_| None);
    for (slot, seg) in pages.iter_mut().zip(segments) {
        *slot = Some(
            grants
                .map(seg.gref, to_pages)
                .map_err(|_| BLKIF_RSP_ERROR)?,
        );
    }
    let pages = &pages[..n];
    // The bytes of each segment within its page.
    let in_page = |seg: &BlkifSegment| {
        usize::from(seg.first_sect) * SECTOR_SIZE..(usize::from(seg.last_sect) + 1) * SECTOR_SIZE
    };
    // Zero copy if the store can move the bytes straight into or out of the pages.
    if let Some(first) = pages.first().and_then(Option::as_ref) {
        let pieces: [PageSegment<'_, G::Mapping>; N] = core::array::from_fn(|i| {
            match (segments.get(i), pages.get(i).and_then(Option::as_ref)) {
                (Some(seg), Some(page)) => PageSegment {
                    page,
                    range: in_page(seg),
                },
                // Past the request's segments: never passed on.
                _ => PageSegment {
                    page: first,
                    range: 0..0,
                },
            }
        });
        let done = match direction {
            Direction::Write => store.write_vectored(offset, &pieces[..n]),
            Direction::Read => store.read_vectored(offset, &pieces[..n]),
        };
        if let Some(result) = done {
            return result.map_err(io_status);
        }
    }
    // Through the bounce buffer, at most 11 pages (its size) at a time.
    let mut at = offset;
    for (segs, maps) in segments
        .chunks(BLKIF_MAX_SEGMENTS_PER_REQUEST)
        .zip(pages.chunks(BLKIF_MAX_SEGMENTS_PER_REQUEST))
    {
        let pieces = || {
            segs.iter()
                .zip(maps.iter().flatten())
                .scan(0, |used, (seg, page)| {
                    let range = in_page(seg);
                    let in_buf = *used..*used + range.len();
                    *used = in_buf.end;
                    Some((page, range.start, in_buf))
                })
        };
        let len = pieces().last().map_or(0, |(_, _, in_buf)| in_buf.end);
        let chunk = &mut buf[..len];
        match direction {
            Direction::Write => {
                for (page, start, in_buf) in pieces() {
                    page.read(start, &mut chunk[in_buf]);
                }
                store.write_at(at, chunk).map_err(io_status)?;
            }
            Direction::Read => {
                store.read_at(at, chunk).map_err(io_status)?;
                for (page, start, in_buf) in pieces() {
                    page.write(start, &chunk[in_buf]);
                }
            }
        }
        at += len as u64;
    }
    Ok(())
}

/// `FLUSH_DISKCACHE` / `WRITE_BARRIER`: the segments' write (if any), then a flush.
fn flush<G: GrantMapper, S: BlockStore<G::Mapping>>(
    request: &BlkifRequest,
    grants: &G,
    store: &S,
    buf: &mut [u8; MAX_BYTES_PER_REQUEST],
) -> Result<(), Status> {
    let n = usize::from(request.nr_segments);
    if n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
        return Err(BLKIF_RSP_ERROR);
    }
    if n > 0 {
        transfer_segments::<BLKIF_MAX_SEGMENTS_PER_REQUEST, _, _>(
            request.sector_number,
            &request.seg[..n],
            Direction::Write,
            grants,
            store,
            buf,
        )?;
    }
    store.flush().map_err(io_status)
}

fn discard<P, S: BlockStore<P>>(request: &BlkifRequestDiscard, store: &S) -> Result<(), Status> {
    let (offset, len) = disk_range(store, request.sector_number, request.nr_sectors)?;
    if store.read_only() {
        return Err(BLKIF_RSP_ERROR);
    }
    if len == 0 {
        return Ok(());
    }
    store.discard(offset, len).map_err(io_status)
}

#[cfg(test)]
mod tests;
