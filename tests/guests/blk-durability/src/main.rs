//! A guest for crash tests of the PV block device: it writes numbered blocks and, after each
//! flush the backend acknowledged, reports how many blocks are durable.
//!
//! A test runs it on a scratch image, kills the VMM with `SIGKILL` right after an `acked` line
//! chosen at random (while later writes are in flight), and checks that every block covered by
//! the last `acked` line on standard output is in the image.
//!
//! # Blocks
//!
//! Block `i` (from 0) is 4096 bytes at sector `8 * i` (byte offset `4096 * i`). Its bytes
//! `8k..8k + 8` (k = 0..512) hold the little-endian `u64`
//!
//! ```text
//! (i << 32) | (k << 16) | 0xb10c
//! ```
//!
//! Blocks are written in order, a batch at a time: the batch's writes and then a flush
//! (`FLUSH_DISKCACHE`) are submitted together, and once the flush and every write of the batch
//! have completed successfully the guest prints `acked <n>`: blocks `0..n` (`n` blocks in
//! total) are on stable storage. The line is printed through the SDK console only after the
//! acknowledgement, so a line that reached standard output is always true.
//!
//! # Command line
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `count=N` | write `N` blocks, then stop | `0`: until the disk is full |
//! | `batch=K` | blocks per flush, 1–31 | `1` |
//! | `mode=flush` | each batch: `K` writes, then a flush request | yes |
//! | `mode=write-flush` | each batch: `K - 1` writes, then the last block as a flush-with-data request | |
//! | `mode=one-write` | each batch: one write of all `K` blocks (an indirect request when `K` > 11), then a flush request | |
//! | `disk=N` | use the `N`th `--disk` (from 0) | `0` |
//! | `verify` | at the end, read every block back (1 MiB reads, several requests in flight) and check it | no |
//! | `discard` | at the very end, discard the blocks written and check that they read back as zeros | no |
//!
//! # Output (each line exactly as shown)
//!
//! ```text
//! blk-durability: disk <sectors> sectors, <blocks> blocks, <K> per flush, mode <mode>, requests up to <n> sectors
//! acked <n>                    after every acknowledged flush (n grows by K, the last batch may be smaller)
//! verified <n>                with `verify`: all n blocks read back correctly
//! discarded <n>               with `discard`: the n blocks were discarded and read back as zeros
//! blk-durability: done <n>     all blocks written and durable; exit code 0
//! ```
//!
//! Failures print `blk-durability: error: <what>` and exit with 1 (no block device), 2 (the disk
//! is read-only, has no flush, or is smaller than one block), 3 (a request failed) or 6 (bad
//! command line), or 4 (`verify`/`discard` read back wrong data).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_sdk::block::{BlockDevice, BlockError, RequestId};
use guest_sdk::println;
use guest_sdk::start_info::cmdline;

guest_sdk::entry!(main);

const BLOCK_BYTES: usize = 4096;
const SECTORS_PER_BLOCK: u64 = 8;

type Failure = (u32, String);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flush,
    WriteFlush,
    OneWrite,
}

struct Args {
    count: u64,
    batch: u64,
    mode: Mode,
    disk: usize,
    verify: bool,
    discard: bool,
}

fn parse(line: &str) -> Result<Args, String> {
    let mut args = Args {
        count: 0,
        batch: 1,
        mode: Mode::Flush,
        disk: 0,
        verify: false,
        discard: false,
    };
    let number = |v: &str| v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
    for word in line.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("count", v)) => args.count = number(v)?,
            Some(("batch", v)) => args.batch = number(v)?,
            Some(("disk", v)) => args.disk = number(v)? as usize,
            Some(("mode", "flush")) => args.mode = Mode::Flush,
            Some(("mode", "write-flush")) => args.mode = Mode::WriteFlush,
            Some(("mode", "one-write")) => args.mode = Mode::OneWrite,
            None if word == "verify" => args.verify = true,
            None if word == "discard" => args.discard = true,
            _ => {
                return Err(format!(
                    "unknown word {word:?} (usage: [count=N] [batch=K] \
                     [mode=flush|write-flush|one-write] [disk=N] [verify] [discard])"
                ));
            }
        }
    }
    if !(1..=31).contains(&args.batch) {
        return Err(format!("batch={} is not in 1..=31", args.batch));
    }
    Ok(args)
}

/// The contents of block `i`.
fn block(i: u64, out: &mut [u8; BLOCK_BYTES]) {
    for (k, word) in out.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&((i << 32) | ((k as u64) << 16) | 0xb10c).to_le_bytes());
    }
}

