//! `event_channel_op` (32) and the `evtchn_notify` doorbell (127) (docs/abi.md §7).

use super::{Action, Context};
use parapet_abi::Errno;
use parapet_abi::event_channel::{
    AllocUnbound, BindInterdomain, BindVirq, DOMID_GUEST, DOMID_SELF, DomId,
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE,
    EVTCHNOP_SEND, EVTCHNOP_STATUS, EVTCHNOP_UNMASK, PortArg, Status,
};
use vm_memory::GuestAddress;
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub(super) fn event_channel_op(ctx: &mut Context<'_>, [cmd, arg, ..]: [u64; 5]) -> Action {
    let ev = &*ctx.dom.event_channels;
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => update(ctx, arg, |a: &mut AllocUnbound| {
            if !is_guest(a.dom) || !is_guest(a.remote_dom) {
                return Err(Errno::EINVAL);
            }
            a.port = ev.alloc_unbound()?;
            Ok(())
        }),
        EVTCHNOP_BIND_INTERDOMAIN => update(ctx, arg, |b: &mut BindInterdomain| {
            if !is_guest(b.remote_dom) {
                return Err(Errno::EINVAL);
            }
            b.local_port = ev.bind_loop(b.remote_port)?;
            Ok(())
        }),
        EVTCHNOP_BIND_VIRQ => update(ctx, arg, |b: &mut BindVirq| {
            if b.vcpu != 0 {
                return Err(Errno::EINVAL);
            }
            b.port = ev.bind_virq(b.virq)?;
            Ok(())
        }),
        EVTCHNOP_STATUS => update(ctx, arg, |s: &mut Status| {
            if !is_guest(s.dom) {
                return Err(Errno::EINVAL);
            }
            (s.status, s.detail) = ev.status(s.port)?;
            s.vcpu = 0;
            Ok(())
        }),
        EVTCHNOP_CLOSE => port_op(ctx, arg, |p| ev.close(p)),
        EVTCHNOP_SEND => port_op(ctx, arg, |p| ev.send(p)),
        EVTCHNOP_UNMASK => port_op(ctx, arg, |p| ev.unmask(p)),
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

/// The doorbell's slow path: a notification on a port no backend thread serves directly.
pub(super) fn evtchn_notify(ctx: &mut Context<'_>, [port, ..]: [u64; 5]) -> Action {
    if let Ok(port) = u32::try_from(port) {
        let _ = ctx.dom.event_channels.send(port);
    }
    Action::Return(0)
}

fn is_guest(dom: DomId) -> bool {
    dom == DOMID_SELF || dom == DOMID_GUEST
}

/// Copies a `T` in, runs `f` on the copy, and copies it back out if `f` succeeded.
fn update<T: FromBytes + IntoBytes + Immutable>(
    ctx: &mut Context<'_>,
    gpa: u64,
    f: impl FnOnce(&mut T) -> Result<(), Errno>,
) -> Action {
    let run = || {
        let mut value: T = ctx.ram.read_obj(GuestAddress(gpa))?;
        f(&mut value)?;
        ctx.ram.write_obj(GuestAddress(gpa), &value)?;
        Ok(0)
    };
    run().into()
}

fn port_op(ctx: &mut Context<'_>, gpa: u64, f: impl FnOnce(u32) -> Result<(), Errno>) -> Action {
    let run = || {
        let arg: PortArg = ctx.ram.read_obj(GuestAddress(gpa))?;
        f(arg.port).map(|()| 0)
    };
    run().into()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;
    use parapet_abi::event_channel::status;

    #[test]
    fn a_guest_loop_through_hypercalls() {
        with_context(|ctx| {
            let alloc = AllocUnbound {
                dom: DOMID_SELF,
                remote_dom: DOMID_SELF,
                port: 0,
            };
            ctx.ram.write_obj(GuestAddress(0x1000), &alloc).unwrap();
            assert_eq!(
                ret(event_channel_op(
                    ctx,
                    [EVTCHNOP_ALLOC_UNBOUND, 0x1000, 0, 0, 0]
                )),
                0
            );
            let a = ctx
                .ram
                .read_obj::<AllocUnbound>(GuestAddress(0x1000))
                .unwrap()
                .port;
            assert_ne!(a, 0);
            let bind = BindInterdomain {
                remote_dom: DOMID_SELF,
                remote_port: a,
                ..Default::default()
            };
            ctx.ram.write_obj(GuestAddress(0x1100), &bind).unwrap();
            assert_eq!(
                ret(event_channel_op(
                    ctx,
                    [EVTCHNOP_BIND_INTERDOMAIN, 0x1100, 0, 0, 0]
                )),
                0
            );
            let b = ctx
                .ram
                .read_obj::<BindInterdomain>(GuestAddress(0x1100))
                .unwrap()
                .local_port;
            ctx.ram
                .write_obj(GuestAddress(0x1200), &PortArg { port: b })
                .unwrap();
            assert_eq!(
                ret(event_channel_op(ctx, [EVTCHNOP_SEND, 0x1200, 0, 0, 0])),
                0
            );
            assert!(ctx.dom.event_channels.upcall().is_pending(a));
            let st = Status {
                dom: DOMID_SELF,
                port: b,
                ..Default::default()
            };
            ctx.ram.write_obj(GuestAddress(0x1300), &st).unwrap();
            assert_eq!(
                ret(event_channel_op(ctx, [EVTCHNOP_STATUS, 0x1300, 0, 0, 0])),
                0
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<Status>(GuestAddress(0x1300))
                    .unwrap()
                    .status,
                status::INTERDOMAIN
            );
        });
    }

    #[test]
    fn bad_arguments_are_errors() {
        with_context(|ctx| {
            let efault = Errno::EFAULT.to_ret();
            let einval = Errno::EINVAL.to_ret();
            for cmd in [0, 1, 3, 4, 5, 6, 9] {
                assert_eq!(
                    ret(event_channel_op(ctx, [cmd, 4 << 20, 0, 0, 0])),
                    efault,
                    "cmd {cmd}"
                );
            }
            assert_eq!(
                ret(event_channel_op(ctx, [77, 0, 0, 0, 0])),
                Errno::ENOSYS.to_ret()
            );
            let foreign = AllocUnbound {
                dom: 5,
                remote_dom: DOMID_SELF,
                port: 0,
            };
            ctx.ram.write_obj(GuestAddress(0x1000), &foreign).unwrap();
            assert_eq!(
                ret(event_channel_op(
                    ctx,
                    [EVTCHNOP_ALLOC_UNBOUND, 0x1000, 0, 0, 0]
                )),
                einval
            );
            ctx.ram
                .write_obj(GuestAddress(0x1000), &PortArg { port: 4095 })
                .unwrap();
            assert_eq!(
                ret(event_channel_op(ctx, [EVTCHNOP_SEND, 0x1000, 0, 0, 0])),
                einval
            );
            assert_eq!(ret(evtchn_notify(ctx, [u64::MAX, 0, 0, 0, 0])), 0);
        });
    }
}
