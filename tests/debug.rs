//! Debugging guests: the real gdb against `parapet run --gdb` (break, continue, inspect, step,
//! continue to exit; a guest fault), gdb's Ctrl-C over the remote protocol, and core dumps that
//! gdb opens at the faulting frame. docs/debugging.md.
//!
//! gdb must be installed (Debian's `gdb`; `.ci/run` installs it).

use parapet_tests::{Output, TempDir, guest, parapet, run, vmm};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts `parapet run GUEST --gdb SOCKET ARGS` on a thread; returns once the socket exists.
fn start_under_gdb(
    dir: &TempDir,
    guest_name: &str,
    args: &[&str],
) -> (PathBuf, JoinHandle<Output>) {
    let socket = dir.join("gdb.sock");
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg(guest(guest_name))
        .arg("--gdb")
        .arg(&socket)
        .args(["--timeout", "50"])
        .args(args);
    let vmm = std::thread::spawn(move || run(cmd));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            !vmm.is_finished(),
            "parapet ended before it listened for gdb: {}",
            vmm.join().unwrap()
        );
        assert!(Instant::now() < deadline, "parapet never listened for gdb");
        std::thread::sleep(Duration::from_millis(10));
    }
    (socket, vmm)
}

/// Runs gdb in batch mode on `elf` with `commands` (after connecting to `socket`, if given) and
/// `extra` arguments.
fn gdb(elf: &Path, socket: Option<&Path>, commands: &[&str], extra: &[&Path]) -> Output {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-ex", "set confirm off"]);
    if let Some(socket) = socket {
        cmd.arg("-ex")
            .arg(format!("target remote {}", socket.display()));
    }
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.arg(elf).args(extra);
    let out = run(cmd);
    assert!(
        out.status.is_some() || out.killed,
        "gdb did not run (is Debian's gdb installed? .ci/run installs it): {out}"
    );
    out
}

#[test]
fn gdb_breaks_inspects_steps_and_continues_to_the_exit() {
    let dir = TempDir::new("gdb");
    let (socket, vmm) = start_under_gdb(&dir, "debuggee", &[]);
    let out = gdb(
        &guest("debuggee"),
        Some(&socket),
        &[
            // Stopped before the first instruction.
            "print $pc == &_start",
            "break debuggee::step",
            "continue",
            "print pair",
            "next",
            "print next",
            "bt 2",
            "stepi",
            "info registers rip fs_base gs_base",
            // Register writes reach KVM: read back past gdb's cache, then put back.
            "set $saved_r12 = $r12",
            "set $saved_gs = $gs_base",
            "set $r12 = 0x1234abcd",
            "set $gs_base = 0x7777000",
            "maintenance flush register-cache",
            "print/x $r12",
            "print/x $gs_base",
            "set $r12 = $saved_r12",
            "set $gs_base = $saved_gs",
            "set var ROUNDS_DONE.v.value = 5",
            "delete",
            "continue",
        ],
        &[],
    );
    let vmm = vmm.join().unwrap();
    let g = &out.stdout;
    for expected in [
        "$1 = 1",
        "Breakpoint 1, debuggee::step (pair=...) at examples/debuggee/src/main.rs:25",
        "$2 = (0, 1)",
        "$3 = 1",
        "#1  0x",
        "in debuggee::main () at examples/debuggee/src/main.rs",
        "fs_base",
        "gs_base",
        "= 0x1234abcd",
        "= 0x7777000",
        // 143 as gdb prints exit codes, in octal.
        "exited with code 0217",
    ] {
        assert!(
            g.contains(expected),
            "gdb's output lacks {expected:?}:\n{out}\n{vmm}"
        );
    }
    // The write from gdb reached the guest: 5 + 10 rounds, and the run ended normally.
    vmm.assert_status(143)
        .assert_stdout_contains("debuggee: 15 rounds, total 143")
        .assert_stderr_contains("target remote");
}

