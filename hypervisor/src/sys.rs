//! The few raw system calls the backends need that std does not offer: waiting on several file
//! descriptors, unbuffered reads of standard input (std's `Stdin` buffers, which would hide
//! data from `poll`), and terminal job control.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Readiness of one descriptor after [`poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data can be read (or the other end closed: the read returns 0).
    pub readable: bool,
}

/// Waits until one of `fds` is readable, for at most `timeout` (`None`: no limit; zero: only
/// looks); `None` entries are ignored. Retries on `EINTR` (with the whole timeout again).
pub fn poll(fds: &[Option<RawFd>], timeout: Option<Duration>) -> io::Result<Vec<Ready>> {
    // Rounded up, so that a short timeout does not become a busy loop of zero-length polls.
    let timeout = timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    });
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.unwrap_or(-1), // negative descriptors are skipped by poll(2)
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pollfds` is a valid, exclusively borrowed array of `pollfds.len()` entries.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(pollfds
        .iter()
        .map(|p| Ready {
            readable: p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
        })
        .collect())
}

/// Reads what standard input has, without buffering; 0 means end of input.
pub fn read_stdin(buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; fd 0 is standard input.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Keeps terminal job control from stopping the VMM (all its threads, and with them the
/// guest): `SIGTTIN` and `SIGTTOU`, which the kernel sends to a background process group that
/// reads its controlling terminal, or writes to it under `stty tostop`, are ignored. Then such
/// a read fails with `EIO` instead (the console reads only in the foreground, see
/// [`stdin_in_background`]) and such a write goes through.
pub fn ignore_terminal_stops() -> io::Result<()> {
    for signal in [libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: a zeroed `sigaction` with `SIG_IGN` installs no handler; `sigaction` only
        // changes this process's disposition of `signal`.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Whether standard input is this process's controlling terminal and another process group is
/// in the terminal's foreground (the VMM runs as a background job, `parapet run … &`): reading
/// it then fails (`EIO`, [`ignore_terminal_stops`]) and the input belongs to the foreground job.
/// `false` for anything else (not a terminal, not the controlling one, no foreground group),
/// which reads normally. One `ioctl(TIOCGPGRP)` and one `getpgrp`.
pub fn stdin_in_background() -> bool {
    rustix::termios::tcgetpgrp(std::io::stdin())
        .is_ok_and(|foreground| foreground != rustix::process::getpgrp())
}

/// Sets the calling thread's timer slack: how late the kernel may wake it from a timed sleep
/// (50 µs by default, which would make every guest timer late).
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

/// Takes an exclusive (or, for read-only use, shared) advisory lock on `file`, without waiting.
/// Returns `Ok(false)` if another process holds a conflicting lock.
pub fn try_lock(file: &std::fs::File, exclusive: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Deallocates `[offset, offset + len)` of `file`, keeping its size: the range reads back as
/// zeros. Fails with `EOPNOTSUPP` on file systems that cannot punch holes.
pub fn punch_hole(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let (offset, len) = (
        libc::off_t::try_from(offset).map_err(io::Error::other)?,
        libc::off_t::try_from(len).map_err(io::Error::other)?,
    );
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which way [`rw_vectored`] moves the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectoredDir {
    /// File to memory (`preadv`).
    Read,
    /// Memory to file (`pwritev`).
    Write,
}

/// Reads (or writes) all of the buffers `iov` names — `(host address, length)` pairs, in
/// order — from (to) `file` at `offset`, with `preadv`/`pwritev`, looping over short
/// transfers and `EINTR`. End of file before the buffers are full is `UnexpectedEof`.
///
/// # Safety
///
/// Every `[addr, addr + len)` must be memory of this process that stays mapped for the call
/// and that no Rust reference covers (the kernel copies through the raw pointers), writable
/// for [`VectoredDir::Read`].
pub unsafe fn rw_vectored(
    file: &std::fs::File,
    dir: VectoredDir,
    mut offset: u64,
    iov: &[(u64, usize)],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut iovecs: Vec<libc::iovec> = iov
        .iter()
        .filter(|&&(_, len)| len > 0)
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let mut done = 0; // iovecs fully transferred
    while done < iovecs.len() {
        let rest = &mut iovecs[done..];
        let count = rest.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        let at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: the caller guarantees every iovec names live memory of this process that no
        // Rust reference covers, writable for reads; `rest` is a valid array of `count`
        // iovecs, each trimmed only forward within its original buffer below.
        let n = unsafe {
            match dir {
                VectoredDir::Read => libc::preadv(file.as_raw_fd(), rest.as_ptr(), count, at),
                VectoredDir::Write => libc::pwritev(file.as_raw_fd(), rest.as_ptr(), count, at),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(match dir {
                VectoredDir::Read => io::ErrorKind::UnexpectedEof.into(),
                VectoredDir::Write => io::ErrorKind::WriteZero.into(),
            });
        }
        let mut n = n as usize;
        offset += n as u64;
        // Skip what was transferred: whole iovecs, then the front of a partial one.
        while n > 0 {
            let v = &mut iovecs[done];
            if n >= v.iov_len {
                n -= v.iov_len;
                done += 1;
            } else {
                v.iov_base = (v.iov_base as usize + n) as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

vmm_sys_util::ioctl_iow_nr!(TUNSETIFF, 'T' as u32, 202, libc::c_int);

/// `struct ifreq` is 40 bytes: a 16-byte name, then a union whose first member here is the
/// `short` flags.
const IFREQ_SIZE: usize = 40;

/// Opens `/dev/net/tun` and attaches it to the TAP device `name` (created if it does not exist
/// and the caller may create it), non-blocking, without packet information headers.
pub fn open_tap(name: &str) -> io::Result<std::fs::File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0', ' ']) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut ifreq = [0u8; IFREQ_SIZE];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifreq` is in size and
    // layout (name, then flags); the descriptor is ours.
    if unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(&file, TUNSETIFF(), ifreq.as_mut_ptr()) }
        < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// A thread's kernel thread ID, which [`signal_thread`] takes. Portable across C libraries,
