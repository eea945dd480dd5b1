//! The initial page tables: all of guest RAM mapped 1:1, W^X.
//!
//! Every entry at every level carries U/S=1, which kvm_pvm requires for native execution and
//! which is harmless under VT-x/AMD-V (the guest runs at CPL 0, and SMEP/SMAP are off). RAM and
//! the scratch MMIO page use PML4 slot 0, so slot 256 (reserved by kvm_pvm) never is.
//!
//! The boot area and the kernel image get 4 KiB pages with their own rights: the hypercall page
//! is read/execute, start-info read-only, each kernel page as its ELF segments say (text
//! read/execute, rodata read-only, data read/write). All other RAM is read/write and never
//! executable, in 2 MiB pages.

use crate::layout::{self, PAGE};
use crate::loader::KernelImage;
use crate::memory::GuestRam;
use parapet_abi::Errno;
use std::ops::Range;
use vm_memory::GuestAddress;
use zerocopy::IntoBytes;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;

/// Table entry for the next level down.
const TABLE: u64 = PRESENT | WRITABLE | USER;
/// A 2 MiB page of ordinary RAM.
const HUGE_DATA: u64 = PRESENT | WRITABLE | USER | HUGE | NO_EXECUTE;
const HUGE_PAGE: u64 = 2 << 20;

/// Access rights of a 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    None,
    Read,
    ReadExecute,
    ReadWrite,
    /// Only for a page that a writable and an executable segment share.
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

/// Rights of the 4 KiB page at `gpa`. `patchable_hypercall_page`: see
/// [`BootParams::patchable_hypercall_page`](super::BootParams::patchable_hypercall_page).
fn page_access(
    gpa: u64,
    image: &KernelImage,
    kernel: &Range<u64>,
    patchable_hypercall_page: bool,
) -> Access {
    match gpa {
        0 => Access::None,
        layout::START_INFO => Access::Read,
        layout::HYPERCALL_PAGE if patchable_hypercall_page => Access::All,
        layout::HYPERCALL_PAGE => Access::ReadExecute,
        g if g < layout::BOOT_END => Access::ReadWrite,
        g if kernel.contains(&g) => {
            let touching = image
                .segments
                .iter()
                .filter(|s| s.gpa < g + PAGE && g < s.end());
            let (mut any, mut write, mut exec) = (false, false, false);
            for s in touching {
                any = true;
                write |= s.writable;
                exec |= s.executable;
            }
            match (any, write, exec) {
                (false, _, _) | (true, true, false) => Access::ReadWrite,
                (true, false, false) => Access::Read,
                (true, false, true) => Access::ReadExecute,
                (true, true, true) => Access::All,
            }
        }
        _ => Access::ReadWrite,
    }
}

/// The pages below `end` that the guest's initial mappings do not let it write (or do not map),
/// merged into ranges.
pub fn read_only_ranges(
    image: &KernelImage,
    end: u64,
    patchable_hypercall_page: bool,
) -> Vec<Range<u64>> {
    let extent = image.extent();
    let kernel = (extent.start & !(PAGE - 1))..extent.end.next_multiple_of(PAGE);
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for gpa in (0..end.max(kernel.end)).step_by(PAGE as usize) {
        let writable =
            page_access(gpa, image, &kernel, patchable_hypercall_page).pte_flags() & WRITABLE != 0;
        if writable {
            continue;
        }
        match ranges.last_mut() {
            Some(r) if r.end == gpa => r.end += PAGE,
            _ => ranges.push(gpa..gpa + PAGE),
        }
    }
    ranges
}

/// Hands out page-table pages from the page-table area.
struct TableAllocator {
    next: u64,
}

impl TableAllocator {
    fn alloc(&mut self) -> Result<u64, Errno> {
        let page = self.next;
        if page >= layout::PAGE_TABLES.end {
            return Err(Errno::ENOMEM);
        }
        self.next += PAGE;
        Ok(page)
    }
}

