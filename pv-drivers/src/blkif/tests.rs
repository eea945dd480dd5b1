use std::format;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

use parapet_abi::blkif::{
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BlkifRequest,
    BlkifResponse, BlkifSegment,
};
use parapet_abi::ring::offset;
use proptest::prelude::*;
use zerocopy::IntoBytes;

use super::{
    BATCH_BUDGET, BLKIF_RING_SIZE, BlkifBackRing, BlkifFront, BlockIoError, BlockStore,
    MAX_BYTES_PER_REQUEST, MAX_INDIRECT_SEGMENTS, PushError, SECTOR_SIZE, ServeOutcome, as_discard,
    as_indirect, discard_request, indirect_request, rw_request, segment, serve_batch,
    write_indirect_page,
};
use crate::ring::{BackRing, RingError};
use crate::shared::{PAGE_SIZE, SharedPage, TestPage};
use crate::testutil::{StoreCounts, TestGrants, run_interleaved};

/// Sectors of the test disk (small, so that ranges past the end are easy to hit).
const DISK_SECTORS: u64 = 64;

/// What the store was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Read(u64, usize),
    Write(u64, usize),
    Flush,
    Discard(u64, u64),
}

/// An in-memory disk that remembers what is durable (the contents at the last flush).
#[derive(Debug)]
struct MemDisk {
    data: Mutex<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    read_only: bool,
    calls: Mutex<Vec<Call>>,
    /// The next store operation fails with this.
    fail_next: Mutex<Option<BlockIoError>>,
}

impl MemDisk {
    fn new(sectors: u64, read_only: bool) -> MemDisk {
        let data: Vec<u8> = (0..sectors as usize * SECTOR_SIZE)
            .map(|i| (i / SECTOR_SIZE) as u8 ^ (i as u8).rotate_left(3))
            .collect();
        MemDisk {
            durable: Mutex::new(data.clone()),
            data: Mutex::new(data),
            read_only,
            calls: Mutex::new(Vec::new()),
            fail_next: Mutex::new(None),
        }
    }

    fn sector(&self, s: u64) -> Vec<u8> {
        let at = s as usize * SECTOR_SIZE;
        self.data.lock().unwrap()[at..at + SECTOR_SIZE].to_vec()
    }

