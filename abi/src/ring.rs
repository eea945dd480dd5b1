//! The shared-ring page header: Xen's `io/ring.h` `DEFINE_RING_TYPES` layout.
//!
//! A ring page starts with four free-running `u32` indices and 48 bytes of padding, followed by
//! a power-of-two number of slots, each the size of the larger of the request and response types.
//! The frontend produces requests (`req_prod`) and consumes responses; the backend the reverse.
//! `req_event`/`rsp_event` implement notification suppression: a producer notifies only when its
//! new producer index passes the consumer's event index. The ring logic lives in the
//! `pv-drivers` crate; this is only the layout.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The 64-byte header at the start of a ring page (`struct X_sring` up to `ring[]`).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SringHeader {
    /// Requests produced by the frontend.
    pub req_prod: u32,
    /// The backend wants a notification when `req_prod` passes this.
    pub req_event: u32,
    /// Responses produced by the backend.
    pub rsp_prod: u32,
    /// The frontend wants a notification when `rsp_prod` passes this.
    pub rsp_event: u32,
    /// Xen's `pvt` and `__pad`: unused.
    pub pad: [u8; 48],
}

/// Byte offset of the first slot.
pub const SRING_HEADER_SIZE: usize = core::mem::size_of::<SringHeader>();
const _: () = assert!(SRING_HEADER_SIZE == 64);

/// Byte offsets of the indices inside the header.
pub mod offset {
    /// `req_prod`.
    pub const REQ_PROD: usize = 0;
    /// `req_event`.
    pub const REQ_EVENT: usize = 4;
    /// `rsp_prod`.
    pub const RSP_PROD: usize = 8;
    /// `rsp_event`.
    pub const RSP_EVENT: usize = 12;
}

/// Slots in a ring of `page_size` bytes whose slots are `slot_size` bytes: the largest power of
/// two that fits (Xen's `__RING_SIZE`).
pub const fn ring_size(page_size: usize, slot_size: usize) -> u32 {
    let n = (page_size - SRING_HEADER_SIZE) / slot_size;
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::ring_size;

    #[test]
    fn ring_sizes_are_powers_of_two_like_xen() {
        // blkif: 112-byte slots give 32 entries; netif tx (12-byte request) gives 256.
        assert_eq!(ring_size(4096, 112), 32);
        assert_eq!(ring_size(4096, 12), 256);
        assert_eq!(ring_size(4096, 8), 256);
        assert_eq!(ring_size(4096, 4096), 0);
    }
}