#[test]
fn gdb_stops_at_a_guest_fault_then_sees_it_terminate() {
    let dir = TempDir::new("gdb-fault");
    let (socket, vmm) = start_under_gdb(&dir, "debuggee", &["--cmdline", "fault"]);
    let out = gdb(
        &guest("debuggee"),
        Some(&socket),
        &["continue", "bt", "print/x $rdi", "continue"],
        &[],
    );
    let vmm = vmm.join().unwrap();
    for expected in [
        "Program received signal SIGSEGV",
        "debuggee::poke (target=0x0, value=1) at examples/debuggee/src/main.rs",
        "debuggee::main () at examples/debuggee/src/main.rs",
        "$1 = 0x0",
        "Program terminated with signal SIGSEGV",
    ] {
        assert!(
            out.stdout.contains(expected),
            "gdb's output lacks {expected:?}:\n{out}\n{vmm}"
        );
    }
    vmm.assert_status(102)
        .assert_stderr_contains("#PF page fault");
}

// `--gdb` on a serial line: here a pseudo-terminal, whose master end the test relays to a Unix
// socket for gdb (which cannot open a master by name), as a terminal server would a real line.
#[test]
fn gdb_over_a_serial_line() {
    use rustix::pty::OpenptFlags;
    use rustix::termios::LocalModes;
    let dir = TempDir::new("gdb-serial");
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let line = PathBuf::from(
        rustix::pty::ptsname(&master, Vec::new())
            .unwrap()
            .into_string()
            .unwrap(),
    );
    let socket = dir.join("relay.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg(guest("debuggee"))
        .arg("--gdb")
        .arg(&line)
        .args(["--timeout", "50"]);
    let vmm = std::thread::spawn(move || run(cmd));
    // The VMM puts the line in raw mode before the guest waits (the master shares its modes).
    let deadline = Instant::now() + Duration::from_secs(20);
    while rustix::termios::tcgetattr(&master)
        .unwrap()
        .local_modes
        .contains(LocalModes::ICANON)
    {
        assert!(
            !vmm.is_finished(),
            "parapet ended before it opened the line: {}",
            vmm.join().unwrap()
        );
        assert!(Instant::now() < deadline, "parapet never opened the line");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The relay threads end with the line (the VMM's exit) and with gdb.
    let master = std::fs::File::from(master);
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (mut from_line, mut to_gdb) = (master.try_clone().unwrap(), conn.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut from_line, &mut to_gdb));
        let (mut from_gdb, mut to_line) = (conn, master);
        let _ = std::io::copy(&mut from_gdb, &mut to_line);
    });
    let out = gdb(
        &guest("debuggee"),
        Some(&socket),
        &[
            "break debuggee::step",
            "continue",
            "print pair",
            "stepi",
            "delete",
            "continue",
        ],
        &[],
    );
    let vmm = vmm.join().unwrap();
    for expected in [
        "Breakpoint 1, debuggee::step (pair=...) at examples/debuggee/src/main.rs:25",
        "$1 = (0, 1)",
        "exited with code 0217",
    ] {
        assert!(
            out.stdout.contains(expected),
            "gdb's output lacks {expected:?}:\n{out}\n{vmm}"
        );
    }
    vmm.assert_status(143)
        .assert_stderr_contains(&format!("gdb on the other end of {}", line.display()));
}

/// A remote-protocol packet.
fn packet(body: &str) -> Vec<u8> {
    let sum = body.bytes().fold(0u8, u8::wrapping_add);
    format!("${body}#{sum:02x}").into_bytes()
}

