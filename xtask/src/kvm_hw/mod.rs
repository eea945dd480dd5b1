//! `cargo xtask test-kvm-hw`: the hardware-KVM lane.
//!
//! Parapet's guests must work on an ordinary VT-x/AMD-V KVM, not only on kvm_pvm. Machines without
//! VT-x/AMD-V (like the ones this project is built on) get one anyway: QEMU in TCG mode emulates
//! an AMD CPU with SVM, and a Debian 6.12 kernel booted inside it loads the real `kvm_amd` with
//! KVM's Xen hypercall intercept. The lane
//!
//! 1. builds a static `parapet` (`x86_64-unknown-linux-musl`) and the test guests (release),
//! 2. fetches QEMU, the kernel and busybox from Debian's packages ([`assets`], cached under
//!    `target/kvm-hw/`),
//! 3. packs them with the disk images and a generated `/init` into an initramfs,
//! 4. boots it, runs every case of [`cases`] under every transport inside, and reads the results
//!    back from the serial console; for the gdb cases, runs the host's gdb against the guest
//!    through the VM's second serial port (a TCP port on the host's loopback),
//! 5. prints a case × transport table and exits non-zero if anything failed.
//!
//! `--bench` also runs `cargo xtask bench` (a static xtask) inside the VM: the hypercall-vs-trap
//! table on kvm_amd, relative figures only (everything runs under emulation).

pub mod assets;
pub mod cases;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::Workspace;
use assets::Assets;
use cases::{CASES, Case, EXTRA_CASES, EXTRA_TRANSPORTS, Image, TRANSPORTS, Transport};

/// The static host target the VMM is built for inside the lane.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(Debug, Args)]
pub struct KvmHwArgs {
    /// The QEMU CPU model: `max` (nested paging) or e.g. `qemu64,+svm` (shadow paging).
    #[arg(long, default_value = "max")]
    cpu: String,
    /// Virtual CPUs of the QEMU machine. More than one uses multi-threaded TCG, under which the
    /// nested kernel's own code patching (static keys) now and then oopses with `int3` in
    /// `__schedule`, before Parapet is involved: hence 1.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Only the cases whose name contains PATTERN (repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,
    /// Also run the hypercall-vs-trap benchmark inside the VM.
    #[arg(long)]
    bench: bool,
    /// Rounds of the benchmark (with --bench).
    #[arg(long, default_value_t = 1)]
    bench_rounds: u32,
    /// Samples per benchmark row (with --bench); nested exits are slow, keep it small.
    #[arg(long, default_value_t = 200)]
    bench_iters: u32,
    /// Stop QEMU after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

/// One guest run inside the VM.
#[derive(Debug)]
struct Run {
    case: &'static Case,
    transport: Transport,
}

/// What a run printed, read back from the serial log.
#[derive(Debug, Default)]
struct Observed {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    client: String,
}

pub fn run(ws: &Workspace, args: KvmHwArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = ws.target_dir.join("kvm-hw");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("gdb-") && name.ends_with(".log") {
            std::fs::remove_file(&path)?;
        }
    }

    let runs = plan(&args.only);
    if runs.is_empty() {
        bail!("no case matches {:?}", args.only);
    }
    let vmm = ws.build_static(&["-p", "parapet", "--bin", "parapet"], "parapet")?;
    let mut guests = BTreeMap::new();
    for name in cases::guests() {
        guests.insert(name, ws.build_guest(name, !cases::dev_build(name))?);
    }
    let mut extra_bins = Vec::new();
    if args.bench {
        extra_bins.push(ws.build_static(&["-p", "xtask", "--bin", "xtask"], "xtask")?);
        extra_bins.push(ws.build_static(
            &["-p", "bench-floor", "--bin", "parapet-floor"],
            "parapet-floor",
        )?);
        guests.insert("bench", ws.build_guest("bench", true)?);
        guests.insert("hello", ws.build_guest("hello", true)?);
    }
    let assets = Assets::prepare(&dir)?;
    let initramfs = pack(&dir, &assets, &vmm, &guests, &extra_bins, &runs, &args)?;

