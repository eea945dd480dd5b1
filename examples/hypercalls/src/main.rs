//! A conformance guest: calls every hypercall of docs/abi.md §3 with valid and invalid
//! arguments and checks each result against the documented one.
//!
//! Prints `ok <check>` or `FAIL <check>: got X want Y` per check and, last,
//! `hypercall checks: <n> ok, <m> failed`. Returns 0 if nothing failed, else 1. Two checks at
//! the end cover the SDK heap, which the guest gets from the memory map.
//!
//! `SCHEDOP_block` re-enables event delivery and returns at once only when nothing could wake
//! the vCPU (docs/abi.md §7.3). The SDK unmasks the console port at boot, so the checks that
//! need a block to return at once mask it (and the timer VIRQ) first.
//!
//! Calls with deliberately bad pointers go through the SDK's raw `hypercall5`; every such pointer
//! lies outside guest RAM (or is a buffer this guest owns), so the VMM never writes guest memory
//! on their behalf.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use guest_sdk::abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use guest_sdk::abi::event_channel::DOMID_SELF;
use guest_sdk::abi::multicall::{MULTICALL_MAX_ENTRIES, MulticallEntry};
use guest_sdk::abi::sched::{SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, reason};
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::abi::version::{
    ABI_VERSION_MAJOR, ABI_VERSION_MINOR, EXTRAVERSION_LEN, XENVER_EXTRAVERSION,
    XENVER_GET_FEATURES, XENVER_VERSION, features,
};
use guest_sdk::abi::{Errno, Hypercall};
use guest_sdk::evtchn::{self, Port};
use guest_sdk::hypercall::{self, raw::hypercall5};
use guest_sdk::println;
use guest_sdk::pvops::{self, IrqMode};
use guest_sdk::start_info::start_info;
use guest_sdk::time::{self, Instant};
use guest_sdk::{console, timer};

guest_sdk::entry!(main);

/// How long a `SCHEDOP_block` that should return at once may take. A wrong block would halt
/// until something else woke it (or forever); this bound tells the two apart even on a heavily
/// loaded host, and is no timing goal.
const PROMPT: Duration = Duration::from_secs(5);

/// A raw hypercall result, shown as a value or as a negated errno.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ret(u64);

impl Ret {
    const fn ok(v: u64) -> Ret {
        Ret(v)
    }

    const fn err(e: Errno) -> Ret {
        Ret(e.to_ret())
    }

    fn from_result(r: Result<u64, Errno>) -> Ret {
        match r {
            Ok(v) => Ret(v),
            Err(e) => Ret::err(e),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_ret(self.0) {
            Ok(v) => write!(f, "{v:#x}"),
            Err(e) => write!(f, "-{e}"),
        }
    }
}

/// Counts and prints check results.
struct Checks {
    ok: u32,
    failed: u32,
}

impl Checks {
    fn pass(&mut self, name: &str) {
        self.ok += 1;
        println!("ok {name}");
    }

    fn fail(&mut self, name: &str, got: impl fmt::Display, want: impl fmt::Display) {
        self.failed += 1;
        println!("FAIL {name}: got {got} want {want}");
    }

    /// Checks that `got == want`.
    fn eq<T: PartialEq + fmt::Display>(&mut self, name: &str, got: T, want: T) {
        if got == want {
            self.pass(name);
        } else {
            self.fail(name, got, want);
        }
    }

