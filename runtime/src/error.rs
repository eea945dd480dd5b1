//! The runtime's errors: each one is printed as one line on stderr and written to the `--log` file,
//! where containerd's shim reads the last one back into its own error message.

use std::path::PathBuf;

/// Everything that can make a `parapet-runc` command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed; `what` says on what.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The bundle's `config.json` could not be read or parsed.
    #[error("bundle {bundle}: config.json: {source}")]
    Spec {
        bundle: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The bundle does not describe a Parapet guest, or describes one badly.
    #[error("bundle {bundle}: {msg}")]
    Guest { bundle: PathBuf, msg: String },
    /// The bundle is not a Parapet image (and there is no runc to hand it to).
    #[error("bundle {bundle}: {msg}")]
    NotParapet { bundle: PathBuf, msg: String },
    /// The container ID is not one the runtime accepts.
    #[error(
        "invalid container id `{0}`: use letters, digits, `_`, `+`, `-` and `.` (not `.` or `..` alone)"
    )]
    InvalidId(String),
    /// No container with this ID exists under `--root`.
    #[error("container `{0}` does not exist")]
    NotExist(String),
    /// A container with this ID already exists under `--root`.
    #[error("container with id `{0}` already exists")]
    Exists(String),
    /// The container's status does not allow the operation.
    #[error("container `{id}` is {status}: {msg}")]
    BadStatus {
        id: String,
        status: &'static str,
        msg: &'static str,
    },
    /// The `parapet` VMM could not be found.
    #[error(
        "cannot find the `parapet` VMM beside {exe} or on PATH (install it with `cargo install --path hypervisor`)"
    )]
    NoVmm { exe: PathBuf },
    /// A signal name or number that is not a signal.
    #[error("unknown signal `{0}`")]
    BadSignal(String),
    /// A runc command this runtime does not implement, and why.
    #[error("`{0}` is not supported by parapet-runc: {1}")]
    Unsupported(String, &'static str),
    /// Any other failure, already worded.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The error for runc's command `command`, which this runtime does not have.
    pub fn unsupported(command: &str) -> Error {
        let why = match command {
            "exec" => {
                "a Parapet container is one guest kernel, with no processes to run a command in"
            }
            "update" => "a guest's memory is fixed when it boots",
            "pause" | "resume" => "the VMM cannot freeze its guest yet",
            "checkpoint" | "restore" => "containers cannot be checkpointed yet",
            "events" => "the VMM reports no events or statistics yet",
            _ => "runc has it, this runtime does not",
        };
        Error::Unsupported(command.to_string(), why)
    }
}

/// The result of a runtime operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an `io::Error` (or a rustix `Errno`) with what was being done.
pub trait Context<T> {
    /// Attaches `what` (evaluated only on error) to the error.
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what().into(),
            source,
        })
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Io {
            what: what().into(),
            source: e.into(),
        })
    }
}
