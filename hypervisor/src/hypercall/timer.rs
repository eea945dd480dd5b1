//! `set_timer_op` (15): the vCPU's one-shot timer (docs/abi.md §3.7).

use super::{Action, Context};
use std::time::Instant;

impl Context<'_> {
    /// System time now, in ns.
    #[cfg(test)]
    pub fn now_ns(&self) -> u64 {
        self.dom.clock.now_ns()
    }

    /// The host instant of system time `ns`.
    pub fn instant_of(&self, ns: u64) -> Instant {
        self.dom.clock.instant_of(ns)
    }
}

pub(super) fn set_timer_op(ctx: &mut Context<'_>, [deadline, ..]: [u64; 5]) -> Action {
    let at = (deadline != 0).then(|| ctx.instant_of(deadline));
    ctx.dom.timer.arm(at);
    Action::Return(0)
}
