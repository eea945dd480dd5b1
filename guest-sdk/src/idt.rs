//! The interrupt descriptor table: every CPU exception is reported to the hypervisor.
//!
//! The boot code installs a 32-entry IDT (`idt::install`, guest kernels only) before anything can
//! fault. Each exception vector 0–31 has an assembly stub that pushes a dummy error code where
//! the CPU pushes none, then the vector number, then all general registers, and calls
//! `exception_handler`. That builds a [`FaultReport`] (with CR2 for a page fault) and hands it
//! to the VMM with `sched_op(SCHEDOP_fault)`; the VMM prints the exception, the symbol and the
//! registers and stops the domain (exit status 102). Should the VMM refuse the report, the
//! handler prints it itself and stops the domain as crashed. No exception ends in a silent triple
//! fault.
//!
//! The IDT has all 256 vectors. Vector `StartInfo::upcall_vector` (≥ 32) is the event-channel
//! upcall: its stub saves every caller-saved register, aligns the stack, calls the SDK's upcall
//! handler ([`crate::event_channel`]) on the interrupted stack, restores the registers, sets the VIF
//! byte on kvm_pvm (which clears it when it delivers through the gate; the handler keeps it
//! clear so that upcalls do not nest) and returns with `iretq`. Every other vector at or above
//! 32 has a non-present gate, so an unexpected interrupt raises #NP, which is reported like any
//! exception. The double-fault gate uses IST1 (the VMM's emergency stack, docs/abi.md §2.3), so
//! a kernel stack overflow is reported too.
//!
//! A guest that programs an interrupt source of its own (for instance the local APIC timer)
//! installs a handler for its vector with [`set_interrupt_handler`]: that makes the vector's
//! gate present, pointing at one of a table of small per-vector stubs that push the vector and
//! share the upcall stub's save/restore path. The SDK acknowledges the interrupt (x2APIC EOI)
//! and then calls the handler, in interrupt context with interrupts masked, with the vector.
//! [`clear_interrupt_handler`] makes the gate non-present again.

use parapet_abi::sched::{FaultReport, exception_name};

/// The architectural exception vectors, each with a reporting stub.
pub const NR_VECTORS: usize = 32;
/// Gates in the IDT: every vector.
pub const IDT_ENTRIES: usize = 256;

/// The double-fault vector, whose gate switches to IST1.
pub const DOUBLE_FAULT: u8 = 8;
/// The page-fault vector, whose handler reads CR2.
pub const PAGE_FAULT: u8 = 14;

/// The kernel code selector of the domain builder's GDT. Not read from CS at run time: on
/// kvm_pvm, CS reads as the host's CPL3 selector.
pub const KERNEL_CODE_SELECTOR: u16 = parapet_abi::start_info::gdt::KERNEL_CODE;

/// Whether the CPU pushes an error code for exception `vector`.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// One 16-byte 64-bit IDT gate descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 0–2: interrupt stack table index (0 = none).
    ist: u8,
    /// Present (bit 7), DPL (bits 5–6), type (bits 0–3).
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    /// Present, DPL0, 64-bit interrupt gate (which masks interrupts on entry).
    const INTERRUPT_GATE: u8 = 0x8e;

    /// A non-present gate: delivering through it raises #NP.
    pub const NOT_PRESENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// Whether the gate is present.
    pub const fn is_present(&self) -> bool {
        self.type_attr & 0x80 != 0
    }

    /// A present DPL0 interrupt gate to `handler` in code segment `selector`, switching to
    /// interrupt stack `ist` (1–7) or staying on the current stack (0).
    pub const fn interrupt(handler: u64, selector: u16, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist & 7,
            type_attr: Self::INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }

    /// The handler address this gate points to.
    pub const fn handler(&self) -> u64 {
        self.offset_low as u64 | (self.offset_mid as u64) << 16 | (self.offset_high as u64) << 32
    }
}

