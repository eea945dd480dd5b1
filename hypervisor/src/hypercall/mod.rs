//! Hypercall dispatch: one table indexed by hypercall number, one module per hypercall.
//!
//! Handlers receive the five argument registers as the guest left them. Everything they read
//! from guest memory is copied out first and validated after; a bad argument is answered with an
//! error code, never a panic.

mod console;
mod device;
mod event_channel;
mod grant_table;
mod multicall;
mod sched;
mod timer;
mod version;

use crate::domain::Domain;
use crate::guest_console::ConsoleSink;
use crate::memory::GuestRam;
use crate::outcome::GuestExit;
use parapet_abi::Errno;
use parapet_abi::hypercall::{Hypercall, NR_STUBS};

/// What the vCPU loop does after a hypercall.
#[derive(Debug)]
pub enum Action {
    /// Put this in RAX and resume the guest.
    Return(u64),
    /// Stop the guest.
    Stop(GuestExit),
    /// Return 0 and halt the vCPU until an interrupt, with event delivery enabled
    /// (`SCHEDOP_block`).
    Block,
}

impl From<Result<u64, Errno>> for Action {
    fn from(r: Result<u64, Errno>) -> Action {
        Action::Return(match r {
            Ok(v) => v,
            Err(e) => e.to_ret(),
        })
    }
}

/// What a handler may touch.
#[derive(Debug)]
pub struct Context<'a> {
    /// The domain.
    pub dom: &'a Domain,
    /// Guest RAM (`dom.ram`).
    pub ram: &'a GuestRam,
    /// Where console output goes.
    pub console: &'a mut dyn ConsoleSink,
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
    t[Hypercall::EVENT_CHANNEL_OP.0 as usize] = Some(event_channel::event_channel_op);
    t[Hypercall::GRANT_TABLE_OP.0 as usize] = Some(grant_table::grant_table_op);
    t[Hypercall::DEVICE_OP.0 as usize] = Some(device::device_op);
    t[Hypercall::EVTCHN_NOTIFY.0 as usize] = Some(event_channel::evtchn_notify);
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

    /// Calls `f` with a context over 4 MiB of RAM laid out like a guest's (shared info at
    /// 0x2000, grant table at 0xc000); returns its result and the console output.
    pub fn with_context<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> (R, Vec<u8>) {
        let ram = std::sync::Arc::new(GuestRam::new(4 << 20).unwrap());
        let dom = Domain::new(
            ram.clone(),
            None,
            crate::domain::SystemClock::starting_at(std::time::Instant::now()),
        );
        let mut out = Captured::default();
        let mut ctx = Context {
            dom: &dom,
            ram: &ram,
            console: &mut out,
        };
        let r = f(&mut ctx);
        (r, out.0)
    }

    pub fn ret(a: Action) -> u64 {
        match a {
            Action::Return(v) => v,
            other => panic!("unexpected {other:?}"),
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
            for nr in [0, 99, 126, 128, u64::MAX] {
                assert_eq!(
                    ret(dispatch(ctx, nr, [0; 5])),
                    Errno::ENOSYS.to_ret(),
                    "nr {nr}"
                );
            }
        });
    }
}
