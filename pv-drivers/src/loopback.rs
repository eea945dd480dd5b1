//! The loopback device (docs/abi.md §10.1): [`LoopbackFront`] for the guest and
//! [`serve_batch`] for the VMM's backend.
//!
//! One ring of [`LoopbackRequest`]s and [`LoopbackResponse`]s (64 slots). `ECHO` answers the
//! request's `value`; `SUM` answers the sum of the bytes `[offset, offset + len)` of the page
//! granted by `gref`; `FILL` writes the low byte of `value` over that range. A request with a
//! bad grant, a read-only grant for `FILL`, a range outside the page or an unknown op fails on
//! its own (status −1, value 0); nothing else is affected.
//!
//! # Backend loop
//!
//! ```text
//! let mut ring = BackRing::attach(mapped_ring_page);
//! loop {
//!     let outcome = serve_batch(&mut ring, &grants)?;   // Err: stop the guest (status 102)
//!     if outcome.notify { raise the device's event channel }
//!     if stopping { break }
//!     if !outcome.more { wait for the doorbell }
//! }
//! ```
//!
//! [`serve_batch`] returns after its final check found the ring empty with `req_event` armed,
//! so sleeping afterwards loses no request, or after [`BATCH_BUDGET`] requests with
//! [`ServeOutcome::more`] set, so that a busy ring cannot hide a stop request.

use parapet_abi::loopback::{
    LOOPBACK_OP_ECHO, LOOPBACK_OP_FILL, LOOPBACK_OP_SUM, LOOPBACK_STATUS_ERROR, LOOPBACK_STATUS_OK,
    LoopbackRequest, LoopbackResponse,
};

use crate::grant_table::GrantMapper;
use crate::ring::{BackRing, FrontRing, RingError, RingFull};
use crate::shared::{PAGE_SIZE, SharedPage};

/// Slots in the loopback ring.
pub const LOOPBACK_RING_SIZE: u32 = FrontRing::<LoopbackRequest, LoopbackResponse, ()>::SIZE;
const _: () = assert!(LOOPBACK_RING_SIZE == 64);

/// The loopback ring, as the frontend sees it.
pub type LoopbackFrontRing<P> = FrontRing<LoopbackRequest, LoopbackResponse, P>;
/// The loopback ring, as the backend sees it.
pub type LoopbackBackRing<P> = BackRing<LoopbackRequest, LoopbackResponse, P>;

/// The guest's loopback driver: a [`FrontRing`] with one-call helpers.
#[derive(Debug)]
pub struct LoopbackFront<P> {
    ring: LoopbackFrontRing<P>,
}

impl<P: SharedPage> LoopbackFront<P> {
    /// Initialises the ring page (see [`FrontRing::init`]). Grant the page and connect the
    /// device afterwards.
    pub fn new(page: P) -> Self {
        Self {
            ring: FrontRing::init(page),
        }
    }

    /// Pushes and publishes one request. Returns whether the backend must be notified.
    pub fn submit(&mut self, request: &LoopbackRequest) -> Result<bool, RingFull> {
        self.ring.push_request(request)?;
        Ok(self.ring.commit_requests())
    }

    /// The next response, if one arrived.
    pub fn poll_response(&mut self) -> Option<LoopbackResponse> {
        self.ring.next_response()
    }

    /// Call before sleeping for responses: see [`FrontRing::final_check_for_responses`].
    /// Returns `true` if a response is waiting: do not sleep.
    pub fn final_check_for_responses(&mut self) -> bool {
        self.ring.final_check_for_responses()
    }

    /// The ring, for batching (push several requests, commit once).
    pub fn ring(&mut self) -> &mut LoopbackFrontRing<P> {
        &mut self.ring
    }

    /// Gives the page back.
    pub fn into_page(self) -> P {
        self.ring.into_page()
    }
}

