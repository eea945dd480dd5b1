//! The console: [`print!`](crate::print) and [`println!`](crate::println) over the PV console
//! ring (docs/abi.md §9.2), with `console_io` (§3.5) for early boot and emergencies.
//!
//! # Output
//!
//! Each print formats into a buffer on the stack ([`LineBuffer`]) and writes it with
//! [`write_bytes`]. Once the boot code has started the ring (`init`), that copies the bytes
//! into the console page's `out` ring with `pv_drivers::console::ConsoleFront` and rings the
//! doorbell on `console_evtchn` only when the backend asked for it (`out_event`): the VMM
//! registers an ioeventfd for the port, so a print costs no exit at all. When the ring is full
//! the writer asks for a space notification (`out_space_event`), notifies, and blocks until the
//! backend has consumed output — or, where it cannot block (inside an event handler, with
//! interrupts masked), polls. Before the ring is started, output goes through `console_io`,
//! one hypercall per print.
//!
//! # Emergencies and ordering
//!
//! The panic handler and the exception reporter write with [`emergency_write`]: it first waits
//! (polling, bounded) until the backend has consumed everything in the ring (`out_cons ==
//! out_prod`), then uses `console_io`, so the two paths reach the VMM's standard output in
//! program order. [`flush`] waits the same way (blocking if it can); the SDK calls it before the
//! domain powers off (the VMM also drains the ring when the domain stops).
//!
//! # Input
//!
//! [`read`] and [`read_line`] consume the `in` ring: with nothing to read they set `in_event`
//! and block until the backend raises the port. At the end of the VMM's input the backend
//! appends `CONSOLE_EOF` (`0x04`); the reader then reports end of file (0 bytes) from then on.
//!
//! The console port starts masked (§7.1); `init` unmasks it. All ring access is serialised by
//! masking interrupts and a lock, so event handlers may print.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use parapet_abi::console::{CONSOLE_EOF, CONSOLE_IN_SIZE};
use parapet_abi::start_info::StartInfo;
use pv_drivers::console::ConsoleFront;
use spin::Mutex;

use crate::event_channel::{self, Port};
use crate::page::{self, GuestPage};
use crate::time::{self, Instant};
use crate::{hypercall, pvops, timer};

/// Bytes one print formats before it has to flush.
pub const PRINT_BUFFER_SIZE: usize = 1024;

/// How long a writer polls for the backend before it blocks.
const SPIN: Duration = Duration::from_millis(1);
/// How long a writer or a flush waits for a backend that makes no progress before it gives up
/// on the ring (and falls back to `console_io`).
const STALL: Duration = Duration::from_secs(2);

/// The console ring, once started.
static RING: Mutex<Option<ConsoleFront<GuestPage>>> = Mutex::new(None);
/// `console_evtchn`, or 0 before the ring is started.
static PORT: AtomicU32 = AtomicU32::new(0);
/// Whether the ring is in use (also false after the backend stalled).
static RING_UP: AtomicBool = AtomicBool::new(false);
/// The reader saw `CONSOLE_EOF`.
static EOF: AtomicBool = AtomicBool::new(false);
/// Doorbells rung for output.
static NOTIFIES: AtomicU64 = AtomicU64::new(0);
/// Times a writer found the ring full.
static FULL_WAITS: AtomicU64 = AtomicU64::new(0);

/// Starts the console ring on `StartInfo::console_page` and unmasks `console_evtchn`. Called
/// once by the boot code; without a console page or port, output stays on `console_io`.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init(info: &StartInfo) {
    if info.console_evtchn == 0 {
        return;
    }
    let Some(page) = page::console_page() else {
        return;
    };
    *RING.lock() = Some(ConsoleFront::new(page));
    PORT.store(info.console_evtchn, Ordering::SeqCst);
    RING_UP.store(true, Ordering::SeqCst);
    event_channel::unmask_local(Port(info.console_evtchn));
}