/// Reads until a whole packet (`$...#xx`) has arrived, or `limit`; returns what came.
fn read_reply(conn: &mut UnixStream, limit: Duration) -> String {
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let whole = got
            .iter()
            .rposition(|&b| b == b'#')
            .is_some_and(|hash| got.len() >= hash + 3);
        if whole {
            break;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

// gdb's Ctrl-C is one 0x03 byte while the target runs; batch-mode gdb cannot send it, so this
// test speaks the protocol itself.
#[test]
fn ctrl_c_pauses_a_running_guest_and_kill_ends_it() {
    let dir = TempDir::new("gdb-interrupt");
    let (socket, vmm) = start_under_gdb(&dir, "crash", &["--cmdline", "hang"]);
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(&packet("QStartNoAckMode")).unwrap();
    assert!(read_reply(&mut conn, Duration::from_secs(10)).contains("OK"));
    conn.write_all(b"+").unwrap();
    conn.write_all(&packet("?")).unwrap();
    assert!(read_reply(&mut conn, Duration::from_secs(10)).contains("$T05"));
    conn.write_all(&packet("c")).unwrap();
    // The guest spins: no stop reply.
    assert_eq!(read_reply(&mut conn, Duration::from_millis(500)), "");
    conn.write_all(&[0x03]).unwrap();
    let reply = read_reply(&mut conn, Duration::from_secs(10));
    assert!(
        reply.contains("$S02") || reply.contains("$T02"),
        "{reply:?}"
    );
    // Paused where it spins: registers read.
    conn.write_all(&packet("g")).unwrap();
    assert!(read_reply(&mut conn, Duration::from_secs(10)).len() > 64);
    conn.write_all(&packet("k")).unwrap();
    let vmm = vmm.join().unwrap();
    vmm.assert_status(137)
        .assert_stderr_contains("gdb killed the guest");
}

#[test]
fn core_dump_opens_in_gdb_at_the_faulting_frame() {
    let dir = TempDir::new("core");
    let core = dir.join("guest.core");
    let kernel = guest("debuggee");
    let core_arg = core.to_str().unwrap();
    let out = parapet([
        "run",
        kernel.to_str().unwrap(),
        "--cmdline",
        "fault",
        "--core",
        core_arg,
    ]);
    out.assert_status(102)
        .assert_stderr_contains("#PF page fault")
        .assert_stderr_contains("core dumped to");
    let g = gdb(&kernel, None, &["bt", "frame 3", "print total"], &[&core]);
    for expected in [
        "Program terminated with signal SIGSEGV",
        "debuggee::poke (target=0x0, value=1)",
        "debuggee::main () at examples/debuggee/src/main.rs",
        "$1 = 1",
    ] {
        assert!(
            g.stdout.contains(expected),
            "gdb's output lacks {expected:?}:\n{g}"
        );
    }

    // A guest that panics dumps too; one that exits cleanly leaves no file.
    let panicked = dir.join("panic.core");
    parapet([
        "run",
        guest("crash").to_str().unwrap(),
        "--cmdline",
        "panic",
        "--core",
        panicked.to_str().unwrap(),
    ])
    .assert_status(101);
    assert!(panicked.metadata().unwrap().len() > 4096);
    let clean = dir.join("clean.core");
    parapet([
        "run",
        kernel.to_str().unwrap(),
        "--core",
        clean.to_str().unwrap(),
    ])
    .assert_status(143);
    assert!(!clean.exists(), "a clean exit wrote a core");
}

#[test]
fn bad_debug_options_are_one_line_errors() {
    let kernel = guest("hello");
    let k = kernel.to_str().unwrap();
    parapet(["run", k, "--gdb", "1234"]).assert_rejected(&["host:port", "socket path"]);
    parapet(["run", k, "--core", "/nonexistent-dir/core"])
        .assert_one_line_error(&["not a directory"]);
    let dir = TempDir::new("gdb-bad");
    let file = dir.file("not-a-socket", b"x");
    parapet(["run", k, "--gdb", file.to_str().unwrap()]).assert_one_line_error(&["not a socket"]);
    parapet(["run", k, "--gdb", "/dev/null"]).assert_one_line_error(&["not a serial line"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    parapet(["run", k, "--gdb", &addr]).assert_one_line_error(&["cannot listen for gdb"]);
}
