//! Split-driver devices (docs/abi.md §10): discovery in start-info and `device_op`.
//!
//! The domain builder lists the guest's devices in `StartInfo::devices`, each with an event
//! channel already connected to its backend (and masked). A frontend initialises its ring pages,
//! grants them to `DOMID_BACKEND` read/write, and calls [`connect`]; [`disconnect`] stops the
//! backend and releases its mappings of the rings before it returns.

use parapet_abi::Errno;
use parapet_abi::device::{Connect, DeviceInfo, MAX_RINGS};

use crate::grant::GrantRef;
use crate::hypercall;

/// The devices the domain builder gave this guest (empty before boot).
pub fn devices() -> &'static [DeviceInfo] {
    crate::start_info::try_start_info().map_or(&[], |info| info.devices())
}

/// The first device of kind `kind` (see [`parapet_abi::device::kind`]): its index and
/// description.
pub fn find(kind: u32) -> Option<(u32, &'static DeviceInfo)> {
    devices()
        .iter()
        .enumerate()
        .find(|(_, d)| d.kind == kind)
        .map(|(i, d)| (i as u32, d))
}

/// `device_op(DEVOP_connect)` with a raw [`Connect`] argument (for tests that send malformed
/// ones; [`connect`] builds it from a slice).
pub fn connect_raw(arg: &Connect) -> Result<(), Errno> {
    hypercall::device_connect(arg).map(drop)
}

/// Connects device `index` with ring pages `rings` (each granted read/write to
/// `DOMID_BACKEND`). `-ENOENT` for no such device, `-EBUSY` if already connected, `-EINVAL` for
/// the wrong number of rings, `-EPERM` for a grant the backend may not use.
pub fn connect(index: u32, rings: &[GrantRef]) -> Result<(), Errno> {
    if rings.len() > MAX_RINGS {
        return Err(Errno::EINVAL);
    }
    let mut arg = Connect {
        device: index,
        nr_rings: rings.len() as u32,
        rings: [0; MAX_RINGS],
    };
    for (slot, gref) in arg.rings.iter_mut().zip(rings) {
        *slot = gref.0;
    }
    connect_raw(&arg)
}

/// Disconnects device `index`: the backend stops and releases its grants before this returns.
pub fn disconnect(index: u32) -> Result<(), Errno> {
    hypercall::device_disconnect(index).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_devices_before_boot() {
        assert!(devices().is_empty());
        assert_eq!(find(4), None);
        assert_eq!(connect(0, &[GrantRef(1); 5]), Err(Errno::EINVAL));
        assert_eq!(connect(0, &[GrantRef(1)]), Err(Errno::ENOSYS));
        assert_eq!(disconnect(0), Err(Errno::ENOSYS));
    }
}
