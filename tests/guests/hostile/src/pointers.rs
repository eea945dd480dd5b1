//! Bad guest addresses in every hypercall that takes a pointer, and boot pages as output
//! buffers.

use super::*;

pub(super) fn pointers(r: &mut Report) {
    let end = ram_end();
    let bad = [
        ("RAM end", end),
        ("RAM end - 2", end - 2),
        ("u64::MAX-7", u64::MAX - 7),
    ];
    let ev = Hypercall::EVENT_CHANNEL_OP;
    let gt = Hypercall::GRANT_TABLE_OP;
    let calls: [(&str, Hypercall, u64, u64); 16] = [
        (
            "console_io write",
            Hypercall::CONSOLE_IO,
            CONSOLEIO_WRITE,
            16,
        ),
        ("console_io read", Hypercall::CONSOLE_IO, CONSOLEIO_READ, 16),
        (
            "xen_version extraversion",
            Hypercall::XEN_VERSION,
            XENVER_EXTRAVERSION,
            0,
        ),
        (
            "xen_version get_features",
            Hypercall::XEN_VERSION,
            XENVER_GET_FEATURES,
            0,
        ),
        (
            "sched_op shutdown",
            Hypercall::SCHED_OP,
            SCHEDOP_SHUTDOWN,
            0,
        ),
        ("sched_op fault", Hypercall::SCHED_OP, SCHEDOP_FAULT, 0),
        (
            "event_channel_op alloc_unbound",
            ev,
            EVTCHNOP_ALLOC_UNBOUND,
            0,
        ),
        (
            "event_channel_op bind_interdomain",
            ev,
            EVTCHNOP_BIND_INTERDOMAIN,
            0,
        ),
        ("event_channel_op bind_virq", ev, EVTCHNOP_BIND_VIRQ, 0),
        ("event_channel_op close", ev, EVTCHNOP_CLOSE, 0),
        ("event_channel_op send", ev, EVTCHNOP_SEND, 0),
        ("event_channel_op status", ev, EVTCHNOP_STATUS, 0),
        ("event_channel_op unmask", ev, EVTCHNOP_UNMASK, 0),
        ("grant_table_op setup_table", gt, GNTTABOP_SETUP_TABLE, 1),
        ("grant_table_op copy", gt, GNTTABOP_COPY, 1),
        ("grant_table_op query_size", gt, GNTTABOP_QUERY_SIZE, 1),
    ];
    for (name, nr, cmd, a3) in calls {
        for (what, gpa) in bad {
            // `xen_version` and `console_io` take the pointer in the second or third argument.
            let args = match nr {
                Hypercall::CONSOLE_IO => (cmd, a3, gpa),
                Hypercall::GRANT_TABLE_OP => (cmd, gpa, a3),
                _ => (cmd, gpa, 0),
            };
            // SAFETY: every pointer lies outside guest RAM (or straddles its end).
            let got = unsafe { raw(nr, args.0, args.1, args.2) };
            r.ret(&alloc::format!("pointers {name} at {what}"), got, EFAULT);
        }
    }
    for (what, gpa) in bad {
        // SAFETY: outside guest RAM.
        let got = unsafe { raw(Hypercall::MULTICALL, gpa, 1, 0) };
        r.ret(&alloc::format!("pointers multicall at {what}"), got, EFAULT);
        // SAFETY: outside guest RAM.
        let got = unsafe { raw(Hypercall::DEVICE_OP, DEVOP_CONNECT, gpa, 0) };
        r.ret(
            &alloc::format!("pointers device_op connect at {what}"),
            got,
            EFAULT,
        );
    }
    // Pointers inside structures.
    let mut st = SetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: end,
        ..Default::default()
    };
    // SAFETY: the frame list lies outside guest RAM; `st` is ours.
    let got = unsafe {
        raw(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_SETUP_TABLE,
            (&raw mut st) as u64,
            1,
        )
    };
    r.check(
        "pointers setup_table frame_list at RAM end",
        got == EFAULT || (got == OK && st.status != gntst::OKAY),
        format_args!("got {got}, status {}", st.status),
    );
    let mut entries = [MulticallEntry {
        op: u64::from(Hypercall::EVENT_CHANNEL_OP.0),
        result: 0,
        args: [EVTCHNOP_STATUS, end, 0, 0, 0, 0],
    }; 2];
    entries[1].args = [EVTCHNOP_SEND, u64::MAX - 3, 0, 0, 0, 0];
    // SAFETY: the entries name memory outside guest RAM.
    let got = unsafe { hypercall::multicall(&mut entries) };
    r.check(
        "pointers multicall entries with bad pointers",
        got == Ok(0) && entries.iter().all(|e| Ret(e.result) == EFAULT),
        format_args!(
            "{got:?}, results {} {}",
            Ret(entries[0].result),
            Ret(entries[1].result)
        ),
    );

    // An entry array in read-only data: its results cannot be written, so no entry may run.
    // The entry would print start-info's magic (at the fixed GPA 0x1000), which the test then
    // must not find in the output.
    // SAFETY: the VMM only reads the array; it must refuse to write the results.
    let got = unsafe {
        raw(
            Hypercall::MULTICALL,
            RODATA_BATCH.as_ptr() as u64,
            RODATA_BATCH.len() as u64,
            0,
        )
    };
    r.check(
        "pointers multicall entries in read-only data",
        got == EFAULT && RODATA_BATCH[0].result == 0,
        format_args!("got {got}, want -EFAULT with no entry run"),
    );

    // GPA 0: the null page is unmapped in the guest, so the VMM refuses to write it too.
    // SAFETY: XENVER_extraversion would write 16 bytes at GPA 0, the null guard page, which
    // nothing in the guest uses (it is unmapped in the guest's page tables).
    let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, 0, 0) };
    r.ret(
        "pointers xen_version extraversion into GPA 0 (null page)",
        got,
        EFAULT,
    );
    // SAFETY: XENVER_get_features would read and write 8 bytes at GPA 0, as above.
    let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, 0, 0) };
    r.ret(
        "pointers xen_version get_features at GPA 0 (null page)",
        got,
        EFAULT,
    );
    // SAFETY: EVTCHNOP_status reads GPA 0 (zeros: port 0) and is refused.
    let got = unsafe { raw(ev, EVTCHNOP_STATUS, 0, 0) };
    r.ret(
        "pointers event_channel_op status at GPA 0 (port 0)",
        got,
        EINVAL,
    );

    // Output buffers in pages the guest may only read.
    let si = start_info();
    let probe_si = 0x1000 + 4000; // start-info bytes past the structure
    let probe_hc = si.hypercall_page + 99 * STUB_SIZE as u64 + 16; // padding of unused stub 99
    for (what, gpa) in [("start-info", probe_si), ("the hypercall page", probe_hc)] {
        let before = read16(gpa);
        // SAFETY: the VMM either refuses, or writes 16 bytes into bytes of a boot page that
        // the guest never uses (past the start-info structure; the `int3` padding of a stub the
        // guest never calls).
        let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, gpa, 0) };
        let changed = read16(gpa) != before;
        r.check(
            &alloc::format!("pointers xen_version output into {what} (read-only to the guest)"),
            got == EFAULT && !changed,
            format_args!(
                "got {got}, page {}; want -EFAULT: the guest may not write it",
                if changed { "MODIFIED" } else { "unchanged" }
            ),
        );
        let before = read16(gpa + 8);
        // SAFETY: as above, 8 bytes (`xen_feature_info`) further on.
        let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, gpa + 8, 0) };
        let changed = read16(gpa + 8) != before;
        r.check(
            &alloc::format!("pointers xen_version get_features into {what}"),
            got == EFAULT && !changed,
            format_args!(
                "got {got}, page {}; want -EFAULT",
                if changed { "MODIFIED" } else { "unchanged" }
            ),
        );
    }
}

pub(super) fn read16(gpa: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let page = gpa & !(PAGE_SIZE - 1);
    // SAFETY: boot pages (start-info, hypercall page) are mapped readable for the guest's life;
    // only `read` is used on them.
    let p = unsafe { GuestPage::from_addr(page) };
    p.read((gpa - page) as usize, &mut out);
    out
}
