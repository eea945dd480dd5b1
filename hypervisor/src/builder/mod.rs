//! The domain builder: lays out a fresh guest (Xen's `xc_dom_*` in miniature).
//!
//! It copies the kernel's segments into RAM and writes the boot structures the guest finds
//! through its start-info page: shared info with the PV clock, the hypercall page, GDT and TSS,
//! and the initial page tables.

mod paging;

use crate::error::{Error, Result};
use crate::kvm::vcpu::BootState;
use crate::layout;
use crate::loader::KernelImage;
use crate::memory::GuestRam;
use parapet_abi::device::{DeviceInfo, MAX_DEVICES};
use parapet_abi::hypercall::{
    Hypercall, NR_STUBS, PIO_DOORBELL_PORT, PIO_HYPERCALL_PORT, STUB_SIZE,
};
use parapet_abi::shared_info::SharedInfo;
use parapet_abi::start_info::{
    self, MAX_CMDLINE, MAX_MEMMAP, MemMapEntry, Platform, StartInfo, Transport, mem_kind,
};
use parapet_abi::time::{PVCLOCK_TSC_STABLE, TscScale, VcpuTimeInfo};
use vm_memory::GuestAddress;
use zerocopy::FromZeros;

/// What the builder needs to know about the host and the guest.
#[derive(Debug)]
pub struct BootParams<'a> {
    /// The validated kernel.
    pub image: &'a KernelImage,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// The platform the guest will run on.
    pub platform: Platform,
    /// How its hypercalls reach the VMM.
    pub transport: Transport,
    /// The hypercall page's trap is the other CPU vendor's (a testing mode): KVM emulates it by
    /// rewriting it in place into the native one, through the guest's page tables, so the page
    /// must be writable (it is read-execute otherwise).
    pub patchable_hypercall_page: bool,
    /// TSC frequency.
    pub tsc_khz: u64,
    /// The guest's TSC at system time 0.
    pub guest_tsc: u64,
    /// Whether the TSC is invariant.
    pub tsc_stable: bool,
    /// Unix time at system time 0.
    pub wallclock: std::time::Duration,
    /// The event-channel upcall vector.
    pub upcall_vector: u8,
    /// The guest's port connected to the console backend.
    pub console_evtchn: u32,
    /// Split-driver devices.
    pub devices: &'a [DeviceInfo],
    /// Ports that start masked (those connected to backends).
    pub masked_ports: &'a [u32],
}

