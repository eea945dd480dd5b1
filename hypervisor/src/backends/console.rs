//! The PV console backend: guest output from the console page to the VMM's standard output,
//! standard input to the guest (docs/abi.md §9.2).

use super::{BackendIo, Wake};
use crate::memory::GuestPage;
use parapet_abi::console::CONSOLE_IN_SIZE;
use pv_drivers::console::ConsoleBack;
use std::io::Write;

/// Serves the console page until the VMM stops the backend; drains the output ring before it
/// returns. `input` is whether to forward standard input.
pub fn serve(io: BackendIo, page: GuestPage, mut out: impl Write, input: bool) {
    let mut console = ConsoleBack::attach(page);
    let mut input = Input {
        open: input,
        pending: Vec::new(),
        eof_sent: !input,
    };
    // Start awake, as the protocol has it (pv_drivers::console): `out_event` starts at 0, which
    // no guest write passes, so the guest rings the doorbell for output only once a drain has
    // armed it (`prepare_to_sleep`). A backend that slept before its first drain would leave
    // the guest's output in the ring until something else woke it: input, a full ring, or the
    // guest's flush before it powers off.
    let mut more = true;
    loop {
        let want_stdin = input.open && input.pending.is_empty();
        let stdin = want_stdin.then_some(0);
        // Still busy after a bounded drain: only look for a stop or input, do not sleep.
        let wake = if more {
            io.check(stdin)
        } else {
            io.wait(stdin)
        };
        more = match drain(&mut console, &io, &mut out, wake == Wake::Stop) {
            Ok(more) => more,
            Err(e) => {
                io.guest_fault(e);
                return;
            }
        };
        let Wake::Work { extra, .. } = wake else {
            return;
        };
        if extra {
            input.read();
        }
        if let Err(e) = input.deliver(&mut console, &io) {
            io.guest_fault(e);
            return;
        }
    }
}

/// Rounds (of up to a ring's worth of output each) one [`drain`] makes before it lets the
/// backend look for a stop: a guest that keeps writing cannot keep it draining forever.
const DRAIN_ROUNDS: usize = 16;

/// Copies published output to `out` until a final check finds none (returns `false`), or for
/// [`DRAIN_ROUNDS`] rounds (returns `true`: there may be more, do not sleep). `last` (the VMM
/// is stopping, the guest no longer runs) drains whatever is left without a budget.
fn drain(
    console: &mut ConsoleBack<GuestPage>,
    io: &BackendIo,
    out: &mut impl Write,
    last: bool,
) -> Result<bool, String> {
    for round in 0.. {
        if !last && round == DRAIN_ROUNDS {
            return Ok(true);
        }
        let notify = console
            .drain_output(|bytes| {
                // A closed stdout loses the output, but the guest carries on.
                let _ = out.write_all(bytes).and_then(|()| out.flush());
            })
            .map_err(|e| e.to_string())?;
        if notify {
            io.notify_guest();
        }
        if !console.prepare_to_sleep() {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Standard input on its way into the input ring.
struct Input {
    open: bool,
    pending: Vec<u8>,
    eof_sent: bool,
}

impl Input {
    fn read(&mut self) {
        let mut buf = [0u8; CONSOLE_IN_SIZE];
        match crate::sys::read_stdin(&mut buf) {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
        }
    }

    /// Pushes what the ring takes; retried on the next wake-up (the guest notifies after it
    /// consumes input).
    fn deliver(
        &mut self,
        console: &mut ConsoleBack<GuestPage>,
        io: &BackendIo,
    ) -> Result<(), String> {
        let err = |e: pv_drivers::console::ConsoleError| e.to_string();
        let mut notify = false;
        if !self.pending.is_empty() {
            let (n, wake) = console.push_input(&self.pending).map_err(err)?;
            self.pending.drain(..n);
            notify |= wake;
        }
        if !self.open && self.pending.is_empty() && !self.eof_sent {
            let (sent, wake) = console.push_eof().map_err(err)?;
            self.eof_sent = sent;
            notify |= wake;
        }
        if notify {
            io.notify_guest();
        }
        Ok(())
    }
}
