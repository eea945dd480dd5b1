//! `--console-socket`: a pseudoterminal for the container, its master end sent to whoever listens
//! on the socket (containerd's shim, for `ctr run -t`) as runc sends it: one `SCM_RIGHTS` message
//! whose payload is the terminal's name.

use crate::error::{Context, Result};
use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::OpenptFlags;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A new pseudoterminal.
#[derive(Debug)]
pub struct Pty {
    /// The controlling end, for the socket's listener.
    pub master: OwnedFd,
    /// The terminal end, the container's stdio.
    pub slave: OwnedFd,
    /// The terminal's path, e.g. `/dev/pts/3`.
    pub name: String,
}

/// Opens a pseudoterminal, `cols`×`rows` if given.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .context(|| "open a pseudoterminal")?;
    rustix::pty::grantpt(&master).context(|| "grantpt")?;
    rustix::pty::unlockpt(&master).context(|| "unlockpt")?;
    let name = rustix::pty::ptsname(&master, Vec::new())
        .context(|| "ptsname")?
        .into_string()
        .map_err(|_| crate::error::Error::Other("the pseudoterminal's name is not UTF-8".into()))?;
    let slave = rustix::fs::open(
        name.as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {name}"))?;
    if let Some((cols, rows)) = size {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws).context(|| "set the terminal size")?;
    }
    Ok(Pty {
        master,
        slave,
        name,
    })
}

/// Sends `fd` over the Unix socket at `socket`, with `name` as the message.
pub fn send_fd(socket: &Path, name: &str, fd: impl AsFd) -> Result<()> {
    let stream =
        UnixStream::connect(socket).context(|| format!("console socket {}", socket.display()))?;
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &stream,
        &[IoSlice::new(name.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )
    .context(|| format!("send the terminal over {}", socket.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::IoSliceMut;
    use std::os::unix::net::UnixListener;

    #[test]
    fn master_goes_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("parapet-runc-console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let pty = open_pty(Some((100, 30))).unwrap();
        send_fd(&path, &pty.name, &pty.master).unwrap();

        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = rustix::net::recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::empty(),
        )
        .unwrap();
        assert_eq!(&buf[..msg.bytes], pty.name.as_bytes());
        let mut got = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                got = fds.next();
            }
        }
        let master = got.expect("a file descriptor came with the message");
        let ws = rustix::termios::tcgetwinsize(&master).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (100, 30));
        // What the container writes to its terminal comes out of the master that was sent.
        rustix::io::write(&pty.slave, b"hi\n").unwrap();
        let mut out = [0u8; 16];
        let n = rustix::io::read(&master, &mut out).unwrap();
        assert!(out[..n].starts_with(b"hi"), "{:?}", &out[..n]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
