//! Prints `tick 1`, `tick 2`, … with a pause between them, then powers off with exit code 0:
//! a guest whose console output must reach the terminal while it runs, not when it stops.
//!
//! Each line carries the guest's own clock (milliseconds since boot), e.g. `tick 1 at 12 ms`.
//! The command line may set `ticks=N` (default 2; 0 ticks until it is asked to stop) and
//! `pause_ms=MS` (default 1000; a pause lasts at least that long).
//!
//! It listens for shutdown requests (`guest_sdk::shutdown`): `SIGTERM` to its VMM (`kill`,
//! `ctr task kill`) ends the pause at once, and the guest prints `ticker: shutdown requested`
//! and powers off with exit code 0.
//!
//! ```text
//! parapet run target/x86_64-unknown-none/debug/ticker --cmdline 'ticks=5 pause_ms=500'
//! parapet run target/x86_64-unknown-none/debug/ticker --cmdline 'ticks=0' & sleep 3; kill $!
//! ```
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use core::time::Duration;

use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::{shutdown, time, timer};

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
    if let Err(e) = shutdown::listen() {
        println!("ticker: {e}");
    }
    let mut tick = 1u64;
    while ticks == 0 || tick <= ticks {
        if tick > 1 {
            // The pause, cut short by a shutdown request.
            let deadline = time::now() + Duration::from_millis(pause_ms);
            if timer::wait_until(Some(deadline), shutdown::requested) {
                println!("ticker: shutdown requested");
                return 0;
            }
        }
        println!("tick {tick} at {} ms", time::now().as_nanos() / 1_000_000);
        tick += 1;
    }
    0
}
