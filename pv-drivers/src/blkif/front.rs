//! The guest's block driver: queueing well-formed requests on the ring.

use super::*;

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
