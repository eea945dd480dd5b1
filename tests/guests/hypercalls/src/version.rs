//! `xen_version`: the version, extra version and features, with bad pointers.

use super::*;

pub(super) fn xen_version(c: &mut Checks, ram_end: u64) {
    let xv = Hypercall::XEN_VERSION;
    let want = (ABI_VERSION_MAJOR << 16) | ABI_VERSION_MINOR;
    c.eq(
        "xen_version version",
        Ret::from_result(hypercall::xen_version().map(u64::from)),
        Ret::ok(u64::from(want)),
    );
    c.eq("xen_version version is 0x00000002", want, 0x0000_0002);

    let mut want_extra = [0u8; EXTRAVERSION_LEN];
    want_extra[..8].copy_from_slice(b"-parapet");
    match hypercall::xen_extraversion() {
        Ok(extra) => c.that(
            "xen_version extraversion",
            extra == want_extra,
            ByteStr(&extra),
            ByteStr(&want_extra),
        ),
        Err(e) => c.fail("xen_version extraversion", Ret::err(e), "0"),
    }

    let submap0 = features::WRITABLE_PAGE_TABLES
        | features::AUTO_TRANSLATED_PHYSMAP
        | features::SUPERVISOR_MODE_KERNEL;
    c.eq(
        "xen_version get_features submap 0",
        Ret::from_result(hypercall::xen_get_features(0).map(u64::from)),
        Ret::ok(u64::from(submap0)),
    );
    c.eq(
        "xen_version get_features submap 1",
        Ret::from_result(hypercall::xen_get_features(1).map(u64::from)),
        Ret::ok(0),
    );
    // SAFETY: the pointers lie outside guest RAM; XENVER_version takes none; command 99 does
    // not exist.
    let (bad_features, bad_extra, version_ignores_arg, unknown) = unsafe {
        (
            raw(xv, XENVER_GET_FEATURES, ram_end, 0),
            raw(xv, XENVER_EXTRAVERSION, u64::MAX - 7, 0),
            raw(xv, XENVER_VERSION, ram_end, 0),
            raw(xv, 99, 0, 0),
        )
    };
    c.eq(
        "xen_version get_features bad pointer",
        bad_features,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "xen_version extraversion bad pointer",
        bad_extra,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "xen_version version ignores arg",
        version_ignores_arg,
        Ret::ok(u64::from(want)),
    );
    c.eq("xen_version unknown cmd", unknown, Ret::err(Errno::ENOSYS));
}
