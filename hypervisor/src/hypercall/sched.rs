//! `sched_op` (29): yield, block, shutdown and fault reports (docs/abi.md §3.6).

use super::{Action, Context, Control};
use crate::outcome::{FaultInfo, GuestExit};
use crossbeam_channel::RecvTimeoutError;
use parapet_abi::Errno;
use parapet_abi::sched::{
    FaultReport, SCHEDOP_BLOCK, SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown,
    reason,
};

pub(super) fn sched_op(ctx: &mut Context<'_>, [cmd, arg, ..]: [u64; 5]) -> Action {
    match cmd {
        SCHEDOP_YIELD => Action::Return(0),
        SCHEDOP_BLOCK => block(ctx),
        SCHEDOP_SHUTDOWN => shutdown(ctx, arg),
        SCHEDOP_FAULT => match ctx.ram.read_obj::<FaultReport>(arg) {
            Ok(report) => Action::Stop(GuestExit::Fault(FaultInfo::from_guest_report(&report))),
            Err(e) => Err(e).into(),
        },
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

/// Sleeps until the armed deadline (the only wake-up source so far) or a stop request.
fn block(ctx: &mut Context<'_>) -> Action {
    let Some(deadline) = ctx.timer.deadline else {
        return Action::Return(0);
    };
    let wake = ctx.instant_of(deadline);
    loop {
        let now = std::time::Instant::now();
        if now >= wake {
            break;
        }
        match ctx.control.recv_timeout(wake - now) {
            Ok(Control::Stop) => return Action::Stop(GuestExit::Stopped),
            Err(RecvTimeoutError::Timeout) => {}
            // Nobody can stop us any more; sleep out the deadline.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wake - now),
        }
    }
    ctx.timer.deadline = None;
    Action::Return(0)
}

fn shutdown(ctx: &mut Context<'_>, arg: u64) -> Action {
    let request: SchedShutdown = match ctx.ram.read_obj(arg) {
        Ok(r) => r,
        Err(e) => return Err(e).into(),
    };
    Action::Stop(match request.reason {
        reason::POWEROFF => GuestExit::Poweroff(request.exit_code as u8),
        reason::REBOOT => GuestExit::Reboot,
        reason::CRASH => GuestExit::Crash,
        reason::WATCHDOG => GuestExit::Watchdog,
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
            ctx.ram.write_obj(0x100, &req).unwrap();
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
        assert_eq!(ret(shutdown_with(reason::SUSPEND, 0)), einval);
        assert_eq!(ret(shutdown_with(99, 0)), einval);
    }

    #[test]
    fn bad_pointers_and_commands_are_errors() {
        with_context(|ctx| {
            let efault = Errno::EFAULT.to_ret();
            assert_eq!(
                ret(sched_op(ctx, [SCHEDOP_SHUTDOWN, 1 << 20, 0, 0, 0])),
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
    fn block_returns_at_once_without_a_timer_and_after_the_deadline_with_one() {
        with_context(|ctx| {
            assert_eq!(ret(sched_op(ctx, [SCHEDOP_BLOCK, 0, 0, 0, 0])), 0);
            let deadline = ctx.now_ns() + 2_000_000;
            ctx.timer.deadline = Some(deadline);
            assert_eq!(ret(sched_op(ctx, [SCHEDOP_BLOCK, 0, 0, 0, 0])), 0);
            assert!(ctx.now_ns() >= deadline);
            assert_eq!(ctx.timer.deadline, None, "the one-shot timer fired");
        });
    }
}