fn main() -> u32 {
    match run() {
        Ok(n) => {
            println!("blk-durability: done {n}");
            0
        }
        Err((code, message)) => {
            println!("blk-durability: error: {message}");
            code
        }
    }
}

fn run() -> Result<u64, Failure> {
    let args = parse(cmdline()).map_err(|e| (6, e))?;
    let mut dev = BlockDevice::open(args.disk).map_err(|e| match e {
        BlockError::NoDevice => (
            1,
            format!("no block device {} (run with --disk PATH)", args.disk),
        ),
        e => (1, format!("cannot connect block device {}: {e}", args.disk)),
    })?;
    if dev.read_only() {
        return Err((2, "the disk is read-only".into()));
    }
    if !dev.supports_flush() {
        return Err((2, "the disk does not support flushes".into()));
    }
    let capacity = dev.sectors() / SECTORS_PER_BLOCK;
    let total = match args.count {
        0 => capacity,
        n if n <= capacity => n,
        n => return Err((6, format!("count={n} exceeds the disk's {capacity} blocks"))),
    };
    if total == 0 {
        return Err((2, "the disk is smaller than one block".into()));
    }
    println!(
        "blk-durability: disk {} sectors, {total} blocks, {} per flush, mode {}, requests up to {} \
         sectors",
        dev.sectors(),
        args.batch,
        match args.mode {
            Mode::Flush => "flush",
            Mode::WriteFlush => "write-flush",
            Mode::OneWrite => "one-write",
        },
        dev.max_request_sectors()
    );
    let io = |what: &str, i: u64, e: BlockError| (3, format!("{what} (block {i}): {e}"));
    let mut data = [0u8; BLOCK_BYTES];
    let mut acked = 0;
    while acked < total {
        let end = (acked + args.batch).min(total);
        let mut ids: Vec<(u64, RequestId)> = Vec::new();
        dev.plug();
        if args.mode == Mode::OneWrite {
            let mut all = Vec::with_capacity((end - acked) as usize * BLOCK_BYTES);
            for i in acked..end {
                block(i, &mut data);
                all.extend_from_slice(&data);
            }
            let id = dev
                .submit_write(acked * SECTORS_PER_BLOCK, &all)
                .map_err(|e| io("submit write", acked, e))?;
            ids.push((acked, id));
        }
        for i in (acked..end).filter(|_| args.mode != Mode::OneWrite) {
            block(i, &mut data);
            let sector = i * SECTORS_PER_BLOCK;
            let id = if args.mode == Mode::WriteFlush && i + 1 == end {
                dev.submit_write_flush(sector, &data)
            } else {
                dev.submit_write(sector, &data)
            };
            ids.push((i, id.map_err(|e| io("submit write", i, e))?));
        }
        if args.mode != Mode::WriteFlush {
            let id = dev.submit_flush().map_err(|e| io("submit flush", end, e))?;
            ids.push((end, id));
        }
        dev.unplug();
        for (i, id) in ids {
            let done = dev.wait_for(id).map_err(|e| io("wait", i, e))?;
            done.result().map_err(|e| io("request", i, e))?;
        }
        acked = end;
        println!("acked {acked}");
    }
    if args.verify {
        check(&mut dev, acked, block)?;
        println!("verified {acked}");
    }
    if args.discard {
        if !dev.supports_discard() {
            return Err((2, "the disk does not support discards".into()));
        }
        dev.discard(0, acked * SECTORS_PER_BLOCK)
            .map_err(|e| io("discard", 0, e))?;
        check(&mut dev, acked, |_, out| out.fill(0))?;
        println!("discarded {acked}");
    }
    Ok(acked)
}

/// Reads blocks `0..n` back, 256 at a time, and compares each with `expect`.
fn check(
    dev: &mut BlockDevice,
    n: u64,
    expect: impl Fn(u64, &mut [u8; BLOCK_BYTES]),
) -> Result<(), Failure> {
    const CHUNK: u64 = 256;
    let mut buf = alloc::vec![0u8; CHUNK as usize * BLOCK_BYTES];
    let mut want = [0u8; BLOCK_BYTES];
    let mut i = 0;
    while i < n {
        let count = (n - i).min(CHUNK);
        let bytes = &mut buf[..count as usize * BLOCK_BYTES];
        dev.read(i * SECTORS_PER_BLOCK, bytes)
            .map_err(|e| (3, format!("read back (block {i}): {e}")))?;
        for (j, got) in bytes.chunks_exact(BLOCK_BYTES).enumerate() {
            let b = i + j as u64;
            expect(b, &mut want);
            if got != want {
                return Err((4, format!("block {b} reads back wrong")));
            }
        }
        i += count;
    }
    Ok(())
}
