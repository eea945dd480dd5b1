//! Disk images: raw files behind the PV block devices (docs/abi.md §10.2).
//!
//! Images are opened and checked before any VM exists, so a missing, unreadable, empty or busy
//! image costs the user one clear line. A writable image is locked exclusively (a read-only one
//! shared) so two VMMs never write the same image.

use crate::config::DiskSpec;
use crate::error::{Error, Result};
use crate::grant_table::GrantMapping;
use crate::memory::GuestRam;
use crate::sys::VectoredDir;
use parapet_abi::blkif::BLKIF_SECTOR_SIZE;
use pv_drivers::blkif::{BlockIoError, BlockStore, PageSegment};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use vm_memory::GuestAddress;

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    /// `path` from the root, as the VMM found it when it opened the image (for a snapshot, which
    /// may be restored from another directory).
    absolute: PathBuf,
    sectors: u64,
    read_only: bool,
}

impl DiskImage {
    /// Opens and checks the image `spec` names.
    pub fn open(spec: &DiskSpec) -> Result<DiskImage> {
        let err = |reason: String| Error::Disk {
            path: spec.path.clone(),
            reason,
        };
        // O_NONBLOCK: opening a FIFO read-only must not wait for a writer (it is refused below);
        // Linux ignores the flag for the regular files that are accepted.
        let file = OpenOptions::new()
            .read(true)
            .write(!spec.readonly)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&spec.path)
            .map_err(|e| err(open_error(&e, spec.readonly)))?;
        let meta = file.metadata().map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err(
                "is not a regular file (Parapet serves raw image files)".into(),
            ));
        }
        let sectors = meta.len() / BLKIF_SECTOR_SIZE;
        if sectors == 0 {
            return Err(err(format!(
                "is smaller than one {BLKIF_SECTOR_SIZE}-byte sector"
            )));
        }
        if meta.len() % BLKIF_SECTOR_SIZE != 0 {
            tracing::warn!(
                "disk {}: the last {} bytes are not a whole sector and are ignored",
                spec.path.display(),
                meta.len() % BLKIF_SECTOR_SIZE
            );
        }
        match crate::sys::try_lock(&file, !spec.readonly) {
            Ok(true) => {}
            Ok(false) => return Err(err("is in use by another process".into())),
            Err(e) => return Err(err(format!("cannot be locked: {e}"))),
        }
        let absolute = std::path::absolute(&spec.path).unwrap_or_else(|_| spec.path.clone());
        Ok(DiskImage {
            file,
            path: spec.path.clone(),
            absolute,
            sectors,
            read_only: spec.readonly,
        })
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image's path from the root.
    pub fn absolute_path(&self) -> &Path {
        &self.absolute
    }
}

impl DiskImage {
    /// Moves the disk's bytes at `offset` into (`Read`) or out of (`Write`) the guest memory
    /// `segments` name (guest-physical address, length), in one `preadv`/`pwritev` (repeated
    /// only for short transfers): no copy through VMM memory. Every segment is checked to lie
    /// inside `ram` (and, when guest memory is written, outside its protected ranges) first; a
    /// segment that is not fails the whole transfer with `EFAULT` before any I/O.
    pub fn transfer_guest(
        &self,
        ram: &GuestRam,
        dir: VectoredDir,
        offset: u64,
        segments: &[(GuestAddress, usize)],
    ) -> std::result::Result<(), BlockIoError> {
        let efault = BlockIoError::Io {
            errno: libc::EFAULT,
        };
        let mut iov = Vec::with_capacity(segments.len());
        for &(gpa, len) in segments {
            let addr = ram
                .host_range(GuestAddress(gpa.0), len as u64, dir == VectoredDir::Read)
                .map_err(|_| efault)?;
            iov.push((addr, len));
        }
        // SAFETY: every range was just checked to lie inside guest RAM, one anonymous mapping
        // that lives as long as `ram` (borrowed for the call); the VMM never forms Rust
        // references to guest RAM (it copies with volatile accesses or atomics), so the kernel
        // writing through the raw pointers aliases none; ranges written into the guest are
        // outside the protected (read-only to the guest) ranges, and the mapping is writable.
        unsafe { crate::sys::rw_vectored(&self.file, dir, offset, &iov) }.map_err(io_error)
    }
}