/// Checks that the image and command line fit a guest of `ram_size` bytes.
pub fn check_fit(image: &KernelImage, ram_size: u64, cmdline: &str) -> Result<()> {
    let extent = image.extent();
    if extent.end - extent.start > layout::MAX_KERNEL_SPAN {
        return Err(Error::Memory(format!(
            "kernel image spans {} MiB; the limit is {} MiB",
            (extent.end - extent.start) >> 20,
            layout::MAX_KERNEL_SPAN >> 20
        )));
    }
    let end = extent.end;
    if end > ram_size {
        return Err(Error::Memory(format!(
            "kernel needs {} MiB of guest memory but only {} MiB was given (use --memory)",
            end.div_ceil(1 << 20).next_multiple_of(2),
            ram_size >> 20
        )));
    }
    if cmdline.len() >= MAX_CMDLINE {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: MAX_CMDLINE - 1,
        });
    }
    if cmdline.contains('\0') {
        return Err(Error::Memory(
            "kernel command line contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// Builds the guest in `ram`. [`check_fit`] must have accepted the image.
pub fn build(ram: &GuestRam, p: &BootParams<'_>) -> Result<BootState> {
    let internal = |what: &'static str| {
        move |_| Error::Memory(format!("cannot write the {what} into guest memory"))
    };
    check_fit(p.image, ram.size(), p.cmdline)?;
    for seg in &p.image.segments {
        // RAM is fresh and zeroed, so the bss tail needs no clearing.
        ram.write(GuestAddress(seg.gpa), &seg.data)
            .map_err(internal("kernel image"))?;
    }
    let (cr3, nr_pt_frames) =
        paging::build(ram, p.image, p.patchable_hypercall_page).map_err(internal("page tables"))?;
    write_gdt_and_tss(ram).map_err(internal("GDT"))?;
    ram.write(
        GuestAddress(layout::HYPERCALL_PAGE),
        &hypercall_page(p.transport),
    )
    .map_err(internal("hypercall page"))?;
    ram.write_obj(GuestAddress(layout::SHARED_INFO), &shared_info(ram, p))
        .map_err(internal("shared-info page"))?;
    let si = start_info(ram, p, cr3, nr_pt_frames);
    ram.write_obj(GuestAddress(layout::START_INFO), &si)
        .map_err(internal("start-info page"))?;
    ram.protect(paging::read_only_ranges(
        p.image,
        layout::BOOT_END,
        p.patchable_hypercall_page,
    ));
    Ok(BootState {
        entry: p.image.entry,
        start_info: layout::START_INFO,
        cr3,
    })
}

/// The hypercall page: stub `n` is `mov eax, n; <trap>; ret`, padded with `int3`.
pub fn hypercall_page(transport: Transport) -> [u8; 4096] {
    let trap: &[u8] = match transport {
        Transport::Pio => &[0xe6, PIO_HYPERCALL_PORT as u8], // out imm8, al
        Transport::Vmcall => &[0x0f, 0x01, 0xc1],
        Transport::Vmmcall => &[0x0f, 0x01, 0xd9],
    };
    const _: () = assert!(
        PIO_HYPERCALL_PORT <= 0xff && PIO_DOORBELL_PORT <= 0xff,
        "imm8 ports"
    );
    let mut page = [0xcc_u8; 4096];
    for (nr, stub) in page.chunks_exact_mut(STUB_SIZE).enumerate().take(NR_STUBS) {
        let code: Vec<u8> = if nr == Hypercall::EVTCHN_NOTIFY.0 as usize {
            // mov eax, edi; out 0xec, eax; ret: the doorbell (docs/abi.md §7.4).
            vec![0x89, 0xf8, 0xe7, PIO_DOORBELL_PORT as u8, 0xc3]
        } else {
            let mut code = vec![0xb8];
            code.extend_from_slice(&(nr as u32).to_le_bytes());
            code.extend_from_slice(trap);
            code.push(0xc3);
            code
        };
        stub[..code.len()].copy_from_slice(&code);
    }
    page
}

fn write_gdt_and_tss(ram: &GuestRam) -> std::result::Result<(), parapet_abi::Errno> {
    let tss = layout::TSS;
    let tss_limit = 0x67u64;
    let gdt: [u64; 10] = [
        0,
        0,
        0x00af_9b00_0000_ffff, // 0x10: 64-bit code, DPL0
        0x00cf_9300_0000_ffff, // 0x18: data, DPL0
        0,
        0x00cf_f300_0000_ffff, // 0x28 (0x2b): data, DPL3
        0x00af_fb00_0000_ffff, // 0x30 (0x33): 64-bit code, DPL3
        0,
        // 0x40: 64-bit TSS, busy (it is loaded in TR at entry).
        tss_limit | (tss & 0xff_ffff) << 16 | 0x8b << 40 | ((tss >> 24) & 0xff) << 56,
        tss >> 32,
    ];
    ram.write(
        GuestAddress(layout::GDT),
        zerocopy::IntoBytes::as_bytes(&gdt[..]),
    )?;
    // TSS: RSP0 at 4, IST1 at 0x24, I/O bitmap base (none) at 0x66.
    let mut t = [0u8; 0x68];
    t[4..12].copy_from_slice(&layout::EMERGENCY_STACK.end.to_le_bytes());
    t[0x24..0x2c].copy_from_slice(&layout::EMERGENCY_STACK.end.to_le_bytes());
    t[0x66..0x68].copy_from_slice(&0x68u16.to_le_bytes());
    ram.write(GuestAddress(tss), &t)
}

fn shared_info(ram: &GuestRam, p: &BootParams<'_>) -> SharedInfo {
    let mut si = SharedInfo::new_zeroed();
    let scale = TscScale::from_tsc_khz(p.tsc_khz);
    let vcpu = &mut si.vcpu_info[0];
    vcpu.evtchn_upcall_mask = 1;
    vcpu.time = VcpuTimeInfo {
        version: 2,
        tsc_timestamp: p.guest_tsc,
        system_time: 0,
        tsc_to_system_mul: scale.mul,
        tsc_shift: scale.shift,
        flags: if p.tsc_stable { PVCLOCK_TSC_STABLE } else { 0 },
        ..Default::default()
    };
    let secs = p.wallclock.as_secs();
    si.wc_version = 2;
    si.wc_sec = secs as u32;
    si.wc_sec_hi = (secs >> 32) as u32;
    si.wc_nsec = p.wallclock.subsec_nanos();
    si.arch.max_pfn = ram.size() / layout::PAGE;
    for &port in p.masked_ports {
        if let Some(word) = si.evtchn_mask.get_mut(port as usize / 64) {
            *word |= 1 << (port % 64);
        }
    }
    si
}

fn start_info(ram: &GuestRam, p: &BootParams<'_>, cr3: u64, nr_pt_frames: u64) -> StartInfo {
    let mut si = StartInfo::new_zeroed();
    si.magic = start_info::START_INFO_MAGIC;
    si.flags = if p.tsc_stable {
        start_info::flags::TSC_STABLE
    } else {
        0
    };
    if p.platform == Platform::KvmPvm {
        si.flags |= start_info::flags::VIF;
        si.vif_page = layout::VIF_PAGE;
    }
    si.platform = p.platform as u32;
    si.transport = p.transport as u32;
    si.nr_pages = ram.size() / layout::PAGE;
    si.shared_info = layout::SHARED_INFO;
    si.hypercall_page = layout::HYPERCALL_PAGE;
    si.console_page = layout::CONSOLE_PAGE;
    si.tsc_khz = p.tsc_khz;
    si.pt_base = cr3;
    si.nr_pt_frames = nr_pt_frames;
    si.gdt = layout::GDT;
    si.tss = layout::TSS;
    si.cmdline_len = p.cmdline.len() as u64;
    si.grant_table = layout::GRANT_TABLE.start;
    si.nr_grant_frames =
        ((layout::GRANT_TABLE.end - layout::GRANT_TABLE.start) / layout::PAGE) as u32;
    si.upcall_vector = u32::from(p.upcall_vector);
    si.console_evtchn = p.console_evtchn;
    let n = p.devices.len().min(MAX_DEVICES);
    si.nr_devices = n as u32;
    si.devices[..n].copy_from_slice(&p.devices[..n]);
    si.cmdline[..p.cmdline.len()].copy_from_slice(p.cmdline.as_bytes());

    let map = memory_map(p.image, ram.size());
    si.nr_memmap = map.len() as u32;
    si.memmap[..map.len()].copy_from_slice(&map);
    si
}

/// Boot area, kernel, and the usable RAM around it, sorted by address.
fn memory_map(image: &KernelImage, ram_size: u64) -> Vec<MemMapEntry> {
    let entry = |addr: u64, end: u64, kind| MemMapEntry {
        addr,
        len: end - addr,
        kind,
        pad: 0,
    };
    let kernel = image.extent();
    let (k_start, k_end) = (
        kernel.start & !(layout::PAGE - 1),
        kernel.end.next_multiple_of(layout::PAGE),
    );
    let mut map = vec![entry(layout::START_INFO, layout::BOOT_END, mem_kind::BOOT)];
    if k_start > layout::BOOT_END {
        map.push(entry(layout::BOOT_END, k_start, mem_kind::USABLE));
    }
    map.push(entry(k_start, k_end, mem_kind::KERNEL));
    if k_end < ram_size {
        map.push(entry(k_end, ram_size, mem_kind::USABLE));
    }
    debug_assert!(map.len() <= MAX_MEMMAP);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_load_their_number_and_return() {
        let page = hypercall_page(Transport::Pio);
        let off = Hypercall::CONSOLE_IO.stub_offset().unwrap();
        assert_eq!(&page[off..off + 8], &[0xb8, 18, 0, 0, 0, 0xe6, 0xe8, 0xc3]);
        assert_eq!(page[off + 8], 0xcc);
        let page = hypercall_page(Transport::Vmcall);
        assert_eq!(&page[32..41], &[0xb8, 1, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]);
        let bell = Hypercall::EVTCHN_NOTIFY.stub_offset().unwrap();
        assert_eq!(&page[bell..bell + 6], &[0x89, 0xf8, 0xe7, 0xec, 0xc3, 0xcc]);
    }
}
