//! Grants: references outside the table, foreign and invalid entries, writes through read-only
//! grants, `end_access` while the VMM maps a grant.

use super::*;

pub(super) fn gref_range(r: &mut Report) {
    let page = PageBox::new();
    let n = grant_table::nr_entries();
    for (what, gref) in [
        ("nr_entries", n),
        ("0xffffffff", u32::MAX),
        ("0 (never granted)", 0),
    ] {
        let st = copy1(copy_op(
            copy_gref(guest_sdk::grant_table::GrantRef(gref), 0),
            true,
            copy_frame(page.frame(), 0),
            false,
            8,
        ));
        r.status(
            &alloc::format!("gref-range copy from gref {what}"),
            st,
            gntst::BAD_GNTREF,
        );
        let st = copy1(copy_op(
            copy_frame(page.frame(), 0),
            false,
            copy_gref(guest_sdk::grant_table::GrantRef(gref), 0),
            true,
            8,
        ));
        r.status(
            &alloc::format!("gref-range copy to gref {what}"),
            st,
            gntst::BAD_GNTREF,
        );
    }
    let mut big = copy_op(
        copy_gref(guest_sdk::grant_table::GrantRef(0), 0),
        true,
        copy_frame(page.frame(), 0),
        false,
        8,
    );
    big.source.u = 1 << 40;
    r.status(
        "gref-range copy from gref 2^40",
        copy1(big),
        gntst::BAD_GNTREF,
    );
    let Some(mut lb) = loopback(r, "gref-range loopback") else {
        return;
    };
    for (id, gref) in [(1, n), (2, u32::MAX), (3, 0)] {
        let got = one(&mut lb, request(id, LOOPBACK_OP_SUM, gref, 0, 16, 0));
        r.check(
            &alloc::format!("gref-range loopback SUM gref {gref:#x}"),
            got == Some((LOOPBACK_STATUS_ERROR, 0)),
            format_args!("response {got:?}, want status -1"),
        );
    }
    let got = one(&mut lb, request(9, LOOPBACK_OP_ECHO, 0, 0, 0, 5));
    r.check(
        "gref-range device still works",
        got == Some((0, 5)),
        format_args!("echo {got:?}"),
    );
    disconnect(r, "gref-range", lb);
}

