//! A conformance guest: calls every hypercall of docs/abi.md §3 with valid and invalid
//! arguments and checks each result against the documented one.
//!
//! Prints `ok <check>` or `FAIL <check>: got X want Y` per check and, last,
//! `hypercall checks: <n> ok, <m> failed`. Returns 0 if nothing failed, else 1. Two checks at
//! the end cover the SDK heap, which the guest gets from the memory map.
//!
//! `SCHEDOP_block` re-enables event delivery and returns at once only when nothing could wake
//! the vCPU (docs/abi.md §7.3). The SDK unmasks the console port at boot, so the checks that
//! need a block to return at once mask it (and the timer VIRQ) first.
//!
//! Calls with deliberately bad pointers go through the SDK's raw `hypercall5`; every such pointer
//! lies outside guest RAM (or is a buffer this guest owns), so the VMM never writes guest memory
//! on their behalf.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use guest_harness::got_want;
use guest_sdk::abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use guest_sdk::abi::event_channel::DOMID_SELF;
use guest_sdk::abi::multicall::{MULTICALL_MAX_ENTRIES, MulticallEntry};
use guest_sdk::abi::sched::{SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, reason};
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::abi::version::{
    ABI_VERSION_MAJOR, ABI_VERSION_MINOR, EXTRAVERSION_LEN, XENVER_EXTRAVERSION,
    XENVER_GET_FEATURES, XENVER_VERSION, features,
};
use guest_sdk::abi::{Errno, Hypercall};
use guest_sdk::event_channel::{self, Port};
use guest_sdk::hypercall::{self, raw::hypercall5};
use guest_sdk::pvops::{self, IrqMode};
use guest_sdk::start_info::start_info;
use guest_sdk::time::{self, Instant};
use guest_sdk::{console, timer};

guest_sdk::entry!(main);

mod console_io;
mod multicall;
mod pv_ops;
mod sched;
mod sdk;
mod unknown;
mod version;

use console_io::console_io;
use multicall::multicall;
use pv_ops::pv_ops;
use sched::{sched_op, set_timer_and_block};
use sdk::{clock, heap};
use unknown::unknown_and_reserved;
use version::xen_version;

/// How long a `SCHEDOP_block` that should return at once may take. A wrong block would halt
/// until something else woke it (or forever); this bound tells the two apart even on a heavily
/// loaded host, and is no timing goal.
const PROMPT: Duration = Duration::from_secs(5);

/// A raw hypercall result, shown as a value or as a negated errno.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ret(u64);

impl Ret {
    const fn ok(v: u64) -> Ret {
        Ret(v)
    }

    const fn err(e: Errno) -> Ret {
        Ret(e.to_ret())
    }

    fn from_result(r: Result<u64, Errno>) -> Ret {
        match r {
            Ok(v) => Ret(v),
            Err(e) => Ret::err(e),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_ret(self.0) {
            Ok(v) => write!(f, "{v:#x}"),
            Err(e) => write!(f, "-{e}"),
        }
    }
}

/// The shared harness, with this guest's way of describing a failure: `got <X> want <Y>`.
struct Checks(guest_harness::Checks);

impl Checks {
    fn pass(&mut self, name: &str) {
        self.0.pass(name, "");
    }

    fn fail(&mut self, name: &str, got: impl fmt::Display, want: impl fmt::Display) {
        self.0.fail(name, got_want(got, want));
    }

    /// Checks that `got == want`.
    fn eq<T: PartialEq + fmt::Display>(&mut self, name: &str, got: T, want: T) {
        self.0.eq_display(name, got, want);
    }

    /// Checks a condition; `got`/`want` describe it if it does not hold.
    fn that(&mut self, name: &str, ok: bool, got: impl fmt::Display, want: impl fmt::Display) {
        self.0.that(name, ok, got_want(got, want));
    }
}

/// A raw hypercall.
///
/// # Safety
///
/// As for [`hypercall5`]: pointer arguments must lie outside guest RAM or name memory the caller
/// may have written.
unsafe fn raw(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> Ret {
    // SAFETY: forwarded to the caller.
    Ret(unsafe { hypercall5(nr, a1, a2, a3, 0, 0) })
}

fn main() -> u32 {
    let mut c = Checks(guest_harness::Checks::new());
    let ram_end = start_info().nr_pages * PAGE_SIZE;
    console_io(&mut c, ram_end);
    xen_version(&mut c, ram_end);
    sched_op(&mut c, ram_end);
    set_timer_and_block(&mut c);
    multicall(&mut c, ram_end);
    unknown_and_reserved(&mut c);
    pv_ops(&mut c);
    clock(&mut c);
    heap(&mut c);
    c.0.summary("hypercall checks")
}

/// Shows bytes as an escaped string.
struct ByteStr<'a>(&'a [u8]);

impl fmt::Display for ByteStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for b in self.0.iter().flat_map(|b| core::ascii::escape_default(*b)) {
            fmt::Write::write_char(f, char::from(b))?;
        }
        f.write_str("\"")
    }
}

/// Shows a duration in microseconds.
struct Micros(Duration);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} us", self.0.as_micros())
    }
}

/// Shows a system time in nanoseconds.
struct Nanos(u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ns", self.0)
    }
}

/// Shows an optional VIF byte.
#[derive(PartialEq)]
struct Flag(Option<u8>);

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}
