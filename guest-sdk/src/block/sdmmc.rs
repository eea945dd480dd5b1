//! The `embedded-sdmmc` FAT16/FAT32 file system on a PV block device (feature
//! `embedded-sdmmc`).
//!
//! [`SdmmcDisk`] implements `embedded_sdmmc::BlockDevice` over a [`BlockDevice`];
//! [`WallClock`] implements `embedded_sdmmc::TimeSource` from the PV wall clock. Together they
//! make a `VolumeManager`:
//!
//! ```ignore
//! let disk = SdmmcDisk::new(BlockDevice::open(0)?)?;
//! let volumes = embedded_sdmmc::VolumeManager::new(disk, WallClock);
//! let volume = volumes.open_volume(embedded_sdmmc::VolumeIdx(0))?;
//! let root = volume.open_root_dir()?;
//! // ... files ...
//! volumes.device(|d| d.device().flush())?;   // make it durable
//! ```
//!
//! # Disks without a partition table
//!
//! `embedded-sdmmc` only opens volumes listed in an MBR partition table, but `mkfs.vfat IMAGE`
//! (like most tools that format an image file) writes the file system at sector 0 with no
//! partition table (a "superfloppy"). When sector 0 of the disk is a FAT boot sector rather
//! than an MBR, [`SdmmcDisk`] presents a disk one sector larger whose sector 0 is a synthetic
//! MBR with a single FAT partition starting at sector 1 and covering the whole real disk;
//! sector *n* + 1 of that view is sector *n* of the disk. `VolumeIdx(0)` is then the file
//! system. Writes to the synthetic MBR are refused. Disks with an MBR are passed through.

use alloc::vec;
use core::cell::{RefCell, RefMut};

/// The `embedded-sdmmc` crate this adapter is built against (use it for `VolumeManager` etc.,
/// so that the versions match).
pub use embedded_sdmmc;

use embedded_sdmmc::{Block, BlockCount, BlockIdx, TimeSource, Timestamp};

use super::{BlockDevice, BlockError, SECTOR_SIZE};

/// A [`BlockDevice`] as an `embedded_sdmmc::BlockDevice` (see the [module docs](self)).
#[derive(Debug)]
pub struct SdmmcDisk {
    dev: RefCell<BlockDevice>,
    /// The synthetic MBR of a superfloppy disk, or `None` if the disk has its own.
    mbr: Option<[u8; SECTOR_SIZE]>,
}

impl SdmmcDisk {
    /// Wraps `dev`, reading its sector 0 to tell a partitioned disk from a bare FAT file
    /// system.
    pub fn new(mut dev: BlockDevice) -> Result<SdmmcDisk, BlockError> {
        let mut sector0 = [0u8; SECTOR_SIZE];
        dev.read(0, &mut sector0)?;
        let mbr = if is_fat_boot_sector(&sector0) {
            Some(synthetic_mbr(&sector0, dev.sectors()).ok_or(BlockError::OutOfRange)?)
        } else {
            None
        };
        Ok(SdmmcDisk {
            dev: RefCell::new(dev),
            mbr,
        })
    }

    /// Whether the disk has no partition table (the file system starts at sector 0) and is
    /// seen through a synthetic MBR.
    pub fn is_superfloppy(&self) -> bool {
        self.mbr.is_some()
    }

    /// The block device (e.g. to [`flush`](BlockDevice::flush) it). Do not hold it across
    /// calls into `embedded-sdmmc`.
    pub fn device(&self) -> RefMut<'_, BlockDevice> {
        self.dev.borrow_mut()
    }

    /// The block device back.
    pub fn into_inner(self) -> BlockDevice {
        self.dev.into_inner()
    }

    /// The disk sector behind view block `idx` (`None` for the synthetic MBR).
    fn disk_sector(&self, idx: u64) -> Option<u64> {
        match self.mbr {
            Some(_) => idx.checked_sub(1),
            None => Some(idx),
        }
    }
}

