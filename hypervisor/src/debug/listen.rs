//! Where gdb connects: a TCP or Unix socket, bound before the guest is built (so a bad address
//! fails at once) and accepted before the guest's first instruction; or a serial line, opened
//! before the guest is built, on which gdb's first packet is awaited like a connection.

use super::gdb::{self, GdbConnection};
use super::serial::SerialLine;
use crate::config::GdbAddr;
use crate::error::{Error, Result};
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// A bound gdb socket.
#[derive(Debug)]
pub enum GdbListener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket, removed once gdb has connected.
    Unix(UnixListener, PathBuf),
    /// A serial line (a character device), gdb at its other end.
    Serial(SerialLine, PathBuf),
}

impl GdbListener {
    /// Binds `addr`. A path may name a serial line (opened), a stale socket (replaced), or
    /// nothing.
    pub fn bind(addr: &GdbAddr) -> Result<GdbListener> {
        let bind_error = |source| Error::Io {
            op: "cannot listen for gdb",
            source,
        };
        match addr {
            GdbAddr::Tcp(a) => Ok(GdbListener::Tcp(
                TcpListener::bind(a.as_str())
                    .map_err(|e| Error::Debug(format!("cannot listen for gdb on {a}: {e}")))?,
            )),
            GdbAddr::Path(path) => {
                match std::fs::metadata(path) {
                    Ok(meta) if meta.file_type().is_char_device() => {
                        return Ok(GdbListener::Serial(SerialLine::open(path)?, path.clone()));
                    }
                    _ => {}
                }
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.file_type().is_socket() => {
                        std::fs::remove_file(path).map_err(bind_error)?;
                    }
                    Ok(_) => {
                        return Err(Error::Debug(format!(
                            "--gdb {}: the path exists and is not a socket or a serial line",
                            path.display()
                        )));
                    }
                    Err(_) => {}
                }
                let listener = UnixListener::bind(path).map_err(|e| {
                    Error::Debug(format!("cannot listen for gdb on {}: {e}", path.display()))
                })?;
                Ok(GdbListener::Unix(listener, path.clone()))
            }
        }
    }

    /// What to type in gdb.
    pub fn describe(&self) -> String {
        match self {
            GdbListener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("target remote {a}"),
                Err(_) => "target remote HOST:PORT".into(),
            },
            GdbListener::Unix(_, path) => format!("target remote {}", path.display()),
            GdbListener::Serial(_, path) => format!(
                "target remote SERIAL-LINE (gdb on the other end of {})",
                path.display()
            ),
        }
    }

    /// Waits for gdb to connect (a serial line is ready at once: the stub awaits gdb's first
    /// packet on it).
    pub fn accept(self) -> Result<(GdbConnection, RawFd)> {
        let accept_error = |source| Error::Io {
            op: "cannot accept gdb's connection",
            source,
        };
        match self {
            GdbListener::Tcp(l) => {
                let (stream, _) = l.accept().map_err(accept_error)?;
                Ok(gdb::connection(stream))
            }
            GdbListener::Unix(l, path) => {
                let (stream, _) = l.accept().map_err(accept_error)?;
                let _ = std::fs::remove_file(path);
                Ok(gdb::connection(stream))
            }
            GdbListener::Serial(line, _) => Ok(gdb::connection(line)),
        }
    }
}
