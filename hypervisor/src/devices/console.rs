//! The PV console backend: guest output from the console page to the VMM's standard output,
//! standard input to the guest (docs/abi.md §9.2).
//!
//! When standard input is the VMM's controlling terminal, the backend reads it only while the
//! VMM is in the terminal's foreground process group: a background job (`parapet run … &`)
//! leaves the terminal's input to the foreground job and looks again every
//! `BACKGROUND_RECHECK` until it is brought to the foreground (`fg`). The VMM ignores
//! `SIGTTIN` and `SIGTTOU` ([`crate::sys::ignore_terminal_stops`]), so job control never stops
//! it, and a read that fails because the VMM was moved to the background meanwhile means "no
//! input now", not the end of input.

use super::{BackendIo, BackendLink, BackendThread, Wake};
use crate::memory::GuestPage;
use parapet_abi::console::CONSOLE_IN_SIZE;
use pv_drivers::console::ConsoleBack;
use std::io::{IsTerminal, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often a backend whose standard input is a terminal it may not read (the VMM is a
/// background job) looks whether the VMM has come to the foreground. Only the console thread
/// wakes; the guest does not exit.
const BACKGROUND_RECHECK: Duration = Duration::from_millis(250);

/// What the console gives the guest as input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleInput {
    /// Standard input, then its end.
    Stdin,
    /// These bytes, and no end: one warm-reset invocation's request (docs/snapshots.md).
    Bytes(Vec<u8>),
}

/// The console backend's state: its view of the console page and the input on its way in.
/// Shared between the console thread and, for a warm reset ([`Console::pause`]), the vCPU
/// thread.
struct Shared {
    console: ConsoleBack<GuestPage>,
    input: Input,
}

/// A running console backend.
#[derive(Debug)]
pub struct Console {
    thread: BackendThread,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Console {
    /// Stops the backend after it drained the guest's last output.
    pub fn stop(self) {
        self.thread.stop();
    }

    /// Holds the console for a warm reset: drains the stopped guest's output to standard output
    /// and keeps the backend thread off the console page until [`ConsolePause::resume`].
    pub fn pause(&self) -> ConsolePause<'_> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Shared { console, .. } = &mut *shared;
        if let Err(e) = drain(console, &|| {}, &mut std::io::stdout(), true) {
            tracing::warn!("console: {e}");
        }
        ConsolePause(shared)
    }
}

/// The console held for a warm reset ([`Console::pause`]).
pub struct ConsolePause<'a>(MutexGuard<'a, Shared>);

impl ConsolePause<'_> {
    /// Re-attaches the backend to the (reset) console page with `input` as the next
    /// invocation's input, and lets the backend thread go on.
    pub fn resume(mut self, input: Vec<u8>) {
        let shared = &mut *self.0;
        shared.console = ConsoleBack::attach(shared.console.page().clone());
        shared.input = Input::from(ConsoleInput::Bytes(input));
        let Shared { console, input } = shared;
        if let Err(e) = input.deliver(console, &|| {}) {
            tracing::warn!("console: {e}");
        }
    }
}

/// Starts the console backend on the console `page`, woken by `kick`, answering on `port`;
/// the guest's output goes to standard output, and `input` to the guest.
pub fn start(
    link: &BackendLink,
    page: GuestPage,
    port: u32,
    kick: std::sync::Arc<vmm_sys_util::eventfd::EventFd>,
    input: ConsoleInput,
) -> std::io::Result<Console> {
    let shared = Arc::new(Mutex::new(Shared {
        console: ConsoleBack::attach(page),
        input: Input::from(input),
    }));
    let theirs = shared.clone();
    let thread =
        BackendThread::spawn(crate::seccomp::Role::Console, kick, port, link, move |io| {
            serve(io, &theirs, std::io::stdout())
        })?;
    Ok(Console { thread, shared })
}

impl From<ConsoleInput> for Input {
    fn from(input: ConsoleInput) -> Input {
        match input {
            ConsoleInput::Stdin => Input {
                open: true,
                pending: Vec::new(),
                eof_sent: false,
                terminal: std::io::stdin().is_terminal(),
            },
            ConsoleInput::Bytes(pending) => Input {
                open: false,
                pending,
                eof_sent: true,
                terminal: false,
            },
        }
    }
}

/// Serves the console page until the VMM stops the backend; drains the output ring before it
/// returns.
fn serve(io: BackendIo, shared: &Mutex<Shared>, mut out: impl Write) {
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    let notify = || io.notify_guest();
    // Start awake, as the protocol has it (pv_drivers::console): `out_event` starts at 0, which
    // no guest write passes, so the guest rings the doorbell for output only once a drain has
    // armed it (`prepare_to_sleep`). A backend that slept before its first drain would leave
    // the guest's output in the ring until something else woke it: input, a full ring, or the
    // guest's flush before it powers off.
    let mut more = true;
    loop {
        let stdin = lock().input.source();
        // Still busy after a bounded drain: only look for a stop or input, do not sleep.
        let wake = if more {
            io.check(stdin.fd())
        } else if stdin == Source::Background {
            io.wait_at_most(None, BACKGROUND_RECHECK)
        } else {
            io.wait(stdin.fd())
        };
        let mut guard = lock();
        let Shared { console, input } = &mut *guard;
        more = match drain(console, &notify, &mut out, wake == Wake::Stop) {
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
        if let Err(e) = input.deliver(console, &notify) {
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
    notify_guest: &dyn Fn(),
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
            notify_guest();
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
    /// Standard input is a terminal: read it only while the VMM is in its foreground.
    terminal: bool,
}

/// Where the next input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Standard input: wait for it to be readable.
    Stdin,
    /// Nowhere now: standard input ended, or input that did not fit in the ring waits for the
    /// guest to consume some.
    Nothing,
    /// Standard input is the terminal of a foreground job this VMM is not part of: do not read
    /// it, look again later.
    Background,
}

impl Source {
    /// The descriptor to wait on.
    fn fd(self) -> Option<RawFd> {
        (self == Source::Stdin).then_some(0)
    }
}

impl Input {
    fn source(&self) -> Source {
        if !self.open || !self.pending.is_empty() {
            Source::Nothing
        } else if self.terminal && crate::sys::stdin_in_background() {
            Source::Background
        } else {
            Source::Stdin
        }
    }

    /// Reads what standard input has (it polled readable).
    fn read(&mut self) {
        // The VMM may have been moved to the background since the poll began (Ctrl-Z, `bg`):
        // the input is the foreground job's.
        if self.terminal && crate::sys::stdin_in_background() {
            return;
        }
        let mut buf = [0u8; CONSOLE_IN_SIZE];
        match crate::sys::read_stdin(&mut buf) {
            Ok(0) => self.open = false,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            // Moved to the background between the check and the read: no input now. (A terminal
            // that hung up may fail with EIO too, but then has no foreground group to be in the
            // background of: its input ends, as below.)
            Err(e)
                if self.terminal
                    && e.raw_os_error() == Some(libc::EIO)
                    && crate::sys::stdin_in_background() => {}
            Err(_) => self.open = false,
        }
    }

    /// Pushes what the ring takes; retried on the next wake-up (the guest notifies after it
    /// consumes input).
    fn deliver(
        &mut self,
        console: &mut ConsoleBack<GuestPage>,
        notify_guest: &dyn Fn(),
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
            notify_guest();
        }
        Ok(())
    }
}
