//! Guest kernel images: validating and loading an ELF64 x86-64 executable.
//!
//! The whole file is checked before any VM exists, so a bad kernel costs the user one clear line,
//! never a half-built guest. Only the headers and the loadable bytes are read: a debug kernel is
//! mostly debug information the VMM never needs (symbols are read again only for a fault report).

use object::LittleEndian as LE;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use parapet_abi::start_info::KERNEL_MIN_ADDR;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `e_ident` index of the class byte.
const EI_CLASS: usize = 4;
/// `e_ident` index of the data-encoding byte.
const EI_DATA: usize = 5;

/// The most `PT_LOAD` segments a kernel may have.
const MAX_SEGMENTS: usize = 64;

/// A loadable segment: `file` bytes of the image go to `gpa`, zero-filled up to `mem_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First guest-physical address (== virtual address: the image is identity-mapped).
    pub gpa: u64,
    /// Byte range of the segment's contents in the image file.
    pub file: Range<usize>,
    /// Size in memory (≥ the file size).
    pub mem_size: u64,
    /// Whether the segment is executable.
    pub executable: bool,
    /// Whether the segment is writable.
    pub writable: bool,
    /// The segment's file bytes, once [`load`] has read them.
    pub data: Vec<u8>,
}

impl Segment {
    /// One past the last guest-physical address.
    pub fn end(&self) -> u64 {
        self.gpa + self.mem_size
    }
}

/// A validated kernel image.
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// Entry point.
    pub entry: u64,
    /// Loadable segments, sorted by address, non-overlapping.
    pub segments: Vec<Segment>,
}

impl KernelImage {
    /// The lowest and highest-plus-one guest-physical address the image occupies.
    pub fn extent(&self) -> Range<u64> {
        let start = self.segments.first().map_or(0, |s| s.gpa);
        let end = self.segments.iter().map(Segment::end).max().unwrap_or(0);
        start..end
    }
}

/// How much of the file is read to find the ELF and program headers; more is read only if the
/// program headers lie further in.
const HEADER_READ: u64 = 16 << 10;

/// The most header bytes ever read: the ELF header and 65535 program headers of 56 bytes.
const HEADERS_MAX: u64 = 64 + 0xffff * 56;

/// Why a kernel cannot be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io(io::Error),
    /// The file is not a valid kernel: a short phrase naming the problem.
    Invalid(String),
    /// The caller's check refused the image (it does not fit the guest).
    Unfit(crate::error::Error),
}

/// Reads and validates the kernel at `path`. `fits` checks the parsed headers (the image must
/// fit the guest's memory) before any segment byte is read, so the VMM reads no more than the
/// guest can hold. A path that is not a regular file (a FIFO, a device, a directory) is refused
/// without blocking.
pub fn load(
    path: &Path,
    fits: impl FnOnce(&KernelImage) -> crate::error::Result<()>,
) -> Result<KernelImage, LoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(LoadError::Io)?;
    let meta = file.metadata().map_err(LoadError::Io)?;
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "something else"
        };
        return Err(LoadError::Invalid(format!("is {what}, not a regular file")));
    }
    let len = meta.len();
    let mut headers = read_at(&file, 0, len.min(HEADER_READ)).map_err(LoadError::Io)?;
    if headers.len() >= 64 {
        // e_phoff, e_phentsize, e_phnum: read on if the program headers lie beyond the prefix.
        let phoff = u64::from_le_bytes(headers[32..40].try_into().unwrap());
        let phsize = u64::from(u16::from_le_bytes([headers[54], headers[55]]));
        let phnum = u64::from(u16::from_le_bytes([headers[56], headers[57]]));
        let end = phoff.saturating_add(phsize * phnum).min(len);
        if end > HEADERS_MAX {
            return Err(LoadError::Invalid(format!(
                "program headers end at byte {end:#x}, past the first {HEADERS_MAX:#x}"
            )));
        }
        if end > headers.len() as u64 {
            headers = read_at(&file, 0, end).map_err(LoadError::Io)?;
        }
    }
    let mut image = parse(&headers, len).map_err(LoadError::Invalid)?;
    fits(&image).map_err(LoadError::Unfit)?;
    for seg in &mut image.segments {
        seg.data =
            read_at(&file, seg.file.start as u64, seg.file.len() as u64).map_err(LoadError::Io)?;
    }
    Ok(image)
}

fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Parses and validates a kernel image from its first bytes (`data`, which must hold the ELF and
/// program headers) and the length of the whole file. The error is a short phrase naming the
/// problem. Segment contents are left empty.
pub fn parse(data: &[u8], file_len: u64) -> Result<KernelImage, String> {
    if data.len() < 4 || data[..4] != elf::ELFMAG {
        return Err("not an ELF file".into());
    }
    if data.len() < 6 {
        return Err("truncated ELF header".into());
    }
    let class = data[EI_CLASS];
    if class == elf::ELFCLASS32.0 {
        return Err("is a 32-bit ELF; Parapet kernels are ELF64 x86-64".into());
    }
    if class != elf::ELFCLASS64.0 {
        return Err(format!("unknown ELF class {class}"));
    }
    if data[EI_DATA] != elf::ELFDATA2LSB.0 {
        return Err("is big-endian; Parapet kernels are little-endian x86-64".into());
    }
    let header =
        elf::FileHeader64::<LE>::parse(data).map_err(|e| format!("malformed ELF header: {e}"))?;
    let machine = header.e_machine(LE);
    if machine != elf::EM_X86_64 {
        return Err(format!(
            "is built for ELF machine {machine}, not x86-64 ({})",
            elf::EM_X86_64
        ));
    }
    match header.e_type(LE) {
        elf::ET_EXEC => {}
        elf::ET_DYN => {
            return Err(
                "is position-independent (ET_DYN); link guests as static executables (--no-pie)"
                    .into(),
            );
        }
        t => return Err(format!("is not an executable (ELF type {t})")),
    }
    let phdrs = header
        .program_headers(LE, data)
        .map_err(|e| format!("malformed program headers: {e}"))?;

    let mut segments = Vec::new();
    for ph in phdrs.iter().filter(|p| p.p_type(LE) == elf::PT_LOAD) {
        let (gpa, mem_size) = (ph.p_vaddr(LE), ph.p_memsz(LE));
        let (offset, file_size) = (ph.p_offset(LE), ph.p_filesz(LE));
        if file_size > mem_size {
            return Err(format!(
                "segment at {gpa:#x} has more file bytes ({file_size:#x}) than memory ({mem_size:#x})"
            ));
        }
        let file = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(file_size).ok())
            .and_then(|(o, n)| Some(o..o.checked_add(n)?))
            .filter(|r| r.end as u64 <= file_len)
            .ok_or_else(|| format!("segment at {gpa:#x} lies outside the file"))?;
        if gpa.checked_add(mem_size).is_none() {
            return Err(format!(
                "segment at {gpa:#x} of {mem_size:#x} bytes overflows the address space"
            ));
        }
        if gpa < KERNEL_MIN_ADDR {
            return Err(format!(
                "segment at {gpa:#x} is below {KERNEL_MIN_ADDR:#x}, where the boot structures live"
            ));
        }
        if mem_size == 0 {
            continue;
        }
        segments.push(Segment {
            gpa,
            file,
            mem_size,
            executable: ph.p_flags(LE).0 & elf::PF_X.0 != 0,
            writable: ph.p_flags(LE).0 & elf::PF_W.0 != 0,
            data: Vec::new(),
        });
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("has more than {MAX_SEGMENTS} loadable segments"));
        }
    }
    if segments.is_empty() {
        return Err("has no loadable segments".into());
    }
    segments.sort_by_key(|s| s.gpa);
    if let Some(w) = segments.windows(2).find(|w| w[0].end() > w[1].gpa) {
        return Err(format!(
            "segments at {:#x} and {:#x} overlap",
            w[0].gpa, w[1].gpa
        ));
    }
    let entry = header.e_entry(LE);
    if !segments
        .iter()
        .any(|s| s.executable && (s.gpa..s.end()).contains(&entry))
    {
        return Err(format!(
            "entry point {entry:#x} is not inside an executable segment"
        ));
    }
    Ok(KernelImage { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 x86-64 executable with the given PT_LOAD (vaddr, filesz, memsz, flags).
    fn elf(machine: u16, etype: u16, entry: u64, loads: &[(u64, u64, u64, u32)]) -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(&elf::ELFMAG);
        v[4] = elf::ELFCLASS64.0;
        v[5] = elf::ELFDATA2LSB.0;
        v[6] = 1;
        v[16..18].copy_from_slice(&etype.to_le_bytes());
        v[18..20].copy_from_slice(&machine.to_le_bytes());
        v[20..24].copy_from_slice(&1u32.to_le_bytes());
        v[24..32].copy_from_slice(&entry.to_le_bytes());
        v[32..40].copy_from_slice(&64u64.to_le_bytes());
        v[52..54].copy_from_slice(&64u16.to_le_bytes());
        v[54..56].copy_from_slice(&56u16.to_le_bytes());
        v[56..58].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        let data_off = 64 + 56 * loads.len() as u64;
        for &(vaddr, filesz, memsz, flags) in loads {
            let mut p = [0u8; 56];
            p[0..4].copy_from_slice(&elf::PT_LOAD.0.to_le_bytes());
            p[4..8].copy_from_slice(&flags.to_le_bytes());
            p[8..16].copy_from_slice(&data_off.to_le_bytes());
            p[16..24].copy_from_slice(&vaddr.to_le_bytes());
            p[24..32].copy_from_slice(&vaddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            v.extend_from_slice(&p);
        }
        v.resize(v.len() + 4096, 0x90);
        v
    }

    const RX: u32 = elf::PF_R.0 | elf::PF_X.0;

    #[test]
    fn accepts_a_simple_kernel() {
        let bytes = elf(62, 2, 0x100000, &[(0x100000, 16, 0x2000, RX)]);
        let img = parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(img.entry, 0x100000);
        assert_eq!(img.extent(), 0x100000..0x102000);
    }

    #[test]
    fn rejects_what_cannot_boot() {
        let cases: &[(Vec<u8>, &str)] = &[
            (b"hello".to_vec(), "not an ELF"),
            (
                elf(183, 2, 0x100000, &[(0x100000, 16, 16, RX)]),
                "machine 183",
            ),
            (elf(62, 3, 0x100000, &[(0x100000, 16, 16, RX)]), "ET_DYN"),
            (
                elf(62, 1, 0x100000, &[(0x100000, 16, 16, RX)]),
                "not an executable",
            ),
            (elf(62, 2, 0x1000, &[(0x1000, 16, 16, RX)]), "below"),
            (
                elf(62, 2, 0x100000, &[(u64::MAX - 8, 16, 16, RX)]),
                "overflows",
            ),
            (
                elf(62, 2, 0x100000, &[(0x100000, 32, 16, RX)]),
                "more file bytes",
            ),
            (
                elf(62, 2, 0x100000, &[(0x100000, 1 << 40, 1 << 40, RX)]),
                "outside the file",
            ),
            (
                elf(62, 2, 0x200000, &[(0x100000, 16, 16, RX)]),
                "entry point",
            ),
            (
                elf(62, 2, 0x100000, &[(0x100000, 16, 16, elf::PF_R.0)]),
                "entry point",
            ),
            (
                elf(
                    62,
                    2,
                    0x100000,
                    &[(0x100000, 16, 0x2000, RX), (0x101000, 16, 16, RX)],
                ),
                "overlap",
            ),
            (elf(62, 2, 0x100000, &[]), "no loadable"),
        ];
        for (bytes, want) in cases {
            let err = parse(bytes, bytes.len() as u64).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        let mut elf32 = elf(62, 2, 0x100000, &[]);
        elf32[4] = elf::ELFCLASS32.0;
        assert!(parse(&elf32, 64).unwrap_err().contains("32-bit"));
        assert!(parse(&elf32[..5], 5).unwrap_err().contains("truncated"));
        assert!(
            parse(&elf(62, 2, 0, &[])[..40], 40)
                .unwrap_err()
                .contains("malformed")
        );
    }
}
