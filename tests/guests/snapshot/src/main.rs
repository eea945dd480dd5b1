//! A guest for snapshots (docs/abi.md §2.4, §3.6): it does some initialisation work, suspends
//! itself (`guest_sdk::snapshot::suspend`, Xen's `SHUTDOWN_suspend`), and reports in each
//! restore what it finds: its memory, its clock, its timer, and, under a warm-reset VMM, that
//! no invocation sees what another wrote.
//!
//! ```text
//! parapet run snapshot --snapshot S --cmdline "init-mib=16 sleep-ms=200"   # writes S, exits 0
//! parapet restore S                                                          # resumes, exits 0
//! parapet run snapshot --snapshot W --cmdline "mode=serve"
//! printf 'one\ntwo\n' | parapet restore W --warm                             # one invocation a line
//! parapet run snapshot --snapshot D --cmdline "mode=serve dirty-kib=1024"    # 1 MiB dirtied each
//! ```
//!
//! Command-line words:
//!
//! | word | what the guest does |
//! |---|---|
//! | `init-mib=N` | before suspending, allocates N MiB of heap (default 0) and fills it with a deterministic pseudo-random pattern, checksummed: initialisation work a restore skips. The memory stays allocated across the snapshot and is checksummed again after each return (unless `resume-check=no`) |
//! | `mode=once` | the default: after the `resumed` line, powers off with exit code 0 |
//! | `mode=serve` | warm reset (`parapet restore FILE --warm`): after the `resumed` line, answers console lines, one per invocation (below) |
//! | `dirty-kib=K` | `mode=serve`: before suspending, allocates a zeroed, page-aligned heap buffer of K KiB (default 0), so that it is in the snapshot; each invocation writes all K KiB of it (K/4 distinct 4 KiB pages, rounded up) before its `reply`: pages dirtied per invocation, for measuring what a warm reset costs against them |
//! | `mode=storm` | hostile: calls `suspend` `count` times in a row as fast as it can, ignoring the results, instead of the ready/suspend/resumed sequence |
//! | `count=N` | `mode=storm`'s number of calls (default 1000) |
//! | `resume-check=no` | the `resumed` line does not recompute the checksum of the `init-mib` memory (it shows `checksum=-`), so that a restore or a warm invocation touches only the pages it needs, not all N MiB (default `yes`) |
//! | `sleep-ms=M` | arms a one-shot timer M ms after the moment before the suspend, so that it spans the snapshot; after the `resumed` line the guest waits for it to fire (the timer must work after a restore) |
//!
//! Output, one line each:
//!
//! ```text
//! snapshot-guest: ready checksum=<16 hex>
//! snapshot-guest: resumed generation=<16 hex> elapsed_ms=<ms> checksum=<16 hex|-> resumes=<n>
//! snapshot-guest: slept                                            (with sleep-ms=M)
//! snapshot-guest: reply <line> generation=<16 hex> leak=<yes|no>   (mode=serve, per line)
//! ```
//!
//! `ready` comes just before the suspend, with the checksum of the `init-mib` memory; `resumed`
//! just after it returned `Restored`: the restore's generation, the system time between just
//! before the suspend and just after it (the PV clock carries on across a restore, so this is
//! the real time the domain was stopped), the checksum recomputed (it must equal `ready`'s; `-`
//! with `resume-check=no`), and
//! how many times `suspend` has returned in this domain's memory. That counter is a static
//! incremented after each return and 0 in the snapshot, so it is 1 in every restore.
//!
//! Under a warm-reset VMM each console line is one invocation: the VMM resets memory and vCPU
//! to the snapshot, so the first `suspend` returns `Restored` again and the guest prints
//! `resumed`, then reads the line, and prints `reply` with the line (control characters shown
//! as `?`) and `leak=yes` if its 4 KiB static scratch buffer is not all zero or its static
//! invocation counter is not 0 (both are in the snapshot). With `dirty-kib=K` it has written the
//! K KiB buffer with the line's first byte before that reply (the buffer is not checked for a
//! leak: the scratch buffer and the counter are the probes). Then it writes the line into the
//! scratch buffer, counts the invocation, fills a new 64 KiB heap allocation with the line's bytes
//! (never freed) and calls `suspend` again, which ends the invocation: nothing of it may be
//! visible in the next. If that `suspend` returns instead (`Restored` from a snapshot taken
//! there, `Cancelled`, or `NotAvailable` from a VMM without snapshots), the guest reads the next
//! line in the same memory, and then `leak=yes` is the right answer. At the end of input it
//! prints `snapshot-guest: end of input` and powers off with 0.
//!
//! `mode=storm` prints `snapshot-guest: storm count=<N>`, then after the calls
//! `snapshot-guest: storm results restored=<a> cancelled=<b> not-available=<c> refused=<d>` and
//! `snapshot-guest: storm done`, and powers off with 0. Under `parapet run --snapshot` the
//! first call ends the process; a restore continues the storm from there.
//!
//! Exit codes: 0 as above; 2 for a bad command line (printed with a usage line), or too little
//! memory for `init-mib` or `dirty-kib`; 3 if the VMM takes no snapshots (`snapshot-guest: no snapshots`: run
//! without `--snapshot FILE`); 4 if `suspend` failed otherwise (`snapshot-guest: suspend
//! failed: …`); 5 if it returned `Cancelled` (`snapshot-guest: cancelled`).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use core::time::Duration;

