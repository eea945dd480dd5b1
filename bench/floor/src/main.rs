//! `parapet-floor`: the reference floor of `cargo xtask bench`.
//!
//! The smallest KVM program that makes the same exit a Parapet guest makes, and nothing else:
//! one VM, one memory slot, the in-kernel irqchip with the local APIC in x2APIC mode, one vCPU
//! in the native-mode state Parapet's domain builder sets up (64-bit CPL0, page tables with U/S
//! set in every entry, the VIF page registered on kvm_pvm, `KVM_CAP_SYNC_REGS`), running a loop
//! that times one operation per iteration with the TSC (`lfence; rdtsc` on both sides, as the
//! guest SDK does) and stores the sample in guest memory. The VMM side only re-enters; for the
//! port-I/O hypercall floor it also reads the argument registers and writes RAX back through
//! the synced registers, exactly the work a Parapet hypercall needs from KVM.
//!
//! ```text
//! parapet-floor OP... [iters=N]
//! ```
//!
//! Prints, per OP, the line format of the bench guest (`bench-protocol`) plus the exits the floor
//! counted:
//! `bench floor_<op> iters=<n> batch=1 median=<c> p99=<c> min=<c> total=<c> tsc_khz=<khz>
//! warmup=<w> exits_per_op=<x> kvm_exits_per_op=<y>`; exits are the userspace exits (returns
//! from `KVM_RUN`) and KVM's own `exits` statistic, each less those of the same loop around an
//! empty operation, per operation. An OP the host cannot run prints
//! `bench floor_<op> skipped: <why>`.

use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{kvm_msr_entry, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{IoEventAddress, Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

type Result<T> = std::result::Result<T, String>;

/// Guest RAM.
const MEM_SIZE: usize = 64 << 20;
/// Guest-physical (= virtual) layout.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const VIF_PAGE: u64 = 0x5000;
const GDT: u64 = 0x7000;
const TSS: u64 = 0x9000;
const DRIVER: u64 = 0x10000;
const OP: u64 = 0x40000;
const STACK_TOP: u64 = 0xf0000;
const SAMPLES: u64 = 0x40_0000;
/// An address in the first GiB (mapped) beyond RAM (no memory slot): every access is MMIO.
const MMIO_GPA: u64 = 0x3000_0000;

/// Ports: the hypercall port and doorbell port of Parapet's ABI, its scratch port, and the
/// floor's own "done" port.
const HYPERCALL_PORT: u16 = 0xe8;
const DOORBELL_PORT: u16 = 0xec;
const SCRATCH_PORT: u16 = 0x510;
const DONE_PORT: u16 = 0x10;
/// The value the doorbell op writes, matched by the ioeventfd (Parapet matches the event port).
const DOORBELL_MATCH: u32 = 5;

/// kvm_pvm's MSRs: the VIF page registration, the signature, the TSC frequency.
const MSR_PVM_VIF: u32 = 0x4b56_4d10;
const MSR_PVM_SIGNATURE: u32 = 0x4b56_4d11;
const MSR_PVM_TSC_KHZ: u32 = 0x4b56_4d13;
const PVM_SIGNATURE: u64 = 0x4d_5650;
/// Host-initiated VIF registration flag (kvm-pvm.md §2 step 6).
const PVM_VIF_HOST_WRITE: u64 = 0x400;
/// `MSR_KVM_SYSTEM_TIME_NEW`: the in-kernel MSR the bench reads on VT-x/AMD-V.
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// The local APIC: base MSR value for x2APIC mode, and the software-enable register.
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_X2APIC: u64 = 0xfee0_0000 | 1 << 11 | 1 << 10 | 1 << 8;
const APIC_SVR: usize = 0xf0;

// The timing loops, copied into guest memory at `DRIVER`. RDI = iterations; each iteration
// calls the operation at `OP` between two TSC reads and stores the difference at `SAMPLES`,
// then the loop ends with `out 0x10, al`. The emulated-mode loop has no LFENCE (kvm_pvm's
// instruction emulator runs the guest there; it is serialising anyway).
std::arch::global_asm!(
    ".pushsection .rodata.parapet_floor, \"a\"",
    ".globl parapet_floor_driver_native",
    "parapet_floor_driver_native:",
    "mov r12, rdi",
    "mov r13, {samples}",
    "mov r15, {op}",
    "2:",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rdx, rax",
    "mov r14, rdx",
    "call r15",
    "lfence",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r14",
    "mov qword ptr [r13], rax",
    "add r13, 8",
    "dec r12",
    "jnz 2b",
    "out {done}, al",
    "3: jmp 3b",
    ".globl parapet_floor_driver_native_end",
    "parapet_floor_driver_native_end:",
    ".globl parapet_floor_driver_emulated",
    "parapet_floor_driver_emulated:",
    "mov r12, rdi",
    "mov r13, {samples}",
    "mov r15, {op}",
    "2:",
    "rdtsc",
    "shl rdx, 32",
    "or rdx, rax",
    "mov r14, rdx",
    "call r15",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r14",
    "mov qword ptr [r13], rax",
    "add r13, 8",
    "dec r12",
    "jnz 2b",
    "out {done}, al",
    "3: jmp 3b",
    ".globl parapet_floor_driver_emulated_end",
    "parapet_floor_driver_emulated_end:",
    ".popsection",
    samples = const SAMPLES,
    op = const OP,
    done = const DONE_PORT,
);

unsafe extern "C" {
    static parapet_floor_driver_native: [u8; 0];
    static parapet_floor_driver_native_end: [u8; 0];
    static parapet_floor_driver_emulated: [u8; 0];
    static parapet_floor_driver_emulated_end: [u8; 0];
}

/// The bytes between two symbols of the `global_asm!` above.
fn code_between(start: *const [u8; 0], end: *const [u8; 0]) -> &'static [u8] {
    let len = end as usize - start as usize;
    // SAFETY: both symbols label the same read-only section, `end` after `start`; the bytes
    // between them are the assembled loop, which lives as long as the program.
    unsafe { std::slice::from_raw_parts(start.cast::<u8>(), len) }
}

fn driver(mode: Mode) -> &'static [u8] {
    match mode {
        Mode::Native => code_between(
            &raw const parapet_floor_driver_native,
            &raw const parapet_floor_driver_native_end,
        ),
        Mode::Emulated => code_between(
            &raw const parapet_floor_driver_emulated,
            &raw const parapet_floor_driver_emulated_end,
        ),
    }
}

