//! Measures paravirtual operations from inside the guest with the TSC.
//!
//! Each benchmark prints one line:
//! `bench <name> iters=<n> batch=<k> median=<cycles> p99=<cycles> min=<cycles> total=<cycles>
//! tsc_khz=<khz>`, where median, p99 and min are per operation (a sample times `batch`
//! operations) and total is all samples together.
//! The command line may name the benchmarks to run (default: all) and `iters=N`.
//!
//! The PV-core benchmarks: `evtchn_send_dropped` is `EVTCHNOP_send` on an unbound port (a
//! hypercall, no event); `evtchn_send_upcall` and `evtchn_notify_upcall` send on one end of a
//! loop of two ports and include the upcall that runs the other end's handler (so the upcall
//! costs about their difference from `evtchn_send_dropped`); `grant_copy_4k` copies a granted
//! page with `GNTTABOP_copy`; `sleep_100us` is a timer sleep of 100 µs; `loopback_echo` is one
//! request/response round trip through the loopback device (needs `parapet run --loopback`;
//! skipped otherwise).
//!
//! Run only when named (they are slow or noisy on purpose): `event_rtt_doorbell` and
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
use guest_sdk::abi::event_channel::{DOMID_BACKEND, DOMID_SELF};
use guest_sdk::abi::grant_table::GrantRef;
use guest_sdk::abi::hypercall::Hypercall;
use guest_sdk::abi::loopback::{LOOPBACK_OP_ECHO, LoopbackRequest};
use guest_sdk::abi::multicall::MulticallEntry;
use guest_sdk::abi::version::XENVER_VERSION;
use guest_sdk::evtchn::{self, Port};
use guest_sdk::grant;
use guest_sdk::hypercall;
use guest_sdk::loopback::Loopback;
use guest_sdk::page::PageBox;
use guest_sdk::time::{self, rdtsc, tsc_khz};

guest_sdk::entry!(main);

/// One benchmark: a name, how many operations one sample covers, and the operation.
struct Bench {
    name: &'static str,
    batch: u64,
    run: fn(&mut Ctx),
    /// Run only when named on the command line.
    explicit: bool,
}

impl Bench {
    const fn new(name: &'static str, batch: u64, run: fn(&mut Ctx)) -> Bench {
        Bench {
            name,
            batch,
            run,
            explicit: false,
        }
    }

    const fn explicit(name: &'static str, batch: u64, run: fn(&mut Ctx)) -> Bench {
        Bench {
            explicit: true,
            ..Bench::new(name, batch, run)
        }
    }
}

/// State the PV-core benchmarks share.
struct Ctx {
    /// An unbound port (sends are dropped).
    unbound: Port,
    /// The sending end of a loop whose other end counts upcalls in `LOOP_HITS`.
    loop_tx: Port,
    /// A granted page and a local page.
    gref: GrantRef,
    dst: PageBox,
    loopback: Option<Loopback>,
}

static LOOP_HITS: AtomicU64 = AtomicU64::new(0);

fn on_loop(_: Port) {
    LOOP_HITS.fetch_add(1, Ordering::SeqCst);
}

/// Waits until the loop handler has run `n` times.
fn spin_hits(n: u64) {
    while LOOP_HITS.load(Ordering::SeqCst) < n {
        core::hint::spin_loop();
    }
}

const MULTICALL_BATCH: usize = 32;

