//! VMM errors. Each renders as one line that names the problem, because it is what a user sees.

use std::path::PathBuf;

/// Why the VMM could not start or run a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file could not be read.
    #[error("cannot read kernel {path}: {source}")]
    KernelRead {
        /// The path given on the command line.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kernel file is not a loadable Parapet kernel.
    #[error("kernel {path}: {reason}")]
    KernelInvalid {
        /// The path given on the command line.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A disk image cannot be used.
    #[error("disk {}: {reason}", path.display())]
    Disk {
        /// The path given on the command line.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A TAP device cannot be used.
    #[error("tap {tap}: {reason}")]
    Net {
        /// The TAP name given on the command line.
        tap: String,
        /// What is wrong.
        reason: String,
    },
    /// The guest memory size is unusable.
    #[error("{0}")]
    Memory(String),
    /// The command line does not fit the start-info page.
    #[error("kernel command line is {len} bytes; the limit is {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit (excluding the NUL).
        max: usize,
    },
    /// The requested hypercall transport is not available on this host.
    #[error("hypercall transport {requested} is not available: {reason}")]
    TransportUnavailable {
        /// The transport asked for.
        requested: &'static str,
        /// Why not, and what to use instead.
        reason: String,
    },
    /// A KVM ioctl failed.
    #[error("{op}: {source}")]
    Kvm {
        /// What the VMM was doing.
        op: &'static str,
        /// The error KVM returned.
        source: kvm_ioctls::Error,
    },
    /// The host KVM lacks something Parapet needs.
    #[error("{0}")]
    HostUnsupported(String),
    /// A debugging option (`--gdb`, `--core`) cannot be used as given.
    #[error("{0}")]
    Debug(String),
    /// A snapshot cannot be written, read or restored as asked.
    #[error("snapshot {}: {reason}", path.display())]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Any other OS-level failure.
    #[error("{op}: {source}")]
    Io {
        /// What the VMM was doing.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Result alias for the VMM.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds the operation name to a KVM error.
pub(crate) trait KvmContext<T> {
    fn kvm(self, op: &'static str) -> Result<T>;
}

impl<T> KvmContext<T> for std::result::Result<T, kvm_ioctls::Error> {
    fn kvm(self, op: &'static str) -> Result<T> {
        self.map_err(|source| Error::Kvm { op, source })
    }
}
