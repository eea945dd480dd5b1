//! Measures Parapet's paravirtual mechanisms, and the traps they replace, from inside the guest
//! with the TSC.
//!
//! The guest first prints `bench-info platform=<p> transport=<t> tsc_khz=<khz> kvm_msr=<msr>`,
//! then one line per benchmark (the format is `bench-protocol`'s, which `cargo xtask bench`
//! reads with the same crate):
//! `bench <name> iters=<n> batch=<k> median=<cycles> p99=<cycles> min=<cycles> total=<cycles>
//! tsc_khz=<khz> warmup=<w>`, where median, p99 and min are per operation (a sample times `batch`
//! operations), total is all samples together, and `warmup` samples ran (unmeasured) before them:
//! the benchmark performed `(warmup + iters) * batch` operations in all, which is what
//! `cargo xtask bench` divides exit counts by.
//! The command line may name the benchmarks to run (default: all that are not explicit) and
//! `iters=N`.
//!
//! Paravirtual mechanisms next to the traps they replace (`cargo xtask bench` prints them as one
//! table; docs/benchmarks.md explains each row):
//!
//! - Hypercalls: `null_hypercall` (`xen_version`, one exit), `multicall_null` (32 null calls in
//!   one `multicall`, cost per call).
//! - Privileged instructions, trapped and handled inside KVM, against their PV replacements:
//!   `rdmsr_kvm` reads a KVM MSR (kvm_pvm's TSC-frequency MSR `0x4b564d13`; on VT-x/AMD-V
//!   `MSR_KVM_SYSTEM_TIME_NEW`, `0x4b564d01`) against `startinfo_tsc_khz`, the same fact read
//!   from the start-info page; `cli_sti` (two trapping instructions on kvm_pvm, where they do not
//!   even gate delivery) against `vif_irq_off_on` (`pvops::irq_disable` + `irq_enable`: two
//!   stores to the VIF byte on kvm_pvm).
//! - A device register trapped and emulated in the VMM (docs/abi.md §9.3): `pio_read`,
//!   `pio_write` (scratch port 0x510), `mmio_read`, `mmio_write` (scratch MMIO register), against
//!   the same request through a shared ring: `ring_echo` (one loopback `ECHO`, doorbell only if
//!   the backend asked for it, spin for the response) and `ring_echo_batch` (32 requests, at most
//!   one doorbell, cost per request). Both need `parapet run --loopback`.
//! - Timers: `timer_arm_hypercall` (`set_timer_op`) against `timer_arm_lapic` (one trapped
//!   x2APIC write of the initial count; the LVT and divider are programmed once at start-up);
//!   `timer_fire_hypercall` and `timer_fire_lapic` arm an already-due timer and spin until its
//!   handler ran (`VIRQ_TIMER` upcall against the local APIC timer interrupt).
//! - Event notification, guest cost only: `notify_doorbell` (stub 127, absorbed by the backend's
//!   ioeventfd) against `notify_hypercall` (`EVTCHNOP_send`), on the loopback device's port.
//!
//! Other PV-core benchmarks: `tsc_read` (the cost of the measurement itself);
//! `evtchn_send_dropped` is `EVTCHNOP_send` on an unbound port (a
//! hypercall, no event); `evtchn_send_upcall` and `evtchn_notify_upcall` send on one end of a
//! loop of two ports and include the upcall that runs the other end's handler (so the upcall
//! costs about their difference from `evtchn_send_dropped`); `grant_copy_4k` copies a granted
//! page with `GNTTABOP_copy`; `sleep_100us` is a timer sleep of 100 µs; `loopback_echo` is one
//! request/response round trip through the loopback device, the guest blocking for the response
//! (needs `parapet run --loopback`; skipped otherwise).
//!
//! Run only when named: `mmio_read` and `mmio_write` (a guest whose host cannot reach the
//! scratch MMIO page takes a page fault there, which ends the run); `timer_fire_hypercall`
//! (milliseconds per sample on a busy host). Also run only when named, because they are slow or
//! noisy on purpose: `event_rtt_doorbell` and
//! `event_rtt_hypercall` push one loopback request, notify the backend with the doorbell
//! (ioeventfd, no exit) or with `EVTCHNOP_send` (a hypercall), and spin until the response is
//! there: the event round trip guest → backend → guest. `console_ring_1k`, `console_io_1k` and
//! `console_trap_1k` write 1 KiB of console output per sample as 64-byte lines: through the
//! console ring, with one `console_io` per line, and with one `out 0xe9` trap per byte.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use guest_sdk::abi::event_channel::{DOMID_BACKEND, DOMID_SELF, virq};
use guest_sdk::abi::hypercall::Hypercall;
use guest_sdk::abi::loopback::{LOOPBACK_OP_ECHO, LoopbackRequest};
use guest_sdk::abi::multicall::MulticallEntry;
use guest_sdk::abi::start_info::Platform;
use guest_sdk::abi::version::XENVER_VERSION;
use guest_sdk::event_channel::{self, Port};
use guest_sdk::grant_table::{self, GrantRef};
use guest_sdk::hypercall;
use guest_sdk::loopback::Loopback;
use guest_sdk::page::PageBox;
use guest_sdk::time::{self, rdtsc, tsc_khz};
use guest_sdk::timer;
use guest_sdk::{idt, pvops, start_info};

