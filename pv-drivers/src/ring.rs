//! Xen's `io/ring.h` shared rings: [`FrontRing`] for the guest, [`BackRing`] for the VMM.
//!
//! # Layout
//!
//! One page ([`SharedPage`]) holds the header of `parapet_abi::ring` (`req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event`, 48 bytes of padding) followed by [`FrontRing::SIZE`] slots of
//! `max(size_of::<Req>(), size_of::<Rsp>())` bytes each, the number of slots being the largest
//! power of two that fits. A slot holds a request until the backend answers it, then the
//! response. Indices are free-running `u32`s compared with wrapping arithmetic; slot =
//! `index & (SIZE - 1)`.
//!
//! Each side keeps its own indices privately (Xen's `req_prod_pvt`/`rsp_cons` and
//! `req_cons`/`rsp_prod_pvt`) and trusts the page only for the other side's producer index,
//! which it loads once per decision and validates.
//!
//! # Protocol and memory ordering
//!
//! The two directions are symmetric; for requests (front produces, back consumes):
//!
//! | step | frontend (producer) | backend (consumer) |
//! |---|---|---|
//! | 1 | [`push_request`](FrontRing::push_request): copy the request into slot `req_prod_pvt`, `req_prod_pvt += 1` (private) | |
//! | 2 | [`commit_requests`](FrontRing::commit_requests): store `req_prod` (**Release**: Xen's `wmb()` before it), **fence** (`mb()`), load `req_event`; notify iff `new - req_event < new - old` | |
//! | 3 | | [`next_request`](BackRing::next_request): load `req_prod` (**Acquire**: Xen's `rmb()` after it), validate it, copy slot `req_cons` out once, `req_cons += 1` |
//! | 4 | | [`final_check_for_requests`](BackRing::final_check_for_requests): if nothing is left, store `req_event = req_cons + 1`, **fence**, load `req_prod` again; sleep only if still nothing |
//!
//! Steps 2 and 4 are a Dekker pair: each side stores its own index, fences, then loads the
//! other's. The full fences guarantee that at least one side sees the other's store, so either
//! the consumer's re-check finds the new request or the producer sees `req_event` passed and
//! notifies: a notification is never lost. While the consumer is awake its event index lags
//! behind, so producers do not notify (suppression); after a consumer arms its event index the
//! producer notifies at most once until the consumer arms it again.
//!
//! Responses flow the same way with `rsp_prod`/`rsp_event` ([`BackRing::push_response`],
//! [`BackRing::commit_responses`], [`FrontRing::next_response`],
//! [`FrontRing::final_check_for_responses`]).
//!
//! # Defences
//!
//! The backend treats the frontend as hostile (XSA-155, XSA-39): it loads `req_prod` once per
//! decision, rejects a `req_prod` that claims more requests than the ring can hold
//! ([`RingError::Overflow`], Xen's `RING_REQUEST_PROD_OVERFLOW`; the VMM stops the guest), and
//! copies every request out of its slot exactly once before looking at it. The frontend
//! likewise never consumes more responses than it has requests outstanding (Xen's
//! `RING_RESPONSE_PROD_OVERFLOW`); see [`FrontRing::next_response`].

use core::fmt;
use core::marker::PhantomData;

use parapet_abi::ring::{SRING_HEADER_SIZE, offset, ring_size};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::shared::{PAGE_SIZE, SharedPage};

/// The types a ring can carry in its slots: plain-old-data copied in and out by bytes.
pub trait RingMessage: FromBytes + IntoBytes + Immutable + KnownLayout + Copy {}

impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy> RingMessage for T {}

/// No slot is free: the frontend has [`FrontRing::SIZE`] requests outstanding, or the backend
/// tried to respond with no consumed request left to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ring full")]
pub struct RingFull;

