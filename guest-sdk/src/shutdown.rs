//! Shutdown requests from the host (docs/abi.md §7.5): [`listen`] for them, then check
//! [`requested`] and power off cleanly when it says so.
//!
//! The VMM asks a guest to shut down when it receives `SIGTERM` (`kill`, `ctr task kill`, the
//! first signal Kubernetes sends), by raising `VIRQ_SHUTDOWN`. It asks only a guest that
//! listens: until [`listen`] binds the VIRQ, `SIGTERM` ends the VMM at once, as it always did.
//! It asks once; a second `SIGTERM` ends the VMM at once, whatever the guest is doing. The
//! guest's exit code (what `main` returns, or [`poweroff`](crate::poweroff)'s argument) becomes
//! the VMM's exit status, so a guest that stops cleanly on request typically returns 0.
//!
//! A request wakes a guest that is blocked ([`timer::sleep`](crate::timer::sleep),
//! [`timer::wait_until`](crate::timer::wait_until), a driver waiting for its device), but a wait
//! goes back to sleep unless it is told to look: wait with [`requested`] among the things that
//! end the wait, e.g. `timer::wait_until(Some(deadline), shutdown::requested)` instead of
//! `timer::sleep_until(deadline)`, or `Net::wait_interface_or(…, shutdown::requested)` instead
//! of `Net::wait_interface(…)`. `timer::wait_any` can wait for [`port`] too.
//!
//! [`requested`] sees the request whether this module's event handler ran or not: the handler
//! records it, the port's latch ([`event_channel::event_seen`]) records every event dispatched
//! on it (also if the guest replaced the handler), and the port's pending bit shows it while
//! the port or upcalls are masked (a guest that polls with events off).
//!
//! # Example
//!
//! A guest that works in rounds until the host asks it to stop:
//!
//! ```ignore
//! use core::time::Duration;
//! use guest_sdk::{println, shutdown, time, timer};
//!
//! fn main() -> u32 {
//!     if let Err(e) = shutdown::listen() {
//!         println!("no shutdown requests: {e}"); // SIGTERM will end the VMM at once
//!     }
//!     let mut rounds = 0u64;
//!     loop {
//!         rounds += 1; // ... one round of work ...
//!         // Pause for a second, or less if the host asks us to stop meanwhile.
//!         let deadline = time::now() + Duration::from_secs(1);
//!         if timer::wait_until(Some(deadline), shutdown::requested) {
//!             println!("shutdown requested after {rounds} rounds");
//!             return 0; // the VMM's exit status
//!         }
//!     }
//! }
//! ```

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parapet_abi::Errno;
use parapet_abi::event_channel::virq;

use crate::event_channel::{self, Port};
use crate::pvops;

/// The port bound to `VIRQ_SHUTDOWN` by [`listen`], or 0.
static PORT: AtomicU32 = AtomicU32::new(0);
/// Whether the request arrived.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Why [`listen`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenError {
    /// The VMM does not know `VIRQ_SHUTDOWN` (one older than this SDK): `SIGTERM` ends it at
    /// once.
    NotSupported,
    /// The guest bound `VIRQ_SHUTDOWN` itself, with
    /// [`event_channel::bind_virq`]: watch that port instead.
    AlreadyBound,
    /// The VMM refused the binding with another error (e.g. `ENOSPC`: no free port).
    Refused(Errno),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::NotSupported => f.write_str("the VMM sends no shutdown requests"),
            ListenError::AlreadyBound => {
                f.write_str("VIRQ_SHUTDOWN is bound already, outside guest_sdk::shutdown")
            }
            ListenError::Refused(e) => write!(f, "cannot bind VIRQ_SHUTDOWN: {e}"),
        }
    }
}

impl core::error::Error for ListenError {}

/// Binds `VIRQ_SHUTDOWN` to a new port with a handler that records the request, so that the
/// host's `SIGTERM` becomes a request this guest sees through [`requested`] rather than the end
/// of its VMM. Returns the port. Idempotent: later calls return the same port. A guest that
/// closes that port ([`event_channel::close`]) stops listening for good: `SIGTERM` ends its VMM
/// at once again, and `listen` does not bind anew.
pub fn listen() -> Result<Port, ListenError> {
    // Masked, so that nothing runs between the check and the record on this one vCPU.
    let _irq = pvops::irq_save();
    if let Some(port) = port() {
        return Ok(port);
    }
    let port = event_channel::bind_virq(virq::SHUTDOWN).map_err(|e| match e {
        Errno::EINVAL => ListenError::NotSupported,
        Errno::EEXIST => ListenError::AlreadyBound,
        e => ListenError::Refused(e),
    })?;
    // The port may have been used before: its latch must say nothing about this request.
    event_channel::take_event(port);
    event_channel::set_handler(port, on_request);
    PORT.store(port.0, Ordering::SeqCst);
    Ok(port)
}

/// The port [`listen`] bound, if it has: for [`timer::wait_any`](crate::timer::wait_any)
/// (`Source::Port`), or to mask it.
pub fn port() -> Option<Port> {
    match PORT.load(Ordering::SeqCst) {
        0 => None,
        p => Some(Port(p)),
    }
}

/// Whether the host has asked this guest to shut down. Once true, it stays true. Cheap (no
/// hypercall): call it as often as you like, e.g. as the condition of a wait. Always false
/// before [`listen`].
pub fn requested() -> bool {
    if REQUESTED.load(Ordering::SeqCst) {
        return true;
    }
    let Some(port) = port() else {
        return false;
    };
    // Without this module's handler: another handler ran (the latch), or none could (pending).
    if event_channel::event_seen(port) || event_channel::is_pending(port) {
        REQUESTED.store(true, Ordering::SeqCst);
        return true;
    }
    false
}

/// The port's handler: records the request.
fn on_request(_port: Port) {
    REQUESTED.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_requested_before_boot() {
        assert!(!requested());
        assert_eq!(port(), None);
        // The hypercall answers -ENOSYS on the host.
        assert_eq!(listen(), Err(ListenError::Refused(Errno::ENOSYS)));
        assert_eq!(port(), None);
        assert!(!requested());
        on_request(Port(1));
        assert!(requested());
        assert_eq!(
            alloc::format!("{}", ListenError::NotSupported),
            "the VMM sends no shutdown requests"
        );
    }
}
