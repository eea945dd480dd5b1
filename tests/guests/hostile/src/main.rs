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
//! | `suspend-in-flight` | loopback: queues 48 requests (echoes, and SUMs over a granted page), rings the doorbell and suspends at once (`SHUTDOWN_suspend`); the suspend must return, every response that arrives must be right (a note if not all arrive within 2 s), and then the device must disconnect and the page's grant be revocable |
//! | `suspend-bad-ring` | loopback: writes a `req_prod` 2^30 past the ring into the ring page (no doorbell) and suspends; the suspend must return, the device disconnect, and a new connection answer |
//! | `suspend-storm` | 10,000 suspends in a row as fast as it can; each must return `Restored`, `Cancelled` or `NotAvailable` (counted by kind) |
//!
//! The suspend cases (see `suspend.rs`) work with and without `parapet run --snapshot FILE`:
//! without it each suspend returns `NotAvailable`; with it the first suspend ends the VMM
//! (status 0, the snapshot written) and `parapet restore FILE` continues the case where it was.
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
//! The shutdown cases (see `shutdown.rs`) are separate words too: each prints a line when it is
//! ready and then waits for `SIGTERM` to the VMM (docs/abi.md §7.5; tests/shutdown.rs).
//!
//! | word | what the guest does | what the VMM must do |
//! |---|---|---|
//! | `shutdown-ignore` | listens (`shutdown::listen` twice, and `bind_virq` by hand: `-EEXIST`), prints `hostile: shutdown-ignore: listening on port P`, waits for the request, prints `hostile: shutdown-ignore: request arrived; ignoring it` and sleeps on | ask on the first `SIGTERM`, end at once (143) on the second |
//! | `shutdown-closed` | binds `VIRQ_SHUTDOWN` by hand (`shutdown::listen` must say `AlreadyBound`) and closes the port, twice, prints `hostile: shutdown-closed: bound and closed; nobody listens` and sleeps | end at once (143) on the first `SIGTERM` |
//! | `shutdown-poll` | listens, masks upcalls (`evtchn_upcall_mask`), prints `hostile: shutdown-poll: spinning with upcalls masked` and spins on `shutdown::requested()` without a hypercall; when it sees the request (through the pending bit), prints `hostile: shutdown-poll: request seen without an upcall (N upcalls in all)` and exits 0 | interrupt the spinning vCPU and ask; exit 0 |
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
use guest_sdk::event_channel;
use guest_sdk::grant_table::{self, GrantError, copy_frame, copy_gref, copy_op};
use guest_sdk::hypercall::{self, raw::hypercall5};
use guest_sdk::loopback::{Loopback, LoopbackError};
use guest_sdk::page::{GuestPage, PageBox};
use guest_sdk::start_info::{cmdline, start_info};
use guest_sdk::{console, device, println, time};
use pv_drivers::blkif::{
    discard_request, indirect_request, rw_request, segment, write_indirect_page,
};
use pv_drivers::shared::SharedPage;

guest_sdk::entry!(main);

mod blk;
mod devices;
mod fatal;
mod grants;
mod lengths;
mod net;
mod pointers;
mod ports;
mod shutdown;
mod suspend;
mod timers;

use blk::{blk_grants, blk_requests, blk_self_feed};
use devices::{devices, ring_events};
use fatal::{blk_ring_overflow, console_overflow, ring_backwards, ring_overflow};
use grants::{end_mapped, gref_foreign, gref_range, readonly};
use lengths::lengths;
use pointers::pointers;
use ports::ports;
use suspend::{suspend_bad_ring, suspend_in_flight, suspend_storm};
use timers::timer_huge;

const USAGE: &str = "usage: hostile all|net-tx|net-rx|gref-range|gref-foreign|readonly|end-mapped|ports|lengths|\
                     pointers|devices|ring-events|timer-huge|blk-requests|blk-grants|blk-self-feed|\
                     suspend-in-flight|suspend-bad-ring|suspend-storm  or one fatal case: \
                     net-ring-overflow|net-rx-ring-overflow|ring-overflow|ring-backwards|console-overflow|blk-ring-overflow  \
                     or console-flood  or one shutdown case: shutdown-ignore|shutdown-closed|shutdown-poll";

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
    // Last: under `--snapshot FILE` the first suspend ends the VMM.
    ("suspend-in-flight", suspend_in_flight),
    ("suspend-bad-ring", suspend_bad_ring),
    ("suspend-storm", suspend_storm),
];

/// A case that waits for `SIGTERM` to the VMM; returns the guest's exit code, if it returns.
type ShutdownCase = fn() -> u32;

const SHUTDOWN: &[(&str, ShutdownCase)] = &[
    ("shutdown-ignore", shutdown::ignore),
    ("shutdown-closed", shutdown::closed),
    ("shutdown-poll", shutdown::poll),
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
            && !SHUTDOWN.iter().any(|(n, _)| n == w)
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
    if let Some((_, f)) = SHUTDOWN.iter().find(|(n, _)| words.contains(n)) {
        return f();
    }
    if let Some((name, f)) = FATAL.iter().find(|(n, _)| words.contains(n)) {
        println!("hostile: {name}: the VMM must now stop this guest (status 102)");
        f();
        guest_sdk::timer::sleep(Duration::from_secs(2));
        println!("FAIL {name}: the VMM did not stop the guest");
        return 1;
    }
    // Bind VIRQ_TIMER now, before `ports` exhausts the port space.
    guest_sdk::timer::init();
    let mut r = Report::new();
    for (name, f) in CASES {
        if words.contains(&"all") || words.contains(name) {
            f(&mut r);
        }
    }
    r.summary("hostile")
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

/// The shared harness: `check` prints `ok <case>: <what>` or `FAIL <case>: <what>`.
type Report = guest_harness::Checks;

/// This guest's checks of hypercall results and grant-copy statuses.
trait Expect {
    /// `got` must be `want`.
    fn ret(&mut self, case: &str, got: Ret, want: Ret);
    /// A grant-copy status.
    fn status(&mut self, case: &str, got: Result<i16, Errno>, want: i16);
}

impl Expect for Report {
    fn ret(&mut self, case: &str, got: Ret, want: Ret) {
        self.check(case, got == want, format_args!("got {got}, want {want}"));
    }

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

/// One `GNTTABOP_copy` element's status.
fn copy1(mut op: grant_table::Copy) -> Result<i16, Errno> {
    let mut ops = [op];
    // SAFETY: destinations are pages this guest owns (`PageBox`es or grants of them) or frames
    // the VMM must refuse.
    unsafe { grant_table::grant_copy(&mut ops) }?;
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
