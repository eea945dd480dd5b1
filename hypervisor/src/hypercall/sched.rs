//! `sched_op` (29): yield, block, shutdown and fault reports (docs/abi.md §3.6).

use super::{Action, Context};
use crate::outcome::{FaultInfo, GuestExit};
use parapet_abi::Errno;
use parapet_abi::sched::{
    FaultReport, SCHEDOP_BLOCK, SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown,
    reason,
};
use vm_memory::GuestAddress;

pub(super) fn sched_op(ctx: &mut Context<'_>, [cmd, arg, ..]: [u64; 5]) -> Action {
    match cmd {
        SCHEDOP_YIELD => Action::Return(0),
        SCHEDOP_BLOCK => block(ctx),
        SCHEDOP_SHUTDOWN => shutdown(ctx, arg),
        SCHEDOP_FAULT => match ctx.ram.read_obj::<FaultReport>(GuestAddress(arg)) {
            Ok(report) => Action::Stop(GuestExit::Fault(FaultInfo::from_guest_report(&report))),
            Err(e) => Err(e).into(),
        },
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

/// `SCHEDOP_block` (docs/abi.md §7.3): returns at once when an event is already there or none can
/// come; otherwise the vCPU loop halts the vCPU with event delivery enabled.
fn block(ctx: &mut Context<'_>) -> Action {
    let dom = ctx.dom;
    if dom.event_channels.upcall().upcall_pending() || dom.timer.take_fired() {
        return Action::Return(0);
    }
    if !dom.timer.armed() && !dom.event_channels.can_wake() {
        return Action::Return(0);
    }
    Action::Block
}

fn shutdown(ctx: &mut Context<'_>, arg: u64) -> Action {
    let request: SchedShutdown = match ctx.ram.read_obj(GuestAddress(arg)) {
        Ok(r) => r,
        Err(e) => return Err(e).into(),
    };
    Action::Stop(match request.reason {
        reason::POWEROFF => GuestExit::Poweroff(request.exit_code as u8),
        reason::REBOOT => GuestExit::Reboot,
        reason::CRASH => GuestExit::Crash,
        reason::WATCHDOG => GuestExit::Watchdog,
        // The vCPU loop answers SUSPEND_RESUMED, which the restored domain sees.
        reason::SUSPEND if ctx.dom.snapshots() => GuestExit::Suspended,
        reason::SUSPEND => return Action::Return(Errno::ENOSYS.to_ret()),
        _ => return Action::Return(Errno::EINVAL.to_ret()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;

    fn shutdown_with(reason: u32, code: u32) -> Action {
        with_context(|ctx| {
            let req = SchedShutdown {
                reason,
                exit_code: code,
            };
            ctx.ram.write_obj(GuestAddress(0x100), &req).unwrap();
            sched_op(ctx, [SCHEDOP_SHUTDOWN, 0x100, 0, 0, 0])
        })
        .0
    }

    #[test]
    fn shutdown_reasons() {
        assert!(matches!(
            shutdown_with(reason::POWEROFF, 0x107),
            Action::Stop(GuestExit::Poweroff(7))
        ));
        assert!(matches!(
            shutdown_with(reason::CRASH, 0),
            Action::Stop(GuestExit::Crash)
        ));
        assert!(matches!(
            shutdown_with(reason::REBOOT, 0),
            Action::Stop(GuestExit::Reboot)
        ));
        assert!(matches!(
            shutdown_with(reason::WATCHDOG, 0),
            Action::Stop(GuestExit::Watchdog)
        ));
        let einval = Errno::EINVAL.to_ret();
        assert_eq!(
            ret(shutdown_with(reason::SUSPEND, 0)),
            Errno::ENOSYS.to_ret(),
            "no --snapshot"
        );
        assert_eq!(ret(shutdown_with(99, 0)), einval);
    }

    #[test]
    fn bad_pointers_and_commands_are_errors() {
        with_context(|ctx| {
            let efault = Errno::EFAULT.to_ret();
            assert_eq!(
                ret(sched_op(ctx, [SCHEDOP_SHUTDOWN, 4 << 20, 0, 0, 0])),
                efault
            );
            assert_eq!(
                ret(sched_op(ctx, [SCHEDOP_FAULT, u64::MAX, 0, 0, 0])),
                efault
            );
            assert_eq!(ret(sched_op(ctx, [77, 0, 0, 0, 0])), Errno::ENOSYS.to_ret());
            assert_eq!(ret(sched_op(ctx, [SCHEDOP_YIELD, 0, 0, 0, 0])), 0);
        });
    }

    #[test]
    fn block_returns_at_once_with_nothing_to_wait_for_and_halts_otherwise() {
        with_context(|ctx| {
            assert_eq!(ret(sched_op(ctx, [SCHEDOP_BLOCK, 0, 0, 0, 0])), 0);
            let deadline = ctx.now_ns() + 60_000_000_000;
            super::super::timer::set_timer_op(ctx, [deadline, 0, 0, 0, 0]);
            assert!(matches!(
                sched_op(ctx, [SCHEDOP_BLOCK, 0, 0, 0, 0]),
                Action::Block
            ));
            super::super::timer::set_timer_op(ctx, [0; 5]);
            assert_eq!(ret(sched_op(ctx, [SCHEDOP_BLOCK, 0, 0, 0, 0])), 0);
        });
    }
}
