//! The loopback device's frontend glue (docs/abi.md §10.1; `parapet run --loopback`): a
//! [`pv_drivers::loopback::LoopbackFront`] on the ring page of a [`device::Connection`], driven
//! with the device's event channel.
//!
//! ```ignore
//! let mut lb = Loopback::connect()?;
//! lb.submit(&LoopbackRequest { id: 1, op: LOOPBACK_OP_ECHO, value: 42, ..Default::default() })?;
//! let rsp = lb.wait_response();
//! lb.disconnect()?;
//! ```
//!
//! The ring page, its grant and the port are a [`device::Connection`].

use parapet_abi::Errno;
use parapet_abi::device::kind;
use parapet_abi::loopback::{LoopbackRequest, LoopbackResponse};
use pv_drivers::loopback::{LoopbackFront, LoopbackFrontRing};
use pv_drivers::ring::RingFull;

use crate::device::{self, Connection, ConnectionError};
use crate::event_channel::Port;
use crate::grant_table::{GrantError, GrantRef};
use crate::page::GuestPage;
use crate::timer;

/// Why the loopback device could not be set up or torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoopbackError {
    /// Start-info lists no loopback device (run with `--loopback`).
    #[error("no loopback device (run with --loopback)")]
    NoDevice,
    /// The heap has no room for the ring page.
    #[error("out of memory for the ring page")]
    NoMemory,
    /// Granting or revoking the ring page failed.
    #[error("ring grant: {0}")]
    Grant(GrantError),
    /// `device_op` failed.
    #[error("device_op: {0}")]
    Device(Errno),
}

impl From<ConnectionError> for LoopbackError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::NoMemory => LoopbackError::NoMemory,
            ConnectionError::Grant(e) => LoopbackError::Grant(e),
            ConnectionError::Device(e) => LoopbackError::Device(e),
        }
    }
}

/// A connected loopback device. Dropping it disconnects the device and revokes the ring grant
/// (its [`Connection`]); if that fails, the ring page is leaked rather than freed under the
/// backend's mapping.
#[derive(Debug)]
pub struct Loopback {
    front: LoopbackFront<GuestPage>,
    conn: Connection,
    notifies: u64,
    waits: u64,
}

impl Loopback {
    /// Finds the loopback device, grants a ring page to the backend, initialises the ring,
    /// unmasks the device's port and connects.
    pub fn connect() -> Result<Loopback, LoopbackError> {
        let (index, info) = device::find(kind::LOOPBACK).ok_or(LoopbackError::NoDevice)?;
        let mut conn = Connection::new(index, info, 1)?;
        let front = LoopbackFront::new(conn.ring(0));
        conn.connect()?;
        Ok(Loopback {
            front,
            conn,
            notifies: 0,
            waits: 0,
        })
    }

    /// The device index.
    pub fn index(&self) -> u32 {
        self.conn.index()
    }

    /// The device's event channel.
    pub fn port(&self) -> Port {
        self.conn.port()
    }

    /// The ring page's grant reference.
    pub fn ring_gref(&self) -> GrantRef {
        self.conn.ring_gref(0)
    }

    fn front(&mut self) -> &mut LoopbackFront<GuestPage> {
        &mut self.front
    }

    /// The ring, for batches: push several requests, then [`Loopback::commit`].
    pub fn ring(&mut self) -> &mut LoopbackFrontRing<GuestPage> {
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
        self.conn.notify();
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

    /// Disconnects, masks the port and revokes the ring grant ([`Connection::disconnect`]). On
    /// failure the ring page, which the backend may still map, is leaked.
    pub fn disconnect(mut self) -> Result<(), LoopbackError> {
        Ok(self.conn.disconnect()?)
    }
}
