//! The shared-info page: Xen's `shared_info` for x86_64, byte for byte.
//!
//! One page the VMM and the guest both map. It holds per-vCPU state (event upcall flags and the
//! PV clock), the 2-level event channel bitmaps and the wall clock.

use crate::time::VcpuTimeInfo;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `vcpu_info` slots in the shared-info page (Xen's `XEN_LEGACY_MAX_VCPUS`).
pub const LEGACY_MAX_VCPUS: usize = 32;
/// Words in each event channel bitmap (64 × 64 = 4096 ports).
pub const EVTCHN_WORDS: usize = 64;
/// Event channel ports addressable by the 2-level ABI.
pub const NR_EVENT_CHANNELS: usize = EVTCHN_WORDS * 64;

/// Xen's `arch_vcpu_info` (x86_64).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// Faulting address of the last page fault (unused by Parapet: the guest reads CR2).
    pub cr2: u64,
    /// Padding.
    pub pad: u64,
}

/// Xen's `vcpu_info`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by the VMM when an event is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Set by the guest to hold back upcalls.
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub pad: [u8; 6],
    /// Which words of `evtchn_pending` have bits set (level 1 of the 2-level ABI).
    pub evtchn_pending_sel: u64,
    /// Architecture-specific state.
    pub arch: ArchVcpuInfo,
    /// The PV clock of this vCPU.
    pub time: VcpuTimeInfo,
}

const _: () = assert!(core::mem::size_of::<VcpuInfo>() == 64);

/// Xen's `arch_shared_info` (x86_64).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Highest guest page frame number + 1.
    pub max_pfn: u64,
    /// Unused by Parapet (PV P2M list).
    pub pfn_to_mfn_frame_list_list: u64,
    /// Unused by Parapet.
    pub nmi_reason: u64,
    /// Unused by Parapet.
    pub p2m_cr3: u64,
    /// Unused by Parapet.
    pub p2m_vaddr: u64,
    /// Unused by Parapet.
    pub p2m_generation: u64,
}

/// Xen's `shared_info` (x86_64).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    /// Per-vCPU state; Parapet domains have one vCPU, slot 0.
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// Level 2 of the event ABI: one pending bit per port.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// One mask bit per port, owned by the guest.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Wall-clock update counter (odd while updating).
    pub wc_version: u32,
    /// Wall-clock seconds since the Unix epoch at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wall-clock nanoseconds at system time 0.
    pub wc_nsec: u32,
    /// Wall-clock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture-specific state.
    pub arch: ArchSharedInfo,
}

const _: () = assert!(core::mem::size_of::<SharedInfo>() == 0xc00 + 16 + 48);
const _: () = assert!(core::mem::size_of::<SharedInfo>() <= 4096);

/// Byte offset of vCPU `n`'s PV clock inside the shared-info page.
pub const fn vcpu_time_offset(vcpu: usize) -> usize {
    vcpu * core::mem::size_of::<VcpuInfo>() + core::mem::offset_of!(VcpuInfo, time)
}
