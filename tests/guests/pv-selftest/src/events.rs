//! Event channels: allocation, binding, status, sends and doorbells, masking, the upcall mask,
//! `wait_any` on a port, every kind of port, closing.

use super::*;
use guest_sdk::println;

pub(super) static HITS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
pub(super) static LAST_PORT: AtomicU32 = AtomicU32::new(0);
pub(super) static HANDLER_TSC: AtomicU64 = AtomicU64::new(0);

pub(super) fn on_a(port: Port) {
    HANDLER_TSC.store(rdtsc(), Ordering::SeqCst);
    LAST_PORT.store(port.0, Ordering::SeqCst);
    HITS[0].fetch_add(1, Ordering::SeqCst);
}

pub(super) fn on_b(port: Port) {
    LAST_PORT.store(port.0, Ordering::SeqCst);
    HITS[1].fetch_add(1, Ordering::SeqCst);
}

pub(super) fn hits(i: usize) -> u32 {
    HITS[i].load(Ordering::SeqCst)
}

/// Waits (up to 1 s) until handler `i` has run `n` times in total.
pub(super) fn wait_hits(i: usize, n: u32) -> bool {
    timer::wait_until(Some(time::now() + Duration::from_secs(1)), || hits(i) >= n)
}

pub(super) fn events(c: &mut Checks, verbose: bool) {
    let a = event_channel::alloc_unbound(DOMID_SELF);
    c.that("evtchn alloc_unbound", a.is_ok(), format_args!("{a:?}"));
    let Ok(a) = a else { return };
    c.eq(
        "evtchn status unbound",
        event_channel::status(a),
        Ok(PortStatus::Unbound {
            remote_dom: DOMID_GUEST,
        }),
    );
    let b = event_channel::bind_interdomain(DOMID_SELF, a);
    c.that("evtchn bind_interdomain", b.is_ok(), format_args!("{b:?}"));
    let Ok(b) = b else { return };
    c.that(
        "evtchn new ports differ",
        a != b,
        format_args!("{a} == {b}"),
    );
    c.eq(
        "evtchn status interdomain a",
        event_channel::status(a),
        Ok(PortStatus::Interdomain {
            remote_dom: DOMID_GUEST,
            remote_port: b,
        }),
    );
    c.eq(
        "evtchn status interdomain b",
        event_channel::status(b),
        Ok(PortStatus::Interdomain {
            remote_dom: DOMID_GUEST,
            remote_port: a,
        }),
    );
    c.that(
        "evtchn new ports unmasked",
        !event_channel::is_masked(a) && !event_channel::is_masked(b),
        format_args!("masked"),
    );
    event_channel::set_handler(a, on_a);
    event_channel::set_handler(b, on_b);

    let upcalls = event_channel::upcall_count();
    c.eq("evtchn send b", event_channel::send(b), Ok(()));
    c.that(
        "evtchn send b runs a's handler",
        wait_hits(0, 1),
        format_args!("a hits {}", hits(0)),
    );
    c.eq(
        "evtchn handler gets its port",
        LAST_PORT.load(Ordering::SeqCst),
        a.0,
    );
    c.that(
        "evtchn upcall taken",
        event_channel::upcall_count() > upcalls,
        format_args!("no upcall"),
    );
    c.that(
        "evtchn latch set",
        event_channel::take_event(a),
        format_args!("no latch on {a}"),
    );
    c.eq("evtchn send a", event_channel::send(a), Ok(()));
    c.that(
        "evtchn send a runs b's handler",
        wait_hits(1, 1),
        format_args!("b hits {}", hits(1)),
    );
    event_channel::notify(b);
    c.that(
        "evtchn notify (doorbell) b runs a's handler",
        wait_hits(0, 2),
        format_args!("a hits {}", hits(0)),
    );

    // A loop: N sends, each waited for; latency from send to handler.
    const N: u32 = 200;
    let before = hits(0);
    let mut lat: Vec<u64> = Vec::with_capacity(N as usize);
    let mut lat_notify: Vec<u64> = Vec::with_capacity(N as usize);
    let mut ret: Vec<u64> = Vec::with_capacity(N as usize);
    let mut missing = 0;
    for i in 0..N {
        let t0 = rdtsc();
        if i % 2 == 0 {
            let _ = event_channel::send(b);
        } else {
            event_channel::notify(b);
        }
        let t_ret = rdtsc();
        if !wait_hits(0, before + i + 1) {
            missing += 1;
            break;
        }
        let dt = HANDLER_TSC.load(Ordering::SeqCst).wrapping_sub(t0);
        if i % 2 == 0 {
            lat.push(dt);
            ret.push(t_ret.wrapping_sub(t0));
        } else {
            lat_notify.push(dt)
        }
    }
    // The upcall alone: entry stub → handler → iretq, measured around a local unmask of a
    // pending port (no hypercall), and a null hypercall for comparison.
    let mut null = Vec::with_capacity(64);
    for _ in 0..64 {
        let t = rdtsc();
        let _ = guest_sdk::hypercall::xen_version();
        null.push(rdtsc().wrapping_sub(t));
    }
    c.that(
        "evtchn 200 sends each run the handler once",
        missing == 0 && hits(0) == before + N,
        format_args!("{} of {N} handled", hits(0) - before),
    );
    println!(
        "  evtchn send->handler median {} us (send returns after {} us), notify->handler median \
         {} us, null hypercall {} us",
        micros(median(&mut lat)),
        micros(median(&mut ret)),
        micros(median(&mut lat_notify)),
        micros(median(&mut null)),
    );
    if verbose {
        println!("  evtchn {} upcalls so far", event_channel::upcall_count());
    }

    // Masking.
    event_channel::mask(a);
    c.that(
        "evtchn mask sets the bit",
        event_channel::is_masked(a),
        format_args!("not masked"),
    );
    let before = hits(0);
    let _ = event_channel::send(b);
    guest_sdk::timer::sleep(Duration::from_millis(5));
    c.eq("evtchn masked port: no upcall", hits(0), before);
    c.that(
        "evtchn masked port stays pending",
        event_channel::is_pending(a),
        format_args!("not pending"),
    );
    event_channel::unmask_local(a);
    c.eq(
        "evtchn unmask_local delivers the pending event",
        hits(0),
        before + 1,
    );
    c.that(
        "evtchn unmask_local clears pending",
        !event_channel::is_pending(a) && !event_channel::is_masked(a),
        format_args!("still pending/masked"),
    );
    event_channel::mask(a);
    let _ = event_channel::send(b);
    guest_sdk::timer::sleep(Duration::from_millis(2));
    c.eq("evtchn masked again: no upcall", hits(0), before + 1);
    c.eq("evtchn EVTCHNOP_unmask", event_channel::unmask(a), Ok(()));
    c.that(
        "evtchn EVTCHNOP_unmask re-raises the pending port",
        wait_hits(0, before + 2),
        format_args!("a hits {}", hits(0) - before),
    );
    c.that(
        "evtchn EVTCHNOP_unmask cleared the mask",
        !event_channel::is_masked(a),
        format_args!("masked"),
    );

    // Upcall mask: events pend, nothing is delivered until it is cleared.
    event_channel::disable_upcalls();
    let before = hits(0);
    let _ = event_channel::send(b);
    let mut spin = 0u64;
    let until = time::now() + Duration::from_millis(2);
    while time::now() < until {
        spin += 1;
    }
    c.that(
        "evtchn upcall_mask holds events back",
        hits(0) == before && event_channel::upcall_pending(),
        format_args!(
            "hits +{} pending {} ({spin} spins)",
            hits(0) - before,
            event_channel::upcall_pending()
        ),
    );
    event_channel::enable_upcalls();
    c.eq("evtchn clearing upcall_mask delivers", hits(0), before + 1);

    // wait_any with a port.
    let _ = event_channel::take_event(a);
    let _ = event_channel::send(b);
    let i = timer::wait_any(&[
        Source::Port(a),
        Source::Deadline(time::now() + Duration::from_secs(1)),
    ]);
    c.eq("timer wait_any port fires first", i, 0);
    let i = timer::wait_any(&[
        Source::Port(a),
        Source::Deadline(time::now() + Duration::from_millis(3)),
    ]);
    c.eq("timer wait_any deadline when the port is quiet", i, 1);

    // Status of every kind of port.
    timer::init();
    match timer::virq_port() {
        Some(p) => {
            c.eq(
                "evtchn status virq timer",
                event_channel::status(p),
                Ok(PortStatus::Virq(virq::TIMER)),
            );
            c.eq(
                "evtchn bind_virq timer twice",
                event_channel::bind_virq(virq::TIMER),
                Err(Errno::EEXIST),
            );
        }
        None => c.fail(
            "evtchn VIRQ_TIMER bound by the SDK",
            format_args!("no port"),
        ),
    }
    if let Some(p) = console::port() {
        c.eq(
            "evtchn status console port",
            event_channel::status(p),
            Ok(PortStatus::Interdomain {
                remote_dom: DOMID_BACKEND,
                remote_port: status_remote(p),
            }),
        );
        c.eq(
            "evtchn close console port refused",
            event_channel::close(p),
            Err(Errno::EINVAL),
        );
    } else {
        c.fail(
            "console port",
            format_args!("start-info has no console_evtchn"),
        );
    }
    match event_channel::bind_virq(virq::CONSOLE) {
        Ok(p) => {
            c.eq(
                "evtchn status virq console",
                event_channel::status(p),
                Ok(PortStatus::Virq(virq::CONSOLE)),
            );
            c.eq(
                "evtchn send on a VIRQ port",
                event_channel::send(p),
                Err(Errno::EINVAL),
            );
            c.eq("evtchn close virq", event_channel::close(p), Ok(()));
            c.eq(
                "evtchn status closed",
                event_channel::status(p),
                Ok(PortStatus::Closed),
            );
        }
        Err(e) => c.fail("evtchn bind_virq console", format_args!("{e}")),
    }
    c.eq(
        "evtchn bind_virq unknown",
        event_channel::bind_virq(virq::NR + 5),
        Err(Errno::EINVAL),
    );

    // Close one end: the other becomes unbound and sends to it are dropped.
    c.eq("evtchn close b", event_channel::close(b), Ok(()));
    c.eq(
        "evtchn status closed b",
        event_channel::status(b),
        Ok(PortStatus::Closed),
    );
    c.eq(
        "evtchn peer of closed port unbound",
        event_channel::status(a),
        Ok(PortStatus::Unbound {
            remote_dom: DOMID_GUEST,
        }),
    );
    let before = hits(1);
    c.eq(
        "evtchn send on unbound port dropped",
        event_channel::send(a),
        Ok(()),
    );
    guest_sdk::timer::sleep(Duration::from_millis(2));
    c.eq("evtchn send on unbound: no handler", hits(1), before);
    c.eq(
        "evtchn send on closed port",
        event_channel::send(b),
        Err(Errno::EINVAL),
    );
    c.eq("evtchn close a", event_channel::close(a), Ok(()));
    c.eq(
        "evtchn close twice",
        event_channel::close(a),
        Err(Errno::EINVAL),
    );
    c.eq(
        "evtchn send port 0",
        event_channel::send(guest_sdk::event_channel::Port(0)),
        Err(Errno::EINVAL),
    );
    c.eq(
        "evtchn status port 4096",
        event_channel::status(guest_sdk::event_channel::Port(4096)).map(|_| ()),
        Err(Errno::EINVAL),
    );
    event_channel::clear_handler(a);
    event_channel::clear_handler(b);
    // Ports are reused after close.
    let again = event_channel::alloc_unbound(DOMID_SELF);
    c.that(
        "evtchn alloc after close",
        again.is_ok(),
        format_args!("{again:?}"),
    );
    if let Ok(p) = again {
        let _ = event_channel::close(p);
    }
}

/// The remote port `EVTCHNOP_status` reports for `p` (whatever it is; the check is on the
/// domain).
pub(super) fn status_remote(p: Port) -> Port {
    match event_channel::status(p) {
        Ok(PortStatus::Interdomain { remote_port, .. }) => remote_port,
        _ => guest_sdk::event_channel::Port(0),
    }
}