/// Whether output goes through the console ring (rather than `console_io`).
pub fn ring_active() -> bool {
    RING_UP.load(Ordering::SeqCst)
}

/// The console's event channel, once the ring is started.
pub fn port() -> Option<Port> {
    match PORT.load(Ordering::SeqCst) {
        0 => None,
        p => Some(Port(p)),
    }
}

/// Doorbells rung for console output since boot.
pub fn notify_count() -> u64 {
    NOTIFIES.load(Ordering::Relaxed)
}

/// How often a writer found the output ring full.
pub fn full_waits() -> u64 {
    FULL_WAITS.load(Ordering::Relaxed)
}

/// Whether the caller may block (sleep in `SCHEDOP_block`) rather than poll.
fn can_block() -> bool {
    !event_channel::in_handler()
        && pvops::irqs_enabled()
        && port().is_some_and(|p| !event_channel::is_masked(p))
}

/// Runs `f` on the ring with interrupts masked; `None` if the ring is not started (or, with
/// `try_only`, if it is in use).
fn with_ring<R>(try_only: bool, f: impl FnOnce(&mut ConsoleFront<GuestPage>) -> R) -> Option<R> {
    let _irq = pvops::irq_save();
    let mut guard = if try_only {
        RING.try_lock()?
    } else {
        RING.lock()
    };
    guard.as_mut().map(f)
}

