//! Waiting on several file descriptors at once.

use std::io;
use std::os::fd::RawFd;
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
