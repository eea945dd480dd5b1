//! The container's cgroup (`linux.cgroupsPath`): the container's process, and so the VMM it
//! becomes, joins it in every hierarchy, as runc's process would. What the VMM uses, guest RAM
//! included, is then counted where the container's owner looks: containerd's shim reports a
//! container's statistics from the cgroup of its process, and Kubernetes limits a pod through the
//! cgroup above its containers'.
//!
//! parapet-runc sets no limits of its own: guest RAM already follows the memory limit, and the
//! VMM's own memory on top of it would break a limit equal to it.
//!
//! Paths are those of runc's cgroupfs driver: absolute (`/kubepods/pod1/ID`), from the root of
//! each hierarchy, or relative to parapet-runc's own cgroup. systemd's `slice:prefix:name` (runc's
//! `--systemd-cgroup`) would need systemd to make a scope; such a container's VMM stays where
//! it is.
//!
//! A new cgroup is made with its missing parents, as runc makes it; `delete` removes the
//! container's own directories, not the parents.

use crate::error::{Context, Error, Result};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// How long `delete` retries removing a cgroup that its process has only just left.
const REMOVE_WAIT: Duration = Duration::from_secs(1);

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    mountpoint: PathBuf,
    /// The cgroup at the mount point, `/` unless only a subtree is mounted.
    root: String,
    /// Its controllers as `/proc/self/cgroup` names them (`cpu,cpuacct`, `name=systemd`), empty
    /// for cgroup v2.
    controllers: String,
}

/// The cgroup hierarchies in `mountinfo` (`/proc/self/mountinfo`'s text), each once.
fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let tail: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mountpoint), Some(fstype)) =
            (fields.get(3), fields.get(4), tail.first())
        else {
            continue;
        };
        let controllers = match *fstype {
            "cgroup2" => String::new(),
            "cgroup" => {
                let mut names: Vec<&str> = tail
                    .get(2)
                    .unwrap_or(&"")
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "clone_children" | "noprefix" | "xattr")
                            && !o.starts_with("release_agent=")
                            && !o.is_empty()
                    })
                    .collect();
                names.sort_unstable();
                names.join(",")
            }
            _ => continue,
        };
        let h = Hierarchy {
            mountpoint: PathBuf::from(unescape(mountpoint)),
            root: unescape(root),
            controllers,
        };
        // A hierarchy mounted twice is joined once.
        if !out
            .iter()
            .any(|o| o.controllers == h.controllers && o.root == h.root)
        {
            out.push(h);
        }
    }
    out
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in hierarchy `h`, from `/proc/self/cgroup`'s text `own`.
fn own_cgroup<'a>(h: &Hierarchy, own: &'a str) -> Option<&'a str> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let mut names: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        names.sort_unstable();
        (names.join(",") == h.controllers).then_some(path)
    })
}

/// The directory of cgroup `path` (`linux.cgroupsPath`) in hierarchy `h`; `own` is
/// `/proc/self/cgroup`'s text, for a relative path.
fn directory(h: &Hierarchy, path: &str, own: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Other(format!("linux.cgroupsPath `{path}`: {why}"));
    let relative = Path::new(path);
    if relative
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(bad("`.` and `..` are not allowed"));
    }
    let inner = if relative.is_absolute() {
        PathBuf::from(path)
    } else {
        let mine = own_cgroup(h, own).ok_or_else(|| {
            bad(&format!(
                "parapet-runc's own cgroup in {} is unknown",
                h.mountpoint.display()
            ))
        })?;
        Path::new(mine).join(relative)
    };
    // Paths count from the hierarchy's root; the mount shows it from `root` down.
    let below_root = if relative.is_absolute() {
        inner.as_path()
    } else {
        inner.strip_prefix(&h.root).unwrap_or(&inner)
    };
    let below_root = below_root.strip_prefix("/").unwrap_or(below_root);
    Ok(h.mountpoint.join(below_root))
}

/// Whether `path` is in systemd's form, `slice:prefix:name`.
pub fn is_systemd(path: &str) -> bool {
    !path.starts_with('/') && path.split(':').count() == 3
}

