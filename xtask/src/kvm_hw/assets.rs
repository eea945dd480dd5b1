//! The lane's outside pieces, all from Debian's packages: QEMU (with the shared libraries a
//! minimal machine may lack), a 6.12 cloud kernel with `kvm_amd` and `CONFIG_KVM_XEN=y`, and
//! busybox for the initramfs. `apt-get download` + `dpkg-deb -x` unpack them under the lane's
//! directory without touching the host's installed packages; they are fetched once and kept.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The kernel's meta package; resolved to the versioned image package it depends on.
const KERNEL_META: &str = "linux-image-6.12-cloud-amd64";

/// QEMU and what it links against that a minimal Debian 12 machine may not have installed.
const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "libcapstone4",
    "libfdt1",
    "libslirp0",
    "libpmem1",
    "libndctl6",
    "libdaxctl1",
    "libibverbs1",
    "librdmacm1",
    "libnl-3-200",
    "libnl-route-3-200",
    "libvdeplug2",
    "libaio1",
    "libbpf1",
    "libfuse3-3",
    "liburing2",
    "libnuma1",
    "libpixman-1-0",
    "libjpeg62-turbo",
    "libpng16-16",
    "libsasl2-2",
    "libseccomp2",
    "libusb-1.0-0",
    "libbrlapi0.8",
    "libcacard0",
    "libspice-server1",
    "libusbredirparser1",
    "libepoxy0",
    "libopus0",
    "libsndio7.0",
    "libexecs0",
];

/// The kernel modules the lane loads, in order, by their path under `kernel/`.
pub const MODULES: &[&str] = &[
    "virt/lib/irqbypass",
    "arch/x86/kvm/kvm",
    "arch/x86/kvm/kvm-amd",
    "drivers/net/tun",
];

/// The unpacked pieces.
#[derive(Debug)]
pub struct Assets {
    /// The root everything was unpacked into.
    pub root: PathBuf,
    /// `vmlinuz`.
    pub kernel: PathBuf,
    /// The kernel's release, e.g. `6.12.118+deb12-cloud-amd64`.
    pub kernel_release: String,
    /// The static busybox.
    pub busybox: PathBuf,
}

impl Assets {
    /// Fetches and unpacks the packages into `dir` unless an earlier run did.
    pub fn prepare(dir: &Path) -> Result<Assets> {
        let root = dir.join("root");
        let done = root.join(".unpacked");
        if !done.exists() {
            let kernel_pkg = resolve_kernel_package()?;
            let debs = dir.join("debs");
            std::fs::create_dir_all(&debs)?;
            let mut packages = vec!["busybox-static", kernel_pkg.as_str()];
            packages.extend_from_slice(QEMU_PACKAGES);
            eprintln!(
                "kvm-hw: fetching {} Debian packages (kernel {kernel_pkg})",
                packages.len()
            );
            if !apt_download(&debs, &packages)? {
                // A machine whose package lists are stale or missing: refresh them once.
                eprintln!("kvm-hw: apt-get download failed; running apt-get update");
                run(
                    Command::new("apt-get").args(["update", "-qq"]),
                    "apt-get update",
                )?;
                if !apt_download(&debs, &packages)? {
                    bail!("apt-get download failed for {}", packages.join(" "));
                }
            }
            if root.exists() {
                std::fs::remove_dir_all(&root)?;
            }
            std::fs::create_dir_all(&root)?;
            for entry in std::fs::read_dir(&debs)? {
                let deb = entry?.path();
                if deb.extension().is_some_and(|e| e == "deb") {
                    run(
                        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
                        "dpkg-deb -x",
                    )?;
                }
            }
            std::fs::write(&done, b"")?;
        }
        let kernel = newest(&root.join("boot"), "vmlinuz-")?;
        let kernel_release = kernel
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .context("kernel file name")?
            .to_owned();
        let config = std::fs::read_to_string(root.join(format!("boot/config-{kernel_release}")))
            .context("reading the kernel's config")?;
        for option in ["CONFIG_KVM_AMD=m", "CONFIG_KVM_XEN=y"] {
            if !config.lines().any(|l| l == option) {
                bail!("kernel {kernel_release} lacks {option}");
            }
        }
        Ok(Assets {
            kernel,
            kernel_release,
            busybox: root.join("bin/busybox"),
            root,
        })
    }

    /// Runs QEMU from the unpacked tree (its libraries and firmware found there).
    pub fn qemu(&self) -> Command {
        let lib = format!(
            "{}:{}",
            self.root.join("usr/lib/x86_64-linux-gnu").display(),
            self.root.join("lib/x86_64-linux-gnu").display()
        );
        let mut cmd = Command::new(self.root.join("usr/bin/qemu-system-x86_64"));
        cmd.env("LD_LIBRARY_PATH", lib);
        for dir in ["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"] {
            cmd.arg("-L").arg(self.root.join(dir));
        }
        cmd
    }

    /// Module `name` (a path of [`MODULES`]) uncompressed into `out`: busybox's insmod takes
    /// only plain `.ko` files.
    pub fn module(&self, name: &str, out: &Path) -> Result<()> {
        let base = self
            .root
            .join("lib/modules")
            .join(&self.kernel_release)
            .join("kernel")
            .join(name);
        let plain = base.with_extension("ko");
        let xz = base.with_extension("ko.xz");
        if plain.exists() {
            std::fs::copy(&plain, out)?;
        } else if xz.exists() {
            let data = Command::new(&self.busybox)
                .arg("xzcat")
                .arg(&xz)
                .output()
                .context("busybox xzcat")?;
            if !data.status.success() {
                bail!("cannot decompress {}", xz.display());
            }
            std::fs::write(out, data.stdout)?;
        } else {
            bail!("kernel module {name} not found under {}", base.display());
        }
        Ok(())
    }
}

fn resolve_kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_META])
        .output()
        .context("cannot run apt-cache (the lane needs Debian's apt)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"));
    match found {
        Some(p) => Ok(p.to_owned()),
        // Unknown to apt (stale lists): refresh once and ask again.
        None if !text.contains("Depends:") => {
            run(
                Command::new("apt-get").args(["update", "-qq"]),
                "apt-get update",
            )?;
            let out = Command::new("apt-cache")
                .args(["depends", KERNEL_META])
                .output()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-"))
                .map(str::to_owned)
                .with_context(|| format!("apt knows no package {KERNEL_META}"))
        }
        None => bail!("{KERNEL_META} depends on no linux-image package"),
    }
}

fn apt_download(dir: &Path, packages: &[&str]) -> Result<bool> {
    let status = Command::new("apt-get")
        .current_dir(dir)
        .arg("download")
        .arg("-qq")
        .args(packages)
        .status()
        .context("cannot run apt-get")?;
    Ok(status.success())
}

fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

/// Runs `cmd`, failing with `what` if it does not succeed.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
