//! What kind of KVM this is, and how guests should reach the VMM on it. Detected, never assumed.
//!
//! - **kvm_pvm** (a paravirtual KVM without VT-x/AMD-V): identified by its signature MSR. Guests
//!   run natively only with a registered VIF page; VMCALL/VMMCALL do not reach userspace, so
//!   hypercalls use port I/O.
//! - **VT-x/AMD-V KVM**: hypercalls use VMCALL (Intel) or VMMCALL (AMD) when KVM's Xen intercept
//!   is available, else port I/O.

use crate::config::TransportChoice;
use crate::error::{Error, Result};
use crate::kvm::vcpu::Vcpu;
use crate::layout;
use parapet_abi::start_info::{Platform, Transport};

/// kvm_pvm: VIF page GPA and PV flags (read/write).
pub const MSR_PVM_VIF: u32 = 0x4b56_4d10;
/// kvm_pvm: signature, reads [`PVM_SIGNATURE`].
const MSR_PVM_SIGNATURE: u32 = 0x4b56_4d11;
/// kvm_pvm: feature bitmap.
const MSR_PVM_FEATURES: u32 = 0x4b56_4d12;
/// kvm_pvm: TSC frequency in kHz.
const MSR_PVM_TSC_KHZ: u32 = 0x4b56_4d13;
/// "PVM".
const PVM_SIGNATURE: u64 = 0x4d_5650;
/// Feature bits present only when this VM may run natively (0x1ff with, 0x113 without).
const PVM_FEATURES_NATIVE: u64 = 0xec;
/// Host-initiated VIF registration flag ("restore state"), required with a non-zero GPA.
pub const PVM_VIF_HOST_WRITE: u64 = 0x400;
/// `IA32_TIME_STAMP_COUNTER`.
const MSR_IA32_TSC: u32 = 0x10;

/// What the VMM learned about the host.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// The platform guests run on.
    pub platform: Platform,
    /// kvm_pvm only: whether the feature MSR allows native execution.
    pub pvm_native: bool,
    /// KVM can forward VMCALL/VMMCALL to userspace.
    pub xen_intercept: bool,
    /// The CPU is AMD's (VMMCALL) rather than Intel's (VMCALL).
    pub amd: bool,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// The guest's TSC when it was read.
    pub guest_tsc: u64,
    /// The TSC is invariant.
    pub tsc_stable: bool,
}

/// Probes the host through a fresh vCPU.
pub fn detect(vcpu: &Vcpu, xen_intercept: bool) -> Result<Host> {
    // KVM_GET_MSRS stops at the first unknown MSR, so the TSC comes first and a non-PVM KVM
    // answers just that one.
    let msrs = vcpu.read_msrs(&[
        MSR_IA32_TSC,
        MSR_PVM_SIGNATURE,
        MSR_PVM_FEATURES,
        MSR_PVM_TSC_KHZ,
    ])?;
    let guest_tsc = *msrs
        .first()
        .ok_or_else(|| Error::HostUnsupported("KVM cannot read the guest TSC (IA32_TSC)".into()))?;
    let pvm = msrs.get(1) == Some(&PVM_SIGNATURE) && msrs.len() == 4;
    let (platform, pvm_native, tsc_khz) = if pvm {
        let native = msrs[2] & PVM_FEATURES_NATIVE == PVM_FEATURES_NATIVE;
        (Platform::KvmPvm, native, msrs[3])
    } else {
        let khz = vcpu.fd().get_tsc_khz().map_err(|e| {
            Error::HostUnsupported(format!("KVM cannot report the TSC frequency: {e}"))
        })?;
        (Platform::KvmHardware, false, u64::from(khz))
    };
    if tsc_khz == 0 {
        return Err(Error::HostUnsupported(
            "KVM reports a TSC frequency of 0".into(),
        ));
    }
    Ok(Host {
        platform,
        pvm_native,
        xen_intercept,
        amd: cpu_vendor_is_amd(),
        tsc_khz,
        guest_tsc,
        tsc_stable: tsc_invariant(),
    })
}

/// Picks the hypercall transport for `choice` on `host`.
pub fn choose_transport(host: &Host, choice: TransportChoice) -> Result<Transport> {
    let trap = if host.amd {
        Transport::Vmmcall
    } else {
        Transport::Vmcall
    };
    let requested = match choice {
        TransportChoice::Pio => return Ok(Transport::Pio),
        TransportChoice::Auto if host.xen_intercept => return Ok(trap),
        TransportChoice::Auto => return Ok(Transport::Pio),
        TransportChoice::Vmcall if host.xen_intercept => return Ok(trap),
        TransportChoice::IntelVmcall if host.xen_intercept => return Ok(Transport::Vmcall),
        TransportChoice::AmdVmmcall if host.xen_intercept => return Ok(Transport::Vmmcall),
        TransportChoice::Vmcall => "vmcall",
        TransportChoice::IntelVmcall => "intel-vmcall",
        TransportChoice::AmdVmmcall => "amd-vmmcall",
    };
    Err(Error::TransportUnavailable {
        requested,
        reason: match host.platform {
            Platform::KvmPvm => "on kvm_pvm VMCALL/VMMCALL never reach userspace; use pio".into(),
            Platform::KvmHardware => "this KVM lacks the Xen hypercall intercept \
                (KVM_CAP_XEN_HVM with INTERCEPT_HCALL, CONFIG_KVM_XEN); use pio"
                .into(),
        },
    })
}

