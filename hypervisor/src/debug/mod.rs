//! Debugging a guest: the gdb stub (`parapet run --gdb`) and core dumps (`--core`). How each
//! works on each host is in docs/debugging.md.

pub mod arch;
pub mod core_dump;
pub mod gdb;
pub mod listen;
pub mod serial;

use crate::outcome::GuestExit;

/// The Unix signal a user expects for how the guest died (as a process would have), for gdb's
/// stop reply and the core's `NT_PRSTATUS`.
pub fn fatal_signal(exit: &GuestExit) -> u8 {
    let signal = match exit {
        GuestExit::Crash => libc::SIGABRT,
        GuestExit::Fault(info) => match info.report.as_ref().map(|r| r.vector) {
            Some(0 | 16 | 19) => libc::SIGFPE,
            Some(6) => libc::SIGILL,
            Some(1 | 3) => libc::SIGTRAP,
            Some(17) => libc::SIGBUS,
            _ => libc::SIGSEGV,
        },
        _ => libc::SIGKILL,
    };
    signal as u8
}
