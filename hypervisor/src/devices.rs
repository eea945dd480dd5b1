//! The guest's split-driver devices (docs/abi.md §10): what start-info lists, and connecting a
//! frontend to its backend with `device_op`.

use crate::backends::{BackendThread, block, loopback, net};
use crate::disk::FileDisk;
use crate::domain::Domain;
use crate::grants::GrantMapping;
use crate::tap::Tap;
use parapet_abi::Errno;
use parapet_abi::device::{Connect, DeviceInfo, MAX_RINGS, kind};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// The backend a device gets when it connects.
#[derive(Clone, Debug)]
pub enum Model {
    /// The loopback test device.
    Loopback,
    /// A PV block device over a disk image.
    Block(Arc<FileDisk>),
    /// A PV network interface on a TAP device.
    Net(Arc<Tap>, net::SharedCounters),
}

impl Model {
    fn kind(&self) -> u32 {
        match self {
            Model::Loopback => kind::LOOPBACK,
            Model::Block(_) => kind::BLOCK,
            Model::Net(..) => kind::NET,
        }
    }

    fn nr_rings(&self) -> u32 {
        match self {
            Model::Net(..) => 2,
            _ => 1,
        }
    }

    fn role(&self) -> crate::seccomp::Role {
        match self {
            Model::Loopback => crate::seccomp::Role::Loopback,
            Model::Block(_) => crate::seccomp::Role::Block,
            Model::Net(..) => crate::seccomp::Role::Net,
        }
    }
}

/// One device.
#[derive(Debug)]
pub struct Device {
    model: Model,
    port: u32,
    kick: Arc<EventFd>,
    running: Mutex<Option<BackendThread>>,
}

impl Device {
    /// A device whose guest port `port` is connected to the doorbell `kick`.
    pub fn new(model: Model, port: u32, kick: Arc<EventFd>) -> Device {
        Device {
            model,
            port,
            kick,
            running: Mutex::new(None),
        }
    }

    /// Its start-info entry.
    pub fn info(&self) -> DeviceInfo {
        let mut info = DeviceInfo {
            kind: self.model.kind(),
            nr_rings: self.model.nr_rings(),
            evtchn: self.port,
            ..Default::default()
        };
        if let Model::Block(disk) = &self.model {
            use parapet_abi::blkif::{CONFIG_MAX_INDIRECT_SEGMENTS, CONFIG_SECTORS, flags};
            info.config[CONFIG_SECTORS] = disk.sectors();
            info.config[CONFIG_MAX_INDIRECT_SEGMENTS] =
                pv_drivers::blkif::MAX_INDIRECT_SEGMENTS as u64;
            info.flags = flags::FLUSH | flags::DISCARD;
            if disk.read_only() {
                info.flags |= flags::READONLY;
            }
        }
        if let Model::Net(tap, _) = &self.model {
            use parapet_abi::netif::{CONFIG_MAC, CONFIG_MTU};
            let mut mac = [0u8; 8];
            mac[..6].copy_from_slice(&tap.mac());
            info.config[CONFIG_MAC] = u64::from_le_bytes(mac);
            info.config[CONFIG_MTU] = 1500;
        }
        info
    }

    /// Counters for `--stats`, named after the device's index.
    pub fn stats(&self, index: usize) -> Vec<(String, u64)> {
        let Model::Net(_, counters) = &self.model else {
            return Vec::new();
        };
        let c = *counters.lock().unwrap_or_else(|e| e.into_inner());
        [
            ("tx_packets", c.tx_packets),
            ("tx_bytes", c.tx_bytes),
            ("tx_dropped", c.tx_dropped),
            ("tx_errors", c.tx_errors),
            ("rx_packets", c.rx_packets),
            ("rx_bytes", c.rx_bytes),
            ("rx_dropped", c.rx_dropped),
            ("rx_errors", c.rx_errors),
        ]
        .into_iter()
        .map(|(name, v)| (format!("net{index}.{name}"), v))
        .collect()
    }

    /// `DEVOP_connect`: maps the rings and starts the backend.
    pub fn connect(&self, dom: &Domain, request: &Connect) -> Result<(), Errno> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return Err(Errno::EBUSY);
        }
        if request.nr_rings != self.model.nr_rings() || request.nr_rings as usize > MAX_RINGS {
            return Err(Errno::EINVAL);
        }
        let rings: Vec<GrantMapping> = request.rings[..request.nr_rings as usize]
            .iter()
            .map(|&gref| dom.grants.map_ring(gref))
            .collect::<Result<_, _>>()
            .map_err(|_| Errno::EPERM)?;
        let grants = dom.grants.clone();
        let mut rings = rings.into_iter();
        let mut ring = || rings.next().expect("nr_rings was checked");
        let serve: Box<dyn FnOnce(crate::backends::BackendIo) + Send> = match &self.model {
            Model::Loopback => {
                let r = ring();
                Box::new(move |io| loopback::serve(io, r, grants))
            }
            Model::Block(disk) => {
                let (r, disk) = (ring(), disk.clone());
                Box::new(move |io| block::serve(io, r, grants, &disk))
            }
            Model::Net(tap, counters) => {
                let (tx, rx) = (ring(), ring());
                let (tap, counters) = (tap.clone(), counters.clone());
                Box::new(move |io| net::serve(io, tx, rx, grants, &tap, &counters))
            }
        };
        let thread = BackendThread::spawn(
            self.model.role(),
            self.kick.clone(),
            dom.events.clone(),
            self.port,
            dom.control_sender(),
            dom.vcpu.clone(),
            serve,
        )
        .map_err(|e| {
            tracing::error!("cannot start a backend thread: {e}");
            Errno::ENOMEM
        })?;
        *running = Some(thread);
        Ok(())
    }

    /// `DEVOP_disconnect`: stops the backend, which releases the ring grants.
    pub fn disconnect(&self) -> Result<(), Errno> {
        let thread = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        thread.ok_or(Errno::EINVAL)?.stop();
        Ok(())
    }

    /// Stops the backend if it runs.
    pub fn stop(&self) {
        let _ = self.disconnect();
    }
}
