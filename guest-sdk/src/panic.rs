//! Stopping a guest that went wrong: [`crash`], and the panic handler (only in guest kernels,
//! `target_os = "none"`).
//!
//! A panic drains the console ring, prints `panicked at FILE:LINE:COL: MESSAGE` with one
//! `console_io` call (so it appears after everything printed before) and stops the domain with
//! `SHUTDOWN_crash` ([`crash`]), for which the VMM exits with status 101. A panic while panicking
//! (e.g. in a `Display` impl of the message) skips the message and stops at once.
//!
//! [`write_panic_message`] is the formatting, usable on any target.

use core::fmt::{self, Write};
use core::panic::PanicInfo;

use parapet_abi::sched::reason;

use crate::{console, hypercall};

/// Drains the console ring (polling, bounded), then stops the domain as crashed
/// (`SHUTDOWN_crash`; the VMM exits with 101). Also at the crate root, as `guest_sdk::crash`.
pub fn crash() -> ! {
    console::emergency_write(&[]);
    hypercall::shutdown(reason::CRASH, 0)
}

/// Writes the report line for `info`, newline included, to `out`.
pub fn write_panic_message(out: &mut impl Write, info: &PanicInfo<'_>) -> fmt::Result {
    match info.location() {
        Some(loc) => writeln!(
            out,
            "panicked at {}:{}:{}: {}",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        ),
        None => writeln!(out, "panicked: {}", info.message()),
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};

    use crate::console::{LineBuffer, PRINT_BUFFER_SIZE};

    static PANICKING: AtomicBool = AtomicBool::new(false);
    if !PANICKING.swap(true, Ordering::Relaxed) {
        let mut line = LineBuffer::<PRINT_BUFFER_SIZE>::new();
        let _ = write_panic_message(&mut line, info);
        line.flush_emergency();
    }
    crash()
}
