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
//!    through the VM's second serial port (a TCP port on the host's loopback); for the snapshot
//!    cases, runs `parapet restore` on the snapshot the guest's run wrote, once or more,
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
use cases::{CASES, Case, EXTRA_TRANSPORTS, Image, Output, TRANSPORTS, Transport};

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
    /// The guest's run, then the restores of its snapshot, as far as they got.
    steps: Vec<Output>,
    client: String,
}

impl Observed {
    /// The guest's run.
    fn run(&self) -> &Output {
        &self.steps[0]
    }
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
            for (k, step) in o.steps.iter().enumerate() {
                let what = match k {
                    0 => String::new(),
                    k => format!("restore {k} "),
                };
                println!("  {what}stdout (last lines):\n{}", tail(&step.stdout, 15));
                println!("  {what}stderr (last lines):\n{}", tail(&step.stderr, 15));
            }
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

/// Every case under every transport, then the cases marked for it under the extra transports.
fn plan(only: &[String]) -> Vec<Run> {
    let wanted = |c: &Case| only.is_empty() || only.iter().any(|p| c.name.contains(p.as_str()));
    let mut runs = Vec::new();
    for case in CASES.iter().filter(|c| wanted(c)) {
        for &transport in TRANSPORTS {
            runs.push(Run { case, transport });
        }
    }
    for case in CASES.iter().filter(|c| c.extra_transports && wanted(c)) {
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
        if !case.restores.is_empty() {
            write!(cmd, " --snapshot {}", cases::SNAPSHOT)?;
        }
        let stdin = input(&root, &i.to_string(), case.stdin)?;
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
        init.push_str(PRINT_OUTPUT);
        for (k, restore) in case.restores.iter().enumerate() {
            let file = if restore.corrupted {
                writeln!(
                    init,
                    "cp {snap} {bad}\n\
                     b=$(od -An -tu1 -j {at} -N 1 {bad})\n\
                     printf \"\\\\$(printf %o $(( $b ^ 255 )))\" | dd of={bad} bs=1 seek={at} conv=notrunc 2>/dev/null",
                    snap = cases::SNAPSHOT,
                    bad = cases::CORRUPTED,
                    at = cases::CORRUPTED_BYTE,
                )?;
                cases::CORRUPTED
            } else {
                cases::SNAPSHOT
            };
            let warm = if restore.warm { " --warm" } else { "" };
            let stdin = input(&root, &format!("{i}-{k}"), restore.stdin)?;
            writeln!(
                init,
                "echo '@@RESTORE {k}'\n\
                 timeout 600 /bin/parapet restore {file} --timeout 300{warm} <{stdin} >/tmp/out 2>/tmp/err\n\
                 echo \"@@STATUS $?\""
            )?;
            init.push_str(PRINT_OUTPUT);
        }
        writeln!(
            init,
            "rm -f /tmp/disk*.img /tmp/client {}*\necho '@@END {i}'",
            cases::SNAPSHOT
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

/// A `parapet` process's output into the serial log, after its `@@STATUS` line.
const PRINT_OUTPUT: &str =
    "awk '{print \"@@O \" $0}' /tmp/out\nawk '{print \"@@E \" $0}' /tmp/err\n";

/// Standard input for a process, as a path inside the VM: `text` in the initramfs's `/input`
/// under `name`, or /dev/null.
fn input(root: &Path, name: &str, text: Option<&str>) -> Result<String> {
    Ok(match text {
        Some(text) => {
            let path = format!("input/{name}");
            std::fs::write(root.join(&path), text)?;
            format!("/{path}")
        }
        None => "/dev/null".to_owned(),
    })
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
    let mut step = String::new();
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
            step.clear();
        } else if let Some(k) = line.strip_prefix("@@RESTORE ") {
            let k = k.trim().parse::<usize>().map_or(0, |k| k + 1);
            step = format!(", restore {k}");
        } else if let Some(status) = line.strip_prefix("@@STATUS ") {
            let (n, name) = current.split_once(' ').unwrap_or(("?", &current));
            eprintln!(
                "kvm-hw: [{:>3}/{total}] {:>6.1} s  {name}{step}: status {status}",
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
            current = n.map(|n| {
                let o = Observed {
                    steps: vec![Output::default()],
                    ..Observed::default()
                };
                (n, o)
            });
        } else if let Some((_, o)) = current.as_mut() {
            let step = o.steps.last_mut().expect("the run's step");
            if let Some(s) = line.strip_prefix("@@STATUS ") {
                step.status = s.trim().parse().ok();
            } else if line.starts_with("@@RESTORE ") {
                o.steps.push(Output::default());
            } else if let Some(text) = line.strip_prefix("@@O ") {
                step.stdout.push_str(text);
                step.stdout.push('\n');
            } else if let Some(text) = line.strip_prefix("@@E ") {
                step.stderr.push_str(text);
                step.stderr.push('\n');
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

/// What one process of a run must show: its exit status, and strings its standard output must
/// and must not contain and its standard error must contain.
struct Expected<'a> {
    status: i32,
    stdout: &'a [&'a str],
    stdout_not: &'a [&'a str],
    stderr: &'a [&'a str],
}

/// What is wrong with a run's result; empty if it passed.
fn check(run: &Run, o: &Observed, amd: bool) -> Vec<String> {
    let case = run.case;
    let transport = cases::reported_name(run.transport, amd);
    let expected = Expected {
        status: case.status,
        stdout: case.stdout,
        stdout_not: case.stdout_not,
        stderr: case.stderr,
    };
    let mut problems = check_output(o.run(), &expected, transport);
    for want in case.client_out {
        if !o.client.contains(want) {
            problems.push(format!("the client's output lacks {want:?}"));
        }
    }
    for (k, restore) in case.restores.iter().enumerate() {
        let k = k + 1;
        let Some(output) = o.steps.get(k) else {
            problems.push(format!("restore {k} did not run"));
            continue;
        };
        let expected = Expected {
            status: restore.status,
            stdout: restore.stdout,
            stdout_not: restore.stdout_not,
            stderr: restore.stderr,
        };
        for problem in check_output(output, &expected, transport) {
            problems.push(format!("restore {k}: {problem}"));
        }
    }
    if let Some(across) = case.across {
        problems.extend(across(&o.steps));
    }
    problems
}

/// What is wrong with one process's output; `transport` replaces `{transport}`.
fn check_output(o: &Output, expected: &Expected, transport: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if o.status != Some(expected.status) {
        problems.push(format!(
            "exit status {}, want {}",
            o.status.map_or("none".to_owned(), |s| s.to_string()),
            expected.status
        ));
    }
    for want in expected.stdout {
        let want = want.replace("{transport}", transport);
        if !o.stdout.contains(&want) {
            problems.push(format!("stdout lacks {want:?}"));
        }
    }
    for bad in expected.stdout_not {
        if o.stdout.contains(bad) {
            problems.push(format!("stdout has {bad:?}"));
        }
    }
    for want in expected.stderr {
        if !o.stderr.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
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
            steps: vec![Output {
                status: Some(143),
                stdout: "debuggee: 14 rounds, total 143\n".into(),
                stderr: "parapet: the guest waits for gdb; ...\n".into(),
            }],
            ..Observed::default()
        };
        let problems = check(&runs[0], &o, true);
        assert!(problems.iter().all(|p| p.contains("client's output")));
        assert!(!problems.is_empty(), "no gdb transcript is a failure");
        o.client = runs[0].case.client_out.join("\n");
        assert!(check(&runs[0], &o, true).is_empty());
    }

    /// The serial log of `snapshot` under vmcall, with `resumed` lines (without the run) as given.
    fn snapshot_log(resumed: [&str; 2]) -> String {
        let ready = "0123456789abcdef";
        let mut log = format!(
            "@@BEGIN 7 snapshot / vmcall\n@@STATUS 0\n\
             @@O snapshot-guest: ready checksum={ready}\n\
             @@E parapet: guest suspended; snapshot written to /tmp/snapshot (5 KiB of 64 MiB)\n"
        );
        for (k, line) in resumed.iter().enumerate() {
            log.push_str(&format!(
                "@@RESTORE {k}\n@@STATUS 0\n@@O {line}\n@@O snapshot-guest: slept\n"
            ));
        }
        log + "@@END 7\n"
    }

    #[test]
    fn a_snapshot_case_checks_each_restore_and_across_them() {
        let runs = plan(&["snapshot".to_owned()]);
        let run = runs.iter().find(|r| r.case.name == "snapshot").unwrap();
        assert!(
            runs.iter().any(|r| r.transport.0 == "intel-vmcall"),
            "the extra transports restore snapshots too"
        );
        let resumed = |generation: &str, ms: u32, sum: &str| {
            format!(
                "snapshot-guest: resumed generation={generation} elapsed_ms={ms} \
                 checksum={sum} resumes=1"
            )
        };
        let (good, other) = ("0123456789abcdef", "fedcba9876543210");
        let gen_a = "00000000000000a1";
        let gen_b = "00000000000000b2";
        let log = snapshot_log([&resumed(gen_a, 90, good), &resumed(gen_b, 1400, good)]);
        let o = &parse(&log)[&7];
        assert_eq!(o.steps.len(), 3);
        assert_eq!(check(run, o, true), Vec::<String>::new());

        // The second restore with the first one's generation, a checksum that changed, a clock
        // gone backwards.
        let log = snapshot_log([&resumed(gen_a, 90, good), &resumed(gen_a, 80, other)]);
        let problems = check(run, &parse(&log)[&7], true);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("restore 2: ")));

        // The second restore sooner after the suspend than the first one's timer fired.
        let log = snapshot_log([&resumed(gen_a, 90, good), &resumed(gen_b, 400, good)]);
        let problems = check(run, &parse(&log)[&7], true);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("timer"));

