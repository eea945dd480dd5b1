//! A guest that misbehaves on purpose, to show that the VMM answers every abuse of the PV core
//! with the documented error and never falls over.
//!
//! The command line names the cases to run; `all` runs every non-fatal case in sequence. Each
//! check prints `ok <case>: <what happened>` when the VMM answered as documented (or as the
//! policy below says), `FAIL <case>: …` otherwise (and `note <case>: …` where the ABI leaves the
//! answer open), and the run ends with
//! `hostile: <n> ok, <m> failed` (exit code 0 only if nothing failed). Cases that need the
//! loopback device are skipped with a note unless the VMM runs with `--loopback`.
//!
//! | word | what the guest does |
//! |---|---|
//! | `gref-range` | grant references outside the table (copy, loopback, connect) |
//! | `gref-foreign` | entries with the wrong domid, without `GTF_permit_access`, of a bad type, or naming frames below 1 MiB / beyond RAM |
//! | `readonly` | writes through read-only grants: loopback `FILL`, `GNTTABOP_copy` to a read-only destination, a read-only ring |
//! | `end-mapped` | `end_access` while the VMM maps the grant; then revokes it by force and changes the entry under the mapping |
//! | `ports` | sends, notifies, unmasks, closes and binds on unbound, closed, backend and out-of-range ports; exhausts the port space |
//! | `lengths` | huge and negative lengths: `console_io` count `u64::MAX`, loopback `len 0xffffffff`, copy `len > 4096`, batch counts |
//! | `pointers` | bad guest addresses (0, RAM end, `u64::MAX - 7`) in every hypercall that takes a pointer, and boot pages the guest may only read as output buffers |
//! | `devices` | connects a device twice, with bogus grants and ring counts, unknown devices and commands |
//! | `ring-events` | scribbles over the ring's event indices and padding; the device keeps working |
//! | `timer-huge` | `set_timer_op(u64::MAX)` and other absurd deadlines |
//! | `net-tx`, `net-rx` | bad transmit requests and receive pages on the first `--net` interface (see `net.rs`) |
//! | `blk-requests` | block requests with zero or 12+ segments, `first_sect > last_sect`, `last_sect` 8, sectors past the end or overflowing `u64`, unknown operations; indirect requests with 0 or too many segments, other operations than read and write, indirect pages that are not granted or list bad segments or read-only pages to read into; on a read-only disk (the first `--disk …,readonly`), writes, flushes with data and discards |
//! | `blk-grants` | block requests naming grants outside the table, foreign or invalid entries, frames the backend may not map, read-only grants for reads, one bad grant among good ones |
//! | `blk-self-feed` | writes 64 ring-page images to the disk, each publishing one request that reads the next image into the live ring page, then submits the first such read: the backend must refuse the ring page as a data page |
//!
//! Fatal cases are separate words (not part of `all`): the VMM must stop the guest with exit
//! status 102 and a clear report. If the guest is still running two seconds later it prints
//! `FAIL` and returns 1.
//!
//! | word | what the guest does |
//! |---|---|
//! | `ring-overflow` | loopback: `req_prod = req_cons + 1000`, then notifies |
//! | `ring-backwards` | loopback: moves `req_prod` backwards after some requests, then notifies |
//! | `console-overflow` | console ring: `out_prod = out_cons + 5000`, then notifies |
//! | `net-ring-overflow`, `net-rx-ring-overflow` | network transmit / receive ring: `req_prod = req_cons + 1000`, then notifies |
//! | `blk-ring-overflow` | block ring of the first `--disk`: `req_prod = req_cons + 1000`, then notifies |
//!
//! `console-flood` writes console lines forever: only `--timeout` ends it, which the VMM must
//! honour even if nobody reads its standard output.
//!
//! The block cases need a writable disk (`--disk PATH`) and use it as scratch space (sectors
//! 0–63 are overwritten); a read-only disk (a second `--disk PATH,readonly`) adds the read-only
//! checks. Without a disk they are skipped with a note. Each bad request must get its documented
//! status (`BLKIF_RSP_ERROR` -1, `BLKIF_RSP_EOPNOTSUPP` -2) and change nothing: after each one
//! the guest checks that the disk's first 64 sectors and the request's pages are unchanged and
//! that a valid write and read still work.
//!
//! Policy decided here for boot pages as output buffers: the VMM writes hypercall results
//! through its own mapping of guest RAM, so it could write into pages the guest may only read
//! (the start-info page, the hypercall page) and let the guest modify, e.g., its own hypercall
//! stubs in spite of W^X. The right answer is `-EFAULT` for an output buffer that overlaps a page
//! the guest cannot write, and the VMM answers exactly that (docs/abi.md §1). GPA 0 (the unmapped
//! null page) counts as such a page: a null output pointer is `-EFAULT`.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use guest_sdk::abi::blkif::{
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BlkifRequest,
    BlkifSegment, flags as blkif_flags,
};
use guest_sdk::abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE, console_offset};
use guest_sdk::abi::device::{Connect, DEVOP_CONNECT, DEVOP_DISCONNECT, kind};
use guest_sdk::abi::event_channel::{
    AllocUnbound, BindInterdomain, BindVirq, DOMID_BACKEND, DOMID_GUEST, DOMID_SELF,
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE,
    EVTCHNOP_SEND, EVTCHNOP_STATUS, EVTCHNOP_UNMASK, NR_PORTS, PortArg, Status, virq,
};
use guest_sdk::abi::grant_table::{
    GNTTABOP_COPY, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, GrantRef, SetupTable, gntst, gtf,
};
use guest_sdk::abi::hypercall::STUB_SIZE;
use guest_sdk::abi::loopback::{
    LOOPBACK_OP_ECHO, LOOPBACK_OP_FILL, LOOPBACK_OP_SUM, LOOPBACK_STATUS_ERROR, LOOPBACK_STATUS_OK,
    LoopbackRequest,
};
use guest_sdk::abi::multicall::MulticallEntry;
use guest_sdk::abi::ring::offset as ring_offset;
use guest_sdk::abi::sched::{SCHEDOP_FAULT, SCHEDOP_SHUTDOWN};
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::abi::version::{XENVER_EXTRAVERSION, XENVER_GET_FEATURES};
use guest_sdk::abi::{Errno, Hypercall};
use guest_sdk::block::{self, BlockDevice};
use guest_sdk::evtchn::{self, Port};
use guest_sdk::grant::{self, GrantError, copy_frame, copy_gref, copy_op};
use guest_sdk::hypercall::{self, raw::hypercall5};
use guest_sdk::loopback::{Loopback, LoopbackError};
use guest_sdk::page::{GuestPage, PageBox};
use guest_sdk::start_info::{cmdline, start_info};
use guest_sdk::{console, device, println, time, timer};
use pv_drivers::blkif::{
    discard_request, indirect_request, rw_request, segment, write_indirect_page,
};
use pv_drivers::shared::SharedPage;

mod net;

guest_sdk::entry!(main);

const USAGE: &str = "usage: hostile all|net-tx|net-rx|gref-range|gref-foreign|readonly|end-mapped|ports|lengths|\
                     pointers|devices|ring-events|timer-huge|blk-requests|blk-grants|blk-self-feed  or one fatal case: \
                     net-ring-overflow|net-rx-ring-overflow|ring-overflow|ring-backwards|console-overflow|blk-ring-overflow  \
                     or console-flood";

type Case = fn(&mut Report);

const CASES: &[(&str, Case)] = &[
    ("gref-range", gref_range),
    ("gref-foreign", gref_foreign),
    ("readonly", readonly),
    ("end-mapped", end_mapped),
    ("ports", ports),
    ("lengths", lengths),
    ("pointers", pointers),
    ("devices", devices),
    ("ring-events", ring_events),
    ("timer-huge", timer_huge),
    ("net-tx", net::net_tx),
    ("net-rx", net::net_rx),
    ("blk-requests", blk_requests),
    ("blk-grants", blk_grants),
    ("blk-self-feed", blk_self_feed),
];

