//! Grant tables, version 1 (docs/abi.md §8): the guest side.
//!
//! The table is `StartInfo::nr_grant_frames` pages at `StartInfo::grant_table`, owned by the
//! guest. [`grant_access`] takes a free entry, writes `frame` and `domid`, issues a write
//! barrier and then writes `flags` (`GTF_permit_access`, plus `GTF_readonly`); the backend may
//! use the page from then on. [`end_access`] revokes it with a compare-and-swap that replaces
//! the flags by 0 only while neither `GTF_reading` nor `GTF_writing` is set, so it refuses
//! ([`GrantError::Busy`]) while the VMM has the page mapped; the entry then stays allocated until
//! a later `end_access` succeeds.
//!
//! References are [`GrantRef`]s. Entry 0 is never handed out, so `GrantRef(0)` can serve as
//! "no grant".
//!
//! A grant lets the grantee read (or write) the whole frame until it is revoked: grant only
//! pages the caller owns and keeps alive for that long, e.g. a [`crate::page::PageBox`].
//!
//! [`grant_copy`] is `GNTTABOP_copy`; [`setup_table`] and [`query_size`] wrap the other two
//! operations.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parapet_abi::Errno;
use parapet_abi::event_channel::{DOMID_SELF, DomId};
use parapet_abi::grant_table::{
    CopyPtr, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GrantEntry, QuerySize, gntst, gtf,
};
use parapet_abi::start_info::PAGE_SIZE;

pub use crate::hypercall::grant_copy;
pub use parapet_abi::grant_table::Copy;

use crate::hypercall;
use crate::page::GrantTable;

/// The most entries this SDK manages (32 frames, what Parapet's VMM gives).
pub const MAX_ENTRIES: usize = 16384;

/// Entries in the table (capped at [`MAX_ENTRIES`]).
static NR_ENTRIES: AtomicU32 = AtomicU32::new(0);
/// Allocated entries (bit set = in use). Entry 0 is marked at init.
static USED: [AtomicU64; MAX_ENTRIES / 64] = [const { AtomicU64::new(0) }; MAX_ENTRIES / 64];

/// A grant reference: the index of an entry of this guest's grant table, which names a granted
/// page to the grantee.
///
/// A typed number, so that grant references and the other numbers of the ABI (ports, frames,
/// device indices) cannot be mixed up; the raw number is `.0` (what the ABI's structures, such as
/// ring requests and `device::Connect`, carry). [`grant_access`] hands out valid ones;
/// `GrantRef(0)` is never handed out and can serve as "no grant".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

impl core::fmt::Display for GrantRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// `end_access`: the backend has the page mapped (`GTF_reading`/`GTF_writing` set); the
    /// entry stays granted.
    #[error("grant in use by the backend")]
    Busy,
    /// No free entry.
    #[error("grant table full")]
    NoFreeEntries,
    /// The reference is not an entry this SDK handed out.
    #[error("not an allocated grant reference")]
    BadRef,
    /// The frame number does not fit the entry's 32-bit field.
    #[error("frame number too large")]
    BadFrame,
    /// No grant table (before boot, or the VMM announced none).
    #[error("no grant table")]
    NoTable,
    /// The hypercall failed.
    #[error("grant_table_op failed: {0}")]
    Hypercall(Errno),
    /// The hypercall succeeded but the operation's status is this `GNTST_*` code.
    #[error("grant status {0}")]
    Status(i16),
}

/// Finds the grant table. Called once by the boot code.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init() {
    let Some(table) = GrantTable::get() else {
        return;
    };
    let entries = table.len().min(MAX_ENTRIES as u32);
    NR_ENTRIES.store(entries, Ordering::Release);
    USED[0].fetch_or(1, Ordering::SeqCst);
}

/// Entries in the grant table (0 before boot).
pub fn nr_entries() -> u32 {
    NR_ENTRIES.load(Ordering::Acquire)
}

/// The table, if `gref` is an entry inside the part this SDK manages.
fn table_for(GrantRef(gref): GrantRef) -> Option<GrantTable> {
    if gref < nr_entries() {
        GrantTable::get()
    } else {
        None
    }
}

/// A snapshot of entry `gref` (any entry inside the table), or `None` outside it.
pub fn entry(gref: GrantRef) -> Option<GrantEntry> {
    table_for(gref)?.read(gref.0)
}

