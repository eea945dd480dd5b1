//! Child processes of the benchmarks: run to completion with their output captured, killed
//! after a safety limit.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// Any one process is killed after this long (a safety net, not a measurement).
pub(crate) const PROCESS_LIMIT: Duration = Duration::from_secs(300);

/// What a child process did.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    /// The first line of stderr that says what went wrong (the `--stats=json` object left out).
    pub fn failure(&self) -> String {
        let line = self
            .stderr
            .lines()
            .filter(|l| !l.starts_with('{') && !l.trim().is_empty())
            .map(str::trim)
            .next()
            .unwrap_or("");
        match self.status {
            Some(code) if line.is_empty() => format!("exit status {code}"),
            Some(_) => line.to_owned(),
            None => format!("killed by a signal; {line}"),
        }
    }
}

/// Runs `cmd` to completion (killing it after [`PROCESS_LIMIT`]), capturing its output. With
/// `stdout_file`, standard output goes to that file (and is read back from it): a guest's bulk
/// console output then costs what writing a file costs, not what a pipe to this process does.
pub(crate) fn capture(cmd: &mut Command, stdout_file: Option<&Path>) -> Result<Captured> {
    let stdout = match stdout_file {
        Some(path) => Stdio::from(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Stdio::piped(),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = child
        .stdout
        .take()
        .map(|pipe| read(Box::new(pipe) as Box<dyn Read + Send>));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let (status, timed_out) = wait_limited(child, PROCESS_LIMIT)?;
    let stdout = match (out, stdout_file) {
        (Some(reader), _) => reader.join().unwrap_or_default(),
        (None, Some(path)) => String::from_utf8_lossy(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .into_owned(),
        (None, None) => String::new(),
    };
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.insert_str(0, "killed after the safety limit\n");
    }
    Ok(Captured {
        status: status.code(),
        stdout,
        stderr,
    })
}

/// Waits for `child`, killing it if it runs longer than `limit`; returns its status and
/// whether it was killed. The waiting thread blocks (no polling, so wall-clock timings of short
/// runs stay exact); a watchdog thread kills the child at the limit. The child is reaped only
/// after the watchdog has been told it ended (`waitid` with `WNOWAIT` first), so the watchdog can
/// never signal a recycled process id.
pub(crate) fn wait_limited(
    mut child: Child,
    limit: Duration,
) -> Result<(std::process::ExitStatus, bool)> {
    use std::sync::{Arc, Condvar, Mutex};
    let pid = child.id();
    // (ended, killed)
    let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let watchdog = {
        let state = state.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*state;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = cv
                .wait_timeout_while(guard, limit, |(ended, _)| !*ended)
                .unwrap_or_else(|e| e.into_inner());
            if !guard.0 {
                // SAFETY: kill(2) on the child this process started; it has not been reaped (the
                // waiter reaps it only after setting `ended` under this lock), so the id is
                // still the child's.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                guard.1 = true;
            }
        })
    };
    // SAFETY: a zeroed siginfo_t is a valid output buffer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid on our own child with a valid output buffer; WNOWAIT leaves it
        // unreaped.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let killed = {
        let (lock, cv) = &*state;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = true;
        cv.notify_all();
        guard.1
    };
    let _ = watchdog.join();
    let status = child.wait().context("waiting for a child process")?;
    Ok((status, killed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_skips_the_stats_block() {
        let c = Captured {
            status: Some(102),
            stderr: "{\"exit.total\":5,\"kvm.exits\":49}\nparapet: guest fault: #PF page \
                     fault (vector 14)\n  rip=0x1010fa\n"
                .into(),
            ..Captured::default()
        };
        assert_eq!(
            c.failure(),
            "parapet: guest fault: #PF page fault (vector 14)"
        );
        let quiet = Captured {
            status: Some(3),
            ..Captured::default()
        };
        assert_eq!(quiet.failure(), "exit status 3");
    }

    #[test]
    fn waits_for_and_times_out_children() {
        let child = Command::new("true").spawn().unwrap();
        let (status, killed) = wait_limited(child, Duration::from_secs(30)).unwrap();
        assert!(status.success() && !killed);
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let (status, killed) = wait_limited(child, Duration::from_millis(50)).unwrap();
        assert!(!status.success() && killed);
    }
}