/// The guest memory of `segments`, for [`DiskImage::transfer_guest`]; `None` if a mapping does
/// not allow the access (a disk read writes into the pages).
fn guest_segments(
    segments: &[PageSegment<'_, GrantMapping>],
    write_to_guest: bool,
) -> Option<Vec<(GuestAddress, usize)>> {
    segments
        .iter()
        .map(|s| {
            let len = s.range.len();
            Some((s.page.guest_range(s.range.clone(), write_to_guest)?, len))
        })
        .collect()
}

/// A [`DiskImage`] serving one guest: a [`BlockStore`] whose vectored reads and writes go
/// straight between the image and the granted pages of `ram` ([`DiskImage::transfer_guest`]).
#[derive(Clone, Copy, Debug)]
pub struct GuestDisk<'a> {
    /// The image.
    pub disk: &'a DiskImage,
    /// The guest's RAM, which every host address is checked against.
    pub ram: &'a GuestRam,
}

impl BlockStore<GrantMapping> for GuestDisk<'_> {
    fn sectors(&self) -> u64 {
        self.disk.sectors
    }

    fn read_only(&self) -> bool {
        self.disk.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), BlockIoError> {
        self.disk.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> std::result::Result<(), BlockIoError> {
        self.disk.write_at(offset, buf)
    }

    fn flush(&self) -> std::result::Result<(), BlockIoError> {
        self.disk.flush()
    }

    fn discard(&self, offset: u64, len: u64) -> std::result::Result<(), BlockIoError> {
        self.disk.discard(offset, len)
    }

    fn read_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, GrantMapping>],
    ) -> Option<std::result::Result<(), BlockIoError>> {
        let Some(guest) = guest_segments(segments, true) else {
            return Some(Err(BlockIoError::Io {
                errno: libc::EFAULT,
            }));
        };
        Some(
            self.disk
                .transfer_guest(self.ram, VectoredDir::Read, offset, &guest),
        )
    }

    fn write_vectored(
        &self,
        offset: u64,
        segments: &[PageSegment<'_, GrantMapping>],
    ) -> Option<std::result::Result<(), BlockIoError>> {
        if self.disk.read_only {
            return Some(Err(BlockIoError::Io { errno: libc::EROFS }));
        }
        let guest = guest_segments(segments, false)?;
        Some(
            self.disk
                .transfer_guest(self.ram, VectoredDir::Write, offset, &guest),
        )
    }
}

fn io_error(e: io::Error) -> BlockIoError {
    BlockIoError::Io {
        errno: e.raw_os_error().unwrap_or(0),
    }
}

/// [`serve_batch`](pv_drivers::blkif::serve_batch) has validated every offset and length against
/// `sectors()` before these are called.
impl BlockStore for DiskImage {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), BlockIoError> {
        self.file.read_exact_at(buf, offset).map_err(io_error)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> std::result::Result<(), BlockIoError> {
        self.file.write_all_at(buf, offset).map_err(io_error)
    }

    fn flush(&self) -> std::result::Result<(), BlockIoError> {
        self.file.sync_data().map_err(io_error)
    }

