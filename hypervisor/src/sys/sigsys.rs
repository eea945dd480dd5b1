//! Reporting a forbidden system call (seccomp's `SIGSYS`) as one line, then exiting.

use std::io;

thread_local! {
    /// The calling thread's name for the SIGSYS report (a fixed buffer: the handler may not
    /// allocate).
    static SIGSYS_LABEL: std::cell::Cell<[u8; 16]> = const { std::cell::Cell::new([0; 16]) };
}

/// Names the calling thread in the SIGSYS report (at most 16 bytes are kept).
pub fn set_sigsys_label(name: &str) {
    let mut label = [0u8; 16];
    let n = name.len().min(16);
    label[..n].copy_from_slice(&name.as_bytes()[..n]);
    SIGSYS_LABEL.with(|l| l.set(label));
}

/// Installs the process's SIGSYS handler, which a seccomp filter's `SECCOMP_RET_TRAP` raises:
/// it writes `parapet: error: seccomp: thread NAME made forbidden system call NR` to standard
/// error and ends the process with status 1.
pub fn install_sigsys_reporter() -> io::Result<()> {
    // SAFETY: a zeroed `sigaction` is a valid starting point; the handler is an `extern "C"`
    // function of the SA_SIGINFO signature that only uses async-signal-safe operations
    // (a thread-local read, `write`, `_exit`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` for SIGSYS; its `_sigsys` member (after the
    // three `int`s and padding, at offset 16) holds the call address, then the system call
    // number as an `int` at offset 24.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
    let label = SIGSYS_LABEL.with(|l| l.get());
    let name_len = label.iter().position(|&b| b == 0).unwrap_or(label.len());
    let mut msg = [0u8; 128];
    let mut len = 0;
    for part in [
        &b"parapet: error: seccomp: thread "[..],
        if name_len == 0 {
            b"?"
        } else {
            &label[..name_len]
        },
        b" made forbidden system call ",
    ] {
        msg[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    let mut digits = [0u8; 12];
    let mut n = nr.unsigned_abs();
    let mut d = digits.len();
    loop {
        d -= 1;
        digits[d] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &digits[d..];
    msg[len..len + digits.len()].copy_from_slice(digits);
    len += digits.len();
    msg[len] = b'\n';
    len += 1;
    // SAFETY: writes `len` initialised bytes of `msg` to standard error, then ends the process.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), len);
        libc::_exit(1);
    }
}

/// Makes a system call no VMM thread's seccomp filter allows (`personality(0xffffffff)`, which
/// only queries): for the test that a forbidden call ends the process.
pub fn forbidden_system_call() {
    // SAFETY: `personality(0xffffffff)` changes nothing; it returns the current persona.
    unsafe {
        libc::syscall(libc::SYS_personality, 0xffff_ffffu64);
    }
}