impl embedded_sdmmc::BlockDevice for SdmmcDisk {
    type Error = BlockError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), BlockError> {
        let mut idx = u64::from(start.0);
        let mut skip = 0;
        if let (Some(mbr), None, Some(first)) =
            (&self.mbr, self.disk_sector(idx), blocks.first_mut())
        {
            first.contents = *mbr;
            skip = 1;
            idx += 1;
        }
        let blocks = &mut blocks[skip..];
        if blocks.is_empty() {
            return Ok(());
        }
        let sector = self.disk_sector(idx).ok_or(BlockError::OutOfRange)?;
        let mut dev = self.dev.borrow_mut();
        if let [block] = blocks {
            return dev.read(sector, &mut block.contents);
        }
        let mut buf = vec![0u8; blocks.len() * SECTOR_SIZE];
        dev.read(sector, &mut buf)?;
        for (block, bytes) in blocks.iter_mut().zip(buf.chunks(SECTOR_SIZE)) {
            block.contents.copy_from_slice(bytes);
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), BlockError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let sector = self
            .disk_sector(u64::from(start.0))
            .ok_or(BlockError::ReadOnly)?;
        let mut dev = self.dev.borrow_mut();
        if let [block] = blocks {
            return dev.write(sector, &block.contents);
        }
        let mut buf = vec![0u8; blocks.len() * SECTOR_SIZE];
        for (block, bytes) in blocks.iter().zip(buf.chunks_mut(SECTOR_SIZE)) {
            bytes.copy_from_slice(&block.contents);
        }
        dev.write(sector, &buf)
    }

    fn num_blocks(&self) -> Result<BlockCount, BlockError> {
        let n = self.dev.borrow().sectors() + u64::from(self.mbr.is_some());
        u32::try_from(n)
            .map(BlockCount)
            .map_err(|_| BlockError::OutOfRange)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Whether `s` is a FAT boot sector (a BIOS parameter block), as opposed to an MBR: the jump
/// instruction, a power-of-two sector size of 512–4096, a power-of-two cluster size, reserved
/// sectors, at least one FAT, and the `55 AA` signature.
pub fn is_fat_boot_sector(s: &[u8; SECTOR_SIZE]) -> bool {
    let jump = (s[0] == 0xeb && s[2] == 0x90) || s[0] == 0xe9;
    let bytes_per_sector = le16(s, 11);
    let sectors_per_cluster = s[13];
    jump && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && le16(s, 14) != 0
        && s[16] != 0
        && s[510] == 0x55
        && s[511] == 0xaa
}

/// An MBR with one FAT partition from sector 1 over `disk_sectors` sectors, typed FAT32 (LBA)
/// or FAT16 (LBA) after the boot sector `boot`. `None` if the disk is too large for an MBR.
pub fn synthetic_mbr(boot: &[u8; SECTOR_SIZE], disk_sectors: u64) -> Option<[u8; SECTOR_SIZE]> {
    let len = u32::try_from(disk_sectors).ok().filter(|&n| n < u32::MAX)?;
    // A FAT32 BPB has a 16-bit sectors-per-FAT of 0.
    let part_type = if le16(boot, 22) == 0 { 0x0c } else { 0x0e };
    let mut mbr = [0u8; SECTOR_SIZE];
    let entry = &mut mbr[446..462];
    entry[0] = 0x00; // not bootable
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: use LBA
    entry[4] = part_type;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    entry[12..16].copy_from_slice(&len.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    Some(mbr)
}

/// File timestamps from the PV wall clock ([`crate::time::unix_time`], UTC), or 2000-01-01
/// 00:00:00 if there is none.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl TimeSource for WallClock {
    fn get_timestamp(&self) -> Timestamp {
        let secs = crate::time::unix_time().map_or(946_684_800, |t| t.as_secs());
        timestamp(secs)
    }
}

/// The calendar date and time of `unix_secs` (UTC) as a FAT timestamp, clamped to the years
/// `embedded-sdmmc` can store (1980–2097).
pub fn timestamp(unix_secs: u64) -> Timestamp {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    let (hh, mm, ss) = ((s / 3600) as u8, (s / 60 % 60) as u8, (s % 60) as u8);
    let clamped = match y {
        ..1980 => Timestamp::from_calendar(1980, 1, 1, 0, 0, 0),
        2098.. => Timestamp::from_calendar(2097, 12, 31, 23, 59, 59),
        _ => Timestamp::from_calendar(y as u16, m, d, hh, mm, ss),
    };
    clamped.unwrap_or(Timestamp {
        year_since_1970: 30,
        zero_indexed_month: 0,
        zero_indexed_day: 0,
        hours: 0,
        minutes: 0,
        seconds: 0,
    })
}

/// Howard Hinnant's `civil_from_days`: (year, month 1–12, day 1–31) of a day count since
/// 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let t = timestamp(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!(
            (t.year_since_1970, t.zero_indexed_month, t.zero_indexed_day),
            (53, 10, 13)
        );
        assert_eq!((t.hours, t.minutes, t.seconds), (22, 13, 20));
        assert_eq!(timestamp(0).year_since_1970, 10, "clamped to 1980");
    }

    /// The first sector `mkfs.vfat -F 32` writes (the fields that matter).
    fn fat32_boot() -> [u8; SECTOR_SIZE] {
        let mut s = [0u8; SECTOR_SIZE];
        s[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        s[3..11].copy_from_slice(b"mkfs.fat");
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = 1;
        s[14..16].copy_from_slice(&32u16.to_le_bytes());
        s[16] = 2;
        s[82..90].copy_from_slice(b"FAT32   ");
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn superfloppies_get_a_synthetic_mbr() {
        let boot = fat32_boot();
        assert!(is_fat_boot_sector(&boot));
        let mbr = synthetic_mbr(&boot, 131_072).unwrap();
        assert!(!is_fat_boot_sector(&mbr), "an MBR is not a boot sector");
        assert_eq!(mbr[446 + 4], 0x0c);
        assert_eq!(&mbr[446 + 8..446 + 16], &[1, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        let mut fat16 = boot;
        fat16[22] = 32;
        assert_eq!(synthetic_mbr(&fat16, 100).unwrap()[446 + 4], 0x0e);
        assert!(synthetic_mbr(&boot, 1 << 32).is_none());
        for (at, v) in [(0, 0u8), (11, 3), (13, 3), (16, 0), (510, 0)] {
            let mut bad = boot;
            bad[at] = v;
            if at == 11 {
                bad[12] = 0;
            }
            assert!(!is_fat_boot_sector(&bad), "byte {at} = {v}");
        }
    }
}