/// The stack the common stub builds: the saved registers, the vector and error code, and the
/// frame the CPU pushed.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct ExceptionFrame {
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8–R15 ([`FaultReport::gprs`] order).
    pub gprs: [u64; 15],
    /// Exception vector.
    pub vector: u64,
    /// The CPU's error code, or 0 pushed by the stub.
    pub error_code: u64,
    /// Interrupted RIP.
    pub rip: u64,
    /// Interrupted CS.
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted RSP.
    pub rsp: u64,
    /// Interrupted SS.
    pub ss: u64,
}

impl ExceptionFrame {
    /// The report `SCHEDOP_fault` takes; `cr2` is only kept for a page fault.
    pub fn fault_report(&self, cr2: u64) -> FaultReport {
        FaultReport {
            vector: self.vector,
            error_code: self.error_code,
            cr2: if self.vector == u64::from(PAGE_FAULT) {
                cr2
            } else {
                0
            },
            rip: self.rip,
            cs: self.cs,
            rflags: self.rflags,
            rsp: self.rsp,
            ss: self.ss,
            gprs: self.gprs,
        }
    }
}

/// Writes `report` as text (used only when the VMM refuses `SCHEDOP_fault`).
pub fn write_fault_report(out: &mut impl core::fmt::Write, r: &FaultReport) -> core::fmt::Result {
    writeln!(
        out,
        "unhandled exception {} ({}) error {:#x} at rip {:#x} cr2 {:#x} rsp {:#x} rflags {:#x}",
        r.vector,
        exception_name(r.vector),
        r.error_code,
        r.rip,
        r.cr2,
        r.rsp,
        r.rflags
    )?;
    for (name, value) in parapet_abi::sched::FAULT_GPR_NAMES.iter().zip(r.gprs) {
        write!(out, " {name}={value:#x}")?;
    }
    writeln!(out)
}

/// Reads CR2 (the faulting address of the last page fault). On kvm_pvm this traps and is
/// emulated.
#[cfg(target_os = "none")]
fn read_cr2() -> u64 {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects; the handlers run at (virtual) CPL0.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags))
    };
    cr2
}

/// Called by the common stub with the saved state; reports the exception and never returns.
#[cfg(target_os = "none")]
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let cr2 = if frame.vector == u64::from(PAGE_FAULT) {
        read_cr2()
    } else {
        0
    };
    let report = frame.fault_report(cr2);
    // Let the backend print everything the guest wrote before the VMM prints the report.
    crate::console::emergency_write(&[]);
    let err = crate::hypercall::report_fault(&report);
    let mut line = crate::console::LineBuffer::<{ crate::console::PRINT_BUFFER_SIZE }>::new();
    let _ = write_fault_report(&mut line, &report);
    let _ = core::fmt::Write::write_fmt(&mut line, format_args!("SCHEDOP_fault failed: {err}\n"));
    line.flush_emergency();
    crate::panic::crash()
}

#[cfg(target_os = "none")]
mod stubs {
    //! The per-vector entry stubs and the common stub that saves the registers.

    use super::{ExceptionFrame, exception_handler};

