//! Attaching to a TAP device, or taking over one a parent attached.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

vmm_sys_util::ioctl_iow_nr!(TUNSETIFF, 'T' as u32, 202, libc::c_int);
vmm_sys_util::ioctl_ior_nr!(TUNGETIFF, 'T' as u32, 210, libc::c_uint);

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

/// What `TUNGETIFF` says of an attached TUN/TAP descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// The interface's name.
    pub name: String,
    /// Its `IFF_*` flags: `IFF_TAP` or `IFF_TUN`, `IFF_NO_PI`, `IFF_VNET_HDR`, ….
    pub flags: i32,
}

/// Asks the descriptor `fd`, which this process does not own, which TUN/TAP interface it is
/// attached to: `EBADF` if it is not open, `EBADFD` if it is a TUN/TAP descriptor not attached
/// to a device, `EINVAL` or `ENOTTY` if it is something else.
pub fn tap_info(fd: RawFd) -> io::Result<TapInfo> {
    // SAFETY: F_GETFD only reads the descriptor table; a closed number gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (just checked) and stays open for this call: nothing in this
    // process closes a descriptor it does not own.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut ifreq = [0u8; IFREQ_SIZE];
    // SAFETY: TUNGETIFF writes one `struct ifreq` (name, then flags), which `ifreq` is in size
    // and layout; any other kind of descriptor refuses the request number.
    if unsafe {
        vmm_sys_util::ioctl::ioctl_with_mut_ptr(&borrowed, TUNGETIFF(), ifreq.as_mut_ptr())
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let len = ifreq[..libc::IFNAMSIZ]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(libc::IFNAMSIZ);
    Ok(TapInfo {
        name: String::from_utf8_lossy(&ifreq[..len]).into_owned(),
        flags: i32::from(i16::from_ne_bytes([ifreq[16], ifreq[17]])),
    })
}

/// Takes ownership of the inherited TAP descriptor `fd`, made non-blocking and close-on-exec.
///
/// The caller makes sure that `fd` was inherited (checked with [`tap_info`] before this
/// process opened anything that could have been given the number) and that it claims each
/// number once.
pub fn claim_tap(fd: RawFd) -> io::Result<std::fs::File> {
    tap_info(fd)?;
    // SAFETY: `fd` is open (tap_info checked); the flag calls change only its status and
    // descriptor flags.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: the descriptor is open and, as the caller guarantees, inherited and claimed only
    // here, so nothing else in this process owns or closes it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn tap_info_refuses_what_is_not_a_tap() {
        let e = tap_info(1_000_000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let e = tap_info(file.as_raw_fd()).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)),
            "{e}"
        );
    }
}
