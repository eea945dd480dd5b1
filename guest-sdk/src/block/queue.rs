//! The request queue: the `blkif` ring of a block device, the requests in flight on it and the
//! completions taken off it.
//!
//! [`RequestQueue`] owns the ring's frontend ([`BlkifFront`]), hands out request ids, pushes
//! requests built over [`GrantedPages`] and publishes them (at once, or together when
//! [plugged](RequestQueue::plug), with at most one doorbell), and turns responses into
//! [`Completion`]s, revoking each request's grants first. Completions come back in ring order;
//! [`RequestQueue::wait_for`] sets aside the completions of other requests, which
//! [`RequestQueue::poll`] and [`RequestQueue::wait`] hand out later.
//!
//! Waiting polls the ring for a while before it blocks (a disk request takes a few tens of µs;
//! polling saves the exit and the wake-up of a `SCHEDOP_block`), longer when completions usually
//! come further apart, and then sleeps in [`timer::wait_until`] until a batch of responses (a
//! quarter of those in flight) has arrived.

use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::time::Duration;

use parapet_abi::blkif::{
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_READ, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_OKAY,
    BlkifRequest,
};
use pv_drivers::blkif::{BlkifFront, BlkifFrontRing, SECTOR_SIZE};
use pv_drivers::shared::SharedPage;

use super::BlockError;
use super::pages::{GrantedPages, PAGE_BYTES, PagePool, segments};
use crate::event_channel::{self, Port};
use crate::grant_table::GrantRef;
use crate::page::{GuestPage, PageBox};
use crate::time::{self, Instant};
use crate::timer;

/// How long [`BlockDevice`](super::BlockDevice) polls for a completion before it blocks, by
/// default. A disk request takes a few tens of µs to come back; polling that long saves the exit
/// and the wake-up of a `SCHEDOP_block` (which together cost about as much again on kvm_pvm), at
/// the price of the vCPU spinning meanwhile.
pub const DEFAULT_POLL: Duration = Duration::from_micros(50);

/// The longest the device polls when completions usually come further apart than
/// [`DEFAULT_POLL`] (large requests): see
/// [`BlockDevice::set_poll`](super::BlockDevice::set_poll).
pub const MAX_ADAPTIVE_POLL: Duration = Duration::from_millis(1);

/// Identifies a submitted request (its ring `id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A finished request.
#[derive(Debug)]
pub struct Completion {
    /// The request.
    pub id: RequestId,
    /// Its operation (`BLKIF_OP_*`).
    pub operation: u8,
    /// The backend's status (`BLKIF_RSP_*`).
    pub status: i16,
    /// For reads: the pages holding the data (grants already revoked).
    pages: Vec<PageBox>,
    /// Bytes of data in `pages`.
    len: usize,
    /// Where `pages` go back when the completion is dropped (if the device still exists).
    pool: Weak<PagePool>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give(self.pages.drain(..));
        }
    }
}

impl Completion {
    /// `Ok` if the backend answered `BLKIF_RSP_OKAY`.
    pub fn result(&self) -> Result<(), BlockError> {
        status_result(self.status)
    }

    /// Bytes of read data this completion carries (0 for other operations).
    pub fn data_len(&self) -> usize {
        self.len
    }

    /// Copies the read data into `out` (as much as fits) and returns how many bytes it copied.
    pub fn copy_data(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for (chunk, page) in out[..n].chunks_mut(PAGE_BYTES).zip(&self.pages) {
            page.read(0, chunk);
        }
        n
    }
}

fn status_result(status: i16) -> Result<(), BlockError> {
    match status {
        BLKIF_RSP_OKAY => Ok(()),
        parapet_abi::blkif::BLKIF_RSP_ERROR => Err(BlockError::Io),
        BLKIF_RSP_EOPNOTSUPP => Err(BlockError::Unsupported),
        other => Err(BlockError::BadStatus(other)),
    }
}

/// A request the backend has not answered yet.
#[derive(Debug)]
struct InFlight {
    id: u64,
    operation: u8,
    pages: GrantedPages,
    /// Bytes of read data expected.
    read_len: usize,
}

