//! What the SDK builds on the ABI: the clock, and the heap from the memory map.

use super::*;

pub(super) fn clock(c: &mut Checks) {
    let first = Instant::now();
    let mut prev = first;
    let mut backwards = None;
    for _ in 0..1000 {
        let t = Instant::now();
        if t < prev && backwards.is_none() {
            backwards = Some((prev, t));
        }
        prev = t;
    }
    match backwards {
        None => c.pass("clock monotonic over 1000 reads"),
        Some((a, b)) => c.fail(
            "clock monotonic over 1000 reads",
            Nanos(b.as_nanos()),
            Nanos(a.as_nanos()),
        ),
    }
    c.that(
        "clock is running",
        first.as_nanos() > 0,
        Nanos(first.as_nanos()),
        "> 0",
    );
    c.that(
        "tsc_khz is known",
        time::tsc_khz() > 0,
        time::tsc_khz(),
        "> 0",
    );
}

/// Not a hypercall, but what the SDK builds on the memory map: the heap.
pub(super) fn heap(c: &mut Checks) {
    let v: Vec<u64> = (0..10_000).collect();
    let sum: u64 = v.iter().sum();
    c.eq("sdk heap Vec of 10000", sum, 49_995_000);
    drop(v);
    let mut s = String::new();
    for i in 0..100 {
        s.push_str(if i % 2 == 0 { "ab" } else { "c" });
    }
    c.eq("sdk heap String", s.len(), 150);
}
