//! PV block devices (docs/abi.md §10.2; `parapet run --disk PATH[,readonly]`): a
//! [`pv_drivers::blkif::BlkifFront`] on a heap page, granted, connected and driven with the
//! event channel, and a sector API on top.
//!
//! ```ignore
//! let mut disk = BlockDevice::open(0)?;            // the first --disk
//! let mut buf = [0u8; 1024];
//! disk.read(0, &mut buf)?;                         // sectors 0 and 1
//! disk.write(8, &buf)?;
//! disk.flush()?;                                   // durable
//!
//! // Several requests in flight:
//! let a = disk.submit_read(100, 16)?;
//! let b = disk.submit_write(300, &buf)?;
//! let done = disk.wait_for(a)?;                    // `b` stays queued until asked for
//! done.result()?;
//! done.copy_data(&mut big_buf[..8192]);
//! ```
//!
//! # Requests, pages and grants
//!
//! Every request gets data pages of its own (no page is in two requests at once):
//! [`BlockDevice::submit_read`] grants them writable to the backend,
//! [`BlockDevice::submit_write`] copies the data into them and grants them read-only. A request
//! carries at most [`BlockDevice::max_request_sectors`] sectors: 2048 (1 MiB, 256 pages) when
//! the backend accepts indirect requests, as Parapet's does, else [`MAX_SECTORS_PER_REQUEST`]
//! (88, 11 pages); sector *k* of a request is sector *k* mod 8 of its page *k* / 8. A request of
//! more than 11 pages goes out as `BLKIF_OP_INDIRECT`, its segments listed in one more page,
//! granted read-only. When the response arrives, the grants are revoked
//! ([`grant::end_access`]) before the pages are touched or reused; a grant the backend still
//! holds (it never should after answering) is never reused and its page is leaked rather than
//! freed ([`BlockDevice::leaked_grants`]).
//!
//! Data pages are recycled, not allocated and freed per request: a page whose grant was
//! revoked goes back to the device's free list (up to the most pages the device ever had in
//! flight at once, and at least a ring of 11-page requests' worth) when
//! its request completes (writes, flushes) or when its [`Completion`] is dropped (reads), and
//! the next request takes it from there. Recycled pages are not zeroed: a read overwrites the
//! sectors it returns ([`Completion::copy_data`] hands out no more), a write the sectors it
//! sends; the rest of such a page holds earlier data of the same disk, which the backend has
//! already seen.
//!
//! Submissions are published at once unless the device is [plugged](BlockDevice::plug): then
//! they are published together, with at most one doorbell, by [`BlockDevice::unplug`].
//! Completions come back in ring order; [`BlockDevice::wait_for`] sets aside the completions
//! of other requests, which [`BlockDevice::poll`] and [`BlockDevice::wait`] hand out later.
//!
//! The backend performs requests in ring order, so a flush covers every write submitted before
//! it, answered or not: writes and their flush may be submitted together, and once the flush
//! completes successfully, so have the writes (check their statuses too).
//!
//! The blocking helpers ([`BlockDevice::read`], [`BlockDevice::write`], [`BlockDevice::flush`],
//! [`BlockDevice::discard`]) split large transfers into requests of up to
//! [`BlockDevice::max_request_sectors`] and keep up to [`PIPELINE_BYTES`] (and
//! [`PIPELINE_DEPTH`] requests) in flight.
//!
//! With the `embedded-sdmmc` feature, `sdmmc::SdmmcDisk` adapts a `BlockDevice` to
//! `embedded_sdmmc::BlockDevice`, so the `embedded-sdmmc` FAT16/FAT32 file system runs on it.
// (Plain names, not links: they exist only with the feature, and these docs build without it.)

use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use parapet_abi::Errno;
use parapet_abi::blkif::{
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ,
    BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_OKAY, BlkifRequest, BlkifSegment,
    CONFIG_MAX_INDIRECT_SEGMENTS, CONFIG_SECTORS, flags,
};
use parapet_abi::device::{DeviceInfo, kind};
use parapet_abi::event_channel::DOMID_BACKEND;
use pv_drivers::blkif::{BlkifFront, BlkifFrontRing, SECTOR_SIZE, segment};
use pv_drivers::shared::SharedPage;

