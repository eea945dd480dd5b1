//! PV network interfaces (docs/abi.md §10.3): [`NetifFront`] for the guest; [`serve_tx`],
//! [`serve_rx`] and the [`PacketIo`] trait for the VMM's backend.
//!
//! Xen's `io/netif.h`: two rings per interface, both with 256 slots, connected with one
//! `DEVOP_connect` (`rings[0]` transmit, `rings[1]` receive) and notified through the device's
//! one event channel.
//!
//! * **Transmit.** The guest writes a whole Ethernet frame into a page it granted (read-only is
//!   enough) and pushes a [`NetifTxRequest`] naming `gref`, `offset` and `size`; the backend
//!   copies the frame out, sends it to the host ([`PacketIo::send`]) and answers a
//!   [`NetifTxResponse`] with the request's `id`. The guest may reuse the page once the response
//!   arrived.
//! * **Receive.** The guest posts empty pages granted read/write ([`NetifRxRequest`]); for each
//!   frame the host delivers ([`PacketIo::recv`]) the backend takes the next posted page, copies
//!   the frame to offset 0 and answers a [`NetifRxResponse`] whose `status` is its length.
//!
//! # Validation (what the backend does with each request, copied out of the ring once)
//!
//! | request | answered `NETIF_RSP_ERROR` (counted `*_errors` and `*_dropped`) | answered `NETIF_RSP_DROPPED` |
//! |---|---|---|
//! | transmit | `flags` has `NETTXF_more_data` or `NETTXF_extra_info`; `size` 0 or > [`NETIF_MAX_PACKET`]; `offset + size` > 4096; the grant does not map for reading | the host refused the frame ([`PacketError`]) |
//! | receive | the grant does not map for writing (then the frame goes to the next posted page) | — |
//!
//! Other transmit flags (`NETTXF_csum_blank`, `NETTXF_data_validated`, unknown bits) are
//! ignored: Parapet guests fill their checksums in, and the frame is sent as it is. Each
//! request is answered on its own: nothing else is affected. A frame from the host that is
//! empty or longer than [`NETIF_MAX_PACKET`] is dropped (`rx_dropped`) without using a page.
//!
//! # Backend loop
//!
//! Both rings share the doorbell, so one backend thread serves both, and raises the guest's
//! port once for the two:
//!
//! ```text
//! let mut tx = NetifTxBackRing::attach(mapped_ring_page_0);
//! let mut rx = NetifRxBackRing::attach(mapped_ring_page_1);
//! loop {
//!     let t = serve_tx(&mut tx, &grants, &mut tap, &mut counters)?;   // Err: stop the guest (102)
//!     let r = serve_rx(&mut rx, &grants, &mut tap, &mut counters)?;
//!     if t.notify || r.notify { raise the device's event channel }
//!     if stopping { break }
//!     if t.more { continue }                                          // budget used up
//!     if r.needs_buffers { wait for the doorbell }                  // frames may be queued: do
//!     else { wait for the doorbell or the TAP fd to be readable }   // not poll the TAP fd
//! }
//! ```
//!
//! [`serve_tx`] returns after its final check found the transmit ring empty with `req_event`
//! armed, or after [`TX_BATCH_BUDGET`] requests with `more` set (then it is called again before
//! anything sleeps). [`serve_rx`] returns either with `needs_buffers` (no page posted, the
//! receive ring's `req_event` armed: the guest's next post notifies) or with the host's queue
//! empty (or its per-call budget of [`NETIF_RX_RING_SIZE`] frames used up, in which case the
//! TAP fd is still readable and the loop comes straight back). So sleeping afterwards loses
//! neither a request nor a frame.
//!
//! # Frontend
//!
//! [`NetifFront`] owns both front rings and the bookkeeping of request ids (0–255 on each ring,
//! each in flight at most once): a response with an id that is not in flight, or a receive
//! response whose length and offset leave the page, comes from a broken backend and is
//! refused (counted in [`NetifFront::bad_responses`]) instead of being trusted.

use parapet_abi::grant_table::GrantRef;
use parapet_abi::netif::{
    NETIF_MAX_PACKET, NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_EXTRA_INFO,
    NETTXF_MORE_DATA, NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse,
};

use crate::grant_table::GrantMapper;
use crate::ring::{BackRing, FrontRing, RingError, RingFull};
use crate::shared::{PAGE_SIZE, SharedPage};

