//! Exercises the PV core from inside the guest: event channels, timers, grant tables,
//! `GNTTABOP_copy`, and shared rings end to end with the loopback device.
//!
//! Prints `ok <check>` or `FAIL <check>: …` per check and, last,
//! `pv-selftest: <n> ok, <m> failed`; returns 0 only if nothing failed. The ring checks need the
//! loopback device (`parapet run --loopback`); without it they are skipped with a note.
//!
//! The command line may name the groups to run (`events timers grants copy rings console`;
//! default all) and `verbose` for extra measurements. `console` prints 64 long lines quickly, to
//! fill the 2 KiB console ring several times over.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use guest_sdk::abi::Errno;
use guest_sdk::abi::event_channel::{DOMID_BACKEND, DOMID_GUEST, DOMID_SELF, virq};
use guest_sdk::abi::grant_table::{GNTTABOP_COPY_MAX, gntst, gtf};
use guest_sdk::abi::loopback::{
    LOOPBACK_OP_ECHO, LOOPBACK_OP_FILL, LOOPBACK_OP_SUM, LOOPBACK_STATUS_ERROR, LOOPBACK_STATUS_OK,
    LoopbackRequest, LoopbackResponse,
};
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::evtchn::{self, Port, PortStatus};
use guest_sdk::grant::{self, GrantError, GrantRef, copy_frame, copy_gref, copy_op};
use guest_sdk::loopback::{Loopback, LoopbackError};
use guest_sdk::page::PageBox;
use guest_sdk::start_info::{cmdline, start_info};
use guest_sdk::time::{self, Instant, rdtsc, tsc_khz};
use guest_sdk::timer::{self, Source, Timer};
use guest_sdk::{console, println};
use pv_drivers::loopback::LOOPBACK_RING_SIZE;
use pv_drivers::shared::SharedPage;

guest_sdk::entry!(main);

/// Counts and prints check results.
struct Checks {
    ok: u32,
    failed: u32,
}

impl Checks {
    fn pass(&mut self, name: &str, detail: fmt::Arguments<'_>) {
        self.ok += 1;
        println!("ok {name}{detail}");
    }

    fn fail(&mut self, name: &str, detail: fmt::Arguments<'_>) {
        self.failed += 1;
        println!("FAIL {name}: {detail}");
    }

    /// Checks that `got == want`.
    fn eq<T: PartialEq + fmt::Debug>(&mut self, name: &str, got: T, want: T) {
        if got == want {
            self.pass(name, format_args!(""));
        } else {
            self.fail(name, format_args!("got {got:?} want {want:?}"));
        }
    }

    /// Reports an observation that is not a pass/fail check (e.g. how late a timer was: timing
    /// goals belong in benchmarks, not in tests).
    fn note(&mut self, name: &str, detail: fmt::Arguments<'_>) {
        println!("note {name}: {detail}");
    }

    /// Checks a condition; `detail` describes what was seen.
    fn that(&mut self, name: &str, ok: bool, detail: fmt::Arguments<'_>) {
        if ok {
            self.pass(name, format_args!(""));
        } else {
            self.fail(name, detail);
        }
    }
}

fn main() -> u32 {
    let words: Vec<&str> = cmdline().split_whitespace().collect();
    let verbose = words.contains(&"verbose");
    let groups = ["events", "timers", "grants", "copy", "rings", "console"];
    let chosen: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| groups.contains(w))
        .collect();
    let run = |g: &str| chosen.is_empty() || chosen.contains(&g);
    let mut c = Checks { ok: 0, failed: 0 };
    if run("events") {
        events(&mut c, verbose);
    }
    if run("timers") {
        timers(&mut c);
    }
    if run("grants") {
        grants(&mut c);
    }
    if run("copy") {
        grant_copy(&mut c);
    }
    if run("rings") {
        rings(&mut c, verbose);
    }
    if run("console") {
        console_flood(&mut c);
    }
    println!("pv-selftest: {} ok, {} failed", c.ok, c.failed);
    u32::from(c.failed != 0)
}

// ---------------------------------------------------------------------------------------------
// Events.

static HITS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
static LAST_PORT: AtomicU32 = AtomicU32::new(0);
static HANDLER_TSC: AtomicU64 = AtomicU64::new(0);

