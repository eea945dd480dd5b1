//! Measures the PV block device (docs/abi.md §10.2) from inside the guest, with the TSC:
//! 4 KiB random reads and writes at queue depth 1 and 32, and 1 MiB sequential reads and writes,
//! on the first `--disk`. `cargo xtask bench blk` runs it next to the same I/O done by the host
//! on the same image file (docs/benchmarks.md, "PV block").
//!
//! ```text
//! parapet run --stats --disk IMAGE blk-bench --cmdline "randread_qd32 ms=2000 seed=1"
//! ```
//!
//! # Tests
//!
//! | name | requests | in flight |
//! |---|---|---|
//! | `randread_qd1`, `randwrite_qd1` | 4 KiB (8 sectors) at a random 4 KiB-aligned offset | 1 |
//! | `randread_qd32`, `randwrite_qd32` | the same | 32 (the ring's size) |
//! | `seqread`, `seqwrite` | 1 MiB operations, one after the other through the disk (wrapping): one indirect request each where the backend takes them (Parapet's does), else 23 × 44 KiB + 12 KiB (11-page direct requests) | `seq_qd`: 4 MiB's worth (4 indirect requests, or 32 direct ones) |
//! | `none` | nothing: connect the disk, print the header, power off (the baseline for exit counts) | |
//!
//! Requests go through the SDK's `BlockDevice` submit/wait API: the guest keeps `qd` requests
//! in flight, publishing each refill as one batch (`plug`/`unplug`: at most one doorbell, and
//! none while the backend is awake), takes every completion that is ready, and when none is
//! blocks in `BlockDevice::wait` (`SCHEDOP_block` until the backend's event), unless `spin=US`
//! asks it to poll the ring for up to `US` µs first. Reads leave the data in the granted pages
//! (the backend has copied it into guest memory; it is not copied again); writes copy 4 KiB or
//! 1 MiB of a fixed pattern into the request's pages.
//!
//! The random offsets are block `splitmix64(seed, i) % blocks` (4 KiB blocks, `i` = 0, 1, … over
//! the warm-up and then the measured requests), the sequence `cargo xtask bench blk`'s host
//! side replays: `splitmix64(seed, i)` is the `i`th output (from 0) of SplitMix64 seeded with
//! `seed` (`bench_protocol::splitmix64`, which both sides use). Sequential tests start at
//! offset 0.
//!
//! # Command line
//!
//! Test names (in the order given), and:
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `ops=N` | measured operations (4 KiB requests; 1 MiB for the sequential tests) at most | 100000 (random), 1000 (sequential) |
//! | `ms=T` | stop issuing after `T` ms of measuring (0: no limit); requests in flight complete | 1000 |
//! | `warmup=N` | unmeasured operations first (completed before measuring starts) | 64 (random), 2 (sequential) |
//! | `seed=S` | the random offsets' seed | 1 |
//! | `spin=US` | poll for a completion up to `US` µs before blocking | 0 |
//! | `seq_qd=N` | requests in flight in the sequential tests (1–32) | 4 MiB's worth |
//!
//! # Output
//!
//! The lines are `bench-protocol`'s (`cargo xtask bench blk` reads them with the same crate):
//!
//! ```text
//! blk-bench-info sectors=<n> tsc_khz=<khz> read_only=<0|1> spin_us=<us>
//! blk-bench <name> requests=<r> bytes=<b> cycles=<c> tsc_khz=<khz> qd=<q> warmup_requests=<w> lat_median=<c> lat_p99=<c> lat_min=<c> notifies=<n> waits=<w> submit_cycles=<c> wait_cycles=<c> complete_cycles=<c>
//! blk-bench <name> skipped: <why>
//! blk-bench <name> failed: <why>
//! ```
//!
//! `requests` and `bytes` are the measured requests and their data; `cycles` is the TSC time
//! from the first measured submission to the last completion (throughput = bytes / time);
//! `lat_*` are per request, submission to completion, in TSC cycles; `notifies` (doorbells) and
//! `waits` (times the guest blocked) cover the whole test, warm-up included, as do the VMM's exit
//! counters — a run performs `requests + warmup_requests` requests in all. `submit_cycles`,
//! `wait_cycles` and `complete_cycles` split the measured time: submitting (allocating and
//! granting data pages, copying write data, publishing, the doorbell), blocked in
//! `BlockDevice::wait` (or polling, with `spin=`), and taking completions (reading the ring,
//! revoking grants, freeing pages); what is left is the loop itself.
//!
//! Exit status: 0; 1 no block device; 2 bad command line; 3 a request failed.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

