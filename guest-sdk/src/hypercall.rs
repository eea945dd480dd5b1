//! Hypercalls through the hypercall page (docs/abi.md §3), as typed, safe functions.
//!
//! Every hypercall the SDK makes has a wrapper here that takes the hypercall's own argument
//! structure (from [`parapet_abi`]) or plain values, passes only pointers to memory it borrows
//! for the duration of the call, sized as the hypercall expects, and splits the result into
//! `Ok(value)` or `Err(Errno)`. The modules above (event channels, grants, devices, the console,
//! timers) build on these and never make a raw call. The wrappers whose effects the compiler
//! cannot check — [`multicall`] and [`grant_copy`], which may make the VMM write any guest memory
//! their entries name — stay `unsafe fn`s.
//!
//! Underneath, one private function calls stub `nr` of the hypercall page the VMM filled, with
//! the Xen x86_64 register convention (RAX = number; RDI, RSI, RDX, R10, R8 = arguments;
//! RAX = result; RCX and R11 clobbered). The guest never executes the trap instruction itself,
//! so the same kernel runs with every transport. (The one exception is kvm_pvm's pending-
//! interrupt kick, a trap that is no hypercall at all, for [`crate::pvops::irq_enable`].)
//!
//! [`raw::hypercall5`] exposes that call, unchecked, for guests that test the VMM with hostile
//! arguments (the `hostile` and `hypercalls` example guests); nothing else should use it.
//!
//! Before boot (and on the host) no hypercall page is known; every call then returns
//! `-ENOSYS` without trapping.

use core::sync::atomic::{AtomicU64, Ordering};

use parapet_abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use parapet_abi::device::{Connect, DEVOP_CONNECT, DEVOP_DISCONNECT};
use parapet_abi::event_channel::{
    AllocUnbound, BindInterdomain, BindVirq, DomId, EVTCHNOP_ALLOC_UNBOUND,
    EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK, PortArg, Status,
};
use parapet_abi::grant_table::{
    Copy, CopyPtr, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTTABOP_COPY, GNTTABOP_QUERY_SIZE,
    GNTTABOP_SETUP_TABLE, QuerySize, SetupTable,
};
use parapet_abi::multicall::MulticallEntry;
use parapet_abi::sched::{
    FaultReport, SCHEDOP_BLOCK, SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown,
};
use parapet_abi::start_info::{PAGE_SIZE, StartInfo};
use parapet_abi::version::{
    EXTRAVERSION_LEN, FeatureInfo, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION,
};
use parapet_abi::{Errno, Hypercall};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// GPA (= address, memory is identity-mapped) of the hypercall page; 0 before boot.
static HYPERCALL_PAGE: AtomicU64 = AtomicU64::new(0);

/// Records the hypercall page announced in start-info. Called once by the boot code.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init(info: &StartInfo) {
    HYPERCALL_PAGE.store(info.hypercall_page, Ordering::Relaxed);
}