guest_sdk::entry!(main);

/// One benchmark: a name, how many operations one sample covers, and the operation.
struct Bench {
    name: &'static str,
    batch: u64,
    run: fn(&mut Ctx),
    /// Run only when named on the command line.
    explicit: bool,
    /// Needs the loopback device (`parapet run --loopback`); skipped without it.
    loopback: bool,
    /// Runs once after the samples (e.g. disarms a timer the benchmark left armed).
    after: Option<fn(&mut Ctx)>,
}

impl Bench {
    const fn new(name: &'static str, batch: u64, run: fn(&mut Ctx)) -> Bench {
        Bench {
            name,
            batch,
            run,
            explicit: false,
            loopback: false,
            after: None,
        }
    }

    const fn explicit(self) -> Bench {
        Bench {
            explicit: true,
            ..self
        }
    }

    const fn loopback(self) -> Bench {
        Bench {
            loopback: true,
            ..self
        }
    }

    const fn after(self, after: fn(&mut Ctx)) -> Bench {
        Bench {
            after: Some(after),
            ..self
        }
    }
}

/// State the benchmarks share.
struct Ctx {
    /// An unbound port (sends are dropped).
    unbound: Port,
    /// The sending end of a loop whose other end counts upcalls in `LOOP_HITS`.
    loop_tx: Port,
    /// A granted page and a local page.
    gref: GrantRef,
    dst: PageBox,
    loopback: Option<Loopback>,
    /// The KVM MSR `rdmsr_kvm` reads on this platform.
    kvm_msr: u32,
}

static LOOP_HITS: AtomicU64 = AtomicU64::new(0);
/// `VIRQ_TIMER` upcalls (the `set_timer_op` timer fired).
static TIMER_HITS: AtomicU64 = AtomicU64::new(0);
/// Local APIC timer interrupts.
static LAPIC_HITS: AtomicU64 = AtomicU64::new(0);

fn on_loop(_: Port) {
    LOOP_HITS.fetch_add(1, Ordering::SeqCst);
}

fn on_timer_virq(_: Port) {
    TIMER_HITS.fetch_add(1, Ordering::SeqCst);
}

fn on_lapic_timer(_: u8) {
    LAPIC_HITS.fetch_add(1, Ordering::SeqCst);
}

/// Waits until `counter` exceeds `n`.
fn spin_until_above(counter: &AtomicU64, n: u64) {
    while counter.load(Ordering::SeqCst) <= n {
        core::hint::spin_loop();
    }
}

const MULTICALL_BATCH: usize = 32;
/// Requests per sample of `ring_echo_batch` (the ring has 64 slots).
const RING_BATCH: usize = 32;

/// The trapped-and-emulated devices (docs/abi.md §9.3): scratch registers and the debug console.
use guest_sdk::abi::emulated::{DEBUG_CONSOLE_PORT, SCRATCH_MMIO, SCRATCH_PORT};

/// kvm_pvm's TSC-frequency MSR (what Linux's PVM guest reads instead of calibrating).
const MSR_PVM_TSC_KHZ: u32 = 0x4b56_4d13;
/// `MSR_KVM_SYSTEM_TIME_NEW`, a KVM paravirtual MSR KVM serves in the kernel on VT-x/AMD-V.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

