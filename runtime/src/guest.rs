//! What the bundle asks to run: the Parapet guest described by the rootfs's `/parapet.json`, the
//! `org.parapet.guest.*` annotations, `process.args` and `linux.resources.memory.limit`, turned
//! into a `parapet run` command line.
//!
//! Precedence, highest first:
//! - kernel: the `org.parapet.guest.kernel` annotation, then `/parapet.json`'s `kernel`;
//! - command line: the `org.parapet.guest.cmdline` annotation, then `process.args` without a
//!   leading entry point (the kernel's path, or the images' default `/parapet/guest`), joined with
//!   spaces, then `/parapet.json`'s `cmdline`;
//! - memory: the `org.parapet.guest.memory` annotation, then the memory limit (rounded down to a
//!   multiple of 2 MiB), then `/parapet.json`'s `memory`, then 64 MiB.
//!
//! Paths name files inside the rootfs and are resolved there, symbolic links included, as if the
//! rootfs were `/` (`openat2` with `RESOLVE_IN_ROOT`), so an image cannot point the VMM at a host
//! file.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::Spec;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The guest description's path inside the rootfs.
pub const DESCRIPTION: &str = "/parapet.json";
/// The entry point Parapet images declare: the guest kernel's usual path.
pub const DEFAULT_ENTRYPOINT: &str = "/parapet/guest";
/// Annotation naming the guest kernel (a path in the rootfs).
pub const ANNOTATION_KERNEL: &str = "org.parapet.guest.kernel";
/// Annotation giving the guest command line.
pub const ANNOTATION_CMDLINE: &str = "org.parapet.guest.cmdline";
/// Annotation giving guest RAM (`64M`, `1G`, bytes).
pub const ANNOTATION_MEMORY: &str = "org.parapet.guest.memory";
/// Guest RAM when nothing says otherwise.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Guest RAM is a multiple of this.
const MEMORY_ALIGN: u64 = 2 << 20;

/// `/parapet.json`, version 1. A private stand-in for the shared image schema.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Description {
    version: u32,
    kernel: String,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    disks: Vec<DiskDescription>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct DiskDescription {
    path: String,
    #[serde(default)]
    readonly: bool,
}

/// A disk the guest gets, as a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file, resolved to a host path.
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

/// The guest as chosen from the bundle, paths still inside the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    kernel: String,
    cmdline: String,
    memory: u64,
    disks: Vec<DiskDescription>,
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

