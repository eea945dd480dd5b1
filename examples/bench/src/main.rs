//! Measures paravirtual operations from inside the guest with the TSC.
//!
//! Each benchmark prints one line:
//! `bench <name> iters=<n> batch=<k> median=<cycles> p99=<cycles> min=<cycles> tsc_khz=<khz>`,
//! where the cycle figures are per operation (a sample times `batch` operations).
//! The command line may name the benchmarks to run (default: all) and `iters=N`.
//!
//! The PV-core benchmarks: `evtchn_send_dropped` is `EVTCHNOP_send` on an unbound port (a
//! hypercall, no event); `evtchn_send_upcall` and `evtchn_notify_upcall` send on one end of a
//! loop of two ports and include the upcall that runs the other end's handler (so the upcall
//! costs about their difference from `evtchn_send_dropped`); `grant_copy_4k` copies a granted
//! page with `GNTTABOP_copy`; `sleep_100us` is a timer sleep of 100 µs; `loopback_echo` is one
//! request/response round trip through the loopback device (needs `parapet run --loopback`;
//! skipped otherwise).
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
        name: "null_hypercall",
        batch: 1,
        run: |_| null_hypercall(),
    },
    Bench {
        name: "multicall_null",
        batch: MULTICALL_BATCH as u64,
        run: |_| multicall_null(),
    },
    Bench {
        name: "tsc_read",
        batch: 1,
        run: |_| {
            rdtsc();
        },
    },
    Bench {
        name: "evtchn_send_dropped",
        batch: 1,
        run: |c| {
            let _ = evtchn::send(c.unbound);
        },
    },
    Bench {
        name: "evtchn_send_upcall",
        batch: 1,
        run: |c| {
            let n = LOOP_HITS.load(Ordering::SeqCst);
            let _ = evtchn::send(c.loop_tx);
            spin_hits(n + 1);
        },
    },
    Bench {
        name: "evtchn_notify_upcall",
        batch: 1,
        run: |c| {
            let n = LOOP_HITS.load(Ordering::SeqCst);
            evtchn::notify(c.loop_tx);
            spin_hits(n + 1);
        },
    },
    Bench {
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
        name: "sleep_100us",
        batch: 1,
        run: |_| time::sleep(Duration::from_micros(100)),
    },
    Bench {
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
];

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
        if !wanted.is_empty() && !wanted.contains(&bench.name) {
            continue;
        }
        if bench.name == "loopback_echo" && ctx.loopback.is_none() {
            guest_sdk::println!("bench loopback_echo skipped: run with --loopback");
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
            "bench {} iters={} batch={} median={} p99={} min={} tsc_khz={}",
            bench.name,
            iters,
            bench.batch,
            per_op(samples[iters / 2]),
            per_op(samples[(iters * 99 / 100).min(iters - 1)]),
            per_op(samples[0]),
            tsc_khz()
        );
    }
    0
}
