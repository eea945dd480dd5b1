//! A vCPU's whole architectural state, for snapshots: captured from one vCPU, serialised into the
//! snapshot's `vcpu` section, and applied to a new vCPU in another VM (or the same one, for a
//! warm reset).
//!
//! On kvm_pvm the PVM MSRs 0x4b564d11–13 are read-only and left out; the VIF registration
//! (0x4b564d10) is restored by the caller with `platform::register_vif` once guest memory is in
//! place (kvm-pvm.md §8: writing it silently fails without a memory slot).

use super::vcpu::Vcpu;
use crate::error::{KvmContext, Result};
use kvm_bindings::{
    kvm_lapic_state, kvm_mp_state, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use serde::{Deserialize, Serialize};

/// The MSRs a snapshot carries beyond those `kvm_sregs` holds (EFER, the FS/GS bases, the APIC
/// base): the `syscall` MSRs, the kernel GS base, the `sysenter` MSRs and PAT. Every one is
/// optional: a host that lacks one simply does not save it. Not the TSC: a restored guest's
/// TSC is the new VM's, and the VMM re-anchors the PV clock on it instead (docs/abi.md §4.2),
/// so that guest time goes on at the real rate across a restore.
pub const SAVED_MSRS: [u32; 9] = [
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0102, // KERNEL_GS_BASE
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT
];

/// Everything `KVM_GET_*` reports about a vCPU that a restored guest can observe.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: kvm_xsave,
    xcrs: kvm_xcrs,
    lapic: kvm_lapic_state,
    events: kvm_vcpu_events,
    mp_state: kvm_mp_state,
    /// `(index, value)` of each of [`SAVED_MSRS`] the host reported.
    msrs: Vec<(u32, u64)>,
}

impl VcpuState {
    /// Reads the state of `vcpu`, which must not be running.
    pub fn capture(vcpu: &Vcpu) -> Result<VcpuState> {
        let fd = vcpu.fd();
        let msrs = SAVED_MSRS
            .iter()
            .filter_map(|&index| Some((index, *vcpu.read_msrs(&[index]).ok()?.first()?)))
            .collect();
        Ok(VcpuState {
            regs: fd.get_regs().kvm("KVM_GET_REGS")?,
            sregs: fd.get_sregs().kvm("KVM_GET_SREGS")?,
            xsave: fd.get_xsave().kvm("KVM_GET_XSAVE")?,
            xcrs: fd.get_xcrs().kvm("KVM_GET_XCRS")?,
            lapic: fd.get_lapic().kvm("KVM_GET_LAPIC")?,
            events: fd.get_vcpu_events().kvm("KVM_GET_VCPU_EVENTS")?,
            mp_state: fd.get_mp_state().kvm("KVM_GET_MP_STATE")?,
            msrs,
        })
    }

    /// Puts the state into `vcpu` (whose CPUID is already set), in the order KVM needs: MSRs,
    /// special registers, registers, extended state, the local APIC, then pending events and
    /// the run state. Returns the MSRs KVM refused (none on the host that saved them).
    pub fn apply(&self, vcpu: &Vcpu) -> Result<Vec<u32>> {
        let refused = self.write_msrs(vcpu)?;
        let fd = vcpu.fd();
        fd.set_sregs(&self.sregs).kvm("KVM_SET_SREGS")?;
        fd.set_regs(&self.regs).kvm("KVM_SET_REGS")?;
        self.set_fpu_and_apic(vcpu)?;
        fd.set_vcpu_events(&self.events)
            .kvm("KVM_SET_VCPU_EVENTS")?;
        fd.set_mp_state(self.mp_state).kvm("KVM_SET_MP_STATE")?;
        Ok(refused)
    }

    /// Puts the state back into the vCPU it was captured from, at the end of a warm-reset
    /// invocation (the last exit finished, the special registers synced at exits:
    /// [`Vcpu::sync_sregs`]): as [`VcpuState::apply`], with fewer ioctls, each dear on kvm_pvm.
    /// The registers go in through `kvm_run` for the next entry, and so do the special
    /// registers, only if they changed (setting them resets KVM's MMU context). An invocation
    /// ends at a hypercall exit, where KVM injects no exception or NMI and the instruction
    /// leaves no interrupt shadow, and the vCPU is runnable: so pending events and the run
    /// state are set only if the snapshot's differ from that (a vCPU saved halted, or with an
    /// event pending).
    pub fn reapply(&self, vcpu: &mut Vcpu) -> Result<Vec<u32>> {
        let refused = self.write_msrs(vcpu)?;
        let now = vcpu.sregs_at_exit();
        let changed =
            zerocopy::IntoBytes::as_bytes(&now) != zerocopy::IntoBytes::as_bytes(&self.sregs);
        vcpu.set_on_entry(&self.regs, changed.then_some(&self.sregs));
        self.set_fpu_and_apic(vcpu)?;
        let fd = vcpu.fd();
        let quiet = kvm_vcpu_events {
            flags: self.events.flags,
            ..Default::default()
        };
        if zerocopy::IntoBytes::as_bytes(&self.events) != zerocopy::IntoBytes::as_bytes(&quiet) {
            fd.set_vcpu_events(&self.events)
                .kvm("KVM_SET_VCPU_EVENTS")?;
        }
        if self.mp_state.mp_state != kvm_bindings::KVM_MP_STATE_RUNNABLE {
            fd.set_mp_state(self.mp_state).kvm("KVM_SET_MP_STATE")?;
        }
        Ok(refused)
    }