    // Keep the register layout the stubs build in step with `ExceptionFrame`.
    const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == 22 * 8);

    /// Saves RAX..R15 so that RAX ends up lowest (`ExceptionFrame::gprs` order), then calls
    /// `exception_handler(&frame)` on a 16-byte aligned stack. Never returns.
    #[unsafe(naked)]
    unsafe extern "C" fn exception_common() {
        core::arch::naked_asm!(
            "push r15", "push r14", "push r13", "push r12", "push r11", "push r10", "push r9",
            "push r8", "push rbp", "push rdi", "push rsi", "push rdx", "push rcx", "push rbx",
            "push rax",
            "mov rdi, rsp",
            "and rsp, -16",
            "cld",
            "call {handler}",
            "ud2",
            handler = sym exception_handler,
        )
    }

    macro_rules! stub {
        ($name:ident, $vector:literal, error_code) => {
            #[unsafe(naked)]
            unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "push {vector}",
                    "jmp {common}",
                    vector = const $vector,
                    common = sym exception_common,
                )
            }
        };
        ($name:ident, $vector:literal, no_error_code) => {
            #[unsafe(naked)]
            unsafe extern "C" fn $name() {
                core::arch::naked_asm!(
                    "push 0",
                    "push {vector}",
                    "jmp {common}",
                    vector = const $vector,
                    common = sym exception_common,
                )
            }
        };
    }

    macro_rules! stubs {
        ($($name:ident = $vector:literal $kind:ident;)*) => {
            $(stub!($name, $vector, $kind);)*
            /// The entry stub of each vector, indexed by vector.
            pub(super) static STUBS: [unsafe extern "C" fn(); super::NR_VECTORS] = [$($name),*];
        };
    }

    /// The event-channel upcall gate: saves the caller-saved registers, calls
    /// `event_channel::upcall_handler` on a 16-byte aligned stack, restores them, sets the VIF byte
    /// again on kvm_pvm (`UPCALL_VIF` holds its address, 0 elsewhere) and returns with `iretq`.
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn upcall_entry() {
        core::arch::naked_asm!(
            "push rax", "push rcx", "push rdx", "push rsi", "push rdi", "push r8", "push r9",
            "push r10", "push r11", "push rbp",
            "mov rbp, rsp",
            "and rsp, -16",
            "cld",
            "call {handler}",
            "mov rsp, rbp",
            "pop rbp", "pop r11", "pop r10", "pop r9", "pop r8", "pop rdi", "pop rsi", "pop rdx",
            "pop rcx",
            "mov rax, qword ptr [rip + {vif}]",
            "test rax, rax",
            "jz 2f",
            "mov byte ptr [rax], 1",
            "2:",
            "pop rax",
            "iretq",
            handler = sym crate::event_channel::upcall_handler,
            vif = sym super::UPCALL_VIF,
        )
    }

    /// The common path of the per-vector interrupt stubs (`parapet_interrupt_stubs`): the stub
    /// pushed the vector. Saves the caller-saved registers like `upcall_entry`, calls
    /// `interrupt_dispatch(vector)` on a 16-byte aligned stack, restores them, sets the VIF byte
    /// again on kvm_pvm, drops the vector and returns with `iretq`.
    #[unsafe(naked)]
    unsafe extern "C" fn interrupt_common() {
        core::arch::naked_asm!(
            "push rax", "push rcx", "push rdx", "push rsi", "push rdi", "push r8", "push r9",
            "push r10", "push r11", "push rbp",
            "mov rdi, qword ptr [rsp + 80]",
            "mov rbp, rsp",
            "and rsp, -16",
            "cld",
            "call {dispatch}",
            "mov rsp, rbp",
            "pop rbp", "pop r11", "pop r10", "pop r9", "pop r8", "pop rdi", "pop rsi", "pop rdx",
            "pop rcx",
            "mov rax, qword ptr [rip + {vif}]",
            "test rax, rax",
            "jz 2f",
            "mov byte ptr [rax], 1",
            "2:",
            "pop rax",
            "add rsp, 8",
            "iretq",
            dispatch = sym super::interrupt_dispatch,
            vif = sym super::UPCALL_VIF,
        )
    }

    // One stub per vector 32..=255, each 16-byte aligned so that vector v's stub is at
    // `parapet_interrupt_stubs + (v - 32) * INTERRUPT_STUB_SIZE`: `push imm32 v` (5 bytes), then
    // a jump to `interrupt_common` (at most 5 bytes).
    core::arch::global_asm!(
        ".pushsection .text.parapet_interrupt_stubs, \"ax\", @progbits",
        ".balign 16",
        ".globl parapet_interrupt_stubs",
        "parapet_interrupt_stubs:",
        ".set parapet_interrupt_vector, {first}",
        ".rept {count}",
        ".balign 16",
        ".byte 0x68",
        ".long parapet_interrupt_vector",
        "jmp {common}",
        ".set parapet_interrupt_vector, parapet_interrupt_vector + 1",
        ".endr",
        ".popsection",
        first = const super::NR_VECTORS,
        count = const super::IDT_ENTRIES - super::NR_VECTORS,
        common = sym interrupt_common,
    );

    unsafe extern "C" {
        /// The first per-vector stub (vector 32); see the `global_asm!` above.
        #[link_name = "parapet_interrupt_stubs"]
        static INTERRUPT_STUBS: [u8; 0];
    }

    /// The entry stub of interrupt vector `vector` (32–255).
    pub(super) fn interrupt_stub(vector: usize) -> u64 {
        debug_assert!((super::NR_VECTORS..super::IDT_ENTRIES).contains(&vector));
        (&raw const INTERRUPT_STUBS) as u64
            + ((vector - super::NR_VECTORS) * super::INTERRUPT_STUB_SIZE) as u64
    }

    stubs! {
        vector0 = 0 no_error_code;
        vector1 = 1 no_error_code;
        vector2 = 2 no_error_code;
        vector3 = 3 no_error_code;
        vector4 = 4 no_error_code;
        vector5 = 5 no_error_code;
        vector6 = 6 no_error_code;
        vector7 = 7 no_error_code;
        vector8 = 8 error_code;
        vector9 = 9 no_error_code;
        vector10 = 10 error_code;
        vector11 = 11 error_code;
        vector12 = 12 error_code;
        vector13 = 13 error_code;
        vector14 = 14 error_code;
        vector15 = 15 no_error_code;
        vector16 = 16 no_error_code;
        vector17 = 17 error_code;
        vector18 = 18 no_error_code;
        vector19 = 19 no_error_code;
        vector20 = 20 no_error_code;
        vector21 = 21 error_code;
        vector22 = 22 no_error_code;
        vector23 = 23 no_error_code;
        vector24 = 24 no_error_code;
        vector25 = 25 no_error_code;
        vector26 = 26 no_error_code;
        vector27 = 27 no_error_code;
        vector28 = 28 no_error_code;
        vector29 = 29 error_code;
        vector30 = 30 error_code;
        vector31 = 31 no_error_code;
    }
}

