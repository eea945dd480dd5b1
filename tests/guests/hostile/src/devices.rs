//! Devices: connecting twice, bogus grants and ring counts, unknown devices and commands; a ring
//! whose event indices and padding the guest scribbles over.

use super::*;
use guest_sdk::println;

pub(super) fn devices(r: &mut Report) {
    let dop = Hypercall::DEVICE_OP;
    r.ret(
        "devices connect index 7 (no such device)",
        Ret::of(device::connect(7, &[guest_sdk::grant_table::GrantRef(1)])),
        Ret::err(Errno::ENOENT),
    );
    r.ret(
        "devices connect index 0xffffffff",
        Ret::of(device::connect(
            u32::MAX,
            &[guest_sdk::grant_table::GrantRef(1)],
        )),
        Ret::err(Errno::ENOENT),
    );
    // SAFETY: DEVOP_disconnect takes an index; 99 names no device.
    let got = unsafe { raw(dop, DEVOP_DISCONNECT, 99, 0) };
    r.ret("devices disconnect index 99", got, Ret::err(Errno::ENOENT));
    // SAFETY: unknown command: nothing is accessed.
    let got = unsafe { raw(dop, 5, 0, 0) };
    r.ret("devices unknown DEVOP 5", got, Ret::err(Errno::ENOSYS));
    let Some((index, _)) = device::find(kind::LOOPBACK) else {
        println!("skip devices loopback: no loopback device (run with --loopback)");
        return;
    };
    // SAFETY: DEVOP_disconnect takes an index.
    let got = unsafe { raw(dop, DEVOP_DISCONNECT, u64::from(index), 0) };
    r.check(
        "devices disconnect a device that is not connected",
        got == OK || got == EINVAL || got == Ret::err(Errno::ENOENT),
        format_args!("got {got}"),
    );
    let ring = PageBox::new();
    let Ok(good) = grant_table::grant_access(ring.frame(), DOMID_BACKEND, false) else {
        return;
    };
    for (what, n) in [("0", 0u32), ("2", 2), ("5", 5), ("0xffffffff", u32::MAX)] {
        let arg = Connect {
            device: index,
            nr_rings: n,
            rings: [good.0; 4],
        };
        r.ret(
            &alloc::format!("devices connect with nr_rings {what}"),
            Ret::of(device::connect_raw(&arg)),
            EINVAL,
        );
    }
    let mut bogus = Vec::new();
    let reserve = |frame: u32, domid: u16, flags: u16| {
        let g = grant_table::reserve().ok()?;
        let _ = grant_table::set_entry(g, frame, domid, flags);
        Some(g)
    };
    let frame = ring.frame() as u32;
    let beyond = (ram_end() / PAGE_SIZE + 1) as u32;
    for (what, g) in [
        ("gref 0", Some(0)),
        (
            "gref outside the table",
            Some(grant_table::nr_entries() + 3),
        ),
        (
            "an entry for DOMID_GUEST",
            reserve(frame, DOMID_GUEST, gtf::PERMIT_ACCESS).map(|g| g.0),
        ),
        (
            "an entry without permit_access",
            reserve(frame, DOMID_BACKEND, 0).map(|g| g.0),
        ),
        (
            "a read-only entry",
            reserve(frame, DOMID_BACKEND, gtf::PERMIT_ACCESS | gtf::READONLY).map(|g| g.0),
        ),
        (
            "a frame below 1 MiB",
            reserve(0x5, DOMID_BACKEND, gtf::PERMIT_ACCESS).map(|g| g.0),
        ),
        (
            "a frame beyond RAM",
            reserve(beyond, DOMID_BACKEND, gtf::PERMIT_ACCESS).map(|g| g.0),
        ),
        (
            "the grant table's own frame",
            reserve(
                (start_info().grant_table / PAGE_SIZE) as u32,
                DOMID_BACKEND,
                gtf::PERMIT_ACCESS,
            )
            .map(|g| g.0),
        ),
    ] {
        let Some(g) = g else { continue };
        let got = Ret::of(device::connect(
            index,
            &[guest_sdk::grant_table::GrantRef(g)],
        ));
        r.ret(
            &alloc::format!("devices connect with {what}"),
            got,
            Ret::err(Errno::EPERM),
        );
        if got == OK {
            let _ = device::disconnect(index);
        }
        if g != 0 && g < grant_table::nr_entries() {
            bogus.push(g);
        }
    }
    let flags = grant_table::entry(good).map(|e| e.flags);
    r.check(
        "devices refused connects leave the good grant alone",
        flags == Some(gtf::PERMIT_ACCESS),
        format_args!("flags {flags:?}"),
    );
    for g in bogus {
        let _ = grant_table::end_access(guest_sdk::grant_table::GrantRef(g));
    }
    let _ = grant_table::end_access(good);
    drop(ring);
    // Connect twice.
    if let Some(lb) = loopback(r, "devices twice") {
        let ring2 = PageBox::new();
        if let Ok(g2) = grant_table::grant_access(ring2.frame(), DOMID_BACKEND, false) {
            let got = Ret::of(device::connect(lb.index(), &[g2]));
            r.ret("devices connect twice", got, Ret::err(Errno::EBUSY));
            let flags = grant_table::entry(g2).map(|e| e.flags);
            r.check(
                "devices refused second ring not mapped",
                flags == Some(gtf::PERMIT_ACCESS),
                format_args!("flags {flags:?}"),
            );
            let _ = grant_table::end_access(g2);
        }
        let got = Ret::of(device::connect(lb.index(), &[lb.ring_gref()]));
        r.ret(
            "devices connect twice with the same ring",
            got,
            Ret::err(Errno::EBUSY),
        );
        disconnect(r, "devices twice", lb);
    }
}

pub(super) fn ring_events(r: &mut Report) {
    let Some(mut lb) = loopback(r, "ring-events") else {
        return;
    };
    let got = one(&mut lb, request(1, LOOPBACK_OP_ECHO, 0, 0, 0, 1));
    r.check(
        "ring-events device works",
        got == Some((0, 1)),
        format_args!("{got:?}"),
    );
    let page = lb.ring().page();
    page.store_u32(ring_offset::REQ_EVENT, 0xdead_beef);
    page.store_u32(ring_offset::RSP_EVENT, 0x1234_5678);
    page.write(16, &[0xff; 48]);
    lb.kick();
    // Responses may now go unannounced (rsp_event is garbage): poll with a deadline.
    let _ = lb.submit(&request(2, LOOPBACK_OP_ECHO, 0, 0, 0, 2));
    lb.kick();
    let deadline = time::now() + Duration::from_secs(1);
    let mut got = None;
    while got.is_none() && time::now() < deadline {
        got = lb.poll_response();
        guest_sdk::timer::sleep(Duration::from_millis(1));
    }
    let got = got.map(|r| (r.id, r.status, r.value));
    r.check(
        "ring-events scribbled event indices: the backend still answers",
        got == Some((2, 0, 2)),
        format_args!("{got:?}"),
    );
    disconnect(r, "ring-events", lb);
}
