//! Shutdown requests end to end (docs/abi.md §7.5): `SIGTERM` to a VMM whose guest listens
//! (`guest_sdk::shutdown`) makes the guest power off with its own exit code; without a listener,
//! and on a second `SIGTERM`, the VMM ends at once, killed by the signal (143). `SIGINT` still
//! ends it at once. Also from a restored snapshot, and from guests that bind the VIRQ and close
//! it again, or poll for the request with upcalls masked. (The web server's shutdown, on a TAP
//! device, is in tests/net.rs.)
//!
//! No timing assertions: each test waits for the line that says the guest is where the test
//! needs it, and the limits below are only safety nets.

use parapet_tests::{Background, Output, TempDir, guest, vmm};
use rustix::process::Signal;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

/// What the VMM prints when it asks the guest.
const ASKED: &str =
    "parapet: SIGTERM: asked the guest to shut down (send it again to stop it at once)";
/// A safety net for lines and exits, never reached by a healthy run.
const LIMIT: Duration = Duration::from_secs(30);
/// An hour: a guest that sleeps this long can only be woken by the request.
const FOREVER_MS: &str = "3600000";

fn run(guest_name: &str, cmdline: &str) -> Command {
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg(guest(guest_name))
        .args(["--timeout", "120", "--cmdline", cmdline]);
    cmd
}

/// How often `line` is on stderr.
fn stderr_count(out: &Output, line: &str) -> usize {
    out.stderr_lines().iter().filter(|l| **l == line).count()
}

#[test]
fn sigterm_asks_a_listening_guest_to_shut_down() {
    // The ticker sleeps an hour after its first tick: only the request can wake it.
    let mut vmm = Background::start(run("ticker", &format!("ticks=0 pause_ms={FOREVER_MS}")));
    vmm.wait_for_line("tick 1 ", LIMIT);
    vmm.signal(Signal::TERM);
    let out = vmm.finish(LIMIT);
    out.assert_status(0)
        .assert_stdout_contains("ticker: shutdown requested\n")
        .assert_no_panic();
    assert_eq!(out.stderr_lines(), [ASKED], "{out}");
    assert!(!out.stdout.contains("tick 2 "), "{out}");
}

#[test]
fn sigterm_ends_a_guest_that_does_not_listen_at_once() {
    // echo never listens; it is blocked waiting for console input that never comes.
    let mut vmm = Background::start_with_stdin(run("echo", ""));
    let mut stdin = vmm.stdin.take().expect("stdin");
    stdin.write_all(b"still here\n").expect("write to the VMM");
    vmm.wait_for_line("echo: still here", LIMIT);
    vmm.signal(Signal::TERM);
    let out = vmm.finish(LIMIT);
    out.assert_killed_by(Signal::TERM.as_raw());
    assert_eq!(stderr_count(&out, ASKED), 0, "{out}");
    drop(stdin);
}

#[test]
fn a_second_sigterm_ends_a_guest_that_ignores_the_request() {
    let mut vmm = Background::start(run("hostile", "shutdown-ignore"));
    vmm.wait_for_line("hostile: shutdown-ignore: listening on port ", LIMIT);
    vmm.signal(Signal::TERM);
    vmm.wait_for_line(
        "hostile: shutdown-ignore: request arrived; ignoring it",
        LIMIT,
    );
    vmm.signal(Signal::TERM);
    let out = vmm.finish(LIMIT);
    out.assert_killed_by(Signal::TERM.as_raw())
        .assert_no_panic();
    assert!(!out.stdout.contains("FAIL"), "{out}");
    assert_eq!(stderr_count(&out, ASKED), 1, "{out}");
}

#[test]
fn a_guest_that_closed_its_shutdown_port_does_not_listen() {
    let mut vmm = Background::start(run("hostile", "shutdown-closed"));
    vmm.wait_for_line(
        "hostile: shutdown-closed: bound and closed; nobody listens",
        LIMIT,
    );
    vmm.signal(Signal::TERM);
    let out = vmm.finish(LIMIT);
    out.assert_killed_by(Signal::TERM.as_raw());
    assert!(!out.stdout.contains("FAIL"), "{out}");
    assert_eq!(stderr_count(&out, ASKED), 0, "{out}");
}

#[test]
fn a_guest_spinning_with_upcalls_masked_sees_the_request() {
    let mut vmm = Background::start(run("hostile", "shutdown-poll"));
    vmm.wait_for_line(
        "hostile: shutdown-poll: spinning with upcalls masked",
        LIMIT,
    );
    vmm.signal(Signal::TERM);
    let out = vmm.finish(LIMIT);
    out.assert_status(0)
        .assert_stdout_contains("hostile: shutdown-poll: request seen without an upcall")
        .assert_no_panic();
    assert_eq!(out.stderr_lines(), [ASKED], "{out}");
}

#[test]
fn sigint_still_ends_a_listening_guest_at_once() {
    let mut vmm = Background::start(run("ticker", &format!("ticks=0 pause_ms={FOREVER_MS}")));
    vmm.wait_for_line("tick 1 ", LIMIT);
    vmm.signal(Signal::INT);
    let out = vmm.finish(LIMIT);
    out.assert_killed_by(Signal::INT.as_raw());
    assert!(!out.stdout.contains("shutdown requested"), "{out}");
}

#[test]
fn a_restored_guest_that_listens_is_asked_too() {
    let dir = TempDir::new("shutdown-restore");
    let snap = dir.join("ticker.snap");
    // The snapshot is taken (SIGUSR1) after the ticker bound VIRQ_SHUTDOWN and printed a tick.
    let mut cmd = run("ticker", "ticks=0 pause_ms=200");
    cmd.arg("--snapshot").arg(&snap);
    let mut saver = Background::start(cmd);
    saver.wait_for_line("tick 1 ", LIMIT);
    saver.signal(Signal::USR1);
    let saved = saver.finish(LIMIT);
    saved.assert_status(0);
    assert!(
        saved
            .stderr
            .contains("parapet: guest suspended; snapshot written to "),
        "{saved}"
    );
    let mut cmd = Command::new(vmm());
    cmd.arg("restore").arg(&snap).args(["--timeout", "120"]);
    let mut restored = Background::start(cmd);
    // A tick from the restored guest: the restored VMM runs it, with its table restored.
    restored.wait_for_line("tick ", LIMIT);
    restored.signal(Signal::TERM);
    let out = restored.finish(LIMIT);
    out.assert_status(0)
        .assert_stdout_contains("ticker: shutdown requested\n")
        .assert_no_panic();
    assert_eq!(out.stderr_lines(), [ASKED], "{out}");
}
