//! The backend: serving the ring in bounded batches, validating every request.

use super::*;

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
/// performed (see the [module documentation](super)); its response is published as soon as it
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