/// Puts process `pid` into cgroup `path` in every hierarchy, making the cgroup where it is
/// missing; returns the directories, for [`remove`]. A path in systemd's form joins nothing.
pub fn join(path: &str, pid: i32, joined: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_empty() || is_systemd(path) {
        return Ok(());
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup").context(|| "read /proc/self/cgroup")?;
    for h in hierarchies(&mountinfo) {
        let dir = directory(&h, path, &own)?;
        make(&h, &dir)?;
        // Listed before the move, so a failure half-way still has every directory made removed.
        joined.push(dir.clone());
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .context(|| format!("put process {pid} into cgroup {}", dir.display()))?;
    }
    Ok(())
}

/// Makes cgroup `dir` of hierarchy `h` and its missing parents. In cgroup v1's cpuset
/// hierarchy a new cgroup has no CPUs or memory nodes, and no process may join it until it has:
/// each new one gets its parent's, as runc gives them.
fn make(h: &Hierarchy, dir: &Path) -> Result<()> {
    let cpuset = h.controllers.split(',').any(|c| c == "cpuset");
    let below = dir.strip_prefix(&h.mountpoint).unwrap_or(dir);
    let mut at = h.mountpoint.clone();
    for part in below.components() {
        let parent = at.clone();
        at.push(part);
        match std::fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).context(|| format!("make cgroup {}", at.display())),
        }
        if cpuset {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = std::fs::read_to_string(at.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = std::fs::read_to_string(parent.join(file))
                        .context(|| format!("read {}", parent.join(file).display()))?;
                    std::fs::write(at.join(file), theirs.trim())
                        .context(|| format!("write {}", at.join(file).display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Removes the cgroups [`join`] put a process in, once it has left them (it has exited):
/// retried for a moment while the kernel still counts the process, then left alone.
pub fn remove(dirs: &[PathBuf]) {
    let deadline = Instant::now() + REMOVE_WAIT;
    for dir in dirs {
        loop {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                    if Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cgroup v1 with a separate unified hierarchy (systemd's hybrid layout), a co-mounted
    /// `cpu,cpuacct`, a mount point with a space and a hierarchy mounted twice.
    const HYBRID: &str = "\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:3 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu
29 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
31 1 0:26 / /mnt/mem\\040copy rw - cgroup cgroup rw,memory
32 1 8:1 / / rw - ext4 /dev/sda1 rw
";

    const OWN: &str = "\
12:memory:/user.slice
11:cpu,cpuacct:/user.slice
5:cpuset:/
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
";

    #[test]
    fn hierarchies_from_mountinfo() {
        let hs = hierarchies(HYBRID);
        let got: Vec<(&str, &str)> = hs
            .iter()
            .map(|h| (h.mountpoint.to_str().unwrap(), h.controllers.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/sys/fs/cgroup/unified", ""),
                ("/sys/fs/cgroup/systemd", "name=systemd"),
                ("/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct"),
                ("/sys/fs/cgroup/memory", "memory"),
                ("/sys/fs/cgroup/cpuset", "cpuset"),
            ]
        );
        assert_eq!(unescape("/mnt/mem\\040copy"), "/mnt/mem copy");
        let v2 = hierarchies("40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].mountpoint, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn directories_of_absolute_and_relative_paths() {
        let hs = hierarchies(HYBRID);
        let memory = &hs[3];
        let cpu = &hs[2];
        assert_eq!(
            directory(memory, "/kubepods/pod1/c1", OWN).unwrap(),
            Path::new("/sys/fs/cgroup/memory/kubepods/pod1/c1")
        );
        assert_eq!(
            directory(cpu, "pods/c1", OWN).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice/pods/c1")
        );
        assert_eq!(
            directory(&hs[0], "c1", OWN).unwrap(),
            Path::new("/sys/fs/cgroup/unified/user.slice/session-1.scope/c1")
        );
        assert!(directory(memory, "/a/../../etc", OWN).is_err());
        // A mount of a subtree (a container's view without a cgroup namespace): its own cgroup is
        // shown from the hierarchy's root, the mount from the subtree down.
        let sub = Hierarchy {
            mountpoint: "/sys/fs/cgroup/memory".into(),
            root: "/docker/abc".into(),
            controllers: "memory".into(),
        };
        assert_eq!(
            directory(&sub, "c1", "4:memory:/docker/abc\n").unwrap(),
            Path::new("/sys/fs/cgroup/memory/c1")
        );
    }

    #[test]
    fn systemd_paths_are_left_alone() {
        assert!(is_systemd("kubepods-pod1.slice:cri-containerd:c1"));
        assert!(!is_systemd("/kubepods/pod1/c1"));
        assert!(!is_systemd("relative/c1"));
        let mut joined = Vec::new();
        join("system.slice:docker:c1", 1, &mut joined).unwrap();
        assert!(joined.is_empty());
    }
}
