//! `GNTTABOP_copy`: between grants and frames, batches, bad arguments.

use super::*;

pub(super) fn pattern(i: usize) -> u8 {
    (i * 13 + 7) as u8
}

pub(super) fn copy_status(ops: &mut [grant_table::Copy]) -> Result<Vec<i16>, Errno> {
    // SAFETY: every destination in these tests is a `PageBox` this function's caller owns and
    // reads only after the call, or a grant of one.
    unsafe { grant_table::grant_copy(ops) }?;
    Ok(ops.iter().map(|o| o.status).collect())
}

pub(super) fn grant_copy(c: &mut Checks) {
    let a = PageBox::new();
    let b = PageBox::new();
    let bytes: Vec<u8> = (0..4096).map(pattern).collect();
    a.write(0, &bytes);
    let (Ok(ga), Ok(gro)) = (
        grant_table::grant_access(a.frame(), DOMID_BACKEND, false),
        grant_table::grant_access(a.frame(), DOMID_BACKEND, true),
    ) else {
        c.fail("copy grants", format_args!("grant_access failed"));
        return;
    };
    let full = |src, sg, dst, dg| copy_op(src, sg, dst, dg, 4096);

    let mut op = [full(
        copy_gref(ga, 0),
        true,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy gref -> frame",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    c.that(
        "copy gref -> frame contents",
        b.to_array()[..] == bytes[..],
        format_args!("differ"),
    );

    b.fill(0, 4096, 0x5a);
    let mut op = [full(
        copy_frame(b.frame(), 0),
        false,
        copy_gref(ga, 0),
        true,
    )];
    c.eq(
        "copy frame -> gref",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    c.that(
        "copy frame -> gref contents",
        a.to_array().iter().all(|&x| x == 0x5a),
        format_args!("differ"),
    );

    a.write(0, &bytes);
    let mut op = [copy_op(
        copy_gref(gro, 10),
        true,
        copy_frame(b.frame(), 100),
        false,
        200,
    )];
    c.eq(
        "copy from read-only gref with offsets",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::OKAY]),
    );
    let got = b.to_array();
    c.that(
        "copy offsets respected",
        got[100..300] == bytes[10..210] && got[99] == 0x5a && got[300] == 0x5a,
        format_args!("wrong bytes"),
    );

    let mut buf = [0u8; 64];
    c.eq(
        "copy_from_gref helper",
        grant_table::copy_from_gref(gro, 64, &mut buf),
        Ok(()),
    );
    c.that(
        "copy_from_gref contents",
        buf[..] == bytes[64..128],
        format_args!("differ"),
    );
    let msg = *b"written through GNTTABOP_copy";
    c.eq(
        "copy_to_gref helper",
        grant_table::copy_to_gref(ga, 1000, &msg),
        Ok(()),
    );
    let mut back = [0u8; 29];
    a.read(1000, &mut back);
    c.eq("copy_to_gref contents", back, msg);

    // Refused cases.
    let mut op = [full(
        copy_frame(b.frame(), 0),
        false,
        copy_gref(gro, 0),
        true,
    )];
    c.eq(
        "copy to read-only gref refused",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::PERMISSION_DENIED]),
    );
    c.eq(
        "copy_to_gref read-only",
        grant_table::copy_to_gref(gro, 0, &msg),
        Err(GrantError::Status(gntst::PERMISSION_DENIED)),
    );
    let mut op = [full(
        copy_gref(guest_sdk::grant_table::GrantRef(5000), 0),
        true,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy bad gref (outside table)",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_GNTREF]),
    );
    if let Ok(r) = grant_table::reserve() {
        let mut op = [full(copy_gref(r, 0), true, copy_frame(b.frame(), 0), false)];
        c.eq(
            "copy gref without permit_access",
            copy_status(&mut op),
            Ok(alloc::vec![gntst::BAD_GNTREF]),
        );
        let _ = grant_table::end_access(r);
    }
    let mut op = [copy_op(
        copy_gref(ga, 4000),
        true,
        copy_frame(b.frame(), 0),
        false,
        200,
    )];
    c.eq(
        "copy source offset+len > 4096",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_COPY_ARG]),
    );
    let mut op = [copy_op(
        copy_gref(ga, 0),
        true,
        copy_frame(b.frame(), 3900),
        false,
        200,
    )];
    c.eq(
        "copy dest offset+len > 4096",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_COPY_ARG]),
    );
    let mut op = [full(
        copy_frame(0x10, 0),
        false,
        copy_frame(b.frame(), 0),
        false,
    )];
    c.eq(
        "copy from frame below 1 MiB",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );
    let mut op = [full(copy_gref(ga, 0), true, copy_frame(0x5, 0), false)];
    c.eq(
        "copy to frame below 1 MiB",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );
    let beyond = start_info().nr_pages + 10;
    let mut op = [full(copy_gref(ga, 0), true, copy_frame(beyond, 0), false)];
    c.eq(
        "copy to frame beyond RAM",
        copy_status(&mut op),
        Ok(alloc::vec![gntst::BAD_PAGE]),
    );

    // A batch: good and bad elements are independent.
    let mut ops = [
        copy_op(copy_gref(gro, 0), true, copy_frame(b.frame(), 0), false, 16),
        full(copy_frame(b.frame(), 0), false, copy_gref(gro, 0), true),
        copy_op(
            copy_gref(gro, 16),
            true,
            copy_frame(b.frame(), 16),
            false,
            16,
        ),
    ];
    c.eq(
        "copy batch statuses",
        copy_status(&mut ops),
        Ok(alloc::vec![
            gntst::OKAY,
            gntst::PERMISSION_DENIED,
            gntst::OKAY
        ]),
    );
    let one = copy_op(copy_gref(gro, 0), true, copy_frame(b.frame(), 0), false, 1);
    let mut many = alloc::vec![one; GNTTABOP_COPY_MAX as usize + 1];
    c.eq(
        "copy 65 elements",
        copy_status(&mut many),
        Err(Errno::E2BIG),
    );
    let mut max = alloc::vec![one; GNTTABOP_COPY_MAX as usize];
    c.that(
        "copy 64 elements",
        copy_status(&mut max).is_ok_and(|s| s.iter().all(|&x| x == gntst::OKAY)),
        format_args!("failed"),
    );
    c.eq(
        "copy grants released",
        (grant_table::in_use(ga), grant_table::in_use(gro)),
        (false, false),
    );
    c.eq("copy end_access rw", grant_table::end_access(ga), Ok(()));
    c.eq("copy end_access ro", grant_table::end_access(gro), Ok(()));
}