use guest_sdk::snapshot::{self, Resumed, SuspendError};
use guest_sdk::start_info::cmdline;
use guest_sdk::time;
use guest_sdk::timer::Timer;
use guest_sdk::{console, println};

guest_sdk::entry!(main);

const USAGE: &str = "usage: snapshot [init-mib=N] [mode=once|serve|storm] [count=N] [sleep-ms=M] [dirty-kib=K] \
     [resume-check=yes|no]";

/// Returns from `suspend` (whatever the result) in this domain's memory: 0 in the snapshot.
static RESUMES: AtomicU64 = AtomicU64::new(0);
/// Invocations served by `mode=serve`: 0 in the snapshot.
static INVOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes of [`SCRATCH`].
const SCRATCH_LEN: usize = 4096;
/// Where each `mode=serve` invocation writes its line: all zero in the snapshot.
static SCRATCH: [AtomicU8; SCRATCH_LEN] = [const { AtomicU8::new(0) }; SCRATCH_LEN];
/// The heap each `mode=serve` invocation fills with its line and never frees.
const INVOCATION_HEAP: usize = 64 * 1024;

/// A 4 KiB page of the `dirty-kib` buffer (page-aligned, so K KiB span K/4 pages, no more).
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Once,
    Serve,
    Storm,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    init_mib: usize,
    mode: Mode,
    count: u64,
    sleep_ms: Option<u64>,
    dirty_kib: usize,
    resume_check: bool,
}

fn parse(line: &str) -> Result<Config, String> {
    let mut config = Config {
        init_mib: 0,
        mode: Mode::Once,
        count: 1000,
        sleep_ms: None,
        dirty_kib: 0,
        resume_check: true,
    };
    for word in line.split_ascii_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}= is not a number"))
        };
        match key {
            "init-mib" => {
                config.init_mib =
                    usize::try_from(number()?).map_err(|_| String::from("init-mib= too large"))?
            }
            "count" => config.count = number()?,
            "sleep-ms" => config.sleep_ms = Some(number()?),
            "dirty-kib" => {
                config.dirty_kib =
                    usize::try_from(number()?).map_err(|_| String::from("dirty-kib= too large"))?
            }
            "resume-check" => {
                config.resume_check = match value {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("resume-check={value:?}: yes or no")),
                }
            }
            "mode" => {
                config.mode = match value {
                    "once" => Mode::Once,
                    "serve" => Mode::Serve,
                    "storm" => Mode::Storm,
                    _ => return Err(format!("unknown mode {value:?}")),
                }
            }
            _ => return Err(format!("unknown word {word:?}")),
        }
    }
    Ok(config)
}

fn main() -> u32 {
    let config = match parse(cmdline()) {
        Ok(c) => c,
        Err(why) => {
            println!("snapshot-guest: {why}; {USAGE}");
            return 2;
        }
    };
    let Some(state) = initialise(config.init_mib) else {
        println!(
            "snapshot-guest: init-mib={}: not enough memory",
            config.init_mib
        );
        return 2;
    };
    if config.mode == Mode::Storm {
        return storm(config.count);
    }
    // Allocated (and zeroed) before the suspend, so that it is in the snapshot.
    let Some(mut dirty) = dirty_buffer(if config.mode == Mode::Serve {
        config.dirty_kib
    } else {
        0
    }) else {
        println!(
            "snapshot-guest: dirty-kib={}: not enough memory",
            config.dirty_kib
        );
        return 2;
    };
    let ready_sum = checksum(&state);
    println!("snapshot-guest: ready checksum={ready_sum:016x}");
    // Arm the timer before the suspend, so that the snapshot holds an armed deadline.
    let timer = match config.sleep_ms {
        None => None,
        Some(ms) => match Timer::oneshot(time::now() + Duration::from_millis(ms)) {
            Ok(t) => Some(t),
            Err(e) => {
                println!("snapshot-guest: timer: {e}");
                return 4;
            }
        },
    };
    // Flush first, so that `before` is taken just before the hypercall.
    console::flush();
    let before = time::now();
    let result = snapshot::suspend();
    let after = time::now();
    let resumes = RESUMES.fetch_add(1, Ordering::SeqCst) + 1;
    // Each invocation of a warm-reset VMM starts here again, from the snapshot.
    let generation = match result {
        Ok(Resumed::Restored { generation }) => generation,
        Ok(Resumed::Cancelled) => {
            println!("snapshot-guest: cancelled");
            return 5;
        }
        Err(SuspendError::NotAvailable) => {
            println!("snapshot-guest: no snapshots");
            return 3;
        }
        Err(e) => {
            println!("snapshot-guest: suspend failed: {e}");
            return 4;
        }
    };
    let resumed_sum = if config.resume_check {
        format!("{:016x}", checksum(&state))
    } else {
        String::from("-")
    };
    println!(
        "snapshot-guest: resumed generation={generation:016x} elapsed_ms={} \
         checksum={resumed_sum} resumes={resumes}",
        (after - before).as_millis(),
    );
    if let Some(t) = timer {
        t.wait();
        println!("snapshot-guest: slept");
    }
    match config.mode {
        Mode::Once | Mode::Storm => 0,
        Mode::Serve => serve(&mut dirty, config.dirty_kib),
    }
}