const FATAL: &[(&str, fn())] = &[
    ("ring-overflow", ring_overflow),
    ("ring-backwards", ring_backwards),
    ("console-overflow", console_overflow),
    ("net-ring-overflow", net::ring_overflow),
    ("net-rx-ring-overflow", net::rx_ring_overflow),
    ("blk-ring-overflow", blk_ring_overflow),
];

fn main() -> u32 {
    let words: Vec<&str> = cmdline().split_whitespace().collect();
    if words.is_empty() {
        println!("{USAGE}");
        return 2;
    }
    for w in &words {
        if *w != "all"
            && *w != "console-flood"
            && !CASES.iter().any(|(n, _)| n == w)
            && !FATAL.iter().any(|(n, _)| n == w)
        {
            println!("hostile: unknown case {w:?}; {USAGE}");
            return 2;
        }
    }
    if words.contains(&"console-flood") {
        // Never stops writing: only `--timeout` ends this guest.
        for line in 0u64.. {
            println!("console-flood line {line}: the VMM must still honour --timeout");
        }
    }
    if let Some((name, f)) = FATAL.iter().find(|(n, _)| words.contains(n)) {
        println!("hostile: {name}: the VMM must now stop this guest (status 102)");
        f();
        timer::sleep(Duration::from_secs(2));
        println!("FAIL {name}: the VMM did not stop the guest");
        return 1;
    }
    // Bind VIRQ_TIMER now, before `ports` exhausts the port space.
    guest_sdk::timer::init();
    let mut r = Report { ok: 0, failed: 0 };
    for (name, f) in CASES {
        if words.contains(&"all") || words.contains(name) {
            f(&mut r);
        }
    }
    println!("hostile: {} ok, {} failed", r.ok, r.failed);
    u32::from(r.failed != 0)
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// A raw hypercall result, shown as a value or a negated errno.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ret(u64);

impl Ret {
    const fn err(e: Errno) -> Ret {
        Ret(e.to_ret())
    }

    fn of(r: Result<(), Errno>) -> Ret {
        match r {
            Ok(()) => Ret(0),
            Err(e) => Ret::err(e),
        }
    }
}

const OK: Ret = Ret(0);
const EFAULT: Ret = Ret::err(Errno::EFAULT);
const EINVAL: Ret = Ret::err(Errno::EINVAL);

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_ret(self.0) {
            Ok(v) => write!(f, "{v:#x}"),
            Err(e) => write!(f, "-{}", e.name()),
        }
    }
}

impl fmt::Debug for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct Report {
    ok: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, case: &str, ok: bool, what: fmt::Arguments<'_>) {
        if ok {
            self.ok += 1;
            println!("ok {case}: {what}");
        } else {
            self.failed += 1;
            println!("FAIL {case}: {what}");
        }
    }

    /// `got` must be `want`.
    fn ret(&mut self, case: &str, got: Ret, want: Ret) {
        self.check(case, got == want, format_args!("got {got}, want {want}"));
    }

    /// A grant-copy status.
    fn status(&mut self, case: &str, got: Result<i16, Errno>, want: i16) {
        let ok = got == Ok(want);
        self.check(
            case,
            ok,
            format_args!("status {got:?}, want {want} ({})", gntst_name(want)),
        );
    }
}

fn gntst_name(s: i16) -> &'static str {
    match s {
        gntst::OKAY => "okay",
        gntst::GENERAL_ERROR => "general_error",
        gntst::BAD_DOMAIN => "bad_domain",
        gntst::BAD_GNTREF => "bad_gntref",
        gntst::BAD_PAGE => "bad_page",
        gntst::BAD_COPY_ARG => "bad_copy_arg",
        gntst::PERMISSION_DENIED => "permission_denied",
        _ => "?",
    }
}

