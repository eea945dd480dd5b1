//! `grant_table_op` (hypercall 20): Xen's grant tables, version 1 (`grant_table.h`).
//!
//! A guest lets a backend touch one of its pages by writing a [`GrantEntry`] into its grant
//! table and passing the entry's index (a grant reference) to the backend. The VMM's backends
//! touch guest memory only through grants: each access validates the entry, marks it
//! `GTF_READING`/`GTF_WRITING` while in use, and clears the mark afterwards. A guest must not
//! reuse an entry while those flags are set (`end_access` refuses).
//!
//! The table lives in guest memory at `StartInfo::grant_table` (`nr_grant_frames` pages), set up
//! by the domain builder; `GNTTABOP_setup_table` reports the same frames.

use crate::event_channel::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Report the grant table's frames.
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
/// Copy bytes between grant references and/or local frames.
pub const GNTTABOP_COPY: u64 = 5;
/// Report the grant table's size.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;

/// A grant reference: an index into the grant table.
pub type GrantRef = u32;

/// Xen's `grant_entry_v1`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct GrantEntry {
    /// `GTF_*` flags; written last by the guest when granting, first when revoking.
    pub flags: u16,
    /// The domain allowed to use the grant ([`DOMID_BACKEND`](crate::event_channel::DOMID_BACKEND)
    /// for the VMM's backends).
    pub domid: DomId,
    /// The granted frame: guest-physical address / 4096.
    pub frame: u32,
}

/// Entries per grant-table page.
pub const ENTRIES_PER_FRAME: u32 = 4096 / core::mem::size_of::<GrantEntry>() as u32;

/// `GrantEntry::flags` bits.
pub mod gtf {
    /// Type mask: `PERMIT_ACCESS` or 0 (invalid).
    pub const TYPE_MASK: u16 = 3;
    /// The entry grants access to `frame`.
    pub const PERMIT_ACCESS: u16 = 1;
    /// The grantee may only read.
    pub const READONLY: u16 = 1 << 2;
    /// Set by the VMM while a backend reads the frame.
    pub const READING: u16 = 1 << 3;
    /// Set by the VMM while a backend may write the frame.
    pub const WRITING: u16 = 1 << 4;
}

/// Grant operation status codes (Xen's `GNTST_*`).
pub mod gntst {
    /// Success.
    pub const OKAY: i16 = 0;
    /// Undefined error.
    pub const GENERAL_ERROR: i16 = -1;
    /// Unrecognised domain id.
    pub const BAD_DOMAIN: i16 = -2;
    /// Unrecognised or inappropriate grant reference.
    pub const BAD_GNTREF: i16 = -3;
    /// A frame outside guest RAM, or one the guest may not grant.
    pub const BAD_PAGE: i16 = -9;
    /// Copy arguments cross a page boundary.
    pub const BAD_COPY_ARG: i16 = -10;
    /// The grant does not allow the access (e.g. writing a read-only grant).
    pub const PERMISSION_DENIED: i16 = -8;
}

/// `GNTTABOP_setup_table` (Xen's `gnttab_setup_table`).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SetupTable {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// In: frames the guest wants (at most the table's size).
    pub nr_frames: u32,
    /// Out: a [`gntst`] code.
    pub status: i16,
    /// Padding.
    pub pad2: [u8; 6],
    /// In: GPA of a `u64` array of `nr_frames` entries, filled with the table's frame numbers.
    pub frame_list: u64,
}

/// `GNTTABOP_query_size` (Xen's `gnttab_query_size`).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QuerySize {
    /// In: `DOMID_SELF`.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// Out: frames in use.
    pub nr_frames: u32,
    /// Out: the most frames the table can have.
    pub max_nr_frames: u32,
    /// Out: a [`gntst`] code.
    pub status: i16,
    /// Padding.
    pub pad2: u16,
}

/// One side of a [`Copy`](struct@Copy): a grant reference or a local frame.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CopyPtr {
    /// A grant reference (with the matching `GNTCOPY_*_GREF` flag) or a frame number.
    pub u: u64,
    /// The domain whose grant table `u` indexes, or `DOMID_SELF` for a frame.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
    /// Padding.
    pub pad: u32,
}

/// `GNTTABOP_copy` (Xen's `gnttab_copy`, one element of an array of `count`).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Copy {
    /// Where to copy from.
    pub source: CopyPtr,
    /// Where to copy to.
    pub dest: CopyPtr,
    /// Bytes to copy; `offset + len` must stay within the page on both sides.
    pub len: u16,
    /// `GNTCOPY_*` flags.
    pub flags: u16,
    /// Out: a [`gntst`] code.
    pub status: i16,
    /// Padding.
    pub pad: u16,
}

/// `Copy::source.u` is a grant reference.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `Copy::dest.u` is a grant reference.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
/// The most `Copy` elements one `GNTTABOP_copy` call takes.
pub const GNTTABOP_COPY_MAX: u64 = 64;

const _: () = assert!(core::mem::size_of::<GrantEntry>() == 8);
const _: () = assert!(core::mem::size_of::<Copy>() == 40);
