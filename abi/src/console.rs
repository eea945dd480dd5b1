//! The console: `console_io` (hypercall 18), the early and emergency console, and the PV console
//! ring page (Xen's `io/console.h`).
//!
//! `console_io(cmd, count, buffer_gpa)` is for early boot and panics, where simplicity beats
//! throughput. Everything else goes through the ring page at `StartInfo::console_page`, which the
//! VMM's console backend serves; the guest notifies it on `StartInfo::console_evtchn` (with the
//! doorbell, which does not exit to the VMM) and the backend raises the same port when input
//! arrives or output space frees up.

/// Write `count` bytes from `buffer_gpa` to the console. Returns the number of bytes written,
/// which is less than `count` only when `count` exceeds [`CONSOLEIO_WRITE_MAX`].
pub const CONSOLEIO_WRITE: u64 = 0;
/// Validates `buffer_gpa` and returns 0: console input arrives through the console ring.
pub const CONSOLEIO_READ: u64 = 1;

/// The most bytes one `CONSOLEIO_WRITE` consumes.
pub const CONSOLEIO_WRITE_MAX: u64 = 16 * 1024;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of the input ring (host → guest).
pub const CONSOLE_IN_SIZE: usize = 1024;
/// Size of the output ring (guest → host).
pub const CONSOLE_OUT_SIZE: usize = 2048;

/// The console page: Xen's `xencons_interface`, followed by Parapet's notification-suppression
/// fields (Xen's console has none; a Xen guest that ignores them still works, it just notifies
/// more often).
///
/// Indices are free-running `u32`s; the ring position is `index % size`. The guest produces
/// `out` and consumes `in`; the backend the reverse.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ConsoleInterface {
    /// Input ring.
    pub input: [u8; CONSOLE_IN_SIZE],
    /// Output ring.
    pub output: [u8; CONSOLE_OUT_SIZE],
    /// Input consumed by the guest.
    pub in_cons: u32,
    /// Input produced by the backend.
    pub in_prod: u32,
    /// Output consumed by the backend.
    pub out_cons: u32,
    /// Output produced by the guest.
    pub out_prod: u32,
    /// Parapet: the backend wants a notification when `out_prod` passes this (`io/ring.h`
    /// `req_event` semantics). The backend sets it to `out_cons + 1` before it sleeps.
    pub out_event: u32,
    /// Parapet: the guest wants a notification when `in_prod` passes this, or when `out_cons`
    /// passes `out_space_event`.
    pub in_event: u32,
    /// Parapet: the guest, blocked on a full output ring, wants a notification when `out_cons`
    /// passes this.
    pub out_space_event: u32,
}

/// Byte offsets of the console page's fields.
pub mod console_offset {
    /// `in_cons`.
    pub const IN_CONS: usize = 3072;
    /// `in_prod`.
    pub const IN_PROD: usize = 3076;
    /// `out_cons`.
    pub const OUT_CONS: usize = 3080;
    /// `out_prod`.
    pub const OUT_PROD: usize = 3084;
    /// `out_event`.
    pub const OUT_EVENT: usize = 3088;
    /// `in_event`.
    pub const IN_EVENT: usize = 3092;
    /// `out_space_event`.
    pub const OUT_SPACE_EVENT: usize = 3096;
}

const _: () = assert!(core::mem::offset_of!(ConsoleInterface, in_cons) == console_offset::IN_CONS);
const _: () = assert!(
    core::mem::offset_of!(ConsoleInterface, out_space_event) == console_offset::OUT_SPACE_EVENT
);
const _: () = assert!(core::mem::size_of::<ConsoleInterface>() <= 4096);

/// The byte the backend puts into the input ring when its input reaches end of file (Ctrl-D).
pub const CONSOLE_EOF: u8 = 0x04;