/// The frontend broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `req_prod` claims more requests than the ring can hold: `unconsumed` new requests
    /// (`req_prod - req_cons`, wrapping: a `req_prod` that moved backwards shows as a huge
    /// number) while `in_flight` consumed requests still await their responses, and the two
    /// together exceed the `size` slots.
    #[error(
        "frontend's req_prod claims {unconsumed} unconsumed requests with {in_flight} in flight on a ring of {size} slots"
    )]
    Overflow {
        /// `req_prod - req_cons`, wrapping.
        unconsumed: u32,
        /// Requests consumed but not yet answered (`req_cons - rsp_prod_pvt`).
        in_flight: u32,
        /// Slots in the ring.
        size: u32,
    },
}

/// Xen's notify test: did the producer index moving from `old` to `new` pass `event`?
/// (`event` in `(old, new]`, modulo 2^32.)
pub(crate) fn event_passed(event: u32, old: u32, new: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Ring geometry for a request/response pair, computed at compile time.
struct Geometry<Req, Rsp>(PhantomData<(Req, Rsp)>);

impl<Req, Rsp> Geometry<Req, Rsp> {
    const SLOT_SIZE: usize = {
        let (req, rsp) = (size_of::<Req>(), size_of::<Rsp>());
        let slot = if req > rsp { req } else { rsp };
        assert!(slot > 0, "ring messages must not be zero-sized");
        slot
    };
    const SIZE: u32 = {
        let size = ring_size(PAGE_SIZE, Self::SLOT_SIZE);
        assert!(size > 0, "ring messages must fit in a page");
        size
    };

    /// Byte offset of the slot for free-running index `index`.
    fn slot_offset(index: u32) -> usize {
        SRING_HEADER_SIZE + (index & (Self::SIZE - 1)) as usize * Self::SLOT_SIZE
    }
}

fn copy_out<T: RingMessage>(page: &impl SharedPage, offset: usize) -> T {
    let mut message = T::new_zeroed();
    page.read(offset, message.as_mut_bytes());
    message
}

/// The guest's half of a ring: produces requests, consumes responses.
pub struct FrontRing<Req, Rsp, P> {
    page: P,
    /// Requests pushed, published or not (Xen's `req_prod_pvt`).
    req_prod_pvt: u32,
    /// The last `req_prod` published by [`commit_requests`](Self::commit_requests).
    req_prod: u32,
    /// Responses consumed.
    rsp_cons: u32,
    /// The backend once claimed more responses than requests were outstanding.
    backend_overflowed: bool,
    _messages: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: RingMessage, Rsp: RingMessage, P> FrontRing<Req, Rsp, P> {
    /// Slots in the ring.
    pub const SIZE: u32 = Geometry::<Req, Rsp>::SIZE;
}

impl<Req: RingMessage, Rsp: RingMessage, P: SharedPage> FrontRing<Req, Rsp, P> {
    /// Initialises the shared header of `page` and returns the frontend's half (Xen's
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`): all indices 0, `req_event = rsp_event = 1`,
    /// padding zeroed. Slots are left as they are.
    ///
    /// Call it before granting the page to the backend: the grant and `DEVOP_connect` publish
    /// the initialised header.
    pub fn init(page: P) -> Self {
        Self::init_at(page, 0)
    }

    /// [`init`](Self::init) with every index starting at `start` (the event indices at
    /// `start + 1`), as if the ring had already carried `start` messages.
    fn init_at(page: P, start: u32) -> Self {
        page.write(16, &[0; SRING_HEADER_SIZE - 16]);
        page.store_u32(offset::REQ_PROD, start);
        page.store_u32(offset::RSP_PROD, start);
        page.store_u32(offset::REQ_EVENT, start.wrapping_add(1));
        page.store_u32(offset::RSP_EVENT, start.wrapping_add(1));
        Self {
            page,
            req_prod_pvt: start,
            req_prod: start,
            rsp_cons: start,
            backend_overflowed: false,
            _messages: PhantomData,
        }
    }

    /// The page the ring lives in.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Gives the page back (e.g. to revoke its grant after `DEVOP_disconnect`).
    pub fn into_page(self) -> P {
        self.page
    }

    /// Requests that can be pushed before the ring is full.
    pub fn free_requests(&self) -> u32 {
        Self::SIZE - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests published and not yet answered by a consumed response.
    pub fn requests_in_flight(&self) -> u32 {
        self.req_prod.wrapping_sub(self.rsp_cons)
    }

    /// Copies `request` into the next free slot. It is invisible to the backend until
    /// [`commit_requests`](Self::commit_requests).
    pub fn push_request(&mut self, request: &Req) -> Result<(), RingFull> {
        if self.free_requests() == 0 {
            return Err(RingFull);
        }
        let at = Geometry::<Req, Rsp>::slot_offset(self.req_prod_pvt);
        self.page.write(at, request.as_bytes());
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the pushed requests (Xen's `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`). Returns
    /// `true` if the backend must be notified on the device's event channel.
    #[must_use = "a `true` result means the backend must be notified"]
    pub fn commit_requests(&mut self) -> bool {
        let (old, new) = (self.req_prod, self.req_prod_pvt);
        if old == new {
            return false;
        }
        self.page.store_u32(offset::REQ_PROD, new);
        self.req_prod = new;
        self.page.fence();
        event_passed(self.page.load_u32(offset::REQ_EVENT), old, new)
    }

    /// Responses available (loading `rsp_prod` once), or `(0, true)` if the backend claims more
    /// responses than requests are in flight.
    fn unconsumed_responses(&self) -> (u32, bool) {
        let claimed = self
            .page
            .load_u32(offset::RSP_PROD)
            .wrapping_sub(self.rsp_cons);
        if claimed > self.requests_in_flight() {
            (0, true)
        } else {
            (claimed, false)
        }
    }

    /// Copies the next response out of the ring, if the backend published one.
    ///
    /// A backend whose `rsp_prod` claims more responses than there are requests in flight (or
    /// moved backwards) is broken: nothing is consumed while it does (the slots it claims hold
    /// our requests, not responses) and [`backend_overflowed`](Self::backend_overflowed) becomes
    /// `true`; a frontend should then treat the device as failed.
    pub fn next_response(&mut self) -> Option<Rsp> {
        let (available, overflowed) = self.unconsumed_responses();
        self.backend_overflowed |= overflowed;
        if available == 0 {
            return None;
        }
        let response = copy_out(&self.page, Geometry::<Req, Rsp>::slot_offset(self.rsp_cons));
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Some(response)
    }

    /// Whether a response is waiting (does not arm the event index).
    pub fn has_unconsumed_responses(&self) -> bool {
        self.unconsumed_responses().0 > 0
    }

    /// Call before sleeping on the event channel (Xen's `RING_FINAL_CHECK_FOR_RESPONSES`): if no
    /// response is waiting, asks for a notification at the next one (`rsp_event = rsp_cons +
    /// 1`), fences and looks again. Returns `true` if a response is waiting: do not sleep.
    pub fn final_check_for_responses(&mut self) -> bool {
        self.final_check_for_responses_after(1)
    }

    /// [`final_check_for_responses`](Self::final_check_for_responses), but asks to be woken
    /// only when `n` more responses have arrived (`rsp_event = rsp_cons + n`): with many
    /// requests in flight, one wake-up then serves several. `n` is clamped to the requests in
    /// flight (at least 1), so the notification is always due eventually.
    pub fn final_check_for_responses_after(&mut self, n: u32) -> bool {
        if self.has_unconsumed_responses() {
            return true;
        }
        let n = n.clamp(1, self.requests_in_flight().max(1));
        self.page
            .store_u32(offset::RSP_EVENT, self.rsp_cons.wrapping_add(n));
        self.page.fence();
        self.has_unconsumed_responses()
    }

    /// Whether the backend ever claimed more responses than requests were in flight.
    pub fn backend_overflowed(&self) -> bool {
        self.backend_overflowed
    }
}

impl<Req, Rsp, P> fmt::Debug for FrontRing<Req, Rsp, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontRing")
            .field("req_prod_pvt", &self.req_prod_pvt)
            .field("req_prod", &self.req_prod)
            .field("rsp_cons", &self.rsp_cons)
            .field("backend_overflowed", &self.backend_overflowed)
            .finish_non_exhaustive()
    }
}

