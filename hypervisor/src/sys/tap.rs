//! Attaching to a TAP device.

use std::io;
use std::os::unix::fs::OpenOptionsExt;

vmm_sys_util::ioctl_iow_nr!(TUNSETIFF, 'T' as u32, 202, libc::c_int);

/// `struct ifreq` is 40 bytes: a 16-byte name, then a union whose first member here is the
/// `short` flags.
const IFREQ_SIZE: usize = 40;

/// Opens `/dev/net/tun` and attaches it to the TAP device `name` (created if it does not exist
/// and the caller may create it), non-blocking, without packet information headers.
pub fn open_tap(name: &str) -> io::Result<std::fs::File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0', ' ']) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut ifreq = [0u8; IFREQ_SIZE];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifreq` is in size and
    // layout (name, then flags); the descriptor is ours.
    if unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ptr(&file, TUNSETIFF(), ifreq.as_mut_ptr()) }
        < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
