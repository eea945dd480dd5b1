//! Hypercall numbers that are unknown or reserved.

use super::*;

pub(super) fn unknown_and_reserved(c: &mut Checks) {
    for (name, nr) in [
        ("hypercall 99 unknown", 99),
        ("hypercall 126 unknown", 126),
        ("hypercall 24 vcpu_op reserved", 24),
    ] {
        // SAFETY: no argument is a pointer the VMM would use: these numbers are not served.
        let ret = unsafe { raw(Hypercall(nr), 0, 0, 0) };
        c.eq(name, ret, Ret::err(Errno::ENOSYS));
    }
    // Served since ABI 0.2: unknown sub-commands are -ENOSYS.
    for (name, nr) in [
        ("grant_table_op unknown cmd", Hypercall::GRANT_TABLE_OP),
        ("event_channel_op unknown cmd", Hypercall::EVENT_CHANNEL_OP),
        ("device_op unknown cmd", Hypercall::DEVICE_OP),
    ] {
        // SAFETY: command 99 does not exist; nothing is accessed.
        let ret = unsafe { raw(nr, 99, 0, 0) };
        c.eq(name, ret, Ret::err(Errno::ENOSYS));
    }
    // The doorbell (127) returns nothing and ignores ports nobody serves.
    event_channel::notify(guest_sdk::event_channel::Port(0));
    event_channel::notify(guest_sdk::event_channel::Port(4095));
    c.pass("evtchn_notify (127) on unserved ports");
}
