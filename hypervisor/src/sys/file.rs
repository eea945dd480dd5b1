//! Disk-image files: advisory locks, hole punching and vectored I/O into guest memory.

use std::io;

/// Takes an exclusive (or, for read-only use, shared) advisory lock on `file`, without waiting.
/// Returns `Ok(false)` if another process holds a conflicting lock.
pub fn try_lock(file: &std::fs::File, exclusive: bool) -> io::Result<bool> {
    use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
    let op = if exclusive {
        NonBlockingLockExclusive
    } else {
        NonBlockingLockShared
    };
    match rustix::fs::flock(file, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deallocates `[offset, offset + len)` of `file`, keeping its size: the range reads back as
/// zeros. Fails with `EOPNOTSUPP` on file systems that cannot punch holes.
pub fn punch_hole(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    Ok(rustix::fs::fallocate(file, mode, offset, len)?)
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