pub use pv_drivers::blkif::{
    MAX_BYTES_PER_REQUEST, MAX_INDIRECT_SECTORS, MAX_INDIRECT_SEGMENTS, MAX_SECTORS_PER_REQUEST,
};

use crate::device::{Connection, ConnectionError};
use crate::evtchn::Port;
use crate::grant::{self, GrantError, GrantRef};
use crate::page::{GuestPage, PageBox};
use crate::time::Instant;
use crate::{device, timer};

#[cfg(feature = "embedded-sdmmc")]
pub mod sdmmc;

/// Sectors per page.
const SECTORS_PER_PAGE: u64 = 8;
/// Bytes per page.
const PAGE_BYTES: usize = pv_drivers::shared::PAGE_SIZE;
/// Requests the blocking helpers keep in flight at once, at most.
pub const PIPELINE_DEPTH: usize = 16;
/// Bytes the blocking helpers keep in flight at once, at most (but always one request).
pub const PIPELINE_BYTES: usize = 4 << 20;
/// Spare data pages kept for reuse at least: a full ring of 11-page requests.
const MIN_SPARE_PAGES: usize =
    pv_drivers::blkif::BLKIF_RING_SIZE as usize * BLKIF_MAX_SEGMENTS_PER_REQUEST;

/// The free list of data pages: only pages whose grants were revoked go in. It keeps up to
/// `limit` of them: the most the device has had in flight at once (so a steady stream of
/// requests allocates nothing), and at least [`MIN_SPARE_PAGES`].
#[derive(Debug)]
struct PagePool {
    spare: RefCell<Vec<PageBox>>,
    limit: core::cell::Cell<usize>,
}

impl Default for PagePool {
    fn default() -> Self {
        PagePool {
            spare: RefCell::default(),
            limit: core::cell::Cell::new(MIN_SPARE_PAGES),
        }
    }
}

impl PagePool {
    /// A spare page, or a fresh (zeroed) one if there is none.
    fn take(&self) -> PageBox {
        self.spare.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps `pages` for reuse (frees those beyond the limit). Their grants must have been
    /// revoked.
    fn give(&self, pages: impl IntoIterator<Item = PageBox>) {
        let mut spare = self.spare.borrow_mut();
        for page in pages {
            if spare.len() < self.limit.get() {
                spare.push(page);
            }
        }
    }

    /// Keeps at least `pages` spare pages from now on.
    fn keep_at_least(&self, pages: usize) {
        if pages > self.limit.get() {
            self.limit.set(pages);
        }
    }
}

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// No such block device (run with `--disk PATH`).
    NoDevice,
    /// The heap has no room for the ring page.
    NoMemory,
    /// Granting or revoking a page failed.
    Grant(GrantError),
    /// `device_op` failed.
    Device(Errno),
    /// The backend answered `BLKIF_RSP_ERROR` (an I/O error, or a request it refused).
    Io,
    /// The backend answered `BLKIF_RSP_EOPNOTSUPP`, or the device does not offer the operation
    /// (its `DeviceInfo::flags`).
    Unsupported,
    /// The backend answered with a status outside the protocol.
    BadStatus(i16),
    /// The disk is read-only.
    ReadOnly,
    /// The sectors are not all inside the disk.
    OutOfRange,
    /// A length that is not a whole number of sectors, or a request larger than
    /// [`BlockDevice::max_request_sectors`] (or, for a write that is also a flush,
    /// [`MAX_SECTORS_PER_REQUEST`]), or empty.
    BadLength,
    /// Every ring slot is in flight (the submit API does not wait; consume completions).
    RingFull,
    /// No request with this id is in flight or completed.
    UnknownRequest,
    /// Nothing is in flight to wait for.
    Idle,
    /// The deadline passed before the response arrived.
    TimedOut,
    /// The backend broke the ring protocol; the device is unusable.
    Broken,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::NoDevice => f.write_str("no such block device (run with --disk PATH)"),
            BlockError::NoMemory => f.write_str("out of memory for the ring page"),
            BlockError::Grant(e) => write!(f, "grant: {e}"),
            BlockError::Device(e) => write!(f, "device_op: {e}"),
            BlockError::Io => f.write_str("I/O error"),
            BlockError::Unsupported => f.write_str("operation not supported"),
            BlockError::BadStatus(s) => write!(f, "bad response status {s}"),
            BlockError::ReadOnly => f.write_str("read-only disk"),
            BlockError::OutOfRange => f.write_str("sectors outside the disk"),
            BlockError::BadLength => f.write_str("bad length"),
            BlockError::RingFull => f.write_str("ring full"),
            BlockError::UnknownRequest => f.write_str("unknown request"),
            BlockError::Idle => f.write_str("no request in flight"),
            BlockError::TimedOut => f.write_str("timed out"),
            BlockError::Broken => f.write_str("the backend broke the ring protocol"),
        }
    }
}

