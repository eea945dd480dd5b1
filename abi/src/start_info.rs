//! The start-info page: what the domain builder tells the guest at entry.
//!
//! The guest is entered in 64-bit mode at its ELF entry point with RSI holding the GPA of this
//! page (as on Xen PV), interrupts masked, and a valid stack only once it sets its own.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `StartInfo::magic` of this ABI version.
pub const START_INFO_MAGIC: [u8; 16] = *b"parapet-abi-0.2\0";
/// Capacity of [`StartInfo::cmdline`], including the terminating NUL.
pub const MAX_CMDLINE: usize = 1024;
/// Capacity of [`StartInfo::memmap`].
pub const MAX_MEMMAP: usize = 16;
/// The lowest address a guest ELF segment may occupy; below it lie the boot structures.
pub const KERNEL_MIN_ADDR: u64 = 0x10_0000;
/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;

/// The host the guest runs on, which decides how privileged operations are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Platform {
    /// Linux kvm_pvm in native (PVM) mode: the interrupt flag lives in the VIF page, CLI/STI
    /// are ignored for delivery, every page-table entry needs U/S=1.
    KvmPvm = 1,
    /// KVM on VT-x or AMD-V: architectural CLI/STI and paging.
    KvmHardware = 2,
}

impl Platform {
    /// Decodes [`StartInfo::platform`].
    pub const fn from_raw(raw: u32) -> Option<Platform> {
        match raw {
            1 => Some(Platform::KvmPvm),
            2 => Some(Platform::KvmHardware),
            _ => None,
        }
    }

    /// Short name, as shown to users.
    pub const fn name(self) -> &'static str {
        match self {
            Platform::KvmPvm => "kvm-pvm",
            Platform::KvmHardware => "kvm-hw",
        }
    }
}

/// How the stubs in the hypercall page reach the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Transport {
    /// `out 0xe8, al`: a port-I/O exit (works on every KVM).
    Pio = 1,
    /// `vmcall` through KVM's Xen hypercall intercept (Intel VT-x).
    Vmcall = 2,
    /// `vmmcall` through KVM's Xen hypercall intercept (AMD-V).
    Vmmcall = 3,
}

impl Transport {
    /// Decodes [`StartInfo::transport`].
    pub const fn from_raw(raw: u32) -> Option<Transport> {
        match raw {
            1 => Some(Transport::Pio),
            2 => Some(Transport::Vmcall),
            3 => Some(Transport::Vmmcall),
            _ => None,
        }
    }

    /// Short name, as shown to users.
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Pio => "pio",
            Transport::Vmcall => "vmcall",
            Transport::Vmmcall => "vmmcall",
        }
    }
}

/// [`StartInfo::flags`] bits.
pub mod flags {
    /// The interrupt flag is the first byte of the VIF page (`StartInfo::vif_page`); CLI/STI
    /// must not be used. Set exactly when the platform is [`KvmPvm`](super::Platform::KvmPvm).
    pub const VIF: u32 = 1 << 0;
    /// The TSC is invariant: the PV clock never goes backwards.
    pub const TSC_STABLE: u32 = 1 << 1;
}

/// The GDT the domain builder loads (docs/abi.md §2.3).
pub mod gdt {
    /// 64-bit kernel code, DPL 0.
    pub const KERNEL_CODE: u16 = 0x10;
    /// Kernel data, DPL 0.
    pub const KERNEL_DATA: u16 = 0x18;
    /// User data, DPL 3.
    pub const USER_DATA: u16 = 0x2b;
    /// 64-bit user code, DPL 3.
    pub const USER_CODE: u16 = 0x33;
    /// The 64-bit TSS.
    pub const TSS: u16 = 0x40;
    /// The TSS interrupt-stack-table slot that holds the builder's emergency stack.
    pub const IST_EMERGENCY: u8 = 1;
}

/// The kvm_pvm VIF page (`StartInfo::vif_page`, present when `flags & VIF`).
pub mod vif {
    /// Byte offset of the virtual interrupt flag: 1 = interrupts enabled. Written by the guest.
    pub const IF: usize = 0;
    /// Byte offset of the "interrupt held back" flag the host sets while `IF` is 0.
    pub const PENDING: usize = 1;
    /// kvm_pvm's in-kernel hypercall trap is `int 0x1b`; this unassigned number makes it a
    /// ~1 µs no-op that gives the host a chance to deliver a held-back interrupt after the guest
    /// sets `IF` (never reaches the VMM).
    pub const KICK_HYPERCALL: u64 = 0x10ff;
}

/// What a region of guest-physical memory holds.
pub mod mem_kind {
    /// Free RAM the guest may use as it likes (heap, page tables, buffers).
    pub const USABLE: u32 = 1;
    /// The guest kernel image, as loaded from its ELF segments.
    pub const KERNEL: u32 = 2;
    /// Structures the domain builder set up: start info, shared info, hypercall page, VIF page,
    /// console page, GDT/TSS, initial page tables.
    pub const BOOT: u32 = 3;
}

