//! `multicall`: batches of calls, bad entries and sizes.

use super::*;

pub(super) fn multicall(c: &mut Checks, ram_end: u64) {
    let entry = |op: Hypercall, args: [u64; 2]| MulticallEntry {
        op: u64::from(op.0),
        result: 0xdead,
        args: [args[0], args[1], 0, 0, 0, 0],
    };
    let mut batch = [
        entry(Hypercall::XEN_VERSION, [XENVER_VERSION, 0]),
        entry(Hypercall::SCHED_OP, [SCHEDOP_YIELD, 0]),
        entry(Hypercall(99), [0, 0]),
    ];
    // SAFETY: the entries take no pointers.
    let ret = unsafe { hypercall::multicall(&mut batch) };
    c.eq("multicall 3 entries", Ret::from_result(ret), Ret::ok(0));
    let names = [
        "multicall result xen_version",
        "multicall result yield",
        "multicall result 99",
    ];
    let version = u64::from((ABI_VERSION_MAJOR << 16) | ABI_VERSION_MINOR);
    let wants = [Ret::ok(version), Ret::ok(0), Ret::err(Errno::ENOSYS)];
    for ((name, want), e) in names.into_iter().zip(wants).zip(&batch) {
        c.eq(name, Ret(e.result), want);
    }

    let mut inner = [entry(Hypercall::SCHED_OP, [SCHEDOP_YIELD, 0])];
    let inner_addr = inner.as_mut_ptr() as u64;
    let mut nested = [entry(Hypercall::MULTICALL, [inner_addr, 1])];
    // SAFETY: the nested entry names `inner`, which we own (and the VMM refuses to run it).
    let ret = unsafe { hypercall::multicall(&mut nested) };
    c.eq(
        "multicall nested returns",
        Ret::from_result(ret),
        Ret::ok(0),
    );
    c.eq(
        "multicall nested entry",
        Ret(nested[0].result),
        Ret::err(Errno::EINVAL),
    );
    c.eq(
        "multicall nested entry did not run",
        Ret(inner[0].result),
        Ret::ok(0xdead),
    );

    let mc = Hypercall::MULTICALL;
    let mut big = [MulticallEntry::default(); 4];
    let addr = big.as_mut_ptr() as u64;
    // SAFETY: count 0 runs nothing; count 257 is refused before anything runs; the last
    // array lies outside guest RAM.
    let (empty, too_many, bad) = unsafe {
        (
            raw(mc, addr, 0, 0),
            raw(mc, addr, MULTICALL_MAX_ENTRIES + 1, 0),
            raw(mc, ram_end, 1, 0),
        )
    };
    c.eq("multicall count 0", empty, Ret::ok(0));
    c.eq("multicall count 257", too_many, Ret::err(Errno::E2BIG));
    c.eq("multicall bad pointer", bad, Ret::err(Errno::EFAULT));
}
