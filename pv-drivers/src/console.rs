//! The PV console page (docs/abi.md §9.2): [`ConsoleFront`] for the guest, [`ConsoleBack`] for
//! the VMM.
//!
//! The page is Xen's `xencons_interface` ([`ConsoleInterface`]): two byte rings with
//! free-running `u32` indices, `out` (2048 bytes, guest → VMM) and `in` (1024 bytes,
//! VMM → guest), followed by Parapet's three event indices for notification suppression.
//!
//! # Protocol
//!
//! Both directions follow `io/ring.h` (see [`crate::ring`]): the producer copies bytes, stores
//! its producer index (`Release`), fences, loads the consumer's event index and notifies only if
//! the new index passed it; a consumer that runs out of work arms its event index
//! (`consumer + 1`), fences and checks once more before it sleeps.
//!
//! | field | written by | meaning |
//! |---|---|---|
//! | `out_prod` | guest | output produced; [`ConsoleFront::write`] |
//! | `out_cons` | VMM | output consumed; [`ConsoleBack::drain_output`] |
//! | `out_event` | VMM | notify the VMM when `out_prod` passes it; [`ConsoleBack::prepare_to_sleep`] sets `out_cons + 1` |
//! | `out_space_event` | guest | notify the guest when `out_cons` passes it; [`ConsoleFront::request_space_notification`] and [`request_drain_notification`](ConsoleFront::request_drain_notification) set `out_cons + 1` |
//! | `in_prod` | VMM | input produced; [`ConsoleBack::push_input`] |
//! | `in_cons` | guest | input consumed; [`ConsoleFront::read`] |
//! | `in_event` | guest | notify the guest when `in_prod` passes it; [`ConsoleFront::want_input`] sets `in_cons + 1` |
//!
//! `out_space_event` is the one event index armed against the *other* side's index: the
//! backend may advance `out_cons` between the guest's load of it and the guest's store of the
//! event, and would not notify for that advance. So after arming, the guest's re-check asks
//! whether `out_cons` moved at all, not only whether its condition now holds.
//!
//! The guest notifies the backend after it consumes input ([`ConsoleFront::read`]), as Linux's
//! `hvc_xen` does, so a backend holding input that did not fit retries on its next wake-up.
//!
//! The VMM zero-fills the page when it builds the domain, so every index and event starts at
//! 0. The backend starts awake (it drains, then arms `out_event` with
//! [`prepare_to_sleep`](ConsoleBack::prepare_to_sleep) before its first sleep), and the guest
//! asks for input with [`want_input`](ConsoleFront::want_input) when it wants it.
//!
//! # Defences
//!
//! The backend keeps `out_cons` and `in_prod` privately, loads the guest's `out_prod` and
//! `in_cons` once per call, and rejects indices that claim more bytes than a ring holds
//! ([`ConsoleError::Overflow`]); it copies output bytes out of the page before passing them on.
//! The frontend clamps a backend's nonsensical indices instead of trusting them.

use parapet_abi::console::{
    CONSOLE_EOF, CONSOLE_IN_SIZE, CONSOLE_OUT_SIZE, ConsoleInterface, console_offset,
};

use crate::ring::event_passed;
use crate::shared::SharedPage;

const OUT_RING: usize = core::mem::offset_of!(ConsoleInterface, output);
const IN_RING: usize = core::mem::offset_of!(ConsoleInterface, input);
const OUT_SIZE: u32 = CONSOLE_OUT_SIZE as u32;
const IN_SIZE: u32 = CONSOLE_IN_SIZE as u32;

/// One of the console page's two byte rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRing {
    /// `in`: VMM → guest.
    Input,
    /// `out`: guest → VMM.
    Output,
}

impl ConsoleRing {
    /// `input` or `output`.
    pub fn name(self) -> &'static str {
        match self {
            ConsoleRing::Input => "input",
            ConsoleRing::Output => "output",
        }
    }

    /// The index a guest that overflows this ring got wrong: `in_cons` or `out_prod`.
    pub fn producer_index_name(self) -> &'static str {
        match self {
            ConsoleRing::Input => "in_cons",
            ConsoleRing::Output => "out_prod",
        }
    }
}