    /// Checks a condition; `got`/`want` describe it if it does not hold.
    fn that(&mut self, name: &str, ok: bool, got: impl fmt::Display, want: impl fmt::Display) {
        if ok {
            self.pass(name);
        } else {
            self.fail(name, got, want);
        }
    }
}

/// A raw hypercall.
///
/// # Safety
///
/// As for [`hypercall5`]: pointer arguments must lie outside guest RAM or name memory the caller
/// may have written.
unsafe fn raw(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> Ret {
    // SAFETY: forwarded to the caller.
    Ret(unsafe { hypercall5(nr, a1, a2, a3, 0, 0) })
}

fn main() -> u32 {
    let mut c = Checks { ok: 0, failed: 0 };
    let ram_end = start_info().nr_pages * PAGE_SIZE;
    console_io(&mut c, ram_end);
    xen_version(&mut c, ram_end);
    sched_op(&mut c, ram_end);
    set_timer_and_block(&mut c);
    multicall(&mut c, ram_end);
    unknown_and_reserved(&mut c);
    pv_ops(&mut c);
    clock(&mut c);
    heap(&mut c);
    println!("hypercall checks: {} ok, {} failed", c.ok, c.failed);
    u32::from(c.failed != 0)
}

fn console_io(c: &mut Checks, ram_end: u64) {
    let io = Hypercall::CONSOLE_IO;
    c.eq(
        "console_io write count 0",
        Ret::from_result(hypercall::console_write(&[])),
        Ret::ok(0),
    );
    let line = b"console_io write: this line is the payload\n";
    c.eq(
        "console_io write returns count",
        Ret::from_result(hypercall::console_write(line)),
        Ret::ok(line.len() as u64),
    );
    // SAFETY: the VMM only reads for CONSOLEIO_write, and these ranges are outside guest RAM.
    let (outside, straddling, wrapping) = unsafe {
        (
            raw(io, CONSOLEIO_WRITE, 16, ram_end),
            raw(io, CONSOLEIO_WRITE, 16, ram_end - 8),
            raw(io, CONSOLEIO_WRITE, 16, u64::MAX - 7),
        )
    };
    c.eq(
        "console_io write outside RAM",
        outside,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "console_io write straddling RAM end",
        straddling,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "console_io write address overflow",
        wrapping,
        Ret::err(Errno::EFAULT),
    );
    let buf = [0u8; 8];
    // SAFETY: command 7 does not exist; the VMM accesses nothing.
    let unknown = unsafe { raw(io, 7, buf.len() as u64, buf.as_ptr() as u64) };
    c.eq("console_io unknown cmd", unknown, Ret::err(Errno::ENOSYS));
    let mut input = [0u8; 64];
    c.eq(
        "console_io read",
        Ret::from_result(hypercall::console_read(&mut input)),
        Ret::ok(0),
    );
    // SAFETY: a read into a range outside guest RAM.
    let bad_read = unsafe { raw(io, CONSOLEIO_READ, 16, ram_end) };
    c.eq(
        "console_io read outside RAM",
        bad_read,
        Ret::err(Errno::EFAULT),
    );
}

fn xen_version(c: &mut Checks, ram_end: u64) {
    let xv = Hypercall::XEN_VERSION;
    let want = (ABI_VERSION_MAJOR << 16) | ABI_VERSION_MINOR;
    c.eq(
        "xen_version version",
        Ret::from_result(hypercall::xen_version().map(u64::from)),
        Ret::ok(u64::from(want)),
    );
    c.eq("xen_version version is 0x00000002", want, 0x0000_0002);

    let mut want_extra = [0u8; EXTRAVERSION_LEN];
    want_extra[..8].copy_from_slice(b"-parapet");
    match hypercall::xen_extraversion() {
        Ok(extra) => c.that(
            "xen_version extraversion",
            extra == want_extra,
            ByteStr(&extra),
            ByteStr(&want_extra),
        ),
        Err(e) => c.fail("xen_version extraversion", Ret::err(e), "0"),
    }

    let submap0 = features::WRITABLE_PAGE_TABLES
        | features::AUTO_TRANSLATED_PHYSMAP
        | features::SUPERVISOR_MODE_KERNEL;
    c.eq(
        "xen_version get_features submap 0",
        Ret::from_result(hypercall::xen_get_features(0).map(u64::from)),
        Ret::ok(u64::from(submap0)),
    );
    c.eq(
        "xen_version get_features submap 1",
        Ret::from_result(hypercall::xen_get_features(1).map(u64::from)),
        Ret::ok(0),
    );
    // SAFETY: the pointers lie outside guest RAM; XENVER_version takes none; command 99 does
    // not exist.
    let (bad_features, bad_extra, version_ignores_arg, unknown) = unsafe {
        (
            raw(xv, XENVER_GET_FEATURES, ram_end, 0),
            raw(xv, XENVER_EXTRAVERSION, u64::MAX - 7, 0),
            raw(xv, XENVER_VERSION, ram_end, 0),
            raw(xv, 99, 0, 0),
        )
    };
    c.eq(
        "xen_version get_features bad pointer",
        bad_features,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "xen_version extraversion bad pointer",
        bad_extra,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "xen_version version ignores arg",
        version_ignores_arg,
        Ret::ok(u64::from(want)),
    );
    c.eq("xen_version unknown cmd", unknown, Ret::err(Errno::ENOSYS));
}

fn sched_op(c: &mut Checks, ram_end: u64) {
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
    c.eq(
        "sched_op shutdown suspend",
        Ret::err(hypercall::try_shutdown(reason::SUSPEND, 0)),
        Ret::err(Errno::EINVAL),
    );
    c.eq("sched_op unknown cmd", unknown, Ret::err(Errno::ENOSYS));
    c.eq(
        "sched_op fault bad pointer",
        bad_fault,
        Ret::err(Errno::EFAULT),
    );
}

/// Times one `SCHEDOP_block`.
fn timed_block() -> (Ret, Duration) {
    let start = Instant::now();
    let ret = Ret::from_result(hypercall::sched_block());
    (ret, start.elapsed())
}

/// Masks every port the SDK left unmasked (the console port, the timer VIRQ) so that nothing
/// can wake a block but the timer; returns them for [`unmask_ports`].
fn mask_ports() -> [Option<Port>; 2] {
    let ports = [console::port(), timer::virq_port()];
    for p in ports.into_iter().flatten() {
        evtchn::mask(p);
    }
    ports
}

fn unmask_ports(ports: [Option<Port>; 2]) {
    for p in ports.into_iter().flatten() {
        evtchn::unmask_local(p);
    }
}

fn set_timer_and_block(c: &mut Checks) {
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
    if let Ok(a) = evtchn::alloc_unbound(DOMID_SELF) {
        if let Ok(b) = evtchn::bind_interdomain(DOMID_SELF, a) {
            evtchn::mask(a);
            let _ = evtchn::send(b);
            evtchn::unmask_local(a);
            c.that(
                "evtchn event pending while masked is handled on unmask",
                evtchn::take_event(a),
                "no event",
                "event",
            );
            let masked = mask_ports();
            pvops::irq_disable();
            let _ = evtchn::send(b);
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
                evtchn::take_event(a),
                "no event",
                "event",
            );
            unmask_ports(masked);
            let _ = evtchn::close(b);
        }
        let _ = evtchn::close(a);
    }

    let start = Instant::now();
    timer::sleep(Duration::from_millis(3));
    let slept = start.elapsed();
    c.that(
        "time::sleep 3ms",
        slept >= Duration::from_millis(3) && slept < PROMPT,
        Micros(slept),
        ">= 3 ms and < 100 ms",
    );
}

fn multicall(c: &mut Checks, ram_end: u64) {
    let entry = |op: Hypercall, args: [u64; 2]| MulticallEntry {
        op: u64::from(op.0),
        result: 0xdead,
        args: [args[0], args[1], 0, 0, 0, 0],
    };
    let mut batch = [
        entry(Hypercall::XEN_VERSION, [XENVER_VERSION, 0]),
        entry(Hypercall::SCHED_OP, [SCHEDOP_YIELD, 0]),
        entry(Hypercall(99), [0, 0]),
    ];
    // SAFETY: the entries take no pointers.
    let ret = unsafe { hypercall::multicall(&mut batch) };
    c.eq("multicall 3 entries", Ret::from_result(ret), Ret::ok(0));
    let names = [
        "multicall result xen_version",
        "multicall result yield",
        "multicall result 99",
    ];
    let version = u64::from((ABI_VERSION_MAJOR << 16) | ABI_VERSION_MINOR);
    let wants = [Ret::ok(version), Ret::ok(0), Ret::err(Errno::ENOSYS)];
    for ((name, want), e) in names.into_iter().zip(wants).zip(&batch) {
        c.eq(name, Ret(e.result), want);
    }

    let mut inner = [entry(Hypercall::SCHED_OP, [SCHEDOP_YIELD, 0])];
    let inner_addr = inner.as_mut_ptr() as u64;
    let mut nested = [entry(Hypercall::MULTICALL, [inner_addr, 1])];
    // SAFETY: the nested entry names `inner`, which we own (and the VMM refuses to run it).
    let ret = unsafe { hypercall::multicall(&mut nested) };
    c.eq(
        "multicall nested returns",
        Ret::from_result(ret),
        Ret::ok(0),
    );
    c.eq(
        "multicall nested entry",
        Ret(nested[0].result),
        Ret::err(Errno::EINVAL),
    );
    c.eq(
        "multicall nested entry did not run",
        Ret(inner[0].result),
        Ret::ok(0xdead),
    );

    let mc = Hypercall::MULTICALL;
    let mut big = [MulticallEntry::default(); 4];
    let addr = big.as_mut_ptr() as u64;
    // SAFETY: count 0 runs nothing; count 257 is refused before anything runs; the last
    // array lies outside guest RAM.
    let (empty, too_many, bad) = unsafe {
        (
            raw(mc, addr, 0, 0),
            raw(mc, addr, MULTICALL_MAX_ENTRIES + 1, 0),
            raw(mc, ram_end, 1, 0),
        )
    };
    c.eq("multicall count 0", empty, Ret::ok(0));
    c.eq("multicall count 257", too_many, Ret::err(Errno::E2BIG));
    c.eq("multicall bad pointer", bad, Ret::err(Errno::EFAULT));
}

fn unknown_and_reserved(c: &mut Checks) {
    for (name, nr) in [
        ("hypercall 99 unknown", 99),
        ("hypercall 126 unknown", 126),
        ("hypercall 24 vcpu_op reserved", 24),
    ] {
        // SAFETY: no argument is a pointer the VMM would use: these numbers are not served.
        let ret = unsafe { raw(Hypercall(nr), 0, 0, 0) };
        c.eq(name, ret, Ret::err(Errno::ENOSYS));
    }
    // Served since ABI 0.2: unknown sub-commands are -ENOSYS.
    for (name, nr) in [
        ("grant_table_op unknown cmd", Hypercall::GRANT_TABLE_OP),
        ("event_channel_op unknown cmd", Hypercall::EVENT_CHANNEL_OP),
        ("device_op unknown cmd", Hypercall::DEVICE_OP),
    ] {
        // SAFETY: command 99 does not exist; nothing is accessed.
        let ret = unsafe { raw(nr, 99, 0, 0) };
        c.eq(name, ret, Ret::err(Errno::ENOSYS));
    }
    // The doorbell (127) returns nothing and ignores ports nobody serves.
    evtchn::notify(Port(0));
    evtchn::notify(Port(4095));
    c.pass("evtchn_notify (127) on unserved ports");
}

fn pv_ops(c: &mut Checks) {
    let vif = pvops::irq_mode() == IrqMode::Vif;
    pvops::irq_disable();
    c.that(
        "pvops irq_disable",
        !pvops::irqs_enabled(),
        "enabled",
        "disabled",
    );
    if vif {
        c.eq(
            "pvops VIF byte after disable",
            Flag(pvops::vif_flag()),
            Flag(Some(0)),
        );
    }
    pvops::irq_enable();
    c.that(
        "pvops irq_enable",
        pvops::irqs_enabled(),
        "disabled",
        "enabled",
    );
    if vif {
        c.eq(
            "pvops VIF byte after enable",
            Flag(pvops::vif_flag()),
            Flag(Some(1)),
        );
    }
    {
        let _guard = pvops::irq_save();
        c.that(
            "pvops irq_save masks",
            !pvops::irqs_enabled(),
            "enabled",
            "disabled",
        );
    }
    c.that(
        "pvops irq_save guard restores",
        pvops::irqs_enabled(),
        "disabled",
        "enabled",
    );
    pvops::irq_disable();
    c.that(
        "pvops irq_disable again",
        !pvops::irqs_enabled(),
        "enabled",
        "disabled",
    );
    // The SDK runs `main` with events enabled; leave it so.
    pvops::irq_enable();
}

fn clock(c: &mut Checks) {
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
fn heap(c: &mut Checks) {
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

/// Shows bytes as an escaped string.
struct ByteStr<'a>(&'a [u8]);

impl fmt::Display for ByteStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for b in self.0.iter().flat_map(|b| core::ascii::escape_default(*b)) {
            fmt::Write::write_char(f, char::from(b))?;
        }
        f.write_str("\"")
    }
}

/// Shows a duration in microseconds.
struct Micros(Duration);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} us", self.0.as_micros())
    }
}

/// Shows a system time in nanoseconds.
struct Nanos(u64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ns", self.0)
    }
}

/// Shows an optional VIF byte.
#[derive(PartialEq)]
struct Flag(Option<u8>);

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}
