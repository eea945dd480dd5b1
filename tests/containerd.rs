//! `parapet-runc` under containerd: a private containerd (its own root, state, sockets and
//! configuration in a temporary directory; a system one is never touched, though containerd
//! 1.6's shims put their sockets in `/run/containerd/s/`, named by a hash of the address), an OCI
//! image this test assembles (the hello, crash, ticker and echo guests and a `/parapet.json`)
//! imported with `ctr images import`, and `ctr run --runc-binary parapet-runc`, through
//! containerd's own runc shim (`containerd-shim-runc-v2`).
//!
//! Needs root and Debian's `containerd` package (containerd, ctr, containerd-shim-runc-v2), as
//! CI has (`.ci/run` installs it), plus `tar`, `sha256sum`, `script` (util-linux), for the
//! disk test `mkfs.vfat` and `mcopy`, and for the network tests `ip` (iproute2), `tc` and
//! `curl`. The network tests make their own namespaces (`ip netns add`), named after this
//! process, and talk only to addresses inside them.

use parapet_tests::{Output, TempDir, guest, host_binary, run, vmm};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image every test imports: `/parapet/guest` is hello, the others (crash, ticker, echo,
/// net-http) are picked with the `org.parapet.guest.kernel` annotation.
const IMAGE: &str = "docker.io/parapet/test-guests:1";
/// An image with no Parapet guest in it.
const NOT_A_GUEST: &str = "docker.io/parapet/not-a-guest:1";
/// The containerd namespace the tests use.
const NAMESPACE: &str = "parapet-test";

/// A containerd of the test's own, stopped (with any shim it started) and removed on drop.
struct Containerd {
    dir: TempDir,
    daemon: Child,
    runc: PathBuf,
}

impl Containerd {
    fn start(tag: &str) -> Containerd {
        Containerd::start_with_env(tag, &[])
    }

    /// [`Containerd::start`] with `env` set for containerd, and so for its shims and
    /// parapet-runc.
    fn start_with_env(tag: &str, env: &[(&str, &str)]) -> Containerd {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            let found = std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .any(|d| d.join(tool).is_file());
            assert!(
                found,
                "`{tool}` is not on PATH: the containerd tests need Debian's containerd \
                 package (apt-get install containerd) and root"
            );
        }
        // Build both binaries into one directory: parapet-runc finds parapet beside itself.
        let runc = host_binary("parapet-runc", "parapet-runc");
        assert_eq!(runc.parent(), vmm().parent());

        let dir = TempDir::new(&format!("ctrd-{tag}"));
        let config = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n\
             [ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n",
            d = dir.display()
        );
        let config = dir.file("config.toml", config.as_bytes());
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let daemon = Command::new("containerd")
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd (the containerd tests need root)");
        let ctrd = Containerd { dir, daemon, runc };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ctrd.ctr(&["version"]).status == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up (the containerd tests need root)\n{}",
                ctrd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ctrd.import(IMAGE, &guest_rootfs(&ctrd.dir), &["/parapet/guest"]);
        let plain = ctrd.dir.join("plain-rootfs");
        std::fs::create_dir_all(plain.join("bin")).unwrap();
        std::fs::write(plain.join("bin/true"), b"not a guest").unwrap();
        ctrd.import(NOT_A_GUEST, &plain, &["/bin/true"]);
        ctrd
    }

    fn address(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// `ctr --address … --namespace … ARGS`, run to completion (stdin closed, a time limit).
    fn ctr(&self, args: &[&str]) -> Output {
        run(self.ctr_command(args))
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.address())
            .args(["--namespace", NAMESPACE])
            .args(args);
        cmd
    }

    /// The options that make `ctr run` use parapet-runc, with the runtime's state, and ctr's
    /// FIFOs, in the test's directory.
    fn run_options(&self) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            self.runc.display().to_string(),
            "--runc-root".into(),
            self.dir.join("runc").display().to_string(),
            "--fifo-dir".into(),
            self.dir.join("fifo").display().to_string(),
        ]
    }

    /// `ctr run [OPTS] --runc-binary parapet-runc IMAGE ID ARGS`.
    fn run(&self, opts: &[&str], image: &str, id: &str, args: &[&str]) -> Output {
        let run_opts = self.run_options();
        let mut all: Vec<&str> = vec!["run"];
        all.extend(opts);
        all.extend(run_opts.iter().map(String::as_str));
        all.extend([image, id]);
        all.extend(args);
        self.ctr(&all)
    }

    /// Imports an image whose one layer is `rootfs` and whose entry point is `entrypoint`.
    fn import(&self, reference: &str, rootfs: &Path, entrypoint: &[&str]) {
        let tarball = oci_image(&self.dir, reference, rootfs, entrypoint);
        let out = self.ctr(&["images", "import", tarball.to_str().unwrap()]);
        assert_eq!(out.status, Some(0), "import {reference}\n{out}");
    }

    /// The task's PID and status from `ctr task ls`.
    fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ctr(&["task", "ls"]);
        assert_eq!(out.status, Some(0), "{out}");
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == id).then(|| (f[1].parse().unwrap(), f[2].to_string()))
        })
    }

    /// Waits until `ctr task ls` shows the task with `status`.
    fn wait_for_status(&self, id: &str, status: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((pid, s)) = self.task(id)
                && s == status
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} never became {status}: {:?}\n{}",
                self.task(id),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("containerd log (tail):\n{}", tail.join("\n"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims outlive containerd; end the VMMs of this containerd's containers and the shims
        // serving it (their command line names its address), then containerd, then anything
        // still mounted in the directory.
        let address = self.address().display().to_string();
        for pid in vmms_of(self)
            .into_iter()
            .chain(pids_whose_cmdline_contains(&address))
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.daemon.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.daemon.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let prefix = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|t| t.starts_with(&prefix))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = Command::new("umount").args(["--lazy", t]).status();
        }
    }
}

