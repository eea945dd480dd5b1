//! The guest's virtual addresses, as its own 4-level page tables translate them: for the
//! debugger's memory accesses and for core dumps, which speak the addresses of the guest's ELF.
//!
//! The tables are guest memory and may be anything: every entry is read through
//! [`GuestRam::read_obj`] (a table outside RAM is simply "not mapped"), and listing all mappings
//! stops after [`MAX_MAPPINGS`] runs or [`MAX_ENTRIES`] entries read.

use crate::memory::GuestRam;
use vm_memory::GuestAddress;

const PRESENT: u64 = 1 << 0;
const HUGE: u64 = 1 << 7;
/// Bits 12–51 of an entry: the next table's (or the page's) physical address.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 4096;

/// The most runs [`mappings`] returns: enough for any real guest, bounded for a hostile one.
pub const MAX_MAPPINGS: usize = 4096;

/// The most table entries [`mappings`] reads: 4 GiB of 4 KiB pages, and a bound on the work a
/// guest whose tables point back at themselves can cause.
pub const MAX_ENTRIES: u32 = 1 << 21;

/// A run of virtual addresses mapped to contiguous guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address.
    pub va: u64,
    /// Guest-physical address of `va`.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Sign-extends bit 47, the way the CPU forms canonical 4-level addresses.
fn canonical(va: u64) -> u64 {
    (((va << 16) as i64) >> 16) as u64
}

/// The guest-physical address `va` maps to, and how many bytes from there stay within its page,
/// under the tables at `cr3`; `None` if not mapped (or the tables point outside RAM).
pub fn translate(ram: &GuestRam, cr3: u64, va: u64) -> Option<(u64, u64)> {
    if canonical(va) != va {
        return None;
    }
    let mut table = cr3 & ADDRESS_MASK;
    for level in (0..4).rev() {
        let shift = 12 + 9 * level;
        let index = (va >> shift) & 511;
        let entry: u64 = ram.read_obj(GuestAddress(table + index * 8)).ok()?;
        if entry & PRESENT == 0 {
            return None;
        }
        let leaf = level == 0 || (entry & HUGE != 0 && level <= 2);
        if leaf {
            let size = 1u64 << shift;
            let offset = va & (size - 1);
            let base = entry & ADDRESS_MASK & !(size - 1);
            return Some((base + offset, size - offset));
        }
        table = entry & ADDRESS_MASK;
    }
    None
}

/// Every mapped run under the tables at `cr3`, in address order, adjacent runs merged; at most
/// [`MAX_MAPPINGS`] runs, and only pages that lie inside RAM.
pub fn mappings(ram: &GuestRam, cr3: u64) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    let mut budget = MAX_ENTRIES;
    walk(ram, cr3 & ADDRESS_MASK, 3, 0, &mut out, &mut budget);
    out
}

