//! Ending the process: the VM's teardown off the exit path, and `_exit` for the watchdog.

use std::os::fd::RawFd;

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
