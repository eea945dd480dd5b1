//! gdb over a serial line (`--gdb /dev/ttyS1`): the classic `target remote /dev/ttyS0` set-up,
//! with gdb on the machine at the line's other end. The line is put in raw mode (8 bits, no
//! echo, no line editing, no flow control, modem lines ignored); its speed is left as it is
//! (`stty -F LINE SPEED` sets it, gdb's side takes `set serial baud SPEED`).

use crate::error::{Error, Result};
use gdbstub::conn::{Connection, ConnectionExt};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{ControlModes, OptionalActions, QueueSelector};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// An open serial line in raw mode.
#[derive(Debug)]
pub struct SerialLine {
    fd: OwnedFd,
    /// A byte [`ConnectionExt::peek`] read ahead (a terminal has no `MSG_PEEK`).
    peeked: Option<u8>,
    /// The packet being written: sent at [`Connection::flush`], in one `write`.
    out: Vec<u8>,
}

impl SerialLine {
    /// Opens the serial line at `path` and puts it in raw mode.
    pub fn open(path: &Path) -> Result<SerialLine> {
        let fail = |what: &str, e: rustix::io::Errno| {
            Error::Debug(format!("--gdb {}: {what}: {e}", path.display()))
        };
        // Non-blocking to open, so that a line whose modem control is on does not wait for a
        // carrier; blocking afterwards. Not our controlling terminal.
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("cannot open the serial line", e))?;
        let mut termios = rustix::termios::tcgetattr(&fd)
            .map_err(|e| fail("not a serial line (a terminal device)", e))?;
        termios.make_raw();
        termios.control_modes |= ControlModes::CLOCAL | ControlModes::CREAD;
        termios.control_modes -= ControlModes::CRTSCTS;
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &termios)
            .map_err(|e| fail("cannot put the serial line in raw mode", e))?;
        // Whatever arrived before gdb's session is noise (and gdb retransmits).
        let _ = rustix::termios::tcflush(&fd, QueueSelector::IFlush);
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| fail("fcntl", e))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(|e| fail("fcntl", e))?;
        Ok(SerialLine {
            fd,
            peeked: None,
            out: Vec::new(),
        })
    }

    /// Reads one byte, waiting for it.
    fn read_byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8];
        loop {
            match rustix::io::read(&self.fd, &mut byte) {
                Ok(1) => return Ok(byte[0]),
                // Raw mode with VMIN 1: nothing read means the line hung up.
                Ok(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                // The vCPU thread's kick signal may land here: not an error.
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsRawFd for SerialLine {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Connection for SerialLine {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.out.push(byte);
        // An acknowledgement goes out at once: gdbstub writes it before a response that may
        // come much later (a `continue`'s stop) and flushes only the response, but gdb waits
        // for the `+` before it waits for the response, and sends the packet again meanwhile.
        if self.out.len() == 1 && byte == b'+' {
            self.flush()?;
        }
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.out.len() {
            match rustix::io::write(self.fd.as_fd(), &self.out[done..]) {
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        Ok(())
    }
}

impl ConnectionExt for SerialLine {
    fn read(&mut self) -> io::Result<u8> {
        match self.peeked.take() {
            Some(byte) => Ok(byte),
            None => self.read_byte(),
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.peeked.is_none() {
            let ready = crate::sys::poll(&[Some(self.fd.as_raw_fd())], Some(Duration::ZERO))?;
            if ready[0].readable {
                self.peeked = Some(self.read_byte()?);
            }
        }
        Ok(self.peeked)
    }
}
