//! Hypercalls through the hypercall page (docs/abi.md §3).
//!
//! [`hypercall5`] is the one raw entry point: it calls stub `nr` of the hypercall page the VMM
//! filled, with the Xen x86_64 register convention (RAX = number; RDI, RSI, RDX, R10, R8 =
//! arguments; RAX = result; RCX and R11 clobbered). The guest never executes the trap instruction
//! itself, so the same kernel runs with every transport.
//!
//! The typed wrappers below it are safe: each passes only pointers to memory it borrows for the
//! duration of the call, sized as the hypercall expects, and splits the result into
//! `Ok(value)` or `Err(Errno)`.
//!
//! Before boot (and on the host) no hypercall page is known; every call then returns
//! `-ENOSYS` without trapping.

use core::sync::atomic::{AtomicU64, Ordering};

use parapet_abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use parapet_abi::multicall::MulticallEntry;
use parapet_abi::sched::{
    FaultReport, SCHEDOP_BLOCK, SCHEDOP_FAULT, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown,
};
use parapet_abi::start_info::StartInfo;
use parapet_abi::version::{
    EXTRAVERSION_LEN, FeatureInfo, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION,
};
use parapet_abi::{Errno, Hypercall};

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

/// Makes hypercall `nr` with five arguments and returns RAX as the VMM left it (a negated
/// [`Errno`] in `-4095..=-1` on failure; see [`Errno::from_ret`]).
///
/// Numbers without a stub (≥ 128) and calls made before boot return `-ENOSYS` without trapping.
///
/// # Safety
///
/// The arguments must be valid for hypercall `nr` as docs/abi.md describes it. In particular,
/// any guest memory the VMM will write through an argument (a buffer, a result structure, a
/// multicall array, or the memory the entries of a multicall name) must be memory the caller
/// may have written at this point. Ranges outside guest RAM are always safe to pass: the VMM
/// answers them with `-EFAULT` and touches nothing.
#[inline]
pub unsafe fn hypercall5(nr: Hypercall, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
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

/// [`hypercall5`] with two arguments.
///
/// # Safety
///
/// As for [`hypercall5`].
#[inline]
pub unsafe fn hypercall2(nr: Hypercall, a1: u64, a2: u64) -> u64 {
    // SAFETY: forwarded; the caller upholds hypercall5's contract.
    unsafe { hypercall5(nr, a1, a2, 0, 0, 0) }
}

/// [`hypercall5`] with three arguments.
///
/// # Safety
///
/// As for [`hypercall5`].
#[inline]
pub unsafe fn hypercall3(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> u64 {
    // SAFETY: forwarded; the caller upholds hypercall5's contract.
    unsafe { hypercall5(nr, a1, a2, a3, 0, 0) }
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
    Errno::from_ret(unsafe { hypercall2(Hypercall::SCHED_OP, cmd, arg) })
}

/// `console_io(CONSOLEIO_write)`: writes up to 16 KiB of `bytes` to the console and returns how
/// many were written. One call is one trap.
pub fn console_write(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: the VMM only reads `bytes.len()` bytes at `bytes`, which we borrow.
    let ret = unsafe {
        hypercall3(
            Hypercall::CONSOLE_IO,
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            gpa(bytes),
        )
    };
    Errno::from_ret(ret)
}

/// `console_io(CONSOLEIO_read)`: copies pending console input into `buf` and returns the count
/// (0 while there is none, or no input channel).
pub fn console_read(buf: &mut [u8]) -> Result<u64, Errno> {
    let (len, addr) = (buf.len() as u64, gpa_mut(buf));
    // SAFETY: the VMM writes at most `buf.len()` bytes into `buf`, which we borrow mutably.
    Errno::from_ret(unsafe { hypercall3(Hypercall::CONSOLE_IO, CONSOLEIO_READ, len, addr) })
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
    Errno::from_ret(unsafe { hypercall2(Hypercall::SET_TIMER_OP, deadline_ns, 0) })
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
    let ret = unsafe { hypercall2(Hypercall::XEN_VERSION, XENVER_VERSION, 0) };
    Errno::from_ret(ret).map(|v| v as u32)
}

/// `xen_version(XENVER_extraversion)`: the 16-byte NUL-padded extra version (`-parapet`).
pub fn xen_extraversion() -> Result<[u8; EXTRAVERSION_LEN], Errno> {
    let mut buf = [0u8; EXTRAVERSION_LEN];
    let addr = gpa_mut(&mut buf);
    // SAFETY: the VMM writes exactly EXTRAVERSION_LEN bytes into `buf`, which we own.
    let ret = unsafe { hypercall2(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, addr) };
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
    let ret = unsafe { hypercall2(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, addr) };
    Errno::from_ret(ret).map(|_| info.submap)
}

/// `multicall(entries, count)`: runs every entry in order with one trap and stores each result in
/// its `result` field. Returns the multicall's own status (0, `-E2BIG`, `-EFAULT`).
///
/// # Safety
///
/// Every entry must be a call the caller could make with [`hypercall5`] at this point: the
/// memory its arguments name is accessed by the VMM as that hypercall describes.
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> Result<u64, Errno> {
    let (addr, count) = (entries.as_mut_ptr() as u64, entries.len() as u64);
    // SAFETY: the VMM writes only the `result` fields of `entries`, which we borrow mutably; the
    // entries' own effects are the caller's responsibility.
    let ret = unsafe { hypercall2(Hypercall::MULTICALL, addr, count) };
    Errno::from_ret(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_before_boot_are_enosys() {
        assert_eq!(console_write(b"x"), Err(Errno::ENOSYS));
        assert_eq!(xen_version(), Err(Errno::ENOSYS));
        assert_eq!(report_fault(&FaultReport::default()), Errno::ENOSYS);
        // SAFETY: nothing is called: there is no stub for 4096.
        let ret = unsafe { hypercall2(Hypercall(4096), 0, 0) };
        assert_eq!(ret, Errno::ENOSYS.to_ret());
    }
}
