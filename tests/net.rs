//! PV networking end to end: a guest on a TAP device inside a network namespace the test makes
//! (so no traffic leaves it), reached with the host's own `ping`, `curl`, a TCP client and a UDP
//! flood, and stopped cleanly with `SIGTERM`. Needs root (namespaces, TAP devices), as CI has.

use parapet_tests::{guest, vmm};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const HOST_IP: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";

/// A network namespace with `tap0` (10.77.0.1/24, up), deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pp{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "`ip {}` failed (the net tests need root): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["netns", "add", &name]);
        let ns = NetNs { name };
        for cmd in [
            "ip link set lo up",
            "ip tuntap add dev tap0 mode tap",
            &format!("ip addr add {HOST_IP}/24 dev tap0"),
            "ip link set tap0 up",
        ] {
            let out = ns.exec_sh(cmd);
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn exec_sh(&self, script: &str) -> Output {
        self.command("sh")
            .args(["-c", script])
            .output()
            .expect("run sh")
    }

    /// Starts `parapet run GUEST --net tap=tap0 ARGS` in the namespace.
    fn start_guest(&self, name: &str, args: &[&str]) -> RunningGuest {
        let log = std::env::temp_dir().join(format!("{}-{name}.log", self.name));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command(vmm().to_str().unwrap())
            .arg("run")
            .arg(guest(name))
            .args(["--net", "tap=tap0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start parapet");
        RunningGuest { child, log }
    }

    /// Waits until the guest answers ping.
    fn wait_for_guest(&self, guest: &mut RunningGuest) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = guest.child.try_wait() {
                panic!(
                    "the guest stopped ({status}) before answering\n{}",
                    guest.log()
                );
            }
            if self
                .exec_sh(&format!("ping -c 1 -W 1 {GUEST_IP}"))
                .status
                .success()
            {
                return;
            }
        }
        panic!("the guest never answered ping\n{}", guest.log());
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A guest running in the background; killed on drop.
struct RunningGuest {
    child: Child,
    log: PathBuf,
}

impl RunningGuest {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the VMM to exit (at most 20 s) and returns its status code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn net_http_answers_ping_and_http() {
    let ns = NetNs::new();
    let mut g = ns.start_guest("net-http", &["--cmdline", &format!("ip={GUEST_IP}/24")]);
    ns.wait_for_guest(&mut g);
    let ping = ns.exec_sh(&format!("ping -c 3 -i 0.2 -W 2 {GUEST_IP}"));
    assert!(
        ping.status.success(),
        "ping failed: {}\n{}",
        stdout(&ping),
        g.log()
    );
    let page = ns.exec_sh(&format!("curl -s --max-time 10 http://{GUEST_IP}/"));
    assert!(
        stdout(&page).contains("Hello from Parapet"),
        "GET /: {}\n{}",
        stdout(&page),
        g.log()
    );
    let stats = ns.exec_sh(&format!("curl -s --max-time 10 http://{GUEST_IP}/stats"));
    assert!(
        stdout(&stats).contains("rx_packets"),
        "GET /stats: {}\n{}",
        stdout(&stats),
        g.log()
    );
    let missing = ns.exec_sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{GUEST_IP}/nope"
    ));
    assert_eq!(stdout(&missing), "404", "{}", g.log());
    assert!(!g.log().contains("panicked"), "{}", g.log());
}

#[test]
fn net_http_shuts_down_cleanly_on_sigterm() {
    let ns = NetNs::new();
    let mut g = ns.start_guest("net-http", &["--cmdline", &format!("ip={GUEST_IP}/24")]);
    ns.wait_for_guest(&mut g);
    let page = ns.exec_sh(&format!("curl -s --max-time 10 http://{GUEST_IP}/"));
    assert!(
        stdout(&page).contains("Hello from Parapet"),
        "GET /: {}\n{}",
        stdout(&page),
        g.log()
    );
    // The server is blocked waiting for the network: the request must wake it.
    let pid = rustix::process::Pid::from_child(&g.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
    assert_eq!(g.wait(), Some(0), "{}", g.log());
    let log = g.log();
    assert!(
        log.contains("net-http: shutdown requested after 1 requests\n")
            && log.contains("parapet: SIGTERM: asked the guest to shut down"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn ten_thousand_udp_datagrams_come_back_intact() {
    let ns = NetNs::new();
    let mut g = ns.start_guest("net-echo", &["--cmdline", &format!("ip={GUEST_IP}/24")]);
    ns.wait_for_guest(&mut g);
    let out = ns
        .command(env!("CARGO_BIN_EXE_udp-flood"))
        .args([&format!("{GUEST_IP}:7"), "10000"])
        .output()
        .expect("run udp-flood");
    assert!(
        out.status.success(),
        "{}{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr),
        g.log()
    );
    assert!(
        stdout(&out).contains("10000 echoed intact"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn tcp_echo_returns_what_it_gets() {
    let ns = NetNs::new();
    let mut g = ns.start_guest("net-echo", &["--cmdline", &format!("ip={GUEST_IP}/24")]);
    ns.wait_for_guest(&mut g);
    // bash's /dev/tcp: send a line, read it back.
    let out = ns
        .command("bash")
        .args([
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{GUEST_IP}/7; printf 'parapet tcp echo\\n' >&3; \
                 timeout 10 head -n 1 <&3"
            ),
        ])
        .output()
        .expect("run bash");
    assert_eq!(stdout(&out), "parapet tcp echo\n", "{}", g.log());
}

#[test]
fn tap_problems_are_one_line_errors() {
    let ns = NetNs::new();
    // Attach the first VMM, then try a second on the same device.
    let mut first = ns.start_guest("net-echo", &["--cmdline", &format!("ip={GUEST_IP}/24")]);
    ns.wait_for_guest(&mut first);
    let hello = guest("hello");
    let run = |prefix: &str, tap: &str| {
        ns.exec_sh(&format!(
            "{prefix} {} run {} --net tap={tap}",
            vmm().display(),
            hello.display()
        ))
    };
    let one_line = |out: &Output, want: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "want one line: {err}");
        assert!(
            lines[0].starts_with("parapet: error: tap ") && lines[0].contains(want),
            "{err}"
        );
    };
    one_line(&run("", "tap0"), "in use by another process");
    // Without root: a missing device cannot be created, and another user's cannot be attached.
    let nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups";
    one_line(&run(nobody, "nosuchtap"), "does not exist");
    assert!(
        ns.exec_sh("ip tuntap add dev tapx mode tap")
            .status
            .success()
    );
    one_line(&run(nobody, "tapx"), "may not attach");
    one_line(&run("", "lo"), "not a TAP device");
}

#[test]
fn hostile_net_requests_are_answered_and_the_vmm_survives() {
    let ns = NetNs::new();
    let mut g = ns.start_guest("hostile", &["--cmdline", "net-tx net-rx"]);
    assert_eq!(g.wait(), Some(0), "{}", g.log());
    let log = g.log();
    assert!(log.contains(", 0 failed") && log.contains("ok "), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let mut g = ns.start_guest("hostile", &["--cmdline", "net-ring-overflow"]);
    assert_eq!(g.wait(), Some(102), "{}", g.log());
    assert!(g.log().contains("parapet: guest fault:"), "{}", g.log());
}
