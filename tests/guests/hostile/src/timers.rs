//! Absurd `set_timer_op` deadlines.

use super::*;

pub(super) fn timer_huge(r: &mut Report) {
    for (what, t) in [
        ("u64::MAX", u64::MAX),
        ("i64::MAX + 1", 1u64 << 63),
        ("1 (long past)", 1),
    ] {
        let got = Ret::of(hypercall::set_timer(t).map(drop));
        r.ret(&alloc::format!("timer-huge set_timer_op {what}"), got, OK);
    }
    let _ = hypercall::set_timer(0);
    // The SDK's own timer must still work afterwards: a broken one would sleep until one of the
    // absurd deadlines above. The upper bound only tells those apart, even on a loaded host.
    let t0 = time::now();
    guest_sdk::timer::sleep(Duration::from_millis(2));
    let slept = t0.elapsed();
    r.check(
        "timer-huge sleep still works",
        slept >= Duration::from_millis(2) && slept < Duration::from_secs(10),
        format_args!("slept {} us", slept.as_micros()),
    );
}