/// What one [`serve_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Requests answered.
    pub handled: usize,
    /// Whether the frontend must be notified (once, for the whole batch).
    pub notify: bool,
    /// The batch stopped at its budget ([`BATCH_BUDGET`] requests), `req_event` not armed: call
    /// [`serve_batch`] again (after checking whether to stop) instead of sleeping.
    pub more: bool,
}

/// The most requests one [`serve_batch`] answers (two rings' worth) before it returns, so that
/// a frontend that keeps the ring full cannot keep its backend from noticing a stop.
pub const BATCH_BUDGET: usize = 2 * LOOPBACK_RING_SIZE as usize;

/// Answers every request the frontend has published, until the final check finds the ring empty
/// (with `req_event` armed) or [`BATCH_BUDGET`] requests were answered
/// ([`ServeOutcome::more`]). Each request is copied out of the ring once and answered; responses
/// are published after each burst. Returns [`RingError`] if the frontend's `req_prod` is
/// corrupt (the responses pushed so far are published first).
pub fn serve_batch<P: SharedPage, G: GrantMapper>(
    ring: &mut LoopbackBackRing<P>,
    grants: &G,
) -> Result<ServeOutcome, RingError> {
    let mut outcome = ServeOutcome::default();
    loop {
        let burst = serve_available(ring, grants, &mut outcome.handled);
        outcome.notify |= ring.commit_responses();
        burst?;
        if outcome.handled >= BATCH_BUDGET {
            outcome.more = true;
            return Ok(outcome);
        }
        if !ring.final_check_for_requests()? {
            return Ok(outcome);
        }
    }
}

/// Answers the requests available now.
fn serve_available<P: SharedPage, G: GrantMapper>(
    ring: &mut LoopbackBackRing<P>,
    grants: &G,
    handled: &mut usize,
) -> Result<(), RingError> {
    while *handled < BATCH_BUDGET {
        let Some(request) = ring.next_request()? else {
            break;
        };
        let response = answer(&request, grants);
        ring.push_response(&response)
            .expect("a consumed request always has a response slot");
        *handled += 1;
    }
    Ok(())
}

/// Computes the response to one request (already copied out of the ring).
pub fn answer<G: GrantMapper>(request: &LoopbackRequest, grants: &G) -> LoopbackResponse {
    let result = match request.op {
        LOOPBACK_OP_ECHO => Some(request.value),
        LOOPBACK_OP_SUM => sum(request, grants),
        LOOPBACK_OP_FILL => fill(request, grants),
        _ => None,
    };
    let (status, value) = match result {
        Some(value) => (LOOPBACK_STATUS_OK, value),
        None => (LOOPBACK_STATUS_ERROR, 0),
    };
    LoopbackResponse {
        id: request.id,
        status,
        pad: 0,
        value,
    }
}

/// `[offset, offset + len)` as an in-page byte range, or `None` if it leaves the page.
fn page_range(request: &LoopbackRequest) -> Option<(usize, usize)> {
    let offset = usize::try_from(request.offset).ok()?;
    let len = usize::try_from(request.len).ok()?;
    let end = offset.checked_add(len)?;
    (end <= PAGE_SIZE).then_some((offset, len))
}

fn sum<G: GrantMapper>(request: &LoopbackRequest, grants: &G) -> Option<u64> {
    let (offset, len) = page_range(request)?;
    let page = grants.map(request.gref, false).ok()?;
    let mut bytes = [0u8; PAGE_SIZE];
    let bytes = &mut bytes[..len];
    page.read(offset, bytes);
    Some(bytes.iter().map(|&b| u64::from(b)).sum())
}

fn fill<G: GrantMapper>(request: &LoopbackRequest, grants: &G) -> Option<u64> {
    let (offset, len) = page_range(request)?;
    let page = grants.map(request.gref, true).ok()?;
    let bytes = [request.value as u8; PAGE_SIZE];
    page.write(offset, &bytes[..len]);
    Some(0)
}

#[cfg(test)]
mod tests;