impl core::error::Error for BlockError {}

impl From<ConnectionError> for BlockError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::NoMemory => BlockError::NoMemory,
            ConnectionError::Grant(e) => BlockError::Grant(e),
            ConnectionError::Device(e) => BlockError::Device(e),
        }
    }
}

/// Segments per indirect request the device will use, given what the backend advertises: as
/// many as it takes up to [`MAX_INDIRECT_SEGMENTS`], or 0 (direct requests only) if that is no
/// more than a direct request holds.
fn indirect_segments(advertised: u64) -> usize {
    let n = advertised.min(MAX_INDIRECT_SEGMENTS as u64) as usize;
    if n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
        n
    } else {
        0
    }
}

/// The block devices in start-info, in order: `(device index, description)`. The `n`th one is
/// what [`BlockDevice::open`]`(n)` connects (the `n`th `--disk`).
pub fn disks() -> impl Iterator<Item = (u32, &'static DeviceInfo)> {
    device::devices()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.kind == kind::BLOCK)
        .map(|(i, d)| (i as u32, d))
}

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
    /// The data pages' grants, then the indirect page's, if any.
    grants: Vec<GrantRef>,
    pages: Vec<PageBox>,
    /// The page listing the segments of an indirect request.
    index: Option<PageBox>,
    /// Bytes of read data expected.
    read_len: usize,
}

impl InFlight {
    fn page_count(&self) -> usize {
        self.pages.len() + usize::from(self.index.is_some())
    }
}

/// A connected block device. Dropping it disconnects the device and revokes every grant; if
/// that fails, the pages the backend may still map are leaked rather than freed.
#[derive(Debug)]
pub struct BlockDevice {
    front: BlkifFront<GuestPage>,
    conn: Connection,
    sectors: u64,
    flags: u32,
    /// Segments per indirect request (0: direct requests only).
    indirect_segments: usize,
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
    poll: core::time::Duration,
    /// When the last completion arrived, or the device last became busy (its gap to the next
    /// completion is one sample of [`completion_gap_ns`](Self::completion_gap_ns)).
    gap_start: Option<Instant>,
    /// Moving average of the time between completions while requests are in flight.
    completion_gap_ns: u64,
}

/// How long [`BlockDevice`] polls for a completion before it blocks, by default. A disk request
/// takes a few tens of µs to come back; polling that long saves the exit and the wake-up of a
/// `SCHEDOP_block` (which together cost about as much again on kvm_pvm), at the price of the
/// vCPU spinning meanwhile.
pub const DEFAULT_POLL: core::time::Duration = core::time::Duration::from_micros(50);

/// The longest the device polls when completions usually come further apart than
/// [`DEFAULT_POLL`] (large requests): see [`BlockDevice::set_poll`].
pub const MAX_ADAPTIVE_POLL: core::time::Duration = core::time::Duration::from_millis(1);

impl BlockDevice {
    /// Connects the `n`th block device (the `n`th `--disk`, counting from 0): initialises a
    /// ring page, grants it to the backend, unmasks the device's port and connects.
    pub fn open(n: usize) -> Result<BlockDevice, BlockError> {
        let (index, info) = disks().nth(n).ok_or(BlockError::NoDevice)?;
        Self::connect(index, info)
    }

