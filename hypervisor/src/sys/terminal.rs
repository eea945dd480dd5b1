//! Standard input and the terminal: unbuffered reads (std's `Stdin` buffers, which would hide
//! data from `poll`) and job control.

use std::io;

/// Reads what standard input has, without buffering; 0 means end of input.
pub fn read_stdin(buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(std::io::stdin(), &mut *buf) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
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
