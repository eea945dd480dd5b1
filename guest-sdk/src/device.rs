//! Split-driver devices (docs/abi.md §10): discovery in start-info, `device_op`, and
//! [`Connection`], the frontend side of a connection that every PV device driver of the SDK
//! (loopback, block, net) is built on.
//!
//! The domain builder lists the guest's devices in `StartInfo::devices`, each with an event
//! channel already connected to its backend (and masked). A frontend initialises its ring pages,
//! grants them to `DOMID_BACKEND` read/write, unmasks the port and calls [`connect`];
//! [`disconnect`] stops the backend and releases its mappings of the rings before it returns.
//! [`Connection`] does all of that, in that order, and undoes it when dropped:
//!
//! ```ignore
//! let (index, info) = device::find(kind::LOOPBACK).ok_or(NoDevice)?;
//! let mut conn = Connection::new(index, info, 1)?;  // a zeroed ring page, granted
//! let front = LoopbackFront::new(conn.ring(0));     // initialise the ring
//! conn.connect()?;                                  // unmask the port, DEVOP_connect
//! // … drive `front`, `conn.notify()` …
//! conn.disconnect()?;                               // DEVOP_disconnect, mask, revoke (also on drop)
//! ```

use alloc::vec::Vec;
use core::fmt;

use parapet_abi::Errno;
use parapet_abi::device::{Connect, DeviceInfo, MAX_RINGS};
use parapet_abi::event_channel::DOMID_BACKEND;

use crate::event_channel::{self, Port};
use crate::grant_table::{self, GrantError, GrantRef};
use crate::hypercall;
use crate::page::{GuestPage, PageBox};

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

/// Why a [`Connection`] could not be set up or torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The heap has no room for a ring page.
    NoMemory,
    /// Granting or revoking a ring page failed.
    Grant(GrantError),
    /// `device_op` failed.
    Device(Errno),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::NoMemory => f.write_str("out of memory for a ring page"),
            ConnectionError::Grant(e) => write!(f, "ring grant: {e}"),
            ConnectionError::Device(e) => write!(f, "device_op: {e}"),
        }
    }
}

impl core::error::Error for ConnectionError {}

/// A ring page and its grant to the backend.
#[derive(Debug)]
struct Ring {
    page: PageBox,
    gref: GrantRef,
    /// Whether `gref` still grants the page.
    granted: bool,
}

/// The frontend side of a split-driver device's connection (docs/abi.md §10): the device (its
/// start-info index and its event channel) and its ring pages, granted read/write to the
/// backend.
///
/// [`Connection::new`] allocates the zeroed ring pages and grants them; the driver then
/// initialises its rings over [`Connection::ring`] (a `pv-drivers` frontend) and calls
/// [`Connection::connect`], which unmasks the port and hands the rings to the backend
/// (`DEVOP_connect`). [`Connection::disconnect`] stops the backend (`DEVOP_disconnect`, after
/// which it maps nothing), masks the port and revokes the ring grants.
///
/// Dropping a connection disconnects it. If that fails, the ring pages the backend may still
/// map (all of them while the device is connected, else those whose grants could not be
/// revoked) are leaked, never given back to the heap.
#[derive(Debug)]
pub struct Connection {
    index: u32,
    port: Port,
    rings: Vec<Ring>,
    connected: bool,
}

impl Connection {
    /// Allocates `nr_rings` zeroed ring pages for device `index` (described by `info`) and
    /// grants them read/write to `DOMID_BACKEND`. The device is not connected yet.
    pub fn new(
        index: u32,
        info: &DeviceInfo,
        nr_rings: usize,
    ) -> Result<Connection, ConnectionError> {
        let mut conn = Connection {
            index,
            port: Port(info.evtchn),
            rings: Vec::with_capacity(nr_rings),
            connected: false,
        };
        for _ in 0..nr_rings {
            // On failure, dropping `conn` revokes the grants made so far.
            let page = PageBox::try_new().ok_or(ConnectionError::NoMemory)?;
            let gref = grant_table::grant_access(page.frame(), DOMID_BACKEND, false)
                .map_err(ConnectionError::Grant)?;
            conn.rings.push(Ring {
                page,
                gref,
                granted: true,
            });
        }
        Ok(conn)
    }

