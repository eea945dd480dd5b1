//! Block devices: bad requests, bad grants, and the self-feeding ring.

use super::*;
use guest_sdk::println;

/// Sectors at the start of the writable disk that the block cases fill with a known pattern.
pub(super) const BLK_SCRATCH: u64 = 64;

/// Connects the first writable (or read-only) block device, or says why not.
pub(super) fn blk_open(r: &mut Report, case: &str, readonly: bool) -> Option<BlockDevice> {
    let n = block::disks().position(|(_, d)| (d.flags & blkif_flags::READONLY != 0) == readonly);
    let Some(n) = n else {
        let (what, opt) = if readonly {
            ("read-only", ",readonly")
        } else {
            ("writable", "")
        };
        println!("skip {case}: no {what} disk (run with --disk PATH{opt})");
        return None;
    };
    match BlockDevice::open(n) {
        Ok(d) => Some(d),
        Err(e) => {
            r.check(case, false, format_args!("connect: {e}"));
            None
        }
    }
}

/// Submits `request` as it is and waits (up to 2 s) for its status.
pub(super) fn blk_raw(d: &mut BlockDevice, request: BlkifRequest) -> Option<i16> {
    let id = d.submit_raw(request).ok()?;
    let deadline = time::now() + Duration::from_secs(2);
    d.wait_for_until(id, Some(deadline))
        .ok()
        .map(|done| done.status)
}

pub(super) fn blk_status_name(s: Option<i16>) -> &'static str {
    match s {
        Some(BLKIF_RSP_OKAY) => "okay",
        Some(BLKIF_RSP_ERROR) => "error",
        Some(BLKIF_RSP_EOPNOTSUPP) => "eopnotsupp",
        Some(_) => "?",
        None => "no response",
    }
}

/// The scratch area's contents and the pages the block cases grant.
pub(super) struct BlkFixture {
    /// What the first `len` sectors of the disk must hold.
    disk: Vec<u8>,
    /// Source of writes: 0xee, granted read-only.
    src: PageBox,
    src_g: GrantRef,
    /// Destination of reads: 0xaa, granted writable.
    dst: PageBox,
    dst_g: GrantRef,
}

impl BlkFixture {
    /// Fills the scratch sectors (unless `readonly`: then remembers them) and grants the pages.
    fn new(r: &mut Report, case: &str, d: &mut BlockDevice, readonly: bool) -> Option<BlkFixture> {
        let len = BLK_SCRATCH.min(d.sectors()) as usize * 512;
        let mut disk: Vec<u8> = (0..len)
            .map(|i| (i / 512) as u8 ^ (i as u8).wrapping_mul(7) ^ 0x5a)
            .collect();
        let setup = if readonly {
            d.read(0, &mut disk)
        } else {
            d.write(0, &disk)
        };
        if let Err(e) = setup {
            r.check(
                case,
                false,
                format_args!("setting up the scratch sectors: {e}"),
            );
            return None;
        }
        let src = PageBox::new();
        src.fill(0, PAGE_SIZE as usize, 0xee);
        let dst = PageBox::new();
        dst.fill(0, PAGE_SIZE as usize, 0xaa);
        let src_g = grant_table::grant_access(src.frame(), DOMID_BACKEND, true).ok()?;
        let dst_g = grant_table::grant_access(dst.frame(), DOMID_BACKEND, false).ok()?;
        Some(BlkFixture {
            disk,
            src,
            src_g: src_g.0,
            dst,
            dst_g: dst_g.0,
        })
    }