/// The guest broke the console protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// The guest's index claims `unconsumed` bytes (producer − consumer, wrapping) in a ring of
    /// `size` bytes: `out_prod` for [`ConsoleRing::Output`], `in_cons` for
    /// [`ConsoleRing::Input`].
    #[error(
        "console {name} ring: guest's {index} claims {unconsumed} unconsumed bytes in a ring of \
         {size}",
        name = .ring.name(),
        index = .ring.producer_index_name()
    )]
    Overflow {
        /// The ring whose indices are inconsistent.
        ring: ConsoleRing,
        /// Producer index minus consumer index, wrapping.
        unconsumed: u32,
        /// Size of the ring in bytes.
        size: u32,
    },
}

/// Copies `buf.len()` bytes out of the ring at `ring` (of `size` bytes) starting at free-running
/// index `index`, in at most two pieces.
fn ring_read(page: &impl SharedPage, ring: usize, size: u32, index: u32, buf: &mut [u8]) {
    let start = (index % size) as usize;
    let first = buf.len().min(size as usize - start);
    let (head, tail) = buf.split_at_mut(first);
    page.read(ring + start, head);
    page.read(ring, tail);
}

/// Copies `buf` into the ring at `ring` (of `size` bytes) starting at free-running index
/// `index`, in at most two pieces.
fn ring_write(page: &impl SharedPage, ring: usize, size: u32, index: u32, buf: &[u8]) {
    let start = (index % size) as usize;
    let first = buf.len().min(size as usize - start);
    let (head, tail) = buf.split_at(first);
    page.write(ring + start, head);
    page.write(ring, tail);
}

/// The guest's half of the console: produces output, consumes input.
#[derive(Debug)]
pub struct ConsoleFront<P> {
    page: P,
    /// Output produced (the guest's copy of `out_prod`).
    out_prod: u32,
    /// Input consumed (the guest's copy of `in_cons`).
    in_cons: u32,
}