/// The VMM's half of a ring: consumes requests, produces responses.
pub struct BackRing<Req, Rsp, P> {
    page: P,
    /// Requests consumed.
    req_cons: u32,
    /// Responses pushed, published or not.
    rsp_prod_pvt: u32,
    /// The last `rsp_prod` published by [`commit_responses`](Self::commit_responses).
    rsp_prod: u32,
    _messages: PhantomData<fn(Rsp) -> Req>,
}

impl<Req: RingMessage, Rsp: RingMessage, P> BackRing<Req, Rsp, P> {
    /// Slots in the ring.
    pub const SIZE: u32 = Geometry::<Req, Rsp>::SIZE;
}

impl<Req: RingMessage, Rsp: RingMessage, P: SharedPage> BackRing<Req, Rsp, P> {
    /// Attaches to a ring the frontend initialised (Xen's `BACK_RING_ATTACH` at the current
    /// `rsp_prod`): `req_cons` and the private response index start at the page's `rsp_prod`,
    /// which is 0 for a freshly initialised ring. Requests the frontend published before the
    /// backend attached are served. The header is not written.
    pub fn attach(page: P) -> Self {
        let start = page.load_u32(offset::RSP_PROD);
        Self {
            page,
            req_cons: start,
            rsp_prod_pvt: start,
            rsp_prod: start,
            _messages: PhantomData,
        }
    }

