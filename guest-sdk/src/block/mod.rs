//! PV block devices (docs/abi.md §10.2; `parapet run --disk PATH[,readonly]`): a
//! [`pv_drivers::blkif::BlkifFront`] on the ring page of a [`device::Connection`], driven with
//! the device's event channel, and a sector API on top.
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
//! ([`crate::grant_table::end_access`]) before the pages are touched or reused; a grant the backend still
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
//!
//! # Inside
//!
//! A [`BlockDevice`] is four parts, one per file of this module:
//!
//! - the connection: a [`device::Connection`] (the ring page, its grant, the port, disconnect on
//!   drop);
//! - the request queue (`queue.rs`): the ring's frontend, request ids, the requests in flight,
//!   plugging, completions, and polling or blocking for responses;
//! - the data path (`pages.rs`): the bounce pages requests carry their data in, granted and
//!   revoked per request, recycled through a pool;
//! - the disk API: geometry, checks and the `submit_*` calls (`mod.rs`), and the blocking
//!   transfers that pipeline them (`disk.rs`).
// (Plain names, not links: they exist only with the feature, and these docs build without it.)

use alloc::vec::Vec;

use parapet_abi::Errno;
use parapet_abi::blkif::{
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ,
    BLKIF_OP_WRITE, BlkifRequest, CONFIG_MAX_INDIRECT_SEGMENTS, CONFIG_SECTORS, flags,
};
use parapet_abi::device::{DeviceInfo, kind};
use pv_drivers::blkif::{BlkifFront, BlkifFrontRing, SECTOR_SIZE};

pub use pv_drivers::blkif::{
    MAX_BYTES_PER_REQUEST, MAX_INDIRECT_SECTORS, MAX_INDIRECT_SEGMENTS, MAX_SECTORS_PER_REQUEST,
};

pub use self::disk::{PIPELINE_BYTES, PIPELINE_DEPTH};
use self::pages::{SECTORS_PER_PAGE, segments};
use self::queue::RequestQueue;
pub use self::queue::{Completion, DEFAULT_POLL, MAX_ADAPTIVE_POLL, RequestId};
use crate::device::{self, Connection, ConnectionError};
use crate::event_channel::Port;
use crate::grant_table::{GrantError, GrantRef};
use crate::page::{GuestPage, PageBox};
use crate::time::Instant;

mod disk;
mod pages;
mod queue;
#[cfg(feature = "embedded-sdmmc")]
pub mod sdmmc;

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// No such block device (run with `--disk PATH`).
    #[error("no such block device (run with --disk PATH)")]
    NoDevice,
    /// The heap has no room for the ring page.
    #[error("out of memory for the ring page")]
    NoMemory,
    /// Granting or revoking a page failed.
    #[error("grant: {0}")]
    Grant(GrantError),
    /// `device_op` failed.
    #[error("device_op: {0}")]
    Device(Errno),
    /// The backend answered `BLKIF_RSP_ERROR` (an I/O error, or a request it refused).
    #[error("I/O error")]
    Io,
    /// The backend answered `BLKIF_RSP_EOPNOTSUPP`, or the device does not offer the operation
    /// (its `DeviceInfo::flags`).
    #[error("operation not supported")]
    Unsupported,
    /// The backend answered with a status outside the protocol.
    #[error("bad response status {0}")]
    BadStatus(i16),
    /// The disk is read-only.
    #[error("read-only disk")]
    ReadOnly,
    /// The sectors are not all inside the disk.
    #[error("sectors outside the disk")]
    OutOfRange,
    /// A length that is not a whole number of sectors, or a request larger than
    /// [`BlockDevice::max_request_sectors`] (or, for a write that is also a flush,
    /// [`MAX_SECTORS_PER_REQUEST`]), or empty.
    #[error("bad length")]
    BadLength,
    /// Every ring slot is in flight (the submit API does not wait; consume completions).
    #[error("ring full")]
    RingFull,
    /// No request with this id is in flight or completed.
    #[error("unknown request")]
    UnknownRequest,
    /// Nothing is in flight to wait for.
    #[error("no request in flight")]
    Idle,
    /// The deadline passed before the response arrived.
    #[error("timed out")]
    TimedOut,
    /// The backend broke the ring protocol; the device is unusable.
    #[error("the backend broke the ring protocol")]
    Broken,
}

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

/// A connected block device. Dropping it disconnects the device and revokes every grant; if
/// that fails, the pages the backend may still map are leaked rather than freed.
#[derive(Debug)]
pub struct BlockDevice {
    queue: RequestQueue,
    conn: Connection,
    sectors: u64,
    flags: u32,
    /// Segments per indirect request (0: direct requests only).
    indirect_segments: usize,
}

