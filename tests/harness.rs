//! Test harness: builds the `parapet` VMM and the example guests once per test binary, and runs
//! `parapet` on the real `/dev/kvm` with a wall-clock safety limit.
//!
//! `cargo test` never builds guest kernels (they need `--target x86_64-unknown-none`), so the
//! harness runs a nested `cargo build` with the same profile and target directory as the test
//! binary itself. The outer cargo has released its build lock by the time tests run.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The target guest kernels are built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";

/// A child still running after this long is killed. A safety net so that CI can never hang, not
/// a timing assertion: a healthy run takes milliseconds.
pub const WALL_CLOCK_LIMIT: Duration = Duration::from_secs(60);

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
}

/// Where this test binary was built: the target directory, the profile's output directory name
/// (`debug`, `release`, or a custom profile's name) and the host triple if `--target` was given.
#[derive(Debug)]
struct BuildLayout {
    target_dir: PathBuf,
    profile_dir: String,
    host_triple: Option<String>,
}

impl BuildLayout {
    /// Derived from the test executable's path, `<target>[/<triple>]/<profile>/deps/<test>-<hash>`.
    fn of_current_exe() -> BuildLayout {
        let exe = std::env::current_exe().expect("current_exe");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
        let profile_dir = profile.file_name().unwrap().to_string_lossy().into_owned();
        let above = profile.parent().expect("profile directory has a parent");
        // Cargo marks the root of a target directory with CACHEDIR.TAG; `cargo test --target T`
        // adds one level, `<target>/T/<profile>`.
        if !above.join("CACHEDIR.TAG").exists()
            && let Some(root) = above.parent().filter(|r| r.join("CACHEDIR.TAG").exists())
        {
            return BuildLayout {
                target_dir: root.to_path_buf(),
                profile_dir,
                host_triple: Some(above.file_name().unwrap().to_string_lossy().into_owned()),
            };
        }
        BuildLayout {
            target_dir: above.to_path_buf(),
            profile_dir,
            host_triple: None,
        }
    }

    /// The `--profile` argument that puts output into `profile_dir`.
    fn profile(&self) -> &str {
        match self.profile_dir.as_str() {
            "debug" => "dev",
            other => other,
        }
    }

    fn cargo_build(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .arg("build")
            .arg("--target-dir")
            .arg(&self.target_dir)
            .args(["--profile", self.profile()])
            .stdin(Stdio::null());
        cmd
    }
}

fn layout() -> &'static BuildLayout {
    static LAYOUT: OnceLock<BuildLayout> = OnceLock::new();
    LAYOUT.get_or_init(BuildLayout::of_current_exe)
}

/// The target directory this test binary was built in (and the harness builds into).
pub fn target_dir() -> &'static Path {
    &layout().target_dir
}

/// The cargo profile this test binary was built with (`dev`, `release`, or a custom one).
pub fn profile() -> &'static str {
    layout().profile()
}