/// unlike `pthread_t` (an integer in glibc, a pointer in musl).
pub type ThreadId = libc::pid_t;

/// The calling thread's kernel thread ID.
pub fn current_thread() -> ThreadId {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Sends `signal` to `thread` of this process, which must be alive (not exited); the caller
/// guarantees that.
pub fn signal_thread(thread: ThreadId, signal: libc::c_int) {
    // SAFETY: tgkill takes plain integers and only queues a signal; the process ID pins the
    // target to this process, and the caller guarantees the thread is still alive.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), thread, signal) };
}

/// Takes KVM's teardown of a VM off this process's exit path.
///
/// Destroying a VM with an in-kernel irqchip or ioeventfds waits for SRCU grace periods, about
/// 10 ms on a nested host: longer than a small guest's whole run. This forks a child that keeps
/// only the descriptors in `keep` (the VM and vCPU) open until this process has exited, so the
/// last close, and with it the teardown, happens in the child after the user has the exit
/// status. Every other descriptor (standard streams, disk images and their locks, TAP devices)
/// is closed in the child at once. If the fork fails, the teardown simply stays in this process.
///
/// Call it last, with the process single-threaded in spirit: the child runs only
/// async-signal-safe calls (`close`, `read`, `_exit`).
pub fn defer_vm_teardown(keep: &[RawFd]) {
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `pipe`.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    // SAFETY: the child only calls async-signal-safe functions before `_exit`, as required after
    // fork in a multi-threaded process.
    match unsafe { libc::fork() } {
        0 => {
            let mut keep_sorted = [pipe[0]; 8];
            let n = keep.len().min(7);
            keep_sorted[1..=n].copy_from_slice(&keep[..n]);
            keep_sorted[..=n].sort_unstable();
            let mut from: libc::c_uint = 0;
            for &fd in &keep_sorted[..=n] {
                let fd = fd as libc::c_uint;
                if fd > from {
                    // SAFETY: closes descriptors this child inherited and will not use.
                    unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
                }
                from = fd + 1;
            }
            // SAFETY: as above, everything above the highest kept descriptor.
            unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
            let mut byte = 0u8;
            // SAFETY: reads at most one byte into `byte`; returns 0 once the parent has exited
            // and the write end is closed.
            unsafe {
                libc::read(pipe[0], (&raw mut byte).cast(), 1);
                libc::_exit(0)
            }
        }
        -1 => {
            // SAFETY: closing the pipe we just created.
            unsafe {
                libc::close(pipe[0]);
                libc::close(pipe[1]);
            }
        }
        // The parent keeps the write end open until it exits; that wakes the child.
        // SAFETY: closing our copy of the read end.
        _ => unsafe {
            libc::close(pipe[0]);
        },
    }
}

/// Writes `message` to standard error with one `write` and ends the process with `status` at
/// once: no destructors, no flushing, no locks. For a deadline that must hold even if another
/// thread is stuck (e.g. blocked writing to a standard output nobody reads, holding its lock).
pub fn exit_now(status: i32, message: &str) -> ! {
    // SAFETY: writes `message.len()` bytes from a valid buffer to fd 2; the result is ignored
    // (there is nothing left to do if standard error is gone). `_exit` ends the process.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(status)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn poll_waits_at_most_its_timeout() {
        let quiet = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let fds = [Some(quiet.as_raw_fd()), None];
        let limit = Duration::from_millis(20);
        let start = std::time::Instant::now();
        let ready = poll(&fds, Some(limit)).unwrap();
        assert!(
            start.elapsed() >= limit,
            "returned early: {:?}",
            start.elapsed()
        );
        assert_eq!(ready, [Ready::default(); 2]);
        quiet.write(1).unwrap();
        assert!(poll(&fds, Some(Duration::ZERO)).unwrap()[0].readable);
        assert!(poll(&fds, None).unwrap()[0].readable);
    }
}
