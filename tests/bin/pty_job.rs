//! Runs a command as a job of an interactive shell on the terminal that is its standard input,
//! for the terminal tests: `pty-job fg CMD ARGS...` or `pty-job bg [--fg-on PATH] CMD ARGS...`.
//!
//! It starts a new session whose controlling terminal is its standard input, so that the
//! terminal's job control applies as in a login shell.
//!
//! - `fg` runs CMD as the foreground job: pty-job replaces itself with CMD, which then leads the
//!   session and is the terminal's foreground process group.
//! - `bg` runs CMD as `CMD &` does: in a process group of its own that is not the terminal's
//!   foreground group (pty-job's own group is), and waits for it as a shell does, stops
//!   included. With `--fg-on PATH`, once PATH exists it brings the job to the foreground, as
//!   `fg` does.
//!
//! `bg` exits with CMD's exit status, or 128 + N if signal N ended CMD. If signal N stopped CMD
//! (SIGTTIN: a background job read the terminal; SIGTTOU: it wrote under `stty tostop`), it
//! prints `pty-job: job stopped by signal N` on standard error, kills CMD and exits with 125.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

/// The exit status when the job was stopped.
const STOPPED: u8 = 125;
/// The exit status for a usage or set-up error.
const FAILED: u8 = 2;
/// How often the `bg` job's state (and PATH) is looked at.
const POLL: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pty-job: {e}");
            ExitCode::from(FAILED)
        }
    }
}

fn run() -> Result<u8, String> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let usage = "usage: pty-job fg CMD ARGS... | pty-job bg [--fg-on PATH] CMD ARGS...";
    if args.is_empty() {
        return Err(usage.into());
    }
    let mode = args.remove(0);
    let mut fg_on = None;
    if mode == "bg" && args.first().is_some_and(|a| a == "--fg-on") {
        if args.len() < 2 {
            return Err(usage.into());
        }
        fg_on = Some(PathBuf::from(args.remove(1)));
        args.remove(0);
    }
    if args.is_empty() || (mode != "fg" && mode != "bg") {
        return Err(usage.into());
    }
    let terminal = std::io::stdin();
    rustix::process::setsid().map_err(|e| format!("cannot start a session: {e}"))?;
    rustix::process::ioctl_tiocsctty(&terminal)
        .map_err(|e| format!("cannot make standard input the controlling terminal: {e}"))?;
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    if mode == "fg" {
        let e = cmd.exec();
        return Err(format!("cannot run {:?}: {e}", args[0]));
    }
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", args[0]))?;
    let pid = Pid::from_child(&child);
    loop {
        if let Some(path) = &fg_on
            && path.exists()
        {
            rustix::termios::tcsetpgrp(&terminal, pid)
                .map_err(|e| format!("cannot bring the job to the foreground: {e}"))?;
            fg_on = None;
        }
        let status = match waitpid(Some(pid), WaitOptions::UNTRACED | WaitOptions::NOHANG) {
            Ok(Some((_, status))) => status,
            Ok(None) => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot wait for the job: {e}")),
        };
        if let Some(signal) = status.stopping_signal() {
            eprintln!("pty-job: job stopped by signal {signal}");
            let _ = kill_process(pid, Signal::KILL);
            let _ = waitpid(Some(pid), WaitOptions::empty());
            return Ok(STOPPED);
        }
        if let Some(code) = status.exit_status() {
            return Ok(code as u8);
        }
        if let Some(signal) = status.terminating_signal() {
            return Ok(128u8.wrapping_add(signal as u8));
        }
    }
}
