//! The blocking disk API: whole transfers ([`BlockDevice::read`], [`BlockDevice::write`]) split
//! into requests of up to [`BlockDevice::max_request_sectors`] and pipelined, with up to
//! [`PIPELINE_BYTES`] (and [`PIPELINE_DEPTH`] requests) in flight; and [`BlockDevice::flush`],
//! [`BlockDevice::write_durable`] and [`BlockDevice::discard`], which wait for a free ring slot
//! and for their one request.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use pv_drivers::blkif::SECTOR_SIZE;

use super::{BlockDevice, BlockError, Completion, RequestId};

/// Requests the blocking helpers keep in flight at once, at most.
pub const PIPELINE_DEPTH: usize = 16;
/// Bytes the blocking helpers keep in flight at once, at most (but always one request).
pub const PIPELINE_BYTES: usize = 4 << 20;

impl BlockDevice {
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
                while next < chunks.len() && pending.len() < depth && self.queue.free_slots() > 0 {
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
                    if let Err(e) = self.queue.wait_slot() {
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

    fn wait_ok(&mut self, id: RequestId) -> Result<(), BlockError> {
        let done = self.wait_for(id)?;
        done.result()
    }

    /// Makes every write submitted so far durable (`FLUSH_DISKCACHE`). Waits for a free ring
    /// slot if other requests fill the ring.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        self.queue.wait_slot()?;
        let id = self.submit_flush()?;
        self.wait_ok(id)
    }

    /// Writes `data` at `sector` and makes it, and every write submitted before, durable, in
    /// one request (at most [`MAX_BYTES_PER_REQUEST`](super::MAX_BYTES_PER_REQUEST) bytes: flushes are
    /// never indirect).
    pub fn write_durable(&mut self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        self.queue.wait_slot()?;
        let id = self.submit_write_flush(sector, data)?;
        self.wait_ok(id)
    }

    /// Discards `count` sectors from `sector`: they read back as zeros.
    pub fn discard(&mut self, sector: u64, count: u64) -> Result<(), BlockError> {
        self.queue.wait_slot()?;
        let id = self.submit_discard(sector, count)?;
        self.wait_ok(id)
    }
}
