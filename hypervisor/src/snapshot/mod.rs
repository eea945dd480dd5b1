//! Snapshots of a guest (docs/snapshots.md): the file format ([`format`]), writing it and mapping
//! its memory back ([`file`]), the VMM state it carries ([`state`]), and here what saving and
//! restoring do to a domain beyond that: the output file, the clock, the generation number.

pub mod file;
pub mod format;
pub mod state;

use crate::error::{Error, Result};
use crate::kvm::state::VcpuState;
use crate::kvm::vcpu::Vcpu;
use crate::layout;
use crate::memory::GuestRam;
use format::{HostKind, SectionKind, Snapshot};
use parapet_abi::device::DeviceInfo;
use parapet_abi::shared_info::SharedInfo;
use parapet_abi::start_info::StartInfo;
use state::DomainState;
use std::fs::File;
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vm_memory::GuestAddress;

/// Where a suspend writes its snapshot (`--snapshot FILE`): an unnamed file in `FILE`'s
/// directory (`O_TMPFILE`), created when the VMM starts (its threads open no files once
/// confined), given a temporary name once the snapshot is complete and synced and renamed over
/// `FILE`, so `FILE` is never half-written and a VMM that is killed leaves nothing behind. On a
/// file system without `O_TMPFILE` the file is named from the start and removed if the guest
/// never suspends.
#[derive(Debug)]
pub struct SnapshotOut {
    path: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    /// The file has no name yet.
    unnamed: bool,
}

impl SnapshotOut {
    /// Prepares to write the snapshot to `path`.
    pub fn create(path: &Path) -> Result<SnapshotOut> {
        let fail = |reason: String| Error::Snapshot {
            path: path.to_owned(),
            reason,
        };
        let name = path
            .file_name()
            .ok_or_else(|| fail("names no file".into()))?
            .to_string_lossy();
        let dir = path.parent().unwrap_or(Path::new(""));
        if path.is_dir() {
            return Err(fail("is a directory".into()));
        }
        let temp = dir.join(format!(".{name}.parapet-{}", std::process::id()));
        let in_dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let unnamed = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options()
                .read(true)
                .write(true)
                .mode(0o644)
                .custom_flags(libc::O_TMPFILE)
                .open(in_dir)
        };
        let (file, unnamed) = match unnamed {
            Ok(file) => (file, true),
            Err(_) => (
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&temp)
                    .map_err(|e| fail(format!("cannot create a file in its directory: {e}")))?,
                false,
            ),
        };
        Ok(SnapshotOut {
            path: path.to_owned(),
            temp,
            file: Some(file),
            unnamed,
        })
    }

    /// Gives the finished file its name.
    fn publish(&mut self) -> std::io::Result<()> {
        if self.unnamed {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let _ = std::fs::remove_file(&self.temp);
            rustix::fs::linkat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{fd}"),
                rustix::fs::CWD,
                &self.temp,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )?;
            self.unnamed = false;
        }
        std::fs::rename(&self.temp, &self.path)?;
        self.file = None;
        Ok(())
    }

    /// The snapshot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SnapshotOut {
    fn drop(&mut self) {
        if self.file.take().is_some() && !self.unnamed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// What [`save`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct Saved {
    /// Bytes of guest memory in the file (the rest are holes).
    pub memory_bytes: u64,
    /// Guest RAM size.
    pub memory_size: u64,
    /// How long writing took.
    pub took: Duration,
}

/// Writes the snapshot of a stopped domain: `vcpu` (its last exit is finished first, so a
/// suspend hypercall's result is in its registers), `domain`, and `ram`, taken on `host`.
pub fn save(
    out: &mut SnapshotOut,
    vcpu: &mut Vcpu,
    domain: &DomainState,
    ram: &GuestRam,
    host: HostKind,
) -> Result<Saved> {
    let started = Instant::now();
    let target = out.path.clone();
    let fail = |reason: String| Error::Snapshot {
        path: target.clone(),
        reason,
    };
    vcpu.finish_exit()?;
    let cpu = VcpuState::capture(vcpu)?.to_bytes();
    let dom = domain.to_bytes();
    let layout = format::layout(
        host,
        ram.size(),
        &[(SectionKind::Vcpu, &cpu), (SectionKind::Domain, &dom)],
    );
    let file = out
        .file
        .as_ref()
        .ok_or_else(|| fail("was already written".into()))?;
    let memory_bytes =
        file::write(file, &layout, ram).map_err(|e| fail(format!("cannot write: {e}")))?;
    out.publish()
        .map_err(|e| fail(format!("cannot move the finished snapshot in place: {e}")))?;
    Ok(Saved {
        memory_bytes,
        memory_size: ram.size(),
        took: started.elapsed(),
    })
}

/// A snapshot file, checked, with its state decoded.
#[derive(Debug)]
pub struct Loaded {
    /// The file (its memory is mapped from it).
    pub file: File,
    /// Its metadata.
    pub snapshot: Snapshot,
    /// The vCPU.
    pub vcpu: VcpuState,
    /// The VMM's state.
    pub domain: DomainState,
}

