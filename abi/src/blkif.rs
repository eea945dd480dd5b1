//! The PV block protocol: Xen's `io/blkif.h`, one ring of [`BlkifRequest`]s per disk
//! (`device::kind::BLOCK`, `parapet run --disk PATH`).
//!
//! Sectors are always 512 bytes (Xen's convention, whatever the backing file's block size).
//! Each request names up to 11 segments; a segment is a granted page and the range of sectors
//! `first_sect..=last_sect` within it (0–7). An indirect request ([`BlkifRequestIndirect`])
//! names up to `config[CONFIG_MAX_INDIRECT_SEGMENTS]` segments, listed in granted indirect
//! pages instead of the slot. The backend processes requests in ring order and answers each
//! with a [`BlkifResponse`]; a bad request gets `BLKIF_RSP_ERROR` and affects nothing else.

use crate::grant_table::GrantRef;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Read sectors into the segments.
pub const BLKIF_OP_READ: u8 = 0;
/// Write the segments' sectors.
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write (if there are segments), then make every write answered so far, and this one, durable
/// before answering: the same as `FLUSH_DISKCACHE` in Parapet, which processes in ring order.
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Write (if there are segments), then make every write answered so far, and this one, durable
/// (`fdatasync`) before answering.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Discard `nr_sectors` from `sector_number` (the request is a [`BlkifRequestDiscard`]): they
/// read back as zeros.
pub const BLKIF_OP_DISCARD: u8 = 5;
/// A read or write whose segments are listed in indirect pages (the request is a
/// [`BlkifRequestIndirect`]); offered when `config[CONFIG_MAX_INDIRECT_SEGMENTS]` is not 0.
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// The most segments in one request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// The most indirect pages one indirect request names.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments per indirect page (4096 / 8).
pub const BLKIF_SEGMENTS_PER_INDIRECT_PAGE: usize = 512;
/// Bytes per sector.
pub const BLKIF_SECTOR_SIZE: u64 = 512;
/// Sectors per page (the last valid `last_sect` is this minus 1).
pub const BLKIF_SECTORS_PER_PAGE: u8 = 8;

/// The request succeeded.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// The request failed (bad sector range, bad segment, bad grant, I/O error, read-only disk).
pub const BLKIF_RSP_ERROR: i16 = -1;
/// The operation is not supported (unknown operation).
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// `DeviceInfo::flags` bits of a block device.
pub mod flags {
    /// The disk refuses writes and discards.
    pub const READONLY: u32 = 1 << 0;
    /// `FLUSH_DISKCACHE` and `WRITE_BARRIER` are supported.
    pub const FLUSH: u32 = 1 << 1;
    /// `DISCARD` is supported.
    pub const DISCARD: u32 = 1 << 2;
}

/// `DeviceInfo::config` of a block device: `[CONFIG_SECTORS]` is its size in 512-byte sectors.
pub const CONFIG_SECTORS: usize = 0;
/// `DeviceInfo::config` of a block device: `[CONFIG_MAX_INDIRECT_SEGMENTS]` is the most segments
/// an indirect request may carry (Xen's `feature-max-indirect-segments`), or 0 if the backend
/// does not accept indirect requests.
pub const CONFIG_MAX_INDIRECT_SEGMENTS: usize = 1;

/// One segment: Xen's `blkif_request_segment`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifSegment {
    /// The granted page (read access for writes, write access for reads).
    pub gref: GrantRef,
    /// First sector within the page (0–7).
    pub first_sect: u8,
    /// Last sector within the page, inclusive (`first_sect`–7).
    pub last_sect: u8,
    /// Padding.
    pub pad: u16,
}

/// A read, write or flush request: Xen's `blkif_request` (112 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifRequest {
    /// One of `BLKIF_OP_*`.
    pub operation: u8,
    /// Valid entries in `seg` (1–11 for reads and writes, 0–11 for flushes).
    pub nr_segments: u8,
    /// The virtual device (unused: one ring per disk).
    pub handle: u16,
    /// Padding.
    pub pad: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First 512-byte sector.
    pub sector_number: u64,
    /// The segments, in order: their sectors are consecutive on the disk.
    pub seg: [BlkifSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// A discard request: Xen's `blkif_request_discard`, in the same slot as [`BlkifRequest`].
/// Build one with `zerocopy::FromZeros::new_zeroed()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// Xen's `BLKIF_DISCARD_SECURE` flag (ignored).
    pub flag: u8,
    /// The virtual device (unused).
    pub handle: u16,
    /// Padding.
    pub pad: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First sector.
    pub sector_number: u64,
    /// Number of sectors.
    pub nr_sectors: u64,
    /// Padding to the size of [`BlkifRequest`].
    pub pad2: [u8; 80],
}

/// An indirect read or write: Xen's `blkif_request_indirect`, in the same slot as
/// [`BlkifRequest`]. Its `nr_segments` [`BlkifSegment`]s fill the pages granted by
/// `indirect_grefs`, 512 per page, in order: `ceil(nr_segments / 512)` pages are used and the
/// other references are ignored. Build one with `zerocopy::FromZeros::new_zeroed()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BlkifRequestIndirect {
    /// `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// Segments (1 to the device's `config[CONFIG_MAX_INDIRECT_SEGMENTS]`).
    pub nr_segments: u16,
    /// Padding.
    pub pad1: u32,
    /// Echoed in the response.
    pub id: u64,
    /// First 512-byte sector.
    pub sector_number: u64,
    /// The virtual device (unused).
    pub handle: u16,
    /// Padding.
    pub pad2: u16,
    /// The pages holding the segments (granted with read access).
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Padding to the size of [`BlkifRequest`] (Xen's struct ends at 64 bytes).
    pub pad3: [u8; 52],
}

/// A response: Xen's `blkif_response` (16 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BlkifResponse {
    /// The request's `id`.
    pub id: u64,
    /// The request's `operation`.
    pub operation: u8,
    /// Padding.
    pub pad: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Padding.
    pub pad2: u32,
}

const _: () = assert!(core::mem::size_of::<BlkifSegment>() == 8);
const _: () = assert!(core::mem::size_of::<BlkifRequest>() == 112);
const _: () = assert!(core::mem::size_of::<BlkifRequestDiscard>() == 112);
const _: () = assert!(core::mem::size_of::<BlkifRequestIndirect>() == 112);
const _: () = assert!(core::mem::offset_of!(BlkifRequestIndirect, handle) == 24);
const _: () = assert!(core::mem::offset_of!(BlkifRequestIndirect, indirect_grefs) == 28);
const _: () =
    assert!(BLKIF_SEGMENTS_PER_INDIRECT_PAGE * core::mem::size_of::<BlkifSegment>() == 4096);
const _: () = assert!(core::mem::size_of::<BlkifResponse>() == 16);
const _: () = assert!(core::mem::offset_of!(BlkifRequest, seg) == 24);
const _: () = assert!(core::mem::offset_of!(BlkifResponse, status) == 10);