/// Runs a nested cargo build; on failure returns its full output as the error.
fn run_build(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "building {what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The path of the `parapet` binary, built on first use.
pub fn vmm() -> &'static Path {
    static VMM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = VMM.get_or_init(|| {
        let l = layout();
        let mut cmd = l.cargo_build();
        cmd.args(["-p", "parapet"]);
        let mut dir = l.target_dir.clone();
        if let Some(triple) = &l.host_triple {
            cmd.args(["--target", triple]);
            dir.push(triple);
        }
        run_build(cmd, "the VMM (parapet)")?;
        Ok(dir.join(&l.profile_dir).join("parapet"))
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// The path of binary `bin` of host package `package` (e.g. `xtask`), built with the test's
/// profile on each call (cargo makes a repeated build a no-op).
pub fn host_binary(package: &str, bin: &str) -> PathBuf {
    let l = layout();
    let mut cmd = l.cargo_build();
    cmd.args(["-p", package, "--bin", bin]);
    let mut dir = l.target_dir.clone();
    if let Some(triple) = &l.host_triple {
        cmd.args(["--target", triple]);
        dir.push(triple);
    }
    if let Err(e) = run_build(cmd, &format!("`{bin}` ({package})")) {
        panic!("{e}");
    }
    dir.join(&l.profile_dir).join(bin)
}

/// The directories that hold guests, one package per subdirectory: the demos users copy, the
/// test suite's guests and the benchmarks' guests.
pub const GUEST_DIRS: [&str; 3] = ["examples", "tests/guests", "bench/guests"];

/// The guest names: the directories under [`GUEST_DIRS`] with a Cargo.toml (package name =
/// directory).
pub fn guest_names() -> Vec<String> {
    let mut names: Vec<String> = GUEST_DIRS
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(workspace_root().join(dir))
                .unwrap_or_else(|e| panic!("read {dir}/: {e}"))
        })
        .filter_map(|e| {
            let path = e.ok()?.path();
            path.join("Cargo.toml")
                .is_file()
                .then(|| path.file_name()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// The ELF image of guest `name`; all guests are built, with one cargo invocation, on first use.
pub fn guest(name: &str) -> PathBuf {
    static GUESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = GUESTS.get_or_init(|| {
        let l = layout();
        check_guest_target()?;
        let mut cmd = l.cargo_build();
        cmd.args(["--target", GUEST_TARGET]);
        for name in guest_names() {
            cmd.args(["-p", &name]);
        }
        // Host codegen flags (e.g. `-C target-cpu=native`) must not reach guest kernels; their
        // flags come from `[target.x86_64-unknown-none]` in .cargo/config.toml.
        cmd.env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        run_build(cmd, "the guests")?;
        Ok(l.target_dir.join(GUEST_TARGET).join(&l.profile_dir))
    });
    match built {
        Ok(dir) => {
            assert!(
                guest_names().iter().any(|g| g == name),
                "no guest {name} under {}",
                GUEST_DIRS.join(", ")
            );
            dir.join(name)
        }
        Err(e) => panic!("{e}"),
    }
}

fn check_guest_target() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .current_dir(workspace_root())
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success()
        && !sysroot
            .join("lib/rustlib")
            .join(GUEST_TARGET)
            .join("lib")
            .is_dir()
    {
        return Err(format!(
            "the Rust target {GUEST_TARGET} is not installed; add it with \
             `rustup target add {GUEST_TARGET}`"
        ));
    }
    Ok(())
}

/// What one `parapet` run produced.
#[derive(Debug)]
pub struct Output {
    /// The command line, for failure messages.
    pub command: String,
    /// The exit status; `None` if the process was killed by a signal.
    pub status: Option<i32>,
    /// The signal that killed the process, if one did (the harness's own kill is `killed`).
    pub signal: Option<i32>,
    /// Guest console output.
    pub stdout: String,
    /// VMM messages.
    pub stderr: String,
    /// The harness killed the process after its time limit ([`WALL_CLOCK_LIMIT`] unless
    /// [`run_with_limit`] set another).
    pub killed: bool,
    /// The time limit the process ran under.
    pub limit: Duration,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        match (self.killed, self.status) {
            (true, _) => writeln!(f, "status: KILLED after {} s", self.limit.as_secs())?,
            (false, Some(s)) => writeln!(f, "status: {s}")?,
            (false, None) => match self.signal {
                Some(sig) => writeln!(f, "status: terminated by signal {sig}")?,
                None => writeln!(f, "status: terminated by a signal")?,
            },
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}--------------", self.stderr)
    }
}

impl Output {
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Asserts the exit status.
    #[track_caller]
    pub fn assert_status(&self, expected: i32) -> &Self {
        assert!(
            !self.killed,
            "the process did not finish within its safety limit\n{self}"
        );
        assert_eq!(
            self.status,
            Some(expected),
            "unexpected exit status\n{self}"
        );
        self
    }

    /// Asserts that the process was killed by `signal` (not by the harness).
    #[track_caller]
    pub fn assert_killed_by(&self, signal: i32) -> &Self {
        assert!(
            !self.killed,
            "the process did not finish within its safety limit\n{self}"
        );
        assert_eq!(
            (self.status, self.signal),
            (None, Some(signal)),
            "the process was not killed by signal {signal}\n{self}"
        );
        self
    }

    /// Asserts that the VMM neither panicked nor printed a backtrace.
    #[track_caller]
    pub fn assert_no_panic(&self) -> &Self {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad),
                "the VMM panicked ({bad:?} on stderr)\n{self}"
            );
        }
        self
    }

    /// Asserts that stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    /// Asserts a VMM error (abi.md §6, status 1): exactly one line on stderr, starting with
    /// `parapet: error: ` and mentioning (case-insensitively) at least one of `any_of`.
    #[track_caller]
    pub fn assert_one_line_error(&self, any_of: &[&str]) -> &Self {
        self.assert_status(1).assert_no_panic();
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr\n{self}"
        );
        assert!(
            lines[0].starts_with("parapet: error: "),
            "bad error line prefix\n{self}"
        );
        let line = lines[0].to_lowercase();
        assert!(
            any_of.iter().any(|w| line.contains(&w.to_lowercase())),
            "the error line names none of {any_of:?}\n{self}"
        );
        self
    }

    /// Asserts a failure to accept the input: either a VMM error (status 1, see
    /// [`Output::assert_one_line_error`]) or a command-line usage error (status 2, from clap).
    #[track_caller]
    pub fn assert_rejected(&self, any_of: &[&str]) -> &Self {
        if self.status == Some(2) {
            self.assert_no_panic();
            assert!(
                !self.stderr.trim().is_empty(),
                "usage error without a message\n{self}"
            );
            assert!(
                self.stdout.is_empty(),
                "usage error wrote to stdout\n{self}"
            );
            self
        } else {
            self.assert_one_line_error(any_of)
        }
    }

    /// The counters of a `--stats=json` run: `(name, value)` for each `"<group>.<name>": count`
    /// of the one JSON object on stderr.
    #[track_caller]
    pub fn stats(&self) -> Vec<(String, u64)> {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no `--stats=json` object on stderr\n{self}"));
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the stats line is not a JSON object ({e})\n{self}"));
        object
            .into_iter()
            .map(|(name, value)| {
                assert!(
                    name.contains('.'),
                    "stats name is not <group>.<name>: {name}"
                );
                let value = value
                    .as_u64()
                    .unwrap_or_else(|| panic!("stats value of {name} is not a count\n{self}"));
                (name, value)
            })
            .collect()
    }
}