/// Slots in the transmit ring.
pub const NETIF_TX_RING_SIZE: u32 = FrontRing::<NetifTxRequest, NetifTxResponse, ()>::SIZE;
/// Slots in the receive ring.
pub const NETIF_RX_RING_SIZE: u32 = FrontRing::<NetifRxRequest, NetifRxResponse, ()>::SIZE;
const _: () = assert!(NETIF_TX_RING_SIZE == 256 && NETIF_RX_RING_SIZE == 256);

/// Request ids [`NetifFront`] accepts: `0..MAX_IDS` on each ring (one per slot).
pub const MAX_IDS: u16 = 256;

/// The transmit ring, as the frontend sees it.
pub type NetifTxFrontRing<P> = FrontRing<NetifTxRequest, NetifTxResponse, P>;
/// The transmit ring, as the backend sees it.
pub type NetifTxBackRing<P> = BackRing<NetifTxRequest, NetifTxResponse, P>;
/// The receive ring, as the frontend sees it.
pub type NetifRxFrontRing<P> = FrontRing<NetifRxRequest, NetifRxResponse, P>;
/// The receive ring, as the backend sees it.
pub type NetifRxBackRing<P> = BackRing<NetifRxRequest, NetifRxResponse, P>;

// ---------------------------------------------------------------------------------------------
// Backend.

/// Why the host did not take a frame. Either way the request is answered `NETIF_RSP_DROPPED`
/// and counted in `tx_dropped`; the variants only let the implementation say why (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The host's queue is full (e.g. `EAGAIN`/`ENOBUFS` from a non-blocking TAP fd).
    #[error("host queue full")]
    Busy,
    /// The host refused the frame (the link is down, the frame is malformed for it, an I/O
    /// error).
    #[error("host refused the frame")]
    Refused,
}

/// The host side of an interface: where transmitted frames go and received frames come from.
/// The VMM implements it over a non-blocking TAP fd (one `write` per frame, one `read` per
/// frame, no `IFF_VNET_HDR`, `IFF_NO_PI`); tests over in-memory queues.
pub trait PacketIo {
    /// Sends one whole Ethernet frame (1–[`NETIF_MAX_PACKET`] bytes, checksums filled in).
    /// Must not block: a frame the host cannot take now is an error (the guest's TCP resends).
    fn send(&mut self, frame: &[u8]) -> Result<(), PacketError>;

    /// Takes the next frame the host has queued for the guest, without blocking: `None` if
    /// there is none (a TAP read failing with `EAGAIN`; any other read error also counts as
    /// "nothing queued" and should be logged by the implementation).
    ///
    /// `buf` has room for at least [`NETIF_MAX_PACKET`] bytes. Returns the frame's length; an
    /// implementation that can tell that a frame was longer than `buf` (and was truncated or
    /// discarded) returns a length greater than `buf.len()`, and the backend drops it
    /// (`rx_dropped`).
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}

impl<N: PacketIo + ?Sized> PacketIo for &mut N {
    fn send(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        (**self).send(frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        (**self).recv(buf)
    }
}

/// The backend's packet counters (the VMM's view; the guest keeps its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames sent to the host.
    pub tx_packets: u64,
    /// Bytes of the frames sent to the host.
    pub tx_bytes: u64,
    /// Transmit requests not sent: answered `NETIF_RSP_ERROR` (bad request) or
    /// `NETIF_RSP_DROPPED` (the host refused the frame).
    pub tx_dropped: u64,
    /// The part of `tx_dropped` answered `NETIF_RSP_ERROR`.
    pub tx_errors: u64,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Bytes of the frames delivered to the guest.
    pub rx_bytes: u64,
    /// Frames from the host not delivered: empty or larger than [`NETIF_MAX_PACKET`], or left
    /// over when every posted page turned out unusable.
    pub rx_dropped: u64,
    /// Receive requests answered `NETIF_RSP_ERROR` (a page the backend may not write).
    pub rx_errors: u64,
}

/// What one [`serve_tx`] or [`serve_rx`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Requests answered.
    pub handled: usize,
    /// Whether the frontend must be notified (once, for the whole batch; both rings share the
    /// event channel, so one notification serves a [`serve_tx`] and a [`serve_rx`]).
    pub notify: bool,
    /// [`serve_rx`] only: it stopped because no receive page is posted. Its final check armed
    /// `req_event`, so the guest's next post rings the doorbell; the host may still have frames
    /// queued, so wait for the doorbell only, not for the TAP fd (which may stay readable).
    /// `false` from [`serve_rx`]: the host's queue was empty (or the per-call budget ran out):
    /// wait for the doorbell or the TAP fd.
    pub needs_buffers: bool,
    /// [`serve_tx`] only: it stopped at its budget ([`TX_BATCH_BUDGET`] requests) without arming
    /// `req_event`: call it again (after checking whether to stop) instead of sleeping.
    pub more: bool,
}

