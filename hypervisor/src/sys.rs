//! The few raw system calls the backends need that std does not offer: waiting on several file
//! descriptors, and unbuffered reads of standard input (std's `Stdin` buffers, which would hide
//! data from `poll`).

use std::io;
use std::os::fd::RawFd;

/// Readiness of one descriptor after [`poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data can be read (or the other end closed: the read returns 0).
    pub readable: bool,
}

/// Waits until one of `fds` is readable; `None` entries are ignored. Retries on `EINTR`.
pub fn poll(fds: &[Option<RawFd>]) -> io::Result<Vec<Ready>> {
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
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, -1) };
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

/// Sets the calling thread's timer slack: how late the kernel may wake it from a timed sleep
/// (50 µs by default, which would make every guest timer late).
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}
