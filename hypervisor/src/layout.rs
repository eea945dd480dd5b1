//! Where the domain builder puts things in guest-physical memory (docs/abi.md §2.2).
//!
//! Only the start-info address is part of the ABI; the guest reads everything else from it.

use std::ops::Range;

/// Page size.
pub const PAGE: u64 = 4096;
/// Start-info page (its GPA is passed in RSI).
pub const START_INFO: u64 = 0x1000;
/// Shared-info page.
pub const SHARED_INFO: u64 = 0x2000;
/// Hypercall page.
pub const HYPERCALL_PAGE: u64 = 0x3000;
/// PVM VIF page.
pub const VIF_PAGE: u64 = 0x4000;
/// Console ring page.
pub const CONSOLE_PAGE: u64 = 0x5000;
/// GDT.
pub const GDT: u64 = 0x6000;
/// 64-bit TSS.
pub const TSS: u64 = 0x7000;
/// Emergency stack for IST1.
pub const EMERGENCY_STACK: Range<u64> = 0x8000..0xc000;
/// Grant table (docs/abi.md §8): 32 frames, 16384 entries (Xen's usual default), enough for
/// a ring's worth of 1 MiB block requests besides the other devices.
pub const GRANT_TABLE: Range<u64> = 0xc000..0x2c000;
/// Initial page tables: PML4, PDPT, the 4 KiB table of the first 2 MiB, then one PD per GiB.
pub const PAGE_TABLES: Range<u64> = 0x2c000..0x100000;
/// End of the boot area; kernels load at or above it.
pub const BOOT_END: u64 = parapet_abi::start_info::KERNEL_MIN_ADDR;

/// GDT selectors (docs/abi.md §2.3).
pub use parapet_abi::start_info::gdt as selector;

/// Guest RAM bounds: enough for the boot area plus a kernel, and no more than the initial page
/// tables can map.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Largest kernel image extent: its 4 KiB page tables must fit the page-table area.
pub const MAX_KERNEL_SPAN: u64 = 256 << 20;
/// Largest guest RAM: everything below the scratch MMIO page (docs/abi.md §9.3).
pub const MAX_MEMORY: u64 = parapet_abi::emulated::SCRATCH_MMIO;
/// Guest RAM must be a whole number of these (the identity map uses 2 MiB pages).
pub const MEMORY_GRANULE: u64 = 2 << 20;

const _: () = assert!(
    PAGE_TABLES.start + (2 + (MAX_MEMORY >> 30) + 2 + (MAX_KERNEL_SPAN >> 21) + 2) * PAGE
        <= PAGE_TABLES.end,
    "the page-table area must hold the tables for MAX_MEMORY"
);
