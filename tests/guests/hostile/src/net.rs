//! Hostile requests on the PV network interface (docs/abi.md §10.3), the cases `net-tx` and
//! `net-rx`, and the fatal `net-ring-overflow` and `net-rx-ring-overflow`.
//!
//! The guest connects the first `--net` interface with empty page pools and writes raw
//! requests through the frontend, with its own pages and grants. Every bad request must be
//! answered with its documented status, on its own; then a valid frame must still flow both
//! ways. For that the guest plays 10.77.0.2 and sends ARP requests for 10.77.0.1, which the
//! host side of the TAP device answers — as the integration tests set it up
//! (`ip addr add 10.77.0.1/24 dev tap0`). Without a network interface the cases are skipped
//! with a note.
//!
//! | case | requests | expected |
//! |---|---|---|
//! | `net-tx` | size 0, 1515, 65535; offset 4096, 65535; offset + size past the page; grant 0, 0xffffffff, past the table, for another domain, without `GTF_permit_access`, of a frame below 1 MiB or beyond RAM, revoked; `NETTXF_more_data`, `NETTXF_extra_info` | `NETIF_RSP_ERROR` each |
//! | | a 1-byte frame (valid request, but the TAP device refuses frames shorter than an Ethernet header) | `NETIF_RSP_DROPPED` |
//! | | ARP requests: with `NETTXF_csum_blank` (ignored), at an offset in a read-only grant, and after all the bad ones | `NETIF_RSP_OKAY`, and an ARP reply comes back |
//! | `net-rx` | receive pages: granted read-only, grant 0, 0xffffffff, for another domain, without `GTF_permit_access`, of a frame below 1 MiB; then good pages | `NETIF_RSP_ERROR` for each bad page (in order, when the first frame arrives; the read-only page stays untouched), the frames in the good pages |

use alloc::format;
use alloc::vec::Vec;
use core::time::Duration;

use guest_sdk::abi::event_channel::{DOMID_BACKEND, DOMID_GUEST};
use guest_sdk::abi::grant_table::GrantRef;
use guest_sdk::abi::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO,
    NETTXF_MORE_DATA, NetifTxRequest, NetifTxResponse,
};
use guest_sdk::abi::ring::offset as ring_offset;
use guest_sdk::abi::start_info::PAGE_SIZE;
use guest_sdk::grant_table;
use guest_sdk::net::{Net, NetConfig, NetError};
use guest_sdk::page::PageBox;
use guest_sdk::time::{self, Instant};
use guest_sdk::{println, timer};
use pv_drivers::netif::RxCompletion;
use pv_drivers::shared::SharedPage;

use super::{Report, ram_end};

const GUEST_IP: [u8; 4] = [10, 77, 0, 2];
const HOST_IP: [u8; 4] = [10, 77, 0, 1];
const ARP_LEN: usize = 42;

/// Connects the interface with no pools (raw requests only), or says why not.
fn connect(r: &mut Report, case: &str) -> Option<Net> {
    match Net::connect_with(NetConfig {
        rx_buffers: 0,
        tx_buffers: 0,
    }) {
        Ok(net) => Some(net),
        Err(NetError::NoDevice) => {
            println!("skip {case}: no network interface (run with --net tap=NAME)");
            None
        }
        Err(e) => {
            r.check(case, false, format_args!("connect: {e}"));
            None
        }
    }
}

fn disconnect(r: &mut Report, case: &str, net: Net) {
    if let Err(e) = net.disconnect() {
        r.check(case, false, format_args!("disconnect: {e}"));
    }
}

/// An ARP request "who has 10.77.0.1? tell 10.77.0.2" from `mac`.
fn arp_request(mac: [u8; 6]) -> [u8; ARP_LEN] {
    let mut f = [0u8; ARP_LEN];
    f[0..6].fill(0xff);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&GUEST_IP);
    f[38..42].copy_from_slice(&HOST_IP);
    f
}

/// Whether `frame` is the host's ARP reply to us.
fn is_arp_reply(frame: &[u8], mac: [u8; 6]) -> bool {
    frame.len() >= ARP_LEN
        && frame[0..6] == mac
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == HOST_IP
        && frame[38..42] == GUEST_IP
}

/// A page and its grant (kept until [`Pages::release`]).
struct Pages(Vec<(PageBox, GrantRef)>);