/// Makes hypercall `nr` with five arguments and returns RAX as the VMM left it.
///
/// # Safety
///
/// As for [`raw::hypercall5`].
#[inline]
unsafe fn call(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
    let page = HYPERCALL_PAGE.load(Ordering::Relaxed);
    let Some(offset) = nr.stub_offset() else {
        return Errno::ENOSYS.to_ret();
    };
    if page == 0 {
        return Errno::ENOSYS.to_ret();
    }
    let stub = page + offset as u64;
    let ret: u64;
    // SAFETY: `stub` is a stub of the VMM's hypercall page, which follows the Xen register
    // convention: it reads RAX/RDI/RSI/RDX/R10/R8, returns in RAX, may clobber RCX and R11 and
    // preserves everything else (the flags aside). It uses the stack only for its own return
    // address. The memory effects are the caller's responsibility (see `# Safety`).
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rax") u64::from(nr.0) => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

pub mod raw {
    //! The unchecked hypercall, for testing the VMM with hostile inputs only.
    //!
    //! Guests that probe how the VMM treats malformed hypercalls (bad pointers, lengths,
    //! commands and numbers: the `hostile` and `hypercalls` example guests) need to send
    //! arguments no typed wrapper would build. Everything else uses the typed wrappers of
    //! [`crate::hypercall`].

    use parapet_abi::Hypercall;

    /// Makes hypercall `nr` with five arguments and returns RAX as the VMM left it (a negated
    /// [`Errno`](parapet_abi::Errno) in `-4095..=-1` on failure; see
    /// [`Errno::from_ret`](parapet_abi::Errno::from_ret)).
    ///
    /// Numbers without a stub (≥ 128) and calls made before boot return `-ENOSYS` without
    /// trapping.
    ///
    /// # Safety
    ///
    /// The arguments must be valid for hypercall `nr` as docs/abi.md describes it. In
    /// particular, any guest memory the VMM will write through an argument (a buffer, a result
    /// structure, a multicall array, or the memory the entries of a multicall name) must be
    /// memory the caller may have written at this point. Ranges outside guest RAM are always
    /// safe to pass: the VMM answers them with `-EFAULT` and touches nothing.
    #[inline]
    pub unsafe fn hypercall5(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
        // SAFETY: forwarded; the caller upholds the contract above.
        unsafe { super::call(nr, a1, a2, a3, a4, a5) }
    }
}

/// The address of `r` as an argument the VMM only reads (memory is identity-mapped, so the
/// address is the GPA).
fn gpa<T: ?Sized>(r: &T) -> u64 {
    (r as *const T).cast::<u8>() as u64
}

/// The address of `r` as an argument the VMM may write.
fn gpa_mut<T: ?Sized>(r: &mut T) -> u64 {
    (r as *mut T).cast::<u8>() as u64
}

/// `sched_op(cmd, arg)`.
fn sched_op(cmd: u64, arg: u64) -> Result<u64, Errno> {
    // SAFETY: every caller passes either no argument or a pointer to a structure the VMM only
    // reads (`SchedShutdown`, `FaultReport`).
    Errno::from_ret(unsafe { call(Hypercall::SCHED_OP, cmd, arg, 0, 0, 0) })
}

/// `console_io(CONSOLEIO_write)`: writes up to 16 KiB of `bytes` to the console and returns how
/// many were written. One call is one trap.
pub fn console_write(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the VMM only reads `bytes.len()` bytes at `bytes`, which we borrow.
    let ret = unsafe {
        call(
            Hypercall::CONSOLE_IO,
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            gpa(bytes),
            0,
            0,
        )
    };
    Errno::from_ret(ret)
}

/// `console_io(CONSOLEIO_read)`: copies pending console input into `buf` and returns the count
/// (0 while there is none, or no input channel).
pub fn console_read(buf: &mut [u8]) -> Result<u64, Errno> {
    let (len, addr) = (buf.len() as u64, gpa_mut(buf));
    // SAFETY: the VMM writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
    Errno::from_ret(unsafe { call(Hypercall::CONSOLE_IO, CONSOLEIO_READ, len, addr, 0, 0) })
}

/// `sched_op(SCHEDOP_yield)`.
pub fn sched_yield() -> Result<u64, Errno> {
    sched_op(SCHEDOP_YIELD, 0)
}

/// `sched_op(SCHEDOP_block)` (docs/abi.md §7.3): re-enables event delivery and halts until an
/// event (an unmasked port, the [`set_timer`] deadline); returns at once if an upcall is pending,
/// the armed deadline has passed, or nothing could wake the vCPU. See [`crate::pvops::block`];
/// use [`crate::timer::sleep`] or [`crate::timer::wait_until`] rather than calling it directly.
pub fn sched_block() -> Result<u64, Errno> {
    sched_op(SCHEDOP_BLOCK, 0)
}

/// `set_timer_op(deadline_ns)`: arms the one-shot timer for absolute system time `deadline_ns`
/// ([`crate::time::Instant::as_nanos`]); 0 cancels it.
pub fn set_timer(deadline_ns: u64) -> Result<u64, Errno> {
    // SAFETY: set_timer_op takes no pointer.
    Errno::from_ret(unsafe { call(Hypercall::SET_TIMER_OP, deadline_ns, 0, 0, 0, 0) })
}

/// `sched_op(SCHEDOP_shutdown)` with `SHUTDOWN_suspend` (docs/abi.md §3.6): 0 when it returns in
/// a restored domain, 1 when the domain goes on where it was; see [`crate::snapshot::suspend`].
pub fn shutdown_suspend() -> Result<u64, Errno> {
    let arg = SchedShutdown {
        reason: parapet_abi::sched::reason::SUSPEND,
        exit_code: 0,
    };
    sched_op(SCHEDOP_SHUTDOWN, gpa(&arg))
}

/// `sched_op(SCHEDOP_shutdown)` that may fail: returns only with the error the VMM reported
/// (`-EINVAL` for an unknown or unsupported `reason`). Reasons are in
/// [`parapet_abi::sched::reason`].
pub fn try_shutdown(reason: u32, exit_code: u32) -> Errno {
    let arg = SchedShutdown { reason, exit_code };
    match sched_op(SCHEDOP_SHUTDOWN, gpa(&arg)) {
        Err(e) => e,
        // A VMM that breaks the ABI by returning success: report it as a bad argument.
        Ok(_) => Errno::EINVAL,
    }
}

/// `sched_op(SCHEDOP_shutdown)`: stops the domain with `reason` and, for `POWEROFF`,
/// `exit_code`. If the VMM refuses, the domain is stopped as crashed instead, and as a last
/// resort this spins forever.
pub fn shutdown(reason: u32, exit_code: u32) -> ! {
    let _ = try_shutdown(reason, exit_code);
    let _ = try_shutdown(parapet_abi::sched::reason::CRASH, exit_code);
    loop {
        core::hint::spin_loop();
    }
}

/// `sched_op(SCHEDOP_fault)`: hands an unhandled exception to the VMM, which prints it and stops
/// the domain. Returns only if the VMM refused the report.
pub fn report_fault(report: &FaultReport) -> Errno {
    match sched_op(SCHEDOP_FAULT, gpa(report)) {
        Err(e) => e,
        Ok(_) => Errno::EINVAL,
    }
}

/// `xen_version(XENVER_version)`: the ABI version as `(major << 16) | minor`.
pub fn xen_version() -> Result<u32, Errno> {
    // SAFETY: XENVER_version takes no pointer.
    let ret = unsafe { call(Hypercall::XEN_VERSION, XENVER_VERSION, 0, 0, 0, 0) };
    Errno::from_ret(ret).map(|v| v as u32)
}

/// `xen_version(XENVER_extraversion)`: the 16-byte NUL-padded extra version (`-parapet`).
pub fn xen_extraversion() -> Result<[u8; EXTRAVERSION_LEN], Errno> {
    let mut buf = [0u8; EXTRAVERSION_LEN];
    let addr = gpa_mut(&mut buf);
    // SAFETY: the VMM writes exactly EXTRAVERSION_LEN bytes into `buf`, which we own.
    let ret = unsafe { call(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, addr, 0, 0, 0) };
    Errno::from_ret(ret).map(|_| buf)
}

/// `xen_version(XENVER_get_features)`: feature word `submap_idx` (see
/// [`parapet_abi::version::features`]).
pub fn xen_get_features(submap_idx: u32) -> Result<u32, Errno> {
    let mut info = FeatureInfo {
        submap_idx,
        submap: 0,
    };
    let addr = gpa_mut(&mut info);
    // SAFETY: the VMM reads and writes the `FeatureInfo` at `addr`, which we own.
    let ret = unsafe { call(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, addr, 0, 0, 0) };
    Errno::from_ret(ret).map(|_| info.submap)
}

/// `multicall(entries, count)`: runs every entry in order with one trap and stores each result in
/// its `result` field. Returns the multicall's own status (0, `-E2BIG`, `-EFAULT`).
///
/// # Safety
///
/// Every entry must be a call the caller could make with [`raw::hypercall5`] at this point:
/// the memory its arguments name is accessed by the VMM as that hypercall describes.
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> Result<u64, Errno> {
    let (addr, count) = (entries.as_mut_ptr() as u64, entries.len() as u64);
    // SAFETY: the VMM writes only the `result` fields of `entries`, which we borrow mutably; the
    // entries' own effects are the caller's responsibility.
    let ret = unsafe { call(Hypercall::MULTICALL, addr, count, 0, 0, 0) };
    Errno::from_ret(ret)
}

// ---------------------------------------------------------------------------------------------
// event_channel_op (docs/abi.md §7.1).

/// `event_channel_op(cmd, arg)` with `arg` copied in and its output fields written back.
///
/// # Safety
///
/// `T` must be the argument structure docs/abi.md §7.1 gives for `cmd` (the VMM writes at most
/// `size_of::<T>()` bytes at `arg`, and only for that `cmd`).
unsafe fn event_channel_op<T: IntoBytes + FromBytes + Immutable>(
    cmd: u64,
    arg: &mut T,
) -> Result<u64, Errno> {
    let addr = gpa_mut(arg);
    // SAFETY: `arg` is a live, exclusively borrowed `T`; by the caller's contract the VMM
    // accesses only that structure.
    Errno::from_ret(unsafe { call(Hypercall::EVENT_CHANNEL_OP, cmd, addr, 0, 0, 0) })
}

/// `EVTCHNOP_alloc_unbound`: the VMM fills in `arg.port`.
pub fn evtchn_alloc_unbound(arg: &mut AllocUnbound) -> Result<u64, Errno> {
    // SAFETY: `AllocUnbound` is the argument of EVTCHNOP_alloc_unbound.
    unsafe { event_channel_op(EVTCHNOP_ALLOC_UNBOUND, arg) }
}

/// `EVTCHNOP_bind_interdomain`: the VMM fills in `arg.local_port`.
pub fn evtchn_bind_interdomain(arg: &mut BindInterdomain) -> Result<u64, Errno> {
    // SAFETY: `BindInterdomain` is the argument of EVTCHNOP_bind_interdomain.
    unsafe { event_channel_op(EVTCHNOP_BIND_INTERDOMAIN, arg) }
}

/// `EVTCHNOP_bind_virq`: the VMM fills in `arg.port`.
pub fn evtchn_bind_virq(arg: &mut BindVirq) -> Result<u64, Errno> {
    // SAFETY: `BindVirq` is the argument of EVTCHNOP_bind_virq.
    unsafe { event_channel_op(EVTCHNOP_BIND_VIRQ, arg) }
}

/// `EVTCHNOP_status`: the VMM fills in `arg.status`, `arg.vcpu` and `arg.detail`.
pub fn evtchn_status(arg: &mut Status) -> Result<u64, Errno> {
    // SAFETY: `Status` is the argument of EVTCHNOP_status.
    unsafe { event_channel_op(EVTCHNOP_STATUS, arg) }
}

/// `EVTCHNOP_send` of `port`.
pub fn evtchn_send(port: u32) -> Result<u64, Errno> {
    let mut arg = PortArg { port };
    // SAFETY: `PortArg` is the argument of EVTCHNOP_send.
    unsafe { event_channel_op(EVTCHNOP_SEND, &mut arg) }
}

/// `EVTCHNOP_close` of `port`.
pub fn evtchn_close(port: u32) -> Result<u64, Errno> {
    let mut arg = PortArg { port };
    // SAFETY: `PortArg` is the argument of EVTCHNOP_close.
    unsafe { event_channel_op(EVTCHNOP_CLOSE, &mut arg) }
}

/// `EVTCHNOP_unmask` of `port`.
pub fn evtchn_unmask(port: u32) -> Result<u64, Errno> {
    let mut arg = PortArg { port };
    // SAFETY: `PortArg` is the argument of EVTCHNOP_unmask.
    unsafe { event_channel_op(EVTCHNOP_UNMASK, &mut arg) }
}

/// The doorbell (hypercall-page stub 127, `Hypercall::EVTCHN_NOTIFY`) for `port`: for a port
/// served by a backend thread it signals the backend inside the kernel without an exit to the
/// VMM; any other port exits and is treated as `EVTCHNOP_send`. The result is ignored.
#[inline]
pub fn evtchn_notify(port: u32) {
    // SAFETY: the doorbell takes no pointer; the stub clobbers only RAX (declared as the
    // result) besides what `call` already declares.
    unsafe { call(Hypercall::EVTCHN_NOTIFY, u64::from(port), 0, 0, 0, 0) };
}

// ---------------------------------------------------------------------------------------------
// device_op (docs/abi.md §10).

/// `device_op(DEVOP_connect, arg)`.
pub fn device_connect(arg: &Connect) -> Result<u64, Errno> {
    // SAFETY: the VMM only reads the `Connect` at `arg`, which we borrow.
    Errno::from_ret(unsafe { call(Hypercall::DEVICE_OP, DEVOP_CONNECT, gpa(arg), 0, 0, 0) })
}

/// `device_op(DEVOP_disconnect, index)`.
pub fn device_disconnect(index: u32) -> Result<u64, Errno> {
    let index = u64::from(index);
    // SAFETY: DEVOP_disconnect takes the index by value; no memory is named.
    Errno::from_ret(unsafe { call(Hypercall::DEVICE_OP, DEVOP_DISCONNECT, index, 0, 0, 0) })
}

// ---------------------------------------------------------------------------------------------
// grant_table_op (docs/abi.md §8).

/// `GNTTABOP_copy`: runs every element of `ops` (at most 64) and stores each one's `GNTST_*`
/// code in its `status`. Returns the hypercall's own result (`-EFAULT`, `-E2BIG`).
///
/// # Safety
///
/// Every destination the VMM will write (a local frame, or the frame behind a destination
/// grant) must be memory the caller may have written at this point.
pub unsafe fn grant_copy(ops: &mut [Copy]) -> Result<(), Errno> {
    let (addr, count) = (ops.as_mut_ptr() as u64, ops.len() as u64);
    // SAFETY: the VMM writes the `status` fields of `ops`, which we borrow mutably, and the
    // destinations, which the caller vouches for.
    let ret = unsafe { call(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, count, 0, 0) };
    Errno::from_ret(ret).map(drop)
}

/// The local side of a `GNTTABOP_copy`: this guest's frame and offset of `addr`.
fn local_copy_ptr(addr: u64) -> CopyPtr {
    CopyPtr {
        u: addr / PAGE_SIZE,
        domid: parapet_abi::event_channel::DOMID_SELF,
        offset: (addr % PAGE_SIZE) as u16,
        pad: 0,
    }
}

/// The granted side of a `GNTTABOP_copy`: offset `offset` of grant `gref` of this guest's table.
fn gref_copy_ptr(gref: u32, offset: u16) -> CopyPtr {
    CopyPtr {
        u: u64::from(gref),
        domid: parapet_abi::event_channel::DOMID_SELF,
        offset,
        pad: 0,
    }
}

/// One `GNTTABOP_copy` of `dst.len()` bytes from offset `offset` of the page granted by `gref`
/// (this guest's table; the VMM reads it with the grantee's rights) into `dst`, which must lie
/// inside one page (the VMM refuses anything else with `GNTST_bad_copy_arg`). Returns the op's
/// `GNTST_*` status.
pub fn grant_copy_from_gref(gref: u32, offset: u16, dst: &mut [u8]) -> Result<i16, Errno> {
    let mut op = [Copy {
        source: gref_copy_ptr(gref, offset),
        dest: local_copy_ptr(gpa_mut(dst)),
        len: dst.len() as u16,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
        pad: 0,
    }];
    // SAFETY: the one destination is local memory at `dst`'s frame and offset, at most
    // `dst.len()` bytes: `dst`, which we borrow mutably.
    unsafe { grant_copy(&mut op) }?;
    Ok(op[0].status)
}

/// One `GNTTABOP_copy` of `src` to offset `offset` of the page granted by `gref` (this guest's
/// table; the VMM writes through it with the grantee's rights, so a read-only grant is
/// refused). `src` must lie inside one page. Returns the op's `GNTST_*` status.
pub fn grant_copy_to_gref(src: &[u8], gref: u32, offset: u16) -> Result<i16, Errno> {
    let mut op = [Copy {
        source: local_copy_ptr(gpa(src)),
        dest: gref_copy_ptr(gref, offset),
        len: src.len() as u16,
        flags: GNTCOPY_DEST_GREF,
        status: 0,
        pad: 0,
    }];
    // SAFETY: the VMM only reads `src`; it writes only into the page granted by `gref`, which
    // its granter has made available to be written through the grant.
    unsafe { grant_copy(&mut op) }?;
    Ok(op[0].status)
}

/// `GNTTABOP_query_size`: the VMM fills in `arg.nr_frames`, `arg.max_nr_frames` and
/// `arg.status`.
pub fn grant_query_size(arg: &mut QuerySize) -> Result<u64, Errno> {
    let addr = gpa_mut(arg);
    // SAFETY: the VMM reads and writes only the `QuerySize` at `addr`, which we borrow.
    Errno::from_ret(unsafe {
        call(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_QUERY_SIZE,
            addr,
            1,
            0,
            0,
        )
    })
}

/// `GNTTABOP_setup_table` for domain `dom`: asks for `frames.len()` frame numbers of the table
/// in `frames` and returns the operation's `GNTST_*` status.
pub fn grant_setup_table(dom: DomId, frames: &mut [u64]) -> Result<i16, Errno> {
    let mut arg = SetupTable {
        dom,
        nr_frames: frames.len() as u32,
        frame_list: frames.as_mut_ptr() as u64,
        ..Default::default()
    };
    let addr = gpa_mut(&mut arg);
    // SAFETY: the VMM reads and writes the `SetupTable` at `addr` and writes at most
    // `nr_frames` u64s to `frame_list`, i.e. into `frames`, which we borrow mutably.
    let ret = unsafe {
        call(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_SETUP_TABLE,
            addr,
            1,
            0,
            0,
        )
    };
    Errno::from_ret(ret).map(|_| arg.status)
}

// ---------------------------------------------------------------------------------------------
// kvm_pvm.

/// kvm_pvm: one cheap trap into the host (`int 0x1b`, its hypercall trap, with a number it does
/// not know) so that it delivers an interrupt it held back while the VIF byte was clear.
/// Used by [`crate::pvops::irq_enable`]; on other platforms it must not be called.
#[inline]
pub(crate) fn pvm_kick() {
    // SAFETY: on kvm_pvm `int 0x1b` is the host's hypercall trap; the number
    // (`vif::KICK_HYPERCALL`, 0x10ff) is unknown, so it only returns -ENOSYS in RAX. RCX and
    // R11 are declared clobbered in case the host's entry path uses them.
    unsafe {
        core::arch::asm!(
            "int 0x1b",
            inlateout("rax") parapet_abi::start_info::vif::KICK_HYPERCALL => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_before_boot_are_enosys() {
        assert_eq!(console_write(b"x"), Err(Errno::ENOSYS));
        assert_eq!(xen_version(), Err(Errno::ENOSYS));
        assert_eq!(report_fault(&FaultReport::default()), Errno::ENOSYS);
        assert_eq!(device_disconnect(0), Err(Errno::ENOSYS));
        assert_eq!(grant_copy_to_gref(b"x", 1, 0), Err(Errno::ENOSYS));
        // SAFETY: nothing is called: there is no stub for 4096.
        let ret = unsafe { raw::hypercall5(Hypercall(4096), 0, 0, 0, 0, 0) };
        assert_eq!(ret, Errno::ENOSYS.to_ret());
    }
}
