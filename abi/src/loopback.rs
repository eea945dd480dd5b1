//! The loopback test device (`device::kind::LOOPBACK`, `parapet run --loopback`): one `io/ring.h`
//! ring of [`LoopbackRequest`]s that the VMM's backend answers by reading or writing the granted
//! pages they name. It exists to test rings, grants and event channels end to end, and is the
//! smallest example of a split driver.

use crate::grant_table::GrantRef;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Answer with `value` (touches no memory).
pub const LOOPBACK_OP_ECHO: u32 = 0;
/// Answer with the sum of the bytes in `[offset, offset + len)` of the page granted by `gref`
/// (read-only access suffices).
pub const LOOPBACK_OP_SUM: u32 = 1;
/// Fill `[offset, offset + len)` of the page granted by `gref` with the low byte of `value`
/// (needs a writable grant).
pub const LOOPBACK_OP_FILL: u32 = 2;

/// Success.
pub const LOOPBACK_STATUS_OK: i32 = 0;
/// Bad grant, read-only grant for a write, range outside the page, or unknown op.
pub const LOOPBACK_STATUS_ERROR: i32 = -1;

/// A request.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct LoopbackRequest {
    /// Echoed in the response.
    pub id: u64,
    /// One of `LOOPBACK_OP_*`.
    pub op: u32,
    /// The page the operation touches.
    pub gref: GrantRef,
    /// Start of the range within the page.
    pub offset: u32,
    /// Length of the range.
    pub len: u32,
    /// `ECHO`: the answer; `FILL`: the byte.
    pub value: u64,
}

/// A response.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct LoopbackResponse {
    /// The request's `id`.
    pub id: u64,
    /// `LOOPBACK_STATUS_*`.
    pub status: i32,
    /// Padding.
    pub pad: u32,
    /// The answer.
    pub value: u64,
}

const _: () = assert!(core::mem::size_of::<LoopbackRequest>() == 32);
const _: () = assert!(core::mem::size_of::<LoopbackResponse>() == 24);