/// How the vCPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Natively: Parapet's state (on kvm_pvm: VIF page registered, U/S set everywhere).
    Native,
    /// kvm_pvm only: no VIF page and U/S clear, the state of an unmodified kernel (and of
    /// Solo5's hvt tender), which kvm_pvm runs in its instruction emulator.
    Emulated,
}

/// One operation the loop times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `ret`: the loop itself (the baseline for exit counts).
    Empty,
    /// Parapet's port-I/O hypercall stub, `mov eax, 17; out 0xe8, al; ret`: one userspace exit;
    /// the VMM reads the synced registers and writes RAX back.
    Out,
    /// `in eax, dx` from the scratch port: one userspace exit answered with data.
    In,
    /// A 64-bit load from an address no memory slot backs: one userspace MMIO exit.
    MmioRead,
    /// A 64-bit store to it.
    MmioWrite,
    /// RDMSR of the KVM MSR the bench guest reads: trapped, handled inside KVM.
    Rdmsr,
    /// CLI then STI: on kvm_pvm, two traps handled inside KVM.
    CliSti,
    /// `out 0xec, eax` matched by an ioeventfd whose eventfd a host thread waits on (Parapet's
    /// doorbell): no userspace exit.
    Doorbell,
    /// 100 register ADDs: the speed of plain guest instructions.
    Alu100,
}

const OPS: [(&str, Op, Mode); 11] = [
    ("empty", Op::Empty, Mode::Native),
    ("out", Op::Out, Mode::Native),
    ("in", Op::In, Mode::Native),
    ("mmio_read", Op::MmioRead, Mode::Native),
    ("mmio_write", Op::MmioWrite, Mode::Native),
    ("rdmsr", Op::Rdmsr, Mode::Native),
    ("cli_sti", Op::CliSti, Mode::Native),
    ("doorbell", Op::Doorbell, Mode::Native),
    ("alu100", Op::Alu100, Mode::Native),
    ("out_emulated", Op::Out, Mode::Emulated),
    ("alu100_emulated", Op::Alu100, Mode::Emulated),
];