/// Waits until `done()` holds, polling first, then (if allowed) blocking on the console port
/// with `arm()` run before each sleep. Gives up after [`STALL`]. Returns whether `done()` held.
fn wait_for_backend(
    block: bool,
    mut done: impl FnMut() -> bool,
    mut arm: impl FnMut() -> bool,
) -> bool {
    let start = time::now();
    while time::now() < start + SPIN {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    let give_up = start + STALL;
    if block {
        if let Some(p) = port() {
            event_channel::notify(p);
        }
        return timer::wait_until(Some(give_up), || arm() || done());
    }
    while time::now() < give_up {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Writes all of `bytes` to the console ring; returns the bytes it could not write (the ring
/// is not started, or the backend stalled).
fn ring_write(mut bytes: &[u8]) -> &[u8] {
    while !bytes.is_empty() && ring_active() {
        let Some((n, notify)) = with_ring(false, |c| c.write(bytes)) else {
            break;
        };
        if notify {
            NOTIFIES.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = port() {
                event_channel::notify(p);
            }
        }
        bytes = &bytes[n..];
        if n == 0 {
            FULL_WAITS.fetch_add(1, Ordering::Relaxed);
            let has_space = || with_ring(false, |c| c.output_space() > 0).unwrap_or(true);
            let arm = || with_ring(false, |c| c.request_space_notification()).unwrap_or(true);
            if !wait_for_backend(can_block(), has_space, arm) {
                RING_UP.store(false, Ordering::SeqCst);
            }
        }
    }
    bytes
}

/// Writes `bytes` with `console_io`, one call per 16 KiB. Errors are dropped: there is nowhere
/// else to report them.
fn console_io_write(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match hypercall::console_write(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[(n as usize).min(bytes.len())..],
            _ => return,
        }
    }
}

/// Writes all of `bytes` to the console: the ring once it is started, `console_io` before.
pub fn write_bytes(bytes: &[u8]) {
    let rest = ring_write(bytes);
    if !rest.is_empty() {
        console_io_write(rest);
    }
}

/// Writes `s` to the console unbuffered.
pub fn write_str(s: &str) {
    write_bytes(s.as_bytes());
}

/// Waits until the backend has consumed all output in the ring (`out_cons == out_prod`),
/// blocking if the caller may, polling otherwise; gives up after a couple of seconds of no
/// progress. Returns whether the ring is empty.
pub fn flush() -> bool {
    drain(can_block(), false)
}

fn drain(block: bool, try_only: bool) -> bool {
    if !ring_active() {
        return true;
    }
    let empty = || with_ring(try_only, |c| c.pending_output() == 0).unwrap_or(true);
    // `true` means: look again instead of sleeping (empty, or the backend moved meanwhile).
    let arm = || with_ring(try_only, |c| c.request_drain_notification()).unwrap_or(true);
    if empty() {
        return true;
    }
    wait_for_backend(block, empty, arm)
}

/// Writes `bytes` with `console_io` after draining the ring (polling, bounded, without taking a
/// lock that may be held), so that it appears after everything printed before. For the panic
/// handler and the exception reporter.
pub fn emergency_write(bytes: &[u8]) {
    drain(false, true);
    console_io_write(bytes);
}

/// Input taken out of the ring but not yet returned by [`read`]: reading the ring in chunks
/// keeps the doorbells (one per chunk consumed) few.
struct InBuf {
    bytes: [u8; CONSOLE_IN_SIZE],
    start: usize,
    end: usize,
}

static INBUF: Mutex<InBuf> = Mutex::new(InBuf {
    bytes: [0; CONSOLE_IN_SIZE],
    start: 0,
    end: 0,
});

/// Moves input from the ring into `INBUF` (if it is empty); returns whether input (or EOF) is
/// buffered.
fn fill_input() -> bool {
    let _irq = pvops::irq_save();
    let mut ib = INBUF.lock();
    if ib.start < ib.end || EOF.load(Ordering::SeqCst) {
        return true;
    }
    let Some((n, notify)) = with_ring(false, |c| c.read(&mut ib.bytes)) else {
        return false;
    };
    if notify && let Some(p) = port() {
        event_channel::notify(p);
    }
    let n = match ib.bytes[..n].iter().position(|&b| b == CONSOLE_EOF) {
        Some(eof) => {
            EOF.store(true, Ordering::SeqCst);
            eof
        }
        None => n,
    };
    ib.start = 0;
    ib.end = n;
    n > 0 || EOF.load(Ordering::SeqCst)
}

/// Takes up to `buf.len()` buffered bytes, stopping after `stop` if given.
fn take_input(buf: &mut [u8], stop: Option<u8>) -> usize {
    let _irq = pvops::irq_save();
    let mut ib = INBUF.lock();
    let avail = &ib.bytes[ib.start..ib.end];
    let mut n = avail.len().min(buf.len());
    if let Some(stop) = stop
        && let Some(i) = avail[..n].iter().position(|&b| b == stop)
    {
        n = i + 1;
    }
    buf[..n].copy_from_slice(&avail[..n]);
    ib.start += n;
    n
}

/// Blocks until console input (or its end) is buffered.
fn wait_input() {
    if port().is_none() {
        return;
    }
    while !fill_input() {
        let waiting = || with_ring(false, |c| c.want_input()).unwrap_or(true);
        if can_block() {
            timer::wait_until(None, waiting);
        } else {
            while !waiting() {
                core::hint::spin_loop();
            }
        }
    }
}

/// Reads console input into `buf`, blocking until at least one byte is available. Returns the
/// number of bytes read, or 0 at end of input (the backend's `CONSOLE_EOF`) or if `buf` is
/// empty. Without a console ring, returns whatever `console_io` read gives (possibly 0).
pub fn read(buf: &mut [u8]) -> usize {
    if buf.is_empty() {
        return 0;
    }
    if port().is_none() {
        return hypercall::console_read(buf).map_or(0, |n| n as usize);
    }
    wait_input();
    take_input(buf, None)
}

/// Whether the reader has seen the end of input.
pub fn at_eof() -> bool {
    EOF.load(Ordering::SeqCst)
}

/// Reads one line into `line` (appending, including the `\n` if there is one), blocking until a
/// whole line or the end of input arrived. Returns the number of bytes appended: 0 only at end
/// of input.
pub fn read_line_bytes(line: &mut alloc::vec::Vec<u8>) -> usize {
    let start = line.len();
    let mut chunk = [0u8; 256];
    loop {
        if port().is_none() {
            // console_io input: byte by byte.
            let n = read(&mut chunk[..1]);
            line.extend_from_slice(&chunk[..n]);
            if n == 0 || chunk[0] == b'\n' {
                break;
            }
            continue;
        }
        wait_input();
        let n = take_input(&mut chunk, Some(b'\n'));
        line.extend_from_slice(&chunk[..n]);
        if n == 0 || chunk[n - 1] == b'\n' {
            break;
        }
    }
    line.len() - start
}

/// [`read_line_bytes`] into a `String` (invalid UTF-8 is replaced by U+FFFD).
pub fn read_line(line: &mut alloc::string::String) -> usize {
    let mut bytes = alloc::vec::Vec::new();
    let n = read_line_bytes(&mut bytes);
    line.push_str(&alloc::string::String::from_utf8_lossy(&bytes));
    n
}

/// Whether input (or the end of input) is waiting now.
pub fn input_ready() -> bool {
    {
        let _irq = pvops::irq_save();
        let ib = INBUF.lock();
        if ib.start < ib.end {
            return true;
        }
    }
    EOF.load(Ordering::SeqCst) || with_ring(false, |c| c.pending_input() > 0).unwrap_or(false)
}

/// Waits until console input is available or `deadline` passes; returns whether input is
/// available.
pub fn wait_input_until(deadline: Instant) -> bool {
    timer::wait_until(Some(deadline), || {
        input_ready() || with_ring(false, |c| c.want_input()).unwrap_or(false)
    })
}

/// A fixed-size formatting buffer that writes itself to the console when it fills up and when
/// [`LineBuffer::flush`] is called.
#[derive(Debug)]
pub struct LineBuffer<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuffer {
            buf: [0; N],
            len: 0,
        }
    }

    /// The bytes buffered so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the buffered bytes to the console (if any) and empties the buffer.
    pub fn flush(&mut self) {
        if self.len > 0 {
            write_bytes(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Writes the buffered bytes with [`emergency_write`] and empties the buffer.
    pub fn flush_emergency(&mut self) {
        if self.len > 0 {
            emergency_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Appends `bytes`, flushing whenever the buffer is full.
    pub fn push_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == N {
                self.flush();
            }
            let n = bytes.len().min(N - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

impl<const N: usize> fmt::Write for LineBuffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

/// An unbuffered [`fmt::Write`] handle on the console. Prefer [`print!`](crate::print), which
/// writes each print in one piece.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats `args` and writes the result in one piece (for anything up to
/// [`PRINT_BUFFER_SIZE`] bytes). Used by [`print!`](crate::print).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    if let Some(s) = args.as_str() {
        write_str(s);
        return;
    }
    let mut buf = LineBuffer::<PRINT_BUFFER_SIZE>::new();
    let _ = fmt::Write::write_fmt(&mut buf, args);
    buf.flush();
}

/// Prints to the Parapet console (the console ring once it is up; no exit to the VMM).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print_fmt(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the Parapet console (the console ring once it is up; no exit to the VMM).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::print_fmt(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn buffer_collects_formatted_text() {
        let mut b = LineBuffer::<64>::new();
        write!(b, "x={} y={:#x}", 5, 255).unwrap();
        assert_eq!(b.as_bytes(), b"x=5 y=0xff");
    }

    #[test]
    fn overflowing_buffer_flushes_and_keeps_the_tail() {
        // Before boot the flush goes nowhere; what matters is that nothing is lost or overrun.
        let mut b = LineBuffer::<4>::new();
        b.push_bytes(b"abcdefghij");
        assert_eq!(b.as_bytes(), b"ij");
        b.flush();
        assert_eq!(b.as_bytes(), b"");
    }

    #[test]
    fn macros_expand_before_boot() {
        crate::println!("not printed: {}", 1);
        crate::print!("also not printed");
        crate::println!();
        assert!(flush());
        emergency_write(b"nowhere");
        assert!(!ring_active());
    }
}