    /// Connects the device at start-info index `index`, which must be a block device.
    pub fn connect(index: u32, info: &DeviceInfo) -> Result<BlockDevice, BlockError> {
        if info.kind != kind::BLOCK {
            return Err(BlockError::NoDevice);
        }
        let mut conn = Connection::new(index, info, 1)?;
        let front = BlkifFront::new(conn.ring(0));
        conn.connect()?;
        Ok(BlockDevice {
            front,
            conn,
            sectors: info.config[CONFIG_SECTORS],
            flags: info.flags,
            indirect_segments: indirect_segments(info.config[CONFIG_MAX_INDIRECT_SEGMENTS]),
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
        })
    }

    /// Sets how long [`wait`](Self::wait) and friends poll the ring before they block, at
    /// least ([`DEFAULT_POLL`]; zero blocks at once, saving the CPU). When completions usually
    /// come further apart (1 MiB requests take a few hundred µs each), the device polls for
    /// twice the usual gap between them instead, up to [`MAX_ADAPTIVE_POLL`], so that a
    /// stream of large requests does not block (an exit and a wake-up) for every one.
    pub fn set_poll(&mut self, poll: core::time::Duration) {
        self.poll = poll;
    }

    /// How long to poll now: see [`set_poll`](Self::set_poll).
    fn poll_budget(&self) -> core::time::Duration {
        if self.poll.is_zero() {
            return self.poll;
        }
        let usual = core::time::Duration::from_nanos(self.completion_gap_ns.saturating_mul(2));
        self.poll.max(usual.min(MAX_ADAPTIVE_POLL))
    }

    /// Records `n` completions that arrived by now (one sample of the gap between them).
    fn note_completions(&mut self, n: u64) {
        let now = crate::time::now();
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
        let until = crate::time::now() + budget;
        while crate::time::now() < until {
            if front.has_unconsumed_responses() {
                return true;
            }
            core::hint::spin_loop();
        }
        front.has_unconsumed_responses()
    }

    /// The disk's size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the disk refuses writes and discards.
    pub fn read_only(&self) -> bool {
        self.flags & flags::READONLY != 0
    }

    /// The most sectors one request may carry: [`MAX_INDIRECT_SECTORS`] (1 MiB) if the backend
    /// takes indirect requests of that size, else what it takes, at least
    /// [`MAX_SECTORS_PER_REQUEST`] (88).
    pub fn max_request_sectors(&self) -> u64 {
        if self.indirect_segments > 0 {
            self.indirect_segments as u64 * SECTORS_PER_PAGE
        } else {
            MAX_SECTORS_PER_REQUEST
        }
    }

    /// Whether the backend takes indirect requests (`BLKIF_OP_INDIRECT`), which the device
    /// uses for requests of more than 11 pages.
    pub fn supports_indirect(&self) -> bool {
        self.indirect_segments > 0
    }

    /// Whether the backend offers flushes (`FLUSH_DISKCACHE`).
    pub fn supports_flush(&self) -> bool {
        self.flags & flags::FLUSH != 0
    }

    /// Whether the backend offers discards.
    pub fn supports_discard(&self) -> bool {
        self.flags & flags::DISCARD != 0
    }

    /// The start-info device index.
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

    /// Requests submitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Ring slots free for submissions.
    pub fn free_slots(&self) -> u32 {
        self.front_ref().free_requests()
    }

    /// Doorbells rung so far.
    pub fn notifies(&self) -> u64 {
        self.notifies
    }

    /// Times the frontend slept waiting for responses.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// Responses whose id matched no request in flight (ignored).
    pub fn stray_responses(&self) -> u64 {
        self.stray_responses
    }

    /// Grants the backend still held after answering (their pages were leaked).
    pub fn leaked_grants(&self) -> u64 {
        self.leaked_grants
    }

    fn front(&mut self) -> &mut BlkifFront<GuestPage> {
        &mut self.front
    }

    fn front_ref(&self) -> &BlkifFront<GuestPage> {
        &self.front
    }

    /// The ring, for tests that write it directly.
    pub fn ring(&mut self) -> &mut BlkifFrontRing<GuestPage> {
        self.front().ring()
    }

    /// Rings the doorbell unconditionally.
    pub fn kick(&mut self) {
        self.notifies += 1;
        self.conn.notify();
    }

    /// Holds submissions back until [`unplug`](Self::unplug), so that a batch is published at
    /// once.
    pub fn plug(&mut self) {
        self.plugged = true;
    }