/// Builds the tables for `ram` and `image`; returns (CR3, number of table pages).
pub fn build(
    ram: &GuestRam,
    image: &KernelImage,
    patchable_hypercall_page: bool,
) -> Result<(u64, u64), Errno> {
    let mut tables = TableAllocator {
        next: layout::PAGE_TABLES.start,
    };
    let extent = image.extent();
    let kernel = (extent.start & !(PAGE - 1))..extent.end.next_multiple_of(PAGE);
    let fine_grained = |chunk: Range<u64>| {
        chunk.start == 0 || (chunk.start < kernel.end && kernel.start < chunk.end)
    };

    let pml4 = tables.alloc()?;
    let pdpt = tables.alloc()?;
    ram.write_obj(GuestAddress(pml4), &(pdpt | TABLE))?;
    for gib in 0..ram.size().div_ceil(1 << 30) {
        let pd = tables.alloc()?;
        ram.write_obj(GuestAddress(pdpt + gib * 8), &(pd | TABLE))?;
        let mut pd_entries = [0u64; 512];
        for (i, pde) in pd_entries.iter_mut().enumerate() {
            let base = (gib << 30) + i as u64 * HUGE_PAGE;
            if base >= ram.size() {
                break;
            }
            if !fine_grained(base..base + HUGE_PAGE) {
                *pde = base | HUGE_DATA;
                continue;
            }
            let pt = tables.alloc()?;
            *pde = pt | TABLE;
            let mut pt_entries = [0u64; 512];
            for (j, pte) in pt_entries.iter_mut().enumerate() {
                let gpa = base + j as u64 * PAGE;
                if gpa < ram.size() {
                    *pte = gpa
                        | page_access(gpa, image, &kernel, patchable_hypercall_page).pte_flags();
                }
            }
            ram.write(GuestAddress(pt), pt_entries.as_bytes())?;
        }
        ram.write(GuestAddress(pd), pd_entries.as_bytes())?;
    }
    map_scratch_mmio(ram, pml4, &mut tables)?;
    Ok((pml4, (tables.next - layout::PAGE_TABLES.start) / PAGE))
}