impl Op {
    /// The operation's machine code (a leaf function, called with `call r15`).
    fn code(self, host: &Host) -> Vec<u8> {
        let mut c = Vec::new();
        match self {
            Op::Empty => {}
            Op::Out => {
                c.push(0xb8); // mov eax, 17 (xen_version)
                c.extend(17u32.to_le_bytes());
                c.extend([0xe6, HYPERCALL_PORT as u8]); // out 0xe8, al
            }
            Op::In => {
                c.extend([0x66, 0xba]); // mov dx, 0x510
                c.extend(SCRATCH_PORT.to_le_bytes());
                c.push(0xed); // in eax, dx
            }
            Op::MmioRead | Op::MmioWrite => {
                c.extend([0x48, 0xba]); // movabs rdx, MMIO_GPA
                c.extend(MMIO_GPA.to_le_bytes());
                // mov rax, [rdx] / mov [rdx], rax
                c.extend(if self == Op::MmioRead {
                    [0x48, 0x8b, 0x02]
                } else {
                    [0x48, 0x89, 0x02]
                });
            }
            Op::Rdmsr => {
                c.push(0xb9); // mov ecx, msr
                c.extend(host.kvm_msr().to_le_bytes());
                c.extend([0x0f, 0x32]); // rdmsr
            }
            Op::CliSti => c.extend([0xfa, 0xfb]),
            Op::Doorbell => {
                c.push(0xb8); // mov eax, DOORBELL_MATCH
                c.extend(DOORBELL_MATCH.to_le_bytes());
                c.extend([0xe7, DOORBELL_PORT as u8]); // out 0xec, eax
            }
            Op::Alu100 => {
                for _ in 0..100 {
                    c.extend([0x48, 0x01, 0xc3]); // add rbx, rax
                }
            }
        }
        c.push(0xc3); // ret
        c
    }
}

/// What the host is.
#[derive(Debug)]
struct Host {
    pvm: bool,
    tsc_khz: u64,
}

impl Host {
    fn kvm_msr(&self) -> u32 {
        if self.pvm {
            MSR_PVM_TSC_KHZ
        } else {
            MSR_KVM_SYSTEM_TIME_NEW
        }
    }
}

/// Reads MSRs in order, stopping at the first one KVM does not know.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<u64>> {
    let entries: Vec<_> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs = kvm_bindings::Msrs::from_entries(&entries).map_err(|e| e.to_string())?;
    let n = vcpu
        .get_msrs(&mut msrs)
        .map_err(|e| format!("KVM_GET_MSRS: {e}"))?;
    Ok(msrs.as_slice()[..n].iter().map(|e| e.data).collect())
}

fn write_msr(vcpu: &VcpuFd, index: u32, data: u64) -> Result<bool> {
    let msrs = kvm_bindings::Msrs::from_entries(&[kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }])
    .map_err(|e| e.to_string())?;
    Ok(vcpu
        .set_msrs(&msrs)
        .map_err(|e| format!("KVM_SET_MSRS: {e}"))?
        == 1)
}

/// Guest RAM: an anonymous mapping, unmapped on drop.
struct Ram {
    base: *mut u8,
}

impl Ram {
    fn new() -> Result<Ram> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Ram { base: p.cast() })
    }

    fn write(&self, gpa: u64, bytes: &[u8]) {
        let at = gpa as usize;
        assert!(at + bytes.len() <= MEM_SIZE);
        // SAFETY: in bounds of the mapping (checked above); the vCPU is not running.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
    }

    fn write_u64(&self, gpa: u64, value: u64) {
        self.write(gpa, &value.to_le_bytes());
    }

    fn read_u64(&self, gpa: u64) -> u64 {
        let at = gpa as usize;
        assert!(at + 8 <= MEM_SIZE && at.is_multiple_of(8));
        // SAFETY: in bounds and aligned (checked above); the vCPU has stopped.
        unsafe { self.base.add(at).cast::<u64>().read_volatile() }
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the VM using it was dropped first (field order in
        // `Vm`).
        unsafe { libc::munmap(self.base.cast(), MEM_SIZE) };
    }
}

/// A VM with one vCPU in its boot state. Field order: the vCPU and VM close before the RAM
/// they use is unmapped.
struct Vm {
    vcpu: VcpuFd,
    vm: VmFd,
    ram: Ram,
}