    /// The device's start-info index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The device's event channel.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Ring page `i`, for the frontend's ring (valid while the connection lives).
    ///
    /// # Panics
    ///
    /// If there is no ring `i`.
    pub fn ring(&self, i: usize) -> GuestPage {
        self.rings[i].page.page()
    }

    /// The grant reference of ring page `i`.
    ///
    /// # Panics
    ///
    /// If there is no ring `i`.
    pub fn ring_gref(&self, i: usize) -> GrantRef {
        self.rings[i].gref
    }

    /// Whether the backend serves the rings (between [`connect`](Self::connect) and
    /// [`disconnect`](Self::disconnect)).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Unmasks the device's port and connects the device with the ring pages
    /// (`DEVOP_connect`). The rings must be initialised. If `DEVOP_connect` fails, the port is
    /// masked again; more than `MAX_RINGS` rings are refused with `-EINVAL` before anything is
    /// done. Does nothing if the device is connected.
    pub fn connect(&mut self) -> Result<(), ConnectionError> {
        if self.connected {
            return Ok(());
        }
        let n = self.rings.len();
        if n > MAX_RINGS {
            return Err(ConnectionError::Device(Errno::EINVAL));
        }
        let mut grefs = [GrantRef(0); MAX_RINGS];
        for (slot, ring) in grefs.iter_mut().zip(&self.rings) {
            *slot = ring.gref;
        }
        event_channel::unmask_local(self.port);
        if let Err(e) = connect(self.index, &grefs[..n]) {
            event_channel::mask(self.port);
            return Err(ConnectionError::Device(e));
        }
        self.connected = true;
        Ok(())
    }

    /// Rings the device's doorbell ([`event_channel::notify`]).
    #[inline]
    pub fn notify(&self) {
        event_channel::notify(self.port);
    }

    /// Disconnects the device (`DEVOP_disconnect`: the backend stops and unmaps the rings before
    /// it returns), masks its port and revokes the ring grants. Returns the first failure; a
    /// grant that could not be revoked stays granted, and calling this again retries. Does
    /// nothing that is already done.
    pub fn disconnect(&mut self) -> Result<(), ConnectionError> {
        if self.connected {
            disconnect(self.index).map_err(ConnectionError::Device)?;
            self.connected = false;
            event_channel::mask(self.port);
        }
        let mut result = Ok(());
        for ring in self.rings.iter_mut().filter(|r| r.granted) {
            match grant_table::end_access(ring.gref) {
                Ok(()) => ring.granted = false,
                Err(e) => {
                    if result.is_ok() {
                        result = Err(ConnectionError::Grant(e));
                    }
                }
            }
        }
        result
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.disconnect().is_ok() {
            return;
        }
        let connected = self.connected;
        for ring in self.rings.drain(..) {
            if connected || ring.granted {
                // The backend may still map the page: never give it back to the heap.
                core::mem::forget(ring.page);
            }
        }
    }
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

    #[test]
    fn connections_need_a_grant_table() {
        let info = DeviceInfo {
            kind: 1,
            nr_rings: 1,
            evtchn: 5,
            ..Default::default()
        };
        // No grant table before boot (and, on the host, heap frames beyond 32 bits).
        let err = Connection::new(0, &info, 1).err();
        assert!(matches!(err, Some(ConnectionError::Grant(_))), "{err:?}");
        let none = Connection::new(3, &info, 0).unwrap();
        assert_eq!((none.index(), none.port()), (3, Port(5)));
        assert!(!none.is_connected());
    }
}
