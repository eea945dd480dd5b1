//! How a guest run ended, the VMM's exit status for it, and fault reports.

use crate::memory::GuestRam;
use crate::symbols::SymbolTable;
use parapet_abi::sched::{FAULT_GPR_NAMES, FaultReport, exception_name};
use std::fmt::Write;
use vm_memory::GuestAddress;

/// VMM exit statuses (docs/abi.md §6).
pub mod status {
    /// Bad input or a KVM failure.
    pub const VMM_ERROR: u8 = 1;
    /// The guest crashed (`SHUTDOWN_crash`).
    pub const CRASH: u8 = 101;
    /// The guest faulted.
    pub const FAULT: u8 = 102;
    /// The guest asked to reboot.
    pub const REBOOT: u8 = 103;
    /// The guest's watchdog fired.
    pub const WATCHDOG: u8 = 104;
    /// `--timeout` expired.
    pub const TIMEOUT: u8 = 124;
    /// gdb killed the guest (`kill`, or quitting gdb), as a shell reports SIGKILL.
    pub const KILLED: u8 = 137;
}

/// Why the guest stopped.
#[derive(Debug)]
pub enum GuestExit {
    /// Power-off with an exit code.
    Poweroff(u8),
    /// `SHUTDOWN_crash`.
    Crash,
    /// `SHUTDOWN_reboot`.
    Reboot,
    /// `SHUTDOWN_watchdog`.
    Watchdog,
    /// An exception, triple fault, or emulation failure.
    Fault(FaultInfo),
    /// The VMM stopped the vCPU (timeout); carries the registers at that point.
    Stopped,
    /// gdb killed the guest.
    Killed,
    /// The domain is suspended for a snapshot: the guest asked (`SHUTDOWN_suspend`, whose
    /// result is already in its registers) or the host did (`SIGUSR1`).
    Suspended,
}

/// The state of a guest that faulted, for the report.
#[derive(Debug)]
pub struct FaultInfo {
    /// What happened, e.g. `#UD invalid opcode (vector 6)`.
    pub what: String,
    /// Faulting instruction.
    pub rip: u64,
    /// Registers worth showing, in display order.
    pub regs: Vec<(&'static str, u64)>,
    /// The guest's own report, when its exception handler made one: the registers at the
    /// faulting instruction, which the debugger and core dumps show.
    pub report: Option<Box<FaultReport>>,
}

impl FaultInfo {
    /// From the guest's own exception handler (`SCHEDOP_fault`).
    pub fn from_guest_report(r: &FaultReport) -> FaultInfo {
        let mut what = format!("{} (vector {}", exception_name(r.vector), r.vector);
        if matches!(r.vector, 8 | 10..=14 | 17 | 21) {
            let _ = write!(what, ", error code {:#x}", r.error_code);
        }
        if r.vector == 14 {
            let _ = write!(what, ", cr2={:#x}", r.cr2);
        }
        what.push(')');
        let mut regs: Vec<_> = FAULT_GPR_NAMES.iter().copied().zip(r.gprs).collect();
        regs.extend([
            ("rsp", r.rsp),
            ("rflags", r.rflags),
            ("cs", r.cs),
            ("ss", r.ss),
            ("cr2", r.cr2),
        ]);
        FaultInfo {
            what,
            rip: r.rip,
            regs,
            report: Some(Box::new(*r)),
        }
    }

    /// From KVM's view of the vCPU (triple fault, emulation failure, timeout).
    pub fn from_vcpu(
        what: String,
        r: &kvm_bindings::kvm_regs,
        s: &kvm_bindings::kvm_sregs,
    ) -> FaultInfo {
        let regs = vec![
            ("rax", r.rax),
            ("rbx", r.rbx),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("rbp", r.rbp),
            ("r8", r.r8),
            ("r9", r.r9),
            ("r10", r.r10),
            ("r11", r.r11),
            ("r12", r.r12),
            ("r13", r.r13),
            ("r14", r.r14),
            ("r15", r.r15),
            ("rsp", r.rsp),
            ("rflags", r.rflags),
            ("cs", u64::from(s.cs.selector)),
            ("ss", u64::from(s.ss.selector)),
            ("cr2", s.cr2),
            ("cr3", s.cr3),
        ];
        FaultInfo {
            what,
            rip: r.rip,
            regs,
            report: None,
        }
    }

    /// The multi-line report: what, where (with symbol), instruction bytes, registers.
    pub fn render(&self, ram: &GuestRam, symbols: &SymbolTable) -> String {
        let mut out = String::new();
        let _ = write!(out, "  rip={:#x}", self.rip);
        match symbols.describe(self.rip) {
            Some(sym) => {
                let _ = writeln!(out, " <{sym}>");
            }
            None => out.push('\n'),
        }
        // The guest's RAM is identity-mapped, so its RIP is also a GPA.
        let mut code = [0u8; 16];
        if ram.read(GuestAddress(self.rip), &mut code).is_ok() {
            out.push_str("  code:");
            for b in code {
                let _ = write!(out, " {b:02x}");
            }
            out.push('\n');
        }
        for row in self.regs.chunks(4) {
            out.push(' ');
            for (name, value) in row {
                let _ = write!(out, " {name:>6}={value:#018x}");
            }
            out.push('\n');
        }
        out
    }
}