/// Opens and checks the snapshot at `path` for a host of kind `host`.
pub fn load(path: &Path, host: HostKind) -> Result<Loaded> {
    let fail = |reason: String| Error::Snapshot {
        path: path.to_owned(),
        reason,
    };
    let file = open_regular(path).map_err(|e| fail(e.to_string()))?;
    let file_len = file
        .metadata()
        .map_err(|e| fail(format!("cannot read its size: {e}")))?
        .len();
    let mut prefix = vec![0u8; format::HEADER_PREFIX];
    let n = read_up_to(&file, &mut prefix).map_err(|e| fail(format!("cannot read: {e}")))?;
    prefix.truncate(n);
    let mut head = vec![0u8; format::head_len(&prefix).min(file_len) as usize];
    let n = read_up_to(&file, &mut head).map_err(|e| fail(format!("cannot read: {e}")))?;
    head.truncate(n);
    let snapshot = Snapshot::parse(&head, file_len, host).map_err(|e| fail(e.to_string()))?;
    let malformed = |what: &str| fail(format!("the snapshot is malformed: its {what} section"));
    let vcpu = snapshot
        .section(SectionKind::Vcpu)
        .and_then(VcpuState::from_bytes)
        .ok_or_else(|| malformed("vcpu"))?;
    let domain = snapshot
        .section(SectionKind::Domain)
        .and_then(DomainState::from_bytes)
        .ok_or_else(|| malformed("domain"))?;
    Ok(Loaded {
        file,
        snapshot,
        vcpu,
        domain,
    })
}

/// Reads from the start of `file` into `buf` until it is full or the file ends.
fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Opens `path` for reading without blocking on a FIFO or device, and refuses anything but a
/// regular file.
fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Re-anchors the guest's clocks in `ram` (docs/abi.md §4.2): the PV clock says that system
/// time `system_ns` is now, when the guest's TSC reads `guest_tsc`; the wall clock, that Unix
/// time `unix_ns` is now. Both records' versions go up by 2 (the guest is stopped).
pub fn anchor_clock(ram: &GuestRam, guest_tsc: u64, system_ns: u64, unix_ns: u64) -> Result<()> {
    let at = GuestAddress(layout::SHARED_INFO);
    let internal = |_| Error::Memory("the shared-info page lies outside guest RAM".into());
    let mut si: SharedInfo = ram.read_obj(at).map_err(internal)?;
    let time = &mut si.vcpu_info[0].time;
    time.version = (time.version | 1).wrapping_add(1);
    time.tsc_timestamp = guest_tsc;
    time.system_time = system_ns;
    let wc = Duration::from_nanos(unix_ns.saturating_sub(system_ns));
    si.wc_version = (si.wc_version | 1).wrapping_add(1);
    si.wc_sec = wc.as_secs() as u32;
    si.wc_sec_hi = (wc.as_secs() >> 32) as u32;
    si.wc_nsec = wc.subsec_nanos();
    ram.write_as_vmm(at, zerocopy::IntoBytes::as_bytes(&si))
        .map_err(internal)
}

/// Drops the console input the guest had not read when it was saved (`in_prod = in_cons`): a
/// restored guest's input is its new process's (or its warm-reset invocation's), not what the
/// saving process still had, such as the end of its standard input.
pub fn drop_console_input(ram: &GuestRam) -> Result<()> {
    use parapet_abi::console::console_offset as offset;
    let internal = |_| Error::Memory("the console page lies outside guest RAM".into());
    let page = layout::CONSOLE_PAGE;
    let cons: u32 = ram
        .read_obj(GuestAddress(page + offset::IN_CONS as u64))
        .map_err(internal)?;
    ram.write_as_vmm(
        GuestAddress(page + offset::IN_PROD as u64),
        &cons.to_le_bytes(),
    )
    .map_err(internal)
}

/// Writes `generation` into start-info (docs/abi.md §2.4).
pub fn write_generation(ram: &GuestRam, generation: u64) -> Result<()> {
    let at = layout::START_INFO + offset_of!(StartInfo, generation) as u64;
    ram.write_as_vmm(GuestAddress(at), &generation.to_le_bytes())
        .map_err(|_| Error::Memory("the start-info page lies outside guest RAM".into()))
}

/// Writes device `index`'s start-info entry.
pub fn write_device_info(ram: &GuestRam, index: usize, info: &DeviceInfo) -> Result<()> {
    let at = layout::START_INFO
        + (offset_of!(StartInfo, devices) + index * size_of::<DeviceInfo>()) as u64;
    ram.write_as_vmm(GuestAddress(at), zerocopy::IntoBytes::as_bytes(info))
        .map_err(|_| Error::Memory("the start-info page lies outside guest RAM".into()))
}

/// Unix time now, in ns.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A fresh generation number: random, never 0 (which means "booted").
pub fn new_generation() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_ok() {
            let g = u64::from_ne_bytes(bytes);
            if g != 0 {
                return g;
            }
        }
    }
}

/// The page-table pages reachable from `cr3` in `ram` (4-level paging; a large page ends a
/// walk), at most one per page of RAM. On kvm_pvm the shadow MMU keeps translations from these
/// pages even after the host reverts them (kvm-pvm.md §8), so a warm reset checks them.
pub fn page_table_pages(ram: &GuestRam, cr3: u64) -> Vec<u64> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let mut tables = vec![cr3 & ADDR];
    let mut seen: std::collections::HashSet<u64> = tables.iter().copied().collect();
    let mut level_start = 0;
    for level in (2..=4).rev() {
        let level_end = tables.len();
        for i in level_start..level_end {
            let table = tables[i];
            for slot in 0..512u64 {
                let Ok(entry) = ram.read_obj::<u64>(GuestAddress(table + slot * 8)) else {
                    break;
                };
                let large = level < 4 && entry & (1 << 7) != 0;
                let next = entry & ADDR;
                if entry & 1 == 0 || large || ram.check_range(GuestAddress(next), 4096).is_err() {
                    continue;
                }
                if tables.len() < (ram.size() / 4096) as usize && seen.insert(next) {
                    tables.push(next);
                }
            }
        }
        level_start = level_end;
    }
    tables
}
