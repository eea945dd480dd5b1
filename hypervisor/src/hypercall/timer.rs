//! `set_timer_op` (15) and the vCPU's one-shot timer (docs/abi.md §3.7).

use super::{Action, Context};
use std::time::{Duration, Instant};

/// The vCPU's one-shot timer, in system time (ns since boot).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer {
    /// The armed deadline.
    pub deadline: Option<u64>,
}

impl Context<'_> {
    /// System time now, in ns.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.boot.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The host instant of system time `ns`.
    pub fn instant_of(&self, ns: u64) -> Instant {
        self.boot
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or_else(|| self.boot + Duration::from_secs(u32::MAX.into()))
    }
}

pub(super) fn set_timer_op(ctx: &mut Context<'_>, [deadline, ..]: [u64; 5]) -> Action {
    ctx.timer.deadline = (deadline != 0).then_some(deadline);
    Action::Return(0)
}
