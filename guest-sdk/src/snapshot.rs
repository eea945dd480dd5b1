//! Snapshots from the guest's side (docs/snapshots.md): [`suspend`] asks the VMM to save the
//! domain (Xen's `SHUTDOWN_suspend`), and [`generation`] tells a restored clone from the domain
//! that booted.
//!
//! Nothing needs reconnecting after a restore: the VMM re-attaches every connected backend to
//! the same rings, re-arms the timer and re-anchors the PV clock, so devices, timers and
//! [`crate::time::now`] carry on. What a clone must do itself is what only it knows: re-seed
//! its randomness from [`generation`], and pick up a new MAC address if it wants the one the
//! user gave this clone ([`crate::net::Net::refresh_mac`]).

use core::fmt;

use parapet_abi::Errno;
use parapet_abi::sched::{SUSPEND_CANCELLED, SUSPEND_RESUMED};

use crate::{console, hypercall, page};

/// How [`suspend`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// In a domain restored from the snapshot (a new process, or the next invocation of a
    /// warm-reset VMM), with this [`generation`].
    Restored {
        /// The restore's generation number (never 0).
        generation: u64,
    },
    /// In the same domain, which goes on where it was.
    Cancelled,
}

/// Why [`suspend`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendError {
    /// The VMM has nowhere to write a snapshot (it was started without `--snapshot`).
    NotAvailable,
    /// The VMM answered with another error.
    Refused(Errno),
}

impl fmt::Display for SuspendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuspendError::NotAvailable => {
                f.write_str("the VMM takes no snapshots (run it with --snapshot FILE)")
            }
            SuspendError::Refused(e) => write!(f, "the VMM refused to suspend: {e}"),
        }
    }
}

impl core::error::Error for SuspendError {}

/// Suspends the domain: flushes the console, then `SHUTDOWN_suspend`. The VMM writes a
/// snapshot and this domain ends; the call returns in each domain restored from the snapshot
/// ([`Resumed::Restored`]).
pub fn suspend() -> Result<Resumed, SuspendError> {
    console::flush();
    match hypercall::shutdown_suspend() {
        Ok(SUSPEND_RESUMED) => Ok(Resumed::Restored {
            generation: generation(),
        }),
        Ok(SUSPEND_CANCELLED) => Ok(Resumed::Cancelled),
        Ok(_) => Err(SuspendError::Refused(Errno::EINVAL)),
        Err(Errno::ENOSYS) => Err(SuspendError::NotAvailable),
        Err(e) => Err(SuspendError::Refused(e)),
    }
}

/// The domain's generation: 0 if it booted, a random non-zero value chosen by each restore of a
/// snapshot (docs/abi.md §2.4). Read afresh every time: the VMM rewrites it while the domain is
/// stopped.
pub fn generation() -> u64 {
    page::start_info_generation()
}