use bench_protocol::{BLK, BLK_INFO, BlkResult, splitmix64};
use guest_sdk::block::{BlockDevice, BlockError, Completion, RequestId};
use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::time::{rdtsc, tsc_khz};

guest_sdk::entry!(main);

const SECTOR: u64 = 512;
/// Sectors per 4 KiB block.
const BLOCK_SECTORS: u64 = 8;
/// Sectors per 1 MiB operation.
const MIB_SECTORS: u64 = 2048;
/// Bytes the sequential tests keep in flight by default.
const SEQ_IN_FLIGHT: u64 = 4 << 20;
/// The ring's slots: the most requests in flight.
const RING_SLOTS: u64 = 32;
/// Latency samples kept per test (later requests are still counted, not sampled).
const MAX_SAMPLES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    /// 4 KiB at random 4 KiB-aligned offsets.
    Random,
    /// 1 MiB operations through the disk.
    Sequential,
}

#[derive(Debug)]
struct Test {
    name: &'static str,
    write: bool,
    pattern: Pattern,
    /// Requests in flight (random tests; the sequential ones use `seq_qd`).
    qd: usize,
}

const TESTS: &[Test] = &[
    Test::new("randread_qd1", false, Pattern::Random, 1),
    Test::new("randread_qd32", false, Pattern::Random, 32),
    Test::new("randwrite_qd1", true, Pattern::Random, 1),
    Test::new("randwrite_qd32", true, Pattern::Random, 32),
    Test::new("seqread", false, Pattern::Sequential, 0),
    Test::new("seqwrite", true, Pattern::Sequential, 0),
];

impl Test {
    const fn new(name: &'static str, write: bool, pattern: Pattern, qd: usize) -> Test {
        Test {
            name,
            write,
            pattern,
            qd,
        }
    }
}

/// The command line's settings.
#[derive(Clone, Copy, Debug)]
struct Settings {
    ops: Option<u64>,
    ms: u64,
    warmup: Option<u64>,
    seed: u64,
    spin_cycles: u64,
    seq_qd: Option<u64>,
}

/// What one phase (warm-up or measurement) did.
#[derive(Debug, Default)]
struct Phase {
    requests: u64,
    bytes: u64,
    cycles: u64,
    latencies: Vec<u64>,
    /// TSC cycles spent submitting (building, granting, publishing requests), blocked waiting
    /// for a completion, and taking completions (polling the ring, revoking grants, freeing
    /// pages).
    submit_cycles: u64,
    wait_cycles: u64,
    complete_cycles: u64,
}

/// A test running on the disk.
struct Run<'a> {
    dev: &'a mut BlockDevice,
    test: &'a Test,
    seed: u64,
    /// 4 KiB blocks (random) or whole MiB (sequential) on the disk.
    units: u64,
    data: &'a [u8],
    spin_cycles: u64,
    /// Sectors per request of the sequential tests (1 MiB, or the device's largest request).
    seq_sectors: u64,
    /// Requests in flight.
    qd: usize,
}