/// One entry of the guest memory map.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemMapEntry {
    /// First guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// One of [`mem_kind`].
    pub kind: u32,
    /// Padding.
    pub pad: u32,
}

/// The start-info page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: [u8; 16],
    /// [`flags`] bits.
    pub flags: u32,
    /// [`Platform`] as `u32`.
    pub platform: u32,
    /// [`Transport`] as `u32`.
    pub transport: u32,
    /// Number of valid [`StartInfo::memmap`] entries.
    pub nr_memmap: u32,
    /// Guest RAM size in 4 KiB pages; RAM spans GPA 0 up to `nr_pages * 4096`.
    pub nr_pages: u64,
    /// GPA of the [`SharedInfo`](crate::shared_info::SharedInfo) page.
    pub shared_info: u64,
    /// GPA of the hypercall page (read and execute only).
    pub hypercall_page: u64,
    /// GPA of the PV console ring page.
    pub console_page: u64,
    /// GPA of the PVM VIF page if `flags & VIF`, else 0.
    pub vif_page: u64,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// GPA of the initial PML4.
    pub pt_base: u64,
    /// Number of page-table pages the builder used (they are in a `BOOT` region).
    pub nr_pt_frames: u64,
    /// GPA of the GDT the builder loaded (code 0x10, data 0x18, TSS 0x40).
    pub gdt: u64,
    /// GPA of the 64-bit TSS (IST1 points at the builder's emergency stack).
    pub tss: u64,
    /// Length of the command line, excluding the NUL.
    pub cmdline_len: u64,
    /// The guest memory map, sorted by address.
    pub memmap: [MemMapEntry; MAX_MEMMAP],
    /// The kernel command line, NUL-terminated UTF-8.
    pub cmdline: [u8; MAX_CMDLINE],
    /// GPA of the grant table ([`grant_table`](crate::grant_table)).
    pub grant_table: u64,
    /// Pages in the grant table.
    pub nr_grant_frames: u32,
    /// The guest's port connected to the console backend (Xen's `console.domU.evtchn`).
    pub console_evtchn: u32,
    /// The interrupt vector of the event-channel upcall. The guest installs a handler for it
    /// before it enables interrupts, and acknowledges each upcall with an x2APIC EOI
    /// (`wrmsr 0x80b`).
    pub upcall_vector: u32,
    /// Number of valid [`StartInfo::devices`].
    pub nr_devices: u32,
    /// The guest's split-driver devices ([`device`](crate::device)).
    pub devices: [crate::device::DeviceInfo; crate::device::MAX_DEVICES],
    /// The generation: 0 for a domain that booted, a fresh random non-zero value each time a
    /// snapshot of it is restored (like VMGenID), so clones of one snapshot can tell they are
    /// clones and re-seed their randomness. The VMM rewrites it while the domain is stopped;
    /// read it with a volatile load after `SHUTDOWN_suspend` returns (docs/snapshots.md).
    pub generation: u64,
}

const _: () = assert!(core::mem::size_of::<StartInfo>() <= PAGE_SIZE as usize);

impl StartInfo {
    /// Whether `magic` matches this ABI version.
    pub fn magic_ok(&self) -> bool {
        self.magic == START_INFO_MAGIC
    }

    /// The command line, if it is valid UTF-8 of the announced length.
    pub fn cmdline(&self) -> Option<&str> {
        let len = usize::try_from(self.cmdline_len).ok()?;
        core::str::from_utf8(self.cmdline.get(..len)?).ok()
    }

    /// The valid part of the device list.
    pub fn devices(&self) -> &[crate::device::DeviceInfo] {
        let n = (self.nr_devices as usize).min(crate::device::MAX_DEVICES);
        &self.devices[..n]
    }

    /// The valid part of the memory map.
    pub fn memmap(&self) -> &[MemMapEntry] {
        let n = (self.nr_memmap as usize).min(MAX_MEMMAP);
        &self.memmap[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn cmdline_is_bounded_by_its_length() {
        let mut si = StartInfo::new_zeroed();
        si.cmdline[..5].copy_from_slice(b"a b c");
        si.cmdline_len = 3;
        assert_eq!(si.cmdline(), Some("a b"));
        si.cmdline_len = MAX_CMDLINE as u64 + 1;
        assert_eq!(si.cmdline(), None);
    }

    #[test]
    fn memmap_never_exceeds_capacity() {
        let mut si = StartInfo::new_zeroed();
        si.nr_memmap = u32::MAX;
        assert_eq!(si.memmap().len(), MAX_MEMMAP);
    }
}
