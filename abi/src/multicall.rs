//! `multicall` (hypercall 13): several hypercalls for one trap.
//!
//! `multicall(entries_gpa, count)`. The VMM copies the whole array out of guest memory once, runs
//! each entry in order, and writes each entry's `result` back. The multicall itself returns 0, or
//! an error if the array cannot be read (`-EFAULT`) or `count` exceeds [`MULTICALL_MAX_ENTRIES`]
//! (`-E2BIG`). An entry that is itself a multicall gets `-EINVAL` in its `result`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The most entries one multicall may carry.
pub const MULTICALL_MAX_ENTRIES: u64 = 256;

/// One call in a multicall batch: Xen's `multicall_entry_t` for x86_64.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Written by the VMM: what RAX would have held.
    pub result: u64,
    /// Arguments, in register order (RDI, RSI, RDX, R10, R8; the sixth is unused).
    pub args: [u64; 6],
}

const _: () = assert!(core::mem::size_of::<MulticallEntry>() == 64);