/// Takes a free entry, leaving it invalid (flags 0). Use [`set_entry`] to fill it, and
/// [`end_access`] to give it back.
pub fn reserve() -> Result<GrantRef, GrantError> {
    let n = nr_entries() as usize;
    if n == 0 {
        return Err(GrantError::NoTable);
    }
    for (w, word) in USED.iter().enumerate().take(n.div_ceil(64)) {
        let mut cur = word.load(Ordering::SeqCst);
        loop {
            let free = !cur;
            if free == 0 {
                break;
            }
            let b = free.trailing_zeros() as usize;
            if w * 64 + b >= n {
                break;
            }
            match word.compare_exchange(cur, cur | 1 << b, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(GrantRef((w * 64 + b) as u32)),
                Err(now) => cur = now,
            }
        }
    }
    Err(GrantError::NoFreeEntries)
}

fn is_allocated(GrantRef(gref): GrantRef) -> bool {
    gref != 0
        && gref < nr_entries()
        && USED[gref as usize / 64].load(Ordering::SeqCst) & (1 << (gref % 64)) != 0
}

/// Writes an allocated entry: `frame` and `domid`, a write barrier, then `flags` (any value, so
/// that tests can write entries the VMM must refuse).
pub fn set_entry(gref: GrantRef, frame: u32, domid: DomId, flags: u16) -> Result<(), GrantError> {
    if !is_allocated(gref) {
        return Err(GrantError::BadRef);
    }
    table_for(gref)
        .and_then(|table| table.write(gref.0, frame, domid, flags))
        .ok_or(GrantError::BadRef)
}

/// Grants `domid` access to frame `frame` (GPA / 4096), read-only if `readonly`, and returns
/// the reference to pass to it. For the VMM's backends `domid` is
/// [`DOMID_BACKEND`](parapet_abi::event_channel::DOMID_BACKEND).
pub fn grant_access(frame: u64, domid: DomId, readonly: bool) -> Result<GrantRef, GrantError> {
    let frame = u32::try_from(frame).map_err(|_| GrantError::BadFrame)?;
    let gref = reserve()?;
    let flags = gtf::PERMIT_ACCESS | if readonly { gtf::READONLY } else { 0 };
    set_entry(gref, frame, domid, flags)?;
    Ok(gref)
}

/// Revokes `gref` and frees its entry: replaces its flags by 0 with a compare-and-swap that
/// refuses ([`GrantError::Busy`]) while `GTF_reading` or `GTF_writing` is set. A refused entry
/// stays granted; try again once the backend has let go.
pub fn end_access(gref: GrantRef) -> Result<(), GrantError> {
    if !is_allocated(gref) {
        return Err(GrantError::BadRef);
    }
    let flags = table_for(gref)
        .and_then(|table| table.flags(gref.0))
        .ok_or(GrantError::BadRef)?;
    let mut cur = flags.load(Ordering::SeqCst);
    loop {
        if cur & (gtf::READING | gtf::WRITING) != 0 {
            return Err(GrantError::Busy);
        }
        match flags.compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    USED[gref.0 as usize / 64].fetch_and(!(1 << (gref.0 % 64)), Ordering::SeqCst);
    Ok(())
}

/// Whether the backend currently has `gref` mapped (`GTF_reading` or `GTF_writing` set).
pub fn in_use(gref: GrantRef) -> bool {
    entry(gref).is_some_and(|e| e.flags & (gtf::READING | gtf::WRITING) != 0)
}

/// One side of a [`Copy`](struct@Copy): grant reference `gref` of this guest's table at `offset`.
pub fn copy_gref(gref: GrantRef, offset: u16) -> CopyPtr {
    CopyPtr {
        u: u64::from(gref.0),
        domid: DOMID_SELF,
        offset,
        pad: 0,
    }
}

/// One side of a [`Copy`](struct@Copy): local frame `frame` (GPA / 4096, at or above 1 MiB) at `offset`.
pub fn copy_frame(frame: u64, offset: u16) -> CopyPtr {
    CopyPtr {
        u: frame,
        domid: DOMID_SELF,
        offset,
        pad: 0,
    }
}

/// A [`Copy`](struct@Copy) of `len` bytes from `source` to `dest`; `source_is_gref`/`dest_is_gref` set the
/// `GNTCOPY_*_GREF` flags.
pub fn copy_op(
    source: CopyPtr,
    source_is_gref: bool,
    dest: CopyPtr,
    dest_is_gref: bool,
    len: u16,
) -> Copy {
    let mut flags = 0;
    if source_is_gref {
        flags |= GNTCOPY_SOURCE_GREF;
    }
    if dest_is_gref {
        flags |= GNTCOPY_DEST_GREF;
    }
    Copy {
        source,
        dest,
        len,
        flags,
        status: 0,
        pad: 0,
    }
}

/// Copies `dst.len()` bytes from offset `offset` of the page granted by `gref` into `dst`, with
/// `GNTTABOP_copy` (the VMM reads the grant with the backend's rights). `dst` may span pages.
pub fn copy_from_gref(gref: GrantRef, offset: usize, dst: &mut [u8]) -> Result<(), GrantError> {
    check_copy_range(offset, dst.len())?;
    let mut done = 0;
    for chunk in page_chunks(dst.as_ptr() as u64, dst.len()) {
        let at = (offset + done) as u16;
        let status = hypercall::grant_copy_from_gref(gref.0, at, &mut dst[done..done + chunk])
            .map_err(GrantError::Hypercall)?;
        copy_status(status)?;
        done += chunk;
    }
    Ok(())
}

/// Copies `src` to offset `offset` of the page granted by `gref`, with `GNTTABOP_copy` (the VMM
/// writes through the grant with the backend's rights, so a read-only grant is refused).
pub fn copy_to_gref(gref: GrantRef, offset: usize, src: &[u8]) -> Result<(), GrantError> {
    check_copy_range(offset, src.len())?;
    let mut done = 0;
    for chunk in page_chunks(src.as_ptr() as u64, src.len()) {
        let at = (offset + done) as u16;
        let status = hypercall::grant_copy_to_gref(&src[done..done + chunk], gref.0, at)
            .map_err(GrantError::Hypercall)?;
        copy_status(status)?;
        done += chunk;
    }
    Ok(())
}

/// Refuses a copy of `len` bytes at `offset` of a granted page that does not fit in the page.
fn check_copy_range(offset: usize, len: usize) -> Result<(), GrantError> {
    if offset
        .checked_add(len)
        .is_none_or(|end| end > PAGE_SIZE as usize)
    {
        return Err(GrantError::Status(gntst::BAD_COPY_ARG));
    }
    Ok(())
}

/// The lengths of the pieces of `[addr, addr + len)` that lie in one local page each, in order:
/// one `GNTTABOP_copy` each.
fn page_chunks(addr: u64, len: usize) -> impl Iterator<Item = usize> {
    let mut done = 0;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = addr + done as u64;
        let chunk = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
        done += chunk;
        Some(chunk)
    })
}

