//! Disk images: raw files behind the PV block devices (docs/abi.md §10.2).
//!
//! Images are opened and checked before any VM exists, so a missing, unreadable, empty or busy
//! image costs the user one clear line. A writable image is locked exclusively (a read-only one
//! shared) so two VMMs never write the same image.

use crate::config::DiskSpec;
use crate::error::{Error, Result};
use parapet_abi::blkif::BLKIF_SECTOR_SIZE;
use pv_drivers::blkif::{BlockIoError, BlockStore};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open disk image.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
}

impl FileDisk {
    /// Opens and checks the image `spec` names.
    pub fn open(spec: &DiskSpec) -> Result<FileDisk> {
        let err = |reason: String| Error::Disk {
            path: spec.path.clone(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!spec.readonly)
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
        Ok(FileDisk {
            file,
            path: spec.path.clone(),
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

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn io_error(e: io::Error) -> BlockIoError {
    BlockIoError::Io {
        errno: e.raw_os_error().unwrap_or(0),
    }
}

/// [`serve_batch`](pv_drivers::blkif::serve_batch) has validated every offset and length against
/// `sectors()` before these are called.
impl BlockStore for FileDisk {
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
        let d = FileDisk::open(&spec(&ok, false)).unwrap();
        assert_eq!((d.sectors(), d.read_only()), (8, false));
        let busy = FileDisk::open(&spec(&ok, false)).unwrap_err().to_string();
        assert!(busy.contains("in use"), "{busy}");
        drop(d);
        let missing = FileDisk::open(&spec(Path::new("/nonexistent/x.img"), false));
        assert!(missing.unwrap_err().to_string().contains("does not exist"));
        let empty = temp("empty", 100);
        let e = FileDisk::open(&spec(&empty, true)).unwrap_err().to_string();
        assert!(e.contains("smaller than one"), "{e}");
        let dir = FileDisk::open(&spec(&std::env::temp_dir(), true))
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
        let d = FileDisk::open(&spec(&path, false)).unwrap();
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
}
