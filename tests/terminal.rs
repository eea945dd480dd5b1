//! The console the way users meet it: on a real terminal. Each test makes a pseudo-terminal,
//! runs the VMM on it as a job of a session whose controlling terminal it is (`pty-job`, a
//! minimal job-control shell: `tests/bin/pty_job.rs`), reads what the terminal shows, and types
//! only when the test says so: standard input is an idle terminal, not a pipe that ends.
//! README.md ("Running a kernel") and docs/abi.md §9.2.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use parapet_tests::{TempDir, guest, vmm};
use rustix::pty::{OpenptFlags, grantpt, ioctl_tiocgptpeer, openpt, unlockpt};
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

/// How long a test waits for something to appear on the terminal, or for the VMM to finish. A
/// safety net, not a timing assertion: on a healthy run each takes well under a second.
const PATIENCE: Duration = Duration::from_secs(20);
/// Every run gets `--timeout` this long, so that no VMM outlives its test.
const VMM_TIMEOUT: &str = "40";
/// `pty-job`'s exit status for a job that was stopped.
const JOB_STOPPED: i32 = 125;

/// How the VMM runs on the terminal.
#[derive(Clone, Copy, Debug)]
enum Job<'a> {
    /// In the terminal's foreground process group, as `parapet run …` in a shell.
    Foreground,
    /// In a process group of its own that is not the terminal's foreground group, as
    /// `parapet run … &` in an interactive shell.
    Background {
        /// `stty tostop` first: the terminal stops a background job that writes to it.
        tostop: bool,
        /// Once this file exists, bring the job to the foreground (as `fg` does).
        fg_on: Option<&'a Path>,
    },
}

/// What the terminal has shown: the bytes, and when each chunk arrived.
#[derive(Debug, Default)]
struct Screen {
    bytes: Vec<u8>,
    /// `(end offset in bytes, arrival)` per chunk read from the master.
    chunks: Vec<(usize, Instant)>,
    /// The master reads no more: every process closed the terminal.
    closed: bool,
}

/// A pseudo-terminal with the VMM running on it.
#[derive(Debug)]
struct Terminal {
    master: File,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    child: Child,
    command: String,
    started: Instant,
    /// How much of the screen `expect` has matched so far.
    cursor: usize,
}

impl Terminal {
    /// Runs `parapet run NAME --timeout … ARGS` as `job` on a new terminal.
    fn run(job: Job<'_>, name: &str, args: &[&str]) -> Terminal {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = openpt(flags).expect("open a pseudo-terminal (/dev/ptmx)");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let slave = ioctl_tiocgptpeer(&master, flags).expect("open the terminal (TIOCGPTPEER)");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pty-job"));
        match job {
            Job::Foreground => {
                cmd.arg("fg");
            }
            Job::Background { tostop, fg_on } => {
                if tostop {
                    let mut modes = tcgetattr(&slave).expect("tcgetattr");
                    modes.local_modes |= LocalModes::TOSTOP;
                    tcsetattr(&slave, OptionalActions::Now, &modes).expect("tcsetattr");
                }
                cmd.arg("bg");
                if let Some(path) = fg_on {
                    cmd.arg("--fg-on").arg(path);
                }
            }
        }
        cmd.arg(vmm())
            .arg("run")
            .arg(guest(name))
            .args(["--timeout", VMM_TIMEOUT])
            .args(args)
            .env_remove("PARAPET_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        let command = format!("{cmd:?}");
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        // Our copies of the terminal close with `cmd`: once the job's are closed too, the master
        // reads end.
        drop(cmd);
        let master = File::from(master);
        let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
        let mut reader = master.try_clone().expect("dup the master");
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once no process has the terminal open any more.
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, changed) = &*shown;
                let mut s = lock.lock().unwrap();
                if n == 0 {
                    s.closed = true;
                } else {
                    s.bytes.extend_from_slice(&buf[..n]);
                    let end = s.bytes.len();
                    s.chunks.push((end, Instant::now()));
                }
                changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Terminal {
            master,
            screen,
            child,
            command,
            started,
            cursor: 0,
        }
    }

    /// Everything the terminal has shown, for failure messages.
    fn transcript(&self) -> String {
        let s = self.screen.0.lock().unwrap();
        format!(
            "command: {}\n--- terminal, {:?} after the start ---\n{}\n--------------",
            self.command,
            self.started.elapsed(),
            String::from_utf8_lossy(&s.bytes)
        )
    }

    /// Waits (up to [`PATIENCE`]) until the terminal shows `needle` after what earlier calls
    /// matched; returns when the chunk completing it arrived.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> Instant {
        let deadline = Instant::now() + PATIENCE;
        let (lock, changed) = &*self.screen;
        let mut s = lock.lock().unwrap();
        loop {
            let found = s.bytes[self.cursor..]
                .windows(needle.len())
                .position(|w| w == needle.as_bytes());
            if let Some(at) = found {
                let end = self.cursor + at + needle.len();
                self.cursor = end;
                let &(_, arrived) = s.chunks.iter().find(|&&(e, _)| e >= end).unwrap();
                return arrived;
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                let why = if s.closed {
                    "before every process closed it".to_owned()
                } else {
                    format!("within {PATIENCE:?}")
                };
                drop(s);
                panic!(
                    "the terminal did not show {needle:?} {why}\n{}",
                    self.transcript()
                );
            }
            s = changed.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Types `text` on the terminal's keyboard.
    fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("write to the terminal");
    }