/// The VIF byte the upcall stub sets before `iretq` (kvm_pvm), or 0.
#[cfg(target_os = "none")]
static UPCALL_VIF: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The IDT. Built once at boot; afterwards only [`set_interrupt_handler`] and
/// [`clear_interrupt_handler`] change it, one gate at a time, with interrupts masked.
#[cfg(target_os = "none")]
static IDT: IdtTable = IdtTable(core::cell::UnsafeCell::new(
    [Gate::NOT_PRESENT; IDT_ENTRIES],
));

#[cfg(target_os = "none")]
struct IdtTable(core::cell::UnsafeCell<[Gate; IDT_ENTRIES]>);

// SAFETY: the table is written by `install` before interrupts are enabled and later only by
// `write_gate`, which masks interrupts and writes one gate with volatile stores; the CPU reads it
// only to deliver an interrupt. The guest has one vCPU.
#[cfg(target_os = "none")]
unsafe impl Sync for IdtTable {}

/// Writes gate `vector` of the loaded IDT. The caller masks interrupts.
#[cfg(target_os = "none")]
fn write_gate(vector: usize, gate: Gate) {
    assert!(vector < IDT_ENTRIES);
    // SAFETY: in bounds (checked above) of the 'static table (see `IdtTable`); a volatile store
    // so the compiler keeps it even though nothing in Rust reads the table.
    unsafe { IDT.0.get().cast::<Gate>().add(vector).write_volatile(gate) };
}

/// The upcall vector the IDT was built with, or 0.
static UPCALL_VECTOR: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The vector of the event-channel upcall gate (0 before boot or if start-info named none).
pub fn upcall_vector() -> u32 {
    UPCALL_VECTOR.load(core::sync::atomic::Ordering::Relaxed)
}

/// The spacing of the per-vector interrupt stubs.
#[cfg(target_os = "none")]
const INTERRUPT_STUB_SIZE: usize = 16;

