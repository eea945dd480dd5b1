//! Containers on record under `--root`: `ROOT/ID/state.json` and, until `start`, the FIFO
//! `ROOT/ID/exec.fifo` the container's process waits on.
//!
//! The process is not this runtime's child (containerd's shim, a child subreaper, inherits it when
//! `create` exits), so whether it still runs is read from `/proc/PID/stat`: gone, a zombie, or a
//! different start time (the PID reused) all mean stopped.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The OCI runtime-spec version whose state this runtime reports.
pub const OCI_VERSION: &str = "1.0.2";

/// A container's lifecycle status, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created: the process waits for `start`.
    Created,
    /// Started: the VMM runs the guest.
    Running,
    /// The process has exited.
    Stopped,
}

impl Status {
    /// The word the OCI state uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// What `ROOT/ID/state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The container ID.
    pub id: String,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The rootfs directory, absolute.
    pub rootfs: PathBuf,
    /// The container's process: the child `create` forked, then the VMM it becomes.
    pub pid: i32,
    /// The process's start time (`/proc/PID/stat` field 22), to tell it from a reused PID.
    pub start_time: u64,
    /// The status last recorded: `created` until `start`, then `running`.
    pub status: Status,
    /// When `create` ran, RFC 3339.
    pub created: String,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup directories the process joined (`linux.cgroupsPath`), removed by `delete`.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

impl State {
    /// The status now: the recorded one while the process lives, else stopped.
    pub fn status(&self) -> Status {
        match proc_stat(self.pid) {
            Some((state, start)) if start == self.start_time && !matches!(state, 'Z' | 'X') => {
                self.status
            }
            _ => Status::Stopped,
        }
    }

    /// The state as runc's `state` prints it (the OCI state plus runc's `rootfs`, `created`
    /// and `owner`); the PID is 0 once stopped.
    pub fn oci_json(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// The `(state, start time)` of process `pid` from `/proc/PID/stat`, or `None` if it is gone.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    // `PID (COMM) STATE PPID …`: COMM may hold spaces and parentheses: split after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; field 22 the start time, 19 fields further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Checks a container ID the way runc does: `[A-Za-z0-9_+.-]+`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// The state directory, `--root`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root`.
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// `ROOT/ID`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// `ROOT/ID/exec.fifo`.
    pub fn fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("exec.fifo")
    }

    fn state_file(&self, id: &str) -> PathBuf {
        self.dir(id).join("state.json")
    }

    /// Makes `ROOT/ID` (and ROOT), failing if the container exists.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .context(|| format!("state directory {}", self.root.display()))?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.to_string()))
            }
            Err(e) => Err(e).context(|| format!("state directory {}", dir.display())),
        }
    }

    /// The container's state.
    pub fn load(&self, id: &str) -> Result<State> {
        validate_id(id)?;
        let path = self.state_file(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.to_string()));
            }
            Err(e) => return Err(e).context(|| path.display().to_string()),
        };
        serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// Records `state`, atomically (written aside, then renamed over).
    pub fn save(&self, state: &State) -> Result<()> {
        let path = self.state_file(&state.id);
        let text = serde_json::to_vec(state).expect("state serializes");
        write_atomic(&path, &text)
    }

    /// Forgets the container: removes `ROOT/ID`.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context(|| format!("remove {}", dir.display())),
        }
    }

    /// Every container on record, by ID (unreadable entries skipped).
    pub fn list(&self) -> Vec<State> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids.iter().filter_map(|id| self.load(id).ok()).collect()
    }
}

/// Writes `data` to `path` through a temporary file beside it and a rename, so a reader sees the
/// old or the new contents. Not synced: the state of running containers means nothing after a
/// reboot (it belongs on a tmpfs such as `/run`), as runc's does not.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            what: format!("write {}", path.display()),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("garbage"), None);
        let me = proc_stat(std::process::id() as i32).unwrap();
        assert!(matches!(me.0, 'R' | 'S'), "{me:?}");
        assert_eq!(proc_stat(0), None);
    }

    #[test]
    fn ids() {
        for ok in ["a", "hello-1", "x.y_z+w", "..."] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_round_trip() {
        let root = std::env::temp_dir().join(format!("parapet-runc-store-{}", std::process::id()));
        let store = Store::new(root.clone());
        store.create_dir("c1").unwrap();
        assert!(matches!(store.create_dir("c1"), Err(Error::Exists(_))));
        let me = proc_stat(std::process::id() as i32).unwrap();
        let state = State {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: std::process::id() as i32,
            start_time: me.1,
            status: Status::Created,
            created: "1970-01-01T00:00:00.000000000Z".into(),
            annotations: HashMap::new(),
            cgroups: Vec::new(),
        };
        store.save(&state).unwrap();
        let back = store.load("c1").unwrap();
        assert_eq!(back.status(), Status::Created);
        assert_eq!(back.oci_json()["status"], "created");
        assert_eq!(store.list().len(), 1);
        // A different start time: the PID was reused, the container has stopped.
        let stale = State {
            start_time: me.1 + 1,
            ..back
        };
        assert_eq!(stale.status(), Status::Stopped);
        assert_eq!(stale.oci_json()["pid"], 0);
        store.remove("c1").unwrap();
        assert!(matches!(store.load("c1"), Err(Error::NotExist(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
