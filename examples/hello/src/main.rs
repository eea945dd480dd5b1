//! The smallest Parapet guest: one line, one hypercall, then power-off.
//!
//! Between boot and power-off it makes exactly two exits to the VMM: the `println!` (one
//! `console_io` call) and the shutdown.
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