/// Whether `transport` traps with the other CPU vendor's instruction (VMCALL on AMD, VMMCALL on
/// Intel), which KVM emulates by patching the guest's code into its own.
pub fn is_foreign_trap(host: &Host, transport: Transport) -> bool {
    match transport {
        Transport::Vmcall => host.amd,
        Transport::Vmmcall => !host.amd,
        Transport::Pio => false,
    }
}

/// The CPUID leaves KVM consults for its own checks (vendor, x2APIC, long mode, NX, the physical
/// address width), copied from the host, with x2APIC added (KVM emulates it whatever the host
/// has).
pub fn minimal_cpuid() -> kvm_bindings::CpuId {
    use std::arch::x86_64::__cpuid_count;
    const X2APIC: u32 = 1 << 21;
    let entries: Vec<_> = [0u32, 1, 0x8000_0000, 0x8000_0001, 0x8000_0008]
        .into_iter()
        .map(|function| {
            let r = __cpuid_count(function, 0);
            kvm_bindings::kvm_cpuid_entry2 {
                function,
                eax: match function {
                    0 => r.eax.min(1),
                    0x8000_0000 => r.eax.min(0x8000_0008),
                    _ => r.eax,
                },
                ebx: r.ebx,
                ecx: if function == 1 { r.ecx | X2APIC } else { r.ecx },
                edx: r.edx,
                ..Default::default()
            }
        })
        .collect();
    kvm_bindings::CpuId::from_entries(&entries).expect("five CPUID entries fit")
}

fn cpu_vendor_is_amd() -> bool {
    let leaf = std::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf.ecx.to_le_bytes());
    &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine"
}

fn tsc_invariant() -> bool {
    use std::arch::x86_64::__cpuid;
    // Leaf 0x8000_0007 is read only when the maximum extended leaf says it exists.
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Registers the VIF page, which makes a CPL0 guest eligible for native execution on kvm_pvm.
pub fn register_vif(vcpu: &Vcpu) -> Result<()> {
    let value = layout::VIF_PAGE | PVM_VIF_HOST_WRITE;
    if !vcpu.write_msr(MSR_PVM_VIF, value)? {
        return Err(Error::HostUnsupported(
            "kvm_pvm refused the VIF page registration (MSR 0x4b564d10)".into(),
        ));
    }
    let back = vcpu.read_msrs(&[MSR_PVM_VIF])?;
    if back.first().map(|v| v & !0xfff) != Some(layout::VIF_PAGE) {
        return Err(Error::HostUnsupported(format!(
            "kvm_pvm did not keep the VIF page registration (reads back {back:x?})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(platform: Platform, xen_intercept: bool, amd: bool) -> Host {
        Host {
            platform,
            pvm_native: true,
            xen_intercept,
            amd,
            tsc_khz: 1,
            guest_tsc: 0,
            tsc_stable: true,
        }
    }

    #[test]
    fn auto_prefers_the_xen_intercept_and_falls_back_to_pio() {
        let pvm = host(Platform::KvmPvm, false, true);
        assert_eq!(
            choose_transport(&pvm, TransportChoice::Auto).unwrap(),
            Transport::Pio
        );
        assert!(choose_transport(&pvm, TransportChoice::Vmcall).is_err());
        let intel = host(Platform::KvmHardware, true, false);
        assert_eq!(
            choose_transport(&intel, TransportChoice::Auto).unwrap(),
            Transport::Vmcall
        );
        let amd = host(Platform::KvmHardware, true, true);
        assert_eq!(
            choose_transport(&amd, TransportChoice::Vmcall).unwrap(),
            Transport::Vmmcall
        );
        assert_eq!(
            choose_transport(&amd, TransportChoice::Pio).unwrap(),
            Transport::Pio
        );
        assert_eq!(
            choose_transport(&amd, TransportChoice::IntelVmcall).unwrap(),
            Transport::Vmcall
        );
        assert_eq!(
            choose_transport(&intel, TransportChoice::AmdVmmcall).unwrap(),
            Transport::Vmmcall
        );
        let plain = host(Platform::KvmHardware, false, false);
        let err = choose_transport(&plain, TransportChoice::Vmcall).unwrap_err();
        assert!(err.to_string().contains("INTERCEPT_HCALL"));
    }
}
