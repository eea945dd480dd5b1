//! The PV core end to end: the console ring with input, events, timers, grants and rings
//! (`pv-selftest`), and a guest that attacks every interface (`hostile`).

use parapet_tests::{run_guest, run_guest_with_input, stat};

#[test]
fn echo_echoes_piped_lines_and_stops_at_end_of_input() {
    let out = run_guest_with_input("echo", &["--stats=json"], b"hello\nworld\n");
    out.assert_status(0).assert_no_panic();
    assert!(
        out.stdout.contains("echo: hello\necho: world\n"),
        "lines not echoed in order\n{out}"
    );
    // Input, output and the wait for input all go through the ring and event channels.
    let exits = stat(&out.stats(), "exit.total").unwrap_or(u64::MAX);
    assert!(exits <= 4, "echo took {exits} exits to the VMM\n{out}");
}

#[test]
fn echo_quits_on_quit_and_ignores_what_follows() {
    let out = run_guest_with_input("echo", &[], b"one\nquit\nnever\n");
    out.assert_status(0).assert_no_panic();
    assert!(out.stdout.contains("echo: one\n"), "{out}");
    assert!(!out.stdout.contains("echo: never"), "{out}");
}

#[test]
fn echo_carries_long_input_through_the_small_ring() {
    // 8 KiB of input through a 1 KiB input ring and a 2 KiB output ring.
    let line = "x".repeat(99);
    let input: String = (0..80).map(|i| format!("{i:03}{line}\n")).collect();
    let out = run_guest_with_input("echo", &[], input.as_bytes());
    out.assert_status(0).assert_no_panic();
    for i in 0..80 {
        let want = format!("echo: {i:03}{line}\n");
        assert!(out.stdout.contains(&want), "line {i} missing\n{out}");
    }
}

#[test]
fn pv_selftest_passes_every_check() {
    let out = run_guest("pv-selftest", &["--loopback"]);
    out.assert_status(0).assert_no_panic();
    assert!(out.stdout.contains(", 0 failed"), "{out}");
    assert!(!out.stdout.contains("FAIL"), "{out}");
    assert!(out.stdout.contains("ok "), "no checks ran\n{out}");
}

/// The non-fatal misbehaviours: each must be answered with the documented error.
const HOSTILE_CASES: &[&str] = &[
    "gref-range",
    "gref-foreign",
    "readonly",
    "end-mapped",
    "ports",
    "lengths",
    "pointers",
    "devices",
    "ring-events",
    "timer-huge",
];

#[test]
fn hostile_guests_get_error_codes_and_the_vmm_survives() {
    for case in HOSTILE_CASES {
        let out = run_guest("hostile", &["--loopback", "--cmdline", case]);
        out.assert_status(0).assert_no_panic();
        assert!(
            out.stdout.contains(", 0 failed"),
            "case {case} got an undocumented answer\n{out}"
        );
        assert!(
            out.stdout.contains("ok "),
            "case {case} checked nothing\n{out}"
        );
        if *case == "pointers" {
            assert!(
                out.stdout
                    .contains("ok pointers multicall entries in read-only data")
                    && !out.stdout.contains("parapet-abi-0.2"),
                "a multicall whose results cannot be written ran an entry\n{out}"
            );
        }
        if *case == "readonly" {
            // W^X through grants: writable grants of kernel text and read-only data.
            for line in [
                "ok readonly copy into a writable grant of read-only data",
                "ok readonly loopback FILL on a writable grant of kernel text",
                "ok readonly connect a ring in read-only data",
                "ok readonly read-only data unchanged",
                "ok readonly kernel text unchanged",
                "ok readonly loopback FILL on the ring page itself",
            ] {
                assert!(out.stdout.contains(line), "missing {line:?}\n{out}");
            }
        }
    }
}

#[test]
fn hostile_ring_indices_stop_the_guest_with_a_report() {
    for (case, what) in [
        ("ring-overflow", "req_prod claims 1000 unconsumed requests"),
        ("ring-backwards", "req_prod claims"),
        ("console-overflow", "out_prod claims 5000 unconsumed bytes"),
    ] {
        let out = run_guest("hostile", &["--loopback", "--cmdline", case]);
        out.assert_status(102).assert_no_panic();
        assert!(
            out.stderr.contains("parapet: guest fault:") && out.stderr.contains(what),
            "case {case}: no clear report\n{out}"
        );
    }
}

/// `--timeout` ends the VMM even when a thread is stuck: here the console backend, blocked
/// writing to a standard output nobody reads while the guest writes lines forever.
#[test]
fn timeout_ends_the_vmm_even_if_nobody_reads_its_output() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(parapet_tests::vmm())
        .args(["run", "--timeout", "1", "--cmdline", "console-flood"])
        .arg(parapet_tests::guest("hostile"))
        .env_remove("PARAPET_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parapet");
    // Keep the pipe open and never read it.
    let _stdout = child.stdout.take();
    let deadline = Instant::now() + parapet_tests::WALL_CLOCK_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for parapet") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    let status = status.unwrap_or_else(|| panic!("--timeout 1 did not end the VMM\n{stderr}"));
    assert_eq!(status.code(), Some(124), "{stderr}");
    assert!(
        stderr.contains("parapet: guest timed out after 1 s"),
        "{stderr}"
    );
}

/// Runs `guest` with `args` and `PARAPET_SECCOMP_SELFTEST=thread`: that VMM thread makes a
/// system call its seccomp filter forbids right after the filter is installed.
fn run_with_forbidden_call(thread: &str, guest: &str, args: &[&str]) -> parapet_tests::Output {
    let mut cmd = std::process::Command::new(parapet_tests::vmm());
    cmd.arg("run")
        .args(args)
        .arg(parapet_tests::guest(guest))
        .env("PARAPET_SECCOMP_SELFTEST", thread);
    parapet_tests::run(cmd)
}

#[test]
fn a_forbidden_system_call_from_any_vmm_thread_ends_the_process_with_a_clear_message() {
    for (thread, guest, args) in [
        ("vcpu", "hello", &[][..]),
        ("console", "hello", &[]),
        ("spawner", "hello", &[]),
        ("watchdog", "hello", &["--timeout", "30"]),
        ("timer", "hypercalls", &[]),
        (
            "loopback",
            "hostile",
            &["--loopback", "--cmdline", "readonly"],
        ),
    ] {
        let out = run_with_forbidden_call(thread, guest, args);
        out.assert_status(1).assert_no_panic();
        // personality(2) is system call 135 on x86-64.
        let want =
            format!("parapet: error: seccomp: thread {thread} made forbidden system call 135");
        assert!(
            out.stderr.contains(&want),
            "thread {thread}: no clear report\n{out}"
        );
    }
}

#[test]
fn seccomp_filters_are_installed_per_thread_and_can_be_turned_off() {
    let out = run_guest(
        "hostile",
        &[
            "--loopback",
            "--stats=json",
            "--cmdline",
            "readonly timer-huge",
        ],
    );
    out.assert_status(0).assert_no_panic();
    let stats = out.stats();
    for thread in ["vcpu", "console", "spawner", "timer", "loopback"] {
        let allowed = stat(&stats, &format!("seccomp.{thread}"));
        assert!(
            allowed.is_some_and(|n| n > 0 && n < 64),
            "no filter on thread {thread}\n{out}"
        );
    }
    // --no-seccomp: no filters, so the forbidden call is harmless.
    let out = run_with_forbidden_call("vcpu", "hello", &["--no-seccomp", "--stats=json"]);
    out.assert_status(0).assert_no_panic();
    assert!(stat(&out.stats(), "seccomp.vcpu").is_none(), "{out}");
}