/// The most transmit requests one [`serve_tx`] answers (two rings' worth) before it returns, so
/// that a guest that keeps the ring full cannot keep its backend from noticing a stop.
pub const TX_BATCH_BUDGET: usize = 2 * NETIF_TX_RING_SIZE as usize;

/// Answers every transmit request the frontend has published, until the final check finds the
/// ring empty (with `req_event` armed) or [`TX_BATCH_BUDGET`] requests were answered
/// ([`ServeOutcome::more`]): each request is copied out of the ring once, validated
/// (see the [module documentation](self)), its frame copied out of the granted page and given to
/// `net`. Responses are published after each burst. Returns [`RingError`] if the frontend's
/// `req_prod` is corrupt (the responses pushed so far are published first): stop the guest.
pub fn serve_tx<P: SharedPage, G: GrantMapper, N: PacketIo>(
    tx: &mut NetifTxBackRing<P>,
    grants: &G,
    net: &mut N,
    counters: &mut NetCounters,
) -> Result<ServeOutcome, RingError> {
    let mut outcome = ServeOutcome::default();
    let mut frame = [0u8; NETIF_MAX_PACKET];
    loop {
        let burst = transmit_available(tx, grants, net, counters, &mut frame, &mut outcome);
        outcome.notify |= tx.commit_responses();
        burst?;
        if outcome.handled >= TX_BATCH_BUDGET {
            outcome.more = true;
            return Ok(outcome);
        }
        if !tx.final_check_for_requests()? {
            return Ok(outcome);
        }
    }
}

fn transmit_available<P: SharedPage, G: GrantMapper, N: PacketIo>(
    tx: &mut NetifTxBackRing<P>,
    grants: &G,
    net: &mut N,
    counters: &mut NetCounters,
    frame: &mut [u8; NETIF_MAX_PACKET],
    outcome: &mut ServeOutcome,
) -> Result<(), RingError> {
    while outcome.handled < TX_BATCH_BUDGET {
        let Some(request) = tx.next_request()? else {
            break;
        };
        let status = transmit(&request, grants, net, counters, frame);
        tx.push_response(&NetifTxResponse {
            id: request.id,
            status,
        })
        .expect("a consumed request always has a response slot");
        outcome.handled += 1;
    }
    Ok(())
}

/// The in-page byte range of a transmit request, or `None` if the request is invalid (an
/// unsupported flag, a size of 0 or above [`NETIF_MAX_PACKET`], or a range leaving the page).
pub fn tx_range(request: &NetifTxRequest) -> Option<(usize, usize)> {
    if request.flags & (NETTXF_MORE_DATA | NETTXF_EXTRA_INFO) != 0 {
        return None;
    }
    let (offset, size) = (usize::from(request.offset), usize::from(request.size));
    (size != 0 && size <= NETIF_MAX_PACKET && offset + size <= PAGE_SIZE).then_some((offset, size))
}

/// Sends the frame of one transmit request (already copied out of the ring); returns the
/// response status.
fn transmit<G: GrantMapper, N: PacketIo>(
    request: &NetifTxRequest,
    grants: &G,
    net: &mut N,
    counters: &mut NetCounters,
    frame: &mut [u8; NETIF_MAX_PACKET],
) -> i16 {
    let copied = tx_range(request).and_then(|(offset, size)| {
        // The mapping (and its GTF_reading) lives only for the copy.
        let page = grants.map(request.gref, false).ok()?;
        page.read(offset, &mut frame[..size]);
        Some(size)
    });
    let Some(size) = copied else {
        counters.tx_dropped += 1;
        counters.tx_errors += 1;
        return NETIF_RSP_ERROR;
    };
    match net.send(&frame[..size]) {
        Ok(()) => {
            counters.tx_packets += 1;
            counters.tx_bytes += size as u64;
            NETIF_RSP_OKAY
        }
        Err(_) => {
            counters.tx_dropped += 1;
            NETIF_RSP_DROPPED
        }
    }
}