/// A handler for an interrupt vector, installed with [`set_interrupt_handler`]. It runs in
/// interrupt context with interrupts masked, after the SDK has acknowledged the interrupt
/// (x2APIC EOI), and receives the vector. Keep it short; it must not block.
pub type InterruptHandler = fn(u8);

/// Why a vector cannot take an [`InterruptHandler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// Vectors 0–31 are CPU exceptions; the SDK reports them.
    #[error("vectors 0-31 are CPU exceptions")]
    Exception,
    /// The event-channel upcall vector belongs to [`crate::event_channel`].
    #[error("the vector is the event-channel upcall")]
    Upcall,
}

/// Installed interrupt handlers by vector, as `fn` addresses; 0 = none.
static INTERRUPT_HANDLERS: [core::sync::atomic::AtomicUsize; IDT_ENTRIES] =
    [const { core::sync::atomic::AtomicUsize::new(0) }; IDT_ENTRIES];

fn check_vector(vector: u8) -> Result<usize, VectorError> {
    let v = usize::from(vector);
    if v < NR_VECTORS {
        return Err(VectorError::Exception);
    }
    if v as u32 == upcall_vector() {
        return Err(VectorError::Upcall);
    }
    Ok(v)
}

fn to_interrupt_handler(raw: usize) -> Option<InterruptHandler> {
    (raw != 0).then(|| {
        // SAFETY: every non-zero value in `INTERRUPT_HANDLERS` was stored by
        // `set_interrupt_handler` from an `InterruptHandler`; fn pointers have the size of usize.
        unsafe { core::mem::transmute::<usize, InterruptHandler>(raw) }
    })
}

/// Installs `handler` for interrupt `vector` (32–255, not the upcall vector) and makes the
/// vector's gate present; returns the handler it replaces. Program the interrupt source only
/// after this.
pub fn set_interrupt_handler(
    vector: u8,
    handler: InterruptHandler,
) -> Result<Option<InterruptHandler>, VectorError> {
    let v = check_vector(vector)?;
    let _masked = crate::pvops::irq_save();
    let old = INTERRUPT_HANDLERS[v].swap(handler as usize, core::sync::atomic::Ordering::SeqCst);
    #[cfg(target_os = "none")]
    write_gate(
        v,
        Gate::interrupt(stubs::interrupt_stub(v), KERNEL_CODE_SELECTOR, 0),
    );
    Ok(to_interrupt_handler(old))
}

/// Removes the handler of interrupt `vector` and makes its gate non-present again (an
/// interrupt on it is then reported as #NP); returns the handler.
pub fn clear_interrupt_handler(vector: u8) -> Result<Option<InterruptHandler>, VectorError> {
    let v = check_vector(vector)?;
    let _masked = crate::pvops::irq_save();
    #[cfg(target_os = "none")]
    write_gate(v, Gate::NOT_PRESENT);
    let old = INTERRUPT_HANDLERS[v].swap(0, core::sync::atomic::Ordering::SeqCst);
    Ok(to_interrupt_handler(old))
}

/// The handler installed for interrupt `vector`, if any.
pub fn interrupt_handler(vector: u8) -> Option<InterruptHandler> {
    to_interrupt_handler(
        INTERRUPT_HANDLERS[usize::from(vector)].load(core::sync::atomic::Ordering::SeqCst),
    )
}

/// Called by `interrupt_common` with the vector: keeps interrupts masked (kvm_pvm already
/// cleared the VIF byte; the stub sets it again before `iretq`), acknowledges the interrupt at
/// the local APIC and runs the vector's handler.
#[cfg(target_os = "none")]
extern "C" fn interrupt_dispatch(vector: u64) {
    crate::pvops::irq_disable();
    crate::cpu::x2apic_eoi();
    if let Some(handler) = interrupt_handler(vector as u8) {
        handler(vector as u8);
    }
}