/// Maps the emulated scratch register's MMIO page (no memory slot backs it: every access exits
/// to the VMM), read/write, never executable, reusing the tables that already map RAM.
fn map_scratch_mmio(ram: &GuestRam, pml4: u64, tables: &mut TableAllocator) -> Result<(), Errno> {
    use parapet_abi::emulated::SCRATCH_MMIO as VA;
    const _: () = assert!(VA >> 39 != 256, "never PML4 slot 256");
    let mut table = pml4;
    for level in [3u32, 2, 1] {
        let slot = table + ((VA >> (12 + 9 * level)) & 511) * 8;
        let entry: u64 = ram.read_obj(GuestAddress(slot))?;
        table = if entry & PRESENT != 0 {
            debug_assert_eq!(
                entry & HUGE,
                0,
                "the scratch page's tables map nothing else"
            );
            entry & 0x000f_ffff_ffff_f000
        } else {
            let next = tables.alloc()?;
            ram.write_obj(GuestAddress(slot), &(next | TABLE))?;
            next
        };
    }
    ram.write_obj(
        GuestAddress(table + ((VA >> 12) & 511) * 8),
        &(VA | Access::ReadWrite.pte_flags()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::Segment;

    fn image(segments: &[(u64, u64, bool, bool)]) -> KernelImage {
        KernelImage {
            entry: segments[0].0,
            segments: segments
                .iter()
                .map(|&(gpa, len, writable, executable)| Segment {
                    gpa,
                    file: 0..0,
                    data: Vec::new(),
                    mem_size: len,
                    executable,
                    writable,
                })
                .collect(),
        }
    }

    /// The leaf entry for `va`, walking from `cr3`, and whether it is a 2 MiB page.
    fn walk(ram: &GuestRam, cr3: u64, va: u64) -> (u64, bool) {
        let mut table = cr3;
        for shift in [39, 30, 21, 12] {
            let e: u64 = ram
                .read_obj(GuestAddress(table + ((va >> shift) & 511) * 8))
                .unwrap();
            if e & PRESENT != 0 {
                assert_eq!(e & USER, USER, "U/S at level {shift} for {va:#x}");
            }
            if shift == 12 || e & HUGE != 0 {
                return (e, shift == 21);
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        unreachable!()
    }

    fn target(entry: (u64, bool), va: u64) -> u64 {
        let (e, huge) = entry;
        let mask = if huge { HUGE_PAGE - 1 } else { PAGE - 1 };
        (e & 0x000f_ffff_ffff_f000 & !mask) | (va & mask)
    }

    #[test]
    fn maps_ram_identity_with_user_bit_everywhere() {
        let ram = GuestRam::new(3 << 30).unwrap();
        let img = image(&[(0x10_0000, 0x1000, false, true)]);
        let (cr3, frames) = build(&ram, &img, false).unwrap();
        assert_eq!(
            frames,
            2 + 3 + 1 + 2,
            "PML4, PDPT, 3 PDs, the low PT, the MMIO page's PD and PT"
        );
        let mmio = walk(&ram, cr3, parapet_abi::emulated::SCRATCH_MMIO);
        assert_eq!(
            target(mmio, parapet_abi::emulated::SCRATCH_MMIO),
            parapet_abi::emulated::SCRATCH_MMIO
        );
        assert_eq!(
            mmio.0 & (PRESENT | WRITABLE | NO_EXECUTE),
            PRESENT | WRITABLE | NO_EXECUTE
        );
        for va in [
            0x1000u64,
            0x3000,
            0x10_0000,
            0x20_0000,
            (2 << 30) + (5 << 21) + 0x123,
        ] {
            let e = walk(&ram, cr3, va);
            assert_eq!(e.0 & PRESENT, PRESENT);
            assert_eq!(target(e, va), va);
        }
    }

    #[test]
    fn read_only_ranges_cover_what_the_guest_cannot_write() {
        let img = image(&[
            (0x10_0000, 0x2000, false, true),
            (0x10_2000, 0x1000, false, false),
            (0x10_3000, 0x1000, true, false),
        ]);
        let ro = read_only_ranges(&img, layout::BOOT_END, false);
        assert_eq!(
            ro,
            vec![
                0..layout::START_INFO + PAGE,
                layout::HYPERCALL_PAGE..layout::HYPERCALL_PAGE + PAGE,
                0x10_0000..0x10_3000,
            ]
        );
    }

    #[test]
    fn is_w_xor_x() {
        let ram = GuestRam::new(64 << 20).unwrap();
        // text, rodata, data spanning past the first 2 MiB.
        let img = image(&[
            (0x10_0000, 0x2000, false, true),
            (0x10_2000, 0x1000, false, false),
            (0x10_3000, 0x30_0000, true, false),
        ]);
        let (cr3, _) = build(&ram, &img, false).unwrap();
        let flags = |va| walk(&ram, cr3, va).0 & (PRESENT | WRITABLE | NO_EXECUTE);
        assert_eq!(flags(0), 0, "null page unmapped");
        assert_eq!(flags(layout::START_INFO), PRESENT | NO_EXECUTE);
        assert_eq!(flags(layout::HYPERCALL_PAGE), PRESENT);
        assert_eq!(flags(layout::SHARED_INFO), PRESENT | WRITABLE | NO_EXECUTE);
        assert_eq!(flags(0x10_1000), PRESENT, "text");
        assert_eq!(flags(0x10_2000), PRESENT | NO_EXECUTE, "rodata");
        assert_eq!(flags(0x10_3000), PRESENT | WRITABLE | NO_EXECUTE, "data");
        assert_eq!(
            flags(0x40_2000),
            PRESENT | WRITABLE | NO_EXECUTE,
            "data past 2 MiB"
        );
        assert!(!walk(&ram, cr3, 0x40_2000).1, "kernel pages are 4 KiB");
        assert!(walk(&ram, cr3, 0x80_0000).1, "free RAM uses 2 MiB pages");
        assert_eq!(
            flags(0x80_0000),
            PRESENT | WRITABLE | NO_EXECUTE,
            "free RAM"
        );
        // Nothing maps past the end of RAM.
        let pd = layout::PAGE_TABLES.start + 2 * PAGE;
        assert_eq!(ram.read_obj::<u64>(GuestAddress(pd + 32 * 8)).unwrap(), 0);
    }
}
