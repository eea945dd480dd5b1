//! Split-driver devices: discovery through start-info and connection with `device_op`
//! (Parapet hypercall 64).
//!
//! Xen frontends find their backends through XenStore. Parapet has no XenStore: the domain
//! builder lists the guest's devices in `StartInfo::devices`, each with an event channel already
//! connected to its backend, and a frontend connects by granting its ring pages to
//! [`DOMID_BACKEND`](crate::event_channel::DOMID_BACKEND) and calling
//! `device_op(DEVOP_CONNECT, &Connect)`. The backend validates the grants, maps the rings and
//! starts serving; from then on the two sides talk only through the rings and the event channel.

use crate::grant_table::GrantRef;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Connect a frontend: the argument is a [`Connect`]. Returns 0, `-ENOENT` for an unknown device,
/// `-EBUSY` if it is already connected, `-EINVAL` for a bad ring count, or `-EPERM` if a ring
/// grant is not valid for the backend (not granted to it, read-only, outside RAM).
pub const DEVOP_CONNECT: u64 = 0;
/// Disconnect a frontend: the argument is the device index (not a pointer). The backend stops
/// and releases its ring grants before this returns; the device may then be connected again.
pub const DEVOP_DISCONNECT: u64 = 1;

/// Capacity of `StartInfo::devices`.
pub const MAX_DEVICES: usize = 8;
/// The most ring pages a device connects with.
pub const MAX_RINGS: usize = 4;

/// Device kinds.
pub mod kind {
    /// Block device (`blkif`).
    pub const BLOCK: u32 = 2;
    /// Network interface (`netif`).
    pub const NET: u32 = 3;
    /// Loopback test device (`pv_drivers::loopback`): answers requests about granted pages.
    pub const LOOPBACK: u32 = 4;
}

/// One device in `StartInfo::devices`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DeviceInfo {
    /// One of [`kind`].
    pub kind: u32,
    /// Number of ring pages the frontend must grant in [`Connect`].
    pub nr_rings: u32,
    /// The guest's port, already connected to the backend (status `INTERDOMAIN`, remote domain
    /// `DOMID_BACKEND`). Notify it with the doorbell; the backend raises it for responses.
    pub evtchn: u32,
    /// Kind-specific flags.
    pub flags: u32,
    /// Kind-specific configuration (block: sectors, sector size; net: MAC address).
    pub config: [u64; 4],
}

/// Argument of `DEVOP_CONNECT`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Connect {
    /// Index into `StartInfo::devices`.
    pub device: u32,
    /// Number of valid `rings` (must equal `DeviceInfo::nr_rings`).
    pub nr_rings: u32,
    /// Grant references of the ring pages, each granted read/write to `DOMID_BACKEND`.
    pub rings: [GrantRef; MAX_RINGS],
}
