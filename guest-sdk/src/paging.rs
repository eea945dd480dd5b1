//! The domain builder's page tables, as far as the SDK touches them: the stack guard page.
//!
//! The linker script reserves one page below the boot stack (`__stack_guard`). At boot,
//! `unmap_stack_guard` clears that page's present bit in the initial page tables (found through
//! `StartInfo::pt_base`, never by reading CR3), so a kernel stack overflow raises a page fault
//! that cannot push its frame, which makes it a double fault; the double-fault gate runs on IST1
//! and reports it. Without the guard the stack would silently grow into the kernel image.
//!
//! This works while the guard lies in the first 2 MiB, which the builder maps with 4 KiB pages
//! (docs/abi.md §2.3); for a larger kernel whose guard falls under a 2 MiB page the guard is left
//! mapped. Entries are only ever made non-present, so the kvm_pvm rule that every present entry
//! has U/S=1 keeps holding.

/// Page-table entry bit: present.
const PRESENT: u64 = 1 << 0;
/// Page-table entry bit (PD and PDPT level): the entry maps a large page.
const LARGE: u64 = 1 << 7;
/// Bits 12–51 of an entry: the physical address of the next table or the page.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Where the 4 KiB leaf entry that maps `va` lives, following the 4-level tables at `pml4`
/// with `read(table_entry_address)`. `None` if some level is not present or maps a large page.
pub fn leaf_entry_address(pml4: u64, va: u64, mut read: impl FnMut(u64) -> u64) -> Option<u64> {
    let mut table = pml4;
    for shift in [39u32, 30, 21] {
        let entry = read(table + ((va >> shift) & 511) * 8);
        if entry & PRESENT == 0 || (shift != 39 && entry & LARGE != 0) {
            return None;
        }
        table = entry & ADDRESS_MASK;
    }
    Some(table + ((va >> 12) & 511) * 8)
}

/// Unmaps the stack guard page. Called once by the boot code, on the boot stack, before anything
/// else runs. Returns whether the guard is in place.
#[cfg(target_os = "none")]
pub(crate) fn unmap_stack_guard(info: &parapet_abi::start_info::StartInfo) -> bool {
    unsafe extern "C" {
        /// The page below the boot stack (linker script).
        static __stack_guard: u8;
    }
    let guard = (&raw const __stack_guard) as u64;
    let ram_end = info
        .nr_pages
        .saturating_mul(parapet_abi::start_info::PAGE_SIZE);
    let in_ram = |addr: u64| addr.checked_add(8).is_some_and(|end| end <= ram_end);
    let read = |addr: u64| {
        if in_ram(addr) {
            // SAFETY: the builder's page tables lie in guest RAM, which is identity-mapped and
            // readable; `addr` is an aligned entry inside it.
            unsafe { (addr as *const u64).read_volatile() }
        } else {
            0
        }
    };
    let Some(entry) = leaf_entry_address(info.pt_base, guard, read).filter(|&a| in_ram(a)) else {
        return false;
    };
    // SAFETY: `entry` is the leaf entry mapping the guard page, which nothing uses: it is
    // reserved for this purpose below the stack. Clearing its present bit changes no other
    // mapping; INVLPG drops any cached translation of it.
    unsafe {
        let pte = entry as *mut u64;
        pte.write_volatile(pte.read_volatile() & !PRESENT);
        core::arch::asm!("invlpg [{}]", in(reg) guard, options(nostack, preserves_flags));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn walks_four_levels_to_a_4k_entry() {
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; PD[1] is a 2 MiB page.
        let mut mem = HashMap::new();
        mem.insert(0x1000, 0x2000 | 7);
        mem.insert(0x2000, 0x3000 | 7);
        mem.insert(0x3000, 0x4000 | 7);
        mem.insert(0x3008, 0x20_0000 | 0x87);
        let read = |a: u64| mem.get(&a).copied().unwrap_or(0);
        assert_eq!(
            leaf_entry_address(0x1000, 0x11_2000, read),
            Some(0x4000 + 0x112 * 8)
        );
        assert_eq!(
            leaf_entry_address(0x1000, 0x20_1000, read),
            None,
            "large page"
        );
        assert_eq!(
            leaf_entry_address(0x1000, 0x4000_0000, read),
            None,
            "not present"
        );
    }
}
