//! Building and reading block requests: segments, read/write, discard and indirect requests.

use super::*;

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