    /// Publishes everything submitted while plugged, notifying the backend if it asked for it.
    pub fn unplug(&mut self) {
        self.plugged = false;
        self.commit();
    }

    fn commit(&mut self) {
        if self.front().commit() {
            self.kick();
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), BlockError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(BlockError::OutOfRange),
        }
    }

    fn check_slot(&mut self) -> Result<(), BlockError> {
        if self.front_ref().backend_overflowed() {
            return Err(BlockError::Broken);
        }
        if self.front_ref().free_requests() == 0 {
            return Err(BlockError::RingFull);
        }
        Ok(())
    }

    fn alloc_page(&mut self) -> PageBox {
        self.spare.take()
    }

    /// Returns pages that the backend cannot access (never granted, or revoked) to the pool.
    fn recycle(&mut self, pages: Vec<PageBox>) {
        self.spare.give(pages);
    }

    /// Grants `pages` to the backend (read-only if `readonly`); on failure revokes those
    /// granted so far.
    fn grant_pages(pages: &[PageBox], readonly: bool) -> Result<Vec<GrantRef>, BlockError> {
        let mut grants = Vec::with_capacity(pages.len());
        for page in pages {
            match grant::grant_access(page.frame(), DOMID_BACKEND, readonly) {
                Ok(g) => grants.push(g),
                Err(e) => {
                    for g in grants {
                        let _ = grant::end_access(g);
                    }
                    return Err(BlockError::Grant(e));
                }
            }
        }
        Ok(grants)
    }

    /// The segments covering `sectors` sectors over `grants`, 8 per page.
    fn segments(grants: &[GrantRef], sectors: u64) -> Vec<BlkifSegment> {
        grants
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                let in_page = (sectors - i as u64 * SECTORS_PER_PAGE).min(SECTORS_PER_PAGE);
                segment(g.0, 0, in_page as u8 - 1)
            })
            .collect()
    }

    /// Pushes `request` (built by `build` from the id) with `pages` granted as given.
    fn push(
        &mut self,
        operation: u8,
        pages: Vec<PageBox>,
        readonly_grants: bool,
        read_len: usize,
        build: impl FnOnce(&mut BlkifFront<GuestPage>, u64, &[GrantRef]) -> bool,
    ) -> Result<RequestId, BlockError> {
        let grants = match Self::grant_pages(&pages, readonly_grants) {
            Ok(g) => g,
            Err(e) => {
                self.recycle(pages);
                return Err(e);
            }
        };
        let id = self.take_id();
        let pushed = build(self.front(), id, &grants);
        debug_assert!(pushed, "requests are checked before they are pushed");
        self.track(InFlight {
            id,
            operation,
            grants,
            pages,
            index: None,
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
        let index = self.alloc_page();
        let index_gref = match grant::grant_access(index.frame(), DOMID_BACKEND, true) {
            Ok(g) => g,
            Err(e) => {
                self.recycle(pages);
                self.recycle(alloc::vec![index]);
                return Err(BlockError::Grant(e));
            }
        };
        let mut grants = match Self::grant_pages(&pages, readonly_grants) {
            Ok(g) => g,
            Err(e) => {
                let _ = grant::end_access(index_gref);
                self.recycle(pages);
                self.recycle(alloc::vec![index]);
                return Err(e);
            }
        };
        let id = self.take_id();
        let segments = Self::segments(&grants, count);
        let pushed = self
            .front()
            .push_indirect(operation, id, sector, &segments, &[(index_gref.0, &index)])
            .is_ok();
        debug_assert!(pushed, "requests are checked before they are pushed");
        grants.push(index_gref);
        self.track(InFlight {
            id,
            operation,
            grants,
            pages,
            index: Some(index),
            read_len,
        });
        Ok(RequestId(id))
    }

    /// Records a pushed request and publishes it unless plugged.
    fn track(&mut self, request: InFlight) {
        if self.in_flight.is_empty() {
            // Busy from now: the first completion's gap counts from here.
            self.gap_start = Some(crate::time::now());
        }
        self.pages_in_flight += request.page_count();
        self.spare.keep_at_least(self.pages_in_flight);
        self.in_flight.push(request);
        if !self.plugged {
            self.commit();
        }
    }

    /// Pushes a read or write of `count` sectors at `sector` in `pages` (one per 8 sectors):
    /// indirect if there are more pages than a direct request holds.
    fn push_data(
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
            let segments = Self::segments(grants, count);
            if reading {
                front.push_read(id, sector, &segments).is_ok()
            } else {
                front.push_write(id, sector, &segments).is_ok()
            }
        })
    }

    /// Submits a read of `count` sectors (1 to [`max_request_sectors`](Self::max_request_sectors))
    /// from `sector`. The data comes with the [`Completion`].
    pub fn submit_read(&mut self, sector: u64, count: u64) -> Result<RequestId, BlockError> {
        if count == 0 || count > self.max_request_sectors() {
            return Err(BlockError::BadLength);
        }
        self.check_range(sector, count)?;
        self.check_slot()?;
        let pages: Vec<PageBox> = (0..count.div_ceil(SECTORS_PER_PAGE))
            .map(|_| self.alloc_page())
            .collect();
        self.push_data(BLKIF_OP_READ, sector, count, pages)
    }

    fn data_pages(&mut self, data: &[u8]) -> Vec<PageBox> {
        data.chunks(PAGE_BYTES)
            .map(|chunk| {
                let page = self.alloc_page();
                page.write(0, chunk);
                page
            })
            .collect()
    }

    /// Checks a write of `data` (at most `max_sectors`) at `sector`; returns its sectors.
    fn check_write(
        &mut self,
        sector: u64,
        data: &[u8],
        max_sectors: u64,
    ) -> Result<u64, BlockError> {
        if data.is_empty()
            || !data.len().is_multiple_of(SECTOR_SIZE)
            || data.len() as u64 > max_sectors * SECTOR_SIZE as u64
        {
            return Err(BlockError::BadLength);
        }
        if self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        let count = (data.len() / SECTOR_SIZE) as u64;
        self.check_range(sector, count)?;
        self.check_slot()?;
        Ok(count)
    }

    /// Submits a write of `data` (a whole number of sectors, at most
    /// [`max_request_sectors`](Self::max_request_sectors)) at `sector`. The data is copied:
    /// `data` may be reused at once.
    pub fn submit_write(&mut self, sector: u64, data: &[u8]) -> Result<RequestId, BlockError> {
        let count = self.check_write(sector, data, self.max_request_sectors())?;
        let pages = self.data_pages(data);
        self.push_data(BLKIF_OP_WRITE, sector, count, pages)
    }

    /// Submits a write of `data` (at most [`MAX_BYTES_PER_REQUEST`]: flushes are never
    /// indirect) at `sector` that is also a flush (`FLUSH_DISKCACHE` with data): when it
    /// completes, it and every write submitted before it are durable.
    pub fn submit_write_flush(
        &mut self,
        sector: u64,
        data: &[u8],
    ) -> Result<RequestId, BlockError> {
        if !self.supports_flush() {
            return Err(BlockError::Unsupported);
        }
        let count = self.check_write(sector, data, MAX_SECTORS_PER_REQUEST)?;
        let pages = self.data_pages(data);
        self.push(
            BLKIF_OP_FLUSH_DISKCACHE,
            pages,
            true,
            0,
            |front, id, grants| {
                front
                    .push_flush(id, sector, &Self::segments(grants, count))
                    .is_ok()
            },
        )
    }

    /// Submits a flush: when it completes, every write submitted before it is durable.
    pub fn submit_flush(&mut self) -> Result<RequestId, BlockError> {
        if !self.supports_flush() {
            return Err(BlockError::Unsupported);
        }
        self.check_slot()?;
        self.push(
            BLKIF_OP_FLUSH_DISKCACHE,
            Vec::new(),
            true,
            0,
            |front, id, _| front.push_flush(id, 0, &[]).is_ok(),
        )
    }

    /// Submits a discard of `count` sectors from `sector`: they read back as zeros.
    pub fn submit_discard(&mut self, sector: u64, count: u64) -> Result<RequestId, BlockError> {
        if !self.supports_discard() {
            return Err(BlockError::Unsupported);
        }
        if self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        self.check_range(sector, count)?;
        self.check_slot()?;
        self.push(BLKIF_OP_DISCARD, Vec::new(), true, 0, |front, id, _| {
            front.push_discard(id, sector, count).is_ok()
        })
    }

    /// Submits `request` unchecked, with a fresh id written into it (for tests of the
    /// backend's validation). The caller owns the grants it names and revokes them after the
    /// completion.
    pub fn submit_raw(&mut self, mut request: BlkifRequest) -> Result<RequestId, BlockError> {
        self.check_slot()?;
        let id = self.take_id();
        request.id = id;
        let pushed = self.front().push_raw(&request).is_ok();
        debug_assert!(pushed, "check_slot saw a free slot");
        self.track(InFlight {
            id,
            operation: request.operation,
            grants: Vec::new(),
            pages: Vec::new(),
            index: None,
            read_len: 0,
        });
        Ok(RequestId(id))
    }

    /// Takes every response off the ring and turns it into a queued completion.
    fn reap(&mut self) {
        let mut reaped = 0;
        while let Some(response) = self.front().poll_response() {
            reaped += 1;
            let Some(at) = self.in_flight.iter().position(|r| r.id == response.id) else {
                self.stray_responses += 1;
                continue;
            };
            let request = self.in_flight.swap_remove(at);
            self.pages_in_flight -= request.page_count();
            let mut leaked = false;
            for g in &request.grants {
                if grant::end_access(*g).is_err() {
                    leaked = true;
                    self.leaked_grants += 1;
                }
            }
            let mut pages = request.pages;
            if leaked {
                // The backend may still write these pages: never reuse or free them.
                core::mem::forget(core::mem::take(&mut pages));
                core::mem::forget(request.index);
            } else {
                self.spare.give(request.index);
            }
            let read_len = if response.status == BLKIF_RSP_OKAY && !leaked {
                request.read_len
            } else {
                0
            };
            if read_len == 0 {
                // No data to hand out (a write, a flush, a failed read): reuse the pages now.
                self.recycle(core::mem::take(&mut pages));
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
    pub fn poll(&mut self) -> Option<Completion> {
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
            if self.front_ref().backend_overflowed() {
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
    pub fn wait(&mut self) -> Result<Completion, BlockError> {
        loop {
            if let Some(c) = self.poll() {
                return Ok(c);
            }
            self.wait_response(None)?;
        }
    }

    /// Blocks until request `id` completes and returns it; other completions stay queued.
    pub fn wait_for(&mut self, id: RequestId) -> Result<Completion, BlockError> {
        self.wait_for_until(id, None)
    }

    /// [`wait_for`](Self::wait_for) with a deadline ([`BlockError::TimedOut`]).
    pub fn wait_for_until(
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

    /// Reads `buf.len()` bytes (a whole number of sectors) from `sector` on, keeping several
    /// requests in flight.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if !buf.len().is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::BadLength);
        }
        self.check_range(sector, (buf.len() / SECTOR_SIZE) as u64)?;
        let max = self.max_request_bytes();
        let chunks: Vec<(u64, usize, usize)> = buf
            .chunks(max)
            .enumerate()
            .map(|(i, c)| {
                let at = i * max;
                (sector + (at / SECTOR_SIZE) as u64, at, c.len())
            })
            .collect();
        self.pipeline(
            &chunks,
            |dev, &(s, _, len)| dev.submit_read(s, (len / SECTOR_SIZE) as u64),
            |_, &(_, at, len), done| {
                done.copy_data(&mut buf[at..at + len]);
            },
        )
    }

    /// Writes `data` (a whole number of sectors) at `sector` on, keeping several requests in
    /// flight. When it returns the data is in the backend's store, not necessarily durable:
    /// see [`flush`](Self::flush).
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::BadLength);
        }
        if self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        self.check_range(sector, (data.len() / SECTOR_SIZE) as u64)?;
        let max = self.max_request_bytes();
        let chunks: Vec<(u64, &[u8])> = data
            .chunks(max)
            .enumerate()
            .map(|(i, c)| (sector + (i * max / SECTOR_SIZE) as u64, c))
            .collect();
        self.pipeline(&chunks, |dev, &(s, c)| dev.submit_write(s, c), |_, _, _| {})
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_sectors() as usize * SECTOR_SIZE
    }

    /// Submits `chunks` with at most [`PIPELINE_DEPTH`] (and [`PIPELINE_BYTES`]) in flight,
    /// completing them in order. Returns the first error, after every submitted chunk has
    /// completed.
    fn pipeline<C>(
        &mut self,
        chunks: &[C],
        mut submit: impl FnMut(&mut Self, &C) -> Result<RequestId, BlockError>,
        mut complete: impl FnMut(&mut Self, &C, Completion),
    ) -> Result<(), BlockError> {
        let depth = (PIPELINE_BYTES / self.max_request_bytes()).clamp(1, PIPELINE_DEPTH);
        let mut pending: VecDeque<(RequestId, &C)> = VecDeque::new();
        let mut next = 0;
        let mut first_error = None;
        loop {
            if first_error.is_none() && next < chunks.len() {
                self.plug();
                while next < chunks.len()
                    && pending.len() < depth
                    && self.front_ref().free_requests() > 0
                {
                    match submit(self, &chunks[next]) {
                        Ok(id) => pending.push_back((id, &chunks[next])),
                        Err(e) => {
                            first_error = Some(e);
                            break;
                        }
                    }
                    next += 1;
                }
                self.unplug();
            }
            let Some((id, chunk)) = pending.pop_front() else {
                if first_error.is_none() && next < chunks.len() {
                    // Other requests fill the ring: wait until one of them is answered.
                    if let Err(e) = self.wait_slot() {
                        first_error = Some(e);
                        break;
                    }
                    continue;
                }
                break;
            };
            match self.wait_for(id) {
                Ok(done) => {
                    if let Err(e) = done.result() {
                        first_error.get_or_insert(e);
                    }
                    complete(self, chunk, done);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    if e == BlockError::Broken {
                        break;
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Blocks until a ring slot is free (responses of other requests are queued as
    /// completions).
    fn wait_slot(&mut self) -> Result<(), BlockError> {
        if self.plugged {
            self.unplug();
        }
        loop {
            if self.front_ref().backend_overflowed() {
                return Err(BlockError::Broken);
            }
            self.reap();
            if self.front_ref().free_requests() > 0 {
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

    fn wait_ok(&mut self, id: RequestId) -> Result<(), BlockError> {
        let done = self.wait_for(id)?;
        done.result()
    }

    /// Makes every write submitted so far durable (`FLUSH_DISKCACHE`). Waits for a free ring
    /// slot if other requests fill the ring.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        self.wait_slot()?;
        let id = self.submit_flush()?;
        self.wait_ok(id)
    }

    /// Writes `data` at `sector` and makes it, and every write submitted before, durable, in
    /// one request (at most [`MAX_BYTES_PER_REQUEST`] bytes: flushes are never indirect).
    pub fn write_durable(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        self.wait_slot()?;
        let id = self.submit_write_flush(sector, data)?;
        self.wait_ok(id)
    }

    /// Discards `count` sectors from `sector`: they read back as zeros.
    pub fn discard(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        self.wait_slot()?;
        let id = self.submit_discard(sector, count)?;
        self.wait_ok(id)
    }

    /// Disconnects, masks the port and revokes every grant. On failure, pages the backend may
    /// still map (the ring, data pages of unanswered requests) are leaked, never freed.
    pub fn disconnect(mut self) -> Result<(), BlockError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), BlockError> {
        let result = self.conn.disconnect();
        if !self.conn.is_connected() {
            // The backend has let go of everything: revoke the data grants of unanswered
            // requests.
            self.pages_in_flight = 0;
            for request in core::mem::take(&mut self.in_flight) {
                let mut ok = true;
                for g in &request.grants {
                    ok &= grant::end_access(*g).is_ok();
                }
                if !ok {
                    core::mem::forget(request.pages);
                    core::mem::forget(request.index);
                }
            }
        }
        Ok(result?)
    }
}

impl Drop for BlockDevice {
    fn drop(&mut self) {
        let _ = self.teardown();
        if self.conn.is_connected() {
            // The backend may still map the data pages: never free them (the connection leaks
            // the ring page).
            for request in core::mem::take(&mut self.in_flight) {
                core::mem::forget(request.pages);
                core::mem::forget(request.index);
            }
        }
    }
}
