//! Parapet's build and run tasks.
//!
//! ```text
//! cargo xtask run-guest NAME [--release] [-- VMM-ARGS...]
//! cargo xtask build-guest NAME [--release]
//! cargo xtask run-kernel ELF [VMM-ARGS...]      (the cargo runner for x86_64-unknown-none)
//! cargo xtask new-guest PATH [--name NAME]      (a guest crate of its own, anywhere)
//! cargo xtask bench [--iters N] [--rounds R] [--peer-solo5 PATH] [--only PATTERN]...
//! cargo xtask bench blk [--size 256M] [--seconds N] [--rounds R] [--spin US]
//! cargo xtask bench net [--mib N] [--udp N] [--rounds R]      (root: network namespaces)
//! cargo xtask bench snapshot [--spawns N] [--clones N] [--rounds R]
//! cargo xtask bench containers [--runs N] [--containers N] [--rounds R]   (root: containerd)
//! cargo xtask test-kvm-hw [--bench]
//! cargo xtask oci-image GUEST [--disk IMG[,readonly]]... [--cmdline STR] [--memory SIZE]
//!                             [--out FILE] [--name REF] [--release]
//! ```
//!
//! Guests are the packages under `examples/` (demos), `tests/guests/` (the test suite's guests)
//! and `bench/guests/` (the benchmarks' guests). They are built for `x86_64-unknown-none` (soft-float,
//! no red zone, panic=abort); the VMM is built for the host. `run-kernel` is what
//! `cargo run --target x86_64-unknown-none -p GUEST` runs in this repository (the runner in
//! .cargo/config.toml); `new-guest` ([`new_guest`]) writes a guest crate that builds and runs
//! with plain `cargo` outside this repository. `bench` ([`mod@bench`]) builds everything with the
//! release profile and prints the hypercall-vs-trap table of docs/benchmarks.md; `bench blk` and
//! `bench net` measure the PV block and network devices against the host doing the same I/O
//! (docs/benchmarks.md, "PV block", "PV network"). `test-kvm-hw` ([`kvm_hw`]) is the
//! hardware-KVM lane (docs/platforms.md). `oci-image` ([`oci_image`]) packs a guest, its disks and
//! how to run it into an OCI image layout tarball for containerd (docs/containers.md).

mod bench;
mod kvm_hw;
mod new_guest;
mod oci_image;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

/// The target every guest kernel is built for.
const GUEST_TARGET: &str = "x86_64-unknown-none";

/// The directories that hold guests, one package per subdirectory (package name = directory):
/// the demos users copy, the test suite's guests, the benchmarks' guests.
const GUEST_DIRS: [&str; 3] = ["examples", "tests/guests", "bench/guests"];

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Parapet's build and run tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the VMM and a guest, then boot the guest: `parapet run ELF VMM-ARGS`.
    RunGuest {
        #[command(flatten)]
        guest: GuestArgs,
        /// Arguments for `parapet run`, after `--` (e.g. `-- --stats -v`).
        #[arg(last = true, allow_hyphen_values = true)]
        vmm_args: Vec<OsString>,
    },
    /// Build a guest and print the path of its ELF image.
    BuildGuest {
        #[command(flatten)]
        guest: GuestArgs,
    },
    /// Build the VMM and boot a guest ELF image: `parapet run ELF VMM-ARGS`. The cargo runner
    /// for x86_64-unknown-none in this repository, so that
    /// `cargo run --target x86_64-unknown-none -p GUEST -- VMM-ARGS` boots the guest; the VMM
    /// is built with the release profile if the ELF lies in a `release` directory.
    RunKernel {
        /// The guest's ELF image.
        kernel: PathBuf,
        /// Arguments for `parapet run` (e.g. `--memory 128M --cmdline "exit=3"`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        vmm_args: Vec<OsString>,
    },
    /// Create a guest crate of its own at PATH, outside this workspace: it depends on this
    /// checkout's guest-sdk, and in it plain `cargo build` builds the guest and
    /// `cargo run -- VMM-ARGS` boots it with `parapet run` (`parapet` on PATH).
    NewGuest {
        /// The new crate's directory: it must not exist, or be empty.
        path: PathBuf,
        /// The package name [default: the directory's name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Measure each paravirtual mechanism next to the trap it replaces, the bare-KVM floor and
    /// (with --peer-solo5) Solo5's hvt; print one table, write target/bench/results.json and
    /// target/bench/chart.svg.
    Bench(bench::BenchArgs),
    /// The hardware-KVM lane: boot a Debian kernel with kvm_amd under QEMU (TCG, emulated SVM)
    /// and run every test guest under every hypercall transport inside it; prints a table.
    TestKvmHw(kvm_hw::KvmHwArgs),
    /// Pack a guest (a guest of this repository, built first, or an ELF file), its disks and
    /// how to run it into an OCI image layout tarball that `ctr images import` loads
    /// (docs/containers.md); prints the tarball's path.
    OciImage(oci_image::OciImageArgs),
}

