//! What the bundle asks to run: the Parapet guest its image describes (`parapet_oci::resolve`:
//! the spec's annotations, else the rootfs's `/parapet.json`, else `/urunc.json`), adjusted by
//! the container's resources, turned into a `parapet run` command line.
//!
//! - command line: `process.args` (`parapet_oci::GuestConfig::apply_process_args`);
//! - memory: the container's memory limit, rounded down to a multiple of 2 MiB; else the image's;
//!   else 64 MiB;
//! - disks: the image's, then each bind mount of a raw image ([`mounted_disk`]), read-only if the
//!   mount is.
//!
//! Paths in the image name files inside the rootfs and are resolved there, symbolic links
//! included, as if the rootfs were `/` (`openat2` with `RESOLVE_IN_ROOT`), so an image cannot
//! point the VMM at a host file.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::{Mount, Spec};
use parapet_oci::GuestConfig;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Guest RAM when neither the container nor the image says.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Guest RAM is a multiple of this.
const MEMORY_ALIGN: u64 = 2 << 20;
/// Mount destinations with these endings are raw disk images for the guest.
const DISK_SUFFIXES: [&str; 2] = [".img", ".raw"];

/// A disk the guest gets, as a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file (or block device), as a host path.
    pub path: PathBuf,
    /// Attach read-only.
    pub readonly: bool,
}

/// The guest to run, with host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlan {
    /// The guest kernel (ELF).
    pub kernel: PathBuf,
    /// The guest command line.
    pub cmdline: String,
    /// Guest RAM in bytes, a multiple of 2 MiB.
    pub memory: u64,
    /// Block devices, in order.
    pub disks: Vec<Disk>,
}

impl GuestPlan {
    /// The arguments after `parapet`: `run KERNEL --memory NM --cmdline … --disk …`.
    pub fn vmm_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["run".into(), self.kernel.clone().into()];
        args.push("--memory".into());
        args.push(format!("{}M", self.memory >> 20).into());
        if !self.cmdline.is_empty() {
            args.push("--cmdline".into());
            args.push(self.cmdline.clone().into());
        }
        for disk in &self.disks {
            let mut spec = OsString::from(&disk.path);
            if disk.readonly {
                spec.push(",readonly");
            }
            args.push("--disk".into());
            args.push(spec);
        }
        args
    }
}

/// The rootfs directory the spec names (`root.path`, relative to the bundle), default `rootfs`.
pub fn rootfs(bundle: &Path, spec: &Spec) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(root)
}

/// Annotations by which a Kubernetes container runtime marks a pod's sandbox container (the
/// `pause` process that holds the pod's namespaces): containerd's CRI and CRI-O's.
const SANDBOX_MARKS: [(&str, &str); 2] = [
    ("io.kubernetes.cri.container-type", "sandbox"),
    ("io.kubernetes.cri-o.ContainerType", "sandbox"),
];

/// The annotation that marks `spec` as a Kubernetes pod's sandbox, if one does. A sandbox is never
/// a guest, whatever else its annotations say: containerd gives it the pod annotations the
/// runtime handler lets through (`org.parapet.guest.*`) just as it gives them to the pod's
/// containers.
pub fn pod_sandbox(spec: &Spec) -> Option<&'static str> {
    let annotations = spec.annotations().as_ref()?;
    SANDBOX_MARKS
        .iter()
        .find(|(key, value)| annotations.get(*key).is_some_and(|v| v == value))
        .map(|(key, _)| *key)
}