    /// Writes the MSRs with one ioctl; returns those KVM refused.
    fn write_msrs(&self, vcpu: &Vcpu) -> Result<Vec<u32>> {
        let taken = vcpu.write_msrs(&self.msrs)?;
        let mut refused: Vec<u32> = Vec::new();
        if taken < self.msrs.len() {
            // KVM stopped at the first it refused: find every one it refuses.
            for &(index, value) in &self.msrs[taken..] {
                if !vcpu.write_msr(index, value)? {
                    refused.push(index);
                }
            }
        }
        Ok(refused)
    }

    /// The FPU/SSE state, XCR0 and the local APIC.
    fn set_fpu_and_apic(&self, vcpu: &Vcpu) -> Result<()> {
        let fd = vcpu.fd();
        // SAFETY: KVM_SET_XSAVE reads past the 4 KiB `kvm_xsave` only for XSTATE features a
        // process enabled dynamically (`arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)`, e.g. AMX); the
        // VMM never enables any, so the guest's XSTATE fits the struct.
        unsafe { fd.set_xsave(&self.xsave) }.kvm("KVM_SET_XSAVE")?;
        fd.set_xcrs(&self.xcrs).kvm("KVM_SET_XCRS")?;
        fd.set_lapic(&self.lapic).kvm("KVM_SET_LAPIC")?;
        Ok(())
    }

    /// The snapshot section's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a VcpuState always serialises")
    }

    /// Reads a snapshot section; `None` if it is not a `VcpuState` this VMM wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<VcpuState> {
        postcard::from_bytes(bytes).ok()
    }

    /// The instruction pointer.
    #[cfg(test)]
    pub fn rip(&self) -> u64 {
        self.regs.rip
    }

    /// CR3: the guest's page tables at the snapshot.
    pub fn cr3(&self) -> u64 {
        self.sregs.cr3
    }

    /// Whether the vCPU was halted (`SCHEDOP_block`) when it was saved.
    pub fn halted(&self) -> bool {
        self.mp_state.mp_state == kvm_bindings::KVM_MP_STATE_HALTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm;

    #[test]
    fn state_moves_to_a_vcpu_of_another_vm_and_back_unchanged() {
        let Ok(kvm) = kvm::open() else {
            return; // No /dev/kvm: the integration tests say so loudly.
        };
        let make = || {
            let vm = kvm::create_vm(&kvm).unwrap();
            crate::kvm::irq::create_irqchip(&vm).unwrap();
            let vcpu = Vcpu::new(vm.create_vcpu(0).unwrap());
            vcpu.fd()
                .set_cpuid2(&crate::platform::minimal_cpuid())
                .unwrap();
            (vm, vcpu)
        };
        let (_vm_a, a) = make();
        let mut regs = a.fd().get_regs().unwrap();
        (regs.rip, regs.rax, regs.r15, regs.rflags) = (0x10_0000, 0x1234, 0xfeed, 0x2);
        a.fd().set_regs(&regs).unwrap();
        let saved = VcpuState::capture(&a).unwrap();
        let bytes = saved.to_bytes();
        let loaded = VcpuState::from_bytes(&bytes).unwrap();
        assert!(VcpuState::from_bytes(&bytes[..bytes.len() / 2]).is_none());

        let (_vm_b, b) = make();
        let refused = loaded.apply(&b).unwrap();
        assert!(refused.is_empty(), "refused MSRs {refused:x?}");
        let again = VcpuState::capture(&b).unwrap();
        assert_eq!(again.rip(), 0x10_0000);
        assert_eq!(again.regs.rax, 0x1234);
        assert_eq!(again.regs.r15, 0xfeed);
        assert_eq!(again.sregs.cr0, saved.sregs.cr0);
        assert_eq!(again.sregs.efer, saved.sregs.efer);
        let msr = |s: &VcpuState, i| s.msrs.iter().find(|m| m.0 == i).map(|m| m.1);
        assert_eq!(msr(&again, 0x277), msr(&saved, 0x277));
        assert_eq!(again.mp_state.mp_state, saved.mp_state.mp_state);
    }
}