/// The four CPUID leaves KVM's own checks read (vendor, x2APIC, long mode, NX), as Parapet
/// gives a kvm_pvm guest; the host's full table elsewhere.
fn cpuid(kvm: &Kvm, pvm: bool) -> Result<kvm_bindings::CpuId> {
    if !pvm {
        return kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"));
    }
    use std::arch::x86_64::__cpuid_count;
    const X2APIC: u32 = 1 << 21;
    let entries: Vec<_> = [0u32, 1, 0x8000_0000, 0x8000_0001]
        .into_iter()
        .map(|function| {
            let r = __cpuid_count(function, 0);
            kvm_bindings::kvm_cpuid_entry2 {
                function,
                eax: if function == 0 { r.eax.min(1) } else { r.eax },
                ebx: r.ebx,
                ecx: if function == 1 { r.ecx | X2APIC } else { r.ecx },
                edx: r.edx,
                ..Default::default()
            }
        })
        .collect();
    kvm_bindings::CpuId::from_entries(&entries).map_err(|e| e.to_string())
}

impl Vm {
    fn new(kvm: &Kvm, host: &Host, mode: Mode, op: Op) -> Result<Vm> {
        let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
        let ram = Ram::new()?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: ram.base as u64,
        };
        // SAFETY: the region is `ram`'s own mapping, which outlives the VM (`Vm` field order).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
        // Parapet's split irqchip: the local APIC in the kernel, no PIC, IOAPIC or PIT.
        let split = kvm_bindings::kvm_enable_cap {
            cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
            args: [24, 0, 0, 0],
            ..Default::default()
        };
        vm.enable_cap(&split)
            .map_err(|e| format!("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): {e}"))?;
        let mut vcpu = vm
            .create_vcpu(0)
            .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
        vcpu.set_cpuid2(&cpuid(kvm, host.pvm)?)
            .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
        if !write_msr(&vcpu, MSR_APIC_BASE, APIC_BASE_X2APIC)? {
            return Err("KVM refused x2APIC mode".into());
        }
        let mut lapic = vcpu
            .get_lapic()
            .map_err(|e| format!("KVM_GET_LAPIC: {e}"))?;
        for (i, b) in 0x1ffu32.to_le_bytes().into_iter().enumerate() {
            lapic.regs[APIC_SVR + i] = b as _;
        }
        vcpu.set_lapic(&lapic)
            .map_err(|e| format!("KVM_SET_LAPIC: {e}"))?;

        // Page tables: the first GiB identity-mapped with 2 MiB pages; U/S set everywhere for
        // native mode (kvm_pvm's rule, as Parapet's builder does), clear for emulated mode.
        let us = if mode == Mode::Native { 4 } else { 0 };
        ram.write_u64(PML4, PDPT | 3 | us);
        ram.write_u64(PDPT, PD | 3 | us);
        for i in 0..512u64 {
            ram.write_u64(PD + i * 8, (i << 21) | 0x83 | us);
        }
        // GDT as Parapet's: 0x10 code64 DPL0, 0x18 data, 0x40 the 64-bit TSS.
        ram.write_u64(GDT + 0x10, 0x00af_9a00_0000_ffff);
        ram.write_u64(GDT + 0x18, 0x00cf_9200_0000_ffff);
        ram.write_u64(
            GDT + 0x40,
            0x67 | (TSS & 0xff_ffff) << 16 | 0x89 << 40 | ((TSS >> 24) & 0xff) << 56,
        );
        ram.write_u64(GDT + 0x48, TSS >> 32);
        ram.write(DRIVER, driver(mode));
        ram.write(OP, &op.code(host));

