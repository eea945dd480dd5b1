//! Event channels: unbound, closed, backend and out-of-range ports; the port space exhausted.

use super::*;

pub(super) fn evtchn_raw<T>(cmd: u64, arg: &mut T) -> Ret {
    // SAFETY: `arg` is a structure this function's caller owns; the VMM writes at most the
    // structure of `cmd`, and every caller passes the matching (or a larger) structure.
    unsafe { raw(Hypercall::EVENT_CHANNEL_OP, cmd, (arg as *mut T) as u64, 0) }
}

pub(super) fn ports(r: &mut Report) {
    let a = event_channel::alloc_unbound(DOMID_SELF).unwrap_or(guest_sdk::event_channel::Port(0));
    r.ret(
        "ports send on unbound port (dropped)",
        Ret::of(event_channel::send(a)),
        OK,
    );
    event_channel::notify(a);
    r.check(
        "ports notify on unbound port",
        true,
        format_args!("ignored"),
    );
    let _ = event_channel::close(a);
    r.ret(
        "ports send on closed port",
        Ret::of(event_channel::send(a)),
        EINVAL,
    );
    event_channel::notify(a);
    r.ret(
        "ports unmask closed port",
        Ret::of(event_channel::unmask(a)),
        EINVAL,
    );
    r.ret(
        "ports close closed port",
        Ret::of(event_channel::close(a)),
        EINVAL,
    );
    for (what, port) in [
        ("0", 0u32),
        ("4095 (never allocated)", NR_PORTS - 1),
        ("4096", NR_PORTS),
        ("0xffffffff", u32::MAX),
    ] {
        r.ret(
            &alloc::format!("ports send port {what}"),
            Ret::of(event_channel::send(guest_sdk::event_channel::Port(port))),
            EINVAL,
        );
        r.ret(
            &alloc::format!("ports unmask port {what}"),
            Ret::of(event_channel::unmask(guest_sdk::event_channel::Port(port))),
            EINVAL,
        );
        r.ret(
            &alloc::format!("ports close port {what}"),
            Ret::of(event_channel::close(guest_sdk::event_channel::Port(port))),
            EINVAL,
        );
        let got = event_channel::status(guest_sdk::event_channel::Port(port));
        // A port inside the port space that is not in use is simply closed.
        let want = if port != 0 && port < NR_PORTS {
            Ok(event_channel::PortStatus::Closed)
        } else {
            Err(Errno::EINVAL)
        };
        r.check(
            &alloc::format!("ports status port {what}"),
            got == want,
            format_args!("got {got:?}, want {want:?}"),
        );
        event_channel::notify(guest_sdk::event_channel::Port(port));
    }
    // The doorbell with a port number wider than 32 bits.
    // SAFETY: the doorbell takes no pointer.
    unsafe { hypercall5(Hypercall::EVTCHN_NOTIFY, 1 << 40, 0, 0, 0, 0) };
    // SAFETY: as above.
    unsafe { hypercall5(Hypercall::EVTCHN_NOTIFY, u64::MAX, 0, 0, 0, 0) };
    r.check(
        "ports doorbell with 64-bit garbage",
        true,
        format_args!("ignored"),
    );

    r.ret(
        "ports bind_interdomain to a free port",
        Ret::of(
            event_channel::bind_interdomain(DOMID_SELF, guest_sdk::event_channel::Port(3000))
                .map(drop),
        ),
        EINVAL,
    );
    let mut b = BindInterdomain {
        remote_dom: 5,
        remote_port: 1,
        ..Default::default()
    };
    r.ret(
        "ports bind_interdomain remote_dom 5",
        evtchn_raw(EVTCHNOP_BIND_INTERDOMAIN, &mut b),
        EINVAL,
    );
    let mut b = BindInterdomain {
        remote_dom: DOMID_BACKEND,
        remote_port: 1,
        ..Default::default()
    };
    r.ret(
        "ports bind_interdomain to a backend",
        evtchn_raw(EVTCHNOP_BIND_INTERDOMAIN, &mut b),
        EINVAL,
    );
    if let Some(cp) = console::port() {
        r.ret(
            "ports bind_interdomain to the console port",
            Ret::of(event_channel::bind_interdomain(DOMID_SELF, cp).map(drop)),
            EINVAL,
        );
        r.ret(
            "ports close the console port",
            Ret::of(event_channel::close(cp)),
            EINVAL,
        );
        r.ret(
            "ports EVTCHNOP_send on the console port",
            Ret::of(event_channel::send(cp)),
            OK,
        );
    }
    if let Some((_, d)) = device::find(kind::LOOPBACK) {
        r.ret(
            "ports close a device port",
            Ret::of(event_channel::close(guest_sdk::event_channel::Port(
                d.evtchn,
            ))),
            EINVAL,
        );
        r.ret(
            "ports send on an unconnected device port",
            Ret::of(event_channel::send(guest_sdk::event_channel::Port(
                d.evtchn,
            ))),
            OK,
        );
    }
    let mut a = AllocUnbound {
        dom: 5,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    r.ret(
        "ports alloc_unbound dom 5",
        evtchn_raw(EVTCHNOP_ALLOC_UNBOUND, &mut a),
        EINVAL,
    );
    let mut a = AllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_BACKEND,
        port: 0,
    };
    r.ret(
        "ports alloc_unbound for a backend",
        evtchn_raw(EVTCHNOP_ALLOC_UNBOUND, &mut a),
        EINVAL,
    );
    let mut v = BindVirq {
        virq: virq::TIMER,
        vcpu: 1,
        port: 0,
    };
    r.ret(
        "ports bind_virq vcpu 1",
        evtchn_raw(EVTCHNOP_BIND_VIRQ, &mut v),
        EINVAL,
    );
    let mut v = BindVirq {
        virq: u32::MAX,
        vcpu: 0,
        port: 0,
    };
    r.ret(
        "ports bind_virq 0xffffffff",
        evtchn_raw(EVTCHNOP_BIND_VIRQ, &mut v),
        EINVAL,
    );
    let mut s = Status {
        dom: 5,
        port: 1,
        ..Default::default()
    };
    r.ret(
        "ports status of dom 5",
        evtchn_raw(EVTCHNOP_STATUS, &mut s),
        EINVAL,
    );
    let mut p = PortArg { port: 1 };
    r.ret(
        "ports unknown EVTCHNOP 77",
        evtchn_raw(77, &mut p),
        Ret::err(Errno::ENOSYS),
    );
    r.ret(
        "ports EVTCHNOP_reset (10) unsupported",
        evtchn_raw(10, &mut p),
        Ret::err(Errno::ENOSYS),
    );

    // Exhaust the port space, then give everything back.
    let mut taken = Vec::new();
    let last = loop {
        match event_channel::alloc_unbound(DOMID_SELF) {
            Ok(p) if taken.len() < NR_PORTS as usize => taken.push(p),
            Ok(p) => {
                taken.push(p);
                break Ret(0xdead);
            }
            Err(e) => break Ret::err(e),
        }
    };
    r.check(
        "ports exhausting the port space",
        last == Ret::err(Errno::ENOSPC)
            && taken.iter().all(|&p| {
                p != guest_sdk::event_channel::Port(0)
                    && p < guest_sdk::event_channel::Port(NR_PORTS)
            }),
        format_args!("{} ports, then {last}", taken.len()),
    );
    let closed = taken
        .iter()
        .filter(|&&p| event_channel::close(p).is_ok())
        .count();
    r.check(
        "ports closing them all",
        closed == taken.len(),
        format_args!("{closed} closed"),
    );
    let again = event_channel::alloc_unbound(DOMID_SELF);
    r.check(
        "ports allocation works again",
        again.is_ok(),
        format_args!("{again:?}"),
    );
    if let Ok(p) = again {
        let _ = event_channel::close(p);
    }
    // Binding a port to itself.
    if let Ok(p) = event_channel::alloc_unbound(DOMID_SELF) {
        let got = event_channel::bind_interdomain(DOMID_SELF, p);
        let st = event_channel::status(p);
        r.check(
            "ports bind a port's peer twice",
            got.is_ok() && event_channel::bind_interdomain(DOMID_SELF, p).is_err(),
            format_args!("first {got:?}, status {st:?}"),
        );
        if let Ok(q) = got {
            let _ = event_channel::close(q);
        }
        let _ = event_channel::close(p);
    }
}
