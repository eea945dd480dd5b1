//! TAP devices: the host side of the PV network interfaces (docs/abi.md §10.3).
//!
//! Opened before any VM exists, so a missing, forbidden or busy TAP device costs the user one
//! clear line.

use crate::config::NetSpec;
use crate::error::{Error, Result};
use std::fs::File;
use std::path::Path;

/// An attached TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    mac: [u8; 6],
}

impl Tap {
    /// Attaches to the TAP device `spec` names (creating it if it is missing and we may).
    pub fn open(spec: &NetSpec) -> Result<Tap> {
        let exists = Path::new("/sys/class/net").join(&spec.tap).exists();
        let err = |reason: String| Error::Net {
            tap: spec.tap.clone(),
            reason,
        };
        let file = crate::sys::open_tap(&spec.tap).map_err(|e| {
            err(match (e.raw_os_error(), exists) {
                (Some(libc::EBUSY), _) => "is in use by another process".into(),
                (Some(libc::EPERM | libc::EACCES), true) => {
                    "exists but we may not attach to it (run as its owner or root)".into()
                }
                (Some(libc::EPERM | libc::EACCES), false) => format!(
                    "does not exist, and we may not create it (create it with `ip tuntap add dev {} \
                     mode tap user $USER`)",
                    spec.tap
                ),
                (Some(libc::EINVAL), true) => "is not a TAP device".into(),
                (Some(libc::EINVAL), false) => "is not a valid interface name".into(),
                (Some(libc::ENOENT), _) => "cannot be attached: /dev/net/tun is missing".into(),
                _ => format!("cannot be attached: {e}"),
            })
        })?;
        if !exists {
            tracing::info!(
                "created TAP device {}: it goes away when Parapet exits; configure it \
                 (ip addr, ip link set up) to reach the guest",
                spec.tap
            );
        }
        Ok(Tap {
            file,
            name: spec.tap.clone(),
            mac: spec.mac.unwrap_or_else(|| default_mac(&spec.tap)),
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
            tap: tap.into(),
            mac: None,
        };
        for bad in ["this-name-is-far-too-long", "a/b"] {
            let e = Tap::open(&spec(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
