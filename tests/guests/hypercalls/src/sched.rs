//! `sched_op` (yield, block, shutdown and fault with bad arguments), and `set_timer_op` with
//! `SCHEDOP_block`.

use super::*;

pub(super) fn sched_op(c: &mut Checks, ram_end: u64) {
    let so = Hypercall::SCHED_OP;
    c.eq(
        "sched_op yield",
        Ret::from_result(hypercall::sched_yield()),
        Ret::ok(0),
    );
    // SAFETY: the pointers lie outside guest RAM; command 99 does not exist.
    let (bad_shutdown, bad_fault, unknown) = unsafe {
        (
            raw(so, SCHEDOP_SHUTDOWN, ram_end, 0),
            raw(so, SCHEDOP_FAULT, ram_end - 8, 0),
            raw(so, 99, 0, 0),
        )
    };
    c.eq(
        "sched_op shutdown bad pointer",
        bad_shutdown,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "sched_op shutdown reason 99",
        Ret::err(hypercall::try_shutdown(99, 0)),
        Ret::err(Errno::EINVAL),
    );
    // Without --snapshot the VMM has nowhere to save the domain (docs/abi.md §3.6).
    c.eq(
        "sched_op shutdown suspend without a snapshot file",
        Ret::err(hypercall::try_shutdown(reason::SUSPEND, 0)),
        Ret::err(Errno::ENOSYS),
    );
    c.eq("sched_op unknown cmd", unknown, Ret::err(Errno::ENOSYS));
    c.eq(
        "sched_op fault bad pointer",
        bad_fault,
        Ret::err(Errno::EFAULT),
    );
}

/// Times one `SCHEDOP_block`.
pub(super) fn timed_block() -> (Ret, Duration) {
    let start = Instant::now();
    let ret = Ret::from_result(hypercall::sched_block());
    (ret, start.elapsed())
}

/// Masks every port the SDK left unmasked (the console port, the timer VIRQ) so that nothing
/// can wake a block but the timer; returns them for [`unmask_ports`].
pub(super) fn mask_ports() -> [Option<Port>; 2] {
    let ports = [console::port(), timer::virq_port()];
    for p in ports.into_iter().flatten() {
        event_channel::mask(p);
    }
    ports
}

pub(super) fn unmask_ports(ports: [Option<Port>; 2]) {
    for p in ports.into_iter().flatten() {
        event_channel::unmask_local(p);
    }
}

pub(super) fn set_timer_and_block(c: &mut Checks) {
    // SCHEDOP_block returns at once only if nothing can wake the vCPU (docs/abi.md §7.3): no
    // timer armed and no unmasked bound port. The console port is unmasked since boot, so mask
    // it (and the timer VIRQ, if bound) while checking that.
    let masked = mask_ports();
    let (ret, took) = timed_block();
    c.eq("sched_op block without timer", ret, Ret::ok(0));
    c.that(
        "sched_op block without timer is prompt",
        took < PROMPT,
        Micros(took),
        "< 5 s",
    );

    let deadline = Instant::now() + Duration::from_millis(2);
    c.eq(
        "set_timer_op now+2ms",
        Ret::from_result(hypercall::set_timer(deadline.as_nanos())),
        Ret::ok(0),
    );
    let (ret, took) = timed_block();
    let after = Instant::now();
    c.eq("sched_op block until timer", ret, Ret::ok(0));
    c.that(
        "sched_op block sleeps until the deadline",
        after >= deadline,
        Nanos(after.as_nanos()),
        Nanos(deadline.as_nanos()),
    );
    c.that(
        "sched_op block until timer is not late",
        took < PROMPT,
        Micros(took),
        "< 5 s",
    );

    let far = Instant::now() + Duration::from_secs(5);
    let armed = Ret::from_result(hypercall::set_timer(far.as_nanos()));
    c.eq("set_timer_op now+5s", armed, Ret::ok(0));
    c.eq(
        "set_timer_op 0 cancels",
        Ret::from_result(hypercall::set_timer(0)),
        Ret::ok(0),
    );
    let (ret, took) = timed_block();
    c.eq("sched_op block after cancel", ret, Ret::ok(0));
    c.that(
        "sched_op block after cancel is prompt",
        took < PROMPT,
        Micros(took),
        "< 5 s",
    );

    c.eq(
        "set_timer_op past deadline",
        Ret::from_result(hypercall::set_timer(1)),
        Ret::ok(0),
    );
    let (ret, took) = timed_block();
    c.eq("sched_op block past deadline", ret, Ret::ok(0));
    c.that(
        "sched_op block past deadline is prompt",
        took < PROMPT,
        Micros(took),
        "< 5 s",
    );
    c.that(
        "sched_op block leaves interrupts enabled",
        pvops::irqs_enabled(),
        "disabled",
        "enabled",
    );
    unmask_ports(masked);

    // An event pending before the block: it returns at once and the handler runs.
    if let Ok(a) = event_channel::alloc_unbound(DOMID_SELF) {
        if let Ok(b) = event_channel::bind_interdomain(DOMID_SELF, a) {
            event_channel::mask(a);
            let _ = event_channel::send(b);
            event_channel::unmask_local(a);
            c.that(
                "evtchn event pending while masked is handled on unmask",
                event_channel::take_event(a),
                "no event",
                "event",
            );
            let masked = mask_ports();
            pvops::irq_disable();
            let _ = event_channel::send(b);
            let (ret, took) = timed_block();
            pvops::irq_enable();
            c.eq("sched_op block with an event pending", ret, Ret::ok(0));
            c.that(
                "sched_op block with an event pending is prompt",
                took < PROMPT,
                Micros(took),
                "< 5 s",
            );
            c.that(
                "evtchn the pending event was delivered after the block",
                event_channel::take_event(a),
                "no event",
                "event",
            );
            unmask_ports(masked);
            let _ = event_channel::close(b);
        }
        let _ = event_channel::close(a);
    }

    let start = Instant::now();
    guest_sdk::timer::sleep(Duration::from_millis(3));
    let slept = start.elapsed();
    c.that(
        "timer::sleep 3ms",
        slept >= Duration::from_millis(3) && slept < PROMPT,
        Micros(slept),
        ">= 3 ms and < 100 ms",
    );
}