/// x2APIC registers of the local APIC timer.
const X2APIC_LVT_TIMER: u32 = 0x832;
const X2APIC_TIMER_INITIAL_COUNT: u32 = 0x838;
const X2APIC_TIMER_DIVIDE: u32 = 0x83e;
/// Divide configuration "divide by 1".
const TIMER_DIVIDE_BY_1: u64 = 0b1011;
/// The vector the bench programs the local APIC timer with (below the upcall vector, 0xf3).
const LAPIC_TIMER_VECTOR: u8 = 0xf0;
/// An initial count that does not expire during a benchmark (seconds at KVM's APIC bus rate).
const LAPIC_FAR_COUNT: u64 = 0xffff_ffff;
/// How far ahead `timer_arm_hypercall` arms its deadline: never reached during the benchmark.
const FAR_DEADLINE: Duration = Duration::from_secs(3600);

const BENCHES: &[Bench] = &[
    // Hypercalls.
    Bench::new("null_hypercall", 1, |_| null_hypercall()),
    Bench::new("multicall_null", MULTICALL_BATCH as u64, |_| {
        multicall_null()
    }),
    Bench::new("tsc_read", 1, |_| {
        rdtsc();
    }),
    // Privileged instructions (trapped inside KVM) and their PV replacements.
    Bench::new("rdmsr_kvm", 1, |c| {
        // SAFETY: the MSR exists on this platform (chosen in `setup`) and reading it has no
        // side effects.
        let _ = unsafe { rdmsr(c.kvm_msr) };
    }),
    Bench::new("startinfo_tsc_khz", 1, |_| {
        let info = start_info::start_info();
        // SAFETY: a read of a field of the 'static start-info page; volatile so that every
        // sample reads memory, as the MSR read it replaces asks the host every time.
        let _ = unsafe { (&raw const info.tsc_khz).read_volatile() };
    }),
    Bench::new("cli_sti", 1, |_| cli_sti()),
    Bench::new("vif_irq_off_on", 1, |_| {
        pvops::irq_disable();
        pvops::irq_enable();
    }),
    // A device register trapped and emulated in the VMM.
    Bench::new("pio_read", 1, |_| {
        // SAFETY: reading the VMM's scratch port (docs/abi.md §9.3) has no side effects.
        let _ = unsafe { inl(SCRATCH_PORT) };
    }),
    Bench::new("pio_write", 1, |_| {
        // SAFETY: the scratch port only stores the value.
        unsafe { outl(SCRATCH_PORT, 5) };
    }),
    Bench::new("mmio_read", 1, |_| {
        // SAFETY: the builder maps the scratch MMIO page at this address (docs/abi.md §9.3);
        // every access exits to the VMM, which answers the register's value.
        let _ = unsafe { (SCRATCH_MMIO as *const u64).read_volatile() };
    })
    .explicit(),
    Bench::new("mmio_write", 1, |_| {
        // SAFETY: as above; the VMM stores the value in the register.
        unsafe { (SCRATCH_MMIO as *mut u64).write_volatile(5) };
    })
    .explicit(),
    // The same request through the shared ring.
    Bench::new("ring_echo", 1, |c| ring_echo(c, 1)).loopback(),
    Bench::new("ring_echo_batch", RING_BATCH as u64, |c| {
        ring_echo(c, RING_BATCH)
    })
    .loopback(),
    // Timers.
    Bench::new("timer_arm_hypercall", 1, |_| {
        let at = time::now() + FAR_DEADLINE;
        let _ = hypercall::set_timer(at.as_nanos());
    })
    .after(|_| {
        let _ = hypercall::set_timer(0);
    }),
    Bench::new("timer_arm_lapic", 1, |_| {
        // SAFETY: x2APIC timer registers: re-arms the one-shot timer far in the future.
        unsafe { wrmsr(X2APIC_TIMER_INITIAL_COUNT, LAPIC_FAR_COUNT) };
    })
    .after(|_| {
        // SAFETY: an initial count of 0 stops the timer.
        unsafe { wrmsr(X2APIC_TIMER_INITIAL_COUNT, 0) };
    }),
    Bench::new("timer_fire_hypercall", 1, |_| {
        let n = TIMER_HITS.load(Ordering::SeqCst);
        let _ = hypercall::set_timer(time::now().as_nanos().max(1));
        spin_until_above(&TIMER_HITS, n);
    })
    .explicit(),
    Bench::new("timer_fire_lapic", 1, |_| {
        let n = LAPIC_HITS.load(Ordering::SeqCst);
        // SAFETY: a one-shot count of 1 fires the timer at once on `LAPIC_TIMER_VECTOR`, whose
        // handler `setup` installed.
        unsafe { wrmsr(X2APIC_TIMER_INITIAL_COUNT, 1) };
        spin_until_above(&LAPIC_HITS, n);
    }),
    // Event notification (guest cost).
    Bench::new("notify_doorbell", 1, |c| {
        if let Some(lb) = c.loopback.as_ref() {
            event_channel::notify(lb.port());
        }
    })
    .loopback(),
    Bench::new("notify_hypercall", 1, |c| {
        if let Some(lb) = c.loopback.as_ref() {
            let _ = event_channel::send(lb.port());
        }
    })
    .loopback(),
    // PV core.
    Bench::new("evtchn_send_dropped", 1, |c| {
        let _ = event_channel::send(c.unbound);
    }),
    Bench::new("evtchn_send_upcall", 1, |c| {
        let n = LOOP_HITS.load(Ordering::SeqCst);
        let _ = event_channel::send(c.loop_tx);
        spin_until_above(&LOOP_HITS, n);
    }),
    Bench::new("evtchn_notify_upcall", 1, |c| {
        let n = LOOP_HITS.load(Ordering::SeqCst);
        event_channel::notify(c.loop_tx);
        spin_until_above(&LOOP_HITS, n);
    }),
    Bench::new("grant_copy_4k", 1, |c| {
        let mut op = [grant_table::copy_op(
            grant_table::copy_gref(c.gref, 0),
            true,
            grant_table::copy_frame(c.dst.frame(), 0),
            false,
            4096,
        )];
        // SAFETY: the destination is `c.dst`, a page the benchmark owns.
        let r = unsafe { grant_table::grant_copy(&mut op) };
        debug_assert!(r.is_ok() && op[0].status == 0);
    }),
    Bench::new("sleep_100us", 1, |_| {
        timer::sleep(Duration::from_micros(100))
    }),
    Bench::new("loopback_echo", 1, |c| {
        if let Some(lb) = c.loopback.as_mut() {
            let _ = lb.submit(&LoopbackRequest {
                id: 1,
                op: LOOPBACK_OP_ECHO,
                value: 5,
                ..Default::default()
            });
            lb.wait_response();
        }
    })
    .loopback(),
    Bench::new("event_rtt_doorbell", 1, |c| {
        event_round_trip(c, Notify::Doorbell)
    })
    .explicit()
    .loopback(),
    Bench::new("event_rtt_hypercall", 1, |c| {
        event_round_trip(c, Notify::Hypercall)
    })
    .explicit()
    .loopback(),
    Bench::new("console_ring_1k", 1, |_| console_kib(ConsoleWay::Ring)).explicit(),
    Bench::new("console_io_1k", 1, |_| console_kib(ConsoleWay::ConsoleIo)).explicit(),
    Bench::new("console_trap_1k", 1, |_| {
        console_kib(ConsoleWay::TrapPerByte)
    })
    .explicit(),
];

