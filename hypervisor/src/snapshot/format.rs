//! The snapshot file: a header, a table of checksummed sections (vCPU state, VMM state), and
//! guest memory at a page-aligned offset, sparse where the guest never wrote, so that a restore
//! can map it copy-on-write (docs/snapshots.md).
//!
//! ```text
//! offset 0          Header (64 bytes), then its CRC-32
//! header.table      nr_sections × SectionEntry (32 bytes each)
//! entry.offset      section bytes (each checked with its CRC-32)
//! header.memory     guest RAM, memory_size bytes, page-aligned offset
//! ```
//!
//! Everything read from a snapshot is hostile: [`Snapshot::parse`] checks the header, the
//! table and every section against the file's length and checksum before anything uses them,
//! and refuses with one [`SnapshotError`] line.

use std::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The first 16 bytes of every snapshot.
pub const MAGIC: [u8; 16] = *b"PARAPET-SNAPSHOT";
/// The layout version this VMM writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Guest memory starts at a multiple of this (the host page size restore maps with).
pub const MEMORY_ALIGN: u64 = 4096;
/// The most sections a snapshot may list: far more than a VMM writes, and a bound on the work a
/// hostile file can cause.
pub const MAX_SECTIONS: u32 = 64;
/// The largest section: vCPU and device state are kilobytes.
pub const MAX_SECTION_LEN: u64 = 16 << 20;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SectionKind {
    /// The vCPU's registers, MSRs, FPU and local APIC.
    Vcpu,
    /// The VMM state the guest can observe: event channels, grant table, timer, devices.
    Domain,
}

impl SectionKind {
    fn code(self) -> u32 {
        match self {
            SectionKind::Vcpu => 1,
            SectionKind::Domain => 2,
        }
    }

    fn from_code(code: u32) -> Option<SectionKind> {
        match code {
            1 => Some(SectionKind::Vcpu),
            2 => Some(SectionKind::Domain),
            _ => None,
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SectionKind::Vcpu => "vcpu",
            SectionKind::Domain => "domain",
        })
    }
}

/// The host a snapshot was taken on: a snapshot restores only on the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// kvm_pvm.
    KvmPvm,
    /// VT-x/AMD-V KVM.
    KvmHardware,
}

impl HostKind {
    fn code(self) -> u32 {
        match self {
            HostKind::KvmPvm => 1,
            HostKind::KvmHardware => 2,
        }
    }

    fn from_code(code: u32) -> Option<HostKind> {
        match code {
            1 => Some(HostKind::KvmPvm),
            2 => Some(HostKind::KvmHardware),
            _ => None,
        }
    }

    /// As the user knows it.
    pub fn name(self) -> &'static str {
        match self {
            HostKind::KvmPvm => "kvm_pvm",
            HostKind::KvmHardware => "VT-x/AMD-V KVM",
        }
    }
}

/// The file header.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Header {
    magic: [u8; 16],
    format_version: u32,
    host: u32,
    /// The VMM's version (`CARGO_PKG_VERSION`), NUL-padded.
    vmm_version: [u8; 16],
    memory_size: u64,
    memory_offset: u64,
    table_offset: u32,
    nr_sections: u32,
}

/// CRC-32 of the header (with this field zero) follows it.
const HEADER_LEN: usize = size_of::<Header>() + 4;
const _: () = assert!(HEADER_LEN == 68);

/// One entry of the section table.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct SectionEntry {
    kind: u32,
    crc32: u32,
    offset: u64,
    len: u64,
    reserved: u64,
}

const ENTRY_LEN: usize = size_of::<SectionEntry>();
const _: () = assert!(ENTRY_LEN == 32);

/// Why a snapshot was refused. Each renders as one line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Parapet snapshot at all.
    #[error("not a Parapet snapshot (bad magic)")]
    NotASnapshot,
    /// The file ends before the part named.
    #[error("the snapshot is truncated: its {0} lies past the end of the file")]
    Truncated(&'static str),
    /// A checksum does not match: the file is corrupted.
    #[error("the snapshot is corrupted: the {0} checksum does not match")]
    Corrupted(String),
    /// Written by a different snapshot layout.
    #[error("the snapshot has format version {found}; this parapet reads version {FORMAT_VERSION}")]
    FormatVersion {
        /// The file's version.
        found: u32,
    },
    /// Written by a different Parapet.
    #[error("the snapshot was taken by parapet {found}; this is parapet {ours}")]
    VmmVersion {
        /// The file's VMM version.
        found: String,
        /// This VMM's.
        ours: &'static str,
    },
    /// Taken on another kind of host.
    #[error("the snapshot was taken on {found}; this host is {ours}")]
    Host {
        /// The file's host kind.
        found: &'static str,
        /// This host's.
        ours: &'static str,
    },
    /// A field holds a value no Parapet writes.
    #[error("the snapshot is malformed: {0}")]
    Malformed(String),
}

/// This VMM's version as the header stores it.
fn vmm_version() -> [u8; 16] {
    let mut v = [0u8; 16];
    let ours = env!("CARGO_PKG_VERSION").as_bytes();
    v[..ours.len().min(16)].copy_from_slice(&ours[..ours.len().min(16)]);
    v
}