/// Looks up one statistic by its full name.
#[track_caller]
pub fn stat(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
}

/// Runs `parapet ARGS` (no implicit `run`).
pub fn parapet<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(vmm());
    cmd.args(args);
    run(cmd)
}

/// Runs `parapet ARGS` (no implicit `run`) with `input` on its standard input (closed after it),
/// killed after `limit`: for a warm-reset VMM (`parapet restore FILE --warm`), which serves one
/// invocation per input line.
pub fn parapet_with_input<I, S>(args: I, input: &[u8], limit: Duration) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(vmm());
    cmd.args(args);
    run_with_input(cmd, Some(input), limit)
}

/// Runs `parapet run KERNEL ARGS`.
pub fn run_kernel<I, S>(kernel: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(vmm());
    cmd.arg("run").arg(kernel).args(args);
    run(cmd)
}

/// Runs `parapet run <guest ELF> ARGS`.
pub fn run_guest(name: &str, args: &[&str]) -> Output {
    run_kernel(&guest(name), args)
}

/// Runs `parapet run <guest ELF> ARGS` with `input` on its standard input (closed after it).
pub fn run_guest_with_input(name: &str, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new(vmm());
    cmd.arg("run").arg(guest(name)).args(args);
    run_with_input(cmd, Some(input), WALL_CLOCK_LIMIT)
}

/// Runs `cmd` with stdin closed, capturing stdout and stderr, and kills it after
/// [`WALL_CLOCK_LIMIT`]. The log environment is cleared so a developer's settings cannot change
/// what the VMM prints. With `PARAPET_TESTS_SHOW` set, every run is printed (use `--nocapture`).
pub fn run(cmd: Command) -> Output {
    run_with_input(cmd, None, WALL_CLOCK_LIMIT)
}

/// [`run`] with another safety limit, for commands that build (nested cargo runs).
pub fn run_with_limit(cmd: Command, limit: Duration) -> Output {
    run_with_input(cmd, None, limit)
}

