//! The x86 instructions the SDK executes outside the boot and IDT code, each behind a safe
//! function: masking and unmasking interrupts on VT hardware, reading the interrupt flag and the
//! TSC, and the x2APIC end of interrupt.
//!
//! None of them touches memory: the worst a misplaced call can do is leave interrupts masked.
//! [`crate::pvops`] decides when they apply (on kvm_pvm, `cli` and `sti` trap and do not gate
//! delivery: the VIF byte does).

/// The x2APIC end-of-interrupt MSR.
pub const X2APIC_EOI_MSR: u32 = 0x80b;

/// `cli`: masks interrupts (VT-x/AMD-V; on kvm_pvm it traps and has no effect on delivery).
#[inline]
pub fn cli() {
    // SAFETY: the guest kernel runs at CPL0 on VT hardware, where CLI is allowed and has no
    // effect besides masking interrupts (on kvm_pvm it traps and is emulated).
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// `sti`: unmasks interrupts (VT-x/AMD-V).
#[inline]
pub fn sti() {
    // SAFETY: CPL0 on VT hardware: STI only unmasks interrupts.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

/// Whether RFLAGS.IF is set.
#[inline]
pub fn interrupt_flag() -> bool {
    let rflags: u64;
    // SAFETY: PUSHFQ/POP only read RFLAGS through the stack.
    unsafe {
        core::arch::asm!("pushfq", "pop {}", out(reg) rflags, options(nomem, preserves_flags));
    }
    rflags & (1 << 9) != 0
}

/// Reads the time-stamp counter (after an `lfence`, so the read does not move ahead of earlier
/// instructions).
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC only read the TSC (RDTSC is not trapped in any mode Parapet uses);
    // the fence keeps the read from moving ahead of earlier instructions.
    unsafe {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Acknowledges the interrupt in service at the local APIC (x2APIC EOI).
#[cfg(target_os = "none")]
#[inline]
pub fn x2apic_eoi() {
    // SAFETY: WRMSR to the x2APIC EOI register with value 0 only acknowledges the interrupt in
    // service; the VMM put the local APIC in x2APIC mode (docs/abi.md §7.2). On kvm_pvm it traps
    // and is handled in the kernel.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") X2APIC_EOI_MSR,
            in("eax") 0u32,
            in("edx") 0u32,
            options(nomem, nostack, preserves_flags),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_counts_up() {
        let a = rdtsc();
        assert!(rdtsc() >= a);
    }
}