        let mut sregs = vcpu
            .get_sregs()
            .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
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
        sregs.cs = segment(0x10, true);
        let data = segment(0x18, false);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = kvm_segment {
            base: TSS,
            limit: 0x67,
            selector: 0x40,
            type_: 0xb,
            present: 1,
            ..Default::default()
        };
        sregs.ldt = kvm_segment {
            unusable: 1,
            ..Default::default()
        };
        sregs.gdt.base = GDT;
        sregs.gdt.limit = 10 * 8 - 1;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        sregs.cr0 = 0x8005_0033;
        sregs.cr3 = PML4;
        sregs.cr4 = 0x620;
        sregs.efer = 0xd01;
        vcpu.set_sregs(&sregs)
            .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
        vcpu.set_sync_valid_reg(SyncReg::Register);
        if host.pvm && mode == Mode::Native {
            // The VIF page makes a CPL0 guest eligible for native execution; interrupts on,
            // as in a Parapet guest's `main`.
            ram.write(VIF_PAGE, &[1]);
            if !write_msr(&vcpu, MSR_PVM_VIF, VIF_PAGE | PVM_VIF_HOST_WRITE)? {
                return Err("kvm_pvm refused the VIF page registration".into());
            }
        }
        Ok(Vm { vcpu, vm, ram })
    }

    /// Runs `n` iterations; returns the userspace exits taken (including the final one).
    fn run(&mut self, n: u64) -> Result<u64> {
        let mut regs = self
            .vcpu
            .get_regs()
            .map_err(|e| format!("KVM_GET_REGS: {e}"))?;
        regs.rip = DRIVER;
        regs.rsp = STACK_TOP;
        regs.rdi = n;
        regs.rflags = 0x2;
        self.vcpu
            .set_regs(&regs)
            .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
        let mut scratch = 0u32;
        let mut exits = 0u64;
        loop {
            exits += 1;
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut(DONE_PORT, _)) => return Ok(exits),
                Ok(VcpuExit::IoOut(HYPERCALL_PORT, _)) => {
                    // What Parapet's dispatcher needs from KVM for a hypercall: the number and
                    // arguments from the synced registers, the result written back.
                    let r = &mut self.vcpu.sync_regs_mut().regs;
                    std::hint::black_box([r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8]);
                    r.rax = 2;
                    self.vcpu.set_sync_dirty_reg(SyncReg::Register);
                }
                Ok(VcpuExit::IoIn(SCRATCH_PORT, data)) => {
                    let n = data.len().min(4);
                    data[..n].copy_from_slice(&scratch.to_le_bytes()[..n]);
                }
                Ok(VcpuExit::IoOut(DOORBELL_PORT, _)) => {}
                Ok(VcpuExit::MmioRead(_, data)) => {
                    let n = data.len().min(4);
                    data.fill(0);
                    data[..n].copy_from_slice(&scratch.to_le_bytes()[..n]);
                }
                Ok(VcpuExit::MmioWrite(_, data)) => {
                    let mut b = [0u8; 4];
                    let n = data.len().min(4);
                    b[..n].copy_from_slice(&data[..n]);
                    scratch = u32::from_le_bytes(b);
                }
                Ok(VcpuExit::Intr) => {}
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Ok(other) => {
                    let what = format!("{other:?}");
                    let rip = self.vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                    return Err(format!("unexpected exit {what} at rip {rip:#x}"));
                }
                Err(e) => return Err(format!("KVM_RUN: {e}")),
            }
        }
    }

    /// KVM's `exits` statistic of the vCPU.
    fn kvm_exits(&self) -> Result<u64> {
        kvm_stat(&self.vcpu, "exits")
    }
}

vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);

