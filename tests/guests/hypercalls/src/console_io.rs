//! `console_io`: writes and reads, with bad counts and pointers.

use super::*;

pub(super) fn console_io(c: &mut Checks, ram_end: u64) {
    let io = Hypercall::CONSOLE_IO;
    c.eq(
        "console_io write count 0",
        Ret::from_result(hypercall::console_write(&[])),
        Ret::ok(0),
    );
    let line = b"console_io write: this line is the payload\n";
    c.eq(
        "console_io write returns count",
        Ret::from_result(hypercall::console_write(line)),
        Ret::ok(line.len() as u64),
    );
    // SAFETY: the VMM only reads for CONSOLEIO_write, and these ranges are outside guest RAM.
    let (outside, straddling, wrapping) = unsafe {
        (
            raw(io, CONSOLEIO_WRITE, 16, ram_end),
            raw(io, CONSOLEIO_WRITE, 16, ram_end - 8),
            raw(io, CONSOLEIO_WRITE, 16, u64::MAX - 7),
        )
    };
    c.eq(
        "console_io write outside RAM",
        outside,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "console_io write straddling RAM end",
        straddling,
        Ret::err(Errno::EFAULT),
    );
    c.eq(
        "console_io write address overflow",
        wrapping,
        Ret::err(Errno::EFAULT),
    );
    let buf = [0u8; 8];
    // SAFETY: command 7 does not exist; the VMM accesses nothing.
    let unknown = unsafe { raw(io, 7, buf.len() as u64, buf.as_ptr() as u64) };
    c.eq("console_io unknown cmd", unknown, Ret::err(Errno::ENOSYS));
    let mut input = [0u8; 64];
    c.eq(
        "console_io read",
        Ret::from_result(hypercall::console_read(&mut input)),
        Ret::ok(0),
    );
    // SAFETY: a read into a range outside guest RAM.
    let bad_read = unsafe { raw(io, CONSOLEIO_READ, 16, ram_end) };
    c.eq(
        "console_io read outside RAM",
        bad_read,
        Ret::err(Errno::EFAULT),
    );
}