/// [`run`], with `input` written to the child's standard input (then closed) if given, killed
/// after `limit`.
fn run_with_input(mut cmd: Command, input: Option<&[u8]>, limit: Duration) -> Output {
    cmd.env_remove("PARAPET_LOG")
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // On its own thread, so a guest that reads slowly cannot block the harness.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for parapet") {
            break status;
        }
        if Instant::now() >= deadline {
            // The child may exit between try_wait and kill; either way wait() reaps it.
            let _ = child.kill();
            killed = true;
            break child.wait().expect("wait for parapet");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Output {
        command,
        status: status.code(),
        signal: status.signal(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        killed,
        limit,
    };
    if std::env::var_os("PARAPET_TESTS_SHOW").is_some() {
        eprintln!("{out}");
    }
    out
}

/// Reads one of the child's pipes to the end on a thread, so a chatty child cannot block.
fn drain(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<String> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("piped stdout"))
    } else {
        Box::new(child.stderr.take().expect("piped stderr"))
    };
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A VMM (or any command) running in the background, its stdout read line by line; killed on
/// drop. For tests that act on a running guest: wait for a line, signal it, then finish.
#[derive(Debug)]
pub struct Background {
    /// The process.
    pub child: Child,
    /// Its standard input, with [`Background::start_with_stdin`].
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Background {
    /// Starts `cmd` with standard input closed.
    pub fn start(cmd: Command) -> Background {
        Background::spawn(cmd, Stdio::null())
    }

    /// Starts `cmd` with standard input a pipe, open until [`Background::stdin`] is dropped.
    pub fn start_with_stdin(cmd: Command) -> Background {
        Background::spawn(cmd, Stdio::piped())
    }

    fn spawn(mut cmd: Command, stdin: Stdio) -> Background {
        let mut child = cmd
            .env_remove("PARAPET_LOG")
            .env_remove("RUST_LOG")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Background {
            stdin: child.stdin.take(),
            child,
            lines,
            stdout: String::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits (at most `limit`) for a stdout line starting with `prefix`, and returns it.
    #[track_caller]
    pub fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line {prefix:?} within {limit:?}; stdout:\n{}",
                        self.stdout
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let out = self.finish(Duration::from_secs(5));
                    panic!("the process ended before printing {prefix:?}\n{out}")
                }
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("cannot send {signal:?}: {e}"));
    }