/// Reads an MSR.
///
/// # Safety
///
/// The MSR must exist (else #GP) and reading it must have no side effects the guest cares about.
unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller's contract; the guest kernel runs at (virtual) CPL0.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
///
/// The MSR must exist and the write must be one the guest means.
unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller's contract; the guest kernel runs at (virtual) CPL0.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags));
    }
}

/// Reads a 32-bit I/O port.
///
/// # Safety
///
/// Reading the port must have no side effects the guest cares about.
unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("in eax, dx", in("dx") port, out("eax") value,
            options(nomem, nostack, preserves_flags));
    }
    value
}

/// Writes a 32-bit I/O port.
///
/// # Safety
///
/// The write must be one the guest means.
unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value,
            options(nomem, nostack, preserves_flags));
    }
}

/// The architectural interrupt-flag instructions, which pv-ops replace: on kvm_pvm each traps
/// into KVM (and neither gates delivery, docs/abi.md §5); on VT-x/AMD-V they run natively.
fn cli_sti() {
    // SAFETY: the guest kernel runs at (virtual) CPL0; `main` runs with interrupts enabled, so
    // CLI then STI leaves them as they were.
    unsafe { core::arch::asm!("cli", "sti", options(nomem, nostack)) };
}

/// Pushes `n` loopback `ECHO` requests, publishes them with one notification at most (only if
/// the backend asked for one: notification suppression), and spins until all `n` responses are
/// back. Responses are polled, so the backend is never asked to notify the guest.
fn ring_echo(c: &mut Ctx, n: usize) {
    let Some(lb) = c.loopback.as_mut() else {
        return;
    };
    for i in 0..n {
        let request = LoopbackRequest {
            id: i as u64,
            op: LOOPBACK_OP_ECHO,
            value: 9,
            ..Default::default()
        };
        if lb.ring().push_request(&request).is_err() {
            return;
        }
    }
    lb.commit();
    let mut got = 0;
    while got < n {
        if lb.poll_response().is_some() {
            got += 1;
        } else {
            core::hint::spin_loop();
        }
    }
}

