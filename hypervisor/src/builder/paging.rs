//! The initial page tables: all of guest RAM mapped 1:1.
//!
//! Every entry at every level carries U/S=1, which kvm_pvm requires for native execution and
//! which is harmless under VT-x/AMD-V (the guest runs at CPL 0, and SMEP/SMAP are off). Only PML4
//! slot 0 is used, so slot 256 (reserved by kvm_pvm) never is.

use super::layout::{self, PAGE};
use crate::memory::GuestRam;
use parapet_abi::Errno;
use zerocopy::IntoBytes;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;

/// Table entry for the next level down.
const TABLE: u64 = PRESENT | WRITABLE | USER;

/// Access rights of a 4 KiB page in the first 2 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    None,
    Read,
    ReadExecute,
    ReadWrite,
    All,
}

impl Access {
    fn pte_flags(self) -> u64 {
        match self {
            Access::None => 0,
            Access::Read => PRESENT | USER | NO_EXECUTE,
            Access::ReadExecute => PRESENT | USER,
            Access::ReadWrite => PRESENT | WRITABLE | USER | NO_EXECUTE,
            Access::All => PRESENT | WRITABLE | USER,
        }
    }
}

/// Rights of the boot-area page at `gpa` (docs/abi.md §2.2).
fn boot_page_access(gpa: u64) -> Access {
    match gpa {
        0 => Access::None,
        layout::START_INFO => Access::Read,
        layout::HYPERCALL_PAGE => Access::ReadExecute,
        g if g < layout::BOOT_END => Access::ReadWrite,
        _ => Access::All,
    }
}

/// Builds the tables for `ram` in the page-table area; returns (CR3, number of table pages).
pub fn build(ram: &GuestRam) -> Result<(u64, u64), Errno> {
    let pml4 = layout::PAGE_TABLES.start;
    let pdpt = pml4 + PAGE;
    let low_pt = pdpt + PAGE;
    let first_pd = low_pt + PAGE;
    let gib = ram.size().div_ceil(1 << 30);

    ram.write_obj(pml4, &(pdpt | TABLE))?;
    for g in 0..gib {
        let pd = first_pd + g * PAGE;
        ram.write_obj(pdpt + g * 8, &(pd | TABLE))?;
        let mut entries = [0u64; 512];
        for (i, e) in entries.iter_mut().enumerate() {
            let gpa = (g << 30) + ((i as u64) << 21);
            if gpa < ram.size() {
                *e = gpa | PRESENT | WRITABLE | USER | HUGE;
            }
        }
        ram.write(pd, entries.as_bytes())?;
    }
    // The first 2 MiB in 4 KiB pages, so the boot structures get their own rights.
    ram.write_obj(first_pd, &(low_pt | TABLE))?;
    let mut pt = [0u64; 512];
    for (i, e) in pt.iter_mut().enumerate() {
        let gpa = i as u64 * PAGE;
        *e = gpa | boot_page_access(gpa).pte_flags();
    }
    ram.write(low_pt, pt.as_bytes())?;
    Ok((pml4, 3 + gib))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ram: &GuestRam, table: u64, index: u64) -> u64 {
        ram.read_obj(table + index * 8).unwrap()
    }

    #[test]
    fn maps_ram_identity_with_user_bit_everywhere() {
        let ram = GuestRam::new(3 << 30).unwrap();
        let (cr3, frames) = build(&ram).unwrap();
        assert_eq!(frames, 6);
        // Walk a few addresses through all four levels.
        for va in [
            0x1000u64,
            0x3000,
            0x10_0000,
            0x20_0000,
            (2 << 30) + (5 << 21) + 0x123,
        ] {
            let l4 = entry(&ram, cr3, (va >> 39) & 511);
            assert_eq!(l4 & USER, USER);
            let l3 = entry(&ram, l4 & !0xfff, (va >> 30) & 511);
            assert_eq!(l3 & USER, USER);
            let l2 = entry(&ram, l3 & !0xfff, (va >> 21) & 511);
            assert_eq!(l2 & USER, USER);
            let pa = if l2 & HUGE != 0 {
                (l2 & 0x000f_ffff_ffe0_0000) | (va & 0x1f_ffff)
            } else {
                let l1 = entry(&ram, l2 & !0xfff, (va >> 12) & 511);
                assert_eq!(l1 & (USER | PRESENT), USER | PRESENT, "va {va:#x}");
                (l1 & 0x000f_ffff_ffff_f000 & !NO_EXECUTE) | (va & 0xfff)
            };
            assert_eq!(pa, va);
        }
    }

    #[test]
    fn protects_boot_pages() {
        let ram = GuestRam::new(4 << 20).unwrap();
        build(&ram).unwrap();
        let low_pt = layout::PAGE_TABLES.start + 2 * PAGE;
        assert_eq!(entry(&ram, low_pt, 0) & PRESENT, 0, "null page unmapped");
        let hc = entry(&ram, low_pt, layout::HYPERCALL_PAGE / PAGE);
        assert_eq!(
            hc & (WRITABLE | NO_EXECUTE),
            0,
            "hypercall page is read/execute"
        );
        let si = entry(&ram, low_pt, layout::START_INFO / PAGE);
        assert_eq!(si & WRITABLE, 0, "start info is read-only");
        // Nothing maps past the end of RAM.
        let pd = layout::PAGE_TABLES.start + 3 * PAGE;
        assert_eq!(entry(&ram, pd, 2) & PRESENT, 0);
    }
}