fn on_a(port: Port) {
    HANDLER_TSC.store(rdtsc(), Ordering::SeqCst);
    LAST_PORT.store(port.0, Ordering::SeqCst);
    HITS[0].fetch_add(1, Ordering::SeqCst);
}

fn on_b(port: Port) {
    LAST_PORT.store(port.0, Ordering::SeqCst);
    HITS[1].fetch_add(1, Ordering::SeqCst);
}

fn hits(i: usize) -> u32 {
    HITS[i].load(Ordering::SeqCst)
}

/// Waits (up to 1 s) until handler `i` has run `n` times in total.
fn wait_hits(i: usize, n: u32) -> bool {
    timer::wait_until(Some(time::now() + Duration::from_secs(1)), || hits(i) >= n)
}

fn events(c: &mut Checks, verbose: bool) {
    let a = evtchn::alloc_unbound(DOMID_SELF);
    c.that("evtchn alloc_unbound", a.is_ok(), format_args!("{a:?}"));
    let Ok(a) = a else { return };
    c.eq(
        "evtchn status unbound",
        evtchn::status(a),
        Ok(PortStatus::Unbound {
            remote_dom: DOMID_GUEST,
        }),
    );
    let b = evtchn::bind_interdomain(DOMID_SELF, a);
    c.that("evtchn bind_interdomain", b.is_ok(), format_args!("{b:?}"));
    let Ok(b) = b else { return };
    c.that(
        "evtchn new ports differ",
        a != b,
        format_args!("{a} == {b}"),
    );
    c.eq(
        "evtchn status interdomain a",
        evtchn::status(a),
        Ok(PortStatus::Interdomain {
            remote_dom: DOMID_GUEST,
            remote_port: b,
        }),
    );
    c.eq(
        "evtchn status interdomain b",
        evtchn::status(b),
        Ok(PortStatus::Interdomain {
            remote_dom: DOMID_GUEST,
            remote_port: a,
        }),
    );
    c.that(
        "evtchn new ports unmasked",
        !evtchn::is_masked(a) && !evtchn::is_masked(b),
        format_args!("masked"),
    );
    evtchn::set_handler(a, on_a);
    evtchn::set_handler(b, on_b);

    let upcalls = evtchn::upcall_count();
    c.eq("evtchn send b", evtchn::send(b), Ok(()));
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
        evtchn::upcall_count() > upcalls,
        format_args!("no upcall"),
    );
    c.that(
        "evtchn latch set",
        evtchn::take_event(a),
        format_args!("no latch on {a}"),
    );
    c.eq("evtchn send a", evtchn::send(a), Ok(()));
    c.that(
        "evtchn send a runs b's handler",
        wait_hits(1, 1),
        format_args!("b hits {}", hits(1)),
    );
    evtchn::notify(b);
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
            let _ = evtchn::send(b);
        } else {
            evtchn::notify(b);
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
        println!("  evtchn {} upcalls so far", evtchn::upcall_count());
    }

    // Masking.
    evtchn::mask(a);
    c.that(
        "evtchn mask sets the bit",
        evtchn::is_masked(a),
        format_args!("not masked"),
    );
    let before = hits(0);
    let _ = evtchn::send(b);
    timer::sleep(Duration::from_millis(5));
    c.eq("evtchn masked port: no upcall", hits(0), before);
    c.that(
        "evtchn masked port stays pending",
        evtchn::is_pending(a),
        format_args!("not pending"),
    );
    evtchn::unmask_local(a);
    c.eq(
        "evtchn unmask_local delivers the pending event",
        hits(0),
        before + 1,
    );
    c.that(
        "evtchn unmask_local clears pending",
        !evtchn::is_pending(a) && !evtchn::is_masked(a),
        format_args!("still pending/masked"),
    );
    evtchn::mask(a);
    let _ = evtchn::send(b);
    timer::sleep(Duration::from_millis(2));
    c.eq("evtchn masked again: no upcall", hits(0), before + 1);
    c.eq("evtchn EVTCHNOP_unmask", evtchn::unmask(a), Ok(()));
    c.that(
        "evtchn EVTCHNOP_unmask re-raises the pending port",
        wait_hits(0, before + 2),
        format_args!("a hits {}", hits(0) - before),
    );
    c.that(
        "evtchn EVTCHNOP_unmask cleared the mask",
        !evtchn::is_masked(a),
        format_args!("masked"),
    );

    // Upcall mask: events pend, nothing is delivered until it is cleared.
    evtchn::disable_upcalls();
    let before = hits(0);
    let _ = evtchn::send(b);
    let mut spin = 0u64;
    let until = time::now() + Duration::from_millis(2);
    while time::now() < until {
        spin += 1;
    }
    c.that(
        "evtchn upcall_mask holds events back",
        hits(0) == before && evtchn::upcall_pending(),
        format_args!(
            "hits +{} pending {} ({spin} spins)",
            hits(0) - before,
            evtchn::upcall_pending()
        ),
    );
    evtchn::enable_upcalls();
    c.eq("evtchn clearing upcall_mask delivers", hits(0), before + 1);

    // wait_any with a port.
    let _ = evtchn::take_event(a);
    let _ = evtchn::send(b);
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
                evtchn::status(p),
                Ok(PortStatus::Virq(virq::TIMER)),
            );
            c.eq(
                "evtchn bind_virq timer twice",
                evtchn::bind_virq(virq::TIMER),
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
            evtchn::status(p),
            Ok(PortStatus::Interdomain {
                remote_dom: DOMID_BACKEND,
                remote_port: status_remote(p),
            }),
        );
        c.eq(
            "evtchn close console port refused",
            evtchn::close(p),
            Err(Errno::EINVAL),
        );
    } else {
        c.fail(
            "console port",
            format_args!("start-info has no console_evtchn"),
        );
    }
    match evtchn::bind_virq(virq::CONSOLE) {
        Ok(p) => {
            c.eq(
                "evtchn status virq console",
                evtchn::status(p),
                Ok(PortStatus::Virq(virq::CONSOLE)),
            );
            c.eq(
                "evtchn send on a VIRQ port",
                evtchn::send(p),
                Err(Errno::EINVAL),
            );
            c.eq("evtchn close virq", evtchn::close(p), Ok(()));
            c.eq(
                "evtchn status closed",
                evtchn::status(p),
                Ok(PortStatus::Closed),
            );
        }
        Err(e) => c.fail("evtchn bind_virq console", format_args!("{e}")),
    }
    c.eq(
        "evtchn bind_virq unknown",
        evtchn::bind_virq(virq::NR + 5),
        Err(Errno::EINVAL),
    );

    // Close one end: the other becomes unbound and sends to it are dropped.
    c.eq("evtchn close b", evtchn::close(b), Ok(()));
    c.eq(
        "evtchn status closed b",
        evtchn::status(b),
        Ok(PortStatus::Closed),
    );
    c.eq(
        "evtchn peer of closed port unbound",
        evtchn::status(a),
        Ok(PortStatus::Unbound {
            remote_dom: DOMID_GUEST,
        }),
    );
    let before = hits(1);
    c.eq(
        "evtchn send on unbound port dropped",
        evtchn::send(a),
        Ok(()),
    );
    timer::sleep(Duration::from_millis(2));
    c.eq("evtchn send on unbound: no handler", hits(1), before);
    c.eq(
        "evtchn send on closed port",
        evtchn::send(b),
        Err(Errno::EINVAL),
    );
    c.eq("evtchn close a", evtchn::close(a), Ok(()));
    c.eq("evtchn close twice", evtchn::close(a), Err(Errno::EINVAL));
    c.eq(
        "evtchn send port 0",
        evtchn::send(Port(0)),
        Err(Errno::EINVAL),
    );
    c.eq(
        "evtchn status port 4096",
        evtchn::status(Port(4096)).map(|_| ()),
        Err(Errno::EINVAL),
    );
    evtchn::clear_handler(a);
    evtchn::clear_handler(b);
    // Ports are reused after close.
    let again = evtchn::alloc_unbound(DOMID_SELF);
    c.that(
        "evtchn alloc after close",
        again.is_ok(),
        format_args!("{again:?}"),
    );
    if let Ok(p) = again {
        let _ = evtchn::close(p);
    }
}