/// One scalar from the vCPU's binary statistics (`KVM_GET_STATS_FD`).
fn kvm_stat(vcpu: &VcpuFd, name: &str) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let fd = unsafe { vmm_sys_util::ioctl::ioctl(vcpu, KVM_GET_STATS_FD()) };
    if fd < 0 {
        return Err(format!(
            "KVM_GET_STATS_FD: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let io = |e: std::io::Error| format!("reading KVM statistics: {e}");
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, 0).map_err(io)?;
    let field = |i: usize| u32::from_ne_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let (name_size, num_desc) = (field(1) as usize, field(2) as usize);
    let (desc_offset, data_offset) = (u64::from(field(4)), u64::from(field(5)));
    let desc_size = 16 + name_size;
    let mut descs = vec![0u8; desc_size * num_desc];
    file.read_exact_at(&mut descs, desc_offset).map_err(io)?;
    for d in descs.chunks_exact(desc_size) {
        let text = &d[16..];
        let len = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        if &text[..len] == name.as_bytes() {
            let offset = u32::from_ne_bytes(d[8..12].try_into().unwrap());
            let mut value = [0u8; 8];
            file.read_exact_at(&mut value, data_offset + u64::from(offset))
                .map_err(io)?;
            return Ok(u64::from_ne_bytes(value));
        }
    }
    Err(format!("KVM has no vCPU statistic {name}"))
}

/// A host thread waiting on the doorbell's eventfd, as Parapet's backend threads do.
struct DoorbellListener {
    fd: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DoorbellListener {
    fn register(vm: &VmFd) -> Result<DoorbellListener> {
        let fd = Arc::new(EventFd::new(0).map_err(|e| format!("eventfd: {e}"))?);
        vm.register_ioevent(
            &fd,
            &IoEventAddress::Pio(DOORBELL_PORT.into()),
            DOORBELL_MATCH,
        )
        .map_err(|e| format!("KVM_IOEVENTFD: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (fd.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if f.read().is_err() {
                    break;
                }
            }
        });
        Ok(DoorbellListener {
            fd,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DoorbellListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.fd.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One measured loop: the samples after the warm-up and the exits counted.
struct Loop {
    samples: Vec<u64>,
    exits: u64,
    kvm_exits: u64,
}

fn measure(kvm: &Kvm, host: &Host, op: Op, mode: Mode, warmup: u64, iters: u64) -> Result<Loop> {
    let mut vm = Vm::new(kvm, host, mode, op)?;
    let _listener = match op {
        Op::Doorbell => Some(DoorbellListener::register(&vm.vm)?),
        _ => None,
    };
    let n = warmup + iters;
    let before = vm.kvm_exits()?;
    let exits = vm.run(n)?;
    let kvm_exits = vm.kvm_exits()? - before;
    let samples = (warmup..n)
        .map(|i| vm.ram.read_u64(SAMPLES + i * 8))
        .collect();
    Ok(Loop {
        samples,
        exits,
        kvm_exits,
    })
}

fn detect(kvm: &Kvm) -> Result<Host> {
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let msrs = read_msrs(&vcpu, &[MSR_PVM_SIGNATURE, MSR_PVM_TSC_KHZ])?;
    if msrs.first() == Some(&PVM_SIGNATURE) && msrs.len() == 2 {
        return Ok(Host {
            pvm: true,
            tsc_khz: msrs[1],
        });
    }
    let khz = vcpu
        .get_tsc_khz()
        .map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
    Ok(Host {
        pvm: false,
        tsc_khz: khz.into(),
    })
}

fn run() -> Result<()> {
    let mut iters = 2000u64;
    let mut ops = Vec::new();
    for arg in std::env::args().skip(1) {
        if let Some(n) = arg.strip_prefix("iters=") {
            iters = n
                .parse()
                .ok()
                .filter(|&n| n > 0 && n <= 1_000_000)
                .ok_or_else(|| format!("bad {arg}: iters must be 1..=1000000"))?;
        } else if let Some(op) = OPS.iter().find(|(name, ..)| *name == arg) {
            ops.push(*op);
        } else {
            let names: Vec<_> = OPS.iter().map(|(n, ..)| *n).collect();
            return Err(format!(
                "unknown operation `{arg}`; the operations are: {}",
                names.join(", ")
            ));
        }
    }
    if ops.is_empty() {
        return Err("usage: parapet-floor OP... [iters=N]".into());
    }
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    if !kvm.check_extension(kvm_ioctls::Cap::SyncRegs) {
        return Err("this KVM lacks KVM_CAP_SYNC_REGS".into());
    }
    let host = detect(&kvm)?;
    let warmup = iters.min(50);
    for (name, op, mode) in ops {
        if mode == Mode::Emulated && !host.pvm {
            println!(
                "{}",
                bench_protocol::skipped(
                    bench_protocol::BENCH,
                    &format!("floor_{name}"),
                    "instruction emulation is kvm_pvm's"
                )
            );
            continue;
        }
        let measured = measure(&kvm, &host, op, mode, warmup, iters)?;
        let base = measure(&kvm, &host, Op::Empty, mode, warmup, iters)?;
        let per_op = |a: u64, b: u64| (a as f64 - b as f64) / (warmup + iters) as f64;
        let mut s = measured.samples;
        s.sort_unstable();
        let n = s.len();
        let result = bench_protocol::BenchResult {
            name: format!("floor_{name}").into(),
            iters,
            batch: 1,
            median: s[n / 2],
            p99: s[(n * 99 / 100).min(n - 1)],
            min: s[0],
            total: s.iter().sum::<u64>(),
            tsc_khz: host.tsc_khz,
            warmup,
            exits_per_op: Some(per_op(measured.exits, base.exits).max(0.0)),
            kvm_exits_per_op: Some(per_op(measured.kvm_exits, base.kvm_exits).max(0.0)),
        };
        println!("{result}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet-floor: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
