//! The smallest Parapet guest: one line, then power-off.
//!
//! The `println!` goes into the PV console ring and rings the doorbell, which the VMM's
//! ioeventfd absorbs in the kernel; the SDK waits (polling) for the console backend to drain
//! the ring before it powers off. Usually the power-off is the only exit to the VMM; when the
//! backend is slow to wake, the drain blocks (a `set_timer_op` and a `SCHEDOP_block`).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use guest_sdk::start_info::{platform, transport};

guest_sdk::entry!(main);

fn main() -> u32 {
    guest_sdk::println!(
        "Hello from Parapet! platform={} transport={}",
        platform().name(),
        transport().name()
    );
    0
}
