//! Hypercall dispatch: one table indexed by hypercall number, one module per hypercall.
//!
//! Handlers receive the five argument registers as the guest left them. Everything they read
//! from guest memory is copied out first and validated after; a bad argument is answered with an
//! error code, never a panic.

mod console;
mod multicall;
mod sched;
mod timer;
mod version;

use crate::memory::GuestRam;
use crate::outcome::GuestExit;
use crossbeam_channel::Receiver;
use parapet_abi::Errno;
use parapet_abi::hypercall::{Hypercall, NR_STUBS};
use std::io::Write;
use std::time::Instant;

pub use timer::Timer;

/// What the vCPU loop does after a hypercall.
#[derive(Debug)]
pub enum Action {
    /// Put this in RAX and resume the guest.
    Return(u64),
    /// Stop the guest.
    Stop(GuestExit),
}

impl From<Result<u64, Errno>> for Action {
    fn from(r: Result<u64, Errno>) -> Action {
        Action::Return(match r {
            Ok(v) => v,
            Err(e) => e.to_ret(),
        })
    }
}

/// Messages to a running vCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop now (timeout, or the VMM is shutting down).
    Stop,
}

/// What a handler may touch.
#[derive(Debug)]
pub struct Context<'a> {
    /// Guest RAM.
    pub ram: &'a GuestRam,
    /// The vCPU's one-shot timer.
    pub timer: &'a mut Timer,
    /// Control messages (wakes a blocked vCPU).
    pub control: &'a Receiver<Control>,
    /// Where console output goes.
    pub console: &'a mut dyn ConsoleSink,
    /// System time 0.
    pub boot: Instant,
}

/// The console's output side.
pub trait ConsoleSink: std::fmt::Debug {
    /// Writes guest console bytes.
    fn write_console(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// Console output to the VMM's stdout, flushed per write so it interleaves with logs correctly.
#[derive(Debug, Default)]
pub struct Stdout;

impl ConsoleSink for Stdout {
    fn write_console(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

type Handler = fn(&mut Context<'_>, [u64; 5]) -> Action;

/// The dispatch table, indexed by hypercall number.
const TABLE: [Option<Handler>; NR_STUBS] = {
    let mut t: [Option<Handler>; NR_STUBS] = [None; NR_STUBS];
    t[Hypercall::MULTICALL.0 as usize] = Some(multicall::multicall);
    t[Hypercall::SET_TIMER_OP.0 as usize] = Some(timer::set_timer_op);
    t[Hypercall::XEN_VERSION.0 as usize] = Some(version::xen_version);
    t[Hypercall::CONSOLE_IO.0 as usize] = Some(console::console_io);
    t[Hypercall::SCHED_OP.0 as usize] = Some(sched::sched_op);
    t
};

/// Runs hypercall `nr`. Unknown numbers get `-ENOSYS`.
pub fn dispatch(ctx: &mut Context<'_>, nr: u64, args: [u64; 5]) -> Action {
    match usize::try_from(nr)
        .ok()
        .and_then(|i| TABLE.get(i).copied().flatten())
    {
        Some(handler) => handler(ctx, args),
        None => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A context over a small RAM for handler unit tests.
    use super::*;

    #[derive(Debug, Default)]
    pub struct Captured(pub Vec<u8>);

    impl ConsoleSink for Captured {
        fn write_console(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    /// Calls `f` with a context over 1 MiB of RAM; returns its result and the console output.
    pub fn with_context<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> (R, Vec<u8>) {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut timer = Timer::default();
        let (_tx, rx) = crossbeam_channel::unbounded();
        let mut out = Captured::default();
        let mut ctx = Context {
            ram: &ram,
            timer: &mut timer,
            control: &rx,
            console: &mut out,
            boot: Instant::now(),
        };
        let r = f(&mut ctx);
        (r, out.0)
    }

    pub fn ret(a: Action) -> u64 {
        match a {
            Action::Return(v) => v,
            Action::Stop(e) => panic!("unexpected stop: {e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn unknown_numbers_are_enosys() {
        with_context(|ctx| {
            for nr in [0, 99, 127, 128, u64::MAX] {
                assert_eq!(
                    ret(dispatch(ctx, nr, [0; 5])),
                    Errno::ENOSYS.to_ret(),
                    "nr {nr}"
                );
            }
        });
    }
}