/// Moves frames from the host into the pages the frontend posted, one frame per page at offset
/// 0, until the host has no more frames, no page is posted, or [`NETIF_RX_RING_SIZE`] frames
/// were taken from the host in this call. A page the backend cannot write is answered
/// `NETIF_RSP_ERROR` and the frame goes to the next page. Responses are published after each
/// burst. See [`ServeOutcome::needs_buffers`] for what to wait for afterwards. Returns
/// [`RingError`] if the frontend's `req_prod` is corrupt: stop the guest.
pub fn serve_rx<P: SharedPage, G: GrantMapper, N: PacketIo>(
    rx: &mut NetifRxBackRing<P>,
    grants: &G,
    net: &mut N,
    counters: &mut NetCounters,
) -> Result<ServeOutcome, RingError> {
    let mut outcome = ServeOutcome::default();
    let mut state = RxState {
        frame: [0; PAGE_SIZE],
        in_hand: None,
        budget: NETIF_RX_RING_SIZE,
    };
    loop {
        let burst = receive_available(rx, grants, net, counters, &mut state, &mut outcome);
        outcome.notify |= rx.commit_responses();
        match burst? {
            RxStop::HostEmpty => return Ok(outcome),
            RxStop::NoBuffers => {
                if !rx.final_check_for_requests()? {
                    if state.in_hand.take().is_some() {
                        // Every page posted for it was unusable: the frame is lost.
                        counters.rx_dropped += 1;
                    }
                    outcome.needs_buffers = true;
                    return Ok(outcome);
                }
            }
        }
    }
}

struct RxState {
    /// One frame from the host (page-sized so that an implementation can report oversized
    /// frames up to a page without truncating them first).
    frame: [u8; PAGE_SIZE],
    /// The length of a frame in `frame` waiting for a usable page.
    in_hand: Option<usize>,
    /// Frames still to take from the host in this call.
    budget: u32,
}

enum RxStop {
    /// The host has no frame (or the budget is used up).
    HostEmpty,
    /// No receive page is posted.
    NoBuffers,
}

fn receive_available<P: SharedPage, G: GrantMapper, N: PacketIo>(
    rx: &mut NetifRxBackRing<P>,
    grants: &G,
    net: &mut N,
    counters: &mut NetCounters,
    state: &mut RxState,
    outcome: &mut ServeOutcome,
) -> Result<RxStop, RingError> {
    loop {
        // Look for a page before taking a frame, so a frame is never taken without one.
        if rx.unconsumed_requests()? == 0 {
            return Ok(RxStop::NoBuffers);
        }
        let len = match state.in_hand {
            Some(len) => len,
            None => {
                if state.budget == 0 {
                    return Ok(RxStop::HostEmpty);
                }
                let Some(len) = net.recv(&mut state.frame) else {
                    return Ok(RxStop::HostEmpty);
                };
                state.budget -= 1;
                if len == 0 || len > NETIF_MAX_PACKET {
                    counters.rx_dropped += 1;
                    continue;
                }
                state.in_hand = Some(len);
                len
            }
        };
        let Some(request) = rx.next_request()? else {
            return Ok(RxStop::NoBuffers);
        };
        let delivered = grants.map(request.gref, true).map(|page| {
            page.write(0, &state.frame[..len]);
        });
        let status = match delivered {
            Ok(()) => {
                state.in_hand = None;
                counters.rx_packets += 1;
                counters.rx_bytes += len as u64;
                len as i16
            }
            Err(_) => {
                counters.rx_errors += 1;
                NETIF_RSP_ERROR
            }
        };
        rx.push_response(&NetifRxResponse {
            id: request.id,
            offset: 0,
            flags: 0,
            status,
        })
        .expect("a consumed request always has a response slot");
        outcome.handled += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Frontend.

/// Why [`NetifFront`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrontError {
    /// The ring has no free slot.
    #[error("ring full")]
    RingFull,
    /// The id is not below [`MAX_IDS`].
    #[error("request id out of range")]
    BadId,
    /// A request with this id is still in flight on this ring.
    #[error("request id already in flight")]
    IdInUse,
}

impl From<RingFull> for FrontError {
    fn from(_: RingFull) -> FrontError {
        FrontError::RingFull
    }
}

/// A set of request ids `0..MAX_IDS`.
#[derive(Clone, Copy, Debug, Default)]
struct IdSet([u64; MAX_IDS as usize / 64]);

impl IdSet {
    fn split(id: u16) -> Option<(usize, u64)> {
        (id < MAX_IDS).then(|| (usize::from(id / 64), 1u64 << (id % 64)))
    }

    fn contains(&self, id: u16) -> bool {
        Self::split(id).is_some_and(|(w, bit)| self.0[w] & bit != 0)
    }

    fn insert(&mut self, id: u16) {
        if let Some((w, bit)) = Self::split(id) {
            self.0[w] |= bit;
        }
    }

    /// Removes `id`; returns whether it was present.
    fn remove(&mut self, id: u16) -> bool {
        let present = self.contains(id);
        if let Some((w, bit)) = Self::split(id) {
            self.0[w] &= !bit;
        }
        present
    }
}

/// A received frame, as a [`NetifFront`] checked it: `len` bytes at `offset` of the page posted
/// with `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// The id the page was posted with.
    pub id: u16,
    /// The frame's offset in the page.
    pub offset: usize,
    /// The frame's length (1–[`NETIF_MAX_PACKET`]).
    pub len: usize,
    /// `NETRXF_*`.
    pub flags: u16,
}

