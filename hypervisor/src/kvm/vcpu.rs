//! One vCPU: boot state, MSRs, and the run loop's view of KVM exits.

use crate::error::{KvmContext, Result};
use crate::layout::{self, selector};
use kvm_bindings::{
    KVM_EXIT_XEN, KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE, Msrs, kvm_mp_state, kvm_msr_entry,
    kvm_regs, kvm_segment,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use parapet_abi::hypercall::{PIO_DOORBELL_PORT, PIO_HYPERCALL_PORT};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicPtr, Ordering};

/// `KVM_EXIT_XEN` subtype of a hypercall.
const KVM_EXIT_XEN_HCALL: u32 = 1;

/// The guest's entry state, for the vCPU.
#[derive(Clone, Copy, Debug)]
pub struct BootState {
    /// RIP.
    pub entry: u64,
    /// RSI: GPA of the start-info page.
    pub start_info: u64,
    /// CR3.
    pub cr3: u64,
}

/// The trapped-and-emulated devices on the vCPU's I/O and MMIO buses.
pub trait IoBus {
    /// A port read; returns whether a device answered (else the guest reads all ones).
    fn pio_read(&mut self, port: u16, data: &mut [u8]) -> bool;
    /// A port write; returns whether a device took it.
    fn pio_write(&mut self, port: u16, data: &[u8]) -> bool;
    /// An MMIO read; returns whether a device answered (else the guest reads all ones).
    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> bool;
    /// An MMIO write; returns whether a device took it.
    fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> bool;
}

/// Why `KVM_RUN` returned, reduced to what the VMM acts on.
#[derive(Debug)]
pub enum Exit {
    /// A hypercall, from either transport. Answer with [`Vcpu::complete_hypercall`].
    Hypercall {
        /// RAX.
        nr: u64,
        /// RDI, RSI, RDX, R10, R8.
        args: [u64; 5],
        /// The guest's privilege level was not 0 (only reported by the Xen intercept).
        from_user: bool,
    },
    /// The event-channel doorbell for a port no backend serves in the kernel.
    Doorbell {
        /// The event channel port the guest notified.
        port: u32,
    },
    /// Port I/O, given to the [`IoBus`].
    Io {
        /// The port.
        port: u16,
        /// OUT (true) or IN.
        write: bool,
        /// Whether an emulated device took it.
        handled: bool,
    },
    /// An access to guest-physical memory no memory slot backs, given to the [`IoBus`].
    Mmio {
        /// The address.
        gpa: u64,
        /// Write (true) or read.
        write: bool,
        /// Whether an emulated device took it.
        handled: bool,
    },
    /// HLT (only without an in-kernel irqchip).
    Halt,
    /// Triple fault.
    Shutdown,
    /// KVM failed internally, usually an instruction it cannot emulate.
    InternalError {
        /// `KVM_INTERNAL_ERROR_*` suberror.
        suberror: u32,
        /// Suberror-specific data (for emulation failures: instruction bytes and more).
        data: Vec<u64>,
    },
    /// VM entry failed.
    FailEntry {
        /// Hardware reason.
        reason: u64,
    },
    /// `KVM_RUN` was interrupted by a signal (a kick).
    Interrupted,
    /// The guest executed a port-write breakpoint ([`Vcpu::set_port_breakpoints`]); RIP has
    /// been set back to it.
    PortBreakpoint {
        /// The breakpoint's address.
        addr: u64,
    },
    /// `KVM_EXIT_DEBUG`: a single step or a KVM-handled breakpoint ([`Vcpu::set_guest_debug`]).
    Debug {
        /// The exception (1 = #DB after a step, 3 = #BP).
        exception: u32,
        /// The guest's RIP.
        pc: u64,
    },
    /// Anything else.
    Other(String),
}

/// Where the pending hypercall's result must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    SyncRegs,
    Xen,
}

/// A vCPU and its pending-result bookkeeping.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    pending: Pending,
    /// Addresses where a debugger replaced an instruction's first byte with [`OUT_DX_AL`].
    port_breakpoints: BTreeSet<u64>,
}

/// `out %al, (%dx)`: one byte that makes a native kvm_pvm guest exit to the VMM (with RIP past
/// it), whatever DX holds. The debugger's software breakpoint there (docs/debugging.md).
pub const OUT_DX_AL: u8 = 0xee;

