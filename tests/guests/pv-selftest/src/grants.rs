//! Grant tables: the table's size and frames, granting and revoking access.

use super::*;

pub(super) fn grants(c: &mut Checks) {
    let si = start_info();
    c.eq(
        "grant query_size",
        grant_table::query_size(),
        Ok((si.nr_grant_frames, si.nr_grant_frames)),
    );
    let mut frames = [0u64; 4];
    let n = (si.nr_grant_frames as usize).min(4);
    match grant_table::setup_table(&mut frames[..n]) {
        Ok(()) => {
            let want: Vec<u64> = (0..n as u64)
                .map(|i| si.grant_table / PAGE_SIZE + i)
                .collect();
            c.eq("grant setup_table frames", frames[..n].to_vec(), want);
        }
        Err(e) => c.fail("grant setup_table", format_args!("{e}")),
    }
    let mut too_many = alloc::vec![0u64; si.nr_grant_frames as usize + 1];
    c.eq(
        "grant setup_table too many frames",
        grant_table::setup_table(&mut too_many),
        Err(GrantError::Status(gntst::GENERAL_ERROR)),
    );

    let page = PageBox::new();
    match grant_table::grant_access(page.frame(), DOMID_BACKEND, false) {
        Ok(g) => {
            let e = grant_table::entry(g).unwrap();
            c.that(
                "grant entry written",
                e.flags == gtf::PERMIT_ACCESS
                    && e.domid == DOMID_BACKEND
                    && u64::from(e.frame) == page.frame(),
                format_args!("{e:?}"),
            );
            c.that(
                "grant ref is not 0",
                g != guest_sdk::grant_table::GrantRef(0),
                format_args!("0"),
            );
            c.eq("grant end_access", grant_table::end_access(g), Ok(()));
            c.eq(
                "grant entry cleared",
                grant_table::entry(g).map(|e| e.flags),
                Some(0),
            );
            c.eq(
                "grant end_access twice",
                grant_table::end_access(g),
                Err(GrantError::BadRef),
            );
        }
        Err(e) => c.fail("grant grant_access", format_args!("{e}")),
    }
    match grant_table::grant_access(page.frame(), DOMID_BACKEND, true) {
        Ok(g) => {
            c.eq(
                "grant readonly flags",
                grant_table::entry(g).map(|e| e.flags),
                Some(gtf::PERMIT_ACCESS | gtf::READONLY),
            );
            // The SDK's compare-and-swap refuses while the VMM's in-use bits are set.
            let _ = grant_table::set_entry(
                g,
                page.frame() as u32,
                DOMID_BACKEND,
                gtf::PERMIT_ACCESS | gtf::READING,
            );
            c.eq(
                "grant end_access refused while GTF_reading",
                grant_table::end_access(g),
                Err(GrantError::Busy),
            );
            let _ =
                grant_table::set_entry(g, page.frame() as u32, DOMID_BACKEND, gtf::PERMIT_ACCESS);
            c.eq(
                "grant end_access after release",
                grant_table::end_access(g),
                Ok(()),
            );
        }
        Err(e) => c.fail("grant grant_access readonly", format_args!("{e}")),
    }
    // Many grants: the free list hands out distinct references and takes them back.
    let mut refs = Vec::new();
    while refs.len() < 300 {
        match grant_table::grant_access(page.frame(), DOMID_BACKEND, true) {
            Ok(g) => refs.push(g),
            Err(_) => break,
        }
    }
    let mut sorted = refs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    c.that(
        "grant 300 distinct references",
        sorted.len() == 300,
        format_args!("{} distinct", sorted.len()),
    );
    let freed = refs
        .iter()
        .filter(|&&g| grant_table::end_access(g).is_ok())
        .count();
    c.eq("grant 300 revoked", freed, 300);
    c.eq(
        "grant out-of-range end_access",
        grant_table::end_access(guest_sdk::grant_table::GrantRef(5000)),
        Err(GrantError::BadRef),
    );
}