/// The ring, its requests in flight and its completions. See the [module docs](self).
#[derive(Debug)]
pub(super) struct RequestQueue {
    front: BlkifFront<GuestPage>,
    /// The device's event channel, for the doorbell.
    port: Port,
    next_id: u64,
    plugged: bool,
    in_flight: Vec<InFlight>,
    done: VecDeque<Completion>,
    spare: Rc<PagePool>,
    /// Pages (data and indirect) of the requests in flight.
    pages_in_flight: usize,
    notifies: u64,
    waits: u64,
    stray_responses: u64,
    leaked_grants: u64,
    /// How long to poll the ring for a completion before blocking, at least.
    poll: Duration,
    /// When the last completion arrived, or the device last became busy (its gap to the next
    /// completion is one sample of `completion_gap_ns`).
    gap_start: Option<Instant>,
    /// Moving average of the time between completions while requests are in flight.
    completion_gap_ns: u64,
}

impl RequestQueue {
    /// A queue on the (initialised) ring `front`, notifying the backend on `port`.
    pub(super) fn new(front: BlkifFront<GuestPage>, port: Port) -> RequestQueue {
        RequestQueue {
            front,
            port,
            next_id: 1,
            plugged: false,
            in_flight: Vec::new(),
            done: VecDeque::new(),
            spare: Rc::default(),
            pages_in_flight: 0,
            gap_start: None,
            completion_gap_ns: 0,
            notifies: 0,
            waits: 0,
            stray_responses: 0,
            leaked_grants: 0,
            poll: DEFAULT_POLL,
        }
    }

    /// See [`BlockDevice::set_poll`](super::BlockDevice::set_poll).
    pub(super) fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// How long to poll now: see [`BlockDevice::set_poll`](super::BlockDevice::set_poll).
    fn poll_budget(&self) -> Duration {
        if self.poll.is_zero() {
            return self.poll;
        }
        let usual = Duration::from_nanos(self.completion_gap_ns.saturating_mul(2));
        self.poll.max(usual.min(MAX_ADAPTIVE_POLL))
    }

    /// Records `n` completions that arrived by now (one sample of the gap between them).
    fn note_completions(&mut self, n: u64) {
        let now = time::now();
        if let Some(start) = self.gap_start {
            let gap = u64::try_from((now - start).as_nanos()).unwrap_or(u64::MAX) / n.max(1);
            self.completion_gap_ns =
                (self.completion_gap_ns.saturating_mul(7) / 8).saturating_add(gap / 8);
        }
        self.gap_start = (!self.in_flight.is_empty()).then_some(now);
    }

    /// Polls the ring for a response for up to the poll time; returns whether one arrived.
    fn poll_for_response(&mut self) -> bool {
        let budget = self.poll_budget();
        let front = &mut self.front;
        if budget.is_zero() {
            return false;
        }
        let until = time::now() + budget;
        while time::now() < until {
            if front.has_unconsumed_responses() {
                return true;
            }
            core::hint::spin_loop();
        }
        front.has_unconsumed_responses()
    }

    /// Requests submitted and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Ring slots free for submissions.
    pub(super) fn free_slots(&self) -> u32 {
        self.front.free_requests()
    }

    /// Doorbells rung so far.
    pub(super) fn notifies(&self) -> u64 {
        self.notifies
    }

    /// Times the frontend slept waiting for responses.
    pub(super) fn waits(&self) -> u64 {
        self.waits
    }

    /// Responses whose id matched no request in flight (ignored).
    pub(super) fn stray_responses(&self) -> u64 {
        self.stray_responses
    }

    /// Grants the backend still held after answering (their pages were leaked).
    pub(super) fn leaked_grants(&self) -> u64 {
        self.leaked_grants
    }

    /// The ring, for tests that write it directly.
    pub(super) fn ring(&mut self) -> &mut BlkifFrontRing<GuestPage> {
        self.front.ring()
    }

    /// Rings the doorbell unconditionally.
    pub(super) fn kick(&mut self) {
        self.notifies += 1;
        event_channel::notify(self.port);
    }

    /// Holds submissions back until [`unplug`](Self::unplug).
    pub(super) fn plug(&mut self) {
        self.plugged = true;
    }

    /// Publishes everything submitted while plugged, notifying the backend if it asked for it.
    pub(super) fn unplug(&mut self) {
        self.plugged = false;
        self.commit();
    }