    /// Waits (up to [`PATIENCE`]) for the job to finish; returns `pty-job`'s exit status (the
    /// VMM's, for a job that was not stopped).
    #[track_caller]
    fn finish(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for pty-job") {
                let code = status.code();
                return code.unwrap_or_else(|| {
                    panic!("pty-job ended by a signal: {status}\n{}", self.transcript())
                });
            }
            if Instant::now() >= deadline {
                panic!(
                    "the VMM did not finish within {PATIENCE:?}\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that the job finished with status 0 (and was not stopped).
#[track_caller]
fn assert_finished_ok(term: &mut Terminal) {
    let status = term.finish();
    assert_ne!(
        status,
        JOB_STOPPED,
        "job control stopped the VMM\n{}",
        term.transcript()
    );
    assert_eq!(status, 0, "unexpected exit status\n{}", term.transcript());
}

/// The guest's own clock in the `tick N at MS ms` line the terminal shows.
fn guest_ms(term: &Terminal, tick: u32) -> Option<u64> {
    let s = term.screen.0.lock().unwrap();
    let text = String::from_utf8_lossy(&s.bytes);
    let prefix = format!("tick {tick} at ");
    let rest = &text[text.find(&prefix)? + prefix.len()..];
    rest.split(' ').next()?.parse().ok()
}

// The guest prints a line, sleeps two seconds, prints another. Each line must reach the
// terminal as the guest prints it, while standard input is idle: the first one well before the
// second (a VMM that held output back until input or the guest's exit shows both together).
#[test]
fn each_line_reaches_an_idle_terminal_while_the_guest_runs() {
    let pause = Duration::from_secs(2);
    let pause_ms = format!("ticks=2 pause_ms={}", pause.as_millis());
    let mut term = Terminal::run(Job::Foreground, "ticker", &["--cmdline", &pause_ms]);
    let first = term.expect("tick 1 at ");
    let second = term.expect("tick 2 at ");
    let apart = second.duration_since(first);
    if let (Some(g1), Some(g2)) = (guest_ms(&term, 1), guest_ms(&term, 2)) {
        // How much later than the second line the first one reached the terminal, relative to
        // when the guest printed them: about 0 when each line shows at once.
        let printed_apart = Duration::from_millis(g2.saturating_sub(g1));
        eprintln!(
            "printed {printed_apart:?} apart, shown {apart:?} apart: the first line lagged {:?} \
             more than the second",
            printed_apart.saturating_sub(apart)
        );
    }
    assert!(
        apart >= pause / 2,
        "the first line reached the terminal only {apart:?} before the second, which the guest \
         printed at least {pause:?} later: output was held back\n{}",
        term.transcript()
    );
    assert_finished_ok(&mut term);
}

// The echo guest's prompt must show before the user types anything (the guest then waits for
// input), and again after each line it answers.
#[test]
fn echo_prompt_shows_before_any_input() {
    let mut term = Terminal::run(Job::Foreground, "echo", &["--cmdline", "prompt"]);
    term.expect("> ");
    term.type_text("hello\n");
    term.expect("echo: hello");
    term.expect("> ");
    term.type_text("quit\n");
    term.expect("echo: bye");
    assert_finished_ok(&mut term);
}

// `parapet run … &` in an interactive shell, then the user types the next command: the VMM,
// a background job, must leave the terminal's input alone and not be stopped (SIGTTIN) for
// reading it; the guest runs on and finishes, its output on the terminal.
#[test]
fn background_vmm_is_not_stopped_when_the_user_types() {
    let job = Job::Background {
        tostop: false,
        fg_on: None,
    };
    let mut term = Terminal::run(job, "ticker", &["--cmdline", "ticks=2 pause_ms=1500"]);
    term.expect("tick 1 at ");
    term.type_text("ls\n");
    term.expect("tick 2 at ");
    assert_finished_ok(&mut term);
}

// Under `stty tostop` the terminal stops a background job that writes to it (SIGTTOU): the VMM
// must not be stopped, and the guest's output still shows.
#[test]
fn background_vmm_is_not_stopped_for_writing_under_tostop() {
    let job = Job::Background {
        tostop: true,
        fg_on: None,
    };
    let mut term = Terminal::run(job, "ticker", &["--cmdline", "ticks=2 pause_ms=100"]);
    term.expect("tick 1 at ");
    term.expect("tick 2 at ");
    assert_finished_ok(&mut term);
}

// A background VMM reads nothing the user types; once brought to the foreground (`fg`) it
// notices by itself and the guest gets the input, none of it lost.
#[test]
fn background_vmm_takes_input_once_in_the_foreground() {
    let dir = TempDir::new("fg");
    let fg = dir.join("fg");
    let job = Job::Background {
        tostop: false,
        fg_on: Some(&fg),
    };
    let mut term = Terminal::run(job, "echo", &["--cmdline", "prompt"]);
    term.expect("> ");
    // Typed while the VMM is in the background: the terminal echoes it and keeps it (the
    // foreground job, pty-job, reads nothing).
    term.type_text("hello\n");
    term.expect("hello");
    // The set-up holds (the VMM is not in the foreground): the guest does not get the line.
    std::thread::sleep(Duration::from_millis(500));
    {
        let s = term.screen.0.lock().unwrap();
        assert!(
            !String::from_utf8_lossy(&s.bytes).contains("echo: hello"),
            "a background VMM read the terminal\n{}",
            String::from_utf8_lossy(&s.bytes)
        );
    }
    std::fs::write(&fg, b"").expect("create the fg trigger");
    term.expect("echo: hello");
    term.expect("> ");
    term.type_text("quit\n");
    term.expect("echo: bye");
    assert_finished_ok(&mut term);
}