    /// The page the ring lives in.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Gives the page back.
    pub fn into_page(self) -> P {
        self.page
    }

    /// Requests consumed and not yet answered.
    pub fn requests_in_flight(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Loads `req_prod` once and returns the number of unconsumed requests it claims, or
    /// [`RingError::Overflow`] if that is more than the ring can hold.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        let req_prod = self.page.load_u32(offset::REQ_PROD);
        let unconsumed = req_prod.wrapping_sub(self.req_cons);
        let in_flight = self.requests_in_flight();
        if unconsumed > Self::SIZE - in_flight {
            return Err(RingError::Overflow {
                unconsumed,
                in_flight,
                size: Self::SIZE,
            });
        }
        Ok(unconsumed)
    }

    /// Copies the next request out of the ring (once: the returned value is private), or
    /// returns `None` if there is none. `req_prod` is loaded once and validated first.
    pub fn next_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.unconsumed_requests()? == 0 {
            return Ok(None);
        }
        let request = copy_out(&self.page, Geometry::<Req, Rsp>::slot_offset(self.req_cons));
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(request))
    }

    /// Copies `response` into the slot of the oldest unanswered request. It is invisible to the
    /// frontend until [`commit_responses`](Self::commit_responses). Fails only if every consumed
    /// request has been answered (a backend bug).
    pub fn push_response(&mut self, response: &Rsp) -> Result<(), RingFull> {
        if self.requests_in_flight() == 0 {
            return Err(RingFull);
        }
        let at = Geometry::<Req, Rsp>::slot_offset(self.rsp_prod_pvt);
        self.page.write(at, response.as_bytes());
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the pushed responses (Xen's `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`). Returns
    /// `true` if the frontend must be notified.
    #[must_use = "a `true` result means the frontend must be notified"]
    pub fn commit_responses(&mut self) -> bool {
        let (old, new) = (self.rsp_prod, self.rsp_prod_pvt);
        if old == new {
            return false;
        }
        self.page.store_u32(offset::RSP_PROD, new);
        self.rsp_prod = new;
        self.page.fence();
        event_passed(self.page.load_u32(offset::RSP_EVENT), old, new)
    }

    /// Call before sleeping on the event channel (Xen's `RING_FINAL_CHECK_FOR_REQUESTS`): if no
    /// request is waiting, asks for a notification at the next one (`req_event = req_cons + 1`),
    /// fences and looks again. Returns `Ok(true)` if a request is waiting: do not sleep.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.page
            .store_u32(offset::REQ_EVENT, self.req_cons.wrapping_add(1));
        self.page.fence();
        Ok(self.unconsumed_requests()? > 0)
    }
}

impl<Req, Rsp, P> fmt::Debug for BackRing<Req, Rsp, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackRing")
            .field("req_cons", &self.req_cons)
            .field("rsp_prod_pvt", &self.rsp_prod_pvt)
            .field("rsp_prod", &self.rsp_prod)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
