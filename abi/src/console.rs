//! `console_io` (hypercall 18): the early and emergency console.
//!
//! `console_io(cmd, count, buffer_gpa)`. Bulk output belongs on the console ring; this call is for
//! early boot and panics, where simplicity beats throughput.

/// Write `count` bytes from `buffer_gpa` to the console. Returns the number of bytes written,
/// which is less than `count` only when `count` exceeds [`CONSOLEIO_WRITE_MAX`].
pub const CONSOLEIO_WRITE: u64 = 0;
/// Read up to `count` bytes of console input into `buffer_gpa`. Returns the number read (0 when
/// no input is pending).
pub const CONSOLEIO_READ: u64 = 1;

/// The most bytes one `CONSOLEIO_WRITE` consumes.
pub const CONSOLEIO_WRITE_MAX: u64 = 16 * 1024;
