//! Debugging a guest: the gdb stub (`parapet run --gdb`) and core dumps (`--core`). How each
//! works on each host is in docs/debugging.md.

pub mod arch;
pub mod core_dump;
pub mod gdb;
pub mod listen;
pub mod serial;

use crate::outcome::GuestExit;
use parapet_abi::sched::FaultReport;

/// The general registers in gdb's (and the core's) order: RAX RBX RCX RDX RSI RDI RBP RSP
/// R8–R15.
pub fn gprs_from_kvm(r: &kvm_bindings::kvm_regs) -> [u64; 16] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

/// Puts general registers in [`gprs_from_kvm`]'s order into `r`.
pub fn set_gprs(r: &mut kvm_bindings::kvm_regs, g: [u64; 16]) {
    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) =
        (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
        (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

/// [`gprs_from_kvm`]'s order from a guest's fault report, which keeps RSP apart.
pub fn gprs_from_report(f: &FaultReport) -> [u64; 16] {
    let g = f.gprs;
    [
        g[0], g[1], g[2], g[3], g[4], g[5], g[6], f.rsp, g[7], g[8], g[9], g[10], g[11], g[12],
        g[13], g[14],
    ]
}

/// The Unix signal a user expects for how the guest died (as a process would have), for gdb's
/// stop reply and the core's `NT_PRSTATUS`.
pub fn fatal_signal(exit: &GuestExit) -> u8 {
    let signal = match exit {
        GuestExit::Crash => libc::SIGABRT,
        GuestExit::Fault(info) => match info.report.as_ref().map(|r| r.vector) {
            Some(0 | 16 | 19) => libc::SIGFPE,
            Some(6) => libc::SIGILL,
            Some(1 | 3) => libc::SIGTRAP,
            Some(17) => libc::SIGBUS,
            _ => libc::SIGSEGV,
        },
        _ => libc::SIGKILL,
    };
    signal as u8
}