    /// Waits (at most `limit`, then kills it) for the process to end; returns what it printed.
    pub fn finish(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let mut killed = false;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                killed = true;
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        Output {
            command: format!("{:?}", self.child),
            status: status.code(),
            signal: status.signal(),
            stdout: self.stdout.clone(),
            stderr,
            killed,
            limit,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh, empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a directory whose name holds the process id, `tag` and a counter, so parallel
    /// tests never share one.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("parapet-tests-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `bytes` to a file `name` in this directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A builder for small, hand-made ELF images: a 64-byte ELF header, 56-byte program headers and
/// the segment contents. [`Elf::minimal_kernel`](crate::elf::Elf::minimal_kernel) is a valid
/// Parapet kernel; tests break one field at a time to check that the VMM rejects the image
/// cleanly.
pub mod elf {
    /// `ET_EXEC`.
    pub const ET_EXEC: u16 = 2;
    /// `ET_REL`.
    pub const ET_REL: u16 = 1;
    /// `ET_DYN`.
    pub const ET_DYN: u16 = 3;
    /// `EM_X86_64`.
    pub const EM_X86_64: u16 = 62;
    /// `EM_AARCH64`.
    pub const EM_AARCH64: u16 = 183;
    /// `PT_LOAD`.
    pub const PT_LOAD: u32 = 1;
    /// Where the minimal kernel's segment contents start in the file.
    pub const DATA_OFFSET: u64 = 0x1000;

    /// One program header.
    #[derive(Clone, Copy, Debug)]
    pub struct Phdr {
        /// `p_type`.
        pub p_type: u32,
        /// `p_flags` (R=4, W=2, X=1).
        pub flags: u32,
        /// `p_offset`.
        pub offset: u64,
        /// `p_vaddr`, also used as `p_paddr` (guest RAM is identity-mapped).
        pub vaddr: u64,
        /// `p_filesz`.
        pub filesz: u64,
        /// `p_memsz`.
        pub memsz: u64,
        /// `p_align`.
        pub align: u64,
    }

    /// An ELF image under construction.
    #[derive(Clone, Debug)]
    pub struct Elf {
        /// `e_ident[EI_CLASS]`: 2 = ELF64.
        pub class: u8,
        /// `e_ident[EI_DATA]`: 1 = little-endian.
        pub data: u8,
        /// `e_type`.
        pub e_type: u16,
        /// `e_machine`.
        pub machine: u16,
        /// `e_entry`.
        pub entry: u64,
        /// The program headers, written right after the ELF header.
        pub phdrs: Vec<Phdr>,
        /// Bytes placed at [`DATA_OFFSET`].
        pub contents: Vec<u8>,
    }

    impl Elf {
        /// A complete Parapet kernel (abi.md §2): one RWX `PT_LOAD` at 1 MiB whose code sets a
        /// stack, calls `sched_op(SCHEDOP_shutdown, {POWEROFF, exit_code})` through the
        /// hypercall page named in start-info (RSI) and, should that return, executes `ud2`.
        pub fn minimal_kernel(exit_code: u8) -> Elf {
            use parapet_abi::hypercall::Hypercall;
            use parapet_abi::start_info::{KERNEL_MIN_ADDR, StartInfo};
            let base = KERNEL_MIN_ADDR;
            let page_field = core::mem::offset_of!(StartInfo, hypercall_page) as u8;
            let stub = Hypercall::SCHED_OP.stub_offset().unwrap() as u32;
            let stack_top = u32::try_from(base + 0x2000).unwrap();
            let mut code = Vec::new();
            code.push(0xbc); // mov esp, imm32 (zero-extends into rsp)
            code.extend(stack_top.to_le_bytes());
            code.extend([0x48, 0x8b, 0x46, page_field]); // mov rax, [rsi + hypercall_page]
            code.extend([0x48, 0x05]); // add rax, imm32
            code.extend(stub.to_le_bytes());
            code.extend([0x48, 0x8d, 0x35]); // lea rsi, [rip + disp32]
            let disp_at = code.len();
            code.extend([0; 4]);
            code.push(0xbf); // mov edi, imm32
            code.extend((parapet_abi::sched::SCHEDOP_SHUTDOWN as u32).to_le_bytes());
            code.extend([0xff, 0xd0]); // call rax
            code.extend([0x0f, 0x0b]); // ud2
            while code.len() % 8 != 0 {
                code.push(0xcc);
            }
            let disp = u32::try_from(code.len() - (disp_at + 4)).unwrap();
            code[disp_at..disp_at + 4].copy_from_slice(&disp.to_le_bytes());
            code.extend(parapet_abi::sched::reason::POWEROFF.to_le_bytes()); // sched_shutdown
            code.extend(u32::from(exit_code).to_le_bytes());
            let len = code.len() as u64;
            Elf {
                class: 2,
                data: 1,
                e_type: ET_EXEC,
                machine: EM_X86_64,
                entry: base,
                phdrs: vec![Phdr {
                    p_type: PT_LOAD,
                    flags: 7,
                    offset: DATA_OFFSET,
                    vaddr: base,
                    filesz: len,
                    memsz: 0x2000,
                    align: 0x1000,
                }],
                contents: code,
            }
        }

        /// The image's bytes.
        pub fn bytes(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend(b"\x7fELF");
            b.extend([self.class, self.data, 1, 0]); // class, data, EI_VERSION, OS ABI
            b.extend([0; 8]);
            b.extend(self.e_type.to_le_bytes());
            b.extend(self.machine.to_le_bytes());
            b.extend(1u32.to_le_bytes()); // e_version
            b.extend(self.entry.to_le_bytes());
            b.extend(if self.phdrs.is_empty() { 0u64 } else { 64 }.to_le_bytes()); // e_phoff
            b.extend(0u64.to_le_bytes()); // e_shoff
            b.extend(0u32.to_le_bytes()); // e_flags
            b.extend(64u16.to_le_bytes()); // e_ehsize
            b.extend(56u16.to_le_bytes()); // e_phentsize
            b.extend((self.phdrs.len() as u16).to_le_bytes());
            b.extend(64u16.to_le_bytes()); // e_shentsize
            b.extend(0u16.to_le_bytes()); // e_shnum
            b.extend(0u16.to_le_bytes()); // e_shstrndx
            assert_eq!(b.len(), 64);
            for p in &self.phdrs {
                b.extend(p.p_type.to_le_bytes());
                b.extend(p.flags.to_le_bytes());
                for v in [p.offset, p.vaddr, p.vaddr, p.filesz, p.memsz, p.align] {
                    b.extend(v.to_le_bytes());
                }
            }
            if !self.contents.is_empty() {
                b.resize(DATA_OFFSET as usize, 0);
                b.extend(&self.contents);
            }
            b
        }
    }
}