/// `dirty-kib`'s buffer: `kib` KiB in whole zeroed pages, or `None` if the heap has no room.
fn dirty_buffer(kib: usize) -> Option<Vec<Page>> {
    let pages = kib.div_ceil(4);
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(pages).ok()?;
    buffer.resize(pages, Page([0; 4096]));
    Some(buffer)
}

/// Writes the first `kib` KiB of `buffer` with `byte`: `kib / 4` pages (rounded up) dirtied.
fn dirty_pages(buffer: &mut [Page], kib: usize, byte: u8) {
    let mut left = kib * 1024;
    for page in buffer.iter_mut() {
        let n = left.min(page.0.len());
        page.0[..n].fill(byte);
        left -= n;
    }
    // The writes must happen although nothing reads them.
    core::hint::black_box(buffer);
}

/// `init-mib`'s work: `mib` MiB of pseudo-random words, or `None` if the heap has no room.
fn initialise(mib: usize) -> Option<Vec<u64>> {
    let words = mib.checked_mul(1024 * 1024 / 8)?;
    let mut state = Vec::new();
    state.try_reserve_exact(words).ok()?;
    let mut rng = SplitMix64(0x5eed_0f5a_4e54_07aa);
    state.extend((0..words).map(|_| rng.next()));
    Some(state)
}

/// SplitMix64: a small deterministic generator, enough to make memory that does not compress.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// An FNV-1a-style hash of the words.
fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `mode=serve`: one console line per invocation (see the crate documentation); each writes
/// `dirty_kib` KiB of `dirty` first.
fn serve(dirty: &mut [Page], dirty_kib: usize) -> u32 {
    loop {
        let mut raw = Vec::new();
        if console::read_line_bytes(&mut raw) == 0 {
            println!("snapshot-guest: end of input");
            return 0;
        }
        let leak = INVOCATIONS.load(Ordering::SeqCst) != 0
            || SCRATCH.iter().any(|b| b.load(Ordering::Relaxed) != 0);
        dirty_pages(dirty, dirty_kib, raw[0]);
        println!(
            "snapshot-guest: reply {} generation={:016x} leak={}",
            one_line(&raw),
            snapshot::generation(),
            if leak { "yes" } else { "no" }
        );
        // The line with its '\n': never all zero.
        for (cell, &b) in SCRATCH.iter().zip(&raw) {
            cell.store(b, Ordering::Relaxed);
        }
        INVOCATIONS.fetch_add(1, Ordering::SeqCst);
        let fill: Vec<u8> = raw.iter().copied().cycle().take(INVOCATION_HEAP).collect();
        let _kept: &mut [u8] = fill.leak();
        // Ends the invocation under a warm-reset VMM: the next one starts at the first suspend.
        let result = snapshot::suspend();
        RESUMES.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(_) | Err(SuspendError::NotAvailable) => {}
            Err(e) => {
                println!("snapshot-guest: suspend failed: {e}");
                return 4;
            }
        }
    }
}

/// A console line for a one-line reply: without its line end, control characters as `?`.
fn one_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.trim_end_matches(['\n', '\r'])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `mode=storm`: `count` suspends in a row, results counted by kind.
fn storm(count: u64) -> u32 {
    println!("snapshot-guest: storm count={count}");
    let (mut restored, mut cancelled, mut unavailable, mut refused) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..count {
        match snapshot::suspend() {
            Ok(Resumed::Restored { .. }) => restored += 1,
            Ok(Resumed::Cancelled) => cancelled += 1,
            Err(SuspendError::NotAvailable) => unavailable += 1,
            Err(SuspendError::Refused(_)) => refused += 1,
        }
        RESUMES.fetch_add(1, Ordering::SeqCst);
    }
    println!(
        "snapshot-guest: storm results restored={restored} cancelled={cancelled} \
         not-available={unavailable} refused={refused}"
    );
    println!("snapshot-guest: storm done");
    0
}