/// How `event_round_trip` notifies the backend.
#[derive(Clone, Copy)]
enum Notify {
    /// Stub 127: `out 0xec` matched by the backend's ioeventfd, no exit.
    Doorbell,
    /// `EVTCHNOP_send`: a hypercall the VMM forwards to the backend's eventfd.
    Hypercall,
}

/// One loopback ECHO: push, notify, spin until the response is back.
fn event_round_trip(c: &mut Ctx, how: Notify) {
    let Some(lb) = c.loopback.as_mut() else {
        return;
    };
    let request = LoopbackRequest {
        id: 7,
        op: LOOPBACK_OP_ECHO,
        value: 9,
        ..Default::default()
    };
    if lb.ring().push_request(&request).is_err() {
        return;
    }
    // Notify every time, whatever the suppression says: the round trip includes one notification.
    let _ = lb.ring().commit_requests();
    match how {
        Notify::Doorbell => event_channel::notify(lb.port()),
        Notify::Hypercall => {
            let _ = event_channel::send(lb.port());
        }
    }
    while lb.poll_response().is_none() {
        core::hint::spin_loop();
    }
}

/// How `console_kib` writes.
#[derive(Clone, Copy)]
enum ConsoleWay {
    Ring,
    ConsoleIo,
    TrapPerByte,
}

/// Writes 1 KiB of console output as sixteen 64-byte lines.
fn console_kib(way: ConsoleWay) {
    let mut line = [b'.'; 64];
    line[63] = b'\n';
    for _ in 0..16 {
        match way {
            ConsoleWay::Ring => guest_sdk::console::write_bytes(&line),
            ConsoleWay::ConsoleIo => {
                let _ = hypercall::console_write(&line);
            }
            ConsoleWay::TrapPerByte => {
                for &byte in &line {
                    // SAFETY: `out` to the VMM's debug console port (docs/abi.md §9.3) only
                    // prints the byte. Guests normally never trap like this: it is the
                    // trap-and-emulate baseline the console ring is measured against.
                    unsafe {
                        core::arch::asm!("out dx, al", in("dx") DEBUG_CONSOLE_PORT, in("al") byte,
                            options(nomem, nostack, preserves_flags));
                    }
                }
            }
        }
    }
}

/// `xen_version(XENVER_version)`: the smallest complete round trip to the VMM.
fn null_hypercall() {
    let v = hypercall::xen_version();
    debug_assert!(v.is_ok());
}

fn multicall_null() {
    let mut batch = [MulticallEntry {
        op: Hypercall::XEN_VERSION.0.into(),
        result: 0,
        args: [XENVER_VERSION, 0, 0, 0, 0, 0],
    }; MULTICALL_BATCH];
    // SAFETY: every entry is xen_version(XENVER_version), which touches no guest memory.
    let r = unsafe { hypercall::multicall(&mut batch) };
    debug_assert!(r.is_ok());
}