    fn discard(&self, offset: u64, len: u64) -> std::result::Result<(), BlockIoError> {
        match crate::sys::punch_hole(&self.file, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                // No holes on this file system: write the zeros instead.
                let zeros = [0u8; 64 << 10];
                let mut at = offset;
                while at < offset + len {
                    let n = (offset + len - at).min(zeros.len() as u64) as usize;
                    self.write_at(at, &zeros[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(io_error(e)),
        }
    }
}

fn open_error(e: &io::Error, readonly: bool) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".into(),
        io::ErrorKind::PermissionDenied if !readonly => {
            "cannot be opened for writing: permission denied (add `,readonly`?)".into()
        }
        io::ErrorKind::PermissionDenied => "cannot be read: permission denied".into(),
        _ => format!("cannot be opened: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path, readonly: bool) -> DiskSpec {
        DiskSpec {
            path: path.to_owned(),
            readonly,
        }
    }

    fn temp(name: &str, len: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("parapet-disk-{}-{name}", std::process::id()));
        File::create(&p).unwrap().set_len(len).unwrap();
        p
    }

    #[test]
    fn opens_images_and_refuses_bad_ones() {
        let ok = temp("ok", 4096 + 100);
        let d = DiskImage::open(&spec(&ok, false)).unwrap();
        assert_eq!((d.sectors(), d.read_only()), (8, false));
        let busy = DiskImage::open(&spec(&ok, false)).unwrap_err().to_string();
        assert!(busy.contains("in use"), "{busy}");
        drop(d);
        let missing = DiskImage::open(&spec(Path::new("/nonexistent/x.img"), false));
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
        let empty = temp("empty", 100);
        let e = DiskImage::open(&spec(&empty, true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("smaller than one"), "{e}");
        let dir = DiskImage::open(&spec(&std::env::temp_dir(), true))
            .unwrap_err()
            .to_string();
        assert!(dir.contains("not a regular file"), "{dir}");
        for p in [ok, empty] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn stores_reads_flushes_and_discards() {
        let path = temp("store", 1 << 20);
        let d = DiskImage::open(&spec(&path, false)).unwrap();
        d.write_at(4096, &[0xab; 1024]).unwrap();
        d.flush().unwrap();
        let mut b = [0u8; 1024];
        d.read_at(4096, &mut b).unwrap();
        assert_eq!(b, [0xab; 1024]);
        d.discard(4096, 512).unwrap();
        d.read_at(4096, &mut b).unwrap();
        assert_eq!(&b[..512], &[0u8; 512][..]);
        assert_eq!(&b[512..], &[0xab; 512][..]);
        drop(d);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn vectored_transfers_go_straight_between_the_image_and_guest_pages() {
        use crate::memory::GuestPage;
        use pv_drivers::shared::SharedPage;
        use std::sync::Arc;
        let path = temp("vectored", 1 << 20);
        let d = DiskImage::open(&spec(&path, false)).unwrap();
        let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 + i / 256) as u8).collect();
        d.write_at(0x4000, &pattern).unwrap();
        let ram = Arc::new(GuestRam::new(1 << 20).unwrap());
        let (a, b) = (
            GuestPage::new(ram.clone(), 0x3000).unwrap(),
            GuestPage::new(ram.clone(), 0x8000).unwrap(),
        );
        let (read, write) = (VectoredDir::Read, VectoredDir::Write);
        // Disk 0x4000.. into a's sectors 2..8 (3 KiB at 0x400), then b's whole page.
        let segs = [
            (GuestAddress(0x3400), 0xc00),
            (GuestAddress(0x8000), 0x1000),
        ];
        d.transfer_guest(&ram, read, 0x4000, &segs).unwrap();
        let mut got = vec![0u8; 0x1000];
        a.read(0, &mut got);
        assert_eq!(
            &got[..0x400],
            &[0u8; 0x400][..],
            "untouched before the range"
        );
        assert_eq!(&got[0x400..], &pattern[..0xc00]);
        b.read(0, &mut got);
        assert_eq!(&got[..], &pattern[0xc00..0x1c00]);
        // And back out, to another place on the disk, in the other order.
        let back = [segs[1], segs[0]];
        d.transfer_guest(&ram, write, 0x10000, &back).unwrap();
        let mut disk = vec![0u8; 0x1c00];
        d.read_at(0x10000, &mut disk).unwrap();
        assert_eq!(&disk[..0x1000], &pattern[0xc00..0x1c00]);
        assert_eq!(&disk[0x1000..], &pattern[..0xc00]);
        // Reading past the end of the image is an error, not a short success.
        let tail = [(GuestAddress(0x8000), 0x1000)];
        assert!(
            d.transfer_guest(&ram, read, (1 << 20) - 0x800, &tail)
                .is_err()
        );
        // Ranges outside guest RAM (or protected, when writing to the guest) fail first.
        let outside = [(GuestAddress((1 << 20) - 0x200), 0x400)];
        let efault = Err(BlockIoError::Io {
            errno: libc::EFAULT,
        });
        assert_eq!(d.transfer_guest(&ram, read, 0, &outside), efault);
        assert_eq!(d.transfer_guest(&ram, write, 0, &outside), efault);
        ram.protect(vec![0x8000..0x9000, 0xf000..0x10000]);
        assert_eq!(d.transfer_guest(&ram, read, 0, &segs), efault);
        assert_eq!(d.transfer_guest(&ram, write, 0, &segs[1..]), Ok(()));
        drop(d);
        let _ = std::fs::remove_file(path);
    }
}
