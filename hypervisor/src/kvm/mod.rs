//! Everything that talks to `/dev/kvm`. The VMM's `unsafe` code is confined to this module and
//! to `memory.rs`.

pub mod irq;
pub mod state;
pub mod stats;
pub mod vcpu;

use crate::error::{Error, KvmContext, Result};
use crate::memory::GuestRam;
use kvm_bindings::{
    KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, kvm_userspace_memory_region, kvm_xen_hvm_config,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vmm_sys_util::ioctl::ioctl_with_ref;

vmm_sys_util::ioctl_iow_nr!(
    KVM_XEN_HVM_CONFIG,
    kvm_bindings::KVMIO,
    0x7a,
    kvm_xen_hvm_config
);

/// Opens `/dev/kvm` with a message that tells the user what to check.
pub fn open() -> Result<Kvm> {
    Kvm::new().map_err(|e| {
        let hint = match e.errno() {
            libc::ENOENT => " (is KVM enabled on this host?)",
            libc::EACCES | libc::EPERM => " (run as root or join the kvm group)",
            _ => "",
        };
        Error::HostUnsupported(format!("cannot open /dev/kvm: {e}{hint}"))
    })
}

/// Creates a VM and checks the capabilities Parapet cannot run without.
pub fn create_vm(kvm: &Kvm) -> Result<VmFd> {
    if !kvm.check_extension(Cap::SyncRegs) {
        return Err(Error::HostUnsupported(
            "this KVM lacks KVM_CAP_SYNC_REGS, which Parapet needs for cheap hypercalls".into(),
        ));
    }
    kvm.create_vm().kvm("KVM_CREATE_VM")
}

/// Makes `ram` the VM's memory slot 0, at GPA 0; with `log_dirty`, KVM records the pages the
/// guest writes ([`dirty_pages`]).
pub fn register_ram(vm: &VmFd, ram: &GuestRam, log_dirty: bool) -> Result<()> {
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: if log_dirty {
            kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES
        } else {
            0
        },
        guest_phys_addr: 0,
        memory_size: ram.size(),
        userspace_addr: ram.host_base(),
    };
    // SAFETY: the region describes `ram`'s own mapping, which stays mapped for as long as the VM
    // runs: the VMM drops the VM (and its vCPU) before the RAM.
    unsafe { vm.set_user_memory_region(region) }.kvm("KVM_SET_USER_MEMORY_REGION")
}

/// Deletes memory slot 0 and adds it again over `ram`: KVM drops every translation it built
/// from the slot, shadow page tables included (a warm reset on kvm_pvm needs that after the
/// host reverted guest page-table pages, kvm-pvm.md §8).
pub fn reload_ram(vm: &VmFd, ram: &GuestRam, log_dirty: bool) -> Result<()> {
    let empty = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: 0,
        userspace_addr: ram.host_base(),
    };
    // SAFETY: a region of size 0 deletes slot 0; KVM maps nothing of ours afterwards.
    unsafe { vm.set_user_memory_region(empty) }.kvm("KVM_SET_USER_MEMORY_REGION")?;
    register_ram(vm, ram, log_dirty)
}

/// The pages of slot 0 the guest wrote since the last call (`KVM_GET_DIRTY_LOG`: a bitmap,
/// one bit per page); the slot must log them ([`register_ram`]).
pub fn dirty_pages(vm: &VmFd, ram: &GuestRam) -> Result<Vec<u64>> {
    vm.get_dirty_log(0, ram.size() as usize)
        .kvm("KVM_GET_DIRTY_LOG")
}

/// Whether KVM can send every VMCALL/VMMCALL to userspace (`KVM_EXIT_XEN`).
pub fn xen_intercept_available(vm: &VmFd) -> bool {
    let flags = vm.check_extension_int(Cap::XenHvm);
    flags > 0 && flags as u32 & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL != 0
}

/// The MSR through which a Xen guest asks KVM to fill in a hypercall page. Parapet's guests never
/// write it (the VMM fills the hypercall page), but it must be non-zero: KVM turns its Xen
/// hypercall handling on only for VMs whose config names an MSR, and without it every
/// VMCALL/VMMCALL goes to KVM's own handler, which answers `-KVM_ENOSYS` (-1000). 0x40000200 is
/// Xen's choice when the range's first MSR belongs to Hyper-V, and inside the
/// `[0x40000000, 0x4fffffff]` range that KVM requires.
pub const XEN_HYPERCALL_PAGE_MSR: u32 = 0x4000_0200;

/// Turns on KVM's Xen hypercall intercept: VMCALL/VMMCALL from the guest exit as `KVM_EXIT_XEN`.
pub fn enable_xen_intercept(vm: &VmFd) -> Result<()> {
    let config = kvm_xen_hvm_config {
        flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
        msr: XEN_HYPERCALL_PAGE_MSR,
        ..Default::default()
    };
    // SAFETY: KVM_XEN_HVM_CONFIG reads a `kvm_xen_hvm_config`, which `config` is, from a VM fd.
    let ret = unsafe { ioctl_with_ref(vm, KVM_XEN_HVM_CONFIG(), &config) };
    if ret < 0 {
        return Err(Error::Kvm {
            op: "KVM_XEN_HVM_CONFIG",
            source: kvm_ioctls::Error::last(),
        });
    }
    Ok(())
}