/// Processes whose command line contains `needle`.
fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// The `parapet` processes running a guest from a bundle of this containerd.
fn vmms_of(ctrd: &Containerd) -> Vec<i32> {
    let bundles = ctrd.dir.join("state").display().to_string();
    pids_whose_cmdline_contains(&bundles)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .collect()
}

/// A rootfs with the test guests and a `/parapet.json` naming hello.
fn guest_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("guest-rootfs");
    std::fs::create_dir_all(rootfs.join("parapet")).unwrap();
    for (name, to) in [
        ("hello", "guest"),
        ("crash", "crash"),
        ("ticker", "ticker"),
        ("echo", "echo"),
        ("net-http", "net-http"),
    ] {
        std::fs::copy(guest(name), rootfs.join("parapet").join(to)).unwrap();
    }
    std::fs::write(
        rootfs.join("parapet.json"),
        br#"{"version":1,"kernel":"/parapet/guest","cmdline":"","memory":"64M","disks":[]}"#,
    )
    .unwrap();
    rootfs
}

/// Runs a host tool, failing the test with its output if it fails.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves `file` into `layout/blobs/sha256/` under its digest; returns (`sha256:…`, size).
fn blob(layout: &Path, file: &Path) -> (String, u64) {
    let sum = tool("sha256sum", &[file.to_str().unwrap()]);
    let hex = sum.split_whitespace().next().unwrap().to_string();
    let size = std::fs::metadata(file).unwrap().len();
    std::fs::rename(file, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), size)
}

/// An OCI image layout tarball: one uncompressed layer holding `rootfs`, `entrypoint` as the
/// entry point, tagged `reference`.
fn oci_image(dir: &Path, reference: &str, rootfs: &Path, entrypoint: &[&str]) -> PathBuf {
    let name = reference.replace(['/', ':'], "_");
    let layout = dir.join(format!("{name}-layout"));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = layout.join("layer.tar");
    tool(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-cf",
            layer.to_str().unwrap(),
            ".",
        ],
    );
    let (layer_digest, layer_size) = blob(&layout, &layer);
    let write_json = |file: &str, value: serde_json::Value| {
        let path = layout.join(file);
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let config = write_json(
        "config.json",
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Entrypoint": entrypoint },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        }),
    );
    let (config_digest, config_size) = blob(&layout, &config);
    let manifest = write_json(
        "manifest.json",
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }],
        }),
    );
    let (manifest_digest, manifest_size) = blob(&layout, &manifest);
    write_json(
        "index.json",
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": { "org.opencontainers.image.ref.name": reference },
            }],
        }),
    );
    write_json(
        "oci-layout",
        serde_json::json!({ "imageLayoutVersion": "1.0.0" }),
    );
    let tarball = dir.join(format!("{name}.tar"));
    tool(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            "oci-layout",
            "index.json",
            "blobs",
        ],
    );
    tarball
}