pub(super) fn gref_foreign(r: &mut Report) {
    let page = PageBox::new();
    let frame = page.frame() as u32;
    let beyond = (ram_end() / PAGE_SIZE + 16) as u32;
    let cases: [(&str, u32, u16, u16, i16); 7] = [
        (
            "domid DOMID_GUEST",
            frame,
            DOMID_GUEST,
            gtf::PERMIT_ACCESS,
            gntst::BAD_GNTREF,
        ),
        (
            "domid 0x7ff0 (DOMID_SELF)",
            frame,
            DOMID_SELF,
            gtf::PERMIT_ACCESS,
            gntst::BAD_GNTREF,
        ),
        (
            "flags 0 (not permitted)",
            frame,
            DOMID_BACKEND,
            0,
            gntst::BAD_GNTREF,
        ),
        (
            "type 2 (transitive, unsupported)",
            frame,
            DOMID_BACKEND,
            2,
            gntst::BAD_GNTREF,
        ),
        (
            "only GTF_readonly",
            frame,
            DOMID_BACKEND,
            gtf::READONLY,
            gntst::BAD_GNTREF,
        ),
        (
            "frame 0x10 (below 1 MiB)",
            0x10,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
            gntst::BAD_PAGE,
        ),
        (
            "frame beyond RAM",
            beyond,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
            gntst::BAD_PAGE,
        ),
    ];
    let dst = PageBox::new();
    let mut refs = Vec::new();
    for (what, frame, domid, flags, want) in cases {
        let Ok(g) = grant_table::reserve() else {
            r.check("gref-foreign reserve", false, format_args!("no free entry"));
            return;
        };
        let _ = grant_table::set_entry(g, frame, domid, flags);
        let st = copy1(copy_op(
            copy_gref(g, 0),
            true,
            copy_frame(dst.frame(), 0),
            false,
            64,
        ));
        r.status(&alloc::format!("gref-foreign copy from {what}"), st, want);
        refs.push((what, g));
    }
    // The boot structures cannot be granted: the grant table itself, start-info.
    let si = start_info();
    for (what, gpa) in [("the grant table", si.grant_table), ("start-info", 0x1000)] {
        if let Ok(g) = grant_table::grant_access(gpa / PAGE_SIZE, DOMID_BACKEND, false) {
            let st = copy1(copy_op(
                copy_frame(dst.frame(), 0),
                false,
                copy_gref(g, 0),
                true,
                64,
            ));
            r.status(
                &alloc::format!("gref-foreign copy into {what}"),
                st,
                gntst::BAD_PAGE,
            );
            refs.push((what, g));
        }
    }
    if let Some(mut lb) = loopback(r, "gref-foreign loopback") {
        for (id, (what, g)) in refs.iter().enumerate() {
            let got = one(
                &mut lb,
                request(id as u64, LOOPBACK_OP_FILL, g.0, 0, 64, 0xee),
            );
            r.check(
                &alloc::format!("gref-foreign loopback FILL via {what}"),
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
        }
        disconnect(r, "gref-foreign", lb);
    }
    r.check(
        "gref-foreign nothing was written",
        dst.to_array().iter().all(|&b| b == 0) && page.to_array().iter().all(|&b| b == 0),
        format_args!("pages untouched"),
    );
    for (_, g) in refs {
        let _ = grant_table::end_access(g);
    }
}

pub(super) fn readonly(r: &mut Report) {
    let page = PageBox::new();
    page.fill(0, 4096, 0x11);
    let Ok(ro) = grant_table::grant_access(page.frame(), DOMID_BACKEND, true) else {
        r.check("readonly grant", false, format_args!("grant_access failed"));
        return;
    };
    let src = PageBox::new();
    let st = copy1(copy_op(
        copy_frame(src.frame(), 0),
        false,
        copy_gref(ro, 0),
        true,
        4096,
    ));
    r.status(
        "readonly copy to read-only dest",
        st,
        gntst::PERMISSION_DENIED,
    );
    let st = copy1(copy_op(
        copy_gref(ro, 0),
        true,
        copy_gref(ro, 100),
        true,
        16,
    ));
    r.status(
        "readonly copy read-only gref onto itself",
        st,
        gntst::PERMISSION_DENIED,
    );
    if let Some(mut lb) = loopback(r, "readonly loopback") {
        let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, ro.0, 0, 4096, 0x22));
        r.check(
            "readonly loopback FILL on read-only grant",
            got == Some((LOOPBACK_STATUS_ERROR, 0)),
            format_args!("response {got:?}, want status -1"),
        );
        let got = one(&mut lb, request(2, LOOPBACK_OP_SUM, ro.0, 0, 4096, 0));
        r.check(
            "readonly loopback SUM on read-only grant works",
            got == Some((LOOPBACK_STATUS_OK, 0x11 * 4096)),
            format_args!("response {got:?}"),
        );
        disconnect(r, "readonly", lb);
    }
    r.check(
        "readonly page unchanged",
        page.to_array().iter().all(|&b| b == 0x11),
        format_args!("contents"),
    );
    // A read-only ring grant.
    if let Some((index, _)) = device::find(kind::LOOPBACK) {
        let ring = PageBox::new();
        if let Ok(g) = grant_table::grant_access(ring.frame(), DOMID_BACKEND, true) {
            let got = Ret::of(device::connect(index, &[g]));
            r.ret(
                "readonly connect with a read-only ring grant",
                got,
                Ret::err(Errno::EPERM),
            );
            if got == OK {
                let _ = device::disconnect(index);
            }
            let _ = grant_table::end_access(g);
        }
    }
    r.check(
        "readonly grant released",
        grant_table::end_access(ro).is_ok(),
        format_args!("end_access"),
    );
    readonly_pages(r);
}

