//! Measures paravirtual operations from inside the guest with the TSC.
//!
//! Each benchmark prints one line:
//! `bench <name> iters=<n> batch=<k> median=<cycles> p99=<cycles> min=<cycles> tsc_khz=<khz>`,
//! where the cycle figures are per operation (a sample times `batch` operations).
//! The command line may name the benchmarks to run (default: all) and `iters=N`.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use guest_sdk::abi::hypercall::Hypercall;
use guest_sdk::abi::multicall::MulticallEntry;
use guest_sdk::abi::version::XENVER_VERSION;
use guest_sdk::hypercall;
use guest_sdk::time::{rdtsc, tsc_khz};

guest_sdk::entry!(main);

/// One benchmark: a name, how many operations one sample covers, and the operation.
struct Bench {
    name: &'static str,
    batch: u64,
    run: fn(),
}

const MULTICALL_BATCH: usize = 32;

const BENCHES: &[Bench] = &[
    Bench {
        name: "null_hypercall",
        batch: 1,
        run: null_hypercall,
    },
    Bench {
        name: "multicall_null",
        batch: MULTICALL_BATCH as u64,
        run: multicall_null,
    },
    Bench {
        name: "tsc_read",
        batch: 1,
        run: || {
            rdtsc();
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
    let mut samples = Vec::with_capacity(iters);
    for bench in BENCHES {
        if !wanted.is_empty() && !wanted.contains(&bench.name) {
            continue;
        }
        // Warm up caches and the VMM's first-call paths.
        for _ in 0..iters.min(50) {
            (bench.run)();
        }
        samples.clear();
        for _ in 0..iters {
            let start = rdtsc();
            (bench.run)();
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