impl Pages {
    /// Grants a fresh page to `domid`; returns its reference.
    fn grant(&mut self, domid: u16, readonly: bool) -> (GrantRef, usize) {
        let page = PageBox::new();
        let gref = grant_table::grant_access(page.frame(), domid, readonly)
            .expect("a free grant entry")
            .0;
        self.0.push((page, gref));
        (gref, self.0.len() - 1)
    }

    fn page(&self, i: usize) -> &PageBox {
        &self.0[i].0
    }

    /// Revokes every grant; pages whose grants the backend still holds are leaked.
    fn release(self, r: &mut Report, case: &str) {
        for (page, gref) in self.0 {
            if let Err(e) = grant_table::end_access(grant_table::GrantRef(gref)) {
                r.check(
                    case,
                    false,
                    format_args!("grant {gref} still held by the backend after its response: {e}"),
                );
                core::mem::forget(page);
            }
        }
    }
}

/// Grant references the backend must refuse, whatever access it asks for: `(what, gref)`.
/// The entries it creates are given back by [`free_bad_grants`].
fn bad_grants(pages: &mut Pages, include_revoked: bool) -> Vec<(&'static str, GrantRef)> {
    let mut bad = Vec::new();
    bad.push(("grant 0 (never granted)", 0));
    bad.push(("grant 0xffffffff", u32::MAX));
    bad.push(("grant past the table", grant_table::nr_entries()));
    let (foreign, _) = pages.grant(DOMID_GUEST, false);
    bad.push(("grant for another domain", foreign));
    let page = PageBox::new();
    let not_permitted = grant_table::reserve().expect("a free grant entry");
    let _ = grant_table::set_entry(not_permitted, page.frame() as u32, DOMID_BACKEND, 0);
    core::mem::forget(page); // owned by the entry until it is freed; a page is cheap
    bad.push(("grant without GTF_permit_access", not_permitted.0));
    let low = grant_table::grant_access(0x10, DOMID_BACKEND, false).expect("a free grant entry");
    bad.push(("grant of a frame below 1 MiB", low.0));
    let beyond = grant_table::grant_access(ram_end() / PAGE_SIZE + 16, DOMID_BACKEND, false)
        .expect("a free grant entry");
    bad.push(("grant of a frame beyond RAM", beyond.0));
    if include_revoked {
        let (revoked, _) = pages.grant(DOMID_BACKEND, true);
        let _ = grant_table::end_access(grant_table::GrantRef(revoked));
        pages.0.pop();
        bad.push(("revoked grant", revoked));
    }
    bad
}

fn free_bad_grants(bad: &[(&str, GrantRef)]) {
    for &(what, gref) in bad {
        if what.contains("without") || what.contains("below") || what.contains("beyond") {
            let _ = grant_table::end_access(grant_table::GrantRef(gref));
        }
    }
}

/// Waits (until `deadline`) for `tx` transmit responses and `rx` receive completions, or a
/// receive completion `stop` accepts.
fn collect(
    net: &mut Net,
    tx: usize,
    rx: usize,
    deadline: Instant,
    mut stop: impl FnMut(&Net, &RxCompletion) -> bool,
) -> (Vec<NetifTxResponse>, Vec<RxCompletion>) {
    let (mut txs, mut rxs) = (Vec::new(), Vec::new());
    let mut stopped = false;
    loop {
        while let Some(t) = net.front().next_tx_response() {
            txs.push(t);
        }
        while let Some(c) = net.front().next_rx() {
            stopped |= stop(net, &c);
            rxs.push(c);
        }
        if (txs.len() >= tx && rxs.len() >= rx) || stopped || time::now() >= deadline {
            return (txs, rxs);
        }
        let front = net.front();
        timer::wait_until(Some(deadline), || front.final_check());
    }
}

fn status_name(s: i16) -> &'static str {
    match s {
        NETIF_RSP_OKAY => "OKAY",
        NETIF_RSP_ERROR => "ERROR",
        NETIF_RSP_DROPPED => "DROPPED",
        _ => "?",
    }
}

fn tx_req(id: u16, gref: GrantRef, offset: u16, size: u16, flags: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
}