    let log_path = dir.join("serial.log");
    eprintln!(
        "kvm-hw: booting kernel {} under QEMU TCG (-cpu {}, -smp {}): {} runs; log: {}",
        assets.kernel_release,
        args.cpu,
        args.smp,
        runs.len(),
        log_path.display()
    );
    let gdb = runs
        .iter()
        .any(|r| !r.case.gdb.is_empty())
        .then(GdbLink::new)
        .transpose()?;
    let (log, gdb_outputs) = boot(
        &assets,
        &initramfs,
        &log_path,
        &args,
        &runs,
        &guests,
        gdb.as_ref(),
    )?;

    let amd = log
        .lines()
        .find_map(|l| l.strip_prefix("@@VENDOR "))
        .map(|v| v.contains("AuthenticAMD"));
    if let Some(fatal) = log.lines().find_map(|l| l.strip_prefix("@@FATAL ")) {
        bail!(
            "the lane's VM could not run the cases: {fatal} (see {})",
            log_path.display()
        );
    }
    let amd =
        amd.with_context(|| format!("the VM never reached /init (see {})", log_path.display()))?;
    let mut observed = parse(&log);
    for (i, output) in gdb_outputs {
        // The whole transcript, next to the serial log (the table shows only a failure's end).
        std::fs::write(dir.join(format!("gdb-{i}.log")), &output)?;
        if let Some(o) = observed.get_mut(&i) {
            o.client = output;
        }
    }
    let mut failures = Vec::new();
    let mut table: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        let problems = match observed.get(&i) {
            Some(o) => check(run, o, amd),
            None => vec!["did not run (the VM stopped early)".to_owned()],
        };
        let cell = if problems.is_empty() { "pass" } else { "FAIL" };
        table
            .entry(run.case.name)
            .or_default()
            .insert(run.transport.0, cell.to_owned());
        if !problems.is_empty() {
            failures.push((run, problems, observed.get(&i)));
        }
    }
    print_table(&runs, &table);
    for (run, problems, o) in &failures {
        println!("\nFAIL {} / {}:", run.case.name, run.transport.0);
        for p in problems {
            println!("  - {p}");
        }
        if let Some(o) = o {
            println!("  stdout (last lines):\n{}", tail(&o.stdout, 15));
            println!("  stderr (last lines):\n{}", tail(&o.stderr, 15));
            if !o.client.is_empty() {
                let (what, lines) = if run.case.gdb.is_empty() {
                    ("client", 15)
                } else {
                    ("gdb", 40)
                };
                println!("  {what}:\n{}", tail(&o.client, lines));
            }
        }
    }
    if args.bench {
        print_bench(&log);
    }
    println!(
        "\nkvm-hw: {} of {} runs passed in {:.0} s (kvm_amd under QEMU TCG, CPU {}, {})",
        runs.len() - failures.len(),
        runs.len(),
        started.elapsed().as_secs_f64(),
        args.cpu,
        if amd { "AMD" } else { "Intel" },
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every case under every transport, then the first cases under the extra transports.
fn plan(only: &[String]) -> Vec<Run> {
    let wanted = |c: &Case| only.is_empty() || only.iter().any(|p| c.name.contains(p.as_str()));
    let mut runs = Vec::new();
    for case in CASES.iter().filter(|c| wanted(c)) {
        for &transport in TRANSPORTS {
            runs.push(Run { case, transport });
        }
    }
    for case in CASES[..EXTRA_CASES].iter().filter(|c| wanted(c)) {
        for &transport in EXTRA_TRANSPORTS {
            runs.push(Run { case, transport });
        }
    }
    runs
}

/// Quotes `s` for the shell.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Builds the initramfs: busybox, the KVM modules, the VMM, the guests, the disk images, the
/// inputs and `/init`, which runs every run and prints its results between markers.
fn pack(
    dir: &Path,
    assets: &Assets,
    vmm: &Path,
    guests: &BTreeMap<&str, PathBuf>,
    extra_bins: &[PathBuf],
    runs: &[Run],
    args: &KvmHwArgs,
) -> Result<PathBuf> {
    let root = dir.join("initramfs");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    for d in [
        "bin",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "tmp",
        "guests",
        "img",
        "input",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(&assets.busybox, root.join("bin/busybox"))?;
    for m in assets::MODULES {
        let name = m.rsplit('/').next().unwrap_or(m);
        assets.module(m, &root.join(format!("lib/modules/{name}.ko")))?;
    }
    std::fs::copy(vmm, root.join("bin/parapet"))?;
    for bin in extra_bins {
        let name = bin.file_name().context("binary name")?;
        std::fs::copy(bin, root.join("bin").join(name))?;
    }
    for (name, elf) in guests {
        std::fs::copy(elf, root.join("guests").join(name))?;
    }
    make_images(&root.join("img"))?;

    let mut init = String::from(INIT_PROLOGUE);
    for (i, run) in runs.iter().enumerate() {
        let case = run.case;
        let mut cmd = format!(
            "/bin/parapet run /guests/{} --hypercall-transport {}",
            case.guest, run.transport.0
        );
        if !case.args.contains(&"--timeout") {
            // A network guest that never hears from its client must not hold the lane long.
            let limit = if case.client.is_some() { 60 } else { 300 };
            write!(cmd, " --timeout {limit}")?;
        }
        for a in case.args {
            write!(cmd, " {}", sh(a))?;
        }
        writeln!(
            init,
            "echo '@@BEGIN {i} {} / {}'",
            case.name, run.transport.0
        )?;
        for (d, image) in case.disks.iter().enumerate() {
            let copy = format!("/tmp/disk{d}.img");
            writeln!(init, "cp /img/{} {copy}", image.file())?;
            write!(cmd, " --disk {}", sh(&image.disk_arg(&copy)))?;
        }
        if let Some(cmdline) = case.cmdline {
            write!(cmd, " --cmdline {}", sh(cmdline))?;
        }
        if !case.gdb.is_empty() {
            // -v: the log says how each breakpoint reached the VMM.
            write!(cmd, " --gdb {} -v", cases::GDB_LINE)?;
        }
        let stdin = match case.stdin {
            Some(text) => {
                let path = format!("input/{i}");
                std::fs::write(root.join(&path), text)?;
                format!("/{path}")
            }
            None => "/dev/null".to_owned(),
        };
        match case.client {
            // The host runs gdb once it sees `@@GDB`: the VMM has opened the line by then and
            // waits for gdb's first packet. A VMM that never gets there gets no gdb.
            None if !case.gdb.is_empty() => writeln!(
                init,
                "timeout 600 {cmd} <{stdin} >/tmp/out 2>/tmp/err &\n\
                 guest=$!\n\
                 n=0; until grep -q 'waits for gdb' /tmp/err || ! kill -0 $guest 2>/dev/null || [ $n -ge 600 ]; do n=$((n+1)); sleep 0.1; done\n\
                 grep -q 'waits for gdb' /tmp/err && echo '@@GDB {i}'\n\
                 wait $guest; echo \"@@STATUS $?\""
            )?,
            None => writeln!(
                init,
                "timeout 600 {cmd} <{stdin} >/tmp/out 2>/tmp/err\necho \"@@STATUS $?\""
            )?,
            Some(client) => writeln!(
                init,
                "timeout 600 {cmd} --net tap={tap} <{stdin} >/tmp/out 2>/tmp/err &\n\
                 guest=$!\n\
                 n=0; until ip link show {tap} >/dev/null 2>&1 || [ $n -ge 100 ]; do n=$((n+1)); sleep 0.1; done\n\
                 ip addr add 10.77.0.1/24 dev {tap}; ip link set {tap} up\n\
                 n=0; until ping -c 1 -W 1 {ip} >/dev/null 2>&1 || [ $n -ge 60 ]; do n=$((n+1)); done\n\
                 ( {client} ) >/tmp/client 2>&1\n\
                 wait $guest; echo \"@@STATUS $?\"\n\
                 awk '{{print \"@@C \" $0}}' /tmp/client",
                tap = cases::TAP,
                ip = cases::GUEST_IP,
            )?,
        }
        writeln!(
            init,
            "awk '{{print \"@@O \" $0}}' /tmp/out\nawk '{{print \"@@E \" $0}}' /tmp/err\n\
             rm -f /tmp/disk*.img /tmp/client\necho '@@END {i}'"
        )?;
    }
    if args.bench {
        writeln!(
            init,
            "echo '@@BENCH-BEGIN'\n\
             cd /tmp && /bin/xtask bench --vmm /bin/parapet --guest /guests/bench \
             --hello /guests/hello --floor /bin/parapet-floor --out /tmp/bench \
             --rounds {} --iters {} --boot-runs 3 2>&1\n\
             echo \"@@BENCH-END $?\"",
            args.bench_rounds, args.bench_iters
        )?;
    }
    init.push_str("echo '@@DONE'\npoweroff -f\n");
    let init_path = root.join("init");
    std::fs::write(&init_path, init)?;
    set_executable(&init_path)?;

    let out = dir.join("initramfs.cpio.gz");
    let script = format!(
        "cd {} && find . | {} cpio -o -H newc 2>/dev/null | gzip -1 > {}",
        sh(&root.display().to_string()),
        sh(&assets.busybox.display().to_string()),
        sh(&out.display().to_string())
    );
    assets::run(
        Command::new("sh").arg("-c").arg(script),
        "packing the initramfs",
    )?;
    Ok(out)
}

const INIT_PROLOGUE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in irqbypass kvm kvm-amd tun; do
    insmod /lib/modules/$m.ko || echo "@@FATAL insmod $m failed"
done
ip link set lo up
# The gdb cases' serial line (its speed is what the VMM keeps; QEMU's end has none).
stty -F /dev/ttyS1 115200 2>/dev/null

[ -c /dev/kvm ] || echo "@@FATAL no /dev/kvm after loading kvm_amd"
echo "@@VENDOR $(grep -m1 vendor_id /proc/cpuinfo)"
echo "@@KERNEL $(uname -r) kvm_amd npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
"#;

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Makes the images [`Image`] names: a FAT32 image (mkfs.vfat and mcopy, as the block tests
/// use) and a zeroed one.
fn make_images(dir: &Path) -> Result<()> {
    let fat = dir.join(Image::Fat.file());
    std::fs::File::create(&fat)?.set_len(64 << 20)?;
    assets::run(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "PARAPET"])
            .arg(&fat)
            .stdout(Stdio::null()),
        "mkfs.vfat (package dosfstools)",
    )?;
    let hello = dir.join("hello.txt");
    std::fs::write(&hello, "Hello, disk!\n")?;
    assets::run(
        Command::new("mcopy")
            .arg("-i")
            .arg(&fat)
            .arg(&hello)
            .arg("::HELLO.TXT"),
        "mcopy (package mtools)",
    )?;
    std::fs::remove_file(&hello)?;
    std::fs::File::create(dir.join(Image::Zeros.file()))?.set_len(4 << 20)?;
    Ok(())
}

/// The host's end of the VM's second serial port ([`cases::GDB_LINE`] inside): QEMU listens on
/// this loopback TCP port, and gdb connects there.
#[derive(Clone, Copy, Debug)]
struct GdbLink {
    port: u16,
}

impl GdbLink {
    /// Picks a free port on the loopback.
    fn new() -> Result<GdbLink> {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot find a free TCP port for gdb's serial line")?;
        Ok(GdbLink {
            port: probe.local_addr()?.port(),
        })
    }

    /// QEMU's arguments for the second serial port.
    fn qemu_args(&self) -> [String; 4] {
        [
            "-chardev".into(),
            format!(
                "socket,id=gdb0,host=127.0.0.1,port={},server=on,wait=off",
                self.port
            ),
            "-serial".into(),
            "chardev:gdb0".into(),
        ]
    }

    /// Runs `gdb -batch` on `elf` with `commands` after connecting: its output, errors included.
    fn run_gdb(&self, elf: &Path, commands: &[&str]) -> String {
        let mut cmd = Command::new("timeout");
        cmd.args(["--signal=KILL", "300", "gdb", "-nx", "-batch"])
            .args(["-ex", "set confirm off"])
            // The stub answers from inside an emulated machine: slowly, now and then.
            .args(["-ex", "set remotetimeout 30"])
            .arg("-ex")
            .arg(format!("target remote 127.0.0.1:{}", self.port));
        for c in commands {
            cmd.args(["-ex", c]);
        }
        cmd.arg(elf).stdin(Stdio::null());
        match cmd.output() {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cannot run gdb (Debian's gdb): {e}"),
        }
    }
}

/// Boots the VM, echoes each finished run as a progress line, runs gdb for the gdb cases when
/// the VM says the guest waits for it, and returns the serial log and gdb's output by run.
fn boot(
    assets: &Assets,
    initramfs: &Path,
    log_path: &Path,
    args: &KvmHwArgs,
    runs: &[Run],
    guests: &BTreeMap<&str, PathBuf>,
    gdb: Option<&GdbLink>,
) -> Result<(String, BTreeMap<usize, String>)> {
    let total = runs.len();
    let accel = if args.smp > 1 {
        "tcg,thread=multi"
    } else {
        "tcg"
    };
    let mut qemu = assets.qemu();
    qemu.args(["-accel", accel, "-cpu", &args.cpu])
        .args(["-smp", &args.smp.to_string(), "-m", "2048"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(gdb.map(GdbLink::qemu_args).into_iter().flatten())
        .arg("-kernel")
        .arg(&assets.kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet loglevel=1 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=KILL", &args.timeout.to_string()])
        .arg(qemu.get_program())
        .args(qemu.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (k, v) in qemu.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start QEMU")?;
    let stdout = child.stdout.take().context("QEMU's stdout")?;
    let mut file = std::fs::File::create(log_path)?;
    let mut log = String::new();
    let mut current = String::new();
    let mut gdb_outputs = BTreeMap::new();
    let mut gdb_running: Option<(usize, std::thread::JoinHandle<String>)> = None;
    let mut gdb_finish = |running: &mut Option<(usize, std::thread::JoinHandle<String>)>| {
        if let Some((i, handle)) = running.take() {
            gdb_outputs.insert(i, handle.join().unwrap_or_default());
        }
    };
    for line in BufReader::new(stdout).split(b'\n') {
        let line = String::from_utf8_lossy(&line?)
            .trim_end_matches('\r')
            .to_owned();
        writeln!(file, "{line}")?;
        if let Some(rest) = line.strip_prefix("@@BEGIN ") {
            current = rest.to_owned();
        } else if let Some(status) = line.strip_prefix("@@STATUS ") {
            let (n, name) = current.split_once(' ').unwrap_or(("?", &current));
            eprintln!(
                "kvm-hw: [{:>3}/{total}] {:>6.1} s  {name}: status {status}",
                n.parse::<usize>().map_or(0, |n| n + 1),
                started.elapsed().as_secs_f64()
            );
        } else if let Some(n) = line.strip_prefix("@@GDB ") {
            let run = n
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|n| Some((n, runs.get(n)?)));
            if let (Some((n, run)), Some(link)) = (run, gdb) {
                // One gdb at a time on the line: the last one has seen its run end.
                gdb_finish(&mut gdb_running);
                let elf = guests
                    .get(run.case.guest)
                    .context("the gdb case's guest")?
                    .clone();
                let (commands, link) = (run.case.gdb, *link);
                gdb_running = Some((n, std::thread::spawn(move || link.run_gdb(&elf, commands))));
            }
        } else if line == "@@BENCH-BEGIN" {
            eprintln!("kvm-hw: running the benchmark inside the VM");
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!(
            "kvm-hw: QEMU ended with {status} (killed at the --timeout of {} s?)",
            args.timeout
        );
    }
    gdb_finish(&mut gdb_running);
    Ok((log, gdb_outputs))
}

/// The runs' results, by run index.
fn parse(log: &str) -> BTreeMap<usize, Observed> {
    let mut results = BTreeMap::new();
    let mut current: Option<(usize, Observed)> = None;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("@@BEGIN ") {
            let n = rest.split(' ').next().and_then(|n| n.parse().ok());
            current = n.map(|n| (n, Observed::default()));
        } else if let Some((_, o)) = current.as_mut() {
            if let Some(s) = line.strip_prefix("@@STATUS ") {
                o.status = s.trim().parse().ok();
            } else if let Some(text) = line.strip_prefix("@@O ") {
                o.stdout.push_str(text);
                o.stdout.push('\n');
            } else if let Some(text) = line.strip_prefix("@@E ") {
                o.stderr.push_str(text);
                o.stderr.push('\n');
            } else if let Some(text) = line.strip_prefix("@@C ") {
                o.client.push_str(text);
                o.client.push('\n');
            } else if line.starts_with("@@END ") {
                let (n, o) = current.take().expect("inside a run");
                results.insert(n, o);
            }
        }
    }
    results
}

/// What is wrong with a run's result; empty if it passed.
fn check(run: &Run, o: &Observed, amd: bool) -> Vec<String> {
    let case = run.case;
    let mut problems = Vec::new();
    if o.status != Some(case.status) {
        problems.push(format!(
            "exit status {}, want {}",
            o.status.map_or("none".to_owned(), |s| s.to_string()),
            case.status
        ));
    }
    let transport = cases::reported_name(run.transport, amd);
    for want in case.stdout {
        let want = want.replace("{transport}", transport);
        if !o.stdout.contains(&want) {
            problems.push(format!("stdout lacks {want:?}"));
        }
    }
    for bad in case.stdout_not {
        if o.stdout.contains(bad) {
            problems.push(format!("stdout has {bad:?}"));
        }
    }
    for want in case.stderr {
        if !o.stderr.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    for want in case.client_out {
        if !o.client.contains(want) {
            problems.push(format!("the client's output lacks {want:?}"));
        }
    }
    if o.stderr.contains("panicked at") {
        problems.push("the VMM panicked".to_owned());
    }
    problems
}

fn print_table(runs: &[Run], table: &BTreeMap<&str, BTreeMap<&str, String>>) {
    let mut transports: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        if !transports.contains(&run.transport.0) {
            transports.push(run.transport.0);
        }
        if !names.contains(&run.case.name) {
            names.push(run.case.name);
        }
    }
    let width = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    print!("\n{:width$}", "case");
    for t in &transports {
        print!("  {t:>12}");
    }
    println!();
    for name in names {
        print!("{name:width$}");
        for t in &transports {
            let cell = table
                .get(name)
                .and_then(|r| r.get(t))
                .map_or("-", String::as_str);
            print!("  {cell:>12}");
        }
        println!();
    }
}

fn print_bench(log: &str) {
    let mut inside = false;
    println!(
        "\nHypercall vs trap on kvm_amd, measured under emulated SVM (QEMU TCG): compare rows \
              with each other only; absolute times are not those of hardware."
    );
    for line in log.lines() {
        if line == "@@BENCH-BEGIN" {
            inside = true;
        } else if let Some(status) = line.strip_prefix("@@BENCH-END ") {
            println!("(benchmark exit status {status})");
            return;
        } else if inside {
            println!("{line}");
        }
    }
    println!("(the benchmark did not finish)");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "noise\n@@BEGIN 0 hello / vmcall\n@@STATUS 0\n\
        @@O Hello from Parapet! platform=kvm-hw transport=vmmcall\n@@END 0\n\
        @@BEGIN 1 hello / pio\n@@STATUS 102\n@@E parapet: guest fault: #UD\n@@END 1\n\
        @@BEGIN 2 hello / auto\n@@STATUS 0\n";

    #[test]
    fn a_run_passes_only_with_its_status_and_output() {
        let runs = plan(&["hello".to_owned()]);
        assert_eq!(runs[0].case.name, "hello");
        let observed = parse(LOG);
        assert_eq!(observed.len(), 2, "run 2 never ended: not reported");
        assert!(check(&runs[0], &observed[&0], true).is_empty());
        // The same output from an Intel CPU names the wrong instruction.
        assert!(!check(&runs[0], &observed[&0], false).is_empty());
        let problems = check(&runs[1], &observed[&1], true);
        assert!(problems.iter().any(|p| p.contains("exit status 102")));
        assert!(problems.iter().any(|p| p.contains("stdout lacks")));
    }

    #[test]
    fn gdb_cases_debug_a_dev_build_and_check_gdbs_output() {
        let runs = plan(&["gdb".to_owned()]);
        assert!(!runs.is_empty() && runs.iter().all(|r| !r.case.gdb.is_empty()));
        assert!(cases::dev_build("debuggee"));
        assert!(!cases::dev_build("hello"));
        let mut o = Observed {
            status: Some(143),
            stdout: "debuggee: 14 rounds, total 143\n".into(),
            stderr: "parapet: the guest waits for gdb; ...\n".into(),
            ..Observed::default()
        };
        let problems = check(&runs[0], &o, true);
        assert!(problems.iter().all(|p| p.contains("client's output")));
        assert!(!problems.is_empty(), "no gdb transcript is a failure");
        o.client = runs[0].case.client_out.join("\n");
        assert!(check(&runs[0], &o, true).is_empty());
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