impl Run<'_> {
    /// Request `i` of the test: `(sector, sectors)`.
    fn request(&self, i: u64) -> (u64, u64) {
        match self.test.pattern {
            Pattern::Random => (
                splitmix64(self.seed, i) % self.units * BLOCK_SECTORS,
                BLOCK_SECTORS,
            ),
            Pattern::Sequential => {
                let per_mib = MIB_SECTORS.div_ceil(self.seq_sectors);
                let (mib, part) = (i / per_mib, i % per_mib);
                let at = part * self.seq_sectors;
                (
                    mib % self.units * MIB_SECTORS + at,
                    (MIB_SECTORS - at).min(self.seq_sectors),
                )
            }
        }
    }

    fn submit(&mut self, i: u64) -> Result<(RequestId, u64), BlockError> {
        let (sector, count) = self.request(i);
        let id = if self.test.write {
            self.dev
                .submit_write(sector, &self.data[..(count * SECTOR) as usize])?
        } else {
            self.dev.submit_read(sector, count)?
        };
        Ok((id, count * SECTOR))
    }

    /// The next completion: a ready one, else one polled for up to `spin_cycles`, else
    /// blocking (the time spent blocked is added to `wait_cycles`).
    fn next_completion(&mut self, wait_cycles: &mut u64) -> Result<Completion, BlockError> {
        if let Some(c) = self.dev.poll() {
            return Ok(c);
        }
        let start = rdtsc();
        if self.spin_cycles > 0 {
            while rdtsc().wrapping_sub(start) < self.spin_cycles {
                if let Some(c) = self.dev.poll() {
                    *wait_cycles += rdtsc().wrapping_sub(start);
                    return Ok(c);
                }
                core::hint::spin_loop();
            }
        }
        let c = self.dev.wait();
        *wait_cycles += rdtsc().wrapping_sub(start);
        c
    }

    /// Runs requests `first..first + max` with `qd` in flight, stopping early (after the
    /// requests in flight) once `limit_cycles` have passed.
    fn phase(
        &mut self,
        first: u64,
        max: u64,
        limit_cycles: Option<u64>,
    ) -> Result<Phase, BlockError> {
        let mut phase = Phase::default();
        // (request, submitted at, bytes)
        let mut in_flight: Vec<(RequestId, u64, u64)> = Vec::with_capacity(self.qd);
        let (mut next, end) = (first, first + max);
        let start = rdtsc();
        loop {
            let expired = limit_cycles.is_some_and(|l| rdtsc().wrapping_sub(start) >= l);
            if !expired && next < end && in_flight.len() < self.qd {
                let t = rdtsc();
                self.dev.plug();
                while next < end && in_flight.len() < self.qd {
                    let (id, bytes) = match self.submit(next) {
                        Ok(r) => r,
                        Err(e) => {
                            self.dev.unplug();
                            return Err(e);
                        }
                    };
                    in_flight.push((id, rdtsc(), bytes));
                    next += 1;
                }
                self.dev.unplug();
                phase.submit_cycles += rdtsc().wrapping_sub(t);
            }
            if in_flight.is_empty() {
                break;
            }
            let t = rdtsc();
            let mut done = Some(self.next_completion(&mut phase.wait_cycles)?);
            while let Some(c) = done {
                let now = rdtsc();
                c.result()?;
                let at = in_flight
                    .iter()
                    .position(|(id, _, _)| *id == c.id)
                    .ok_or(BlockError::UnknownRequest)?;
                let (_, submitted, bytes) = in_flight.swap_remove(at);
                phase.requests += 1;
                phase.bytes += bytes;
                if phase.latencies.len() < MAX_SAMPLES {
                    phase.latencies.push(now.wrapping_sub(submitted));
                }
                drop(c);
                done = self.dev.poll();
            }
            phase.complete_cycles += rdtsc().wrapping_sub(t);
        }
        phase.complete_cycles -= phase.wait_cycles;
        phase.cycles = rdtsc().wrapping_sub(start);
        Ok(phase)
    }
}

fn number(line: &str, key: &str) -> Result<Option<u64>, ()> {
    find_param(line, key)
        .map(|v| v.parse::<u64>().map_err(|_| ()))
        .transpose()
}

