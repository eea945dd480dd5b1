//! The console ring under load.

use super::*;
use guest_sdk::println;

pub(super) fn console_flood(c: &mut Checks) {
    c.that(
        "console ring active",
        console::ring_active(),
        format_args!("console_io only"),
    );
    let waits = console::full_waits();
    let notifies = console::notify_count();
    let t0 = rdtsc();
    for i in 0..64 {
        println!("  console flood {i:02} {}", "0123456789abcdef".repeat(6));
    }
    let flushed = console::flush();
    let cycles = rdtsc().wrapping_sub(t0);
    c.that(
        "console flood: ring still active",
        console::ring_active(),
        format_args!("stalled"),
    );
    c.that(
        "console flood: flush drains the ring",
        flushed,
        format_args!("not drained"),
    );
    println!(
        "  console: 64 lines (~7 KiB) in {} us, {} full-ring waits, {} doorbells",
        micros(cycles),
        console::full_waits() - waits,
        console::notify_count() - notifies
    );
}
