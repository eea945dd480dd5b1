//! The guest's split-driver devices (docs/abi.md §10), one module each: the host resource, the
//! backend loop and the counters of the console ([`console`]), the loopback test device
//! ([`loopback`]), block devices over disk images ([`block`]) and network interfaces on TAP
//! devices ([`net`]). [`thread`] runs a backend on its own thread; this module holds what all
//! devices share: the [`Backend`] trait, and [`Device`], which lists a backend in start-info and
//! connects it when the guest's frontend asks (`device_op`).

pub mod block;
pub mod console;
pub mod loopback;
pub mod net;
pub mod thread;

pub use thread::{BackendIo, BackendThread, Wake};

use crate::control::{Control, VcpuWake};
use crate::event_channel::EventChannels;
use crate::grant_table::{GrantMapping, GrantTable};
use crate::seccomp::Role;
use crossbeam_channel::Sender;
use parapet_abi::Errno;
use parapet_abi::device::{Connect, DeviceInfo, MAX_RINGS};
use parapet_abi::grant_table::GrantRef;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// One kind of split-driver device, as the VMM serves it. Each implementation owns its host
/// resource (a disk image, a TAP device) and its counters; the per-device state that snapshots
/// must save and restore, and what an OCI spec creates a device from, belong here too.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The device kind (`parapet_abi::device::kind`).
    fn kind(&self) -> u32;

    /// How many rings the frontend grants when it connects.
    fn nr_rings(&self) -> u32 {
        1
    }

    /// The seccomp role of the backend's thread.
    fn role(&self) -> Role;

    /// Fills in the kind-specific parts of the device's start-info entry (config words, flags).
    fn describe(&self, _info: &mut DeviceInfo) {}

    /// The host resource it serves (a disk image's path, a TAP's name), as the user named it:
    /// a snapshot records it to reuse when a restore names none.
    fn source(&self) -> String {
        String::new()
    }

    /// Counters for `--stats`; `index` is the device's position in start-info.
    fn stats(&self, _index: usize) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// The backend loop over the connected `rings` (exactly [`Backend::nr_rings`], in order),
    /// to run on the device's thread until [`BackendIo`] says stop.
    fn serve(
        &self,
        rings: Vec<GrantMapping>,
        grants: GrantTable,
    ) -> Box<dyn FnOnce(BackendIo) + Send>;
}

/// What a backend thread needs from the domain: the grant table its rings come from, the event
/// channels it raises, and the vCPU thread it reports a misbehaving guest to.
#[derive(Clone, Debug)]
pub struct BackendLink {
    /// The guest's grant table.
    pub grant_table: GrantTable,
    /// The guest's event channels.
    pub event_channels: Arc<EventChannels>,
    /// Messages to the vCPU thread.
    pub control: Sender<Control>,
    /// Wakes the vCPU thread to read them.
    pub vcpu: Arc<VcpuWake>,
}

/// One device: its backend, the guest port bound to the backend's doorbell, and the backend's
/// thread while the frontend is connected.
#[derive(Debug)]
pub struct Device {
    backend: Arc<dyn Backend>,
    port: u32,
    kick: Arc<EventFd>,
    running: Mutex<Option<Running>>,
}

/// A connected device: its backend's thread and the grant references of its rings.
#[derive(Debug)]
struct Running {
    thread: BackendThread,
    rings: Vec<GrantRef>,
}

impl Device {
    /// A device whose guest port `port` is connected to the doorbell `kick`.
    pub fn new(backend: Arc<dyn Backend>, port: u32, kick: Arc<EventFd>) -> Device {
        Device {
            backend,
            port,
            kick,
            running: Mutex::new(None),
        }
    }

    /// Its start-info entry.
    pub fn info(&self) -> DeviceInfo {
        let mut info = DeviceInfo {
            kind: self.backend.kind(),
            nr_rings: self.backend.nr_rings(),
            evtchn: self.port,
            ..Default::default()
        };
        self.backend.describe(&mut info);
        info
    }

    /// The host resource its backend serves ([`Backend::source`]).
    pub fn source(&self) -> String {
        self.backend.source()
    }

    /// Counters for `--stats`, named after the device's index.
    pub fn stats(&self, index: usize) -> Vec<(String, u64)> {
        self.backend.stats(index)
    }

    /// `DEVOP_connect`: maps the rings and starts the backend.
    pub fn connect(&self, link: &BackendLink, request: &Connect) -> Result<(), Errno> {
        let nr_rings = self.backend.nr_rings();
        if request.nr_rings != nr_rings || nr_rings as usize > MAX_RINGS {
            return Err(Errno::EINVAL);
        }
        self.start(link, &request.rings[..nr_rings as usize])
    }

    /// The grant references of the rings while the device is connected: what a snapshot saves.
    pub fn connected_rings(&self) -> Option<Vec<GrantRef>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.as_ref().map(|r| r.rings.clone())
    }

    /// Connects the device again to the rings `rings` of a restored snapshot: the backend
    /// continues from the indices in the ring pages (`BackRing::attach`), so the frontend does
    /// not notice. The grants are validated again, as for `DEVOP_connect`.
    pub fn reattach(&self, link: &BackendLink, rings: &[GrantRef]) -> Result<(), Errno> {
        if rings.len() != self.backend.nr_rings() as usize {
            return Err(Errno::EINVAL);
        }
        self.start(link, rings)
    }

    fn start(&self, link: &BackendLink, grefs: &[GrantRef]) -> Result<(), Errno> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return Err(Errno::EBUSY);
        }
        let rings: Vec<GrantMapping> = grefs
            .iter()
            .map(|&gref| link.grant_table.map_ring(gref))
            .collect::<Result<_, _>>()
            .map_err(|_| Errno::EPERM)?;
        let serve = self.backend.serve(rings, link.grant_table.clone());
        let thread = BackendThread::spawn(
            self.backend.role(),
            self.kick.clone(),
            self.port,
            link,
            serve,
        )
        .map_err(|e| {
            tracing::error!("cannot start a backend thread: {e}");
            Errno::ENOMEM
        })?;
        *running = Some(Running {
            thread,
            rings: grefs.to_vec(),
        });
        Ok(())
    }

    /// `DEVOP_disconnect`: stops the backend, which releases the ring grants.
    pub fn disconnect(&self) -> Result<(), Errno> {
        let thread = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        thread.ok_or(Errno::EINVAL)?.thread.stop();
        Ok(())
    }

    /// Stops the backend if it runs.
    pub fn stop(&self) {
        let _ = self.disconnect();
    }
}