impl BlockDevice {
    /// Connects the `n`th block device (the `n`th `--disk`, counting from 0): grants a ring
    /// page to the backend, initialises the ring, unmasks the device's port and connects.
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
            queue: RequestQueue::new(front, conn.port()),
            conn,
            sectors: info.config[CONFIG_SECTORS],
            flags: info.flags,
            indirect_segments: indirect_segments(info.config[CONFIG_MAX_INDIRECT_SEGMENTS]),
        })
    }

    /// Sets how long [`wait`](Self::wait) and friends poll the ring before they block, at
    /// least ([`DEFAULT_POLL`]; zero blocks at once, saving the CPU). When completions usually
    /// come further apart (1 MiB requests take a few hundred µs each), the device polls for
    /// twice the usual gap between them instead, up to [`MAX_ADAPTIVE_POLL`], so that a
    /// stream of large requests does not block (an exit and a wake-up) for every one.
    pub fn set_poll(&mut self, poll: core::time::Duration) {
        self.queue.set_poll(poll);
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
        self.queue.in_flight()
    }

    /// Ring slots free for submissions.
    pub fn free_slots(&self) -> u32 {
        self.queue.free_slots()
    }

    /// Doorbells rung so far.
    pub fn notifies(&self) -> u64 {
        self.queue.notifies()
    }

    /// Times the frontend slept waiting for responses.
    pub fn waits(&self) -> u64 {
        self.queue.waits()
    }

    /// Responses whose id matched no request in flight (ignored).
    pub fn stray_responses(&self) -> u64 {
        self.queue.stray_responses()
    }

    /// Grants the backend still held after answering (their pages were leaked).
    pub fn leaked_grants(&self) -> u64 {
        self.queue.leaked_grants()
    }

    /// The ring, for tests that write it directly.
    pub fn ring(&mut self) -> &mut BlkifFrontRing<GuestPage> {
        self.queue.ring()
    }

    /// Rings the doorbell unconditionally.
    pub fn kick(&mut self) {
        self.queue.kick();
    }

    /// Holds submissions back until [`unplug`](Self::unplug), so that a batch is published at
    /// once.
    pub fn plug(&mut self) {
        self.queue.plug();
    }

    /// Publishes everything submitted while plugged, notifying the backend if it asked for it.
    pub fn unplug(&mut self) {
        self.queue.unplug();
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), BlockError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Checks a write of `data` (at most `max_sectors`) at `sector`; returns its sectors.
    fn check_write(&self, sector: u64, data: &[u8], max_sectors: u64) -> Result<u64, BlockError> {
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
        self.queue.check_slot()?;
        Ok(count)
    }

    /// Submits a read of `count` sectors (1 to [`max_request_sectors`](Self::max_request_sectors))
    /// from `sector`. The data comes with the [`Completion`].
    pub fn submit_read(&mut self, sector: u64, count: u64) -> Result<RequestId, BlockError> {
        if count == 0 || count > self.max_request_sectors() {
            return Err(BlockError::BadLength);
        }
        self.check_range(sector, count)?;
        self.queue.check_slot()?;
        let pages: Vec<PageBox> = (0..count.div_ceil(SECTORS_PER_PAGE))
            .map(|_| self.queue.pool().take())
            .collect();
        self.queue.push_data(BLKIF_OP_READ, sector, count, pages)
    }

    /// Submits a write of `data` (a whole number of sectors, at most
    /// [`max_request_sectors`](Self::max_request_sectors)) at `sector`. The data is copied:
    /// `data` may be reused at once.
    pub fn submit_write(&mut self, sector: u64, data: &[u8]) -> Result<RequestId, BlockError> {
        let count = self.check_write(sector, data, self.max_request_sectors())?;
        let pages = pages::fill(self.queue.pool(), data);
        self.queue.push_data(BLKIF_OP_WRITE, sector, count, pages)
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
        let pages = pages::fill(self.queue.pool(), data);
        self.queue.push(
            BLKIF_OP_FLUSH_DISKCACHE,
            pages,
            true,
            0,
            |front, id, grants| {
                front
                    .push_flush(id, sector, &segments(grants, count))
                    .is_ok()
            },
        )
    }

    /// Submits a flush: when it completes, every write submitted before it is durable.
    pub fn submit_flush(&mut self) -> Result<RequestId, BlockError> {
        if !self.supports_flush() {
            return Err(BlockError::Unsupported);
        }
        self.queue.check_slot()?;
        self.queue.push(
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
        self.queue.check_slot()?;
        self.queue
            .push(BLKIF_OP_DISCARD, Vec::new(), true, 0, |front, id, _| {
                front.push_discard(id, sector, count).is_ok()
            })
    }

    /// Submits `request` unchecked, with a fresh id written into it (for tests of the
    /// backend's validation). The caller owns the grants it names and revokes them after the
    /// completion.
    pub fn submit_raw(&mut self, request: BlkifRequest) -> Result<RequestId, BlockError> {
        self.queue.check_slot()?;
        Ok(self.queue.push_raw(request))
    }

    /// The next completion, if one is ready (does not block).
    pub fn poll(&mut self) -> Option<Completion> {
        self.queue.poll()
    }

    /// Blocks until a request completes and returns it. [`BlockError::Idle`] if nothing is in
    /// flight.
    pub fn wait(&mut self) -> Result<Completion, BlockError> {
        self.queue.wait()
    }

    /// Blocks until request `id` completes and returns it; other completions stay queued.
    pub fn wait_for(&mut self, id: RequestId) -> Result<Completion, BlockError> {
        self.queue.wait_for(id, None)
    }

    /// [`wait_for`](Self::wait_for) with a deadline ([`BlockError::TimedOut`]).
    pub fn wait_for_until(
        &mut self,
        id: RequestId,
        deadline: Option<Instant>,
    ) -> Result<Completion, BlockError> {
        self.queue.wait_for(id, deadline)
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
            self.queue.release_in_flight();
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
            self.queue.leak_in_flight();
        }
    }
}