    /// Runs `request`, which must get status `want`, and checks that nothing changed: the
    /// scratch sectors, both pages, and (on a writable disk) that a write and a read still
    /// work.
    fn expect(
        &mut self,
        r: &mut Report,
        d: &mut BlockDevice,
        case: &str,
        request: BlkifRequest,
        want: i16,
    ) {
        let got = blk_raw(d, request);
        let mut now = alloc::vec![0u8; self.disk.len()];
        let disk_ok = d.read(0, &mut now).is_ok() && now == self.disk;
        let pages_ok = self.src.to_array().iter().all(|&b| b == 0xee)
            && (want == BLKIF_RSP_OKAY || self.dst.to_array().iter().all(|&b| b == 0xaa));
        let works = if d.read_only() {
            true
        } else {
            // Rewrite scratch sector 40 with new data and read it back.
            let at = 40 * 512;
            let sector = &mut self.disk[at..at + 512];
            sector.iter_mut().for_each(|b| *b = b.wrapping_add(1));
            let mut back = [0u8; 512];
            d.write(40, sector).is_ok() && d.read(40, &mut back).is_ok() && back[..] == *sector
        };
        let released = !grant_table::in_use(guest_sdk::grant_table::GrantRef(self.src_g))
            && !grant_table::in_use(guest_sdk::grant_table::GrantRef(self.dst_g));
        r.check(
            case,
            got == Some(want) && disk_ok && pages_ok && works && released,
            format_args!(
                "status {} (want {}); disk {}, pages {}, device {}, grants {}",
                blk_status_name(got),
                blk_status_name(Some(want)),
                if disk_ok { "unchanged" } else { "CHANGED" },
                if pages_ok { "unchanged" } else { "CHANGED" },
                if works { "works" } else { "BROKEN" },
                if released { "released" } else { "STILL MAPPED" },
            ),
        );
        self.dst.fill(0, PAGE_SIZE as usize, 0xaa);
    }

    fn release(self) {
        let _ = grant_table::end_access(guest_sdk::grant_table::GrantRef(self.src_g));
        let _ = grant_table::end_access(guest_sdk::grant_table::GrantRef(self.dst_g));
    }
}

/// A read/write/flush request with 11 whole-page segments of `gref`, claiming `nr` of them.
pub(super) fn blk_nr(op: u8, nr: u8, gref: GrantRef) -> BlkifRequest {
    let mut request = rw_request(op, 0, 0, &[segment(gref, 0, 7); 11]);
    request.nr_segments = nr;
    request
}

pub(super) fn blk_requests(r: &mut Report) {
    if let Some(mut d) = blk_open(r, "blk-requests", false) {
        blk_requests_writable(r, &mut d);
        if let Err(e) = d.disconnect() {
            r.check("blk-requests", false, format_args!("disconnect: {e}"));
        }
    }
    if let Some(mut d) = blk_open(r, "blk-requests read-only", true) {
        blk_requests_readonly(r, &mut d);
        if let Err(e) = d.disconnect() {
            r.check("blk-requests", false, format_args!("disconnect: {e}"));
        }
    }
}