fn version_text(v: &[u8; 16]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The metadata of a snapshot about to be written: everything but the memory, which the writer
/// copies (or leaves as holes) at [`Layout::memory_offset`].
#[derive(Debug)]
pub struct Layout {
    /// The header, the section table and the sections, to write at offset 0.
    pub head: Vec<u8>,
    /// Where guest memory starts in the file.
    pub memory_offset: u64,
    /// The file's length once memory is written.
    pub file_len: u64,
}

/// Lays out a snapshot of `memory_size` bytes of guest RAM taken on `host`, with `sections`.
pub fn layout(host: HostKind, memory_size: u64, sections: &[(SectionKind, &[u8])]) -> Layout {
    let table_offset = HEADER_LEN;
    let mut at = (table_offset + sections.len() * ENTRY_LEN) as u64;
    let mut table = Vec::new();
    let mut bodies = Vec::new();
    for (kind, bytes) in sections {
        let entry = SectionEntry {
            kind: kind.code(),
            crc32: crc32fast::hash(bytes),
            offset: at,
            len: bytes.len() as u64,
            reserved: 0,
        };
        table.extend_from_slice(entry.as_bytes());
        bodies.extend_from_slice(bytes);
        at += bytes.len() as u64;
    }
    let memory_offset = at.next_multiple_of(MEMORY_ALIGN);
    let header = Header {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        host: host.code(),
        vmm_version: vmm_version(),
        memory_size,
        memory_offset,
        table_offset: table_offset as u32,
        nr_sections: sections.len() as u32,
    };
    let mut head = header.as_bytes().to_vec();
    head.extend_from_slice(&crc32fast::hash(header.as_bytes()).to_le_bytes());
    head.extend_from_slice(&table);
    head.extend_from_slice(&bodies);
    Layout {
        head,
        memory_offset,
        file_len: memory_offset + memory_size,
    }
}

/// The most metadata (header, table, sections) a snapshot may have before its memory.
pub const MAX_HEAD_LEN: u64 = 32 << 20;

/// How many bytes of the file [`Snapshot::parse`] needs, from its first [`HEADER_PREFIX`]
/// bytes: the header's memory offset, bounded by [`MAX_HEAD_LEN`] (the header is checked by
/// `parse`, this only bounds the read).
pub fn head_len(prefix: &[u8]) -> u64 {
    Header::read_from_prefix(prefix)
        .map_or(HEADER_LEN as u64, |(h, _)| h.memory_offset)
        .clamp(HEADER_LEN as u64, MAX_HEAD_LEN)
}

/// Bytes to read before [`head_len`] can tell how many more.
pub const HEADER_PREFIX: usize = HEADER_LEN;

/// A checked snapshot's metadata: its sections' bytes and where its memory lies.
#[derive(Debug)]
pub struct Snapshot {
    /// Guest RAM size.
    pub memory_size: u64,
    /// Offset of guest RAM in the file (a multiple of [`MEMORY_ALIGN`]).
    pub memory_offset: u64,
    sections: Vec<(SectionKind, Vec<u8>)>,
}

impl Snapshot {
    /// Checks the metadata at the start of a snapshot file of `file_len` bytes; `head` holds
    /// the file's first bytes (at least up to its last section; more is ignored). Refuses a
    /// snapshot taken by another VMM version or on another kind of host than `host`.
    pub fn parse(head: &[u8], file_len: u64, host: HostKind) -> Result<Snapshot, SnapshotError> {
        let Some((header, rest)) = Header::read_from_prefix(head).ok() else {
            return Err(if head.len() >= 16 && head[..16] != MAGIC {
                SnapshotError::NotASnapshot
            } else {
                SnapshotError::Truncated("header")
            });
        };
        if header.magic != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let crc = rest.get(..4).ok_or(SnapshotError::Truncated("header"))?;
        if crc32fast::hash(header.as_bytes()).to_le_bytes() != crc {
            return Err(SnapshotError::Corrupted("header".into()));
        }
        if header.format_version != FORMAT_VERSION {
            return Err(SnapshotError::FormatVersion {
                found: header.format_version,
            });
        }
        if header.vmm_version != vmm_version() {
            return Err(SnapshotError::VmmVersion {
                found: version_text(&header.vmm_version),
                ours: env!("CARGO_PKG_VERSION"),
            });
        }
        let found_host = HostKind::from_code(header.host)
            .ok_or_else(|| SnapshotError::Malformed(format!("host kind {}", header.host)))?;
        if found_host != host {
            return Err(SnapshotError::Host {
                found: found_host.name(),
                ours: host.name(),
            });
        }
        if header.nr_sections > MAX_SECTIONS {
            return Err(SnapshotError::Malformed(format!(
                "{} sections (at most {MAX_SECTIONS})",
                header.nr_sections
            )));
        }
        if !header.memory_offset.is_multiple_of(MEMORY_ALIGN)
            || !header.memory_size.is_multiple_of(MEMORY_ALIGN)
        {
            return Err(SnapshotError::Malformed(
                "guest memory is not page-aligned".into(),
            ));
        }
        match header.memory_offset.checked_add(header.memory_size) {
            Some(end) if end <= file_len => {}
            _ => return Err(SnapshotError::Truncated("guest memory")),
        }
        let table_offset = header.table_offset as usize;
        let table_len = header.nr_sections as usize * ENTRY_LEN;
        let table = head
            .get(table_offset..table_offset + table_len)
            .ok_or(SnapshotError::Truncated("section table"))?;
        let mut sections: Vec<(SectionKind, Vec<u8>)> = Vec::new();
        for raw in table.chunks_exact(ENTRY_LEN) {
            let entry = SectionEntry::read_from_bytes(raw).expect("one entry's bytes");
            let kind = SectionKind::from_code(entry.kind).ok_or_else(|| {
                SnapshotError::Malformed(format!("unknown section kind {}", entry.kind))
            })?;
            if entry.reserved != 0 {
                return Err(SnapshotError::Malformed(format!(
                    "the {kind} section's reserved field is not zero"
                )));
            }
            if sections.iter().any(|(k, _)| *k == kind) {
                return Err(SnapshotError::Malformed(format!("two {kind} sections")));
            }
            if entry.len > MAX_SECTION_LEN {
                return Err(SnapshotError::Malformed(format!(
                    "the {kind} section is {} bytes",
                    entry.len
                )));
            }
            let end = entry
                .offset
                .checked_add(entry.len)
                .filter(|&end| end <= header.memory_offset)
                .ok_or_else(|| {
                    SnapshotError::Malformed(format!("the {kind} section overlaps guest memory"))
                })?;
            let bytes = head
                .get(entry.offset as usize..end as usize)
                .ok_or(SnapshotError::Truncated("sections"))?;
            if crc32fast::hash(bytes) != entry.crc32 {
                return Err(SnapshotError::Corrupted(format!("{kind} section")));
            }
            sections.push((kind, bytes.to_vec()));
        }
        Ok(Snapshot {
            memory_size: header.memory_size,
            memory_offset: header.memory_offset,
            sections,
        })
    }

    /// The bytes of section `kind`, if the snapshot has one.
    pub fn section(&self, kind: SectionKind) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostKind = HostKind::KvmPvm;

    fn sample() -> (Vec<u8>, u64) {
        let l = layout(
            HOST,
            2 << 20,
            &[
                (SectionKind::Vcpu, b"vcpu state"),
                (SectionKind::Domain, b"dom"),
            ],
        );
        (l.head, l.file_len)
    }

    #[test]
    fn round_trips_sections_and_aligns_memory() {
        let (head, len) = sample();
        let s = Snapshot::parse(&head, len, HOST).unwrap();
        assert_eq!(s.section(SectionKind::Vcpu), Some(&b"vcpu state"[..]));
        assert_eq!(s.section(SectionKind::Domain), Some(&b"dom"[..]));
        assert_eq!(s.memory_offset % MEMORY_ALIGN, 0);
        assert!(s.memory_offset >= head.len() as u64);
        assert_eq!(s.memory_size, 2 << 20);
    }

    #[test]
    fn refuses_every_single_corrupted_byte_of_the_metadata() {
        let (head, len) = sample();
        for i in 0..head.len() {
            let mut bad = head.clone();
            bad[i] ^= 0x40;
            assert!(
                Snapshot::parse(&bad, len, HOST).is_err(),
                "byte {i} flipped was accepted"
            );
        }
    }

    #[test]
    fn refuses_truncation_other_hosts_and_garbage_with_one_line() {
        let (head, len) = sample();
        assert_eq!(
            Snapshot::parse(&head, len - 1, HOST).unwrap_err(),
            SnapshotError::Truncated("guest memory")
        );
        assert_eq!(
            Snapshot::parse(&head[..40], len, HOST).unwrap_err(),
            SnapshotError::Truncated("header")
        );
        let other = Snapshot::parse(&head, len, HostKind::KvmHardware).unwrap_err();
        assert!(matches!(other, SnapshotError::Host { .. }));
        assert_eq!(
            Snapshot::parse(b"#!/bin/sh\necho this is not a snapshot at all", 45, HOST)
                .unwrap_err(),
            SnapshotError::NotASnapshot
        );
        for e in [other, SnapshotError::Corrupted("vcpu section".into())] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn hostile_tables_are_refused_before_any_large_work() {
        // A header naming u32::MAX sections, with a valid checksum.
        let (mut head, len) = sample();
        let mut header = Header::read_from_prefix(&head).unwrap().0;
        header.nr_sections = u32::MAX;
        head[..size_of::<Header>()].copy_from_slice(header.as_bytes());
        let crc = crc32fast::hash(header.as_bytes()).to_le_bytes();
        head[size_of::<Header>()..HEADER_LEN].copy_from_slice(&crc);
        assert!(matches!(
            Snapshot::parse(&head, len, HOST).unwrap_err(),
            SnapshotError::Malformed(_)
        ));
    }
}