fn settings(line: &str) -> Result<Settings, &'static str> {
    let khz = tsc_khz();
    Ok(Settings {
        ops: number(line, "ops").map_err(|_| "ops= is not a number")?,
        ms: number(line, "ms")
            .map_err(|_| "ms= is not a number")?
            .unwrap_or(1000),
        warmup: number(line, "warmup").map_err(|_| "warmup= is not a number")?,
        seed: number(line, "seed")
            .map_err(|_| "seed= is not a number")?
            .unwrap_or(1),
        spin_cycles: number(line, "spin")
            .map_err(|_| "spin= is not a number")?
            .unwrap_or(0)
            .saturating_mul(khz)
            / 1000,
        seq_qd: match number(line, "seq_qd") {
            Ok(Some(n)) if (1..=RING_SLOTS).contains(&n) => Some(n),
            Ok(None) => None,
            _ => return Err("seq_qd= is not a number from 1 to 32"),
        },
    })
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Runs one test and prints its line; `Err` if a request failed.
fn run_test(dev: &mut BlockDevice, test: &Test, s: &Settings, data: &[u8]) -> Result<(), ()> {
    let (units, unit_name) = match test.pattern {
        Pattern::Random => (dev.sectors() / BLOCK_SECTORS, "4 KiB"),
        Pattern::Sequential => (dev.sectors() / MIB_SECTORS, "1 MiB"),
    };
    if units == 0 {
        println!(
            "{}",
            bench_protocol::skipped(
                BLK,
                test.name,
                format_args!("the disk is smaller than {unit_name}")
            )
        );
        return Ok(());
    }
    if test.write && dev.read_only() {
        println!(
            "{}",
            bench_protocol::skipped(BLK, test.name, "read-only disk")
        );
        return Ok(());
    }
    let seq_sectors = dev.max_request_sectors().min(MIB_SECTORS);
    let per_op = match test.pattern {
        Pattern::Random => 1,
        Pattern::Sequential => MIB_SECTORS.div_ceil(seq_sectors),
    };
    let qd = match test.pattern {
        Pattern::Random => test.qd,
        Pattern::Sequential => s
            .seq_qd
            .unwrap_or((SEQ_IN_FLIGHT / (seq_sectors * SECTOR)).clamp(1, RING_SLOTS))
            as usize,
    };
    let (default_ops, default_warmup) = match test.pattern {
        Pattern::Random => (100_000, 64),
        Pattern::Sequential => (1000, 2),
    };
    let ops = s.ops.unwrap_or(default_ops).max(1);
    let warmup_ops = s.warmup.unwrap_or(default_warmup);
    let limit = (s.ms > 0).then(|| s.ms.saturating_mul(tsc_khz()));
    let (notifies, waits) = (dev.notifies(), dev.waits());
    let mut run = Run {
        dev,
        test,
        seed: s.seed,
        units,
        data,
        spin_cycles: s.spin_cycles,
        seq_sectors,
        qd,
    };
    let result = run
        .phase(0, warmup_ops * per_op, None)
        .and_then(|w| Ok((w.requests, run.phase(w.requests, ops * per_op, limit)?)));
    let (warmup, mut phase) = match result {
        Ok(r) => r,
        Err(e) => {
            println!("{}", bench_protocol::failed(BLK, test.name, e));
            return Err(());
        }
    };
    phase.latencies.sort_unstable();
    let lat = &phase.latencies;
    let result = BlkResult {
        name: test.name.into(),
        requests: phase.requests,
        bytes: phase.bytes,
        cycles: phase.cycles.max(1),
        tsc_khz: tsc_khz(),
        qd: qd as u64,
        warmup_requests: warmup,
        lat: [
            percentile(lat, 50),
            percentile(lat, 99),
            lat.first().copied().unwrap_or(0),
        ],
        notifies: run.dev.notifies() - notifies,
        waits: run.dev.waits() - waits,
        split: Some([
            phase.submit_cycles,
            phase.wait_cycles,
            phase.complete_cycles,
        ]),
    };
    println!("{result}");
    Ok(())
}

fn main() -> u32 {
    let line = cmdline();
    let s = match settings(line) {
        Ok(s) => s,
        Err(why) => {
            println!("blk-bench: {why}");
            return 2;
        }
    };
    let mut names = Vec::new();
    for word in line.split_ascii_whitespace().filter(|w| !w.contains('=')) {
        if word == "none" {
            continue;
        }
        match TESTS.iter().find(|t| t.name == word) {
            Some(t) => names.push(t),
            None => {
                println!("blk-bench: unknown test `{word}`");
                return 2;
            }
        }
    }
    let mut dev = match BlockDevice::open(0) {
        Ok(d) => d,
        Err(e) => {
            println!("blk-bench: {e}");
            return 1;
        }
    };
    println!(
        "{}",
        bench_protocol::info(
            BLK_INFO,
            &[
                ("sectors", &dev.sectors()),
                ("tsc_khz", &tsc_khz()),
                ("read_only", &u8::from(dev.read_only())),
                ("spin_us", &(s.spin_cycles * 1000 / tsc_khz().max(1))),
            ]
        )
    );
    // The write pattern: every byte differs from its neighbours, nothing is zero.
    let data: Vec<u8> = (0..MIB_SECTORS * SECTOR)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    let mut status = 0;
    for test in names {
        if run_test(&mut dev, test, &s, &data).is_err() {
            status = 3;
        }
    }
    // Hand the grants back before powering off.
    if let Err(e) = dev.disconnect() {
        println!("blk-bench: disconnect: {e}");
    }
    status
}