impl<P: SharedPage> ConsoleFront<P> {
    /// Attaches to the console page, taking `out_prod` and `in_cons` from it (0 on a fresh
    /// page; a later attach continues where the previous one stopped). Writes nothing.
    pub fn new(page: P) -> Self {
        let out_prod = page.load_u32(console_offset::OUT_PROD);
        let in_cons = page.load_u32(console_offset::IN_CONS);
        Self {
            page,
            out_prod,
            in_cons,
        }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Output bytes the backend has not consumed yet (0 … 2048; a backend whose `out_cons` is
    /// nonsensical makes the ring look full).
    pub fn pending_output(&self) -> usize {
        let out_cons = self.page.load_u32(console_offset::OUT_CONS);
        let pending = self.out_prod.wrapping_sub(out_cons);
        pending.min(OUT_SIZE) as usize
    }

    /// Free space in the output ring.
    pub fn output_space(&self) -> usize {
        CONSOLE_OUT_SIZE - self.pending_output()
    }

    /// Copies as much of `bytes` as fits into the output ring and publishes it. Returns the
    /// number of bytes written (0 if the ring is full) and whether the backend must be notified
    /// on `console_evtchn`.
    #[must_use = "the bytes not written must be retried, and a notification may be due"]
    pub fn write(&mut self, bytes: &[u8]) -> (usize, bool) {
        let n = bytes.len().min(self.output_space());
        if n == 0 {
            return (0, false);
        }
        ring_write(&self.page, OUT_RING, OUT_SIZE, self.out_prod, &bytes[..n]);
        let old = self.out_prod;
        self.out_prod = old.wrapping_add(n as u32);
        self.page.store_u32(console_offset::OUT_PROD, self.out_prod);
        self.page.fence();
        let event = self.page.load_u32(console_offset::OUT_EVENT);
        (n, event_passed(event, old, self.out_prod))
    }

    /// Call before sleeping on a full output ring: asks for a notification when the backend
    /// next advances `out_cons` (`out_space_event = out_cons + 1`), fences and looks again.
    /// Returns `true` if space is available or the backend advanced meanwhile: look again, do
    /// not sleep. (The armed event may cause one spurious notification later, as with
    /// `io/ring.h` final checks.)
    pub fn request_space_notification(&mut self) -> bool {
        let advanced = self.arm_out_space_event();
        advanced || self.output_space() > 0
    }

    /// Call before sleeping until the backend has consumed all output (a flush): asks for a
    /// notification when the backend next advances `out_cons`, fences and looks again.
    /// Returns `true` if the ring is empty or the backend advanced meanwhile: look again, do
    /// not sleep.
    pub fn request_drain_notification(&mut self) -> bool {
        if self.pending_output() == 0 {
            return true;
        }
        let advanced = self.arm_out_space_event();
        advanced || self.pending_output() == 0
    }

    /// Sets `out_space_event = out_cons + 1`, fences, and returns whether `out_cons` moved
    /// meanwhile. It is armed against a value the backend may already have passed: a backend
    /// that advanced between the load and the store did not see the new event and will not
    /// notify for that advance, so the caller must look again instead of sleeping.
    fn arm_out_space_event(&self) -> bool {
        let out_cons = self.page.load_u32(console_offset::OUT_CONS);
        self.page
            .store_u32(console_offset::OUT_SPACE_EVENT, out_cons.wrapping_add(1));
        self.page.fence();
        self.page.load_u32(console_offset::OUT_CONS) != out_cons
    }

    /// Input bytes waiting (0 … 1024; a backend whose `in_prod` is nonsensical counts as having
    /// produced nothing).
    pub fn pending_input(&self) -> usize {
        let in_prod = self.page.load_u32(console_offset::IN_PROD);
        let pending = in_prod.wrapping_sub(self.in_cons);
        if pending > IN_SIZE {
            0
        } else {
            pending as usize
        }
    }

    /// Copies waiting input into `buf` and consumes it. Returns the number of bytes read (a
    /// [`CONSOLE_EOF`] byte in the input marks the end of the VMM's input) and whether to notify
    /// the backend, which is `true` whenever input was consumed: the backend may be holding
    /// input that did not fit, and the page has no event index for input space (Linux's
    /// `hvc_xen` notifies after every read likewise).
    #[must_use = "a `true` result means the backend must be notified"]
    pub fn read(&mut self, buf: &mut [u8]) -> (usize, bool) {
        let n = buf.len().min(self.pending_input());
        if n == 0 {
            return (0, false);
        }
        ring_read(&self.page, IN_RING, IN_SIZE, self.in_cons, &mut buf[..n]);
        self.in_cons = self.in_cons.wrapping_add(n as u32);
        self.page.store_u32(console_offset::IN_CONS, self.in_cons);
        (n, true)
    }

    /// Call before sleeping for input: if none is waiting, asks for a notification at the next
    /// input byte (`in_event = in_cons + 1`), fences and looks again. Returns `true` if input is
    /// waiting: do not sleep.
    pub fn want_input(&mut self) -> bool {
        if self.pending_input() > 0 {
            return true;
        }
        self.page
            .store_u32(console_offset::IN_EVENT, self.in_cons.wrapping_add(1));
        self.page.fence();
        self.pending_input() > 0
    }
}

/// The VMM's half of the console: consumes output, produces input.
#[derive(Debug)]
pub struct ConsoleBack<P> {
    page: P,
    /// Output consumed (the authoritative `out_cons`; the page's copy is only published).
    out_cons: u32,
    /// Input produced (the authoritative `in_prod`).
    in_prod: u32,
}

impl<P: SharedPage> ConsoleBack<P> {
    /// Attaches to the console page, taking `out_cons` and `in_prod` from it (0 on the fresh
    /// page the domain builder made). From then on the backend's copies are authoritative.
    pub fn attach(page: P) -> Self {
        let out_cons = page.load_u32(console_offset::OUT_CONS);
        let in_prod = page.load_u32(console_offset::IN_PROD);
        Self {
            page,
            out_cons,
            in_prod,
        }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Loads `out_prod` once and returns the output bytes it claims, validated.
    fn unconsumed_output(&self) -> Result<u32, ConsoleError> {
        let out_prod = self.page.load_u32(console_offset::OUT_PROD);
        let unconsumed = out_prod.wrapping_sub(self.out_cons);
        if unconsumed > OUT_SIZE {
            return Err(ConsoleError::Overflow {
                ring: ConsoleRing::Output,
                unconsumed,
                size: OUT_SIZE,
            });
        }
        Ok(unconsumed)
    }

    /// Consumes all output the guest has published: copies it out of the page, passes it to
    /// `sink` in one call, in order, then advances `out_cons`. Returns whether the
    /// guest must be notified (it waits for space and `out_cons` passed `out_space_event`).
    pub fn drain_output(&mut self, mut sink: impl FnMut(&[u8])) -> Result<bool, ConsoleError> {
        let n = self.unconsumed_output()?;
        if n == 0 {
            return Ok(false);
        }
        let mut bytes = [0u8; CONSOLE_OUT_SIZE];
        let bytes = &mut bytes[..n as usize];
        ring_read(&self.page, OUT_RING, OUT_SIZE, self.out_cons, bytes);
        sink(bytes);
        let old = self.out_cons;
        self.out_cons = old.wrapping_add(n);
        self.page.store_u32(console_offset::OUT_CONS, self.out_cons);
        self.page.fence();
        let event = self.page.load_u32(console_offset::OUT_SPACE_EVENT);
        Ok(event_passed(event, old, self.out_cons))
    }

    /// Call before sleeping: if no output is waiting, asks for a notification at the next
    /// output (`out_event = out_cons + 1`), fences and looks again. Returns `true` if output arrived: drain again, do not
    /// sleep. (A guest index that overflows also returns `true`; the next
    /// [`drain_output`](Self::drain_output) reports it.)
    pub fn prepare_to_sleep(&mut self) -> bool {
        if self.page.load_u32(console_offset::OUT_PROD) != self.out_cons {
            return true;
        }
        self.page
            .store_u32(console_offset::OUT_EVENT, self.out_cons.wrapping_add(1));
        self.page.fence();
        self.page.load_u32(console_offset::OUT_PROD) != self.out_cons
    }

    /// Free space in the input ring, validating the guest's `in_cons`.
    pub fn input_space(&self) -> Result<usize, ConsoleError> {
        let in_cons = self.page.load_u32(console_offset::IN_CONS);
        let unconsumed = self.in_prod.wrapping_sub(in_cons);
        if unconsumed > IN_SIZE {
            return Err(ConsoleError::Overflow {
                ring: ConsoleRing::Input,
                unconsumed,
                size: IN_SIZE,
            });
        }
        Ok((IN_SIZE - unconsumed) as usize)
    }

    /// Copies as much of `bytes` as fits into the input ring and publishes it. Returns the
    /// number of bytes accepted (keep the rest and retry on the next wake-up: the guest
    /// notifies after it consumes input) and whether the guest must be notified (`in_prod`
    /// passed `in_event`).
    pub fn push_input(&mut self, bytes: &[u8]) -> Result<(usize, bool), ConsoleError> {
        let n = bytes.len().min(self.input_space()?);
        if n == 0 {
            return Ok((0, false));
        }
        ring_write(&self.page, IN_RING, IN_SIZE, self.in_prod, &bytes[..n]);
        let old = self.in_prod;
        self.in_prod = old.wrapping_add(n as u32);
        self.page.store_u32(console_offset::IN_PROD, self.in_prod);
        self.page.fence();
        let event = self.page.load_u32(console_offset::IN_EVENT);
        Ok((n, event_passed(event, old, self.in_prod)))
    }

    /// Appends the [`CONSOLE_EOF`] byte at the end of input. Returns whether it was accepted
    /// (retry later if the ring was full) and whether the guest must be notified.
    pub fn push_eof(&mut self) -> Result<(bool, bool), ConsoleError> {
        let (n, notify) = self.push_input(&[CONSOLE_EOF])?;
        Ok((n == 1, notify))
    }
}

#[cfg(test)]
mod tests;
