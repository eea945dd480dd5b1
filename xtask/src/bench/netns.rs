//! Network namespaces for `cargo xtask bench net`: made with `ip netns add`, deleted when
//! dropped (so on errors and panics too), on SIGINT/SIGTERM/SIGHUP (a handler removes them before
//! the process dies), and, at the next run, if a previous run was killed outright (`ppbench-<pid>-…`
//! whose process no longer exists). Traffic never leaves them.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// The prefix of every namespace this module makes.
const PREFIX: &str = "ppbench-";

/// The namespaces alive in this process, as the mount points a signal handler unmounts.
static LIVE: Mutex<Vec<CString>> = Mutex::new(Vec::new());

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs `ip ARGS`, failing with its standard error.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {} (bench net needs root)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Makes namespace `ppbench-<pid>-<tag>` with its loopback up.
    pub fn new(tag: &str) -> Result<Netns> {
        install_signal_cleanup();
        let name = format!("{PREFIX}{}-{tag}", std::process::id());
        ip(&["netns", "add", &name])?;
        if let Ok(path) = CString::new(format!("/run/netns/{name}")) {
            LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(path);
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `program` run inside the namespace (`ip netns exec NAME program`; `ip` execs it, so the
    /// child's pid is the program's).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered the namespace: the sockets it makes belong to the
    /// namespace (and stay there when used from other threads).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_this_thread()?;
                f()
            })
            .join()
            .unwrap_or_else(|_| bail!("a thread in namespace {} panicked", self.name))
        })
    }

    /// Moves the calling thread into the namespace (`setns`).
    pub fn enter_this_thread(&self) -> Result<()> {
        let path = format!("/run/netns/{}", self.name);
        let f = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: setns on a valid namespace fd affects only the calling thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let path = format!("/run/netns/{}", self.name);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p.to_bytes() != path.as_bytes());
    }
}

/// Deletes namespaces left by runs of this bench that were killed (their process is gone).
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("xtask bench net: removing namespace {name} left by a killed run");
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only system calls here (no allocation): detach and remove each namespace's mount point,
    // which is what `ip netns del` does; then die of the same signal.
    if let Ok(live) = LIVE.try_lock() {
        for path in live.iter() {
            // SAFETY: `path` is a NUL-terminated string owned by LIVE, which the lock keeps alive.
            unsafe {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
                libc::unlink(path.as_ptr());
            }
        }
    }
    // SAFETY: restoring the default action and re-raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_signal_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `on_signal` only makes async-signal-safe system calls.
            unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        }
    });
}