/// Posts receive pages `pages[..]` (ids from `first_id`), sends an ARP request from `frame_gref`
/// with id `tx_id`, and checks that the transmit is `OKAY` and an ARP reply arrives in one of
/// the pages. Returns the receive completions seen.
fn arp_round_trip(
    r: &mut Report,
    case: &str,
    net: &mut Net,
    pages: &Pages,
    rx_pages: &[(GrantRef, usize)],
    frame_gref: GrantRef,
    tx_id: u16,
) -> Vec<RxCompletion> {
    for (i, &(gref, _)) in rx_pages.iter().enumerate() {
        net.front()
            .post_rx(200 + i as u16, gref)
            .expect("a free slot");
    }
    net.front()
        .push_tx(&tx_req(tx_id, frame_gref, 0, ARP_LEN as u16, 0))
        .expect("a free slot");
    net.commit();
    let mac = net.mac();
    let deadline = time::now() + Duration::from_secs(3);
    let (txs, rxs) = collect(net, 1, usize::MAX, deadline, |_, c| {
        matches!(c, RxCompletion::Packet(p) if {
            let (_, idx) = rx_pages[usize::from(p.id - 200)];
            let mut f = [0u8; ARP_LEN];
            pages.page(idx).read(p.offset, &mut f);
            is_arp_reply(&f, mac)
        })
    });
    let tx_ok = txs
        .iter()
        .any(|t| t.id == tx_id && t.status == NETIF_RSP_OKAY);
    r.check(
        &format!("{case} a valid frame after the bad requests is sent"),
        tx_ok,
        format_args!("responses {txs:?}"),
    );
    let got_reply = rxs.iter().any(|c| match c {
        RxCompletion::Packet(p) if p.id >= 200 && usize::from(p.id - 200) < rx_pages.len() => {
            let (_, idx) = rx_pages[usize::from(p.id - 200)];
            let mut f = [0u8; ARP_LEN];
            pages.page(idx).read(p.offset, &mut f);
            is_arp_reply(&f, mac)
        }
        _ => false,
    });
    r.check(
        &format!("{case} the host's ARP reply arrives in a posted page"),
        got_reply,
        format_args!(
            "{} completions {rxs:?} (the host side must be 10.77.0.1 on the TAP device)",
            rxs.len()
        ),
    );
    rxs
}

pub(super) fn net_tx(r: &mut Report) {
    let case = "net-tx";
    let Some(mut net) = connect(r, case) else {
        return;
    };
    let mac = net.mac();
    let mut pages = Pages(Vec::new());
    let (frame_gref, frame_idx) = pages.grant(DOMID_BACKEND, true);
    let page = pages.page(frame_idx);
    page.write(0, &arp_request(mac));
    page.write(2000, &arp_request(mac));
    let bad = bad_grants(&mut pages, true);

    let mut requests: Vec<(&str, NetifTxRequest, i16)> = Vec::new();
    let mut add = |what: &'static str, gref, offset, size, flags, want| {
        let id = requests.len() as u16 + 1;
        requests.push((what, tx_req(id, gref, offset, size, flags), want));
    };
    let g = frame_gref;
    add("size 0", g, 0, 0, 0, NETIF_RSP_ERROR);
    add("size 1515", g, 0, 1515, 0, NETIF_RSP_ERROR);
    add("size 65535", g, 0, u16::MAX, 0, NETIF_RSP_ERROR);
    add("offset 4096", g, 4096, 42, 0, NETIF_RSP_ERROR);
    add("offset 65535", g, u16::MAX, 1, 0, NETIF_RSP_ERROR);
    add("offset 4000 + size 200", g, 4000, 200, 0, NETIF_RSP_ERROR);
    add("offset 2583 + size 1514", g, 2583, 1514, 0, NETIF_RSP_ERROR);
    for &(what, bad_gref) in &bad {
        add(what, bad_gref, 0, ARP_LEN as u16, 0, NETIF_RSP_ERROR);
    }
    add(
        "NETTXF_more_data",
        g,
        0,
        42,
        NETTXF_MORE_DATA,
        NETIF_RSP_ERROR,
    );
    add(
        "NETTXF_extra_info",
        g,
        0,
        42,
        NETTXF_EXTRA_INFO,
        NETIF_RSP_ERROR,
    );
    add("a 1-byte frame", g, 4095, 1, 0, NETIF_RSP_DROPPED);
    add(
        "NETTXF_csum_blank (ignored)",
        g,
        0,
        42,
        NETTXF_CSUM_BLANK,
        NETIF_RSP_OKAY,
    );
    add(
        "offset 2000 in a read-only grant",
        g,
        2000,
        42,
        0,
        NETIF_RSP_OKAY,
    );
    for (_, req, _) in &requests {
        net.front().push_tx(req).expect("a free slot");
    }
    net.commit();
    let deadline = time::now() + Duration::from_secs(2);
    let (txs, _) = collect(&mut net, requests.len(), 0, deadline, |_, _| false);
    for (i, (what, req, want)) in requests.iter().enumerate() {
        let got = txs.get(i).copied();
        r.check(
            &format!("{case} {what}"),
            got == Some(NetifTxResponse {
                id: req.id,
                status: *want,
            }),
            format_args!(
                "got {}, want id {} {}",
                match got {
                    Some(t) => format!("id {} {}", t.id, status_name(t.status)),
                    None => "no response".into(),
                },
                req.id,
                status_name(*want)
            ),
        );
    }
    r.check(
        &format!("{case} one response per request"),
        txs.len() == requests.len() && net.front().bad_responses() == 0,
        format_args!("{} responses to {} requests", txs.len(), requests.len()),
    );
    let rx: Vec<(GrantRef, usize)> = (0..4).map(|_| pages.grant(DOMID_BACKEND, false)).collect();
    let _ = arp_round_trip(r, case, &mut net, &pages, &rx, frame_gref, 100);
    disconnect(r, case, net);
    free_bad_grants(&bad);
    pages.release(r, case);
}