#[derive(Debug, Args)]
struct GuestArgs {
    /// The guest: a directory under examples/, tests/guests/ or bench/guests/.
    name: String,
    /// Build with the release profile (the VMM too, for run-guest).
    #[arg(long)]
    release: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ws = Workspace::locate()?;
    match cli.command {
        Task::BuildGuest { guest } => {
            let elf = ws.build_guest(&guest.name, guest.release)?;
            println!("{}", elf.display());
            Ok(ExitCode::SUCCESS)
        }
        Task::RunGuest { guest, vmm_args } => {
            // The guest first: a wrong name or a missing target fails before the long VMM build.
            let elf = ws.build_guest(&guest.name, guest.release)?;
            let vmm = ws.build_vmm(guest.release)?;
            run_vmm(&vmm, &elf, &vmm_args)
        }
        Task::RunKernel { kernel, vmm_args } => {
            let release = kernel
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|dir| dir == "release");
            let vmm = ws.build_vmm(release)?;
            run_vmm(&vmm, &kernel, &vmm_args)
        }
        Task::NewGuest { path, name } => {
            let dir = new_guest::create(&ws, &path, name.as_deref())?;
            eprintln!(
                "xtask: created the guest crate {}; boot it with `cargo run` there \
                 (`parapet` must be on PATH: `cargo install --path {}`)",
                dir.display(),
                ws.root.join("hypervisor").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Task::Bench(args) => bench::run(&ws, args),
        Task::TestKvmHw(args) => kvm_hw::run(&ws, args),
        Task::OciImage(args) => oci_image::run(&ws, args),
    }
}

/// Runs `vmm run ELF ARGS` and returns its exit status.
fn run_vmm(vmm: &Path, elf: &Path, args: &[OsString]) -> Result<ExitCode> {
    let status = Command::new(vmm)
        .arg("run")
        .arg(elf)
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", vmm.display()))?;
    Ok(exit_code(status))
}

/// The VMM's exit status, passed on unchanged; a signal becomes 128 + signal number, as in a shell.
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|sig| 128 + sig))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    cargo: OsString,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask/ has no parent directory")?
            .to_path_buf();
        // Cargo resolves a relative CARGO_TARGET_DIR against the directory it was started in.
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => std::env::current_dir()?.join(dir),
            None => root.join("target"),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Ok(Self {
            root,
            target_dir,
            cargo,
        })
    }

    fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root)
            .arg("build")
            .arg("--target-dir")
            .arg(&self.target_dir);
        cmd
    }

    /// Builds the `parapet` binary for the host and returns its path.
    fn build_vmm(&self, release: bool) -> Result<PathBuf> {
        self.build_host_bin("parapet", "parapet", release)
    }

    /// Builds binary `bin` of host package `package` and returns its path.
    fn build_host_bin(&self, package: &str, bin: &str, release: bool) -> Result<PathBuf> {
        let mut cmd = self.cargo();
        cmd.args(["-p", package, "--bin", bin]);
        if release {
            cmd.arg("--release");
        }
        run_cargo(
            cmd,
            &format!("`{bin}` ({package}, {})", profile_dir(release)),
        )?;
        Ok(self.target_dir.join(profile_dir(release)).join(bin))
    }

    /// Builds a static release binary `bin` (cargo selection `args`) for
    /// [`kvm_hw::STATIC_TARGET`], adding that target with rustup if it is missing.
    fn build_static(&self, args: &[&str], bin: &str) -> Result<PathBuf> {
        let target = kvm_hw::STATIC_TARGET;
        if !self
            .sysroot()?
            .join("lib/rustlib")
            .join(target)
            .join("lib")
            .is_dir()
        {
            eprintln!("xtask: adding the Rust target {target}");
            let status = Command::new("rustup")
                .current_dir(&self.root)
                .args(["target", "add", target])
                .status()
                .context("cannot run rustup")?;
            if !status.success() {
                bail!("the Rust target {target} is missing: `rustup target add {target}` failed");
            }
        }
        let mut cmd = self.cargo();
        cmd.args(args).args(["--release", "--target", target]);
        run_cargo(cmd, &format!("`{bin}` for {target}"))?;
        Ok(self.target_dir.join(target).join("release").join(bin))
    }

    /// Builds guest `name` for `x86_64-unknown-none` and returns the ELF's path.
    fn build_guest(&self, name: &str, release: bool) -> Result<PathBuf> {
        let guests = self.guests()?;
        if !guests.iter().any(|g| g == name) {
            bail!(
                "unknown guest `{name}`; the guests are: {}",
                guests.join(", ")
            );
        }
        self.check_guest_target()?;
        let mut cmd = self.cargo();
        cmd.args(["-p", name, "--target", GUEST_TARGET]);
        if release {
            cmd.arg("--release");
        }
        // Host codegen flags (e.g. `-C target-cpu=native`) must not leak into guest kernels; the
        // guest flags come from `[target.x86_64-unknown-none]` in .cargo/config.toml.
        cmd.env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        run_cargo(
            cmd,
            &format!("guest `{name}` ({GUEST_TARGET}, {})", profile_dir(release)),
        )?;
        Ok(self
            .target_dir
            .join(GUEST_TARGET)
            .join(profile_dir(release))
            .join(name))
    }

    /// The guest names: the directories under [`GUEST_DIRS`] that hold a Cargo.toml.
    fn guests(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for dir in GUEST_DIRS {
            let dir = self.root.join(dir);
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let path = entry?.path();
                if path.join("Cargo.toml").is_file()
                    && let Some(name) = path.file_name().and_then(|n| n.to_str())
                {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Fails with the fix when the toolchain has no standard library for the guest target.
    fn check_guest_target(&self) -> Result<()> {
        let sysroot = self.sysroot()?;
        if !sysroot
            .join("lib/rustlib")
            .join(GUEST_TARGET)
            .join("lib")
            .is_dir()
        {
            bail!(
                "the Rust target {GUEST_TARGET} is not installed (no {}); add it with \
                 `rustup target add {GUEST_TARGET}`",
                sysroot.join("lib/rustlib").join(GUEST_TARGET).display()
            );
        }
        Ok(())
    }

    /// The toolchain's sysroot.
    fn sysroot(&self) -> Result<PathBuf> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let out = Command::new(&rustc)
            .current_dir(&self.root)
            .args(["--print", "sysroot"])
            .output()
            .context("cannot run `rustc --print sysroot`")?;
        if !out.status.success() {
            bail!(
                "`rustc --print sysroot` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

/// Runs a cargo build, announcing it first: cargo's own progress follows on stderr.
fn run_cargo(mut cmd: Command, what: &str) -> Result<()> {
    eprintln!("xtask: building {what}");
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building {what} failed ({status})");
    }
    Ok(())
}

/// The directory cargo puts a profile's output in.
fn profile_dir(release: bool) -> &'static str {
    if release { "release" } else { "debug" }
}