/// Works out the guest for `spec` in `bundle` and resolves its files in the rootfs.
pub fn plan(bundle: &Path, spec: &Spec) -> Result<GuestPlan> {
    let bad = |msg: String| Error::Guest {
        bundle: bundle.to_path_buf(),
        msg,
    };
    let rootfs = rootfs(bundle, spec);
    let root = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("bundle {}: rootfs {}", bundle.display(), rootfs.display()))?;

    let description = read_description(&root).map_err(&bad)?;
    let empty = HashMap::new();
    let annotations = spec.annotations().as_ref().unwrap_or(&empty);
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    let choice = choose(description.as_ref(), annotations, &args, limit).map_err(&bad)?;

    let kernel = resolve(&root, &choice.kernel, false)
        .map_err(|e| bad(format!("guest kernel {}: {e}", choice.kernel)))?;
    let disks = choice
        .disks
        .iter()
        .map(|d| {
            Ok(Disk {
                path: resolve(&root, &d.path, true)
                    .map_err(|e| bad(format!("disk {}: {e}", d.path)))?,
                readonly: d.readonly,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GuestPlan {
        kernel,
        cmdline: choice.cmdline,
        memory: choice.memory,
        disks,
    })
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

/// `/parapet.json` if the rootfs has one.
fn read_description(root: &OwnedFd) -> std::result::Result<Option<Description>, String> {
    let fd = match open_in_root(root, DESCRIPTION, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("{DESCRIPTION}: {e}")),
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| format!("{DESCRIPTION}: {e}"))?;
    parse_description(&text).map(Some)
}

fn parse_description(text: &str) -> std::result::Result<Description, String> {
    let d: Description = serde_json::from_str(text).map_err(|e| format!("{DESCRIPTION}: {e}"))?;
    if d.version != 1 {
        return Err(format!(
            "{DESCRIPTION}: version {} is not supported (this runtime reads version 1)",
            d.version
        ));
    }
    Ok(d)
}

/// The host path of the file `path` names in the rootfs: a regular file (or, for disks, a block
/// device).
fn resolve(root: &OwnedFd, path: &str, block_ok: bool) -> std::result::Result<PathBuf, String> {
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

fn choose(
    description: Option<&Description>,
    annotations: &HashMap<String, String>,
    args: &[String],
    memory_limit: Option<i64>,
) -> std::result::Result<Choice, String> {
    let kernel = match (annotations.get(ANNOTATION_KERNEL), description) {
        (Some(k), _) => k.clone(),
        (None, Some(d)) => d.kernel.clone(),
        (None, None) => {
            return Err(format!(
                "no Parapet guest: the rootfs has no {DESCRIPTION} and config.json has no \
                 {ANNOTATION_KERNEL} annotation"
            ));
        }
    };
    if kernel.is_empty() {
        return Err("the guest kernel path is empty".into());
    }

    let rest = match args.first() {
        Some(a0) if *a0 == kernel || a0 == DEFAULT_ENTRYPOINT => &args[1..],
        _ => args,
    };
    let cmdline = if let Some(c) = annotations.get(ANNOTATION_CMDLINE) {
        c.clone()
    } else if !rest.is_empty() {
        rest.join(" ")
    } else {
        description.map(|d| d.cmdline.clone()).unwrap_or_default()
    };

    let memory = if let Some(m) = annotations.get(ANNOTATION_MEMORY) {
        exact_memory(m).map_err(|e| format!("annotation {ANNOTATION_MEMORY}: {e}"))?
    } else if let Some(limit) = memory_limit.filter(|&l| l > 0) {
        let rounded = limit as u64 / MEMORY_ALIGN * MEMORY_ALIGN;
        if rounded == 0 {
            return Err(format!(
                "the memory limit ({limit} bytes) is below the smallest guest (2 MiB)"
            ));
        }
        rounded
    } else if let Some(m) = description.and_then(|d| d.memory.as_deref()) {
        exact_memory(m).map_err(|e| format!("{DESCRIPTION}: memory: {e}"))?
    } else {
        DEFAULT_MEMORY
    };

    Ok(Choice {
        kernel,
        cmdline,
        memory,
        disks: description.map(|d| d.disks.clone()).unwrap_or_default(),
    })
}

/// A size as `parapet run --memory` takes it (`64M`, `1G`, `512K`, bytes), which must be a
/// positive multiple of 2 MiB.
fn exact_memory(s: &str) -> std::result::Result<u64, String> {
    let bytes = parse_size(s)?;
    if bytes == 0 || !bytes.is_multiple_of(MEMORY_ALIGN) {
        return Err(format!("`{s}` is not a positive multiple of 2 MiB"));
    }
    Ok(bytes)
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 64M or 1G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> Description {
        parse_description(
            r#"{"version":1,"kernel":"/parapet/guest","cmdline":"a b","memory":"32M",
                "disks":[{"path":"/parapet/disk0.img","readonly":true},{"path":"/d1"}]}"#,
        )
        .unwrap()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn description_alone() {
        let c = choose(
            Some(&desc()),
            &HashMap::new(),
            &args(&["/parapet/guest"]),
            None,
        )
        .unwrap();
        assert_eq!(c.kernel, "/parapet/guest");
        assert_eq!(c.cmdline, "a b");
        assert_eq!(c.memory, 32 << 20);
        assert_eq!(c.disks.len(), 2);
        assert!(c.disks[0].readonly && !c.disks[1].readonly);
    }

    #[test]
    fn args_beyond_the_entrypoint_are_the_command_line() {
        let d = desc();
        let c = choose(
            Some(&d),
            &HashMap::new(),
            &args(&["/parapet/guest", "x", "y=1"]),
            None,
        );
        assert_eq!(c.unwrap().cmdline, "x y=1");
        // `ctr run IMAGE ID ARGS…` replaces the entry point too.
        let c = choose(Some(&d), &HashMap::new(), &args(&["x"]), None);
        assert_eq!(c.unwrap().cmdline, "x");
        let c = choose(Some(&d), &HashMap::new(), &[], None);
        assert_eq!(c.unwrap().cmdline, "a b");
    }

    #[test]
    fn annotations_win() {
        let ann: HashMap<String, String> = [
            (ANNOTATION_KERNEL, "/k"),
            (ANNOTATION_CMDLINE, "from annotation"),
            (ANNOTATION_MEMORY, "128M"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = choose(
            Some(&desc()),
            &ann,
            &args(&["/k", "ignored"]),
            Some(1 << 30),
        )
        .unwrap();
        assert_eq!(c.kernel, "/k");
        assert_eq!(c.cmdline, "from annotation");
        assert_eq!(c.memory, 128 << 20);
        // Without /parapet.json the kernel annotation alone is a guest, with no disks.
        let c = choose(None, &ann, &[], None).unwrap();
        assert!(c.disks.is_empty());
    }

    #[test]
    fn memory_limit_rounds_down_to_2mib() {
        let d = desc();
        let c = choose(Some(&d), &HashMap::new(), &[], Some((100 << 20) + 12345)).unwrap();
        assert_eq!(c.memory, 100 << 20);
        let c = choose(Some(&d), &HashMap::new(), &[], Some((4 << 20) - 1)).unwrap();
        assert_eq!(c.memory, 2 << 20);
        assert!(choose(Some(&d), &HashMap::new(), &[], Some(1 << 20)).is_err());
        // -1 is "unlimited".
        let c = choose(Some(&d), &HashMap::new(), &[], Some(-1)).unwrap();
        assert_eq!(c.memory, 32 << 20);
        let mut d = d;
        d.memory = None;
        let c = choose(Some(&d), &HashMap::new(), &[], None).unwrap();
        assert_eq!(c.memory, DEFAULT_MEMORY);
    }

    #[test]
    fn no_guest_is_an_error() {
        let e = choose(None, &HashMap::new(), &args(&["/bin/sh"]), None).unwrap_err();
        assert!(e.contains("no Parapet guest"), "{e}");
    }

    #[test]
    fn bad_descriptions() {
        assert!(parse_description(r#"{"version":2,"kernel":"/k"}"#).is_err());
        assert!(parse_description(r#"{"version":1}"#).is_err());
        assert!(parse_description("not json").is_err());
        let mut d = desc();
        d.memory = Some("3M".into());
        assert!(choose(Some(&d), &HashMap::new(), &[], None).is_err());
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
        assert_eq!(resolve(&root, "/parapet/guest", false).unwrap(), want);
        assert_eq!(resolve(&root, "link", false).unwrap(), want);
        assert_eq!(resolve(&root, "/../../parapet/guest", false).unwrap(), want);
        assert!(resolve(&root, "/escape", false).is_err());
        assert!(resolve(&root, "/parapet", false).is_err());
        assert_eq!(read_description(&root).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
