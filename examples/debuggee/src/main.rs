//! A guest to debug: small functions with locals, a global counter, and a fault on request, for
//! the gdb stub's and the core dumps' tests (docs/debugging.md).
//!
//! It sums the Fibonacci numbers below `fib(ROUNDS)` through [`step`], prints the total and
//! returns it (mod 256) as the exit status. With `fault` on the command line, [`poke`] writes
//! through a null pointer after the first round instead: a #PF for the debugger or a core dump.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param};

guest_sdk::entry!(main);

/// How many rounds [`main`] runs.
const ROUNDS: u64 = 10;

/// Rounds done so far (a global for the debugger to watch).
static ROUNDS_DONE: AtomicU64 = AtomicU64::new(0);

/// One round: the next Fibonacci pair.
#[inline(never)]
fn step(pair: (u64, u64)) -> (u64, u64) {
    let next = pair.0 + pair.1;
    ROUNDS_DONE.fetch_add(1, Ordering::Relaxed);
    (pair.1, next)
}

/// Writes `value` through `target`: with a null pointer, the page fault the `fault` run wants.
#[inline(never)]
fn poke(target: *mut u64, value: u64) {
    // SAFETY: not sound for a null `target`, on purpose: the store faults before it happens and
    // the SDK's exception handler reports the #PF.
    unsafe { target.write_volatile(value) };
}

fn main() -> u32 {
    let fault = find_param(cmdline(), "fault").is_some();
    let mut pair = (0, 1);
    let mut total = 0;
    for round in 0..ROUNDS {
        pair = step(pair);
        total += pair.0;
        if fault && round == 0 {
            poke(core::ptr::null_mut(), total);
        }
    }
    println!(
        "debuggee: {} rounds, total {total}",
        ROUNDS_DONE.load(Ordering::Relaxed)
    );
    (total % 256) as u32
}