pub(super) fn blk_requests_writable(r: &mut Report, d: &mut BlockDevice) {
    let Some(mut f) = BlkFixture::new(r, "blk-requests", d, false) else {
        return;
    };
    let (src, dst, end) = (f.src_g, f.dst_g, d.sectors());
    let (read, write, flush, barrier) = (
        BLKIF_OP_READ,
        BLKIF_OP_WRITE,
        BLKIF_OP_FLUSH_DISKCACHE,
        BLKIF_OP_WRITE_BARRIER,
    );
    let one = |op, sector, seg| rw_request(op, 0, sector, &[seg]);
    let cases: [(&str, BlkifRequest, i16); 23] = [
        (
            "read with 0 segments",
            blk_nr(read, 0, dst),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with 0 segments",
            blk_nr(write, 0, src),
            BLKIF_RSP_ERROR,
        ),
        (
            "read with 12 segments",
            blk_nr(read, 12, dst),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with 255 segments",
            blk_nr(write, 255, src),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with 12 segments",
            blk_nr(flush, 12, src),
            BLKIF_RSP_ERROR,
        ),
        (
            "barrier with 200 segments",
            blk_nr(barrier, 200, src),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with first_sect 5 > last_sect 4",
            one(write, 0, segment(src, 5, 4)),
            BLKIF_RSP_ERROR,
        ),
        (
            "read with last_sect 8",
            one(read, 0, segment(dst, 0, 8)),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with last_sect 255",
            one(write, 0, segment(src, 0, 255)),
            BLKIF_RSP_ERROR,
        ),
        (
            "write with a bad segment after a good one",
            rw_request(write, 0, 8, &[segment(src, 0, 7), segment(src, 3, 2)]),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at the sector past the end",
            one(read, end, segment(dst, 0, 0)),
            BLKIF_RSP_ERROR,
        ),
        (
            "write across the end",
            one(write, end - 1, segment(src, 0, 1)),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at sector u64::MAX",
            one(read, u64::MAX, segment(dst, 0, 0)),
            BLKIF_RSP_ERROR,
        ),
        (
            "write overflowing u64 (sector u64::MAX - 3, 8 sectors)",
            one(write, u64::MAX - 3, segment(src, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        (
            "read at sector 2^55 (the byte offset overflows)",
            one(read, 1 << 55, segment(dst, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with data across the end",
            one(flush, end - 1, segment(src, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard at the sector past the end",
            discard_request(0, end, 1),
            BLKIF_RSP_ERROR,
        ),
        (
            "discard across the end",
            discard_request(0, end - 1, 2),
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
            "unknown operation 4",
            one(4, 0, segment(src, 0, 7)),
            BLKIF_RSP_EOPNOTSUPP,
        ),
        (
            "indirect operation in a direct request's layout (0 indirect segments)",
            one(BLKIF_OP_INDIRECT, 0, segment(src, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        (
            "unknown operation 255",
            one(255, 0, segment(dst, 0, 7)),
            BLKIF_RSP_EOPNOTSUPP,
        ),
    ];
    for (what, request, want) in cases {
        f.expect(r, d, &alloc::format!("blk-requests {what}"), request, want);
    }
    blk_indirect(r, d, &mut f);
    // A valid request at the very end works.
    let last = one(read, end - 1, segment(dst, 7, 7));
    f.expect(
        r,
        d,
        "blk-requests read of the last sector",
        last,
        BLKIF_RSP_OKAY,
    );
    f.release();
}

/// A page listing `segments` for an indirect request, granted read-only.
pub(super) fn blk_index(segments: &[BlkifSegment]) -> Option<(PageBox, GrantRef)> {
    let page = PageBox::new();
    write_indirect_page(&page, segments);
    let g = grant_table::grant_access(page.frame(), DOMID_BACKEND, true).ok()?;
    Some((page, g.0))
}

/// Indirect requests (`BLKIF_OP_INDIRECT`): each bad one fails alone and changes nothing, and
/// its indirect page is released like the data pages.
pub(super) fn blk_indirect(r: &mut Report, d: &mut BlockDevice, f: &mut BlkFixture) {
    let (src, dst, end) = (f.src_g, f.dst_g, d.sectors());
    let (read, write) = (BLKIF_OP_READ, BLKIF_OP_WRITE);
    let mut bad = [segment(src, 0, 7); 12];
    bad[11] = segment(src, 6, 5);
    let mut foreign = [segment(src, 0, 7); 12];
    foreign[11] = segment(u32::MAX, 0, 7);
    let (Some(from_src), Some(into_dst), Some(bad), Some(foreign)) = (
        blk_index(&[segment(src, 0, 7); 12]),
        blk_index(&[segment(dst, 0, 7); 12]),
        blk_index(&bad),
        blk_index(&foreign),
    ) else {
        r.check(
            "blk-requests indirect",
            false,
            format_args!("granting the indirect pages"),
        );
        return;
    };
    let (s, t, b, x) = (from_src.1, into_dst.1, bad.1, foreign.1);
    let ind = indirect_request;
    let cases: [(&str, BlkifRequest, i16); 13] = [
        ("0 segments", ind(write, 0, 0, 0, &[s]), BLKIF_RSP_ERROR),
        (
            "more segments than the device offers (257)",
            ind(read, 0, 0, 257, &[t]),
            BLKIF_RSP_ERROR,
        ),
        (
            "65535 segments over 8 pages",
            ind(read, 0, 0, u16::MAX, &[t; 8]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a flush",
            ind(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 12, &[s]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a discard",
            ind(BLKIF_OP_DISCARD, 0, 0, 12, &[s]),
            BLKIF_RSP_ERROR,
        ),
        (
            "nested indirect",
            ind(BLKIF_OP_INDIRECT, 0, 0, 12, &[s]),
            BLKIF_RSP_ERROR,
        ),
        (
            "an indirect page outside the grant table",
            ind(write, 0, 0, 12, &[u32::MAX]),
            BLKIF_RSP_ERROR,
        ),
        (
            "an indirect page never granted (reference 0)",
            ind(write, 0, 0, 12, &[0]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a read into the read-only pages it lists",
            ind(read, 0, 0, 12, &[s]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a bad segment listed last",
            ind(write, 0, 0, 12, &[b]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a grant outside the table listed last",
            ind(write, 0, 0, 12, &[x]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a write across the end",
            ind(write, 0, end - 95, 12, &[s]),
            BLKIF_RSP_ERROR,
        ),
        (
            "a read at sector u64::MAX - 7",
            ind(read, 0, u64::MAX - 7, 12, &[t]),
            BLKIF_RSP_ERROR,
        ),
    ];
    for (what, request, want) in cases {
        let case = alloc::format!("blk-requests indirect: {what}");
        f.expect(r, d, &case, request, want);
    }
    // The same pages, well used, work: 12 whole pages read into one page (the last wins).
    f.expect(
        r,
        d,
        "blk-requests indirect: a 12-page read",
        ind(read, 0, 0, 12, &[t]),
        BLKIF_RSP_OKAY,
    );
    let mut released = true;
    for (page, g) in [from_src, into_dst, bad, foreign] {
        released &= !grant_table::in_use(guest_sdk::grant_table::GrantRef(g))
            && grant_table::end_access(guest_sdk::grant_table::GrantRef(g)).is_ok();
        drop(page);
    }
    r.check(
        "blk-requests indirect: pages released",
        released,
        format_args!("every indirect page was released and revoked"),
    );
}

pub(super) fn blk_requests_readonly(r: &mut Report, d: &mut BlockDevice) {
    let Some(mut f) = BlkFixture::new(r, "blk-requests read-only", d, true) else {
        return;
    };
    let (src, dst) = (f.src_g, f.dst_g);
    let one = |op, seg| rw_request(op, 0, 0, &[seg]);
    let cases = [
        (
            "write",
            one(BLKIF_OP_WRITE, segment(src, 0, 0)),
            BLKIF_RSP_ERROR,
        ),
        (
            "flush with data",
            one(BLKIF_OP_FLUSH_DISKCACHE, segment(src, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        (
            "barrier with data",
            one(BLKIF_OP_WRITE_BARRIER, segment(src, 0, 7)),
            BLKIF_RSP_ERROR,
        ),
        ("discard", discard_request(0, 0, 8), BLKIF_RSP_ERROR),
        (
            "read",
            one(BLKIF_OP_READ, segment(dst, 0, 7)),
            BLKIF_RSP_OKAY,
        ),
        (
            "flush without data",
            rw_request(BLKIF_OP_FLUSH_DISKCACHE, 0, 0, &[]),
            BLKIF_RSP_OKAY,
        ),
    ];
    for (what, request, want) in cases {
        f.expect(
            r,
            d,
            &alloc::format!("blk-requests read-only disk: {what}"),
            request,
            want,
        );
    }
    f.release();
}

pub(super) fn blk_grants(r: &mut Report) {
    let Some(mut d) = blk_open(r, "blk-grants", false) else {
        return;
    };
    let d = &mut d;
    let Some(mut f) = BlkFixture::new(r, "blk-grants", d, false) else {
        return;
    };
    let (src, dst) = (f.src_g, f.dst_g);
    let read = |g, first, last| rw_request(BLKIF_OP_READ, 0, 0, &[segment(g, first, last)]);
    let write = |g| rw_request(BLKIF_OP_WRITE, 0, 0, &[segment(g, 0, 7)]);
    let n = grant_table::nr_entries();
    for (what, request) in [
        ("read into gref 0 (never granted)", read(0, 0, 7)),
        ("read into gref nr_entries", read(n, 0, 7)),
        ("read into gref 0xffffffff", read(u32::MAX, 0, 7)),
        ("write from gref nr_entries", write(n)),
        ("read into a read-only grant", read(src, 0, 7)),
        (
            "write with a bad grant after three good ones",
            rw_request(
                BLKIF_OP_WRITE,
                0,
                8,
                &[
                    segment(src, 0, 7),
                    segment(src, 0, 7),
                    segment(src, 0, 7),
                    segment(u32::MAX, 0, 7),
                ],
            ),
        ),
        (
            "read with a read-only grant after a good one",
            rw_request(
                BLKIF_OP_READ,
                0,
                0,
                &[segment(dst, 0, 7), segment(src, 0, 7)],
            ),
        ),
    ] {
        f.expect(
            r,
            d,
            &alloc::format!("blk-grants {what}"),
            request,
            BLKIF_RSP_ERROR,
        );
    }
    // Writable grants of pages the guest's page tables map read-only (W^X).
    for (what, frame) in read_only_frames() {
        let before = page_copy(frame);
        if let Ok(g) = grant_table::grant_access(frame, DOMID_BACKEND, false) {
            f.expect(
                r,
                d,
                &alloc::format!("blk-grants read into a writable grant of {what}"),
                read(g.0, 0, 7),
                BLKIF_RSP_ERROR,
            );
            let _ = grant_table::end_access(g);
        }
        r.check(
            &alloc::format!("blk-grants {what} unchanged"),
            page_copy(frame) == before,
            format_args!("contents"),
        );
    }
    // Entries the backend must refuse: foreign, invalid, or naming frames it may not map.
    let page = PageBox::new();
    let frame = page.frame() as u32;
    let si = start_info();
    let last_gt_frame = (si.grant_table / PAGE_SIZE) as u32 + si.nr_grant_frames.max(1) - 1;
    let beyond = (ram_end() / PAGE_SIZE + 16) as u32;
    let entries: [(&str, u32, u16, u16); 8] = [
        (
            "an entry for DOMID_GUEST",
            frame,
            DOMID_GUEST,
            gtf::PERMIT_ACCESS,
        ),
        (
            "an entry for DOMID_SELF",
            frame,
            DOMID_SELF,
            gtf::PERMIT_ACCESS,
        ),
        ("an entry without permit_access", frame, DOMID_BACKEND, 0),
        ("an entry of type 2 (transitive)", frame, DOMID_BACKEND, 2),
        (
            "a frame below 1 MiB (0x10)",
            0x10,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
        ),
        (
            "a frame beyond RAM",
            beyond,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
        ),
        (
            "the grant table's last frame",
            last_gt_frame,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
        ),
        ("the start-info page", 1, DOMID_BACKEND, gtf::PERMIT_ACCESS),
    ];
    for (what, frame, domid, flags) in entries {
        let Ok(g) = grant_table::reserve() else {
            r.check(
                "blk-grants reserve",
                false,
                format_args!("no free grant entry"),
            );
            break;
        };
        let _ = grant_table::set_entry(g, frame, domid, flags);
        // Reads write only the page's last sector: on the boot pages, bytes nothing uses.
        f.expect(
            r,
            d,
            &alloc::format!("blk-grants read into {what}"),
            read(g.0, 7, 7),
            BLKIF_RSP_ERROR,
        );
        f.expect(
            r,
            d,
            &alloc::format!("blk-grants write from {what}"),
            write(g.0),
            BLKIF_RSP_ERROR,
        );
        let _ = grant_table::set_entry(g, 0, 0, 0);
        let _ = grant_table::end_access(g);
    }
    drop(page);
    // A good read, to show the fixture's grants work and are released after the response.
    f.expect(
        r,
        d,
        "blk-grants good read",
        read(dst, 0, 7),
        BLKIF_RSP_OKAY,
    );
    f.release();
}

/// Sector of the first ring-page image `blk-self-feed` writes (past the scratch sectors).
pub(super) const SELF_FEED_SECTOR: u64 = 1024;
/// How many images it writes.
pub(super) const SELF_FEED_IMAGES: u64 = 64;

/// The self-feeding ring: image `k` on the disk is a ring page whose `req_prod` publishes one
/// more request, a read of image `k + 1` into the ring page itself. If the backend accepted the
/// ring page as a data page, one request from the guest would make it serve the rest on its
/// own, long after the guest stopped. It must answer the first read with an error instead.
pub(super) fn blk_self_feed(r: &mut Report) {
    use zerocopy::IntoBytes;
    let case = "blk-self-feed";
    let Some(mut d) = blk_open(r, case, false) else {
        return;
    };
    let page_len = PAGE_SIZE as usize;
    if d.sectors() < SELF_FEED_SECTOR + 8 * (SELF_FEED_IMAGES + 1) {
        println!("skip {case}: the disk is too small");
        return;
    }
    let Ok(ring_g) = grant_table::grant_access(d.ring().page().frame(), DOMID_BACKEND, false)
    else {
        r.check(case, false, format_args!("cannot grant the ring page"));
        return;
    };
    let read_image = |image: u64| {
        rw_request(
            BLKIF_OP_READ,
            0,
            SELF_FEED_SECTOR + 8 * image,
            &[segment(ring_g.0, 0, 7)],
        )
    };
    let req_prod = |d: &mut BlockDevice| d.ring().page().load_u32(ring_offset::REQ_PROD);
    // A first write of the images' size shows how many requests the real one will take, and so
    // the index the kick-off read will have.
    let mut images = alloc::vec![0u8; SELF_FEED_IMAGES as usize * page_len];
    let before = req_prod(&mut d);
    if let Err(e) = d.write(SELF_FEED_SECTOR, &images) {
        r.check(case, false, format_args!("writing the images: {e}"));
        return;
    }
    let after = req_prod(&mut d);
    let kick_off = after.wrapping_add(after.wrapping_sub(before));
    for (k, image) in images.chunks_mut(page_len).enumerate() {
        let index = kick_off.wrapping_add(k as u32 + 1);
        image[ring_offset::REQ_PROD..][..4].copy_from_slice(&index.wrapping_add(1).to_le_bytes());
        let slot = 64 + (index as usize % 32) * size_of::<BlkifRequest>();
        image[slot..slot + size_of::<BlkifRequest>()]
            .copy_from_slice(read_image(k as u64 + 1).as_bytes());
    }
    if let Err(e) = d.write(SELF_FEED_SECTOR, &images) {
        r.check(case, false, format_args!("writing the images: {e}"));
        return;
    }
    let at_kick_off = req_prod(&mut d) == kick_off;
    let status = blk_raw(&mut d, read_image(0));
    let settled = req_prod(&mut d) == kick_off.wrapping_add(1);
    let sector = [0x3cu8; 512];
    let mut back = [0u8; 512];
    let works = d.write(40, &sector).is_ok() && d.read(40, &mut back).is_ok() && back == sector;
    let released = grant_table::end_access(ring_g).is_ok();
    r.check(
        case,
        at_kick_off && status == Some(BLKIF_RSP_ERROR) && settled && works && released,
        format_args!(
            "a read into the live ring page: status {} (want error); ring {}, device {}, \
             ring grant {}",
            blk_status_name(status),
            if at_kick_off && settled {
                "unchanged"
            } else {
                "CHANGED"
            },
            if works { "works" } else { "BROKEN" },
            if released { "released" } else { "STILL MAPPED" },
        ),
    );
    if let Err(e) = d.disconnect() {
        r.check(case, false, format_args!("disconnect: {e}"));
    }
}
