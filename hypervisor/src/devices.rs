//! The guest's split-driver devices (docs/abi.md §10): what start-info lists, and connecting a
//! frontend to its backend with `device_op`.

use crate::backends::{BackendThread, loopback};
use crate::domain::Domain;
use crate::grants::GrantMapping;
use parapet_abi::Errno;
use parapet_abi::device::{Connect, DeviceInfo, MAX_RINGS, kind};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// The backend a device gets when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The loopback test device.
    Loopback,
}

impl Model {
    fn kind(self) -> u32 {
        match self {
            Model::Loopback => kind::LOOPBACK,
        }
    }

    fn nr_rings(self) -> u32 {
        match self {
            Model::Loopback => 1,
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
        DeviceInfo {
            kind: self.model.kind(),
            nr_rings: self.model.nr_rings(),
            evtchn: self.port,
            ..Default::default()
        }
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
            .map(|&gref| dom.grants.map(gref, true))
            .collect::<Result<_, _>>()
            .map_err(|_| Errno::EPERM)?;
        let grants = dom.grants.clone();
        let serve = match self.model {
            Model::Loopback => {
                let ring = rings.into_iter().next().expect("one ring");
                move |io| loopback::serve(io, ring, grants)
            }
        };
        let thread = BackendThread::spawn(
            "loopback",
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
