//! Bundles that are not Parapet images are handed to runc, so one runtime entry serves a whole
//! Kubernetes pod: its sandbox (the `pause` container, which Kubernetes marks as such: see
//! [`crate::guest::pod_sandbox`]) and any ordinary container beside the Parapet guests.
//!
//! The runc is `$PARAPET_RUNC_DELEGATE` if it is set (empty or `none`: never hand over), else the
//! first `runc` on `PATH`. Its containers live under `ROOT/runc` (`ROOT` is this runtime's
//! `--root`), so a later `start`, `state`, `kill`, `delete` or `ps` of an ID this runtime does
//! not hold goes to runc if runc holds it, and so does a command this runtime lacks (`exec`,
//! `pause`, `update`, …) naming such an ID. The hand-over is an `exec` with the same arguments but
//! `--root`, so runc writes the PID file, takes the console socket and logs to the shim's log.

use crate::error::Error;
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the runc to hand bundles to.
pub const ENV: &str = "PARAPET_RUNC_DELEGATE";

/// The runc that non-Parapet bundles go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegate {
    runc: PathBuf,
    root: PathBuf,
}

impl Delegate {
    /// The delegate for this runtime's state directory `root`, if there is a runc.
    pub fn find(root: &Path) -> Option<Delegate> {
        let runc = match std::env::var_os(ENV) {
            Some(v) if v.is_empty() || v == "none" => return None,
            Some(v) => PathBuf::from(v),
            None => std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join("runc"))
                .find(|p| is_executable(p))?,
        };
        Some(Delegate {
            runc,
            root: root.join("runc"),
        })
    }

    /// Whether runc holds container `id`.
    pub fn holds(&self, id: &str) -> bool {
        crate::state::validate_id(id).is_ok() && self.root.join(id).join("state.json").is_file()
    }

    /// Becomes runc, given this process's arguments (without `argv[0]`); returns only on failure.
    pub fn exec(&self, args: &[OsString]) -> Error {
        let err = Command::new(&self.runc)
            .args(with_root(args, &self.root))
            .exec();
        Error::Io {
            what: format!("hand the container to {}", self.runc.display()),
            source: err,
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `args` with the global `--root` (either form) set to `root`, or `--root root` put first.
fn with_root(args: &[OsString], root: &Path) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut replaced = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !replaced && arg == OsStr::new("--root") {
            it.next();
            out.push("--root".into());
            out.push(root.into());
            replaced = true;
        } else if !replaced && arg.as_encoded_bytes().starts_with(b"--root=") {
            let mut a = OsString::from("--root=");
            a.push(root);
            out.push(a);
            replaced = true;
        } else {
            out.push(arg.clone());
        }
    }
    if !replaced {
        out.splice(0..0, [OsString::from("--root"), root.into()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn root_is_replaced_or_added() {
        let root = Path::new("/r/runc");
        assert_eq!(
            with_root(&os(&["--root", "/r", "--log", "l", "create", "x"]), root),
            os(&["--root", "/r/runc", "--log", "l", "create", "x"])
        );
        assert_eq!(
            with_root(&os(&["--root=/r", "start", "x"]), root),
            os(&["--root=/r/runc", "start", "x"])
        );
        assert_eq!(
            with_root(&os(&["kill", "x", "9"]), root),
            os(&["--root", "/r/runc", "kill", "x", "9"])
        );
    }

    #[test]
    fn holds_only_valid_ids_with_state() {
        let dir =
            std::env::temp_dir().join(format!("parapet-runc-delegate-{}", std::process::id()));
        let d = Delegate {
            runc: "/bin/false".into(),
            root: dir.clone(),
        };
        std::fs::create_dir_all(dir.join("c1")).unwrap();
        assert!(!d.holds("c1"));
        std::fs::write(dir.join("c1/state.json"), b"{}").unwrap();
        assert!(d.holds("c1"));
        assert!(!d.holds(".."));
        assert!(!d.holds("c2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
