//! TAP devices: the host side of the PV network interfaces (docs/abi.md §10.3).
//!
//! Opened before any VM exists, so a missing, forbidden or busy TAP device costs the user one
//! clear line. A TAP is either attached here by name (`--net tap=NAME`) or inherited already
//! attached (`--net fd=N`, e.g. made by `parapet-runc` inside a container's network namespace).

use crate::config::{NetSpec, TapSource};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

/// An attached TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// The inherited descriptor's number, for `--net fd=N`.
    fd: Option<i32>,
    mac: [u8; 6],
    mtu: Option<u16>,
}

/// Checks, before this process opens anything, that every `--net fd=N` names a distinct
/// descriptor that is open and an attached TAP, so that [`Tap::open`] later takes over what the
/// parent passed and nothing this process opened in the meantime.
pub fn check_inherited(nets: &[NetSpec]) -> Result<()> {
    let mut seen = HashSet::new();
    for spec in nets {
        if let TapSource::Fd(fd) = spec.tap
            && !seen.insert(fd)
        {
            return Err(Error::Net {
                tap: spec.tap.to_string(),
                reason: "is named by two --net options".into(),
            });
        }
    }
    for spec in nets {
        if let TapSource::Fd(fd) = spec.tap {
            inherited_info(spec, fd)?;
        }
    }
    Ok(())
}

/// What the inherited descriptor `fd` is attached to, if it is a TAP the VMM can use.
fn inherited_info(spec: &NetSpec, fd: i32) -> Result<crate::sys::TapInfo> {
    let err = |reason: String| Error::Net {
        tap: spec.tap.to_string(),
        reason,
    };
    let info = crate::sys::tap_info(fd).map_err(|e| {
        err(match e.raw_os_error() {
            Some(libc::EBADF) => {
                "is not open: --net fd=N takes a TAP descriptor inherited from the parent".into()
            }
            Some(libc::EBADFD) => "is a TUN/TAP descriptor not attached to a device".into(),
            Some(libc::ENOTTY | libc::EINVAL) => "is not a TAP device descriptor".into(),
            _ => format!("cannot be asked which TAP it is: {e}"),
        })
    })?;
    let has = |flag: libc::c_int| info.flags & flag != 0;
    if !has(libc::IFF_TAP) {
        return Err(err(format!(
            "is the TUN device {} (IP packets), not a TAP (Ethernet frames)",
            info.name
        )));
    }
    if !has(libc::IFF_NO_PI) {
        return Err(err(format!(
            "TAP {} adds packet information headers: attach it with IFF_NO_PI",
            info.name
        )));
    }
    if has(libc::IFF_VNET_HDR) {
        return Err(err(format!(
            "TAP {} adds virtio-net headers: attach it without IFF_VNET_HDR",
            info.name
        )));
    }
    Ok(info)
}

impl Tap {
    /// Attaches to the TAP device `spec` names (creating it if it is missing and we may), or
    /// takes over the inherited descriptor it names.
    pub fn open(spec: &NetSpec) -> Result<Tap> {
        let name = match &spec.tap {
            TapSource::Name(name) => name,
            &TapSource::Fd(fd) => {
                let info = inherited_info(spec, fd)?;
                let file = crate::sys::claim_tap(fd).map_err(|e| Error::Net {
                    tap: spec.tap.to_string(),
                    reason: format!("cannot be made non-blocking: {e}"),
                })?;
                return Ok(Tap {
                    file,
                    mac: spec.mac.unwrap_or_else(|| default_mac(&info.name)),
                    name: info.name,
                    fd: Some(fd),
                    mtu: spec.mtu,
                });
            }
        };
        let exists = Path::new("/sys/class/net").join(name).exists();
        let err = |reason: String| Error::Net {
            tap: name.clone(),
            reason,
        };
        let file = crate::sys::open_tap(name).map_err(|e| {
            err(match (e.raw_os_error(), exists) {
                (Some(libc::EBUSY), _) => "is in use by another process".into(),
                (Some(libc::EPERM | libc::EACCES), true) => {
                    "exists but we may not attach to it (run as its owner or root)".into()
                }
                (Some(libc::EPERM | libc::EACCES), false) => format!(
                    "does not exist, and we may not create it (create it with `ip tuntap add dev {name} \
                     mode tap user $USER`)"
                ),
                (Some(libc::EINVAL), true) => "is not a TAP device".into(),
                (Some(libc::EINVAL), false) => "is not a valid interface name".into(),
                (Some(libc::ENOENT), _) => "cannot be attached: /dev/net/tun is missing".into(),
                _ => format!("cannot be attached: {e}"),
            })
        })?;
        if !exists {
            tracing::info!(
                "created TAP device {name}: it goes away when Parapet exits; configure it \
                 (ip addr, ip link set up) to reach the guest"
            );
        }
        Ok(Tap {
            file,
            name: name.clone(),
            fd: None,
            mac: spec.mac.unwrap_or_else(|| default_mac(name)),
            mtu: spec.mtu,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guest's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The MTU the guest is told.
    pub fn mtu(&self) -> u16 {
        self.mtu.unwrap_or(crate::config::MAX_MTU)
    }

    /// The device as the user named it, for logs and snapshots: `tap=NAME[,mtu=M]`, which a
    /// restore can attach again, or for an inherited descriptor `fd=N[,mtu=M] (TAP NAME)`, which
    /// it cannot (the descriptor ended with the process that had it).
    pub fn source(&self) -> String {
        let mtu = self.mtu.map(|m| format!(",mtu={m}")).unwrap_or_default();
        match self.fd {
            None => format!("tap={}{mtu}", self.name),
            Some(fd) => format!("fd={fd}{mtu} (TAP {})", self.name),
        }
    }

    /// The attached TAP file (non-blocking).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A locally administered unicast MAC derived from the TAP name, so a guest keeps its address
/// across runs: `02:50:50:xx:xx:xx`.
fn default_mac(tap: &str) -> [u8; 6] {
    let h = tap.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, _] = h.to_le_bytes();
    [0x02, 0x50, 0x50, a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_macs_are_local_unicast_and_stable() {
        let m = default_mac("tap0");
        assert_eq!(m[0] & 0b11, 0b10, "locally administered, unicast");
        assert_eq!(m, default_mac("tap0"));
        assert_ne!(m, default_mac("tap1"));
    }

    #[test]
    fn bad_names_are_refused_before_the_kernel_sees_them() {
        let spec = |tap: &str| NetSpec {
            tap: TapSource::Name(tap.into()),
            mac: None,
            mtu: None,
        };
        for bad in ["this-name-is-far-too-long", "a/b"] {
            let e = Tap::open(&spec(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn inherited_descriptors_must_be_open_taps() {
        let spec = |fd| NetSpec {
            tap: TapSource::Fd(fd),
            mac: None,
            mtu: None,
        };
        let e = check_inherited(&[spec(1_000_000)]).unwrap_err().to_string();
        assert!(e.contains("fd=1000000: is not open"), "{e}");
        let file = File::open("/proc/self/stat").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let e = check_inherited(&[spec(fd)]).unwrap_err().to_string();
        assert!(e.contains("is not a TAP device descriptor"), "{e}");
        let e = check_inherited(&[spec(fd), spec(fd)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("named by two --net options"), "{e}");
    }
}