pub(super) fn net_rx(r: &mut Report) {
    let case = "net-rx";
    let Some(mut net) = connect(r, case) else {
        return;
    };
    let mac = net.mac();
    let mut pages = Pages(Vec::new());
    let (frame_gref, frame_idx) = pages.grant(DOMID_BACKEND, true);
    pages.page(frame_idx).write(0, &arp_request(mac));
    let (ro, ro_idx) = pages.grant(DOMID_BACKEND, true);
    let mut bad = Vec::from([("a read-only grant", ro)]);
    let bad_refs = bad_grants(&mut pages, false);
    bad.extend(bad_refs.iter().copied());
    for (i, &(_, gref)) in bad.iter().enumerate() {
        net.front().post_rx(i as u16, gref).expect("a free slot");
    }
    let good: Vec<(GrantRef, usize)> = (0..4).map(|_| pages.grant(DOMID_BACKEND, false)).collect();
    // The first frame (our ARP request's reply, or anything the host sends) meets the bad
    // pages first: each must be answered ERROR, and the frame must land in a good page.
    let rxs = arp_round_trip(r, case, &mut net, &pages, &good, frame_gref, 1);
    for (i, &(what, _)) in bad.iter().enumerate() {
        let got = rxs.get(i);
        let want = RxCompletion::Error {
            id: i as u16,
            status: NETIF_RSP_ERROR,
        };
        r.check(
            &format!("{case} receive page: {what}"),
            got == Some(&want),
            format_args!("got {got:?}, want {want:?}"),
        );
    }
    let untouched = pages.page(ro_idx).to_array().iter().all(|&b| b == 0);
    r.check(
        &format!("{case} the read-only page is untouched"),
        untouched,
        format_args!("all zero: {untouched}"),
    );
    disconnect(r, case, net);
    free_bad_grants(&bad_refs);
    pages.release(r, case);
}

/// Fatal: the transmit ring's `req_prod` claims 1000 requests.
pub(super) fn ring_overflow() {
    overflow(0, "net-ring-overflow");
}

/// Fatal: the receive ring's `req_prod` claims 1000 requests.
pub(super) fn rx_ring_overflow() {
    overflow(1, "net-rx-ring-overflow");
}

fn overflow(ring: usize, case: &str) {
    let Ok(mut net) = Net::connect_with(NetConfig {
        rx_buffers: 0,
        tx_buffers: 0,
    }) else {
        println!("hostile: {case} needs a network interface (run with --net tap=NAME)");
        return;
    };
    let front = net.front();
    if ring == 0 {
        let page = front.tx_ring().page();
        let cons = page.load_u32(ring_offset::RSP_PROD);
        page.store_u32(ring_offset::REQ_PROD, cons.wrapping_add(1000));
    } else {
        let page = front.rx_ring().page();
        let cons = page.load_u32(ring_offset::RSP_PROD);
        page.store_u32(ring_offset::REQ_PROD, cons.wrapping_add(1000));
    }
    net.kick();
    // Keep everything granted and connected: the VMM is about to stop the guest.
    core::mem::forget(net);
}
