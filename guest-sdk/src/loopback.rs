//! The loopback device's frontend glue (docs/abi.md §10.1; `parapet run --loopback`): a
//! [`pv_drivers::loopback::LoopbackFront`] on a heap page, granted, connected, and driven with
//! the event channel.
//!
//! ```ignore
//! let mut lb = Loopback::connect()?;
//! lb.submit(&LoopbackRequest { id: 1, op: LOOPBACK_OP_ECHO, value: 42, ..Default::default() })?;
//! let rsp = lb.wait_response();
//! lb.disconnect()?;
//! ```

use parapet_abi::Errno;
use parapet_abi::device::kind;
use parapet_abi::event_channel::DOMID_BACKEND;
use parapet_abi::loopback::{LoopbackRequest, LoopbackResponse};
use pv_drivers::loopback::{LoopbackFront, LoopbackFrontRing};
use pv_drivers::ring::RingFull;

use crate::evtchn::{self, Port};
use crate::grant::{self, GrantError, GrantRef};
use crate::page::PageBox;
use crate::{device, timer};

/// Why the loopback device could not be set up or torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopbackError {
    /// Start-info lists no loopback device (run with `--loopback`).
    NoDevice,
    /// Granting the ring page failed.
    Grant(GrantError),
    /// `device_op` failed.
    Device(Errno),
}

impl core::fmt::Display for LoopbackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoopbackError::NoDevice => f.write_str("no loopback device (run with --loopback)"),
            LoopbackError::Grant(e) => write!(f, "ring grant: {e}"),
            LoopbackError::Device(e) => write!(f, "device_op: {e}"),
        }
    }
}

/// A connected loopback device. Dropping it disconnects the device and revokes the ring grant;
/// if that fails, the ring page is leaked rather than freed under the backend's mapping.
#[derive(Debug)]
pub struct Loopback {
    /// Always `Some` until `drop`.
    front: Option<LoopbackFront<PageBox>>,
    connected: bool,
    index: u32,
    port: Port,
    gref: GrantRef,
    notifies: u64,
    waits: u64,
}

impl Loopback {
    /// Finds the loopback device, initialises a ring page, grants it to the backend, unmasks
    /// the device's port and connects.
    pub fn connect() -> Result<Loopback, LoopbackError> {
        let (index, info) = device::find(kind::LOOPBACK).ok_or(LoopbackError::NoDevice)?;
        let page = PageBox::new();
        let frame = page.frame();
        let front = LoopbackFront::new(page);
        let gref =
            grant::grant_access(frame, DOMID_BACKEND, false).map_err(LoopbackError::Grant)?;
        evtchn::unmask_local(Port(info.evtchn));
        if let Err(e) = device::connect(index, &[gref]) {
            evtchn::mask(Port(info.evtchn));
            let _ = grant::end_access(gref);
            return Err(LoopbackError::Device(e));
        }
        Ok(Loopback {
            front: Some(front),
            connected: true,
            index,
            port: Port(info.evtchn),
            gref,
            notifies: 0,
            waits: 0,
        })
    }

    /// The device index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The device's event channel.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The ring page's grant reference.
    pub fn ring_gref(&self) -> GrantRef {
        self.gref
    }

    fn front(&mut self) -> &mut LoopbackFront<PageBox> {
        self.front.as_mut().expect("the front exists until drop")
    }

    /// The ring, for batches: push several requests, then [`Loopback::commit`].
    pub fn ring(&mut self) -> &mut LoopbackFrontRing<PageBox> {
        self.front().ring()
    }

    /// Publishes pushed requests and notifies the backend if it asked for it.
    pub fn commit(&mut self) {
        if self.front().ring().commit_requests() {
            self.kick();
        }
    }

    /// Rings the doorbell unconditionally.
    pub fn kick(&mut self) {
        self.notifies += 1;
        evtchn::notify(self.port);
    }

    /// Pushes and publishes one request (notifying if needed).
    pub fn submit(&mut self, request: &LoopbackRequest) -> Result<(), RingFull> {
        if self.front().submit(request)? {
            self.kick();
        }
        Ok(())
    }

    /// The next response, if one has arrived.
    pub fn poll_response(&mut self) -> Option<LoopbackResponse> {
        self.front().poll_response()
    }

    /// Blocks until a response arrives and returns it.
    pub fn wait_response(&mut self) -> LoopbackResponse {
        loop {
            if let Some(r) = self.poll_response() {
                return r;
            }
            self.waits += 1;
            let front = self.front();
            timer::wait_until(None, || front.final_check_for_responses());
        }
    }

    /// Blocks until a response arrives or `deadline` passes.
    pub fn wait_response_until(
        &mut self,
        deadline: crate::time::Instant,
    ) -> Option<LoopbackResponse> {
        loop {
            if let Some(r) = self.poll_response() {
                return Some(r);
            }
            self.waits += 1;
            let front = self.front();
            if !timer::wait_until(Some(deadline), || front.final_check_for_responses()) {
                return self.poll_response();
            }
        }
    }

    /// Doorbells rung so far.
    pub fn notifies(&self) -> u64 {
        self.notifies
    }

    /// Times the frontend slept waiting for responses.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// Disconnects, masks the port and revokes the ring grant. On failure the device is left
    /// as it is and returned with the error.
    pub fn disconnect(mut self) -> Result<(), (Loopback, LoopbackError)> {
        match self.teardown() {
            Ok(()) => Ok(()),
            Err(e) => Err((self, e)),
        }
    }

    fn teardown(&mut self) -> Result<(), LoopbackError> {
        if !self.connected {
            return Ok(());
        }
        device::disconnect(self.index).map_err(LoopbackError::Device)?;
        evtchn::mask(self.port);
        grant::end_access(self.gref).map_err(LoopbackError::Grant)?;
        self.connected = false;
        Ok(())
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if self.teardown().is_err() {
            // The backend may still map the ring page: never give it back to the heap.
            core::mem::forget(self.front.take());
        }
    }
}