fn copy_status(status: i16) -> Result<(), GrantError> {
    if status != gntst::OKAY {
        return Err(GrantError::Status(status));
    }
    Ok(())
}

/// `GNTTABOP_query_size`: `(nr_frames, max_nr_frames)`.
pub fn query_size() -> Result<(u32, u32), GrantError> {
    let mut q = QuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    hypercall::grant_query_size(&mut q).map_err(GrantError::Hypercall)?;
    if q.status != gntst::OKAY {
        return Err(GrantError::Status(q.status));
    }
    Ok((q.nr_frames, q.max_nr_frames))
}

/// `GNTTABOP_setup_table`: fills `frames` with the table's first `frames.len()` frame numbers.
pub fn setup_table(frames: &mut [u64]) -> Result<(), GrantError> {
    let status = hypercall::grant_setup_table(DOMID_SELF, frames).map_err(GrantError::Hypercall)?;
    if status != gntst::OKAY {
        return Err(GrantError::Status(status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_before_boot() {
        assert_eq!(reserve(), Err(GrantError::NoTable));
        assert_eq!(grant_access(0x200, 0, false), Err(GrantError::NoTable));
        assert_eq!(grant_access(1 << 40, 0, false), Err(GrantError::BadFrame));
        assert_eq!(end_access(GrantRef(5)), Err(GrantError::BadRef));
        assert!(entry(GrantRef(0)).is_none());
        assert!(!in_use(GrantRef(1)));
        assert_eq!(
            alloc::format!("{} {:?}", GrantRef(3), GrantRef(3)),
            "3 GrantRef(3)"
        );
        assert_eq!(query_size(), Err(GrantError::Hypercall(Errno::ENOSYS)));
        let mut buf = [0u8; 8];
        assert_eq!(
            copy_from_gref(GrantRef(1), 4090, &mut buf),
            Err(GrantError::Status(gntst::BAD_COPY_ARG))
        );
    }

    #[test]
    fn copy_ops_set_the_gref_flags() {
        let op = copy_op(
            copy_gref(GrantRef(3), 8),
            true,
            copy_frame(0x300, 0),
            false,
            16,
        );
        assert_eq!(op.flags, GNTCOPY_SOURCE_GREF);
        assert_eq!((op.source.u, op.source.offset, op.dest.u), (3, 8, 0x300));
        let op = copy_op(
            copy_frame(0x300, 0),
            false,
            copy_gref(GrantRef(3), 0),
            true,
            16,
        );
        assert_eq!(op.flags, GNTCOPY_DEST_GREF);
    }
}