/// Works out the guest for `spec` in `bundle` and resolves its files.
pub fn plan(bundle: &Path, spec: &Spec) -> Result<GuestPlan> {
    let bad = |msg: String| Error::Guest {
        bundle: bundle.to_path_buf(),
        msg,
    };
    if let Some(key) = pod_sandbox(spec) {
        return Err(Error::NotParapet {
            bundle: bundle.to_path_buf(),
            msg: format!("a Kubernetes pod sandbox ({key}=sandbox), not a Parapet guest"),
        });
    }
    let rootfs = rootfs(bundle, spec);
    let empty = HashMap::new();
    let annotations = spec.annotations().as_ref().unwrap_or(&empty);
    let mut config = parapet_oci::resolve(annotations, &rootfs).map_err(|e| match e {
        parapet_oci::Error::NotParapet { .. } => Error::NotParapet {
            bundle: bundle.to_path_buf(),
            msg: e.to_string(),
        },
        e => bad(e.to_string()),
    })?;
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    config
        .apply_process_args(&args)
        .map_err(|e| bad(e.to_string()))?;
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let memory = memory(&config, limit).map_err(&bad)?;

    let root = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("bundle {}: rootfs {}", bundle.display(), rootfs.display()))?;
    let kernel = resolve_in_root(&root, &config.kernel, false)
        .map_err(|e| bad(format!("guest kernel {}: {e}", config.kernel)))?;
    let mut disks = config
        .disks
        .iter()
        .map(|d| {
            Ok(Disk {
                path: resolve_in_root(&root, &d.path, true)
                    .map_err(|e| bad(format!("disk {}: {e}", d.path)))?,
                readonly: d.readonly,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for mount in spec.mounts().iter().flatten() {
        if let Some(disk) = mounted_disk(mount).map_err(&bad)? {
            disks.push(disk);
        }
    }
    Ok(GuestPlan {
        kernel,
        cmdline: config.cmdline,
        memory,
        disks,
    })
}

/// Guest RAM: the container's memory limit (rounded down to 2 MiB; -1 or 0 is no limit), else the
/// image's, else [`DEFAULT_MEMORY`].
fn memory(config: &GuestConfig, limit: Option<i64>) -> std::result::Result<u64, String> {
    match limit.filter(|&l| l > 0) {
        Some(limit) => {
            let rounded = limit as u64 / MEMORY_ALIGN * MEMORY_ALIGN;
            if rounded == 0 {
                return Err(format!(
                    "the memory limit ({limit} bytes) is below the smallest guest (2 MiB)"
                ));
            }
            Ok(rounded)
        }
        None => Ok(config.memory_bytes().unwrap_or(DEFAULT_MEMORY)),
    }
}

/// The disk a mount gives the guest, if it is one: a bind mount whose destination ends in
/// `.img` or `.raw` (`ctr run --mount type=bind,src=/srv/data.img,dst=/data.img,options=rbind:ro`,
/// a Kubernetes `hostPath` volume of type `File`). Its source must then be a regular file or a
/// block device; `ro` in its options attaches it read-only. Other mounts (`/proc`, `/etc/hosts`,
/// directories) mean nothing to a guest and are ignored.
pub fn mounted_disk(mount: &Mount) -> std::result::Result<Option<Disk>, String> {
    let options = mount.options().as_deref().unwrap_or_default();
    let is_bind = mount.typ().as_deref() == Some("bind")
        || options.iter().any(|o| o == "bind" || o == "rbind");
    let destination = mount.destination().to_string_lossy();
    if !is_bind || !DISK_SUFFIXES.iter().any(|s| destination.ends_with(s)) {
        return Ok(None);
    }
    let Some(source) = mount.source() else {
        return Err(format!(
            "mount {destination}: a bind mount without a source"
        ));
    };
    let meta = std::fs::metadata(source)
        .map_err(|e| format!("mount {destination}: {}: {e}", source.display()))?;
    use std::os::unix::fs::FileTypeExt;
    if !(meta.is_file() || meta.file_type().is_block_device()) {
        return Err(format!(
            "mount {destination}: {} is not a raw disk image (a regular file or block device)",
            source.display()
        ));
    }
    let path = std::path::absolute(source)
        .map_err(|e| format!("mount {destination}: {}: {e}", source.display()))?;
    Ok(Some(Disk {
        path,
        readonly: options.iter().any(|o| o == "ro"),
    }))
}

/// Opens `path` inside the rootfs `root`, resolving `..` and symbolic links as if `root` were `/`.
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The host path of the file `path` names in the rootfs: a regular file (or, for disks, a block
/// device).
fn resolve_in_root(
    root: &OwnedFd,
    path: &str,
    block_ok: bool,
) -> std::result::Result<PathBuf, String> {
    let fd = open_in_root(root, path, OFlags::PATH).map_err(|e| e.to_string())?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::BlockDevice if block_ok => {}
        other => return Err(format!("is a {other:?}, not a regular file")),
    }
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::read_link(&link).map_err(|e| format!("{link}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn config(memory: Option<&str>) -> GuestConfig {
        let mut c = GuestConfig::new("/parapet/guest");
        c.memory = memory.map(str::to_owned);
        c
    }

    fn spec_with(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        spec
    }

    /// A pod sandbox goes to runc even when the pod's annotations describe a guest.
    #[test]
    fn pod_sandboxes_are_not_guests() {
        let guest = ("org.parapet.guest.kernel", "/parapet/guest");
        let containerd = spec_with(&[("io.kubernetes.cri.container-type", "sandbox"), guest]);
        assert_eq!(
            pod_sandbox(&containerd),
            Some("io.kubernetes.cri.container-type")
        );
        let crio = spec_with(&[("io.kubernetes.cri-o.ContainerType", "sandbox")]);
        assert_eq!(
            pod_sandbox(&crio),
            Some("io.kubernetes.cri-o.ContainerType")
        );
        for not in [
            spec_with(&[("io.kubernetes.cri.container-type", "container"), guest]),
            spec_with(&[guest]),
            Spec::default(),
        ] {
            assert_eq!(pod_sandbox(&not), None);
        }
        let bundle = Path::new("/nonexistent-bundle");
        match plan(bundle, &containerd) {
            Err(Error::NotParapet { msg, .. }) => assert_eq!(
                msg,
                "a Kubernetes pod sandbox (io.kubernetes.cri.container-type=sandbox), not a \
                 Parapet guest"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn memory_limit_wins_and_rounds_down_to_2mib() {
        let c = config(Some("32M"));
        assert_eq!(memory(&c, Some((100 << 20) + 12345)), Ok(100 << 20));
        assert_eq!(memory(&c, Some((4 << 20) - 1)), Ok(2 << 20));
        assert!(memory(&c, Some(1 << 20)).is_err());
        // -1 is "unlimited".
        assert_eq!(memory(&c, Some(-1)), Ok(32 << 20));
        assert_eq!(memory(&c, None), Ok(32 << 20));
        assert_eq!(memory(&config(None), None), Ok(DEFAULT_MEMORY));
    }

    #[test]
    fn vmm_args() {
        let plan = GuestPlan {
            kernel: "/r/parapet/guest".into(),
            cmdline: "hello world".into(),
            memory: 64 << 20,
            disks: vec![
                Disk {
                    path: "/r/d0".into(),
                    readonly: true,
                },
                Disk {
                    path: "/r/d1".into(),
                    readonly: false,
                },
            ],
        };
        let args: Vec<String> = plan
            .vmm_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "run",
                "/r/parapet/guest",
                "--memory",
                "64M",
                "--cmdline",
                "hello world",
                "--disk",
                "/r/d0,readonly",
                "--disk",
                "/r/d1"
            ]
        );
    }

    fn mount(typ: &str, src: &Path, dst: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .typ(typ)
            .source(src)
            .destination(dst)
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn raw_image_mounts_are_disks() {
        let dir = std::env::temp_dir().join(format!("parapet-runc-mounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("data.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let ro = mounted_disk(&mount("bind", &img, "/data.img", &["rbind", "ro"])).unwrap();
        assert_eq!(
            ro,
            Some(Disk {
                path: img.clone(),
                readonly: true
            })
        );
        // ctr's `--mount type=none,…,options=rbind:rw` style.
        let rw = mounted_disk(&mount("none", &img, "/d/x.raw", &["rbind", "rw"])).unwrap();
        assert!(rw.is_some_and(|d| !d.readonly));
        // Not disks: other destinations, other types.
        assert_eq!(
            mounted_disk(&mount("bind", &img, "/etc/hosts", &["rbind"])),
            Ok(None)
        );
        assert_eq!(
            mounted_disk(&mount("proc", Path::new("proc"), "/proc.img", &[])),
            Ok(None)
        );
        // A directory or a missing file at a disk's destination is an error, not silence.
        assert!(mounted_disk(&mount("bind", &dir, "/data.img", &["rbind"])).is_err());
        assert!(mounted_disk(&mount("bind", &dir.join("no"), "/data.img", &["rbind"])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Paths resolve inside the rootfs: an absolute symbolic link stays in it.
    #[test]
    fn resolution_stays_in_the_rootfs() {
        let dir = std::env::temp_dir().join(format!("parapet-runc-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("parapet")).unwrap();
        std::fs::write(dir.join("parapet/guest"), b"elf").unwrap();
        std::os::unix::fs::symlink("/parapet/guest", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("escape")).unwrap();
        let root = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let want = std::fs::canonicalize(dir.join("parapet/guest")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/parapet/guest", false).unwrap(),
            want
        );
        assert_eq!(resolve_in_root(&root, "link", false).unwrap(), want);
        assert_eq!(
            resolve_in_root(&root, "/../../parapet/guest", false).unwrap(),
            want
        );
        assert!(resolve_in_root(&root, "/escape", false).is_err());
        assert!(resolve_in_root(&root, "/parapet", false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