/// A receive response, checked: a frame, or the page back with an error status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCompletion {
    /// The page holds a frame.
    Packet(RxPacket),
    /// The page came back without a frame: `NETIF_RSP_ERROR` (the backend could not write the
    /// page), `NETIF_RSP_DROPPED`, or a length the frontend refused (counted in
    /// [`NetifFront::bad_responses`], reported as `NETIF_RSP_ERROR`).
    Error {
        /// The id the page was posted with.
        id: u16,
        /// The status (≤ 0).
        status: i16,
    },
}

impl RxCompletion {
    /// The id of the page this completion returns.
    pub fn id(&self) -> u16 {
        match *self {
            RxCompletion::Packet(p) => p.id,
            RxCompletion::Error { id, .. } => id,
        }
    }
}

/// The guest's network driver: the transmit and receive [`FrontRing`]s and the ids in flight on
/// each. It does not own packet buffers; the caller names pages by grant and id.
///
/// Push transmit requests ([`push_tx`](Self::push_tx)) and post receive pages
/// ([`post_rx`](Self::post_rx)), then [`commit`](Self::commit) once and notify if it says so.
/// Collect [`next_tx_response`](Self::next_tx_response)s (each frees its id, and the page may be
/// reused) and [`next_rx`](Self::next_rx) completions; before sleeping on the event channel,
/// call [`final_check`](Self::final_check).
#[derive(Debug)]
pub struct NetifFront<P> {
    tx: NetifTxFrontRing<P>,
    rx: NetifRxFrontRing<P>,
    tx_ids: IdSet,
    rx_ids: IdSet,
    bad_responses: u64,
}

impl<P: SharedPage> NetifFront<P> {
    /// Initialises both ring pages (see [`FrontRing::init`]). Grant them and connect the device
    /// afterwards (`rings[RING_TX]` = `tx_page`, `rings[RING_RX]` = `rx_page`).
    pub fn new(tx_page: P, rx_page: P) -> Self {
        Self {
            tx: FrontRing::init(tx_page),
            rx: FrontRing::init(rx_page),
            tx_ids: IdSet::default(),
            rx_ids: IdSet::default(),
            bad_responses: 0,
        }
    }

    /// Pushes a transmit request (invisible to the backend until [`commit`](Self::commit)). Its
    /// `id` must be below [`MAX_IDS`] and not in flight; nothing else is checked, so that tests
    /// can send requests the backend must refuse.
    pub fn push_tx(&mut self, request: &NetifTxRequest) -> Result<(), FrontError> {
        check_id(&self.tx_ids, request.id)?;
        self.tx.push_request(request)?;
        self.tx_ids.insert(request.id);
        Ok(())
    }

    /// Posts the page granted by `gref` (read/write to the backend) for one received frame
    /// (invisible to the backend until [`commit`](Self::commit)).
    pub fn post_rx(&mut self, id: u16, gref: GrantRef) -> Result<(), FrontError> {
        check_id(&self.rx_ids, id)?;
        self.rx.push_request(&NetifRxRequest { id, pad: 0, gref })?;
        self.rx_ids.insert(id);
        Ok(())
    }

    /// Publishes the pushed requests of both rings. Returns `true` if the backend must be
    /// notified (once, for both).
    #[must_use = "a `true` result means the backend must be notified"]
    pub fn commit(&mut self) -> bool {
        let tx = self.tx.commit_requests();
        let rx = self.rx.commit_requests();
        tx | rx
    }

