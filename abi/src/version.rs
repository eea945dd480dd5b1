//! `xen_version` (hypercall 17): who is the hypervisor, and what does it offer.
//!
//! `xen_version(cmd, arg_gpa)`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Returns `(major << 16) | minor` of the Parapet ABI. `arg` is ignored.
pub const XENVER_VERSION: u64 = 0;
/// Writes a 16-byte NUL-padded extra-version string (e.g. `-parapet`) to `arg`.
pub const XENVER_EXTRAVERSION: u64 = 1;
/// Reads and writes a [`FeatureInfo`] at `arg`: fills `submap` for `submap_idx`.
pub const XENVER_GET_FEATURES: u64 = 6;

/// ABI major version reported by `XENVER_VERSION`.
pub const ABI_VERSION_MAJOR: u32 = 0;
/// ABI minor version reported by `XENVER_VERSION`.
pub const ABI_VERSION_MINOR: u32 = 2;
/// Length of the extra-version string.
pub const EXTRAVERSION_LEN: usize = 16;

/// Xen's `xen_feature_info`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FeatureInfo {
    /// Which 32-bit feature word the guest asks for.
    pub submap_idx: u32,
    /// The feature bits of that word.
    pub submap: u32,
}

/// Feature bits of submap 0 (Xen's `XENFEAT_*` numbering).
pub mod features {
    /// The guest may write its own page tables.
    pub const WRITABLE_PAGE_TABLES: u32 = 1 << 0;
    /// The guest sees guest-physical addresses only (no machine frames).
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 1 << 2;
    /// The guest kernel runs in (virtual) supervisor mode.
    pub const SUPERVISOR_MODE_KERNEL: u32 = 1 << 3;
}
