//! Huge and negative lengths and counts.

use super::*;

pub(super) fn lengths(r: &mut Report) {
    let io = Hypercall::CONSOLE_IO;
    let end = ram_end();
    // SAFETY: CONSOLEIO_write only reads; the range runs past the end of RAM.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, end - 100) };
    r.ret(
        "lengths console_io write count u64::MAX near the end of RAM",
        got,
        EFAULT,
    );
    // SAFETY: as above; the address wraps.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, u64::MAX - 7) };
    r.ret(
        "lengths console_io write count u64::MAX at u64::MAX-7",
        got,
        EFAULT,
    );
    // 16 KiB of our own: the VMM clamps the count and writes one line of dots.
    let mut line = alloc::vec![b' '; 16 * 1024];
    let label = b"hostile: a 16 KiB console_io line:";
    line[..label.len()].copy_from_slice(label);
    line[16 * 1024 - 1] = b'\n';
    console::flush();
    // SAFETY: CONSOLEIO_write only reads `line`, which we own.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, line.as_ptr() as u64) };
    r.ret(
        "lengths console_io write count u64::MAX clamps to 16 KiB",
        got,
        Ret(16 * 1024),
    );
    // SAFETY: a read into the last 8 bytes of RAM with a huge count: the range leaves RAM.
    let got = unsafe { raw(io, CONSOLEIO_READ, u64::MAX, end - 8) };
    r.check(
        "lengths console_io read count u64::MAX",
        got == EFAULT || got == OK,
        format_args!("got {got} (-EFAULT, or 0: no input over console_io)"),
    );

    let page = PageBox::new();
    let dst = PageBox::new();
    if let Ok(g) = grant_table::grant_access(page.frame(), DOMID_BACKEND, false) {
        for (what, off, len) in [
            ("len 4097", 0u16, 4097u16),
            ("len 65535", 0, 0xffff),
            ("offset 65535", 0xffff, 1),
            ("offset 4095 len 2", 4095, 2),
        ] {
            let st = copy1(copy_op(
                copy_gref(g, off),
                true,
                copy_frame(dst.frame(), 0),
                false,
                len,
            ));
            r.status(
                &alloc::format!("lengths copy {what}"),
                st,
                gntst::BAD_COPY_ARG,
            );
        }
        let st = copy1(copy_op(
            copy_gref(g, 4095),
            true,
            copy_frame(dst.frame(), 0),
            false,
            1,
        ));
        r.status("lengths copy offset 4095 len 1 is fine", st, gntst::OKAY);
        let st = copy1(copy_op(
            copy_gref(g, 4096),
            true,
            copy_frame(dst.frame(), 0),
            false,
            0,
        ));
        r.status("lengths copy offset 4096 len 0 is fine", st, gntst::OKAY);
        if let Some(mut lb) = loopback(r, "lengths loopback") {
            for (id, (what, off, len)) in [
                ("len 0xffffffff", 0u32, u32::MAX),
                ("offset 0xffffffff len 2 (wraps)", u32::MAX, 2),
                ("offset 4096 len 1", 4096, 1),
                ("offset 0x80000000 len 0x80000000", 0x8000_0000, 0x8000_0000),
            ]
            .into_iter()
            .enumerate()
            {
                for op in [LOOPBACK_OP_SUM, LOOPBACK_OP_FILL] {
                    let got = one(&mut lb, request(id as u64, op, g.0, off, len, 0x33));
                    let name = if op == LOOPBACK_OP_SUM { "SUM" } else { "FILL" };
                    r.check(
                        &alloc::format!("lengths loopback {name} {what}"),
                        got == Some((LOOPBACK_STATUS_ERROR, 0)),
                        format_args!("response {got:?}, want status -1"),
                    );
                }
            }
            let got = one(&mut lb, request(50, LOOPBACK_OP_SUM, g.0, 4096, 0, 0));
            r.check(
                "lengths loopback SUM of 0 bytes at the page end",
                got == Some((LOOPBACK_STATUS_OK, 0)),
                format_args!("response {got:?}"),
            );
            disconnect(r, "lengths", lb);
        }
        r.check(
            "lengths grant page untouched",
            page.to_array().iter().all(|&b| b == 0),
            format_args!("contents"),
        );
        let _ = grant_table::end_access(g);
    }
    // Batch counts.
    let mut ops = [copy_op(
        copy_frame(dst.frame(), 0),
        false,
        copy_frame(dst.frame(), 0),
        false,
        1,
    )];
    let addr = ops.as_mut_ptr() as u64;
    // SAFETY: refused before anything is copied (count too large).
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, u64::MAX) };
    r.check(
        "lengths GNTTABOP_copy count u64::MAX",
        got == Ret::err(Errno::E2BIG) || got == EFAULT,
        format_args!("got {got}"),
    );
    // SAFETY: as above.
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, 65) };
    r.ret(
        "lengths GNTTABOP_copy count 65",
        got,
        Ret::err(Errno::E2BIG),
    );
    // SAFETY: count 0 copies nothing.
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, 0) };
    r.ret("lengths GNTTABOP_copy count 0", got, OK);
    let mut mc = [MulticallEntry::default(); 1];
    // SAFETY: refused before anything runs.
    let got = unsafe { raw(Hypercall::MULTICALL, mc.as_mut_ptr() as u64, u64::MAX, 0) };
    r.ret(
        "lengths multicall count u64::MAX",
        got,
        Ret::err(Errno::E2BIG),
    );
    let mut st = SetupTable {
        dom: DOMID_SELF,
        nr_frames: u32::MAX,
        ..Default::default()
    };
    let mut frames = [0u64; 4];
    st.frame_list = frames.as_mut_ptr() as u64;
    // SAFETY: the VMM writes `st` and at most the table's frames into `frames`... or refuses.
    let got = unsafe {
        raw(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_SETUP_TABLE,
            (&raw mut st) as u64,
            1,
        )
    };
    r.check(
        "lengths setup_table nr_frames u32::MAX",
        got == OK && st.status == gntst::GENERAL_ERROR,
        format_args!("got {got}, status {}", st.status),
    );
    for count in [0u64, 2, u64::MAX] {
        let mut st = SetupTable {
            dom: DOMID_SELF,
            nr_frames: 1,
            ..Default::default()
        };
        st.frame_list = frames.as_mut_ptr() as u64;
        // SAFETY: as above; `st` is a single structure, so a count > 1 must not be honoured.
        let got = unsafe {
            raw(
                Hypercall::GRANT_TABLE_OP,
                GNTTABOP_SETUP_TABLE,
                (&raw mut st) as u64,
                count,
            )
        };
        r.ret(
            &alloc::format!("lengths setup_table count {count} is refused"),
            got,
            EINVAL,
        );
    }
}