    fn calls(&self) -> Vec<Call> {
        core::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn check(&self, offset: u64, len: u64) {
        assert_eq!(offset % 512, 0, "unaligned offset");
        assert_eq!(len % 512, 0, "unaligned length");
        assert!(
            offset + len <= self.data.lock().unwrap().len() as u64,
            "store called outside the disk"
        );
    }
}

impl<P> BlockStore<P> for MemDisk {
    fn sectors(&self) -> u64 {
        (self.data.lock().unwrap().len() / SECTOR_SIZE) as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockIoError> {
        self.check(offset, buf.len() as u64);
        assert!(buf.len() <= MAX_BYTES_PER_REQUEST);
        self.calls
            .lock()
            .unwrap()
            .push(Call::Read(offset, buf.len()));
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let at = offset as usize;
        buf.copy_from_slice(&self.data.lock().unwrap()[at..at + buf.len()]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), BlockIoError> {
        self.check(offset, buf.len() as u64);
        assert!(!self.read_only, "write to a read-only store");
        self.calls
            .lock()
            .unwrap()
            .push(Call::Write(offset, buf.len()));
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let at = offset as usize;
        self.data.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockIoError> {
        self.calls.lock().unwrap().push(Call::Flush);
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        *self.durable.lock().unwrap() = self.data.lock().unwrap().clone();
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), BlockIoError> {
        self.check(offset, len);
        assert!(len > 0, "empty discard reaches the store");
        assert!(!self.read_only, "discard on a read-only store");
        self.calls.lock().unwrap().push(Call::Discard(offset, len));
        if let Some(e) = self.fail_next.lock().unwrap().take() {
            return Err(e);
        }
        let at = offset as usize;
        self.data.lock().unwrap()[at..at + len as usize].fill(0);
        Ok(())
    }
}

fn response(id: u64, operation: u8, status: i16) -> BlkifResponse {
    BlkifResponse {
        id,
        operation,
        pad: 0,
        status,
        pad2: 0,
    }
}

/// Pushes `requests` (unchecked), serves one batch, and collects the responses.
fn round_trip(
    grants: &TestGrants,
    disk: &MemDisk,
    requests: &[BlkifRequest],
) -> (Vec<BlkifResponse>, ServeOutcome) {
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    for r in requests {
        front.push_raw(r).unwrap();
    }
    let _ = front.commit();
    let outcome = serve_batch(&mut back, &grants, disk, &mut || {}).unwrap();
    let responses: Vec<_> = core::iter::from_fn(|| front.poll_response()).collect();
    assert_eq!(responses.len(), requests.len(), "one response per request");
    (responses, outcome)
}

/// One request on its own: its status.
fn status_of(grants: &TestGrants, disk: &MemDisk, request: BlkifRequest) -> i16 {
    let (responses, _) = round_trip(grants, disk, &[request]);
    assert_eq!(responses[0].id, request.id);
    assert_eq!(responses[0].operation, request.operation);
    responses[0].status
}

fn page_bytes(grants: &TestGrants, gref: u32) -> Vec<u8> {
    let mut out = vec![0; PAGE_SIZE];
    grants.page(gref).read(0, &mut out);
    out
}

#[test]
fn the_ring_has_32_slots_and_discards_share_the_slot() {
    assert_eq!(BLKIF_RING_SIZE, 32);
    let r = discard_request(7, 100, 9);
    let d = as_discard(&r);
    assert_eq!(
        (d.operation, d.id, d.sector_number, d.nr_sectors),
        (BLKIF_OP_DISCARD, 7, 100, 9)
    );
    assert!(d.pad2.iter().all(|&b| b == 0));
    // `nr_sectors` sits where the first segment does (Xen's layout).
    assert_eq!(&r.as_bytes()[24..32], &9u64.to_le_bytes());
    let r = indirect_request(BLKIF_OP_WRITE, 8, 300, 256, &[41, 42]);
    let i = as_indirect(&r);
    assert_eq!(
        (
            i.operation,
            i.indirect_op,
            i.nr_segments,
            i.id,
            i.sector_number
        ),
        (BLKIF_OP_INDIRECT, BLKIF_OP_WRITE, 256, 8, 300)
    );
    assert_eq!(i.indirect_grefs, [41, 42, 0, 0, 0, 0, 0, 0]);
    // Xen's blkif_request_indirect: nr_segments at 2, handle at 24, indirect_grefs at 28.
    assert_eq!(&r.as_bytes()[2..4], &256u16.to_le_bytes());
    assert_eq!(&r.as_bytes()[28..36], &[41, 0, 0, 0, 42, 0, 0, 0]);
}

/// Grants a read-only page listing `segments` (an indirect page).
fn indirect_page(grants: &mut TestGrants, segments: &[BlkifSegment]) -> u32 {
    let g = grants.grant(false);
    write_indirect_page(grants.page(g), segments);
    g
}

#[test]
fn indirect_requests_move_a_mebibyte_in_one_request() {
    let mut grants = TestGrants::default();
    let src: Vec<u32> = (0..MAX_INDIRECT_SEGMENTS)
        .map(|_| grants.grant(false))
        .collect();
    for (i, &g) in src.iter().enumerate() {
        let bytes: Vec<u8> = (0..PAGE_SIZE).map(|b| (b / 512 + i * 8) as u8).collect();
        grants.page(g).write(0, &bytes);
    }
    let index = grants.grant(true);
    let disk = MemDisk::new(4096, false);
    let ring = TestPage::new();
    let mut front = BlkifFront::new(&ring);
    let mut back: BlkifBackRing<_> = BackRing::attach(&ring);
    let segs: Vec<BlkifSegment> = src.iter().map(|&g| segment(g, 0, 7)).collect();
    // The helper refuses what the protocol does not allow.
    let index_page = [(index, grants.page(index))];
    for (what, op, n, pages) in [
        ("no segments", BLKIF_OP_WRITE, 0, 1),
        ("a flush", BLKIF_OP_FLUSH_DISKCACHE, 256, 1),
        ("too few indirect pages", BLKIF_OP_WRITE, 256, 0),
    ] {
        assert_eq!(
            front.push_indirect(op, 1, 0, &segs[..n], &index_page[..pages]),
            Err(PushError::BadSegments),
            "{what}"
        );
    }
    front
        .push_indirect(BLKIF_OP_WRITE, 1, 1024, &segs, &index_page)
        .unwrap();
    let _ = front.commit();
    serve_batch(&mut back, &&grants, &disk, &mut || {}).unwrap();
    assert_eq!(
        front.poll_response(),
        Some(response(1, BLKIF_OP_INDIRECT, BLKIF_RSP_OKAY))
    );
    // Without a vectored path the store sees it 11 pages at a time, in order.
    let calls = disk.calls();
    assert_eq!(calls.len(), 24);
    assert_eq!(calls[0], Call::Write(1024 * 512, 88 * 512));
    assert_eq!(calls[23], Call::Write((1024 + 23 * 88) * 512, 3 * 4096));
    for s in 0..2048u64 {
        let page = s as usize / 8;
        let want = ((s % 8) as usize + page * 8) as u8;
        assert_eq!(disk.sector(1024 + s), vec![want; 512]);
    }
    // Read a part back, scattered over pages and partial segments.
    let dst: Vec<u32> = (0..20).map(|_| grants.grant(true)).collect();
    let back_segs: Vec<BlkifSegment> = dst
        .iter()
        .enumerate()
        .map(|(i, &g)| segment(g, (i % 8) as u8, 7))
        .collect();
    let sectors: u64 = back_segs.iter().map(|s| u64::from(8 - s.first_sect)).sum();
    let index_page = [(index, grants.page(index))];
    front
        .push_indirect(BLKIF_OP_READ, 2, 1024 + 5, &back_segs, &index_page)
        .unwrap();
    let _ = front.commit();
    serve_batch(&mut back, &&grants, &disk, &mut || {}).unwrap();
    assert_eq!(
        front.poll_response(),
        Some(response(2, BLKIF_OP_INDIRECT, BLKIF_RSP_OKAY))
    );
    let mut at = 1024 + 5;
    for seg in &back_segs {
        let page = page_bytes(&grants, seg.gref);
        for s in seg.first_sect..=seg.last_sect {
            let s = usize::from(s);
            assert_eq!(
                page[s * 512..(s + 1) * 512],
                disk.sector(at)[..],
                "sector {at}"
            );
            at += 1;
        }
    }
    assert_eq!(at, 1024 + 5 + sectors);
}

#[test]
fn writes_then_reads_round_trip_across_segments() {
    let mut grants = TestGrants::default();
    let src = [grants.grant(false), grants.grant(false), grants.grant(true)];
    for (i, &g) in src.iter().enumerate() {
        let bytes: Vec<u8> = (0..PAGE_SIZE)
            .map(|b| (b as u8).wrapping_mul(i as u8 + 3))
            .collect();
        grants.page(g).write(0, &bytes);
    }
    let disk = MemDisk::new(DISK_SECTORS, false);
    // Sectors 10.. get: page0 sectors 2..=7 (6), page1 sector 0 (1), page2 sectors 3..=4 (2).
    let segs = [
        segment(src[0], 2, 7),
        segment(src[1], 0, 0),
        segment(src[2], 3, 4),
    ];
    let write = rw_request(BLKIF_OP_WRITE, 1, 10, &segs);
    assert_eq!(status_of(&grants, &disk, write), BLKIF_RSP_OKAY);
    assert_eq!(
        disk.calls(),
        [Call::Write(10 * 512, 9 * 512)],
        "one store call"
    );
    let expect = |g: u32, s: usize| page_bytes(&grants, g)[s * 512..(s + 1) * 512].to_vec();
    let mut want = Vec::new();
    for s in 2..=7 {
        want.push(expect(src[0], s));
    }
    want.push(expect(src[1], 0));
    want.extend([expect(src[2], 3), expect(src[2], 4)]);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&disk.sector(10 + i as u64), w, "sector {}", 10 + i);
    }
    assert_eq!(disk.sector(9), MemDisk::new(DISK_SECTORS, false).sector(9));
    assert_eq!(
        disk.sector(19),
        MemDisk::new(DISK_SECTORS, false).sector(19)
    );

    // Read them back, scattered differently, into writable pages.
    let dst = [grants.grant(true), grants.grant(true)];
    let segs = [segment(dst[0], 7, 7), segment(dst[1], 0, 7)];
    let read = rw_request(BLKIF_OP_READ, 2, 10, &segs);
    assert_eq!(status_of(&grants, &disk, read), BLKIF_RSP_OKAY);
    let d0 = page_bytes(&grants, dst[0]);
    let d1 = page_bytes(&grants, dst[1]);
    assert!(d0[..7 * 512].iter().all(|&b| b == 0), "outside the segment");
    assert_eq!(&d0[7 * 512..], &want[0][..]);
    for s in 0..8 {
        assert_eq!(&d1[s * 512..(s + 1) * 512], &want[s + 1][..]);
    }
}

/// Every malformed request fails alone, touches neither the store nor a page, and the request
/// after it works.
#[test]
fn every_bad_request_fails_alone_and_touches_nothing() {
    let mut grants = TestGrants::default();
    let rw = grants.grant(true);
    let ro = grants.grant(false);
    grants.page(rw).write(0, &[0xaa; PAGE_SIZE]);
    grants.page(ro).write(0, &[0xbb; PAGE_SIZE]);
    let absent = 999;
    let seg = |g, f, l| segment(g, f, l);
    let ind_rw = indirect_page(&mut grants, &[seg(rw, 0, 7); 12]);
    let ind_ro = indirect_page(&mut grants, &[seg(ro, 0, 7); 12]);
    let mut bad = [seg(ro, 0, 7); 13];
    bad[12] = seg(ro, 6, 5);
    let ind_bad = indirect_page(&mut grants, &bad);
    bad[12] = seg(absent, 0, 7);
    let ind_absent = indirect_page(&mut grants, &bad);

    let with_nr = |op, nr: u8, sector| {
        let mut r = rw_request(op, 0, sector, &[seg(rw, 0, 7); 11]);
        r.nr_segments = nr;
        r
    };
    let end = DISK_SECTORS;
    let cases: Vec<(&str, BlkifRequest, i16)> = vec![
        (
            "read with 0 segments",
            with_nr(BLKIF_OP_READ, 0, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with 0 segments",
            with_nr(BLKIF_OP_WRITE, 0, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "read with 12 segments",
            with_nr(BLKIF_OP_READ, 12, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with 255 segments",
            with_nr(BLKIF_OP_WRITE, 255, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with 12 segments",
            with_nr(BLKIF_OP_FLUSH_DISKCACHE, 12, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "barrier with 200 segments",
            with_nr(BLKIF_OP_WRITE_BARRIER, 200, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "first_sect > last_sect",
            rw_request(BLKIF_OP_WRITE, 0, 0, &[seg(ro, 5, 4)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "last_sect 8",
            rw_request(BLKIF_OP_READ, 0, 0, &[seg(rw, 0, 8)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "last_sect 255",
            rw_request(BLKIF_OP_WRITE, 0, 0, &[seg(ro, 0, 255)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a bad segment after a good one",
            rw_request(BLKIF_OP_WRITE, 0, 0, &[seg(ro, 0, 7), seg(ro, 3, 2)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at the end",
            rw_request(BLKIF_OP_READ, 0, end, &[seg(rw, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "write across the end",
            rw_request(BLKIF_OP_WRITE, 0, end - 1, &[seg(ro, 0, 1)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at u64::MAX",
            rw_request(BLKIF_OP_READ, 0, u64::MAX, &[seg(rw, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "write overflowing u64",
            rw_request(BLKIF_OP_WRITE, 0, u64::MAX - 3, &[seg(ro, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at 2^55 (offset overflows)",
            rw_request(BLKIF_OP_READ, 0, 1 << 55, &[seg(rw, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with data across the end",
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 0, end - 1, &[seg(ro, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read into an absent grant",
            rw_request(BLKIF_OP_READ, 0, 0, &[seg(absent, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "write from an absent grant",
            rw_request(BLKIF_OP_WRITE, 0, 0, &[seg(absent, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read into a read-only grant",
            rw_request(BLKIF_OP_READ, 0, 0, &[seg(ro, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read with a read-only grant after a good one",
            rw_request(BLKIF_OP_READ, 0, 0, &[seg(rw, 0, 7), seg(ro, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with a bad grant after a good one",
            rw_request(BLKIF_OP_WRITE, 0, 0, &[seg(ro, 0, 7), seg(u32::MAX, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with a bad grant",
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, &[seg(absent, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard at the end",
            discard_request(0, end, 1),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard across the end",
            discard_request(0, 1, end),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard overflowing u64",
            discard_request(0, 2, u64::MAX - 1),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard of 2^60 sectors",
            discard_request(0, 0, 1 << 60),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard past the end, zero sectors",
            discard_request(0, end + 1, 0),
            BLKIF_RSP_ERROR,
        ),
        (
            "operation 4 (reserved)",
            rw_request(4, 0, 0, &[seg(rw, 0, 7)]),
            BLKIF_RSP_EOPNOTSUPP,
        ),
        (
            "indirect read-shaped (0 indirect segments)",
            rw_request(BLKIF_OP_INDIRECT, 0, 0, &[seg(rw, 0, 7)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect with 0 segments",
            indirect_request(BLKIF_OP_READ, 0, 0, 0, &[ind_rw]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect with 257 segments",
            indirect_request(BLKIF_OP_WRITE, 0, 0, 257, &[ind_rw]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect with 65535 segments",
            indirect_request(BLKIF_OP_READ, 0, 0, u16::MAX, &[ind_rw; 8]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect flush",
            indirect_request(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 1, &[ind_ro]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect discard",
            indirect_request(BLKIF_OP_DISCARD, 0, 0, 1, &[ind_ro]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect nested",
            indirect_request(BLKIF_OP_INDIRECT, 0, 0, 1, &[ind_ro]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect page absent",
            indirect_request(BLKIF_OP_WRITE, 0, 0, 1, &[absent]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect read into read-only pages",
            indirect_request(BLKIF_OP_READ, 0, 0, 12, &[ind_ro]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect page listing a bad segment",
            indirect_request(BLKIF_OP_WRITE, 0, 0, 13, &[ind_bad]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect page listing an absent grant",
            indirect_request(BLKIF_OP_WRITE, 0, 0, 13, &[ind_absent]),
            BLKIF_RSP_ERROR,
        ),
        (
            "indirect write across the end",
            indirect_request(BLKIF_OP_WRITE, 0, end - 1, 12, &[ind_ro]),
            BLKIF_RSP_ERROR,
        ),
        (
            "operation 255",
            rw_request(255, 0, 0, &[]),
            BLKIF_RSP_EOPNOTSUPP,
        ),
    ];
    let disk = MemDisk::new(DISK_SECTORS, false);
    let pristine = disk.data.lock().unwrap().clone();
    for (i, (what, mut request, want)) in cases.into_iter().enumerate() {
        request.id = 1000 + i as u64;
        let good = rw_request(BLKIF_OP_READ, 5000 + i as u64, 3, &[seg(rw, 6, 6)]);
        let (responses, outcome) = round_trip(&grants, &disk, &[request, good]);
        assert_eq!(
            responses,
            [
                response(request.id, request.operation, want),
                response(good.id, BLKIF_OP_READ, BLKIF_RSP_OKAY)
            ],
            "{what}"
        );
        assert_eq!((outcome.handled, outcome.failed), (2, 1), "{what}");
        assert_eq!(
            disk.calls(),
            [Call::Read(3 * 512, 512)],
            "{what}: store untouched"
        );
        assert_eq!(*disk.data.lock().unwrap(), pristine, "{what}");
        let rw_page = page_bytes(&grants, rw);
        assert!(rw_page[..6 * 512].iter().all(|&b| b == 0xaa), "{what}");
        assert!(rw_page[7 * 512..].iter().all(|&b| b == 0xaa), "{what}");
        assert_eq!(&rw_page[6 * 512..7 * 512], &pristine[3 * 512..4 * 512]);
        grants.page(rw).write(0, &[0xaa; PAGE_SIZE]);
        assert!(page_bytes(&grants, ro).iter().all(|&b| b == 0xbb), "{what}");
    }
}

#[test]
fn the_last_sector_and_the_largest_request_are_fine() {
    let mut grants = TestGrants::default();
    let pages: Vec<u32> = (0..11).map(|_| grants.grant(true)).collect();
    let disk = MemDisk::new(200, false);
    let segs: Vec<BlkifSegment> = pages.iter().map(|&g| segment(g, 0, 7)).collect();
    let read = rw_request(BLKIF_OP_READ, 1, 200 - 88, &segs);
    assert_eq!(status_of(&grants, &disk, read), BLKIF_RSP_OKAY);
    assert_eq!(disk.calls(), [Call::Read(112 * 512, 88 * 512)]);
    let last = rw_request(BLKIF_OP_WRITE, 2, 199, &[segment(pages[0], 7, 7)]);
    assert_eq!(status_of(&grants, &disk, last), BLKIF_RSP_OKAY);
    assert_eq!(
        disk.sector(199),
        disk.sector(111 + 8),
        "page 0 sector 7 came from disk 119"
    );
    let discard_all = discard_request(3, 0, 200);
    assert_eq!(status_of(&grants, &disk, discard_all), BLKIF_RSP_OKAY);
    assert!(disk.data.lock().unwrap().iter().all(|&b| b == 0));
    let empty = discard_request(4, 200, 0);
    assert_eq!(status_of(&grants, &disk, empty), BLKIF_RSP_OKAY);
    disk.calls();
    let flush = rw_request(BLKIF_OP_FLUSH_DISKCACHE, 5, 12345, &[]);
    assert_eq!(
        status_of(&grants, &disk, flush),
        BLKIF_RSP_OKAY,
        "sector ignored without data"
    );
    assert_eq!(disk.calls(), [Call::Flush]);
}

#[test]
fn read_only_disks_refuse_writes_and_discards_but_read_and_flush() {
    let mut grants = TestGrants::default();
    let rw = grants.grant(true);
    let ro = grants.grant(false);
    let disk = MemDisk::new(DISK_SECTORS, true);
    let pristine = disk.data.lock().unwrap().clone();
    let cases = [
        (
            rw_request(BLKIF_OP_WRITE, 1, 0, &[segment(ro, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 2, 0, &[segment(ro, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (
            rw_request(BLKIF_OP_WRITE_BARRIER, 3, 0, &[segment(rw, 0, 0)]),
            BLKIF_RSP_ERROR,
        ),
        (discard_request(4, 0, 8), BLKIF_RSP_ERROR),
        (discard_request(5, 0, 0), BLKIF_RSP_ERROR),
        (
            rw_request(BLKIF_OP_READ, 6, 2, &[segment(rw, 0, 0)]),
            BLKIF_RSP_OKAY,
        ),
        (
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 7, 0, &[]),
            BLKIF_RSP_OKAY,
        ),
    ];
    let requests: Vec<_> = cases.iter().map(|c| c.0).collect();
    let (responses, _) = round_trip(&grants, &disk, &requests);
    let statuses: Vec<_> = responses.iter().map(|r| r.status).collect();
    let want: Vec<_> = cases.iter().map(|c| c.1).collect();
    assert_eq!(statuses, want);
    assert_eq!(disk.calls(), [Call::Read(1024, 512), Call::Flush]);
    assert_eq!(*disk.data.lock().unwrap(), pristine);
    assert_eq!(&page_bytes(&grants, rw)[..512], &pristine[1024..1536]);
}

#[test]
fn store_errors_fail_the_request_and_unsupported_discards_say_so() {
    let mut grants = TestGrants::default();
    let rw = grants.grant(true);
    let disk = MemDisk::new(DISK_SECTORS, false);
    for (request, failure, want) in [
        (
            rw_request(BLKIF_OP_READ, 1, 0, &[segment(rw, 0, 0)]),
            BlockIoError::Io { errno: 5 },
            BLKIF_RSP_ERROR,
        ),
        (
            rw_request(BLKIF_OP_WRITE, 2, 0, &[segment(rw, 0, 0)]),
            BlockIoError::Io { errno: 28 },
            BLKIF_RSP_ERROR,
        ),
        (
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 3, 0, &[]),
            BlockIoError::Io { errno: 5 },
            BLKIF_RSP_ERROR,
        ),
        (
            discard_request(4, 0, 1),
            BlockIoError::Unsupported,
            BLKIF_RSP_EOPNOTSUPP,
        ),
        (
            discard_request(5, 0, 1),
            BlockIoError::Io { errno: 5 },
            BLKIF_RSP_ERROR,
        ),
    ] {
        *disk.fail_next.lock().unwrap() = Some(failure);
        assert_eq!(status_of(&grants, &disk, request), want, "{failure}");
        let after = rw_request(BLKIF_OP_READ, 9, 0, &[segment(rw, 0, 0)]);
        assert_eq!(status_of(&grants, &disk, after), BLKIF_RSP_OKAY);
    }
    // A failed read leaves the page alone.
    grants.page(rw).write(0, &[0x11; 512]);
    *disk.fail_next.lock().unwrap() = Some(BlockIoError::Io { errno: 5 });
    let read = rw_request(BLKIF_OP_READ, 10, 0, &[segment(rw, 0, 0)]);
    assert_eq!(status_of(&grants, &disk, read), BLKIF_RSP_ERROR);
    assert!(page_bytes(&grants, rw)[..512].iter().all(|&b| b == 0x11));
}

#[test]
fn flushes_make_earlier_writes_and_their_own_data_durable() {
    let mut grants = TestGrants::default();
    let a = grants.grant(false);
    let b = grants.grant(false);
    grants.page(a).write(0, &[1; PAGE_SIZE]);
    grants.page(b).write(0, &[2; PAGE_SIZE]);
    for op in [BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_WRITE_BARRIER] {
        let disk = MemDisk::new(DISK_SECTORS, false);
        let write = rw_request(BLKIF_OP_WRITE, 1, 0, &[segment(a, 0, 7)]);
        let (_, _) = round_trip(&grants, &disk, &[write]);
        assert_ne!(
            *disk.durable.lock().unwrap(),
            *disk.data.lock().unwrap(),
            "not durable yet"
        );
        let flush = rw_request(op, 2, 8, &[segment(b, 0, 3)]);
        assert_eq!(status_of(&grants, &disk, flush), BLKIF_RSP_OKAY);
        assert_eq!(
            disk.calls(),
            [Call::Write(0, 4096), Call::Write(4096, 2048), Call::Flush],
            "data first, then the flush"
        );
        let durable = disk.durable.lock().unwrap();
        assert!(durable[..4096].iter().all(|&x| x == 1));
        assert!(durable[4096..6144].iter().all(|&x| x == 2));
        assert_eq!(*durable, *disk.data.lock().unwrap());
    }
}

#[test]
fn the_frontend_builds_well_formed_requests_only() {
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let s = segment(5, 0, 7);
    assert_eq!(front.push_read(1, 0, &[]), Err(PushError::BadSegments));
    assert_eq!(
        front.push_write(1, 0, &[s; 12]),
        Err(PushError::BadSegments)
    );
    assert_eq!(
        front.push_write(1, 0, &[segment(5, 3, 2)]),
        Err(PushError::BadSegments)
    );
    assert_eq!(
        front.push_read(1, 0, &[segment(5, 0, 8)]),
        Err(PushError::BadSegments)
    );
    assert_eq!(
        front.push_flush(1, 0, &[s; 12]),
        Err(PushError::BadSegments)
    );
    assert_eq!(front.free_requests(), 32, "nothing queued");
    for id in 0..8 {
        front.push_read(id, id, &[s; 11]).unwrap();
        front.push_write(id, id, &[s]).unwrap();
        front.push_flush(id, 0, &[]).unwrap();
        front.push_discard(id, id, 3).unwrap();
    }
    assert_eq!(front.push_barrier(9, 0, &[]), Err(PushError::RingFull));
    assert!(front.commit(), "the backend armed req_event at init");
    assert_eq!(front.requests_in_flight(), 32);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    let first = back.next_request().unwrap().unwrap();
    assert_eq!(first, rw_request(BLKIF_OP_READ, 0, 0, &[s; 11]));
    let second = back.next_request().unwrap().unwrap();
    assert_eq!((second.operation, second.nr_segments), (BLKIF_OP_WRITE, 1));
    let third = back.next_request().unwrap().unwrap();
    assert_eq!(
        (third.operation, third.nr_segments),
        (BLKIF_OP_FLUSH_DISKCACHE, 0)
    );
    let fourth = as_discard(&back.next_request().unwrap().unwrap());
    assert_eq!((fourth.operation, fourth.nr_sectors), (BLKIF_OP_DISCARD, 3));
}

/// Serves one batch, recording `rsp_prod` as the frontend sees it at every notification.
fn serve_counting<P: SharedPage>(
    back: &mut BlkifBackRing<P>,
    grants: &TestGrants,
    disk: &MemDisk,
    page: &TestPage,
) -> (ServeOutcome, Vec<u32>) {
    let mut seen = Vec::new();
    let outcome = serve_batch(back, &grants, disk, &mut || {
        seen.push(page.load_u32(offset::RSP_PROD))
    })
    .unwrap();
    assert_eq!(outcome.notified, seen.len(), "every notification counted");
    (outcome, seen)
}

#[test]
fn notifications_only_when_the_frontend_waits_and_as_soon_as_it_does() {
    let mut grants = TestGrants::default();
    let g = grants.grant(true);
    let disk = MemDisk::new(DISK_SECTORS, false);
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    let read = |front: &mut BlkifFront<_>, id| front.push_read(id, id, &[segment(g, 0, 0)]);

    for id in 0..20 {
        read(&mut front, id).unwrap();
    }
    assert!(front.commit(), "backend armed at init");
    let (outcome, seen) = serve_counting(&mut back, &grants, &disk, &page);
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 20,
            failed: 0,
            notified: 1,
            more: false
        }
    );
    assert_eq!(
        seen,
        [1],
        "notified right after the first response (rsp_event = 1), not after the burst"
    );
    assert_eq!(
        page.load_u32(offset::REQ_EVENT),
        21,
        "re-armed by the final check"
    );

    // The frontend has not consumed or re-armed: no notification for the next batch.
    read(&mut front, 20).unwrap();
    assert!(front.commit());
    let (outcome, seen) = serve_counting(&mut back, &grants, &disk, &page);
    assert_eq!((outcome.handled, outcome.notified), (1, 0));
    assert!(seen.is_empty());
    let ids: Vec<u64> = core::iter::from_fn(|| front.poll_response())
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, (0..21).collect::<Vec<_>>());
    assert!(!front.final_check_for_responses());

    // Armed at the next response, with a batch of 5: one notification, at the first of them.
    for id in 21..26 {
        read(&mut front, id).unwrap();
    }
    assert!(front.commit());
    let (outcome, seen) = serve_counting(&mut back, &grants, &disk, &page);
    assert_eq!((outcome.handled, outcome.notified), (5, 1));
    assert_eq!(seen, [22]);
    assert_eq!(
        serve_batch(&mut back, &&grants, &disk, &mut || panic!(
            "nothing to notify"
        )),
        Ok(ServeOutcome::default())
    );
}

#[test]
fn a_frontend_consuming_while_the_backend_serves_is_notified_per_crossing() {
    let mut grants = TestGrants::default();
    let g = grants.grant(true);
    let disk = MemDisk::new(DISK_SECTORS, false);
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    for id in 0..10 {
        front.push_read(id, id, &[segment(g, 0, 0)]).unwrap();
    }
    assert!(front.commit());
    // At every notification the frontend takes what is published and asks for the next one,
    // as a guest woken in the middle of the burst would.
    let mut got = Vec::new();
    let outcome = serve_batch(&mut back, &&grants, &disk, &mut || {
        let before = got.len();
        got.extend(core::iter::from_fn(|| front.poll_response()).map(|r| r.id));
        assert_eq!(got.len(), before + 1, "each response is published at once");
        assert!(!front.final_check_for_responses());
    })
    .unwrap();
    assert_eq!((outcome.handled, outcome.notified), (10, 10));
    assert_eq!(got, (0..10).collect::<Vec<_>>());

    // Asking for a notification half-way through a batch (rsp_event = rsp_cons + 5): exactly
    // one, when the fifth response is published.
    for id in 10..20 {
        front.push_read(id, id, &[segment(g, 0, 0)]).unwrap();
    }
    let _ = front.commit();
    page.store_u32(offset::RSP_EVENT, 15);
    let (outcome, seen) = serve_counting(&mut back, &grants, &disk, &page);
    assert_eq!((outcome.handled, outcome.notified), (10, 1));
    assert_eq!(seen, [15]);
}

#[test]
fn a_corrupt_req_prod_stops_the_batch_after_publishing_what_was_answered() {
    let mut grants = TestGrants::default();
    let g = grants.grant(true);
    let disk = MemDisk::new(DISK_SECTORS, false);
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    front.push_read(1, 0, &[segment(g, 0, 0)]).unwrap();
    let _ = front.commit();
    page.store_u32(offset::REQ_PROD, 1000);
    assert_eq!(
        serve_batch(&mut back, &&grants, &disk, &mut || {}),
        Err(RingError::Overflow {
            unconsumed: 1000,
            in_flight: 0,
            size: 32
        })
    );
    assert!(disk.calls().is_empty(), "nothing performed");
}

// ---------------------------------------------------------------------------------------------
// The model: docs/abi.md §10.2 written out independently, on plain vectors.

#[derive(Clone, Debug)]
struct Model {
    data: Vec<u8>,
    durable: Vec<u8>,
    read_only: bool,
    /// Granted pages: contents and writability, by reference.
    pages: Vec<(Vec<u8>, bool)>,
}

impl Model {
    fn apply(&mut self, r: &BlkifRequest) -> i16 {
        let sectors = (self.data.len() / 512) as u128;
        match r.operation {
            BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
                let n = r.nr_segments as usize;
                let rw = matches!(r.operation, BLKIF_OP_READ | BLKIF_OP_WRITE);
                if n > 11 || (rw && n == 0) {
                    return BLKIF_RSP_ERROR;
                }
                if n > 0 {
                    let status =
                        self.transfer(r.operation == BLKIF_OP_READ, r.sector_number, &r.seg[..n]);
                    if status != BLKIF_RSP_OKAY {
                        return status;
                    }
                }
                if !rw {
                    self.durable = self.data.clone();
                }
                BLKIF_RSP_OKAY
            }
            BLKIF_OP_DISCARD => {
                let d = as_discard(r);
                if d.sector_number as u128 + d.nr_sectors as u128 > sectors || self.read_only {
                    return BLKIF_RSP_ERROR;
                }
                let (s, n) = (d.sector_number as usize, d.nr_sectors as usize);
                self.data[s * 512..(s + n) * 512].fill(0);
                BLKIF_RSP_OKAY
            }
            BLKIF_OP_INDIRECT => {
                let ind = as_indirect(r);
                let reading = match ind.indirect_op {
                    BLKIF_OP_READ => true,
                    BLKIF_OP_WRITE => false,
                    _ => return BLKIF_RSP_ERROR,
                };
                let n = usize::from(ind.nr_segments);
                if n == 0 || n > 256 {
                    return BLKIF_RSP_ERROR;
                }
                let mut segs = Vec::new();
                for i in 0..n {
                    let Some((index, _)) = self.pages.get(ind.indirect_grefs[i / 512] as usize)
                    else {
                        return BLKIF_RSP_ERROR;
                    };
                    let b = &index[(i % 512) * 8..(i % 512) * 8 + 8];
                    let gref = u32::from_le_bytes(b[..4].try_into().unwrap());
                    segs.push(segment(gref, b[4], b[5]));
                }
                self.transfer(reading, ind.sector_number, &segs)
            }
            _ => BLKIF_RSP_EOPNOTSUPP,
        }
    }

    /// Reads or writes `segs` (at least one) from `sector` on.
    fn transfer(&mut self, reading: bool, sector: u64, segs: &[BlkifSegment]) -> i16 {
        let sectors = (self.data.len() / 512) as u128;
        if segs
            .iter()
            .any(|s| s.first_sect > s.last_sect || s.last_sect > 7)
        {
            return BLKIF_RSP_ERROR;
        }
        let total: u128 = segs
            .iter()
            .map(|s| (s.last_sect - s.first_sect + 1) as u128)
            .sum();
        if sector as u128 + total > sectors {
            return BLKIF_RSP_ERROR;
        }
        if !reading && self.read_only {
            return BLKIF_RSP_ERROR;
        }
        for s in segs {
            match self.pages.get(s.gref as usize) {
                Some((_, writable)) if *writable || !reading => {}
                _ => return BLKIF_RSP_ERROR,
            }
        }
        let mut sector = sector as usize;
        for s in segs {
            for in_page in s.first_sect as usize..=s.last_sect as usize {
                let disk = sector * 512..(sector + 1) * 512;
                let page = in_page * 512..(in_page + 1) * 512;
                let bytes = &mut self.pages[s.gref as usize].0;
                if reading {
                    bytes[page].copy_from_slice(&self.data[disk]);
                } else {
                    self.data[disk].copy_from_slice(&bytes[page]);
                }
                sector += 1;
            }
        }
        BLKIF_RSP_OKAY
    }
}

/// The segments listed in the model's indirect page (grant 3): 1 or 2 sectors each of
/// the writable grants 0 and 2.
fn model_index_segments() -> Vec<BlkifSegment> {
    (0..MODEL_INDEX_SEGMENTS)
        .map(|i| {
            let first = (i % 3) as u8;
            segment([0, 2][i % 2], first, first + (i % 2) as u8)
        })
        .collect()
}

/// Segments in the model's indirect page.
const MODEL_INDEX_SEGMENTS: usize = 40;

/// Grants for the model runs: 0 and 2 writable, 1 read-only, 3 a read-only indirect page
/// ([`model_index_segments`]); 4.. absent.
fn model_setup(seed: u8, read_only: bool) -> (TestGrants, MemDisk, Model) {
    let mut grants = TestGrants::default();
    let mut pages = Vec::new();
    for writable in [true, false, true] {
        let gref = grants.grant(writable);
        let bytes: Vec<u8> = (0..PAGE_SIZE)
            .map(|i| (i as u8).wrapping_mul(seed | 1) ^ gref as u8)
            .collect();
        grants.page(gref).write(0, &bytes);
        pages.push((bytes, writable));
    }
    let index = indirect_page(&mut grants, &model_index_segments());
    assert_eq!(index, 3);
    pages.push((page_bytes(&grants, index), false));
    let disk = MemDisk::new(DISK_SECTORS, read_only);
    let model = Model {
        data: disk.data.lock().unwrap().clone(),
        durable: disk.durable.lock().unwrap().clone(),
        read_only,
        pages,
    };
    (grants, disk, model)
}

/// Runs `requests` in batches of the given sizes against both the backend and the model.
fn run_against_model(
    requests: &[BlkifRequest],
    batches: &[usize],
    seed: u8,
    read_only: bool,
) -> Result<Vec<i16>, TestCaseError> {
    let (grants, disk, mut model) = model_setup(seed, read_only);
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    let (mut next, mut batch) = (0, 0);
    let mut statuses = Vec::new();
    let mut armed = true;
    while next < requests.len() {
        let n = batches[batch % batches.len()].min(requests.len() - next);
        batch += 1;
        let mut expected = Vec::new();
        for (i, r) in requests[next..next + n].iter().enumerate() {
            let r = BlkifRequest {
                id: (next + i) as u64,
                ..*r
            };
            if front.push_raw(&r).is_err() {
                break;
            }
            expected.push(response(r.id, r.operation, model.apply(&r)));
        }
        next += expected.len();
        let _ = front.commit();
        let mut notified = 0;
        let outcome = serve_batch(&mut back, &&grants, &disk, &mut || notified += 1)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(outcome.handled, expected.len());
        prop_assert_eq!(outcome.notified, notified);
        // rsp_event is 1 from init, or rsp_cons + 1 if the frontend armed it after the last
        // batch: one notification if this batch crossed it, none otherwise.
        prop_assert_eq!(notified, usize::from(armed && !expected.is_empty()));
        let got: Vec<_> = core::iter::from_fn(|| front.poll_response()).collect();
        prop_assert_eq!(&got, &expected);
        // Arm for the next batch after odd-sized batches only.
        armed = n % 2 == 1;
        if armed {
            prop_assert!(!front.final_check_for_responses());
        }
        statuses.extend(got.iter().map(|r| r.status));
        prop_assert!(
            *disk.data.lock().unwrap() == model.data,
            "disk contents differ from the model"
        );
        prop_assert!(
            *disk.durable.lock().unwrap() == model.durable,
            "durable contents differ"
        );
    }
    for (gref, (bytes, _)) in model.pages.iter().enumerate() {
        prop_assert_eq!(&page_bytes(&grants, gref as u32), bytes);
    }
    Ok(statuses)
}

fn valid_segments(max_total: u64) -> impl Strategy<Value = Vec<BlkifSegment>> {
    proptest::collection::vec((0..3u32, 0..8u8, 0..8u8), 1..=11).prop_map(move |raw| {
        let mut total = 0;
        let mut segs = Vec::new();
        for (gref, a, b) in raw {
            let (first, last) = (a.min(b), a.max(b));
            let n = u64::from(last - first) + 1;
            if total + n > max_total {
                break;
            }
            total += n;
            segs.push(segment(gref, first, last));
        }
        if segs.is_empty() {
            segs.push(segment(0, 0, 0));
        }
        segs
    })
}

/// Requests that are all valid (reads use writable grants 0 and 2 only).
fn valid_request() -> impl Strategy<Value = BlkifRequest> {
    (
        0..7u8,
        0..DISK_SECTORS,
        valid_segments(DISK_SECTORS),
        0..16u64,
    )
        .prop_map(|(kind, sector, segs, nr)| {
            if kind >= 5 {
                // An indirect read or write of a prefix of the model's indirect page.
                let index = model_index_segments();
                let n = (nr as usize * 3 + 1).min(MODEL_INDEX_SEGMENTS);
                let total: u64 = index[..n]
                    .iter()
                    .map(|s| u64::from(s.last_sect - s.first_sect) + 1)
                    .sum();
                let op = [BLKIF_OP_READ, BLKIF_OP_WRITE][usize::from(kind - 5)];
                let sector = sector.min(DISK_SECTORS - total);
                return indirect_request(op, 0, sector, n as u16, &[3]);
            }
            let total: u64 = segs
                .iter()
                .map(|s| u64::from(s.last_sect - s.first_sect) + 1)
                .sum();
            let sector = sector.min(DISK_SECTORS - total);
            match kind {
                0 => {
                    let segs: Vec<_> = segs
                        .iter()
                        .map(|s| BlkifSegment {
                            gref: s.gref & !1,
                            ..*s
                        })
                        .collect();
                    rw_request(BLKIF_OP_READ, 0, sector, &segs)
                }
                1 => rw_request(BLKIF_OP_WRITE, 0, sector, &segs),
                2 => rw_request(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, &[]),
                3 => rw_request(BLKIF_OP_WRITE_BARRIER, 0, sector, &segs),
                _ => discard_request(0, sector, nr.min(DISK_SECTORS - sector)),
            }
        })
}

/// Requests of every kind, mostly malformed, many of them just so.
fn any_request() -> impl Strategy<Value = BlkifRequest> {
    let sector = || {
        prop_oneof![
            6 => 0..DISK_SECTORS + 4,
            1 => Just(u64::MAX),
            1 => u64::MAX - 100..=u64::MAX,
            1 => any::<u64>(),
        ]
    };
    let seg = prop_oneof![
        3 => (0..5u32, 0..8u8, 0..8u8).prop_map(|(g, a, b)| segment(g, a.min(b), a.max(b))),
        1 => (prop_oneof![0..5u32, any::<u32>()], 0..10u8, any::<u8>())
            .prop_map(|(g, f, l)| segment(g, f, l)),
    ];
    (
        prop_oneof![7 => 0..7u8, 1 => any::<u8>()],
        prop_oneof![6 => 0..4u8, 2 => 0..13u8, 1 => any::<u8>()],
        sector(),
        proptest::collection::vec(seg, 11),
        sector(),
    )
        .prop_map(|(op, nr, sector, segs, nr_sectors)| {
            if op == BLKIF_OP_INDIRECT {
                // Index pages 0–4 (3 is the model's list), an operation mostly read or write,
                // and a segment count that may be anything.
                let indirect_op = [BLKIF_OP_READ, BLKIF_OP_WRITE, nr][usize::from(nr % 3)];
                let n = [u16::from(nr), u16::from(nr) * 3 + 1, segs[0].gref as u16]
                    [usize::from(nr % 3)];
                let grefs = [segs[1].gref % 5, segs[2].gref % 5];
                return indirect_request(indirect_op, 0, sector, n, &grefs);
            }
            if op == BLKIF_OP_DISCARD {
                discard_request(0, sector, nr_sectors)
            } else {
                let mut r = rw_request(op, 0, sector, &segs);
                r.nr_segments = nr;
                r
            }
        })
}

proptest! {
    /// A random mix of valid requests, in random batches, leaves the disk (and what is durable)
    /// exactly as the model says, and every request succeeds.
    #[test]
    fn valid_requests_match_the_model(
        requests in proptest::collection::vec(valid_request(), 0..120),
        batches in proptest::collection::vec(1..40usize, 1..8),
        seed in any::<u8>(),
    ) {
        let statuses = run_against_model(&requests, &batches, seed, false)?;
        prop_assert!(statuses.iter().all(|&s| s == BLKIF_RSP_OKAY), "{:?}", statuses);
    }

    /// Arbitrary requests (mostly malformed) get exactly the model's statuses, and the valid
    /// ones among them still do exactly their job.
    #[test]
    fn any_requests_match_the_model(
        requests in proptest::collection::vec(prop_oneof![any_request(), valid_request()], 0..120),
        batches in proptest::collection::vec(1..40usize, 1..8),
        seed in any::<u8>(),
        read_only in any::<bool>(),
    ) {
        run_against_model(&requests, &batches, seed, read_only)?;
    }
}

/// A frontend keeping many writes and flushes in flight against a backend running
/// [`serve_batch`] and sleeping between batches, interleaved at every shared access.
fn run_block_actors(choices: &[u8], total: u64) -> Result<(), std::string::String> {
    let mut grants = TestGrants::default();
    let g = grants.grant(true);
    let grants = &grants;
    let disk = MemDisk::new(DISK_SECTORS, false);
    let disk = &disk;
    let page = TestPage::new();
    let stores = StoreCounts::new();
    let _ = BlkifFront::new(&page);
    let result = run_interleaved(
        choices,
        |actor| {
            let mut front = BlkifFront::new(actor.page(&page, &stores));
            let (mut sent, mut received) = (0u64, 0u64);
            while received < total {
                if sent < total {
                    let seg = [segment(g, (sent % 8) as u8, (sent % 8) as u8)];
                    let pushed = match sent % 3 {
                        0 => front.push_write(sent, sent % DISK_SECTORS, &seg),
                        1 => front.push_read(sent, sent % DISK_SECTORS, &seg),
                        _ => front.push_flush(sent, 0, &[]),
                    };
                    if pushed.is_ok() {
                        sent += 1;
                        if front.commit() {
                            actor.notify_other();
                        }
                        continue;
                    }
                }
                while let Some(r) = front.poll_response() {
                    assert_eq!(r.id, received, "responses in order, once");
                    assert_eq!(r.status, BLKIF_RSP_OKAY);
                    received += 1;
                }
                if received < total
                    && (sent == total || front.free_requests() == 0)
                    && !front.final_check_for_responses()
                {
                    actor.sleep();
                }
            }
        },
        |actor| {
            let mut ring: BlkifBackRing<_> = BackRing::attach(actor.page(&page, &stores));
            let mut handled = 0;
            loop {
                let outcome = serve_batch(&mut ring, &grants, disk, &mut || actor.notify_other())
                    .expect("honest frontend");
                handled += outcome.handled;
                if handled as u64 == total {
                    break;
                }
                if outcome.more {
                    actor.yield_now();
                } else {
                    actor.sleep();
                }
            }
        },
    );
    result.map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `serve_batch` returns only when sleeping is safe: no request is ever stranded.
    #[test]
    fn interleaved_serve_batch_strands_nothing(
        choices in proptest::collection::vec(any::<u8>(), 0..400),
        total in 1..100u64,
    ) {
        run_block_actors(&choices, total).map_err(TestCaseError::fail)?;
    }
}

/// The self-feeding attack: the disk holds ring-page images, image `k` publishing one request
/// (index `k + 1`) that reads image `k + 1` into the ring page itself, so one request from the
/// guest makes the backend produce the next on its own. A grant table that refuses the ring
/// page as a data page stops this (the VMM's does); whatever the grants allow, one batch stops
/// at its budget and says there may be more, so the backend can notice a stop request.
#[test]
fn a_ring_that_feeds_itself_is_served_at_most_a_budget_per_batch() {
    const IMAGES: u64 = 4 * BATCH_BUDGET as u64;
    let mut grants = TestGrants::default();
    let ring_ref = grants.grant(true);
    let disk = MemDisk::new(IMAGES * 8 + 8, false);
    let slot = |index: u64| 64 + (index % u64::from(BLKIF_RING_SIZE)) as usize * 112;
    let read_image = |index: u64, image: u64| {
        rw_request(BLKIF_OP_READ, index, image * 8, &[segment(ring_ref, 0, 7)])
    };
    {
        let mut data = disk.data.lock().unwrap();
        for k in 0..IMAGES {
            let image = &mut data[(k * 8) as usize * SECTOR_SIZE..][..PAGE_SIZE];
            image.fill(0);
            image[offset::REQ_PROD..][..4].copy_from_slice(&((k + 2) as u32).to_le_bytes());
            let at = slot(k + 1);
            image[at..at + 112].copy_from_slice(read_image(k + 1, k + 1).as_bytes());
        }
    }
    let page = grants.page(ring_ref);
    let mut front = BlkifFront::new(page);
    front.push_raw(&read_image(0, 0)).unwrap();
    let _ = front.commit();
    let mut back: BlkifBackRing<_> = BackRing::attach(page);
    let first = serve_batch(&mut back, &&grants, &disk, &mut || {}).unwrap();
    assert_eq!(first.handled, BATCH_BUDGET, "one batch stops at its budget");
    assert!(first.more, "and says the ring may hold more");
    let second = serve_batch(&mut back, &&grants, &disk, &mut || {}).unwrap();
    assert_eq!(second.handled, BATCH_BUDGET);
    assert!(second.more);
    // An honest batch that fits the budget arms req_event and says there is nothing more.
    let page = TestPage::new();
    let mut front = BlkifFront::new(&page);
    let mut back: BlkifBackRing<_> = BackRing::attach(&page);
    front.push_flush(1, 0, &[]).unwrap();
    let _ = front.commit();
    let honest = serve_batch(&mut back, &&grants, &disk, &mut || {}).unwrap();
    assert_eq!((honest.handled, honest.more), (1, false));
}