/// A raw hypercall.
///
/// # Safety
///
/// As for [`hypercall5`]: memory the VMM writes must be memory the caller may write (or lie
/// outside guest RAM, or be a page whose corruption this guest accepts).
unsafe fn raw(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> Ret {
    // SAFETY: forwarded to the caller.
    Ret(unsafe { hypercall5(nr, a1, a2, a3, 0, 0) })
}

fn ram_end() -> u64 {
    start_info().nr_pages * PAGE_SIZE
}

/// One `GNTTABOP_copy` element's status.
fn copy1(mut op: grant::Copy) -> Result<i16, Errno> {
    let mut ops = [op];
    // SAFETY: destinations are pages this guest owns (`PageBox`es or grants of them) or frames
    // the VMM must refuse.
    unsafe { grant::grant_copy(&mut ops) }?;
    op = ops[0];
    Ok(op.status)
}

/// Connects the loopback device, or prints why not.
fn loopback(r: &mut Report, case: &str) -> Option<Loopback> {
    match Loopback::connect() {
        Ok(lb) => Some(lb),
        Err(LoopbackError::NoDevice) => {
            println!("skip {case}: no loopback device (run with --loopback)");
            None
        }
        Err(e) => {
            r.check(case, false, format_args!("loopback connect: {e}"));
            None
        }
    }
}

/// Submits one request and waits (up to 2 s) for its response: `(status, value)`.
fn one(lb: &mut Loopback, req: LoopbackRequest) -> Option<(i32, u64)> {
    lb.submit(&req).ok()?;
    let rsp = lb.wait_response_until(time::now() + Duration::from_secs(2))?;
    (rsp.id == req.id).then_some((rsp.status, rsp.value))
}

fn request(id: u64, op: u32, gref: GrantRef, offset: u32, len: u32, value: u64) -> LoopbackRequest {
    LoopbackRequest {
        id,
        op,
        gref,
        offset,
        len,
        value,
    }
}

fn disconnect(r: &mut Report, case: &str, lb: Loopback) {
    if let Err(e) = lb.disconnect() {
        r.check(case, false, format_args!("disconnect: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Grants.

fn gref_range(r: &mut Report) {
    let page = PageBox::new();
    let n = grant::nr_entries();
    for (what, gref) in [
        ("nr_entries", n),
        ("0xffffffff", u32::MAX),
        ("0 (never granted)", 0),
    ] {
        let st = copy1(copy_op(
            copy_gref(grant::GrantRef(gref), 0),
            true,
            copy_frame(page.frame(), 0),
            false,
            8,
        ));
        r.status(
            &alloc::format!("gref-range copy from gref {what}"),
            st,
            gntst::BAD_GNTREF,
        );
        let st = copy1(copy_op(
            copy_frame(page.frame(), 0),
            false,
            copy_gref(grant::GrantRef(gref), 0),
            true,
            8,
        ));
        r.status(
            &alloc::format!("gref-range copy to gref {what}"),
            st,
            gntst::BAD_GNTREF,
        );
    }
    let mut big = copy_op(
        copy_gref(grant::GrantRef(0), 0),
        true,
        copy_frame(page.frame(), 0),
        false,
        8,
    );
    big.source.u = 1 << 40;
    r.status(
        "gref-range copy from gref 2^40",
        copy1(big),
        gntst::BAD_GNTREF,
    );
    let Some(mut lb) = loopback(r, "gref-range loopback") else {
        return;
    };
    for (id, gref) in [(1, n), (2, u32::MAX), (3, 0)] {
        let got = one(&mut lb, request(id, LOOPBACK_OP_SUM, gref, 0, 16, 0));
        r.check(
            &alloc::format!("gref-range loopback SUM gref {gref:#x}"),
            got == Some((LOOPBACK_STATUS_ERROR, 0)),
            format_args!("response {got:?}, want status -1"),
        );
    }
    let got = one(&mut lb, request(9, LOOPBACK_OP_ECHO, 0, 0, 0, 5));
    r.check(
        "gref-range device still works",
        got == Some((0, 5)),
        format_args!("echo {got:?}"),
    );
    disconnect(r, "gref-range", lb);
}

fn gref_foreign(r: &mut Report) {
    let page = PageBox::new();
    let frame = page.frame() as u32;
    let beyond = (ram_end() / PAGE_SIZE + 16) as u32;
    let cases: [(&str, u32, u16, u16, i16); 7] = [
        (
            "domid DOMID_GUEST",
            frame,
            DOMID_GUEST,
            gtf::PERMIT_ACCESS,
            gntst::BAD_GNTREF,
        ),
        (
            "domid 0x7ff0 (DOMID_SELF)",
            frame,
            DOMID_SELF,
            gtf::PERMIT_ACCESS,
            gntst::BAD_GNTREF,
        ),
        (
            "flags 0 (not permitted)",
            frame,
            DOMID_BACKEND,
            0,
            gntst::BAD_GNTREF,
        ),
        (
            "type 2 (transitive, unsupported)",
            frame,
            DOMID_BACKEND,
            2,
            gntst::BAD_GNTREF,
        ),
        (
            "only GTF_readonly",
            frame,
            DOMID_BACKEND,
            gtf::READONLY,
            gntst::BAD_GNTREF,
        ),
        (
            "frame 0x10 (below 1 MiB)",
            0x10,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
            gntst::BAD_PAGE,
        ),
        (
            "frame beyond RAM",
            beyond,
            DOMID_BACKEND,
            gtf::PERMIT_ACCESS,
            gntst::BAD_PAGE,
        ),
    ];
    let dst = PageBox::new();
    let mut refs = Vec::new();
    for (what, frame, domid, flags, want) in cases {
        let Ok(g) = grant::reserve() else {
            r.check("gref-foreign reserve", false, format_args!("no free entry"));
            return;
        };
        let _ = grant::set_entry(g, frame, domid, flags);
        let st = copy1(copy_op(
            copy_gref(g, 0),
            true,
            copy_frame(dst.frame(), 0),
            false,
            64,
        ));
        r.status(&alloc::format!("gref-foreign copy from {what}"), st, want);
        refs.push((what, g));
    }
    // The boot structures cannot be granted: the grant table itself, start-info.
    let si = start_info();
    for (what, gpa) in [("the grant table", si.grant_table), ("start-info", 0x1000)] {
        if let Ok(g) = grant::grant_access(gpa / PAGE_SIZE, DOMID_BACKEND, false) {
            let st = copy1(copy_op(
                copy_frame(dst.frame(), 0),
                false,
                copy_gref(g, 0),
                true,
                64,
            ));
            r.status(
                &alloc::format!("gref-foreign copy into {what}"),
                st,
                gntst::BAD_PAGE,
            );
            refs.push((what, g));
        }
    }
    if let Some(mut lb) = loopback(r, "gref-foreign loopback") {
        for (id, (what, g)) in refs.iter().enumerate() {
            let got = one(
                &mut lb,
                request(id as u64, LOOPBACK_OP_FILL, g.0, 0, 64, 0xee),
            );
            r.check(
                &alloc::format!("gref-foreign loopback FILL via {what}"),
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
        }
        disconnect(r, "gref-foreign", lb);
    }
    r.check(
        "gref-foreign nothing was written",
        dst.to_array().iter().all(|&b| b == 0) && page.to_array().iter().all(|&b| b == 0),
        format_args!("pages untouched"),
    );
    for (_, g) in refs {
        let _ = grant::end_access(g);
    }
}

fn readonly(r: &mut Report) {
    let page = PageBox::new();
    page.fill(0, 4096, 0x11);
    let Ok(ro) = grant::grant_access(page.frame(), DOMID_BACKEND, true) else {
        r.check("readonly grant", false, format_args!("grant_access failed"));
        return;
    };
    let src = PageBox::new();
    let st = copy1(copy_op(
        copy_frame(src.frame(), 0),
        false,
        copy_gref(ro, 0),
        true,
        4096,
    ));
    r.status(
        "readonly copy to read-only dest",
        st,
        gntst::PERMISSION_DENIED,
    );
    let st = copy1(copy_op(
        copy_gref(ro, 0),
        true,
        copy_gref(ro, 100),
        true,
        16,
    ));
    r.status(
        "readonly copy read-only gref onto itself",
        st,
        gntst::PERMISSION_DENIED,
    );
    if let Some(mut lb) = loopback(r, "readonly loopback") {
        let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, ro.0, 0, 4096, 0x22));
        r.check(
            "readonly loopback FILL on read-only grant",
            got == Some((LOOPBACK_STATUS_ERROR, 0)),
            format_args!("response {got:?}, want status -1"),
        );
        let got = one(&mut lb, request(2, LOOPBACK_OP_SUM, ro.0, 0, 4096, 0));
        r.check(
            "readonly loopback SUM on read-only grant works",
            got == Some((LOOPBACK_STATUS_OK, 0x11 * 4096)),
            format_args!("response {got:?}"),
        );
        disconnect(r, "readonly", lb);
    }
    r.check(
        "readonly page unchanged",
        page.to_array().iter().all(|&b| b == 0x11),
        format_args!("contents"),
    );
    // A read-only ring grant.
    if let Some((index, _)) = device::find(kind::LOOPBACK) {
        let ring = PageBox::new();
        if let Ok(g) = grant::grant_access(ring.frame(), DOMID_BACKEND, true) {
            let got = Ret::of(device::connect(index, &[g]));
            r.ret(
                "readonly connect with a read-only ring grant",
                got,
                Ret::err(Errno::EPERM),
            );
            if got == OK {
                let _ = device::disconnect(index);
            }
            let _ = grant::end_access(g);
        }
    }
    r.check(
        "readonly grant released",
        grant::end_access(ro).is_ok(),
        format_args!("end_access"),
    );
    readonly_pages(r);
}

/// A multicall batch in read-only data: `console_io` writing the first 15 bytes of start-info
/// (its magic, `parapet-abi-0.2`).
static RODATA_BATCH: [MulticallEntry; 1] = [MulticallEntry {
    op: Hypercall::CONSOLE_IO.0 as u64,
    result: 0,
    args: [CONSOLEIO_WRITE, 15, 0x1000, 0, 0, 0],
}];

/// A page of the kernel's read-only data: the guest's page tables map it read-only.
#[repr(C, align(4096))]
struct RodataPage([u8; 4096]);
static RODATA_PAGE: RodataPage = RodataPage([0x5a; 4096]);

/// The frame of the read-only data page and of the page holding `main`'s code.
fn read_only_frames() -> [(&'static str, u64); 2] {
    [
        (
            "read-only data",
            &RODATA_PAGE as *const _ as u64 / PAGE_SIZE,
        ),
        ("kernel text", main as *const () as u64 / PAGE_SIZE),
    ]
}

/// A snapshot of a page (read through the identity mapping).
fn page_copy(frame: u64) -> Vec<u8> {
    // SAFETY: `frame` is a page of this kernel's image, mapped and readable; only read.
    let page = unsafe { GuestPage::from_addr(frame * PAGE_SIZE) };
    let mut v = alloc::vec![0u8; PAGE_SIZE as usize];
    page.read(0, &mut v);
    v
}

/// Writable grants of pages the guest itself may not write (W^X, docs/abi.md §1): every way a
/// backend could write them must be refused with an error, and the page must not change.
fn readonly_pages(r: &mut Report) {
    for (what, frame) in read_only_frames() {
        let before = page_copy(frame);
        let Ok(g) = grant::grant_access(frame, DOMID_BACKEND, false) else {
            r.check(
                "readonly",
                false,
                format_args!("grant_access of {what} failed"),
            );
            continue;
        };
        let src = PageBox::new();
        src.fill(0, 4096, 0x33);
        let st = copy1(copy_op(
            copy_frame(src.frame(), 0),
            false,
            copy_gref(g, 0),
            true,
            64,
        ));
        r.status(
            &alloc::format!("readonly copy into a writable grant of {what}"),
            st,
            gntst::PERMISSION_DENIED,
        );
        let st = copy1(copy_op(
            copy_frame(src.frame(), 0),
            false,
            copy_frame(frame, 0),
            false,
            64,
        ));
        r.status(
            &alloc::format!("readonly copy into the frame of {what}"),
            st,
            gntst::PERMISSION_DENIED,
        );
        if let Some(mut lb) = loopback(r, "readonly loopback") {
            let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, g.0, 0, 64, 0x22));
            r.check(
                &alloc::format!("readonly loopback FILL on a writable grant of {what}"),
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
            disconnect(r, "readonly", lb);
        }
        if let Some((index, _)) = device::find(kind::LOOPBACK) {
            let got = Ret::of(device::connect(index, &[g]));
            r.ret(
                &alloc::format!("readonly connect a ring in {what}"),
                got,
                Ret::err(Errno::EPERM),
            );
            if got == OK {
                let _ = device::disconnect(index);
            }
        }
        r.check(
            &alloc::format!("readonly {what} unchanged"),
            page_copy(frame) == before,
            format_args!("contents"),
        );
        r.check(
            &alloc::format!("readonly {what} grant released"),
            grant::end_access(g).is_ok(),
            format_args!("end_access"),
        );
    }
    // The loopback ring page through a second, writable reference: not a data page.
    if let Some(mut lb) = loopback(r, "readonly loopback") {
        let ring_frame = lb.ring().page().frame();
        if let Ok(g) = grant::grant_access(ring_frame, DOMID_BACKEND, false) {
            let got = one(&mut lb, request(1, LOOPBACK_OP_FILL, g.0, 0, 16, 0xff));
            r.check(
                "readonly loopback FILL on the ring page itself",
                got == Some((LOOPBACK_STATUS_ERROR, 0)),
                format_args!("response {got:?}, want status -1"),
            );
            let got = one(&mut lb, request(2, LOOPBACK_OP_ECHO, 0, 0, 0, 9));
            r.check(
                "readonly loopback still works",
                got == Some((LOOPBACK_STATUS_OK, 9)),
                format_args!("response {got:?}"),
            );
            let _ = grant::end_access(g);
        }
        disconnect(r, "readonly", lb);
    }
}

fn end_mapped(r: &mut Report) {
    let Some(mut lb) = loopback(r, "end-mapped") else {
        return;
    };
    let g = lb.ring_gref();
    let before = grant::entry(g).map(|e| e.flags);
    let got = grant::end_access(g);
    r.check(
        "end-mapped end_access while the backend maps the ring",
        got == Err(GrantError::Busy) && grant::entry(g).map(|e| e.flags) == before,
        format_args!("{got:?}, flags {before:?} unchanged"),
    );
    // Misbehave: clear the entry under the mapping, ignoring GTF_writing, and point it elsewhere.
    let _ = grant::set_entry(g, 0x10, DOMID_GUEST, 0);
    let got = one(&mut lb, request(1, LOOPBACK_OP_ECHO, 0, 0, 0, 77));
    r.check(
        "end-mapped forced revoke under the mapping",
        true,
        format_args!(
            "{}",
            match got {
                Some((0, 77)) => "the established mapping keeps serving",
                Some(_) => "the backend answers wrongly",
                None => "the backend stopped answering",
            }
        ),
    );
    let res = device::disconnect(lb.index());
    r.ret(
        "end-mapped disconnect after forced revoke",
        Ret::of(res),
        OK,
    );
    let flags = grant::entry(g).map(|e| e.flags);
    r.check(
        "end-mapped disconnect clears only the in-use bit",
        flags == Some(0),
        format_args!("flags {flags:?}"),
    );
    // Reconnecting with the scribbled entry must be refused.
    let got = Ret::of(device::connect(lb.index(), &[g]));
    r.ret(
        "end-mapped reconnect with the revoked entry",
        got,
        Ret::err(Errno::EPERM),
    );
    if got == OK {
        let _ = device::disconnect(lb.index());
    }
    evtchn::mask(lb.port());
    let _ = grant::end_access(g);
    // Disconnected and revoked by hand already; leak the ring page rather than tear down twice.
    core::mem::forget(lb);
}

// ---------------------------------------------------------------------------------------------
// Event channels.

fn evtchn_raw<T>(cmd: u64, arg: &mut T) -> Ret {
    // SAFETY: `arg` is a structure this function's caller owns; the VMM writes at most the
    // structure of `cmd`, and every caller passes the matching (or a larger) structure.
    unsafe { raw(Hypercall::EVENT_CHANNEL_OP, cmd, (arg as *mut T) as u64, 0) }
}

fn ports(r: &mut Report) {
    let a = evtchn::alloc_unbound(DOMID_SELF).unwrap_or(Port(0));
    r.ret(
        "ports send on unbound port (dropped)",
        Ret::of(evtchn::send(a)),
        OK,
    );
    evtchn::notify(a);
    r.check(
        "ports notify on unbound port",
        true,
        format_args!("ignored"),
    );
    let _ = evtchn::close(a);
    r.ret(
        "ports send on closed port",
        Ret::of(evtchn::send(a)),
        EINVAL,
    );
    evtchn::notify(a);
    r.ret(
        "ports unmask closed port",
        Ret::of(evtchn::unmask(a)),
        EINVAL,
    );
    r.ret("ports close closed port", Ret::of(evtchn::close(a)), EINVAL);
    for (what, port) in [
        ("0", 0u32),
        ("4095 (never allocated)", NR_PORTS - 1),
        ("4096", NR_PORTS),
        ("0xffffffff", u32::MAX),
    ] {
        r.ret(
            &alloc::format!("ports send port {what}"),
            Ret::of(evtchn::send(Port(port))),
            EINVAL,
        );
        r.ret(
            &alloc::format!("ports unmask port {what}"),
            Ret::of(evtchn::unmask(Port(port))),
            EINVAL,
        );
        r.ret(
            &alloc::format!("ports close port {what}"),
            Ret::of(evtchn::close(Port(port))),
            EINVAL,
        );
        let got = evtchn::status(Port(port));
        // A port inside the port space that is not in use is simply closed.
        let want = if port != 0 && port < NR_PORTS {
            Ok(evtchn::PortStatus::Closed)
        } else {
            Err(Errno::EINVAL)
        };
        r.check(
            &alloc::format!("ports status port {what}"),
            got == want,
            format_args!("got {got:?}, want {want:?}"),
        );
        evtchn::notify(Port(port));
    }
    // The doorbell with a port number wider than 32 bits.
    // SAFETY: the doorbell takes no pointer.
    unsafe { hypercall5(Hypercall::EVTCHN_NOTIFY, 1 << 40, 0, 0, 0, 0) };
    // SAFETY: as above.
    unsafe { hypercall5(Hypercall::EVTCHN_NOTIFY, u64::MAX, 0, 0, 0, 0) };
    r.check(
        "ports doorbell with 64-bit garbage",
        true,
        format_args!("ignored"),
    );

    r.ret(
        "ports bind_interdomain to a free port",
        Ret::of(evtchn::bind_interdomain(DOMID_SELF, Port(3000)).map(drop)),
        EINVAL,
    );
    let mut b = BindInterdomain {
        remote_dom: 5,
        remote_port: 1,
        ..Default::default()
    };
    r.ret(
        "ports bind_interdomain remote_dom 5",
        evtchn_raw(EVTCHNOP_BIND_INTERDOMAIN, &mut b),
        EINVAL,
    );
    let mut b = BindInterdomain {
        remote_dom: DOMID_BACKEND,
        remote_port: 1,
        ..Default::default()
    };
    r.ret(
        "ports bind_interdomain to a backend",
        evtchn_raw(EVTCHNOP_BIND_INTERDOMAIN, &mut b),
        EINVAL,
    );
    if let Some(cp) = console::port() {
        r.ret(
            "ports bind_interdomain to the console port",
            Ret::of(evtchn::bind_interdomain(DOMID_SELF, cp).map(drop)),
            EINVAL,
        );
        r.ret(
            "ports close the console port",
            Ret::of(evtchn::close(cp)),
            EINVAL,
        );
        r.ret(
            "ports EVTCHNOP_send on the console port",
            Ret::of(evtchn::send(cp)),
            OK,
        );
    }
    if let Some((_, d)) = device::find(kind::LOOPBACK) {
        r.ret(
            "ports close a device port",
            Ret::of(evtchn::close(Port(d.evtchn))),
            EINVAL,
        );
        r.ret(
            "ports send on an unconnected device port",
            Ret::of(evtchn::send(Port(d.evtchn))),
            OK,
        );
    }
    let mut a = AllocUnbound {
        dom: 5,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    r.ret(
        "ports alloc_unbound dom 5",
        evtchn_raw(EVTCHNOP_ALLOC_UNBOUND, &mut a),
        EINVAL,
    );
    let mut a = AllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_BACKEND,
        port: 0,
    };
    r.ret(
        "ports alloc_unbound for a backend",
        evtchn_raw(EVTCHNOP_ALLOC_UNBOUND, &mut a),
        EINVAL,
    );
    let mut v = BindVirq {
        virq: virq::TIMER,
        vcpu: 1,
        port: 0,
    };
    r.ret(
        "ports bind_virq vcpu 1",
        evtchn_raw(EVTCHNOP_BIND_VIRQ, &mut v),
        EINVAL,
    );
    let mut v = BindVirq {
        virq: u32::MAX,
        vcpu: 0,
        port: 0,
    };
    r.ret(
        "ports bind_virq 0xffffffff",
        evtchn_raw(EVTCHNOP_BIND_VIRQ, &mut v),
        EINVAL,
    );
    let mut s = Status {
        dom: 5,
        port: 1,
        ..Default::default()
    };
    r.ret(
        "ports status of dom 5",
        evtchn_raw(EVTCHNOP_STATUS, &mut s),
        EINVAL,
    );
    let mut p = PortArg { port: 1 };
    r.ret(
        "ports unknown EVTCHNOP 77",
        evtchn_raw(77, &mut p),
        Ret::err(Errno::ENOSYS),
    );
    r.ret(
        "ports EVTCHNOP_reset (10) unsupported",
        evtchn_raw(10, &mut p),
        Ret::err(Errno::ENOSYS),
    );

    // Exhaust the port space, then give everything back.
    let mut taken = Vec::new();
    let last = loop {
        match evtchn::alloc_unbound(DOMID_SELF) {
            Ok(p) if taken.len() < NR_PORTS as usize => taken.push(p),
            Ok(p) => {
                taken.push(p);
                break Ret(0xdead);
            }
            Err(e) => break Ret::err(e),
        }
    };
    r.check(
        "ports exhausting the port space",
        last == Ret::err(Errno::ENOSPC) && taken.iter().all(|&p| p.0 != 0 && p.0 < NR_PORTS),
        format_args!("{} ports, then {last}", taken.len()),
    );
    let closed = taken.iter().filter(|&&p| evtchn::close(p).is_ok()).count();
    r.check(
        "ports closing them all",
        closed == taken.len(),
        format_args!("{closed} closed"),
    );
    let again = evtchn::alloc_unbound(DOMID_SELF);
    r.check(
        "ports allocation works again",
        again.is_ok(),
        format_args!("{again:?}"),
    );
    if let Ok(p) = again {
        let _ = evtchn::close(p);
    }
    // Binding a port to itself.
    if let Ok(p) = evtchn::alloc_unbound(DOMID_SELF) {
        let got = evtchn::bind_interdomain(DOMID_SELF, p);
        let st = evtchn::status(p);
        r.check(
            "ports bind a port's peer twice",
            got.is_ok() && evtchn::bind_interdomain(DOMID_SELF, p).is_err(),
            format_args!("first {got:?}, status {st:?}"),
        );
        if let Ok(q) = got {
            let _ = evtchn::close(q);
        }
        let _ = evtchn::close(p);
    }
}

// ---------------------------------------------------------------------------------------------
// Lengths.

fn lengths(r: &mut Report) {
    let io = Hypercall::CONSOLE_IO;
    let end = ram_end();
    // SAFETY: CONSOLEIO_write only reads; the range runs past the end of RAM.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, end - 100) };
    r.ret(
        "lengths console_io write count u64::MAX near the end of RAM",
        got,
        EFAULT,
    );
    // SAFETY: as above; the address wraps.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, u64::MAX - 7) };
    r.ret(
        "lengths console_io write count u64::MAX at u64::MAX-7",
        got,
        EFAULT,
    );
    // 16 KiB of our own: the VMM clamps the count and writes one line of dots.
    let mut line = alloc::vec![b' '; 16 * 1024];
    let label = b"hostile: a 16 KiB console_io line:";
    line[..label.len()].copy_from_slice(label);
    line[16 * 1024 - 1] = b'\n';
    console::flush();
    // SAFETY: CONSOLEIO_write only reads `line`, which we own.
    let got = unsafe { raw(io, CONSOLEIO_WRITE, u64::MAX, line.as_ptr() as u64) };
    r.ret(
        "lengths console_io write count u64::MAX clamps to 16 KiB",
        got,
        Ret(16 * 1024),
    );
    // SAFETY: a read into the last 8 bytes of RAM with a huge count: the range leaves RAM.
    let got = unsafe { raw(io, CONSOLEIO_READ, u64::MAX, end - 8) };
    r.check(
        "lengths console_io read count u64::MAX",
        got == EFAULT || got == OK,
        format_args!("got {got} (-EFAULT, or 0: no input over console_io)"),
    );

    let page = PageBox::new();
    let dst = PageBox::new();
    if let Ok(g) = grant::grant_access(page.frame(), DOMID_BACKEND, false) {
        for (what, off, len) in [
            ("len 4097", 0u16, 4097u16),
            ("len 65535", 0, 0xffff),
            ("offset 65535", 0xffff, 1),
            ("offset 4095 len 2", 4095, 2),
        ] {
            let st = copy1(copy_op(
                copy_gref(g, off),
                true,
                copy_frame(dst.frame(), 0),
                false,
                len,
            ));
            r.status(
                &alloc::format!("lengths copy {what}"),
                st,
                gntst::BAD_COPY_ARG,
            );
        }
        let st = copy1(copy_op(
            copy_gref(g, 4095),
            true,
            copy_frame(dst.frame(), 0),
            false,
            1,
        ));
        r.status("lengths copy offset 4095 len 1 is fine", st, gntst::OKAY);
        let st = copy1(copy_op(
            copy_gref(g, 4096),
            true,
            copy_frame(dst.frame(), 0),
            false,
            0,
        ));
        r.status("lengths copy offset 4096 len 0 is fine", st, gntst::OKAY);
        if let Some(mut lb) = loopback(r, "lengths loopback") {
            for (id, (what, off, len)) in [
                ("len 0xffffffff", 0u32, u32::MAX),
                ("offset 0xffffffff len 2 (wraps)", u32::MAX, 2),
                ("offset 4096 len 1", 4096, 1),
                ("offset 0x80000000 len 0x80000000", 0x8000_0000, 0x8000_0000),
            ]
            .into_iter()
            .enumerate()
            {
                for op in [LOOPBACK_OP_SUM, LOOPBACK_OP_FILL] {
                    let got = one(&mut lb, request(id as u64, op, g.0, off, len, 0x33));
                    let name = if op == LOOPBACK_OP_SUM { "SUM" } else { "FILL" };
                    r.check(
                        &alloc::format!("lengths loopback {name} {what}"),
                        got == Some((LOOPBACK_STATUS_ERROR, 0)),
                        format_args!("response {got:?}, want status -1"),
                    );
                }
            }
            let got = one(&mut lb, request(50, LOOPBACK_OP_SUM, g.0, 4096, 0, 0));
            r.check(
                "lengths loopback SUM of 0 bytes at the page end",
                got == Some((LOOPBACK_STATUS_OK, 0)),
                format_args!("response {got:?}"),
            );
            disconnect(r, "lengths", lb);
        }
        r.check(
            "lengths grant page untouched",
            page.to_array().iter().all(|&b| b == 0),
            format_args!("contents"),
        );
        let _ = grant::end_access(g);
    }
    // Batch counts.
    let mut ops = [copy_op(
        copy_frame(dst.frame(), 0),
        false,
        copy_frame(dst.frame(), 0),
        false,
        1,
    )];
    let addr = ops.as_mut_ptr() as u64;
    // SAFETY: refused before anything is copied (count too large).
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, u64::MAX) };
    r.check(
        "lengths GNTTABOP_copy count u64::MAX",
        got == Ret::err(Errno::E2BIG) || got == EFAULT,
        format_args!("got {got}"),
    );
    // SAFETY: as above.
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, 65) };
    r.ret(
        "lengths GNTTABOP_copy count 65",
        got,
        Ret::err(Errno::E2BIG),
    );
    // SAFETY: count 0 copies nothing.
    let got = unsafe { raw(Hypercall::GRANT_TABLE_OP, GNTTABOP_COPY, addr, 0) };
    r.ret("lengths GNTTABOP_copy count 0", got, OK);
    let mut mc = [MulticallEntry::default(); 1];
    // SAFETY: refused before anything runs.
    let got = unsafe { raw(Hypercall::MULTICALL, mc.as_mut_ptr() as u64, u64::MAX, 0) };
    r.ret(
        "lengths multicall count u64::MAX",
        got,
        Ret::err(Errno::E2BIG),
    );
    let mut st = SetupTable {
        dom: DOMID_SELF,
        nr_frames: u32::MAX,
        ..Default::default()
    };
    let mut frames = [0u64; 4];
    st.frame_list = frames.as_mut_ptr() as u64;
    // SAFETY: the VMM writes `st` and at most the table's frames into `frames`... or refuses.
    let got = unsafe {
        raw(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_SETUP_TABLE,
            (&raw mut st) as u64,
            1,
        )
    };
    r.check(
        "lengths setup_table nr_frames u32::MAX",
        got == OK && st.status == gntst::GENERAL_ERROR,
        format_args!("got {got}, status {}", st.status),
    );
    for count in [0u64, 2, u64::MAX] {
        let mut st = SetupTable {
            dom: DOMID_SELF,
            nr_frames: 1,
            ..Default::default()
        };
        st.frame_list = frames.as_mut_ptr() as u64;
        // SAFETY: as above; `st` is a single structure, so a count > 1 must not be honoured.
        let got = unsafe {
            raw(
                Hypercall::GRANT_TABLE_OP,
                GNTTABOP_SETUP_TABLE,
                (&raw mut st) as u64,
                count,
            )
        };
        r.ret(
            &alloc::format!("lengths setup_table count {count} is refused"),
            got,
            EINVAL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Pointers.

fn pointers(r: &mut Report) {
    let end = ram_end();
    let bad = [
        ("RAM end", end),
        ("RAM end - 2", end - 2),
        ("u64::MAX-7", u64::MAX - 7),
    ];
    let ev = Hypercall::EVENT_CHANNEL_OP;
    let gt = Hypercall::GRANT_TABLE_OP;
    let calls: [(&str, Hypercall, u64, u64); 16] = [
        (
            "console_io write",
            Hypercall::CONSOLE_IO,
            CONSOLEIO_WRITE,
            16,
        ),
        ("console_io read", Hypercall::CONSOLE_IO, CONSOLEIO_READ, 16),
        (
            "xen_version extraversion",
            Hypercall::XEN_VERSION,
            XENVER_EXTRAVERSION,
            0,
        ),
        (
            "xen_version get_features",
            Hypercall::XEN_VERSION,
            XENVER_GET_FEATURES,
            0,
        ),
        (
            "sched_op shutdown",
            Hypercall::SCHED_OP,
            SCHEDOP_SHUTDOWN,
            0,
        ),
        ("sched_op fault", Hypercall::SCHED_OP, SCHEDOP_FAULT, 0),
        (
            "event_channel_op alloc_unbound",
            ev,
            EVTCHNOP_ALLOC_UNBOUND,
            0,
        ),
        (
            "event_channel_op bind_interdomain",
            ev,
            EVTCHNOP_BIND_INTERDOMAIN,
            0,
        ),
        ("event_channel_op bind_virq", ev, EVTCHNOP_BIND_VIRQ, 0),
        ("event_channel_op close", ev, EVTCHNOP_CLOSE, 0),
        ("event_channel_op send", ev, EVTCHNOP_SEND, 0),
        ("event_channel_op status", ev, EVTCHNOP_STATUS, 0),
        ("event_channel_op unmask", ev, EVTCHNOP_UNMASK, 0),
        ("grant_table_op setup_table", gt, GNTTABOP_SETUP_TABLE, 1),
        ("grant_table_op copy", gt, GNTTABOP_COPY, 1),
        ("grant_table_op query_size", gt, GNTTABOP_QUERY_SIZE, 1),
    ];
    for (name, nr, cmd, a3) in calls {
        for (what, gpa) in bad {
            // `xen_version` and `console_io` take the pointer in the second or third argument.
            let args = match nr {
                Hypercall::CONSOLE_IO => (cmd, a3, gpa),
                Hypercall::GRANT_TABLE_OP => (cmd, gpa, a3),
                _ => (cmd, gpa, 0),
            };
            // SAFETY: every pointer lies outside guest RAM (or straddles its end).
            let got = unsafe { raw(nr, args.0, args.1, args.2) };
            r.ret(&alloc::format!("pointers {name} at {what}"), got, EFAULT);
        }
    }
    for (what, gpa) in bad {
        // SAFETY: outside guest RAM.
        let got = unsafe { raw(Hypercall::MULTICALL, gpa, 1, 0) };
        r.ret(&alloc::format!("pointers multicall at {what}"), got, EFAULT);
        // SAFETY: outside guest RAM.
        let got = unsafe { raw(Hypercall::DEVICE_OP, DEVOP_CONNECT, gpa, 0) };
        r.ret(
            &alloc::format!("pointers device_op connect at {what}"),
            got,
            EFAULT,
        );
    }
    // Pointers inside structures.
    let mut st = SetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        frame_list: end,
        ..Default::default()
    };
    // SAFETY: the frame list lies outside guest RAM; `st` is ours.
    let got = unsafe {
        raw(
            Hypercall::GRANT_TABLE_OP,
            GNTTABOP_SETUP_TABLE,
            (&raw mut st) as u64,
            1,
        )
    };
    r.check(
        "pointers setup_table frame_list at RAM end",
        got == EFAULT || (got == OK && st.status != gntst::OKAY),
        format_args!("got {got}, status {}", st.status),
    );
    let mut entries = [MulticallEntry {
        op: u64::from(Hypercall::EVENT_CHANNEL_OP.0),
        result: 0,
        args: [EVTCHNOP_STATUS, end, 0, 0, 0, 0],
    }; 2];
    entries[1].args = [EVTCHNOP_SEND, u64::MAX - 3, 0, 0, 0, 0];
    // SAFETY: the entries name memory outside guest RAM.
    let got = unsafe { hypercall::multicall(&mut entries) };
    r.check(
        "pointers multicall entries with bad pointers",
        got == Ok(0) && entries.iter().all(|e| Ret(e.result) == EFAULT),
        format_args!(
            "{got:?}, results {} {}",
            Ret(entries[0].result),
            Ret(entries[1].result)
        ),
    );

    // An entry array in read-only data: its results cannot be written, so no entry may run.
    // The entry would print start-info's magic (at the fixed GPA 0x1000), which the test then
    // must not find in the output.
    // SAFETY: the VMM only reads the array; it must refuse to write the results.
    let got = unsafe {
        raw(
            Hypercall::MULTICALL,
            RODATA_BATCH.as_ptr() as u64,
            RODATA_BATCH.len() as u64,
            0,
        )
    };
    r.check(
        "pointers multicall entries in read-only data",
        got == EFAULT && RODATA_BATCH[0].result == 0,
        format_args!("got {got}, want -EFAULT with no entry run"),
    );

    // GPA 0: the null page is unmapped in the guest, so the VMM refuses to write it too.
    // SAFETY: XENVER_extraversion would write 16 bytes at GPA 0, the null guard page, which
    // nothing in the guest uses (it is unmapped in the guest's page tables).
    let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, 0, 0) };
    r.ret(
        "pointers xen_version extraversion into GPA 0 (null page)",
        got,
        EFAULT,
    );
    // SAFETY: XENVER_get_features would read and write 8 bytes at GPA 0, as above.
    let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, 0, 0) };
    r.ret(
        "pointers xen_version get_features at GPA 0 (null page)",
        got,
        EFAULT,
    );
    // SAFETY: EVTCHNOP_status reads GPA 0 (zeros: port 0) and is refused.
    let got = unsafe { raw(ev, EVTCHNOP_STATUS, 0, 0) };
    r.ret(
        "pointers event_channel_op status at GPA 0 (port 0)",
        got,
        EINVAL,
    );

    // Output buffers in pages the guest may only read.
    let si = start_info();
    let probe_si = 0x1000 + 4000; // start-info bytes past the structure
    let probe_hc = si.hypercall_page + 99 * STUB_SIZE as u64 + 16; // padding of unused stub 99
    for (what, gpa) in [("start-info", probe_si), ("the hypercall page", probe_hc)] {
        let before = read16(gpa);
        // SAFETY: the VMM either refuses, or writes 16 bytes into bytes of a boot page that
        // the guest never uses (past the start-info structure; the `int3` padding of a stub the
        // guest never calls).
        let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_EXTRAVERSION, gpa, 0) };
        let changed = read16(gpa) != before;
        r.check(
            &alloc::format!("pointers xen_version output into {what} (read-only to the guest)"),
            got == EFAULT && !changed,
            format_args!(
                "got {got}, page {}; want -EFAULT: the guest may not write it",
                if changed { "MODIFIED" } else { "unchanged" }
            ),
        );
        let before = read16(gpa + 8);
        // SAFETY: as above, 8 bytes (`xen_feature_info`) further on.
        let got = unsafe { raw(Hypercall::XEN_VERSION, XENVER_GET_FEATURES, gpa + 8, 0) };
        let changed = read16(gpa + 8) != before;
        r.check(
            &alloc::format!("pointers xen_version get_features into {what}"),
            got == EFAULT && !changed,
            format_args!(
                "got {got}, page {}; want -EFAULT",
                if changed { "MODIFIED" } else { "unchanged" }
            ),
        );
    }
}