/// Writable grants of pages the guest itself may not write (W^X, docs/abi.md §1): every way a
/// backend could write them must be refused with an error, and the page must not change.
pub(super) fn readonly_pages(r: &mut Report) {
    for (what, frame) in read_only_frames() {
        let before = page_copy(frame);
        let Ok(g) = grant_table::grant_access(frame, DOMID_BACKEND, false) else {
            r.check(
                "readonly",
                false,
                format_args!("grant_access of {what} failed"),
            );
            continue;
        };
        let src = PageBox::new();
        src.fill(0, 4096, 0x33);
        let st = copy1(copy_op(
            copy_frame(src.frame(), 0),
            false,
            copy_gref(g, 0),
            true,
            64,
        ));
        r.status(
            &alloc::format!("readonly copy into a writable grant of {what}"),
            st,
            gntst::PERMISSION_DENIED,
        );
        let st = copy1(copy_op(
            copy_frame(src.frame(), 0),
            false,
            copy_frame(frame, 0),
            false,
            64,
        ));
        r.status(
            &alloc::format!("readonly copy into the frame of {what}"),
            st,
            gntst::PERMISSION_DENIED,
        );
        if let Some(mut lb) = loopback(r, "readonly loopback") {
            let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, g.0, 0, 64, 0x22));
            r.check(
                &alloc::format!("readonly loopback FILL on a writable grant of {what}"),
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
            disconnect(r, "readonly", lb);
        }
        if let Some((index, _)) = device::find(kind::LOOPBACK) {
            let got = Ret::of(device::connect(index, &[g]));
            r.ret(
                &alloc::format!("readonly connect a ring in {what}"),
                got,
                Ret::err(Errno::EPERM),
            );
            if got == OK {
                let _ = device::disconnect(index);
            }
        }
        r.check(
            &alloc::format!("readonly {what} unchanged"),
            page_copy(frame) == before,
            format_args!("contents"),
        );
        r.check(
            &alloc::format!("readonly {what} grant released"),
            grant_table::end_access(g).is_ok(),
            format_args!("end_access"),
        );
    }
    // The loopback ring page through a second, writable reference: not a data page.
    if let Some(mut lb) = loopback(r, "readonly loopback") {
        let ring_frame = lb.ring().page().frame();
        if let Ok(g) = grant_table::grant_access(ring_frame, DOMID_BACKEND, false) {
            let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, g.0, 0, 16, 0xff));
            r.check(
                "readonly loopback FILL on the ring page itself",
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
            let got = one(&mut lb, request(2, LOOPBACK_OP_ECHO, 0, 0, 0, 9));
            r.check(
                "readonly loopback still works",
                got == Some((LOOPBACK_STATUS_OK, 9)),
                format_args!("response {got:?}"),
            );
            let _ = grant_table::end_access(g);
        }
        disconnect(r, "readonly", lb);
    }
}

pub(super) fn end_mapped(r: &mut Report) {
    let Some(mut lb) = loopback(r, "end-mapped") else {
        return;
    };
    let g = lb.ring_gref();
    let before = grant_table::entry(g).map(|e| e.flags);
    let got = grant_table::end_access(g);
    r.check(
        "end-mapped end_access while the backend maps the ring",
        got == Err(GrantError::Busy) && grant_table::entry(g).map(|e| e.flags) == before,
        format_args!("{got:?}, flags {before:?} unchanged"),
    );
    // Misbehave: clear the entry under the mapping, ignoring GTF_writing, and point it elsewhere.
    let _ = grant_table::set_entry(g, 0x10, DOMID_GUEST, 0);
    let got = one(&mut lb, request(1, LOOPBACK_OP_ECHO, 0, 0, 0, 77));
    r.check(
        "end-mapped forced revoke under the mapping",
        true,
        format_args!(
            "{}",
            match got {
                Some((0, 77)) => "the established mapping keeps serving",
                Some(_) => "the backend answers wrongly",
                None => "the backend stopped answering",
            }
        ),
    );
    let res = device::disconnect(lb.index());
    r.ret(
        "end-mapped disconnect after forced revoke",
        Ret::of(res),
        OK,
    );
    let flags = grant_table::entry(g).map(|e| e.flags);
    r.check(
        "end-mapped disconnect clears only the in-use bit",
        flags == Some(0),
        format_args!("flags {flags:?}"),
    );
    // Reconnecting with the scribbled entry must be refused.
    let got = Ret::of(device::connect(lb.index(), &[g]));
    r.ret(
        "end-mapped reconnect with the revoked entry",
        got,
        Ret::err(Errno::EPERM),
    );
    if got == OK {
        let _ = device::disconnect(lb.index());
    }
    event_channel::mask(lb.port());
    let _ = grant_table::end_access(g);
    // Disconnected and revoked by hand already; leak the ring page rather than tear down twice.
    core::mem::forget(lb);
}