fn walk(
    ram: &GuestRam,
    table: u64,
    level: u32,
    va_base: u64,
    out: &mut Vec<Mapping>,
    budget: &mut u32,
) {
    let shift = 12 + 9 * level;
    for index in 0..512u64 {
        if out.len() >= MAX_MAPPINGS || *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(entry) = ram.read_obj::<u64>(GuestAddress(table + index * 8)) else {
            return;
        };
        if entry & PRESENT == 0 {
            continue;
        }
        let va = canonical(va_base | index << shift);
        let leaf = level == 0 || (entry & HUGE != 0 && level <= 2);
        if !leaf {
            walk(ram, entry & ADDRESS_MASK, level - 1, va, out, budget);
            continue;
        }
        let size = 1u64 << shift;
        let gpa = entry & ADDRESS_MASK & !(size - 1);
        // Only what RAM holds (a page beyond it is MMIO or garbage).
        let len = size.min(ram.size().saturating_sub(gpa));
        if len < PAGE {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.va + last.len == va && last.gpa + last.len == gpa => last.len += len,
            _ => out.push(Mapping { va, gpa, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT): VA 0x40_0000 is a 2 MiB
    /// page at GPA 0x20_0000, VA 0x1000–0x3000 two 4 KiB pages at GPA 0x8000, and a high-half
    /// alias of the PT page at 0xffff_8000_0000_0000 (PML4 slot 256).
    fn ram() -> GuestRam {
        let ram = GuestRam::new(4 << 20).unwrap();
        let t = PRESENT | 2;
        ram.write_obj(GuestAddress(0x1000), &(0x2000 | t)).unwrap();
        ram.write_obj(GuestAddress(0x1000 + 256 * 8), &(0x5000 | t))
            .unwrap();
        ram.write_obj(GuestAddress(0x2000), &(0x3000 | t)).unwrap();
        ram.write_obj(GuestAddress(0x3000), &(0x4000 | t)).unwrap();
        ram.write_obj(GuestAddress(0x3000 + 2 * 8), &(0x20_0000 | t | HUGE))
            .unwrap();
        ram.write_obj(GuestAddress(0x4000 + 8), &(0x8000 | t))
            .unwrap();
        ram.write_obj(GuestAddress(0x4000 + 2 * 8), &(0x9000 | t))
            .unwrap();
        ram.write_obj(GuestAddress(0x5000), &(0x6000 | t)).unwrap();
        ram.write_obj(GuestAddress(0x6000), &(0x7000 | t)).unwrap();
        ram.write_obj(GuestAddress(0x7000), &(0xa000 | t)).unwrap();
        ram
    }

    #[test]
    fn translates_small_and_huge_pages() {
        let ram = ram();
        assert_eq!(translate(&ram, 0x1000, 0x1010), Some((0x8010, 0xff0)));
        assert_eq!(translate(&ram, 0x1000, 0x2000), Some((0x9000, 0x1000)));
        assert_eq!(translate(&ram, 0x1000, 0x3000), None);
        assert_eq!(
            translate(&ram, 0x1000, 0x40_1234),
            Some((0x20_1234, (2 << 20) - 0x1234))
        );
        assert_eq!(
            translate(&ram, 0x1000, 0xffff_8000_0000_0004),
            Some((0xa004, 0xffc))
        );
        // Not canonical.
        assert_eq!(translate(&ram, 0x1000, 0x0000_8000_0000_0000), None);
    }

    #[test]
    fn lists_merged_runs_in_order() {
        let m = mappings(&ram(), 0x1000);
        assert_eq!(
            m,
            [
                Mapping {
                    va: 0x1000,
                    gpa: 0x8000,
                    len: 0x2000
                },
                Mapping {
                    va: 0x40_0000,
                    gpa: 0x20_0000,
                    len: 2 << 20
                },
                Mapping {
                    va: 0xffff_8000_0000_0000,
                    gpa: 0xa000,
                    len: 0x1000
                },
            ]
        );
    }

    #[test]
    fn hostile_tables_are_bounded() {
        // Every PML4/PDPT/PD entry points back at the same table and every PT entry maps a page:
        // 512^4 pages if nothing stopped the walk.
        let ram = GuestRam::new(2 << 20).unwrap();
        for i in 0..512u64 {
            ram.write_obj(GuestAddress(0x1000 + i * 8), &(0x1000 | PRESENT))
                .unwrap();
        }
        let m = mappings(&ram, 0x1000);
        assert!(m.len() <= MAX_MAPPINGS);
        // Four full levels whose pages all lie outside RAM: 512^4 entries without a budget.
        for i in 0..512u64 {
            for (table, next) in [(0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x4000)] {
                ram.write_obj(GuestAddress(table + i * 8), &(next | PRESENT))
                    .unwrap();
            }
            ram.write_obj(GuestAddress(0x4000 + i * 8), &(0x10_0000_0000u64 | PRESENT))
                .unwrap();
        }
        assert!(mappings(&ram, 0x1000).is_empty());
        // Pointing outside RAM is "not mapped", not a panic.
        assert_eq!(translate(&ram, 0x7fff_f000, 0x1000), None);
    }
}