fn read16(gpa: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let page = gpa & !(PAGE_SIZE - 1);
    // SAFETY: boot pages (start-info, hypercall page) are mapped readable for the guest's life;
    // only `read` is used on them.
    let p = unsafe { GuestPage::from_addr(page) };
    p.read((gpa - page) as usize, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Devices.

fn devices(r: &mut Report) {
    let dop = Hypercall::DEVICE_OP;
    r.ret(
        "devices connect index 7 (no such device)",
        Ret::of(device::connect(7, &[grant::GrantRef(1)])),
        Ret::err(Errno::ENOENT),
    );
    r.ret(
        "devices connect index 0xffffffff",
        Ret::of(device::connect(u32::MAX, &[grant::GrantRef(1)])),
        Ret::err(Errno::ENOENT),
    );
    // SAFETY: DEVOP_disconnect takes an index; 99 names no device.
    let got = unsafe { raw(dop, DEVOP_DISCONNECT, 99, 0) };
    r.ret("devices disconnect index 99", got, Ret::err(Errno::ENOENT));
    // SAFETY: unknown command: nothing is accessed.
    let got = unsafe { raw(dop, 5, 0, 0) };
    r.ret("devices unknown DEVOP 5", got, Ret::err(Errno::ENOSYS));
    let Some((index, _)) = device::find(kind::LOOPBACK) else {
        println!("skip devices loopback: no loopback device (run with --loopback)");
        return;
    };
    // SAFETY: DEVOP_disconnect takes an index.
    let got = unsafe { raw(dop, DEVOP_DISCONNECT, u64::from(index), 0) };
    r.check(
        "devices disconnect a device that is not connected",
        got == OK || got == EINVAL || got == Ret::err(Errno::ENOENT),
        format_args!("got {got}"),
    );
    let ring = PageBox::new();
    let Ok(good) = grant::grant_access(ring.frame(), DOMID_BACKEND, false) else {
        return;
    };
    for (what, n) in [("0", 0u32), ("2", 2), ("5", 5), ("0xffffffff", u32::MAX)] {
        let arg = Connect {
            device: index,
            nr_rings: n,
            rings: [good.0; 4],
        };
        r.ret(
            &alloc::format!("devices connect with nr_rings {what}"),
            Ret::of(device::connect_raw(&arg)),
            EINVAL,
        );
    }
    let mut bogus = Vec::new();
    let reserve = |frame: u32, domid: u16, flags: u16| {
        let g = grant::reserve().ok()?;
        let _ = grant::set_entry(g, frame, domid, flags);
        Some(g.0)
    };
    let frame = ring.frame() as u32;
    let beyond = (ram_end() / PAGE_SIZE + 1) as u32;
    for (what, g) in [
        ("gref 0", Some(0)),
        ("gref outside the table", Some(grant::nr_entries() + 3)),
        (
            "an entry for DOMID_GUEST",
            reserve(frame, DOMID_GUEST, gtf::PERMIT_ACCESS),
        ),
        (
            "an entry without permit_access",
            reserve(frame, DOMID_BACKEND, 0),
        ),
        (
            "a read-only entry",
            reserve(frame, DOMID_BACKEND, gtf::PERMIT_ACCESS | gtf::READONLY),
        ),
        (
            "a frame below 1 MiB",
            reserve(0x5, DOMID_BACKEND, gtf::PERMIT_ACCESS),
        ),
        (
            "a frame beyond RAM",
            reserve(beyond, DOMID_BACKEND, gtf::PERMIT_ACCESS),
        ),
        (
            "the grant table's own frame",
            reserve(
                (start_info().grant_table / PAGE_SIZE) as u32,
                DOMID_BACKEND,
                gtf::PERMIT_ACCESS,
            ),
        ),
    ] {
        let Some(g) = g else { continue };
        let got = Ret::of(device::connect(index, &[grant::GrantRef(g)]));
        r.ret(
            &alloc::format!("devices connect with {what}"),
            got,
            Ret::err(Errno::EPERM),
        );
        if got == OK {
            let _ = device::disconnect(index);
        }
        if g != 0 && g < grant::nr_entries() {
            bogus.push(g);
        }
    }
    let flags = grant::entry(good).map(|e| e.flags);
    r.check(
        "devices refused connects leave the good grant alone",
        flags == Some(gtf::PERMIT_ACCESS),
        format_args!("flags {flags:?}"),
    );
    for g in bogus {
        let _ = grant::end_access(grant::GrantRef(g));
    }
    let _ = grant::end_access(good);
    drop(ring);
    // Connect twice.
    if let Some(lb) = loopback(r, "devices twice") {
        let ring2 = PageBox::new();
        if let Ok(g2) = grant::grant_access(ring2.frame(), DOMID_BACKEND, false) {
            let got = Ret::of(device::connect(lb.index(), &[g2]));
            r.ret("devices connect twice", got, Ret::err(Errno::EBUSY));
            let flags = grant::entry(g2).map(|e| e.flags);
            r.check(
                "devices refused second ring not mapped",
                flags == Some(gtf::PERMIT_ACCESS),
                format_args!("flags {flags:?}"),
            );
            let _ = grant::end_access(g2);
        }
        let got = Ret::of(device::connect(lb.index(), &[lb.ring_gref()]));
        r.ret(
            "devices connect twice with the same ring",
            got,
            Ret::err(Errno::EBUSY),
        );
        disconnect(r, "devices twice", lb);
    }
}

fn ring_events(r: &mut Report) {
    let Some(mut lb) = loopback(r, "ring-events") else {
        return;
    };
    let got = one(&mut lb, request(1, LOOPBACK_OP_ECHO, 0, 0, 0, 1));
    r.check(
        "ring-events device works",
        got == Some((0, 1)),
        format_args!("{got:?}"),
    );
    let page = lb.ring().page();
    page.store_u32(ring_offset::REQ_EVENT, 0xdead_beef);
    page.store_u32(ring_offset::RSP_EVENT, 0x1234_5678);
    page.write(16, &[0xff; 48]);
    lb.kick();
    // Responses may now go unannounced (rsp_event is garbage): poll with a deadline.
    let _ = lb.submit(&request(2, LOOPBACK_OP_ECHO, 0, 0, 0, 2));
    lb.kick();
    let deadline = time::now() + Duration::from_secs(1);
    let mut got = None;
    while got.is_none() && time::now() < deadline {
        got = lb.poll_response();
        timer::sleep(Duration::from_millis(1));
    }
    let got = got.map(|r| (r.id, r.status, r.value));
    r.check(
        "ring-events scribbled event indices: the backend still answers",
        got == Some((2, 0, 2)),
        format_args!("{got:?}"),
    );
    disconnect(r, "ring-events", lb);
}

fn timer_huge(r: &mut Report) {
    for (what, t) in [
        ("u64::MAX", u64::MAX),
        ("i64::MAX + 1", 1u64 << 63),
        ("1 (long past)", 1),
    ] {
        let got = Ret::of(hypercall::set_timer(t).map(drop));
        r.ret(&alloc::format!("timer-huge set_timer_op {what}"), got, OK);
    }
    let _ = hypercall::set_timer(0);
    // The SDK's own timer must still work afterwards: a broken one would sleep until one of the
    // absurd deadlines above. The upper bound only tells those apart, even on a loaded host.
    let t0 = time::now();
    timer::sleep(Duration::from_millis(2));
    let slept = t0.elapsed();
    r.check(
        "timer-huge sleep still works",
        slept >= Duration::from_millis(2) && slept < Duration::from_secs(10),
        format_args!("slept {} us", slept.as_micros()),
    );
}

// ---------------------------------------------------------------------------------------------
// Block devices.

/// Sectors at the start of the writable disk that the block cases fill with a known pattern.
const BLK_SCRATCH: u64 = 64;

/// Connects the first writable (or read-only) block device, or says why not.
fn blk_open(r: &mut Report, case: &str, readonly: bool) -> Option<BlockDevice> {
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
fn blk_raw(d: &mut BlockDevice, request: BlkifRequest) -> Option<i16> {
    let id = d.submit_raw(request).ok()?;
    let deadline = time::now() + Duration::from_secs(2);
    d.wait_for_until(id, Some(deadline))
        .ok()
        .map(|done| done.status)
}

fn blk_status_name(s: Option<i16>) -> &'static str {
    match s {
        Some(BLKIF_RSP_OKAY) => "okay",
        Some(BLKIF_RSP_ERROR) => "error",
        Some(BLKIF_RSP_EOPNOTSUPP) => "eopnotsupp",
        Some(_) => "?",
        None => "no response",
    }
}

/// The scratch area's contents and the pages the block cases grant.
struct BlkFixture {
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
        let src_g = grant::grant_access(src.frame(), DOMID_BACKEND, true).ok()?;
        let dst_g = grant::grant_access(dst.frame(), DOMID_BACKEND, false).ok()?;
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
        let released = !grant::in_use(grant::GrantRef(self.src_g))
            && !grant::in_use(grant::GrantRef(self.dst_g));
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
        let _ = grant::end_access(grant::GrantRef(self.src_g));
        let _ = grant::end_access(grant::GrantRef(self.dst_g));
    }
}

/// A read/write/flush request with 11 whole-page segments of `gref`, claiming `nr` of them.
fn blk_nr(op: u8, nr: u8, gref: GrantRef) -> BlkifRequest {
    let mut request = rw_request(op, 0, 0, &[segment(gref, 0, 7); 11]);
    request.nr_segments = nr;
    request
}

fn blk_requests(r: &mut Report) {
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

fn blk_requests_writable(r: &mut Report, d: &mut BlockDevice) {
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
fn blk_index(segments: &[BlkifSegment]) -> Option<(PageBox, GrantRef)> {
    let page = PageBox::new();
    write_indirect_page(&page, segments);
    let g = grant::grant_access(page.frame(), DOMID_BACKEND, true).ok()?;
    Some((page, g.0))
}

/// Indirect requests (`BLKIF_OP_INDIRECT`): each bad one fails alone and changes nothing, and
/// its indirect page is released like the data pages.
fn blk_indirect(r: &mut Report, d: &mut BlockDevice, f: &mut BlkFixture) {
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
        released &=
            !grant::in_use(grant::GrantRef(g)) && grant::end_access(grant::GrantRef(g)).is_ok();
        drop(page);
    }
    r.check(
        "blk-requests indirect: pages released",
        released,
        format_args!("every indirect page was released and revoked"),
    );
}

fn blk_requests_readonly(r: &mut Report, d: &mut BlockDevice) {
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

fn blk_grants(r: &mut Report) {
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
    let n = grant::nr_entries();
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
        if let Ok(g) = grant::grant_access(frame, DOMID_BACKEND, false) {
            f.expect(
                r,
                d,
                &alloc::format!("blk-grants read into a writable grant of {what}"),
                read(g.0, 0, 7),
                BLKIF_RSP_ERROR,
            );
            let _ = grant::end_access(g);
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
        let Ok(g) = grant::reserve() else {
            r.check(
                "blk-grants reserve",
                false,
                format_args!("no free grant entry"),
            );
            break;
        };
        let _ = grant::set_entry(g, frame, domid, flags);
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
        let _ = grant::set_entry(g, 0, 0, 0);
        let _ = grant::end_access(g);
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

// ---------------------------------------------------------------------------------------------
// Fatal cases.

fn ring_overflow() {
    let Ok(mut lb) = Loopback::connect() else {
        println!("hostile: ring-overflow needs the loopback device (run with --loopback)");
        return;
    };
    let page = lb.ring().page();
    let cons = page.load_u32(ring_offset::RSP_PROD);
    page.store_u32(ring_offset::REQ_PROD, cons.wrapping_add(1000));
    lb.kick();
    // Keep the ring granted and connected: the VMM is about to stop the guest.
    core::mem::forget(lb);
}

fn ring_backwards() {
    let Ok(mut lb) = Loopback::connect() else {
        println!("hostile: ring-backwards needs the loopback device (run with --loopback)");
        return;
    };
    for id in 0..10 {
        let _ = lb.submit(&request(id, LOOPBACK_OP_ECHO, 0, 0, 0, id));
        let _ = lb.wait_response_until(time::now() + Duration::from_secs(1));
    }
    let page = lb.ring().page();
    let prod = page.load_u32(ring_offset::REQ_PROD);
    page.store_u32(ring_offset::REQ_PROD, prod.wrapping_sub(3));
    lb.kick();
    core::mem::forget(lb);
}

fn console_overflow() {
    console::flush();
    let Some(port) = console::port() else {
        println!("hostile: console-overflow needs the console ring");
        return;
    };
    // SAFETY: the console page is the VMM's boot page for this purpose; the SDK's console only
    // uses it through atomics and volatile copies too, and the guest is about to be stopped.
    let page = unsafe { GuestPage::from_addr(start_info().console_page) };
    let cons = page.load_u32(console_offset::OUT_CONS);
    page.store_u32(console_offset::OUT_PROD, cons.wrapping_add(5000));
    evtchn::notify(port);
}

/// Sector of the first ring-page image `blk-self-feed` writes (past the scratch sectors).
const SELF_FEED_SECTOR: u64 = 1024;
/// How many images it writes.
const SELF_FEED_IMAGES: u64 = 64;

/// The self-feeding ring: image `k` on the disk is a ring page whose `req_prod` publishes one
/// more request, a read of image `k + 1` into the ring page itself. If the backend accepted the
/// ring page as a data page, one request from the guest would make it serve the rest on its
/// own, long after the guest stopped. It must answer the first read with an error instead.
fn blk_self_feed(r: &mut Report) {
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
    let Ok(ring_g) = grant::grant_access(d.ring().page().frame(), DOMID_BACKEND, false) else {
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
    let released = grant::end_access(ring_g).is_ok();
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

fn blk_ring_overflow() {
    let Ok(mut d) = BlockDevice::open(0) else {
        println!("hostile: blk-ring-overflow needs a block device (run with --disk PATH)");
        return;
    };
    let page = d.ring().page();
    let cons = page.load_u32(ring_offset::RSP_PROD);
    page.store_u32(ring_offset::REQ_PROD, cons.wrapping_add(1000));
    d.kick();
    // Keep the ring granted and connected: the VMM is about to stop the guest.
    core::mem::forget(d);
}