/// The remote port `EVTCHNOP_status` reports for `p` (whatever it is; the check is on the
/// domain).
fn status_remote(p: Port) -> Port {
    match evtchn::status(p) {
        Ok(PortStatus::Interdomain { remote_port, .. }) => remote_port,
        _ => Port(0),
    }
}

// ---------------------------------------------------------------------------------------------
// Timers.

static CB_FIRES: AtomicU32 = AtomicU32::new(0);
static CB_AT: AtomicU64 = AtomicU64::new(0);

fn timer_cb(_: timer::TimerId) {
    CB_AT.store(time::now().as_nanos(), Ordering::SeqCst);
    CB_FIRES.fetch_add(1, Ordering::SeqCst);
}

fn timers(c: &mut Checks) {
    for ms in [1u64, 5, 20] {
        let d = Duration::from_millis(ms);
        let t0 = time::now();
        timer::sleep(d);
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
    timer::sleep_until(deadline);
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

// ---------------------------------------------------------------------------------------------
// Grants.

fn grants(c: &mut Checks) {
    let si = start_info();
    c.eq(
        "grant query_size",
        grant::query_size(),
        Ok((si.nr_grant_frames, si.nr_grant_frames)),
    );
    let mut frames = [0u64; 4];
    let n = (si.nr_grant_frames as usize).min(4);
    match grant::setup_table(&mut frames[..n]) {
        Ok(()) => {
            let want: Vec<u64> = (0..n as u64)
                .map(|i| si.grant_table / PAGE_SIZE + i)
                .collect();
            c.eq("grant setup_table frames", frames[..n].to_vec(), want);
        }
        Err(e) => c.fail("grant setup_table", format_args!("{e}")),
    }
    let mut too_many = alloc::vec![0u64; si.nr_grant_frames as usize + 1];
    c.eq(
        "grant setup_table too many frames",
        grant::setup_table(&mut too_many),
        Err(GrantError::Status(gntst::GENERAL_ERROR)),
    );

    let page = PageBox::new();
    match grant::grant_access(page.frame(), DOMID_BACKEND, false) {
        Ok(g) => {
            let e = grant::entry(g).unwrap();
            c.that(
                "grant entry written",
                e.flags == gtf::PERMIT_ACCESS
                    && e.domid == DOMID_BACKEND
                    && u64::from(e.frame) == page.frame(),
                format_args!("{e:?}"),
            );
            c.that("grant ref is not 0", g != GrantRef(0), format_args!("0"));
            c.eq("grant end_access", grant::end_access(g), Ok(()));
            c.eq(
                "grant entry cleared",
                grant::entry(g).map(|e| e.flags),
                Some(0),
            );
            c.eq(
                "grant end_access twice",
                grant::end_access(g),
                Err(GrantError::BadRef),
            );
        }
        Err(e) => c.fail("grant grant_access", format_args!("{e}")),
    }
    match grant::grant_access(page.frame(), DOMID_BACKEND, true) {
        Ok(g) => {
            c.eq(
                "grant readonly flags",
                grant::entry(g).map(|e| e.flags),
                Some(gtf::PERMIT_ACCESS | gtf::READONLY),
            );
            // The SDK's compare-and-swap refuses while the VMM's in-use bits are set.
            let _ = grant::set_entry(
                g,
                page.frame() as u32,
                DOMID_BACKEND,
                gtf::PERMIT_ACCESS | gtf::READING,
            );
            c.eq(
                "grant end_access refused while GTF_reading",
                grant::end_access(g),
                Err(GrantError::Busy),
            );
            let _ = grant::set_entry(g, page.frame() as u32, DOMID_BACKEND, gtf::PERMIT_ACCESS);
            c.eq(
                "grant end_access after release",
                grant::end_access(g),
                Ok(()),
            );
        }
        Err(e) => c.fail("grant grant_access readonly", format_args!("{e}")),
    }
    // Many grants: the free list hands out distinct references and takes them back.
    let mut refs = Vec::new();
    while refs.len() < 300 {
        match grant::grant_access(page.frame(), DOMID_BACKEND, true) {
            Ok(g) => refs.push(g),
            Err(_) => break,
        }
    }
    let mut sorted = refs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    c.that(
        "grant 300 distinct references",
        sorted.len() == 300,
        format_args!("{} distinct", sorted.len()),
    );
    let freed = refs
        .iter()
        .filter(|&&g| grant::end_access(g).is_ok())
        .count();
    c.eq("grant 300 revoked", freed, 300);
    c.eq(
        "grant out-of-range end_access",
        grant::end_access(GrantRef(5000)),
        Err(GrantError::BadRef),
    );
}

// ---------------------------------------------------------------------------------------------
// Grant copy.

fn pattern(i: usize) -> u8 {
    (i * 13 + 7) as u8
}

fn copy_status(ops: &mut [grant::Copy]) -> Result<Vec<i16>, Errno> {
    // SAFETY: every destination in these tests is a `PageBox` this function's caller owns and
    // reads only after the call, or a grant of one.
    unsafe { grant::grant_copy(ops) }?;
    Ok(ops.iter().map(|o| o.status).collect())
}

fn grant_copy(c: &mut Checks) {
    let a = PageBox::new();
    let b = PageBox::new();
    let bytes: Vec<u8> = (0..4096).map(pattern).collect();
    a.write(0, &bytes);
    let (Ok(ga), Ok(gro)) = (
        grant::grant_access(a.frame(), DOMID_BACKEND, false),
        grant::grant_access(a.frame(), DOMID_BACKEND, true),
    ) else {
        c.fail("copy grants", format_args!("grant_access failed"));
        return;
    };
    let full = |src, sg, dst, dg| copy_op(src, sg, dst, dg, 4096);

    let mut op = [full(
        copy_gref(ga, 0),
        true,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy gref -> frame",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    c.that(
        "copy gref -> frame contents",
        b.to_array()[..] == bytes[..],
        format_args!("differ"),
    );

    b.fill(0, 4096, 0x5a);
    let mut op = [full(
        copy_frame(b.frame(), 0),
        false,
        copy_gref(ga, 0),
        true,
    )];
    c.eq(
        "copy frame -> gref",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    c.that(
        "copy frame -> gref contents",
        a.to_array().iter().all(|&x| x == 0x5a),
        format_args!("differ"),
    );

    a.write(0, &bytes);
    let mut op = [copy_op(
        copy_gref(gro, 10),
        true,
        copy_frame(b.frame(), 100),
        false,
        200,
    )];
    c.eq(
        "copy from read-only gref with offsets",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    let got = b.to_array();
    c.that(
        "copy offsets respected",
        got[100..300] == bytes[10..210] && got[99] == 0x5a && got[300] == 0x5a,
        format_args!("wrong bytes"),
    );

    let mut buf = [0u8; 64];
    c.eq(
        "copy_from_gref helper",
        grant::copy_from_gref(gro, 64, &mut buf),
        Ok(()),
    );
    c.that(
        "copy_from_gref contents",
        buf[..] == bytes[64..128],
        format_args!("differ"),
    );
    let msg = *b"written through GNTTABOP_copy";
    c.eq(
        "copy_to_gref helper",
        grant::copy_to_gref(ga, 1000, &msg),
        Ok(()),
    );
    let mut back = [0u8; 29];
    a.read(1000, &mut back);
    c.eq("copy_to_gref contents", back, msg);

    // Refused cases.
    let mut op = [full(
        copy_frame(b.frame(), 0),
        false,
        copy_gref(gro, 0),
        true,
    )];
    c.eq(
        "copy to read-only gref refused",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::PERMISSION_DENIED]),
    );
    c.eq(
        "copy_to_gref read-only",
        grant::copy_to_gref(gro, 0, &msg),
        Err(GrantError::Status(gntst::PERMISSION_DENIED)),
    );
    let mut op = [full(
        copy_gref(GrantRef(5000), 0),
        true,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy bad gref (outside table)",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_GNTREF]),
    );
    if let Ok(r) = grant::reserve() {
        let mut op = [full(copy_gref(r, 0), true, copy_frame(b.frame(), 0), false)];
        c.eq(
            "copy gref without permit_access",
            copy_status(&mut op),
            Ok(alloc::vec![gntst::BAD_GNTREF]),
        );
        let _ = grant::end_access(r);
    }
    let mut op = [copy_op(
        copy_gref(ga, 4000),
        true,
        copy_frame(b.frame(), 0),
        false,
        200,
    )];
    c.eq(
        "copy source offset+len > 4096",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_COPY_ARG]),
    );
    let mut op = [copy_op(
        copy_gref(ga, 0),
        true,
        copy_frame(b.frame(), 3900),
        false,
        200,
    )];
    c.eq(
        "copy dest offset+len > 4096",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_COPY_ARG]),
    );
    let mut op = [full(
        copy_frame(0x10, 0),
        false,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy from frame below 1 MiB",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );
    let mut op = [full(copy_gref(ga, 0), true, copy_frame(0x5, 0), false)];
    c.eq(
        "copy to frame below 1 MiB",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );
    let beyond = start_info().nr_pages + 10;
    let mut op = [full(copy_gref(ga, 0), true, copy_frame(beyond, 0), false)];
    c.eq(
        "copy to frame beyond RAM",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );

    // A batch: good and bad elements are independent.
    let mut ops = [
        copy_op(copy_gref(gro, 0), true, copy_frame(b.frame(), 0), false, 16),
        full(copy_frame(b.frame(), 0), false, copy_gref(gro, 0), true),
        copy_op(
            copy_gref(gro, 16),
            true,
            copy_frame(b.frame(), 16),
            false,
            16,
        ),
    ];
    c.eq(
        "copy batch statuses",
        copy_status(&mut ops),
        Ok(alloc::vec![
            gntst::OKAY,
            gntst::PERMISSION_DENIED,
            gntst::OKAY
        ]),
    );
    let one = copy_op(copy_gref(gro, 0), true, copy_frame(b.frame(), 0), false, 1);
    let mut many = alloc::vec![one; GNTTABOP_COPY_MAX as usize + 1];
    c.eq(
        "copy 65 elements",
        copy_status(&mut many),
        Err(Errno::E2BIG),
    );
    let mut max = alloc::vec![one; GNTTABOP_COPY_MAX as usize];
    c.that(
        "copy 64 elements",
        copy_status(&mut max).is_ok_and(|s| s.iter().all(|&x| x == gntst::OKAY)),
        format_args!("failed"),
    );
    c.eq(
        "copy grants released",
        (grant::in_use(ga), grant::in_use(gro)),
        (false, false),
    );
    c.eq("copy end_access rw", grant::end_access(ga), Ok(()));
    c.eq("copy end_access ro", grant::end_access(gro), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Rings with the loopback device.

static DEV_EVENTS: AtomicU32 = AtomicU32::new(0);

fn on_device(_: Port) {
    DEV_EVENTS.fetch_add(1, Ordering::SeqCst);
}

struct Expect {
    op: u32,
    value: u64,
}

fn rings(c: &mut Checks, verbose: bool) {
    let mut lb = match Loopback::connect() {
        Ok(lb) => lb,
        Err(LoopbackError::NoDevice) => {
            println!("skip rings: no loopback device (run with --loopback)");
            return;
        }
        Err(e) => {
            c.fail("loopback connect", format_args!("{e}"));
            return;
        }
    };
    c.pass("loopback connect", format_args!(""));
    evtchn::set_handler(lb.port(), on_device);
    c.eq(
        "loopback port is connected to the backend",
        evtchn::status(lb.port()).map(|s| {
            matches!(
                s,
                PortStatus::Interdomain {
                    remote_dom: DOMID_BACKEND,
                    ..
                }
            )
        }),
        Ok(true),
    );
    let ring_gref = lb.ring_gref();
    c.that(
        "loopback ring grant held (GTF_writing)",
        grant::entry(ring_gref).is_some_and(|e| e.flags & gtf::WRITING != 0),
        format_args!("{:?}", grant::entry(ring_gref)),
    );
    c.eq(
        "grant end_access refused while the backend maps it",
        grant::end_access(ring_gref),
        Err(GrantError::Busy),
    );
    c.eq(
        "loopback connect twice",
        guest_sdk::device::connect(lb.index(), &[ring_gref]),
        Err(Errno::EBUSY),
    );

    // Data pages: two writable (FILL targets), one read-only with a known pattern.
    let fills = [PageBox::new(), PageBox::new()];
    let src = PageBox::new();
    let bytes: Vec<u8> = (0..4096).map(pattern).collect();
    src.write(0, &bytes);
    let gfill: Vec<GrantRef> = fills
        .iter()
        .map(|p| grant::grant_access(p.frame(), DOMID_BACKEND, false).unwrap())
        .collect();
    let gsrc = grant::grant_access(src.frame(), DOMID_BACKEND, true).unwrap();

    // 300 requests (ring of 64), pushed in bursts of up to 48, answered as they come.
    const TOTAL: u64 = 300;
    let mut expect: Vec<Expect> = Vec::new();
    let mut requests: Vec<LoopbackRequest> = Vec::new();
    for id in 0..TOTAL {
        let (op, gref, offset, len, value, want) = match id % 4 {
            0 | 3 => (LOOPBACK_OP_ECHO, 0, 0, 0, id * 1_000_003, id * 1_000_003),
            1 => {
                let off = (id as u32 * 37) % 3000;
                let len = 1 + (id as u32 * 11) % 1000;
                let sum: u64 = bytes[off as usize..(off + len) as usize]
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum();
                (LOOPBACK_OP_SUM, gsrc.0, off, len, 0, sum)
            }
            _ => {
                // FILL: page (id/2)%2, a 64-byte stripe chosen by id.
                let page = ((id / 2) % 2) as usize;
                let stripe = ((id / 4) % 64) as u32;
                (
                    LOOPBACK_OP_FILL,
                    gfill[page].0,
                    stripe * 64,
                    64,
                    u64::from(stripe as u8 ^ 0xa5),
                    0,
                )
            }
        };
        requests.push(LoopbackRequest {
            id,
            op,
            gref,
            offset,
            len,
            value,
        });
        expect.push(Expect { op, value: want });
    }
    let events_before = DEV_EVENTS.load(Ordering::SeqCst);
    let t0 = rdtsc();
    let mut next = 0usize;
    let mut answered = 0u64;
    let mut wrong = Vec::new();
    let mut seen = alloc::vec![false; TOTAL as usize];
    let mut batches = 0u64;
    let give_up = time::now() + Duration::from_secs(5);
    while answered < TOTAL && time::now() < give_up {
        let mut pushed = 0;
        while next < requests.len()
            && pushed < 48
            && lb.ring().push_request(&requests[next]).is_ok()
        {
            next += 1;
            pushed += 1;
        }
        if pushed > 0 {
            batches += 1;
            lb.commit();
        }
        let mut got_any = false;
        while let Some(r) = lb.poll_response() {
            got_any = true;
            answered += 1;
            check_response(&r, &expect, &mut seen, &mut wrong);
        }
        if !got_any
            && lb
                .wait_response_until(give_up)
                .map(|r| {
                    answered += 1;
                    check_response(&r, &expect, &mut seen, &mut wrong);
                })
                .is_none()
        {
            break;
        }
    }
    let cycles = rdtsc().wrapping_sub(t0);
    c.eq("loopback 300 requests answered", answered, TOTAL);
    c.that(
        "loopback every id answered once",
        seen.iter().all(|&s| s),
        format_args!("missing ids"),
    );
    c.that(
        "loopback answers correct",
        wrong.is_empty(),
        format_args!("{} wrong, first {:?}", wrong.len(), wrong.first()),
    );
    let mut fill_ok = true;
    for (p, page) in fills.iter().enumerate() {
        let got = page.to_array();
        for stripe in 0..64u32 {
            // Stripe s of page p was filled by a request with id%4==2, (id/2)%2==p, (id/4)%64==s.
            let filled = (0..TOTAL).any(|id| {
                id % 4 == 2 && ((id / 2) % 2) as usize == p && (id / 4) % 64 == u64::from(stripe)
            });
            let want = if filled { stripe as u8 ^ 0xa5 } else { 0 };
            let s = stripe as usize * 64;
            if got[s..s + 64].iter().any(|&x| x != want) {
                fill_ok = false;
            }
        }
    }
    c.that(
        "loopback FILLed pages have the right contents",
        fill_ok,
        format_args!("wrong bytes"),
    );
    let doorbells = lb.notifies();
    let response_events = DEV_EVENTS.load(Ordering::SeqCst) - events_before;
    c.that(
        "loopback notifications suppressed",
        doorbells <= batches && u64::from(response_events) < TOTAL,
        format_args!(
            "{doorbells} doorbells for {batches} batches, {response_events} response events"
        ),
    );
    println!(
        "  loopback: {TOTAL} requests in {batches} batches (ring {LOOPBACK_RING_SIZE}), \
         {doorbells} doorbells, \
         {response_events} response events, {} waits, {} us total",
        lb.waits(),
        micros(cycles)
    );
    if verbose {
        println!("  loopback: {} us per request", micros(cycles / TOTAL));
    }

    // Failing requests fail alone.
    let bad = [
        LoopbackRequest {
            id: 1000,
            op: LOOPBACK_OP_FILL,
            gref: gsrc.0,
            offset: 0,
            len: 16,
            value: 1,
        },
        LoopbackRequest {
            id: 1001,
            op: LOOPBACK_OP_SUM,
            gref: gsrc.0,
            offset: 4000,
            len: 200,
            value: 0,
        },
        LoopbackRequest {
            id: 1002,
            op: 77,
            gref: gsrc.0,
            offset: 0,
            len: 1,
            value: 0,
        },
        LoopbackRequest {
            id: 1003,
            op: LOOPBACK_OP_SUM,
            gref: 4000,
            offset: 0,
            len: 1,
            value: 0,
        },
        LoopbackRequest {
            id: 1004,
            op: LOOPBACK_OP_ECHO,
            gref: 0,
            offset: 0,
            len: 0,
            value: 99,
        },
    ];
    for r in &bad {
        let _ = lb.ring().push_request(r);
    }
    lb.commit();
    let mut statuses = Vec::new();
    for _ in 0..bad.len() {
        match lb.wait_response_until(time::now() + Duration::from_secs(2)) {
            Some(r) => statuses.push((r.id, r.status)),
            None => break,
        }
    }
    let e = LOOPBACK_STATUS_ERROR;
    c.eq(
        "loopback bad requests fail alone",
        statuses,
        alloc::vec![
            (1000, e),
            (1001, e),
            (1002, e),
            (1003, e),
            (1004, LOOPBACK_STATUS_OK)
        ],
    );
    c.that(
        "loopback FILL on read-only grant left it unchanged",
        src.to_array()[..] == bytes[..],
        format_args!("changed"),
    );
    c.eq(
        "loopback data grants released",
        gfill.iter().chain([&gsrc]).any(|&g| grant::in_use(g)),
        false,
    );

    // Disconnect, then the ring grant can be revoked; connect again.
    evtchn::clear_handler(lb.port());
    match lb.disconnect() {
        Ok(()) => c.pass("loopback disconnect + ring end_access", format_args!("")),
        Err(e) => c.fail("loopback disconnect", format_args!("{e}")),
    }
    match Loopback::connect() {
        Ok(mut lb) => {
            let _ = lb.submit(&LoopbackRequest {
                id: 7,
                op: LOOPBACK_OP_ECHO,
                value: 0x1234,
                ..Default::default()
            });
            let r = lb.wait_response_until(time::now() + Duration::from_secs(2));
            c.eq(
                "loopback reconnect echo",
                r.map(|r| (r.id, r.status, r.value)),
                Some((7, 0, 0x1234)),
            );
            c.that(
                "loopback disconnect again",
                lb.disconnect().is_ok(),
                format_args!("failed"),
            );
        }
        Err(e) => c.fail("loopback reconnect", format_args!("{e}")),
    }
    for g in gfill.into_iter().chain([gsrc]) {
        let _ = grant::end_access(g);
    }
}

fn check_response(
    r: &LoopbackResponse,
    expect: &[Expect],
    seen: &mut [bool],
    wrong: &mut Vec<(u64, i32, u64)>,
) {
    let Some(e) = expect.get(r.id as usize) else {
        wrong.push((r.id, r.status, r.value));
        return;
    };
    if seen[r.id as usize]
        || r.status != LOOPBACK_STATUS_OK
        || (e.op != LOOPBACK_OP_FILL && r.value != e.value)
    {
        wrong.push((r.id, r.status, r.value));
    }
    seen[r.id as usize] = true;
}

// ---------------------------------------------------------------------------------------------
// The console ring under load.

fn console_flood(c: &mut Checks) {
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

// ---------------------------------------------------------------------------------------------

fn median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// TSC cycles as microseconds (with one decimal).
fn micros(cycles: u64) -> Micros {
    Micros(cycles.saturating_mul(10_000) / tsc_khz().max(1))
}

struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}
