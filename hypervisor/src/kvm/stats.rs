//! The vCPU's KVM binary statistics (`KVM_GET_STATS_FD`): `exits`, `insn_emulation`, …
//!
//! On kvm_pvm, `insn_emulation` is the tell-tale of native execution: it grows by one per
//! instruction for an emulated guest, and by about one per port-I/O exit for a native one.

use kvm_bindings::{KVM_STATS_TYPE_LINEAR_HIST, KVM_STATS_TYPE_MASK};
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use vmm_sys_util::ioctl::ioctl;

vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);

/// Size of `struct kvm_stats_header` and of the fixed part of `struct kvm_stats_desc`.
const HEADER_SIZE: usize = 24;
const DESC_FIXED_SIZE: usize = 16;

/// Reads every scalar statistic of a vCPU, as `(name, value)` in KVM's order.
pub fn read(vcpu: &kvm_ioctls::VcpuFd) -> io::Result<Vec<(String, u64)>> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let fd = unsafe { ioctl(vcpu, KVM_GET_STATS_FD()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut header, 0)?;
    let field = |i: usize| u32::from_ne_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let (name_size, num_desc) = (field(1) as usize, field(2) as usize);
    let (desc_offset, data_offset) = (u64::from(field(4)), u64::from(field(5)));

    // Descriptors, then the data they point into, each in one read.
    let desc_size = DESC_FIXED_SIZE + name_size;
    let mut descs = vec![0u8; desc_size * num_desc];
    file.read_exact_at(&mut descs, desc_offset)?;
    let data_len = descs
        .chunks_exact(desc_size)
        .map(desc_end)
        .max()
        .unwrap_or(0);
    let mut data = vec![0u8; data_len];
    file.read_exact_at(&mut data, data_offset)?;
    Ok(parse(&descs, desc_size, &data))
}

/// End (in bytes) of a descriptor's values in the data block.
fn desc_end(desc: &[u8]) -> usize {
    let size = u16::from_ne_bytes([desc[6], desc[7]]) as usize;
    let offset = u32::from_ne_bytes(desc[8..12].try_into().unwrap()) as usize;
    offset + size * 8
}

fn parse(descs: &[u8], desc_size: usize, data: &[u8]) -> Vec<(String, u64)> {
    descs
        .chunks_exact(desc_size)
        .filter_map(|d| {
            let flags = u32::from_ne_bytes(d[0..4].try_into().unwrap());
            let size = u16::from_ne_bytes([d[6], d[7]]);
            // Scalars only: histograms have their own types and sizes above one.
            if flags & KVM_STATS_TYPE_MASK >= KVM_STATS_TYPE_LINEAR_HIST || size != 1 {
                return None;
            }
            let offset = u32::from_ne_bytes(d[8..12].try_into().unwrap()) as usize;
            let value = u64::from_ne_bytes(data.get(offset..offset + 8)?.try_into().ok()?);
            let name = &d[DESC_FIXED_SIZE..];
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Some((String::from_utf8_lossy(&name[..len]).into_owned(), value))
        })
        .collect()
}