/// The running vCPU's `kvm_run`, for the kick signal handler.
static KICK_TARGET: AtomicPtr<kvm_bindings::kvm_run> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KICK_TARGET.load(Ordering::Acquire);
    if !run.is_null() {
        // SAFETY: `run` points at the mmap'd `kvm_run` of the vCPU registered by `arm_kick`,
        // which outlives the vCPU thread that receives this signal. A volatile byte store is
        // async-signal-safe; it makes a `KVM_RUN` that has not started yet return at once.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

impl Vcpu {
    /// Wraps a created vCPU.
    pub fn new(mut fd: VcpuFd) -> Vcpu {
        // KVM stores the registers in `kvm_run` at every exit: a port-I/O hypercall reads its
        // arguments there, without a KVM_GET_REGS.
        fd.set_sync_valid_reg(SyncReg::Register);
        Vcpu {
            fd,
            pending: Pending::None,
            port_breakpoints: BTreeSet::new(),
        }
    }

    /// The underlying fd (for statistics and register dumps).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Reads MSRs in order, stopping at the first one KVM does not know; returns the values read.
    pub fn read_msrs(&self, indices: &[u32]) -> Result<Vec<u64>> {
        let entries: Vec<_> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).expect("a handful of MSRs fits");
        let n = self.fd.get_msrs(&mut msrs).kvm("KVM_GET_MSRS")?;
        Ok(msrs.as_slice()[..n].iter().map(|e| e.data).collect())
    }

    /// Writes one MSR; returns whether KVM accepted it.
    /// Writes `(index, value)` pairs with one `KVM_SET_MSRS`; returns how many KVM took (it
    /// stops at the first it refuses).
    pub fn write_msrs(&self, msrs: &[(u32, u64)]) -> Result<usize> {
        let entries: Vec<_> = msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).expect("a handful of MSRs fits");
        self.fd.set_msrs(&msrs).kvm("KVM_SET_MSRS")
    }

    pub fn write_msr(&self, index: u32, data: u64) -> Result<bool> {
        let msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            data,
            ..Default::default()
        }])
        .expect("one MSR fits");
        Ok(self.fd.set_msrs(&msrs).kvm("KVM_SET_MSRS")? == 1)
    }

    /// Puts the vCPU in the entry state of docs/abi.md §2.3 and turns on register syncing.
    pub fn set_boot_state(&mut self, boot: &BootState) -> Result<()> {
        let mut sregs = self.fd.get_sregs().kvm("KVM_GET_SREGS")?;
        let segment = |selector: u16, code: bool| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_: if code { 0xb } else { 0x3 },
            present: 1,
            dpl: 0,
            db: u8::from(!code),
            s: 1,
            l: u8::from(code),
            g: 1,
            ..Default::default()
        };
        sregs.cs = segment(selector::KERNEL_CODE, true);
        let data = segment(selector::KERNEL_DATA, false);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = kvm_segment {
            base: layout::TSS,
            limit: 0x67,
            selector: selector::TSS,
            type_: 0xb,
            present: 1,
            ..Default::default()
        };
        sregs.ldt = kvm_segment {
            unusable: 1,
            ..Default::default()
        };
        sregs.gdt.base = layout::GDT;
        sregs.gdt.limit = 10 * 8 - 1;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        sregs.cr0 = 0x8005_0033; // PG AM WP NE ET MP PE
        sregs.cr3 = boot.cr3;
        sregs.cr4 = 0x620; // OSXMMEXCPT OSFXSR PAE
        sregs.efer = 0xd01; // NXE LMA LME SCE
        self.fd.set_sregs(&sregs).kvm("KVM_SET_SREGS")?;
        let regs = kvm_regs {
            rip: boot.entry,
            rsi: boot.start_info,
            rflags: 0x2,
            ..Default::default()
        };
        self.fd.set_regs(&regs).kvm("KVM_SET_REGS")?;
        Ok(())
    }

    /// Lets [`crate::control::kick_signal`] interrupt this vCPU's `KVM_RUN`. Call on the thread that runs it.
    pub fn arm_kick(&mut self) -> std::io::Result<()> {
        KICK_TARGET.store(self.fd.get_kvm_run(), Ordering::Release);
        vmm_sys_util::signal::register_signal_handler(crate::control::kick_signal(), on_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    /// Runs the guest until the next exit the VMM must handle. Port I/O and MMIO other than
    /// the hypercall and doorbell ports go to `bus`.
    pub fn run(&mut self, bus: &mut dyn IoBus) -> Result<Exit> {
        debug_assert_eq!(self.pending, Pending::None, "answer the hypercall first");
        let mut byte_out = None;
        let exit = match self.fd.run() {
            // With breakpoints set, a one-byte write may be one: decided below, once the exit
            // no longer borrows the vCPU.
            Ok(VcpuExit::IoOut(port, data))
                if data.len() == 1 && !self.port_breakpoints.is_empty() =>
            {
                byte_out = Some((port, data[0]));
                Exit::Interrupted
            }
            Ok(VcpuExit::IoOut(PIO_HYPERCALL_PORT, _)) => self.pio_hypercall(),
            Ok(VcpuExit::IoOut(PIO_DOORBELL_PORT, data)) => doorbell(data),
            Ok(VcpuExit::IoOut(port, data)) => Exit::Io {
                port,
                write: true,
                handled: bus.pio_write(port, data),
            },
            Ok(VcpuExit::IoIn(port, data)) => {
                let handled = bus.pio_read(port, data);
                if !handled {
                    data.fill(0xff);
                }
                Exit::Io {
                    port,
                    write: false,
                    handled,
                }
            }
            Ok(VcpuExit::MmioRead(gpa, data)) => {
                let handled = bus.mmio_read(gpa, data);
                if !handled {
                    data.fill(0xff);
                }
                Exit::Mmio {
                    gpa,
                    write: false,
                    handled,
                }
            }
            Ok(VcpuExit::MmioWrite(gpa, data)) => Exit::Mmio {
                gpa,
                write: true,
                handled: bus.mmio_write(gpa, data),
            },
            Ok(VcpuExit::Hlt) => Exit::Halt,
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::FailEntry(reason, _)) => Exit::FailEntry { reason },
            Ok(VcpuExit::Intr) => Exit::Interrupted,
            Ok(VcpuExit::InternalError) => {
                let run = self.fd.get_kvm_run();
                // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                // union member KVM filled in.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                let n = (internal.ndata as usize).min(internal.data.len());
                Exit::InternalError {
                    suberror: internal.suberror,
                    data: internal.data[..n].to_vec(),
                }
            }
            Ok(VcpuExit::Unsupported(KVM_EXIT_XEN)) => {
                let run = self.fd.get_kvm_run();
                // SAFETY: the exit reason is KVM_EXIT_XEN, so `xen` is the union member KVM
                // filled in.
                let xen = unsafe { run.__bindgen_anon_1.xen };
                if xen.type_ != KVM_EXIT_XEN_HCALL {
                    Exit::Other(format!("KVM_EXIT_XEN of type {}", xen.type_))
                } else {
                    // SAFETY: type KVM_EXIT_XEN_HCALL selects the `hcall` member.
                    let h = unsafe { xen.u.hcall };
                    self.pending = Pending::Xen;
                    Exit::Hypercall {
                        nr: h.input,
                        args: [
                            h.params[0],
                            h.params[1],
                            h.params[2],
                            h.params[3],
                            h.params[4],
                        ],
                        from_user: h.cpl != 0,
                    }
                }
            }
            Ok(VcpuExit::Debug(arch)) => Exit::Debug {
                exception: arch.exception,
                pc: arch.pc,
            },
            Ok(other) => Exit::Other(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR => {
                self.fd.set_kvm_immediate_exit(0);
                Exit::Interrupted
            }
            Err(e) if e.errno() == libc::EAGAIN => Exit::Interrupted,
            Err(e) => return Err(e).kvm("KVM_RUN"),
        };
        let Some((port, byte)) = byte_out else {
            return Ok(exit);
        };
        let regs = self.fd.sync_regs().regs;
        let hit = regs.rip.wrapping_sub(1);
        Ok(if self.port_breakpoints.contains(&hit) {
            // Through KVM_SET_REGS, not the synced copy, which KVM would only read at the next
            // entry: the debugger reads the registers before that.
            self.fd
                .set_regs(&kvm_regs { rip: hit, ..regs })
                .kvm("KVM_SET_REGS")?;
            Exit::PortBreakpoint { addr: hit }
        } else if port == PIO_HYPERCALL_PORT {
            self.pio_hypercall()
        } else if port == PIO_DOORBELL_PORT {
            doorbell(&[byte])
        } else {
            Exit::Io {
                port,
                write: true,
                handled: bus.pio_write(port, &[byte]),
            }
        })
    }

    /// A port-I/O hypercall: its number and arguments from the synced registers.
    fn pio_hypercall(&mut self) -> Exit {
        let r = &self.fd.sync_regs().regs;
        let exit = Exit::Hypercall {
            nr: r.rax,
            args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8],
            from_user: false,
        };
        self.pending = Pending::SyncRegs;
        exit
    }

    /// Makes each address in `addrs` a port-write breakpoint: when the guest executes the
    /// [`OUT_DX_AL`] the debugger wrote there, [`Vcpu::run`] returns [`Exit::PortBreakpoint`]
    /// with RIP set back to it. Only on kvm_pvm, whose native mode reports that write with RIP
    /// past it (and which has no in-kernel device on any port: `irq::create_irqchip`).
    pub fn set_port_breakpoints(&mut self, addrs: impl IntoIterator<Item = u64>) {
        self.port_breakpoints = addrs.into_iter().collect();
    }

    /// `KVM_SET_GUEST_DEBUG`: single-step (`KVM_EXIT_DEBUG` after one instruction) and/or let
    /// `int3` exit to the VMM (software breakpoints on VT-x/AMD-V).
    pub fn set_guest_debug(&self, single_step: bool, sw_breakpoints: bool) -> Result<()> {
        let mut control = 0;
        if single_step || sw_breakpoints {
            control |= kvm_bindings::KVM_GUESTDBG_ENABLE;
        }
        if single_step {
            control |= kvm_bindings::KVM_GUESTDBG_SINGLESTEP;
        }
        if sw_breakpoints {
            control |= kvm_bindings::KVM_GUESTDBG_USE_SW_BP;
        }
        let debug = kvm_bindings::kvm_guest_debug {
            control,
            ..Default::default()
        };
        self.fd.set_guest_debug(&debug).kvm("KVM_SET_GUEST_DEBUG")
    }

    /// Halts the vCPU in the kernel until an interrupt (or makes it runnable again).
    pub fn set_halted(&self, halted: bool) -> Result<()> {
        let mp_state = if halted {
            KVM_MP_STATE_HALTED
        } else {
            KVM_MP_STATE_RUNNABLE
        };
        self.fd
            .set_mp_state(kvm_mp_state { mp_state })
            .kvm("KVM_SET_MP_STATE")
    }

    /// Sets RFLAGS.IF for the next entry (with the pending hypercall's result, through the synced
    /// registers). Only meaningful right after a port-I/O hypercall exit on VT-x/AMD-V.
    pub fn set_interrupt_flag_on_entry(&mut self) {
        self.fd.sync_regs_mut().regs.rflags |= 1 << 9;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Forgets the hypercall [`Vcpu::run`] last returned without answering it: for a debugger
    /// that moved RIP away from the hypercall instruction. KVM then completes nothing at the next
    /// entry (it skips the instruction and writes the result only if RIP is still there, for the
    /// Xen intercept and port I/O alike), and no synced register is marked dirty.
    pub fn abandon_hypercall(&mut self) {
        self.pending = Pending::None;
    }

    /// Makes KVM finish the exit [`Vcpu::run`] last returned (a hypercall's result, the skip
    /// past its instruction) without running the guest: `KVM_RUN` with `immediate_exit` set,
    /// as KVM's documentation prescribes before saving a vCPU's state. Answer the hypercall
    /// first ([`Vcpu::complete_hypercall`]) or abandon it.
    pub fn finish_exit(&mut self) -> Result<()> {
        self.pending = Pending::None;
        self.fd.set_kvm_immediate_exit(1);
        let ran = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match ran {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Err(e) => Err(e).kvm("KVM_RUN"),
            // An exit without entering the guest cannot happen: KVM checks `immediate_exit`
            // before it enters.
            Ok(()) => Err(crate::error::Error::HostUnsupported(
                "KVM ran the guest although immediate_exit was set".into(),
            )),
        }
    }

    /// Has KVM store the special registers in `kvm_run` at every exit too, so that
    /// [`Vcpu::sregs_at_exit`] reads them without an ioctl (a warm reset compares them).
    pub fn sync_sregs(&mut self) {
        self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
    }

    /// The special registers KVM stored at the last exit, with [`Vcpu::sync_sregs`].
    pub fn sregs_at_exit(&self) -> kvm_bindings::kvm_sregs {
        self.fd.sync_regs().sregs
    }

    /// Sets the registers and, if given, the special registers for the next entry, through
    /// `kvm_run` (KVM applies them at the next `KVM_RUN`): no ioctl now. The last exit must be
    /// finished ([`Vcpu::finish_exit`]).
    pub fn set_on_entry(
        &mut self,
        regs: &kvm_bindings::kvm_regs,
        sregs: Option<&kvm_bindings::kvm_sregs>,
    ) {
        self.fd.sync_regs_mut().regs = *regs;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        if let Some(sregs) = sregs {
            self.fd.sync_regs_mut().sregs = *sregs;
            self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
        }
    }

    /// Delivers the result of the hypercall [`Vcpu::run`] last returned.
    pub fn complete_hypercall(&mut self, ret: u64) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::SyncRegs => {
                self.fd.sync_regs_mut().regs.rax = ret;
                self.fd.set_sync_dirty_reg(SyncReg::Register);
            }
            Pending::Xen => {
                // The last exit was a KVM_EXIT_XEN hypercall, so `xen.u.hcall` is the live union
                // member; KVM reads `result` back on the next KVM_RUN.
                self.fd.get_kvm_run().__bindgen_anon_1.xen.u.hcall.result = ret;
            }
            Pending::None => debug_assert!(false, "no hypercall pending"),
        }
    }
}

/// The doorbell write's event-channel port (the low bytes of the written value).
fn doorbell(data: &[u8]) -> Exit {
    let mut port = [0u8; 4];
    let n = data.len().min(4);
    port[..n].copy_from_slice(&data[..n]);
    Exit::Doorbell {
        port: u32::from_le_bytes(port),
    }
}