const BENCHES: &[Bench] = &[
    Bench {
        explicit: false,
        name: "null_hypercall",
        batch: 1,
        run: |_| null_hypercall(),
    },
    Bench {
        explicit: false,
        name: "multicall_null",
        batch: MULTICALL_BATCH as u64,
        run: |_| multicall_null(),
    },
    Bench {
        explicit: false,
        name: "tsc_read",
        batch: 1,
        run: |_| {
            rdtsc();
        },
    },
    Bench {
        explicit: false,
        name: "evtchn_send_dropped",
        batch: 1,
        run: |c| {
            let _ = evtchn::send(c.unbound);
        },
    },
    Bench {
        explicit: false,
        name: "evtchn_send_upcall",
        batch: 1,
        run: |c| {
            let n = LOOP_HITS.load(Ordering::SeqCst);
            let _ = evtchn::send(c.loop_tx);
            spin_hits(n + 1);
        },
    },
    Bench {
        explicit: false,
        name: "evtchn_notify_upcall",
        batch: 1,
        run: |c| {
            let n = LOOP_HITS.load(Ordering::SeqCst);
            evtchn::notify(c.loop_tx);
            spin_hits(n + 1);
        },
    },
    Bench {
        explicit: false,
        name: "grant_copy_4k",
        batch: 1,
        run: |c| {
            let mut op = [grant::copy_op(
                grant::copy_gref(c.gref, 0),
                true,
                grant::copy_frame(c.dst.frame(), 0),
                false,
                4096,
            )];
            // SAFETY: the destination is `c.dst`, a page the benchmark owns.
            let r = unsafe { grant::grant_copy(&mut op) };
            debug_assert!(r.is_ok() && op[0].status == 0);
        },
    },
    Bench {
        explicit: false,
        name: "sleep_100us",
        batch: 1,
        run: |_| time::sleep(Duration::from_micros(100)),
    },
    Bench {
        explicit: false,
        name: "loopback_echo",
        batch: 1,
        run: |c| {
            if let Some(lb) = c.loopback.as_mut() {
                let _ = lb.submit(&LoopbackRequest {
                    id: 1,
                    op: LOOPBACK_OP_ECHO,
                    value: 5,
                    ..Default::default()
                });
                lb.wait_response();
            }
        },
    },
    Bench::explicit("event_rtt_doorbell", 1, |c| {
        event_round_trip(c, Notify::Doorbell)
    }),
    Bench::explicit("event_rtt_hypercall", 1, |c| {
        event_round_trip(c, Notify::Hypercall)
    }),
    Bench::explicit("console_ring_1k", 1, |_| console_kib(ConsoleWay::Ring)),
    Bench::explicit("console_io_1k", 1, |_| console_kib(ConsoleWay::ConsoleIo)),
    Bench::explicit("console_trap_1k", 1, |_| {
        console_kib(ConsoleWay::TrapPerByte)
    }),
];

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
        Notify::Doorbell => evtchn::notify(lb.port()),
        Notify::Hypercall => {
            let _ = evtchn::send(lb.port());
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
                        core::arch::asm!("out 0xe9, al", in("al") byte, options(nomem, nostack, preserves_flags));
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

/// Allocates the ports, grants and (if present) the loopback device the benchmarks use.
fn setup() -> Option<Ctx> {
    let unbound = evtchn::alloc_unbound(DOMID_SELF).ok()?;
    let rx = evtchn::alloc_unbound(DOMID_SELF).ok()?;
    let loop_tx = evtchn::bind_interdomain(DOMID_SELF, rx).ok()?;
    evtchn::set_handler(rx, on_loop);
    let src = PageBox::new();
    let gref = grant::grant_access(src.frame(), DOMID_BACKEND, true).ok()?;
    // The granted page lives as long as the guest.
    core::mem::forget(src);
    Some(Ctx {
        unbound,
        loop_tx,
        gref,
        dst: PageBox::new(),
        loopback: Loopback::connect().ok(),
    })
}

fn main() -> u32 {
    let cmdline = guest_sdk::start_info::cmdline();
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
        guest_sdk::println!("bench: could not set up event channels and grants");
        return 3;
    };
    let mut samples = Vec::with_capacity(iters);
    for bench in BENCHES {
        let named = wanted.contains(&bench.name);
        if !named && (bench.explicit || !wanted.is_empty()) {
            continue;
        }
        let needs_loopback = bench.name.contains("loopback") || bench.name.starts_with("event_rtt");
        if needs_loopback && ctx.loopback.is_none() {
            guest_sdk::println!("bench {} skipped: run with --loopback", bench.name);
            continue;
        }
        // Warm up caches and the VMM's first-call paths.
        for _ in 0..iters.min(50) {
            (bench.run)(&mut ctx);
        }
        samples.clear();
        for _ in 0..iters {
            let start = rdtsc();
            (bench.run)(&mut ctx);
            samples.push(rdtsc() - start);
        }
        samples.sort_unstable();
        let per_op = |c: u64| c / bench.batch;
        guest_sdk::println!(
            "bench {} iters={} batch={} median={} p99={} min={} total={} tsc_khz={}",
            bench.name,
            iters,
            bench.batch,
            per_op(samples[iters / 2]),
            per_op(samples[(iters * 99 / 100).min(iters - 1)]),
            per_op(samples[0]),
            samples.iter().sum::<u64>(),
            tsc_khz()
        );
    }
    0
}
