//! Interrupts: the in-kernel local APIC, the vCPU's local APIC in x2APIC mode, and the upcall
//! irqfd, which KVM turns into an interrupt on the upcall vector without the VMM's vCPU thread.
//!
//! This is how event channels reach the guest (docs/abi.md §7.2): any thread raises a port by
//! writing the irqfd; KVM delivers the MSI to the local APIC, which interrupts the guest as soon
//! as its interrupt flag allows (on kvm_pvm: the VIF byte). The guest acknowledges with an x2APIC
//! EOI, which KVM handles in the kernel.

use crate::error::{Error, KvmContext, Result};
use crate::kvm::vcpu::Vcpu;
use kvm_bindings::{
    KVM_IRQ_ROUTING_MSI, KvmIrqRouting, kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1,
    kvm_irq_routing_msi,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// The upcall vector (Xen HVM's `HYPERVISOR_CALLBACK_VECTOR` on Linux).
pub const UPCALL_VECTOR: u8 = 0xf3;
/// The GSI the upcall irqfd is routed through.
const UPCALL_GSI: u32 = 1;
/// `IA32_APIC_BASE`.
const MSR_APIC_BASE: u32 = 0x1b;
/// APIC base 0xfee00000, enabled (EN), x2APIC mode (EXTD), bootstrap processor (BSP).
const APIC_BASE_X2APIC: u64 = 0xfee0_0000 | 1 << 11 | 1 << 10 | 1 << 8;
/// Offset of the spurious-interrupt vector register in the local APIC page.
const APIC_SVR: usize = 0xf0;
/// SVR: APIC software-enabled, spurious vector 0xff.
const SVR_ENABLED: u32 = 0x1ff;

/// IOAPIC pins KVM reserves for a split irqchip's userspace IOAPIC (none is ever raised).
const SPLIT_IRQCHIP_PINS: u64 = 24;

/// Creates the in-kernel local APIC, without KVM's emulated PIC, IOAPIC and ELCR (a "split"
/// irqchip). Parapet needs only the local APIC, for the upcall MSI and the guest's timer; and
/// with no device in the kernel behind any I/O port, every port write reaches the VMM, which
/// the debugger's breakpoints rely on (`debug::breakpoint`). Must precede vCPU creation.
pub fn create_irqchip(vm: &VmFd) -> Result<()> {
    let cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP,
        args: [SPLIT_IRQCHIP_PINS, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .kvm("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)")
}

/// Puts the vCPU's local APIC in x2APIC mode, software-enabled.
pub fn enable_x2apic(vcpu: &Vcpu) -> Result<()> {
    if !vcpu.write_msr(MSR_APIC_BASE, APIC_BASE_X2APIC)? {
        return Err(Error::HostUnsupported(
            "KVM refused x2APIC mode for the vCPU's local APIC".into(),
        ));
    }
    let mut lapic = vcpu.fd().get_lapic().kvm("KVM_GET_LAPIC")?;
    for (i, b) in SVR_ENABLED.to_le_bytes().into_iter().enumerate() {
        lapic.regs[APIC_SVR + i] = b as _;
    }
    vcpu.fd().set_lapic(&lapic).kvm("KVM_SET_LAPIC")
}

/// Routes a new irqfd to `vector` on vCPU 0 and returns it.
pub fn upcall_irqfd(vm: &VmFd, vector: u8) -> Result<EventFd> {
    let entry = kvm_irq_routing_entry {
        gsi: UPCALL_GSI,
        type_: KVM_IRQ_ROUTING_MSI,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: 0xfee0_0000, // destination APIC id 0, fixed delivery
                data: u32::from(vector), // edge-triggered
                ..Default::default()
            },
        },
        ..Default::default()
    };
    let routing = KvmIrqRouting::from_entries(&[entry]).expect("one routing entry fits");
    vm.set_gsi_routing(&routing).kvm("KVM_SET_GSI_ROUTING")?;
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Io {
        op: "cannot create the upcall eventfd",
        source,
    })?;
    vm.register_irqfd(&fd, UPCALL_GSI).kvm("KVM_IRQFD")?;
    Ok(fd)
}
