//! Exercises the PV core from inside the guest: event channels, timers, grant tables,
//! `GNTTABOP_copy`, and shared rings end to end with the loopback device.
//!
//! Prints `ok <check>` or `FAIL <check>: …` per check and, last,
//! `pv-selftest: <n> ok, <m> failed`; returns 0 only if nothing failed. The ring checks need the
//! loopback device (`parapet run --loopback`); without it they are skipped with a note.
//!
//! The command line may name the groups to run (`events timers grants copy rings console`;
//! default all) and `verbose` for extra measurements. `console` prints 64 long lines quickly, to
//! fill the 2 KiB console ring several times over.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use guest_harness::Checks;
use guest_sdk::abi::Errno;
use guest_sdk::abi::event_channel::{DOMID_BACKEND, DOMID_GUEST, DOMID_SELF, virq};
use guest_sdk::abi::grant_table::{GNTTABOP_COPY_MAX, gntst, gtf};
use guest_sdk::abi::loopback::{
    LOOPBACK_OP_ECHO, LOOPBACK_OP_FILL, LOOPBACK_OP_SUM, LOOPBACK_STATUS_ERROR, LOOPBACK_STATUS_OK,
    LoopbackRequest, LoopbackResponse,
};
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::console;
use guest_sdk::event_channel::{self, Port, PortStatus};
use guest_sdk::grant_table::{self, GrantError, GrantRef, copy_frame, copy_gref, copy_op};
use guest_sdk::loopback::{Loopback, LoopbackError};
use guest_sdk::page::PageBox;
use guest_sdk::start_info::{cmdline, start_info};
use guest_sdk::time::{self, Instant, rdtsc, tsc_khz};
use guest_sdk::timer::{self, Source, Timer};
use pv_drivers::loopback::LOOPBACK_RING_SIZE;
use pv_drivers::shared::SharedPage;

guest_sdk::entry!(main);

mod console_flood;
mod events;
mod grant_copy;
mod grants;
mod rings;
mod timers;

use console_flood::console_flood;
use events::events;
use grant_copy::grant_copy;
use grants::grants;
use rings::rings;
use timers::timers;

fn main() -> u32 {
    let words: Vec<&str> = cmdline().split_whitespace().collect();
    let verbose = words.contains(&"verbose");
    let groups = ["events", "timers", "grants", "copy", "rings", "console"];
    let chosen: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| groups.contains(w))
        .collect();
    let run = |g: &str| chosen.is_empty() || chosen.contains(&g);
    let mut c = Checks::new();
    if run("events") {
        events(&mut c, verbose);
    }
    if run("timers") {
        timers(&mut c);
    }
    if run("grants") {
        grants(&mut c);
    }
    if run("copy") {
        grant_copy(&mut c);
    }
    if run("rings") {
        rings(&mut c, verbose);
    }
    if run("console") {
        console_flood(&mut c);
    }
    c.summary("pv-selftest")
}

// ---------------------------------------------------------------------------------------------
// Measurements the checks print.

fn median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// TSC cycles as microseconds (with one decimal).
fn micros(cycles: u64) -> Micros {
    Micros(cycles.saturating_mul(10_000) / tsc_khz().max(1))
}

struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}