/// Builds the IDT and loads it with `lidt`. Called once by the boot code, before anything can
/// fault.
#[cfg(target_os = "none")]
pub(crate) fn install(info: &parapet_abi::start_info::StartInfo) {
    use core::sync::atomic::Ordering;

    let upcall = info.upcall_vector as usize;
    let upcall = (NR_VECTORS..IDT_ENTRIES)
        .contains(&upcall)
        .then_some(upcall);
    if info.flags & parapet_abi::start_info::flags::VIF != 0 {
        let vif = info.vif_page + parapet_abi::start_info::vif::IF as u64;
        UPCALL_VIF.store(vif, Ordering::Relaxed);
    }
    UPCALL_VECTOR.store(upcall.unwrap_or(0) as u32, Ordering::Relaxed);
    for vector in 0..IDT_ENTRIES {
        let gate = if Some(vector) == upcall {
            Gate::interrupt(
                stubs::upcall_entry as *const () as u64,
                KERNEL_CODE_SELECTOR,
                0,
            )
        } else if vector >= NR_VECTORS {
            Gate::NOT_PRESENT
        } else {
            let ist = if vector == usize::from(DOUBLE_FAULT) {
                parapet_abi::start_info::gdt::IST_EMERGENCY
            } else {
                0
            };
            Gate::interrupt(
                stubs::STUBS[vector] as usize as u64,
                KERNEL_CODE_SELECTOR,
                ist,
            )
        };
        write_gate(vector, gate);
    }
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (core::mem::size_of::<[Gate; IDT_ENTRIES]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: `IDT` is a 'static table of valid gates to stubs that never return (or, for the
    // upcall, return with `iretq`), so loading it only changes where exceptions go. LIDT reads
    // the 10-byte pointer from the stack.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    #[test]
    fn gates_encode_the_handler_address() {
        let g = Gate::interrupt(0xffff_8000_1234_5678, KERNEL_CODE_SELECTOR, 1);
        assert_eq!(g.handler(), 0xffff_8000_1234_5678);
        assert_eq!(g.selector, 0x10);
        assert_eq!(g.ist, 1);
        assert_eq!(g.type_attr, 0x8e);
    }

    #[test]
    fn interrupt_handlers_only_for_vectors_32_and_up() {
        fn h(_: u8) {}
        assert_eq!(set_interrupt_handler(14, h), Err(VectorError::Exception));
        assert_eq!(set_interrupt_handler(0x40, h), Ok(None));
        assert!(interrupt_handler(0x40).is_some());
        assert!(set_interrupt_handler(0x40, h).unwrap().is_some());
        assert!(clear_interrupt_handler(0x40).unwrap().is_some());
        assert!(interrupt_handler(0x40).is_none());
        assert!(!Gate::NOT_PRESENT.is_present());
        assert!(Gate::interrupt(0x1000, KERNEL_CODE_SELECTOR, 0).is_present());
    }

    #[test]
    fn error_code_vectors_match_the_sdm() {
        let with: std::vec::Vec<u8> = (0..32).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
    }

    #[test]
    fn reports_keep_cr2_only_for_page_faults() {
        let mut frame = ExceptionFrame {
            vector: 14,
            error_code: 2,
            rip: 0x10_0000,
            ..Default::default()
        };
        frame.gprs[0] = 0xaa;
        frame.gprs[14] = 0xff;
        let r = frame.fault_report(0x7f00_0000_0000);
        assert_eq!(
            (r.vector, r.error_code, r.cr2, r.rip),
            (14, 2, 0x7f00_0000_0000, 0x10_0000)
        );
        assert_eq!((r.gprs[0], r.gprs[14]), (0xaa, 0xff));
        frame.vector = 6;
        assert_eq!(frame.fault_report(0x1234).cr2, 0);

        let mut text = String::new();
        write_fault_report(&mut text, &r).unwrap();
        assert!(
            text.starts_with("unhandled exception 14 (#PF page fault)"),
            "{text}"
        );
        assert!(text.contains(" r15=0xff"), "{text}");
    }
}
