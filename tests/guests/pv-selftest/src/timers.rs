//! Timers: sleeps, one-shot and periodic timers, several timers on one deadline, `wait_any`.

use super::*;

pub(super) static CB_FIRES: AtomicU32 = AtomicU32::new(0);
pub(super) static CB_AT: AtomicU64 = AtomicU64::new(0);

pub(super) fn timer_cb(_: timer::TimerId) {
    CB_AT.store(time::now().as_nanos(), Ordering::SeqCst);
    CB_FIRES.fetch_add(1, Ordering::SeqCst);
}

pub(super) fn timers(c: &mut Checks) {
    for ms in [1u64, 5, 20] {
        let d = Duration::from_millis(ms);
        let t0 = time::now();
        guest_sdk::timer::sleep(d);
        let slept = t0.elapsed();
        c.that(
            &alloc::format!("timer sleep {ms}ms"),
            slept >= d,
            format_args!("woke early: slept {} us", slept.as_micros()),
        );
        c.note(
            &alloc::format!("timer sleep {ms}ms"),
            format_args!("slept {} us", slept.as_micros()),
        );
    }
    let deadline = time::now() + Duration::from_millis(3);
    guest_sdk::timer::sleep_until(deadline);
    c.that(
        "timer sleep_until: now >= deadline",
        time::now() >= deadline,
        format_args!("early"),
    );

    // One-shot with a callback.
    let at = time::now() + Duration::from_millis(3);
    match Timer::oneshot_with(at, timer_cb) {
        Ok(t) => {
            let fired = timer::wait_until(Some(at + Duration::from_secs(1)), || {
                CB_FIRES.load(Ordering::SeqCst) >= 1
            });
            c.that(
                "timer oneshot callback runs",
                fired,
                format_args!("never ran"),
            );
            c.that(
                "timer oneshot not early",
                CB_AT.load(Ordering::SeqCst) >= at.as_nanos(),
                format_args!(
                    "ran at {} < {}",
                    CB_AT.load(Ordering::SeqCst),
                    at.as_nanos()
                ),
            );
            c.eq("timer oneshot fired once", t.fired(), 1);
            c.eq("timer oneshot stopped", t.deadline(), None);
        }
        Err(e) => c.fail("timer oneshot", format_args!("{e}")),
    }

    // Periodic.
    let period = Duration::from_millis(2);
    match Timer::periodic(period) {
        Ok(t) => {
            let t0 = time::now();
            for _ in 0..10 {
                t.wait();
            }
            let took = t0.elapsed();
            c.that(
                "timer periodic fires 10 times",
                t.fired() >= 10,
                format_args!("fired {}", t.fired()),
            );
            // Only the lower bound is a property of the timer; how late it may be depends on how
            // loaded the host is, which is for benchmarks to measure.
            c.that(
                "timer periodic 10 x 2ms takes >= 18ms",
                took >= Duration::from_millis(18),
                format_args!("took {} us", took.as_micros()),
            );
            t.stop();
        }
        Err(e) => c.fail("timer periodic", format_args!("{e}")),
    }

    // Two timers multiplexed on one deadline; wait_any picks the one that fired. What may have
    // fired is judged against the clock, so a guest descheduled past both deadlines (a loaded
    // host) still passes.
    let now = time::now();
    let (late_at, early_at) = (
        now + Duration::from_millis(8),
        now + Duration::from_millis(3),
    );
    let late = Timer::oneshot(late_at);
    let early = Timer::oneshot(early_at);
    if let (Ok(late), Ok(early)) = (late, early) {
        let first = timer::wait_any(&[Source::Timer(&late), Source::Timer(&early)]);
        // The count first, then the clock: if the clock still reads before the later deadline,
        // the count was taken before it too, and must be 0. (Read the other way round, a slow
        // host could pass the deadline between the two reads.)
        let late_fired = late.fired();
        let woke = time::now();
        c.that(
            "timer wait_any: not before the earlier deadline",
            woke >= early_at && early.fired() > 0,
            format_args!("early fired {} times", early.fired()),
        );
        if woke < late_at {
            c.eq("timer wait_any: the earlier timer first", first, 1);
            c.that(
                "timer the later timer has not fired yet",
                late_fired == 0,
                format_args!("fired"),
            );
        }
        // If wait_any already reported the later timer (both had fired), its event is taken:
        // waiting for it again would wait for a second firing of a one-shot timer.
        if first == 1 {
            let second = timer::wait_any(&[Source::Timer(&late)]);
            c.eq("timer wait_any: then the later one", second, 0);
        }
        c.that(
            "timer later timer not early",
            time::now() >= late_at && late.fired() > 0,
            format_args!("early"),
        );
    } else {
        c.fail("timer two oneshots", format_args!("could not create"));
    }
    let d = time::now() + Duration::from_millis(2);
    c.eq(
        "timer wait_any deadline only",
        timer::wait_any(&[Source::Deadline(d)]),
        0,
    );
    c.that(
        "timer wait_any deadline passed",
        time::now() >= d,
        format_args!("early"),
    );
    let past = timer::wait_any(&[Source::Deadline(Instant::from_nanos(1))]);
    c.eq("timer wait_any past deadline returns at once", past, 0);
    c.note(
        "timer set_timer_op calls",
        format_args!("{}", timer::set_timer_calls()),
    );
}