/// Allocates the ports, grants and (if present) the loopback device the benchmarks use, binds
/// `VIRQ_TIMER` and programs the local APIC timer's vector and divider.
fn setup() -> Option<Ctx> {
    let unbound = event_channel::alloc_unbound(DOMID_SELF).ok()?;
    let rx = event_channel::alloc_unbound(DOMID_SELF).ok()?;
    let loop_tx = event_channel::bind_interdomain(DOMID_SELF, rx).ok()?;
    event_channel::set_handler(rx, on_loop);
    let timer_port = event_channel::bind_virq(virq::TIMER).ok()?;
    event_channel::set_handler(timer_port, on_timer_virq);
    idt::set_interrupt_handler(LAPIC_TIMER_VECTOR, on_lapic_timer).ok()?;
    // SAFETY: x2APIC timer registers (the VMM put the local APIC in x2APIC mode): divide by 1,
    // one-shot mode on `LAPIC_TIMER_VECTOR`, whose handler is installed. The count stays 0
    // (stopped) until a benchmark writes it.
    unsafe {
        wrmsr(X2APIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
        wrmsr(X2APIC_LVT_TIMER, u64::from(LAPIC_TIMER_VECTOR));
    }
    let src = PageBox::new();
    let gref = grant_table::grant_access(src.frame(), DOMID_BACKEND, true).ok()?;
    // The granted page lives as long as the guest.
    core::mem::forget(src);
    let kvm_msr = match start_info::platform() {
        Platform::KvmPvm => MSR_PVM_TSC_KHZ,
        Platform::KvmHardware => MSR_KVM_SYSTEM_TIME_NEW,
    };
    Some(Ctx {
        unbound,
        loop_tx,
        gref,
        dst: PageBox::new(),
        loopback: Loopback::connect().ok(),
        kvm_msr,
    })
}

fn main() -> u32 {
    let cmdline = start_info::cmdline();
    let mut iters = 2000usize;
    let mut wanted = Vec::new();
    for word in cmdline.split_whitespace() {
        match word.strip_prefix("iters=").map(str::parse) {
            Some(Ok(n)) if n > 0 => iters = n,
            Some(_) => {
                guest_sdk::println!("bench: bad {word}");
                return 2;
            }
            None => wanted.push(word),
        }
    }
    let Some(mut ctx) = setup() else {
        guest_sdk::println!("bench: could not set up event channels, timers and grants");
        return 3;
    };
    guest_sdk::println!(
        "{}",
        bench_protocol::info(
            bench_protocol::BENCH_INFO,
            &[
                ("platform", &start_info::platform().name()),
                ("transport", &start_info::transport().name()),
                ("tsc_khz", &tsc_khz()),
                ("kvm_msr", &format_args!("{:#x}", ctx.kvm_msr)),
            ]
        )
    );
    let warmup = iters.min(50);
    let mut samples = Vec::with_capacity(iters);
    for bench in BENCHES {
        let named = wanted.contains(&bench.name);
        if !named && (bench.explicit || !wanted.is_empty()) {
            continue;
        }
        if bench.loopback && ctx.loopback.is_none() {
            guest_sdk::println!(
                "{}",
                bench_protocol::skipped(bench_protocol::BENCH, bench.name, "run with --loopback")
            );
            continue;
        }
        // Warm up caches and the VMM's first-call paths.
        for _ in 0..warmup {
            (bench.run)(&mut ctx);
        }
        samples.clear();
        for _ in 0..iters {
            let start = rdtsc();
            (bench.run)(&mut ctx);
            samples.push(rdtsc() - start);
        }
        if let Some(after) = bench.after {
            after(&mut ctx);
        }
        samples.sort_unstable();
        let per_op = |c: u64| c / bench.batch;
        let result = bench_protocol::BenchResult {
            name: bench.name.into(),
            iters: iters as u64,
            batch: bench.batch,
            median: per_op(samples[iters / 2]),
            p99: per_op(samples[(iters * 99 / 100).min(iters - 1)]),
            min: per_op(samples[0]),
            total: samples.iter().sum::<u64>(),
            tsc_khz: tsc_khz(),
            warmup: warmup as u64,
            exits_per_op: None,
            kvm_exits_per_op: None,
        };
        guest_sdk::println!("{result}");
    }
    0
}