    /// The next transmit response. Responses whose id is not in flight are skipped and counted
    /// in [`bad_responses`](Self::bad_responses).
    pub fn next_tx_response(&mut self) -> Option<NetifTxResponse> {
        loop {
            let response = self.tx.next_response()?;
            if self.tx_ids.remove(response.id) {
                return Some(response);
            }
            self.bad_responses += 1;
        }
    }

    /// The next receive completion, checked: a length that is not 1–[`NETIF_MAX_PACKET`] bytes
    /// inside the page becomes an [`RxCompletion::Error`] (and a bad response); a response whose
    /// id is not in flight is skipped and counted.
    pub fn next_rx(&mut self) -> Option<RxCompletion> {
        loop {
            let response = self.rx.next_response()?;
            if !self.rx_ids.remove(response.id) {
                self.bad_responses += 1;
                continue;
            }
            return Some(self.check_rx(&response));
        }
    }

    fn check_rx(&mut self, response: &NetifRxResponse) -> RxCompletion {
        let id = response.id;
        if response.status <= 0 {
            return RxCompletion::Error {
                id,
                status: response.status,
            };
        }
        let (offset, len) = (usize::from(response.offset), response.status as usize);
        if len > NETIF_MAX_PACKET || offset + len > PAGE_SIZE {
            self.bad_responses += 1;
            return RxCompletion::Error {
                id,
                status: NETIF_RSP_ERROR,
            };
        }
        RxCompletion::Packet(RxPacket {
            id,
            offset,
            len,
            flags: response.flags,
        })
    }

    /// Whether a response is waiting on either ring (does not arm the event indices).
    pub fn has_responses(&self) -> bool {
        self.tx.has_unconsumed_responses() || self.rx.has_unconsumed_responses()
    }

    /// Call before sleeping on the event channel: arms both rings' `rsp_event` (see
    /// [`FrontRing::final_check_for_responses`]). Returns `true` if a response is waiting on
    /// either: do not sleep.
    pub fn final_check(&mut self) -> bool {
        let tx = self.tx.final_check_for_responses();
        let rx = self.rx.final_check_for_responses();
        tx | rx
    }

    /// Like [`final_check`](Self::final_check) for the receive ring only (a guest that does not
    /// wait for transmit completions).
    pub fn final_check_rx(&mut self) -> bool {
        self.rx.final_check_for_responses()
    }

    /// Transmit requests that can be pushed now.
    pub fn tx_free(&self) -> u32 {
        self.tx.free_requests()
    }

    /// Receive pages that can be posted now.
    pub fn rx_free(&self) -> u32 {
        self.rx.free_requests()
    }

    /// Whether a transmit request with `id` is in flight.
    pub fn tx_in_flight(&self, id: u16) -> bool {
        self.tx_ids.contains(id)
    }

    /// Whether a receive page with `id` is posted.
    pub fn rx_in_flight(&self, id: u16) -> bool {
        self.rx_ids.contains(id)
    }

    /// Responses refused as coming from a broken backend (unknown ids, impossible lengths).
    pub fn bad_responses(&self) -> u64 {
        self.bad_responses
    }

    /// Whether the backend broke the protocol: a bad response, or a `rsp_prod` past the
    /// requests in flight (see [`FrontRing::backend_overflowed`]). Treat the device as failed.
    pub fn backend_broken(&self) -> bool {
        self.bad_responses > 0 || self.tx.backend_overflowed() || self.rx.backend_overflowed()
    }

    /// The transmit ring itself (for tests that write raw requests; ids pushed this way are not
    /// tracked, so their responses count as bad).
    pub fn tx_ring(&mut self) -> &mut NetifTxFrontRing<P> {
        &mut self.tx
    }

    /// The receive ring itself (as [`tx_ring`](Self::tx_ring)).
    pub fn rx_ring(&mut self) -> &mut NetifRxFrontRing<P> {
        &mut self.rx
    }

    /// Gives the pages back: `(tx, rx)`.
    pub fn into_pages(self) -> (P, P) {
        (self.tx.into_page(), self.rx.into_page())
    }
}

fn check_id(ids: &IdSet, id: u16) -> Result<(), FrontError> {
    if id >= MAX_IDS {
        Err(FrontError::BadId)
    } else if ids.contains(id) {
        Err(FrontError::IdInUse)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