    fn commit(&mut self) {
        if self.front.commit() {
            self.kick();
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// `Ok` if a request can be pushed now: the ring has a free slot and the backend has not
    /// broken it.
    pub(super) fn check_slot(&self) -> Result<(), BlockError> {
        if self.front.backend_overflowed() {
            return Err(BlockError::Broken);
        }
        if self.front.free_requests() == 0 {
            return Err(BlockError::RingFull);
        }
        Ok(())
    }

    /// The pool requests take their data pages from.
    pub(super) fn pool(&self) -> &PagePool {
        &self.spare
    }

    /// Pushes a request built by `build` from its id and the grants of `pages` (granted as
    /// given: read-only if `readonly_grants`), expecting `read_len` bytes of read data back.
    /// The caller has checked that it fits ([`check_slot`](Self::check_slot)).
    pub(super) fn push(
        &mut self,
        operation: u8,
        pages: Vec<PageBox>,
        readonly_grants: bool,
        read_len: usize,
        build: impl FnOnce(&mut BlkifFront<GuestPage>, u64, &[GrantRef]) -> bool,
    ) -> Result<RequestId, BlockError> {
        let pages = GrantedPages::grant(pages, readonly_grants, &self.spare)?;
        let id = self.take_id();
        let pushed = build(&mut self.front, id, pages.data_grants());
        debug_assert!(pushed, "requests are checked before they are pushed");
        self.track(InFlight {
            id,
            operation,
            pages,
            read_len,
        });
        Ok(RequestId(id))
    }

    /// Pushes an indirect read or write (`operation`) of `count` sectors at `sector` in
    /// `pages`, granted as given, with their segments listed in one more page.
    fn push_indirect(
        &mut self,
        operation: u8,
        sector: u64,
        count: u64,
        pages: Vec<PageBox>,
        readonly_grants: bool,
        read_len: usize,
    ) -> Result<RequestId, BlockError> {
        let index = self.spare.take();
        let (pages, index_gref) =
            GrantedPages::grant_indirect(pages, readonly_grants, index, &self.spare)?;
        let id = self.take_id();
        let segments = segments(pages.data_grants(), count);
        let index_page = pages
            .index_page()
            .expect("an indirect request has an index page");
        let pushed = self
            .front
            .push_indirect(
                operation,
                id,
                sector,
                &segments,
                &[(index_gref.0, index_page)],
            )
            .is_ok();
        debug_assert!(pushed, "requests are checked before they are pushed");
        self.track(InFlight {
            id,
            operation,
            pages,
            read_len,
        });
        Ok(RequestId(id))
    }

    /// Records a pushed request and publishes it unless plugged.
    fn track(&mut self, request: InFlight) {
        if self.in_flight.is_empty() {
            // Busy from now: the first completion's gap counts from here.
            self.gap_start = Some(time::now());
        }
        self.pages_in_flight += request.pages.count();
        self.spare.keep_at_least(self.pages_in_flight);
        self.in_flight.push(request);
        if !self.plugged {
            self.commit();
        }
    }

    /// Pushes a read or write of `count` sectors at `sector` in `pages` (one per 8 sectors):
    /// indirect if there are more pages than a direct request holds.
    pub(super) fn push_data(
        &mut self,
        operation: u8,
        sector: u64,
        count: u64,
        pages: Vec<PageBox>,
    ) -> Result<RequestId, BlockError> {
        let reading = operation == BLKIF_OP_READ;
        let read_len = if reading {
            count as usize * SECTOR_SIZE
        } else {
            0
        };
        if pages.len() > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return self.push_indirect(operation, sector, count, pages, !reading, read_len);
        }
        self.push(operation, pages, !reading, read_len, |front, id, grants| {
            let segments = segments(grants, count);
            if reading {
                front.push_read(id, sector, &segments).is_ok()
            } else {
                front.push_write(id, sector, &segments).is_ok()
            }
        })
    }

    /// Pushes `request` unchecked, with a fresh id written into it. The caller has checked
    /// that it fits, owns the grants it names and revokes them after the completion.
    pub(super) fn push_raw(&mut self, mut request: BlkifRequest) -> RequestId {
        let id = self.take_id();
        request.id = id;
        let pushed = self.front.push_raw(&request).is_ok();
        debug_assert!(pushed, "check_slot saw a free slot");
        self.track(InFlight {
            id,
            operation: request.operation,
            pages: GrantedPages::default(),
            read_len: 0,
        });
        RequestId(id)
    }

    /// Takes every response off the ring and turns it into a queued completion.
    fn reap(&mut self) {
        let mut reaped = 0;
        while let Some(response) = self.front.poll_response() {
            reaped += 1;
            let Some(at) = self.in_flight.iter().position(|r| r.id == response.id) else {
                self.stray_responses += 1;
                continue;
            };
            let request = self.in_flight.swap_remove(at);
            self.pages_in_flight -= request.pages.count();
            let (mut pages, leaked) = match request.pages.revoke(&self.spare) {
                Ok(pages) => (pages, false),
                Err(held) => {
                    // The backend may still write these pages: they were leaked.
                    self.leaked_grants += held;
                    (Vec::new(), true)
                }
            };
            let read_len = if response.status == BLKIF_RSP_OKAY && !leaked {
                request.read_len
            } else {
                0
            };
            if read_len == 0 {
                // No data to hand out (a write, a flush, a failed read): reuse the pages now.
                self.spare.give(core::mem::take(&mut pages));
            }
            self.done.push_back(Completion {
                id: RequestId(request.id),
                operation: request.operation,
                status: response.status,
                pages,
                len: read_len,
                pool: Rc::downgrade(&self.spare),
            });
        }
        if reaped > 0 {
            self.note_completions(reaped);
        }
    }

    /// The next completion, if one is ready (does not block).
    pub(super) fn poll(&mut self) -> Option<Completion> {
        if self.plugged {
            // Waiting for something that was never published would hang.
            self.unplug();
        }
        self.reap();
        self.done.pop_front()
    }

    /// Blocks until a response arrives (or `deadline` passes); returns `false` on timeout.
    fn wait_response(&mut self, deadline: Option<Instant>) -> Result<bool, BlockError> {
        if self.plugged {
            self.unplug();
        }
        loop {
            if self.front.backend_overflowed() {
                return Err(BlockError::Broken);
            }
            self.reap();
            if !self.done.is_empty() {
                return Ok(true);
            }
            if self.in_flight.is_empty() {
                return Err(BlockError::Idle);
            }
            if self.poll_for_response() {
                continue;
            }
            self.waits += 1;
            let batch = self.wake_batch();
            let front = &mut self.front;
            if !timer::wait_until(deadline, || front.final_check_for_responses_after(batch)) {
                self.reap();
                return Ok(!self.done.is_empty());
            }
        }
    }

    /// Blocks until a request completes and returns it. [`BlockError::Idle`] if nothing is in
    /// flight.
    pub(super) fn wait(&mut self) -> Result<Completion, BlockError> {
        loop {
            if let Some(c) = self.poll() {
                return Ok(c);
            }
            self.wait_response(None)?;
        }
    }

    /// Blocks until request `id` completes (or `deadline` passes: [`BlockError::TimedOut`])
    /// and returns it; other completions stay queued.
    pub(super) fn wait_for(
        &mut self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<Completion, BlockError> {
        loop {
            self.reap();
            if let Some(at) = self.done.iter().position(|c| c.id == id) {
                return Ok(self.done.remove(at).expect("position is in bounds"));
            }
            if !self.in_flight.iter().any(|r| r.id == id.0) {
                return Err(BlockError::UnknownRequest);
            }
            if !self.wait_response(deadline)? {
                return Err(BlockError::TimedOut);
            }
        }
    }

    /// Blocks until a ring slot is free (responses of other requests are queued as
    /// completions).
    pub(super) fn wait_slot(&mut self) -> Result<(), BlockError> {
        if self.plugged {
            self.unplug();
        }
        loop {
            if self.front.backend_overflowed() {
                return Err(BlockError::Broken);
            }
            self.reap();
            if self.front.free_requests() > 0 {
                return Ok(());
            }
            self.waits += 1;
            let batch = self.wake_batch();
            let front = &mut self.front;
            timer::wait_until(None, || front.final_check_for_responses_after(batch));
        }
    }

    /// How many responses to wait for before being woken: a quarter of those in flight, so a
    /// deep queue is refilled in batches rather than one wake-up per response (1 at QD1).
    fn wake_batch(&self) -> u32 {
        (self.in_flight.len() as u32 / 4).max(1)
    }

    /// After the device was disconnected (the backend has let go of everything): revokes the
    /// grants of the requests still in flight (leaking the pages of any it cannot revoke).
    pub(super) fn release_in_flight(&mut self) {
        self.pages_in_flight = 0;
        for request in core::mem::take(&mut self.in_flight) {
            let _ = request.pages.revoke(&self.spare);
        }
    }

    /// While the device is still connected, at its end: leaks the pages of the requests in
    /// flight, which the backend may still map.
    pub(super) fn leak_in_flight(&mut self) {
        for request in core::mem::take(&mut self.in_flight) {
            request.pages.leak();
        }
    }
}