#[test]
fn ctr_run_boots_hello_and_returns_its_exit_status() {
    let ctrd = Containerd::start("hello");
    let out = ctrd.run(&["--rm"], IMAGE, "hello", &[]);
    out.assert_status(0)
        .assert_stdout_contains("Hello from Parapet! platform=");

    // `process.args` is the guest's command line and the VMM's exit status is the container's.
    let kernel = "org.parapet.guest.kernel=/parapet/crash";
    let out = ctrd.run(
        &["--rm", "--annotation", kernel],
        IMAGE,
        "exit7",
        &["exit=7"],
    );
    out.assert_status(7);

    assert!(ctrd.task("hello").is_none() && ctrd.task("exit7").is_none());
    assert!(vmms_of(&ctrd).is_empty());
}

#[test]
fn ctr_run_t_gives_the_guest_a_terminal() {
    let ctrd = Containerd::start("tty");
    // `ctr run -t` needs a terminal of its own: script(1) gives it one and feeds it our input.
    let mut args = vec![
        "--address".to_string(),
        ctrd.address().display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "run".into(),
        "-t".into(),
        "--rm".into(),
        "--annotation".into(),
        "org.parapet.guest.kernel=/parapet/echo".into(),
    ];
    args.extend(ctrd.run_options());
    args.extend([IMAGE.into(), "tty".into()]);
    let ctr_line = std::iter::once("ctr".to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &ctr_line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = script.spawn().expect("run script(1) (util-linux)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through the terminal\nquit\n").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success()
            && stdout.contains("echo: through the terminal\n")
            && stdout.contains("echo: bye\n"),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(vmms_of(&ctrd).is_empty());
}

#[test]
fn detached_task_kill_and_delete_leave_no_vmm() {
    let ctrd = Containerd::start("detached");
    let kernel = "org.parapet.guest.kernel=/parapet/ticker";
    // 40 MiB and a bit: guest RAM is the limit rounded down to 2 MiB.
    let limit = ((40 << 20) + 4096).to_string();
    let ticks = ["ticks=100000", "pause_ms=50"];
    // The guest's console of "killed", to see that it runs (and listens for shutdown requests)
    // before it is killed, and how it ends.
    let console = ctrd.dir.join("killed.log");
    let log_uri = format!("file://{}", console.display());
    for id in ["killed", "forced"] {
        let mut opts = vec!["-d", "--annotation", kernel, "--memory-limit", &limit];
        if id == "killed" {
            opts.extend(["--log-uri", &log_uri]);
        }
        let out = ctrd.run(&opts, IMAGE, id, &ticks);
        out.assert_status(0);
    }
    let pid = ctrd.wait_for_status("killed", "RUNNING");
    let read_console = || std::fs::read_to_string(&console).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_console().contains("tick 2 ") {
        assert!(
            Instant::now() < deadline,
            "the guest never ticked: {:?}\n{}",
            read_console(),
            ctrd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The container's process is the VMM, running the guest from the image's rootfs.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(argv[0].ends_with("/parapet"), "{argv:?}");
    assert!(argv[2].ends_with("/rootfs/parapet/ticker"), "{argv:?}");
    let joined = argv.join(" ");
    assert!(
        joined.contains("--memory 40M") && joined.contains("--cmdline ticks=100000 pause_ms=50"),
        "{argv:?}"
    );
    // In the container's cgroup (ctr's default: /NAMESPACE/ID), in every hierarchy.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = format!(":/{NAMESPACE}/killed");
    assert!(cgroups.lines().all(|l| l.ends_with(&own)), "{cgroups}");
    let out = ctrd.ctr(&["task", "ps", "killed"]);
    assert!(out.stdout.contains(&pid.to_string()), "{out}");

    // SIGTERM, the default of `ctr task kill`, asks the guest to shut down (docs/abi.md §7.5):
    // the ticker listens, so it powers off with exit code 0, the container's. (A guest that does
    // not listen ends at once: the shim would report 128 + 15, and `task delete` print it.)
    ctrd.ctr(&["task", "kill", "killed"]).assert_status(0);
    ctrd.wait_for_status("killed", "STOPPED");
    let out = ctrd.ctr(&["task", "delete", "killed"]);
    out.assert_status(0);
    assert!(!out.stderr.contains("143"), "the VMM was killed\n{out}");
    assert!(
        read_console().contains("ticker: shutdown requested\n"),
        "{:?}",
        read_console()
    );
    ctrd.ctr(&["container", "rm", "killed"]).assert_status(0);

    // `ctr task delete --force` kills a running task.
    ctrd.wait_for_status("forced", "RUNNING");
    ctrd.ctr(&["task", "delete", "--force", "forced"])
        .assert_status(0);
    ctrd.ctr(&["container", "rm", "forced"]).assert_status(0);

    assert!(ctrd.task("killed").is_none() && ctrd.task("forced").is_none());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vmms_of(&ctrd).is_empty() {
        assert!(
            Instant::now() < deadline,
            "VMMs left running: {:?}",
            vmms_of(&ctrd)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // parapet-runc keeps nothing for deleted containers.
    let left: Vec<_> = std::fs::read_dir(ctrd.dir.join("runc").join(NAMESPACE))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_image_without_a_guest_is_one_clear_error() {
    // With a runc, parapet-runc would hand the bundle to it (tests/cri.rs runs pod sandboxes
    // that way); without one, it says what is wrong.
    let ctrd = Containerd::start_with_env("noguest", &[("PARAPET_RUNC_DELEGATE", "none")]);
    let out = ctrd.run(&["--rm"], NOT_A_GUEST, "noguest", &[]);
    assert_ne!(out.status, Some(0), "{out}");
    out.assert_stderr_contains(": not a Parapet image: no org.parapet.guest.* or ")
        .assert_stderr_contains("(and there is no runc to hand it to: install runc or set ");
    assert!(vmms_of(&ctrd).is_empty());
}

#[test]
fn disks_from_parapet_json_keep_their_read_only_flag() {
    let ctrd = Containerd::start("disks");
    // Two copies of one FAT16 image: /parapet/ro.img read-only, /parapet/rw.img writable.
    let rootfs = ctrd.dir.join("disk-rootfs");
    std::fs::create_dir_all(rootfs.join("parapet")).unwrap();
    std::fs::copy(guest("blk-fat"), rootfs.join("parapet/guest")).unwrap();
    let img = rootfs.join("parapet/ro.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .unwrap();
    let img_s = img.to_str().unwrap();
    tool("mkfs.vfat", &["-F", "16", img_s]);
    let hello = ctrd.dir.file("hello.txt", b"Hello, disk!\n");
    tool(
        "mcopy",
        &["-i", img_s, hello.to_str().unwrap(), "::HELLO.TXT"],
    );
    std::fs::copy(&img, rootfs.join("parapet/rw.img")).unwrap();
    std::fs::write(
        rootfs.join("parapet.json"),
        br#"{"version":1,"kernel":"/parapet/guest","cmdline":"cat=HELLO.TXT","memory":"64M",
            "disks":[{"path":"/parapet/ro.img","readonly":true},{"path":"/parapet/rw.img"}]}"#,
    )
    .unwrap();
    let image = "docker.io/parapet/blk-fat:1";
    ctrd.import(image, &rootfs, &["/parapet/guest"]);

    // The first disk: the file reads back, and writing fails (exit code 4).
    let out = ctrd.run(&["--rm"], image, "ro", &[]);
    out.assert_status(4)
        .assert_stdout_contains("FAT at sector 0, read-only\n")
        .assert_stdout_contains("cat HELLO.TXT 13\nHello, disk!\nend HELLO.TXT\n");
    // The second, by the guest command line from the container's arguments: written and flushed.
    let args = [
        "disk=1",
        "cat=HELLO.TXT",
        "write=GUEST.TXT",
        "text=from a container",
    ];
    let out = ctrd.run(&["--rm"], image, "rw", &args);
    out.assert_status(0)
        .assert_stdout_contains("wrote GUEST.TXT 17\n")
        .assert_stdout_contains("blk-fat: ok\n");
    assert!(vmms_of(&ctrd).is_empty());
}

/// The kernel annotation that picks net-http from the test image.
const NET_HTTP: &str = "org.parapet.guest.kernel=/parapet/net-http";

/// A network namespace as CNI's ptp plugin leaves one for a container: one end of a veth pair,
/// up, with an IPv4 address and a default route through the other end. The other end is in a
/// client namespace of its own, with the gateway address, where the test runs curl; so no
/// address of a test can meet another's or the host's. Both namespaces (and so the veth pair)
/// go on drop.
struct PodNet {
    /// The container's namespace, `/var/run/netns/NAME`.
    pod: String,
    /// The client's namespace.
    client: String,
    /// The veth end in the container's namespace.
    veth: String,
    /// The container's address, the guest's.
    addr: String,
}

impl PodNet {
    fn new() -> PodNet {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 250, "too many PodNets in one test process");
        let pid = std::process::id();
        let net = PodNet {
            pod: format!("parapet-pod-{pid}-{n}"),
            client: format!("parapet-cli-{pid}-{n}"),
            // At most 15 bytes: `pp` + up to 7 digits + `x` + up to 3 digits + `c`.
            veth: format!("pp{pid}x{n}c"),
            addr: format!("10.201.{n}.2"),
        };
        for ns in [&net.pod, &net.client] {
            // A leftover of an earlier process with this PID, if any.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            tool("ip", &["netns", "add", ns]);
        }
        let peer = format!("pp{pid}x{n}h");
        let gw = format!("10.201.{n}.1");
        tool(
            "ip",
            &[
                "link",
                "add",
                &peer,
                "netns",
                &net.client,
                "type",
                "veth",
                "peer",
                "name",
                &net.veth,
                "netns",
                &net.pod,
            ],
        );
        let (pod, client) = (net.pod.as_str(), net.client.as_str());
        tool(
            "ip",
            &[
                "-n",
                client,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                &peer,
            ],
        );
        tool("ip", &["-n", client, "link", "set", &peer, "up"]);
        let cidr = format!("{}/24", net.addr);
        tool("ip", &["-n", pod, "addr", "add", &cidr, "dev", &net.veth]);
        tool("ip", &["-n", pod, "link", "set", &net.veth, "up"]);
        tool("ip", &["-n", pod, "link", "set", "lo", "up"]);
        tool("ip", &["-n", pod, "route", "add", "default", "via", &gw]);
        net
    }

    /// `ctr run --with-ns`'s value.
    fn with_ns(&self) -> String {
        format!("network:/var/run/netns/{}", self.pod)
    }

    /// `curl http://ADDR/` from the client namespace, until it answers (or a minute passes).
    fn get(&self) -> String {
        let url = format!("http://{}/", self.addr);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.client, "curl", "-s", "-m", "5", &url])
                .output()
                .expect("run curl in the client namespace (ip, curl)");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && !body.is_empty() {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never answered from {}: {:?} {}",
                self.client,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The container's namespace holds only what the test put there: `lo` and the veth end, no
    /// TAP, no qdisc or filter on the veth's ingress.
    fn assert_clean(&self) {
        let links = tool("ip", &["-n", &self.pod, "-o", "link", "show"]);
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .collect();
        assert_eq!(names, ["lo", self.veth.as_str()], "{links}");
        let qdiscs = tool("tc", &["-n", &self.pod, "qdisc", "show", "dev", &self.veth]);
        assert!(!qdiscs.contains("ingress"), "{qdiscs}");
        let filters = tool(
            "tc",
            &[
                "-n", &self.pod, "filter", "show", "dev", &self.veth, "ingress",
            ],
        );
        assert!(filters.trim().is_empty(), "{filters}");
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Mount points of this containerd's state that name container `id`.
fn mounts_of(ctrd: &Containerd, id: &str) -> Vec<String> {
    let prefix = ctrd.dir.display().to_string();
    let needle = format!("/{id}/");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix) && format!("{t}/").contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Waits until no VMM of `ctrd` runs.
fn wait_for_no_vmm(ctrd: &Containerd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vmms_of(ctrd).is_empty() {
        assert!(
            Instant::now() < deadline,
            "VMMs left running: {:?}",
            vmms_of(ctrd)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts net-http detached as `id` in `net`'s namespace.
fn run_web(ctrd: &Containerd, net: &PodNet, id: &str) {
    let with_ns = net.with_ns();
    ctrd.run(
        &["-d", "--annotation", NET_HTTP, "--with-ns", &with_ns],
        IMAGE,
        id,
        &[],
    )
    .assert_status(0);
}

#[test]
fn net_http_answers_at_the_containers_address() {
    let ctrd = Containerd::start("net");
    let net = PodNet::new();
    run_web(&ctrd, &net, "web1");
    let pid = ctrd.wait_for_status("web1", "RUNNING");
    let body = net.get();
    assert!(body.contains("Hello from Parapet"), "{body}");
    // The VMM got the TAP as a descriptor, the veth's MAC, and the address on its command line.
    let argv = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ");
    let link = tool("ip", &["-n", &net.pod, "-o", "link", "show", &net.veth]);
    let mac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {link}"));
    assert!(
        argv.contains(&format!("ip={}/24 gw=10.201.", net.addr))
            && argv.contains(&format!(",mac={mac}"))
            && argv.contains("--net fd="),
        "{argv}"
    );
    let links = tool("ip", &["-n", &net.pod, "-o", "link", "show"]);
    assert!(links.contains(": ptap0:"), "{links}");

    ctrd.ctr(&["task", "kill", "web1"]).assert_status(0);
    ctrd.wait_for_status("web1", "STOPPED");
    ctrd.ctr(&["task", "delete", "web1"]).assert_status(0);
    wait_for_no_vmm(&ctrd);
    net.assert_clean();
    assert!(
        mounts_of(&ctrd, "web1").is_empty(),
        "{:?}",
        mounts_of(&ctrd, "web1")
    );
    ctrd.ctr(&["container", "rm", "web1"]).assert_status(0);

    // Kubernetes restarts a container in the pod's namespace: the next one works as the first.
    run_web(&ctrd, &net, "web2");
    ctrd.wait_for_status("web2", "RUNNING");
    let body = net.get();
    assert!(body.contains("Hello from Parapet"), "{body}");
    ctrd.ctr(&["task", "delete", "--force", "web2"])
        .assert_status(0);
    ctrd.ctr(&["container", "rm", "web2"]).assert_status(0);
    wait_for_no_vmm(&ctrd);
    net.assert_clean();
    assert!(mounts_of(&ctrd, "web2").is_empty());
}

#[test]
fn a_container_without_a_namespace_path_has_no_network() {
    // `ctr run` without --with-ns gives the container a new, empty network namespace: net-http
    // starts, finds no address on its command line and says so (exit 2).
    let ctrd = Containerd::start("nonet");
    let out = ctrd.run(&["--rm", "--annotation", NET_HTTP], IMAGE, "nonet", &[]);
    out.assert_status(2)
        .assert_stdout_contains("usage: net-http");
    assert!(vmms_of(&ctrd).is_empty());
}

/// Twenty containers started at once, each in its own namespace, each answering over its own
/// network; then all deleted at once, and nothing is left.
#[test]
fn twenty_containers_at_once_each_answer_and_leave_nothing() {
    const N: usize = 20;
    let ctrd = Containerd::start("twenty");
    let nets: Vec<PodNet> = (0..N).map(|_| PodNet::new()).collect();
    let ids: Vec<String> = (0..N).map(|i| format!("web{i}")).collect();
    std::thread::scope(|s| {
        for (net, id) in nets.iter().zip(&ids) {
            let ctrd = &ctrd;
            s.spawn(move || {
                run_web(ctrd, net, id);
                let body = net.get();
                assert!(body.contains("Hello from Parapet"), "{id}: {body}");
            });
        }
    });
    assert_eq!(vmms_of(&ctrd).len(), N);
    std::thread::scope(|s| {
        for id in &ids {
            let ctrd = &ctrd;
            s.spawn(move || {
                ctrd.ctr(&["task", "delete", "--force", id])
                    .assert_status(0);
                ctrd.ctr(&["container", "rm", id]).assert_status(0);
            });
        }
    });
    wait_for_no_vmm(&ctrd);
    for (net, id) in nets.iter().zip(&ids) {
        net.assert_clean();
        assert!(
            mounts_of(&ctrd, id).is_empty(),
            "{id}: {:?}",
            mounts_of(&ctrd, id)
        );
    }
    let left: Vec<_> = std::fs::read_dir(ctrd.dir.join("runc").join(NAMESPACE))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn plumbing_failures_are_one_line_and_a_stale_redirect_is_replaced() {
    let ctrd = Containerd::start("netfail");
    // A namespace that does not exist.
    let out = ctrd.run(
        &[
            "--rm",
            "--annotation",
            NET_HTTP,
            "--with-ns",
            "network:/var/run/netns/parapet-no-such-namespace",
        ],
        IMAGE,
        "nons",
        &[],
    );
    assert_ne!(out.status, Some(0), "{out}");
    out.assert_stderr_contains("network namespace /var/run/netns/parapet-no-such-namespace");

    // Another tool's filter where the redirect would go: refused, and left as it was.
    let net = PodNet::new();
    let (pod, veth) = (net.pod.as_str(), net.veth.as_str());
    tool("tc", &["-n", pod, "qdisc", "add", "dev", veth, "ingress"]);
    let filter = [
        "-n", pod, "filter", "add", "dev", veth, "parent", "ffff:", "prio", "1", "protocol", "all",
        "u32", "match", "u32", "0", "0",
    ];
    let mut foreign = filter.to_vec();
    foreign.extend(["flowid", "1:1"]);
    tool("tc", &foreign);
    let out = ctrd.run(
        &[
            "--rm",
            "--annotation",
            NET_HTTP,
            "--with-ns",
            &net.with_ns(),
        ],
        IMAGE,
        "foreign",
        &[],
    );
    assert_ne!(out.status, Some(0), "{out}");
    out.assert_stderr_contains(&format!(
        "network: {veth}: its ingress already has a filter of priority 1"
    ));
    let links = tool("ip", &["-n", pod, "-o", "link", "show"]);
    assert!(!links.contains("ptap0"), "{links}");
    let filters = tool("tc", &["-n", pod, "filter", "show", "dev", veth, "ingress"]);
    assert!(filters.contains("flowid 1:1"), "{filters}");

    // What a container that was never deleted leaves: a redirect to a TAP that is gone. The
    // next container replaces it, and its deletion leaves the qdisc it found.
    tool("tc", &["-n", pod, "filter", "del", "dev", veth, "ingress"]);
    let pair = [
        "link", "add", "gone0", "type", "veth", "peer", "name", "gone1",
    ];
    tool("ip", &[&["-n", pod][..], &pair].concat());
    tool("ip", &["-n", pod, "link", "set", "gone0", "up"]);
    let mut stale = filter.to_vec();
    stale.extend(["action", "mirred", "egress", "redirect", "dev", "gone0"]);
    tool("tc", &stale);
    tool("ip", &["-n", pod, "link", "del", "gone0"]);
    run_web(&ctrd, &net, "stale");
    let body = net.get();
    assert!(body.contains("Hello from Parapet"), "{body}");
    ctrd.ctr(&["task", "delete", "--force", "stale"])
        .assert_status(0);
    ctrd.ctr(&["container", "rm", "stale"]).assert_status(0);
    wait_for_no_vmm(&ctrd);
    let qdiscs = tool("tc", &["-n", pod, "qdisc", "show", "dev", veth]);
    assert!(qdiscs.contains("ingress"), "{qdiscs}");
    let filters = tool("tc", &["-n", pod, "filter", "show", "dev", veth, "ingress"]);
    assert!(filters.trim().is_empty(), "{filters}");
}

/// `cargo xtask oci-image GUEST ARGS…` as `reference`, imported.
fn import_xtask_image(ctrd: &Containerd, guest_name: &str, reference: &str, args: &[&str]) {
    let out = ctrd.dir.join(format!("{guest_name}-xtask.tar"));
    let mut cmd = Command::new(host_binary("xtask", "xtask"));
    cmd.arg("oci-image")
        .arg(guest(guest_name))
        .args(args)
        .arg("--out")
        .arg(&out)
        .args(["--name", reference]);
    run(cmd).assert_status(0);
    ctrd.ctr(&["images", "import", out.to_str().unwrap()])
        .assert_status(0);
}

/// A raw image bind-mounted into the container (`ctr run --mount`, a Kubernetes `hostPath`
/// file) is a PV disk of the guest, read-only if the mount is; the image is one `cargo xtask
/// oci-image` made.
#[test]
fn a_mounted_raw_image_is_a_disk_read_only_if_the_mount_is() {
    let ctrd = Containerd::start("mount");
    let image = "docker.io/parapet/blk-fat-xtask:1";
    import_xtask_image(&ctrd, "blk-fat", image, &["--cmdline", "cat=HELLO.TXT"]);
    let img = ctrd.dir.join("data.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .unwrap();
    let img_s = img.to_str().unwrap();
    tool("mkfs.vfat", &["-F", "16", img_s]);
    let hello = ctrd.dir.file("hello.txt", b"Hello, mount!\n");
    tool(
        "mcopy",
        &["-i", img_s, hello.to_str().unwrap(), "::HELLO.TXT"],
    );

    let ro = format!("type=bind,src={img_s},dst=/data.img,options=rbind:ro");
    let out = ctrd.run(&["--rm", "--mount", &ro], image, "ro", &[]);
    // The image's command line reads the file; blk-fat's default write then fails (exit 4).
    out.assert_status(4)
        .assert_stdout_contains(", read-only\n")
        .assert_stdout_contains("cat HELLO.TXT 14\nHello, mount!\nend HELLO.TXT\n");

    let rw = format!("type=bind,src={img_s},dst=/data.img,options=rbind:rw");
    let args = ["write=GUEST.TXT", "text=through a mount"];
    let out = ctrd.run(&["--rm", "--mount", &rw], image, "rw", &args);
    out.assert_status(0).assert_stdout_contains("blk-fat: ok\n");
    // The guest wrote the host's file.
    assert_eq!(
        tool("mtype", &["-i", img_s, "::GUEST.TXT"]),
        "through a mount\n"
    );
    assert!(vmms_of(&ctrd).is_empty());
}

/// A bundle that is not a Parapet image goes to runc, which runs it as an ordinary container.
#[test]
fn an_ordinary_image_goes_to_runc() {
    let ctrd = Containerd::start("runc");
    // Debian's ldconfig is a static program: a Linux container needing nothing else.
    let rootfs = ctrd.dir.join("linux-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/sbin/ldconfig", rootfs.join("bin/ldconfig")).unwrap();
    let image = "docker.io/parapet/linux:1";
    ctrd.import(image, &rootfs, &["/bin/ldconfig", "--version"]);
    let out = ctrd.run(&["--rm"], image, "linux", &[]);
    out.assert_status(0)
        .assert_stdout_contains("ldconfig (Debian GLIBC");
    assert!(vmms_of(&ctrd).is_empty());
    // runc's state lived under parapet-runc's root, in `runc/`, and is gone with the container.
    let runc_root = ctrd.dir.join("runc").join(NAMESPACE).join("runc");
    let left: Vec<_> = std::fs::read_dir(&runc_root)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