        // A restore that never ran (the VM stopped early).
        let mut log = snapshot_log([&resumed(gen_a, 90, good), &resumed(gen_b, 1400, good)]);
        let cut = log.find("@@RESTORE 1").unwrap();
        log.truncate(cut);
        log.push_str("@@END 7\n");
        let problems = check(run, &parse(&log)[&7], true);
        assert_eq!(problems, ["restore 2 did not run"]);
    }

    #[test]
    fn the_corrupted_snapshot_must_be_refused_in_one_line() {
        let runs = plan(&["snapshot corrupted".to_owned()]);
        let error = format!(
            "parapet: error: snapshot {}: the snapshot is corrupted: the header checksum does \
             not match",
            cases::CORRUPTED
        );
        let o = |stderr: String| Observed {
            steps: vec![
                Output {
                    status: Some(0),
                    stdout: "snapshot-guest: ready checksum=0\n".into(),
                    stderr: "parapet: guest suspended; snapshot written to /tmp/snapshot (1)\n"
                        .into(),
                },
                Output {
                    status: Some(1),
                    stdout: String::new(),
                    stderr,
                },
            ],
            ..Observed::default()
        };
        assert!(check(&runs[0], &o(format!("{error}\n")), true).is_empty());
        let problems = check(&runs[0], &o(format!("{error}\nmore\n")), true);
        assert!(problems[0].contains("not one line"), "{problems:?}");
    }

    #[test]
    fn warm_replies_come_once_per_line_in_order() {
        let runs = plan(&["snapshot warm".to_owned()]);
        let reply = |line: &str, leak: &str| {
            format!("snapshot-guest: reply {line} generation=0000000000000001 leak={leak}\n")
        };
        let o = |stdout: String| Observed {
            steps: vec![
                Output {
                    status: Some(0),
                    stdout: "snapshot-guest: ready checksum=0\n".into(),
                    stderr: "parapet: guest suspended; snapshot written to /tmp/snapshot (1)\n"
                        .into(),
                },
                Output {
                    status: Some(0),
                    stdout,
                    stderr: String::new(),
                },
            ],
            ..Observed::default()
        };
        let good = reply("one", "no") + &reply("two", "no") + &reply("three", "no");
        assert!(check(&runs[0], &o(good.clone()), true).is_empty());
        let twice = good + &reply("three", "no");
        assert_eq!(check(&runs[0], &o(twice), true).len(), 1);
        let leaked = reply("one", "no") + &reply("two", "yes") + &reply("three", "no");
        assert_eq!(check(&runs[0], &o(leaked), true).len(), 2);
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
