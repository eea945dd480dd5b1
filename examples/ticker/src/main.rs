//! Prints `tick 1`, `tick 2`, … with a pause between them, then powers off with exit code 0:
//! a guest whose console output must reach the terminal while it runs, not when it stops.
//!
//! Each line carries the guest's own clock (milliseconds since boot), e.g. `tick 1 at 12 ms`.
//! The command line may set `ticks=N` (default 2) and `pause_ms=MS` (default 1000; a sleep lasts
//! at least that long).
//!
//! ```text
//! parapet run target/x86_64-unknown-none/debug/ticker --cmdline 'ticks=5 pause_ms=500'
//! ```
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use core::time::Duration;

use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::{time, timer};

guest_sdk::entry!(main);

/// Exit code for a malformed command line.
const USAGE_ERROR: u32 = 2;

fn main() -> u32 {
    let param = |key: &str, default: u64| match find_param(cmdline(), key) {
        None => Some(default),
        Some(v) => v.parse().ok(),
    };
    let (Some(ticks), Some(pause_ms)) = (param("ticks", 2), param("pause_ms", 1000)) else {
        println!("ticker: usage: ticks=N pause_ms=MS");
        return USAGE_ERROR;
    };
    for tick in 1..=ticks {
        if tick > 1 {
            timer::sleep(Duration::from_millis(pause_ms));
        }
        println!("tick {tick} at {} ms", time::now().as_nanos() / 1_000_000);
    }
    0
}
