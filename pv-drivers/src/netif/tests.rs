use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use parapet_abi::netif::{
    NETIF_MAX_PACKET, NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK,
    NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, NetifRxRequest, NetifRxResponse,
    NetifTxRequest, NetifTxResponse,
};
use parapet_abi::ring::offset;
use proptest::prelude::*;

use super::*;
use crate::ring::{BackRing, RingError};
use crate::shared::{PAGE_SIZE, SharedPage, TestPage};
use crate::testutil::{StoreCounts, TestGrants, run_interleaved};

/// An in-memory host: frames queued for the guest, and frames the guest sent.
#[derive(Debug, Default)]
struct Host {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
    /// Refuse the next this many sends.
    refuse: usize,
}

impl PacketIo for Host {
    fn send(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        if self.refuse > 0 {
            self.refuse -= 1;
            return Err(PacketError::Refused);
        }
        self.outbound.push(frame.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let frame = self.inbound.pop_front()?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Some(frame.len())
    }
}

/// Frame number `seq` of `len` bytes: recognisable content.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(131).wrapping_add(i * 7) as u8)
        .collect()
}

fn tx(id: u16, gref: u32, offset: u16, size: u16, flags: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
}

fn tx_rsp(id: u16, status: i16) -> NetifTxResponse {
    NetifTxResponse { id, status }
}

/// Two zeroed ring pages.
fn pages() -> (TestPage, TestPage) {
    (TestPage::new(), TestPage::new())
}

fn read_page(grants: &TestGrants, gref: u32, offset: usize, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    grants.page(gref).read(offset, &mut v);
    v
}

#[test]
fn both_rings_have_256_slots() {
    assert_eq!(NETIF_TX_RING_SIZE, 256);
    assert_eq!(NETIF_RX_RING_SIZE, 256);
}

#[test]
fn every_bad_transmit_request_is_answered_error_and_counted_alone() {
    let mut grants = TestGrants::default();
    let ro = grants.grant(false);
    let rw = grants.grant(true);
    grants.page(ro).write(0, &frame(1, PAGE_SIZE));
    grants.page(rw).write(0, &frame(2, PAGE_SIZE));
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut back: NetifTxBackRing<_> = BackRing::attach(&tp);
    let requests = [
        tx(0, ro, 0, 60, 0),                             // ok
        tx(1, ro, 0, 0, 0),                              // zero size
        tx(2, ro, 0, 1515, 0),                           // oversized
        tx(3, ro, 0, u16::MAX, 0),                       // oversized
        tx(4, ro, 0, 1514, 0),                           // largest: ok
        tx(5, ro, 4096, 1, 0),                           // offset past the page
        tx(6, ro, u16::MAX, 1, 0),                       // offset far past the page
        tx(7, ro, 4000, 97, 0),                          // offset + size past the page
        tx(8, ro, 4095, 1, 0),                           // last byte: ok
        tx(9, 999, 0, 60, 0),                            // bad grant
        tx(10, u32::MAX, 0, 60, 0),                      // bad grant
        tx(11, ro, 0, 60, NETTXF_MORE_DATA),             // unsupported flag
        tx(12, ro, 0, 60, NETTXF_EXTRA_INFO),            // unsupported flag
        tx(13, rw, 100, 70, NETTXF_CSUM_BLANK | 0x8000), // ignored flags: ok
        tx(14, rw, 2582, 1514, NETTXF_DATA_VALIDATED),   // ends at the page end: ok
        tx(15, rw, 2583, 1514, 0),                       // one byte past the page
    ];
    for r in &requests {
        front.push_tx(r).unwrap();
    }
    assert!(front.commit(), "the backend armed req_event at init");
    let mut host = Host::default();
    let mut counters = NetCounters::default();
    let outcome = serve_tx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 16,
            notify: true,
            needs_buffers: false,
            more: false
        }
    );
    let got: Vec<_> = core::iter::from_fn(|| front.next_tx_response()).collect();
    let ok = [0, 4, 8, 13, 14];
    let want: Vec<_> = (0..16)
        .map(|id| {
            let status = if ok.contains(&id) {
                NETIF_RSP_OKAY
            } else {
                NETIF_RSP_ERROR
            };
            tx_rsp(id, status)
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        host.outbound,
        [
            read_page(&grants, ro, 0, 60),
            read_page(&grants, ro, 0, 1514),
            read_page(&grants, ro, 4095, 1),
            read_page(&grants, rw, 100, 70),
            read_page(&grants, rw, 2582, 1514),
        ]
    );
    assert_eq!(
        counters,
        NetCounters {
            tx_packets: 5,
            tx_bytes: 60 + 1514 + 1 + 70 + 1514,
            tx_dropped: 11,
            tx_errors: 11,
            ..NetCounters::default()
        }
    );
    assert_eq!(front.bad_responses(), 0);
}

#[test]
fn a_frame_the_host_refuses_is_dropped_and_the_next_one_flows() {
    let mut grants = TestGrants::default();
    let page = grants.grant(false);
    grants.page(page).write(0, &frame(3, 200));
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut back: NetifTxBackRing<_> = BackRing::attach(&tp);
    front.push_tx(&tx(7, page, 0, 100, 0)).unwrap();
    front.push_tx(&tx(8, page, 100, 100, 0)).unwrap();
    let _ = front.commit();
    let mut host = Host {
        refuse: 1,
        ..Host::default()
    };
    let mut counters = NetCounters::default();
    serve_tx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(front.next_tx_response(), Some(tx_rsp(7, NETIF_RSP_DROPPED)));
    assert_eq!(front.next_tx_response(), Some(tx_rsp(8, NETIF_RSP_OKAY)));
    assert_eq!(host.outbound, [frame(3, 200)[100..].to_vec()]);
    assert_eq!(
        (counters.tx_packets, counters.tx_dropped, counters.tx_errors),
        (1, 1, 0)
    );
}

#[test]
fn received_frames_fill_posted_pages_and_bad_pages_are_skipped() {
    let mut grants = TestGrants::default();
    let a = grants.grant(true);
    let ro = grants.grant(false);
    let b = grants.grant(true);
    let c = grants.grant(true);
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut back: NetifRxBackRing<_> = BackRing::attach(&rp);
    for (id, gref) in [(0, a), (1, ro), (2, 999), (3, b), (4, c)] {
        front.post_rx(id, gref).unwrap();
    }
    assert!(front.commit(), "the backend armed req_event at init");
    let mut host = Host::default();
    host.inbound.push_back(frame(1, 60));
    host.inbound.push_back(vec![]); // empty: dropped
    host.inbound.push_back(frame(2, NETIF_MAX_PACKET + 1)); // oversized: dropped
    host.inbound.push_back(frame(3, PAGE_SIZE + 10)); // longer than the buffer: dropped
    host.inbound.push_back(frame(4, NETIF_MAX_PACKET)); // goes past ro and 999 to b
    let mut counters = NetCounters::default();
    let outcome = serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 4,
            notify: true,
            needs_buffers: false,
            more: false
        },
        "the host ran dry with page c still posted"
    );
    let got: Vec<_> = core::iter::from_fn(|| front.next_rx()).collect();
    assert_eq!(
        got,
        [
            RxCompletion::Packet(RxPacket {
                id: 0,
                offset: 0,
                len: 60,
                flags: 0
            }),
            RxCompletion::Error {
                id: 1,
                status: NETIF_RSP_ERROR
            },
            RxCompletion::Error {
                id: 2,
                status: NETIF_RSP_ERROR
            },
            RxCompletion::Packet(RxPacket {
                id: 3,
                offset: 0,
                len: NETIF_MAX_PACKET,
                flags: 0
            }),
        ]
    );
    assert_eq!(read_page(&grants, a, 0, 60), frame(1, 60));
    assert_eq!(
        read_page(&grants, b, 0, NETIF_MAX_PACKET),
        frame(4, NETIF_MAX_PACKET)
    );
    assert!(
        read_page(&grants, ro, 0, PAGE_SIZE).iter().all(|&x| x == 0),
        "the read-only page is untouched"
    );
    assert_eq!(
        counters,
        NetCounters {
            rx_packets: 2,
            rx_bytes: 60 + NETIF_MAX_PACKET as u64,
            rx_dropped: 3,
            rx_errors: 2,
            ..NetCounters::default()
        }
    );
    assert!(front.rx_in_flight(4) && !front.rx_in_flight(3));

    // Page c takes the next frame; then the backend runs out of pages with a frame queued.
    host.inbound.push_back(frame(5, 100));
    host.inbound.push_back(frame(6, 100));
    let outcome = serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 1,
            notify: false,
            needs_buffers: true,
            more: false
        },
        "the frontend has not re-armed rsp_event"
    );
    assert_eq!(host.inbound.len(), 1, "the frame stays queued in the host");
    assert_eq!(rp.load_u32(offset::REQ_EVENT), 6, "req_event armed");
}

#[test]
fn a_frame_whose_every_posted_page_is_bad_is_dropped() {
    let mut grants = TestGrants::default();
    let ro = grants.grant(false);
    let good = grants.grant(true);
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut back: NetifRxBackRing<_> = BackRing::attach(&rp);
    front.post_rx(0, ro).unwrap();
    front.post_rx(1, 12345).unwrap();
    let _ = front.commit();
    let mut host = Host::default();
    host.inbound.extend([frame(1, 80), frame(2, 90)]);
    let mut counters = NetCounters::default();
    let outcome = serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert!(outcome.needs_buffers);
    assert_eq!((counters.rx_errors, counters.rx_dropped), (2, 1));
    front.post_rx(2, good).unwrap();
    assert!(front.commit(), "a starved backend asked to be told");
    serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    let got: Vec<_> = core::iter::from_fn(|| front.next_rx()).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2],
        RxCompletion::Packet(RxPacket {
            id: 2,
            offset: 0,
            len: 90,
            flags: 0
        })
    );
    assert_eq!(read_page(&grants, good, 0, 90), frame(2, 90));
}

#[test]
fn serve_rx_takes_at_most_a_ring_of_frames_per_call() {
    let mut grants = TestGrants::default();
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut back: NetifRxBackRing<_> = BackRing::attach(&rp);
    let grefs: Vec<u32> = (0..256).map(|_| grants.grant(true)).collect();
    for (id, &g) in grefs.iter().enumerate() {
        front.post_rx(id as u16, g).unwrap();
    }
    assert_eq!(front.post_rx(300, 0), Err(FrontError::BadId));
    assert_eq!(front.post_rx(0, 0), Err(FrontError::IdInUse));
    let _ = front.commit();
    let mut host = Host::default();
    host.inbound
        .extend(std::iter::repeat_n(vec![0xee; 64], 200));
    host.inbound.extend(std::iter::repeat_n(vec![], 100));
    host.inbound.push_back(vec![1; 64]);
    let mut counters = NetCounters::default();
    let outcome = serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!((outcome.handled, outcome.needs_buffers), (200, false));
    assert_eq!(
        counters.rx_dropped, 56,
        "the budget counts dropped frames too"
    );
    assert_eq!(host.inbound.len(), 45);
    let outcome = serve_rx(&mut back, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!((outcome.handled, outcome.needs_buffers), (1, false));
    assert!(host.inbound.is_empty());
}

#[test]
fn one_notification_per_batch_and_only_when_the_other_side_waits() {
    let mut grants = TestGrants::default();
    let txp = grants.grant(false);
    let rxps: Vec<u32> = (0..4).map(|_| grants.grant(true)).collect();
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut txb: NetifTxBackRing<_> = BackRing::attach(&tp);
    let mut rxb: NetifRxBackRing<_> = BackRing::attach(&rp);
    let mut host = Host::default();
    let mut counters = NetCounters::default();

    front.push_tx(&tx(0, txp, 0, 60, 0)).unwrap();
    assert!(front.commit(), "tx: the backend armed req_event at init");
    front.push_tx(&tx(1, txp, 0, 60, 0)).unwrap();
    assert!(!front.commit(), "tx: the backend has not consumed yet");
    let t = serve_tx(&mut txb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!((t.handled, t.notify), (2, true));
    assert_eq!(
        tp.load_u32(offset::REQ_EVENT),
        3,
        "re-armed by the final check"
    );
    front.push_tx(&tx(2, txp, 0, 60, 0)).unwrap();
    assert!(front.commit());
    let t = serve_tx(&mut txb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(
        (t.handled, t.notify),
        (1, false),
        "the frontend has not re-armed rsp_event"
    );
    let ids: Vec<u16> = core::iter::from_fn(|| front.next_tx_response())
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [0, 1, 2]);
    assert!(!front.final_check());
    let t = serve_tx(&mut txb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(t, ServeOutcome::default(), "nothing to do, nothing to say");

    // Receive: the backend keeps its pages and wants no doorbell while it has some.
    front.post_rx(0, rxps[0]).unwrap();
    front.post_rx(1, rxps[1]).unwrap();
    assert!(front.commit(), "rx: the backend armed req_event at init");
    host.inbound.push_back(frame(1, 64));
    let r = serve_rx(&mut rxb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!((r.handled, r.notify, r.needs_buffers), (1, true, false));
    front.post_rx(2, rxps[2]).unwrap();
    assert!(
        !front.commit(),
        "the backend still has a page: no doorbell for more"
    );
    host.inbound
        .extend([frame(2, 64), frame(3, 64), frame(4, 64)]);
    let r = serve_rx(&mut rxb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!(
        (r.handled, r.notify, r.needs_buffers),
        (2, false, true),
        "one notification until the frontend re-arms; out of pages"
    );
    assert_eq!(core::iter::from_fn(|| front.next_rx()).count(), 3);
    assert!(!front.final_check());
    front.post_rx(0, rxps[0]).unwrap();
    assert!(front.commit(), "the starved backend asked to be told");
    let r = serve_rx(&mut rxb, &&grants, &mut host, &mut counters).unwrap();
    assert_eq!((r.handled, r.notify, r.needs_buffers), (1, true, true));
}

#[test]
fn corrupt_producer_indices_stop_the_backend() {
    let grants = TestGrants::default();
    let (tp, rp) = pages();
    let _front = NetifFront::new(&tp, &rp);
    let mut txb: NetifTxBackRing<_> = BackRing::attach(&tp);
    let mut rxb: NetifRxBackRing<_> = BackRing::attach(&rp);
    tp.store_u32(offset::REQ_PROD, 257);
    rp.store_u32(offset::REQ_PROD, u32::MAX);
    let mut host = Host::default();
    host.inbound.push_back(frame(1, 64));
    let mut counters = NetCounters::default();
    assert_eq!(
        serve_tx(&mut txb, &&grants, &mut host, &mut counters),
        Err(RingError::Overflow {
            unconsumed: 257,
            in_flight: 0,
            size: 256
        })
    );
    assert!(matches!(
        serve_rx(&mut rxb, &&grants, &mut host, &mut counters),
        Err(RingError::Overflow { .. })
    ));
    assert_eq!(host.inbound.len(), 1, "no frame taken for a broken ring");
}

#[test]
fn the_frontend_refuses_what_a_broken_backend_answers() {
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut txb: NetifTxBackRing<_> = BackRing::attach(&tp);
    let mut rxb: NetifRxBackRing<_> = BackRing::attach(&rp);
    assert_eq!(front.push_tx(&tx(256, 1, 0, 1, 0)), Err(FrontError::BadId));
    front.push_tx(&tx(5, 1, 0, 1, 0)).unwrap();
    assert_eq!(front.push_tx(&tx(5, 1, 0, 1, 0)), Err(FrontError::IdInUse));
    front.push_tx(&tx(6, 1, 0, 1, 0)).unwrap();
    for id in 0..5 {
        front.post_rx(id, 1).unwrap();
    }
    let _ = front.commit();
    // A backend that answers with ids nobody asked for, and impossible lengths.
    while txb.next_request().unwrap().is_some() {}
    txb.push_response(&tx_rsp(99, 0)).unwrap();
    txb.push_response(&tx_rsp(6, 0)).unwrap();
    let _ = txb.commit_responses();
    assert_eq!(front.next_tx_response(), Some(tx_rsp(6, 0)));
    assert_eq!(front.next_tx_response(), None);
    assert!(front.tx_in_flight(5) && !front.tx_in_flight(6));
    while rxb.next_request().unwrap().is_some() {}
    let rsp = |id, offset, status| NetifRxResponse {
        id,
        offset,
        flags: 0,
        status,
    };
    for r in [
        rsp(0, 0, 1515),
        rsp(1, 4000, 100),
        rsp(1, 0, 10), // id 1 was just answered: not in flight any more
        rsp(2, 2582, 1514),
        rsp(3, 0, NETIF_RSP_DROPPED),
    ] {
        rxb.push_response(&r).unwrap();
    }
    let _ = rxb.commit_responses();
    let got: Vec<_> = core::iter::from_fn(|| front.next_rx()).collect();
    let error = |id| RxCompletion::Error {
        id,
        status: NETIF_RSP_ERROR,
    };
    assert_eq!(
        got,
        [
            error(0),
            error(1),
            RxCompletion::Packet(RxPacket {
                id: 2,
                offset: 2582,
                len: 1514,
                flags: 0
            }),
            RxCompletion::Error {
                id: 3,
                status: NETIF_RSP_DROPPED
            },
        ]
    );
    assert_eq!(front.bad_responses(), 4);
    assert!(front.backend_broken());
}

// ---------------------------------------------------------------------------------------------
// Random traffic.

/// One round of random traffic: frames the guest sends (`(len, offset seed)`) and frames the
/// host delivers (lengths).
type Round = (Vec<(u16, u16)>, Vec<u16>);

/// Runs `rounds` of random traffic both ways through a frontend, the backend and an in-memory
/// host, with `tx_pages` transmit and `rx_pages` receive pages, and checks that every frame
/// arrives intact and in order.
fn random_traffic(rounds: &[Round], tx_pages: usize, rx_pages: usize) -> Result<(), TestCaseError> {
    let mut grants = TestGrants::default();
    let txg: Vec<u32> = (0..tx_pages).map(|_| grants.grant(false)).collect();
    let rxg: Vec<u32> = (0..rx_pages).map(|_| grants.grant(true)).collect();
    let (tp, rp) = pages();
    let mut front = NetifFront::new(&tp, &rp);
    let mut txb: NetifTxBackRing<_> = BackRing::attach(&tp);
    let mut rxb: NetifRxBackRing<_> = BackRing::attach(&rp);
    let mut host = Host::default();
    let mut counters = NetCounters::default();
    let (mut sent, mut expected_in) = (Vec::new(), Vec::new());
    let mut received = Vec::new();
    let mut tx_free: Vec<u16> = (0..tx_pages as u16).collect();
    let mut rx_free: Vec<u16> = (0..rx_pages as u16).collect();
    let mut seq = 0u32;
    let empty = (Vec::new(), Vec::new());
    let mut extra = 0;
    for (outgoing, incoming) in rounds.iter().chain(core::iter::repeat(&empty)) {
        if core::ptr::eq(outgoing, &empty.0) {
            // After the random rounds: until every frame is through.
            if host.inbound.is_empty() && tx_free.len() == tx_pages {
                break;
            }
            extra += 1;
            prop_assert!(extra < 1000, "traffic stuck");
        }
        for &(len, offset_seed) in outgoing {
            let Some(id) = tx_free.pop() else { break };
            let len = usize::from(len);
            let offset = usize::from(offset_seed) % (PAGE_SIZE - len + 1);
            let data = frame(seq, len);
            seq += 1;
            grants.page(txg[usize::from(id)]).write(offset, &data);
            front
                .push_tx(&tx(id, txg[usize::from(id)], offset as u16, len as u16, 0))
                .unwrap();
            sent.push(data);
        }
        for &len in incoming {
            let data = frame(seq, usize::from(len));
            seq += 1;
            host.inbound.push_back(data.clone());
            expected_in.push(data);
        }
        while let Some(id) = rx_free.pop() {
            front.post_rx(id, rxg[usize::from(id)]).unwrap();
        }
        let _ = front.commit();
        serve_tx(&mut txb, &&grants, &mut host, &mut counters).unwrap();
        serve_rx(&mut rxb, &&grants, &mut host, &mut counters).unwrap();
        while let Some(r) = front.next_tx_response() {
            prop_assert_eq!(r.status, NETIF_RSP_OKAY);
            tx_free.push(r.id);
        }
        while let Some(c) = front.next_rx() {
            let RxCompletion::Packet(p) = c else {
                return Err(TestCaseError::fail(format!("{c:?}")));
            };
            received.push(read_page(&grants, rxg[usize::from(p.id)], p.offset, p.len));
            rx_free.push(p.id);
        }
    }
    prop_assert_eq!(&host.outbound, &sent);
    prop_assert_eq!(&received, &expected_in);
    prop_assert_eq!(counters.tx_packets, sent.len() as u64);
    prop_assert_eq!(counters.rx_packets, expected_in.len() as u64);
    prop_assert_eq!(counters.tx_dropped + counters.rx_dropped, 0);
    prop_assert_eq!(front.bad_responses(), 0);
    Ok(())
}

fn frame_len() -> impl Strategy<Value = u16> {
    prop_oneof![
        1..=60u16,
        1..=NETIF_MAX_PACKET as u16,
        Just(NETIF_MAX_PACKET as u16)
    ]
}

proptest! {
    /// Random valid traffic both ways, in random batches, arrives intact and in order.
    #[test]
    fn random_valid_traffic_arrives_intact_in_order(
        rounds in proptest::collection::vec(
            (
                proptest::collection::vec((frame_len(), any::<u16>()), 0..40),
                proptest::collection::vec(frame_len(), 0..40),
            ),
            1..12,
        ),
        tx_pages in 1..40usize,
        rx_pages in 1..40usize,
    ) {
        random_traffic(&rounds, tx_pages, rx_pages)?;
    }
}

/// A frontend sending `n_tx` frames and receiving `n_rx` frames against a backend looping as the
/// module documentation says, interleaved at every ring access.
fn run_net_actors(choices: &[u8], n_tx: u32, n_rx: u32, pages_each: u16) -> Result<(), String> {
    let mut grants = TestGrants::default();
    let txg: Vec<u32> = (0..pages_each).map(|_| grants.grant(false)).collect();
    let rxg: Vec<u32> = (0..pages_each).map(|_| grants.grant(true)).collect();
    let grants = &grants;
    let (tp, rp) = pages();
    let stores = StoreCounts::new();
    let _ = NetifFront::new(&tp, &rp);
    let len = |seq: u32| 1 + (seq as usize * 97) % NETIF_MAX_PACKET;
    run_interleaved(
        choices,
        |actor| {
            let mut front = NetifFront::new(actor.page(&tp, &stores), actor.page(&rp, &stores));
            let mut tx_free: Vec<u16> = (0..pages_each).collect();
            let mut rx_free: Vec<u16> = (0..pages_each).collect();
            let (mut sent, mut completed, mut received) = (0u32, 0u32, 0u32);
            while completed < n_tx || received < n_rx {
                while sent < n_tx {
                    let Some(id) = tx_free.pop() else { break };
                    let g = txg[usize::from(id)];
                    grants.page(g).write(0, &frame(sent, len(sent)));
                    front.push_tx(&tx(id, g, 0, len(sent) as u16, 0)).unwrap();
                    sent += 1;
                }
                while let Some(id) = rx_free.pop() {
                    front.post_rx(id, rxg[usize::from(id)]).unwrap();
                }
                if front.commit() {
                    actor.notify_other();
                }
                let mut progress = false;
                while let Some(r) = front.next_tx_response() {
                    assert_eq!(r.status, NETIF_RSP_OKAY);
                    tx_free.push(r.id);
                    completed += 1;
                    progress = true;
                }
                while let Some(c) = front.next_rx() {
                    let RxCompletion::Packet(p) = c else {
                        panic!("{c:?}")
                    };
                    let seq = 1_000_000 + received;
                    assert_eq!(
                        read_page(grants, rxg[usize::from(p.id)], 0, p.len),
                        frame(seq, len(seq)),
                        "frames in order, intact"
                    );
                    rx_free.push(p.id);
                    received += 1;
                    progress = true;
                }
                let done = completed == n_tx && received == n_rx;
                if !progress && !done && !front.final_check() {
                    actor.sleep();
                }
            }
        },
        |actor| {
            let mut txb: NetifTxBackRing<_> = BackRing::attach(actor.page(&tp, &stores));
            let mut rxb: NetifRxBackRing<_> = BackRing::attach(actor.page(&rp, &stores));
            let mut host = Host::default();
            host.inbound
                .extend((0..n_rx).map(|i| frame(1_000_000 + i, len(1_000_000 + i))));
            let mut counters = NetCounters::default();
            loop {
                let t = serve_tx(&mut txb, &grants, &mut host, &mut counters).expect("honest");
                let r = serve_rx(&mut rxb, &grants, &mut host, &mut counters).expect("honest");
                if t.notify || r.notify {
                    actor.notify_other();
                }
                if counters.tx_packets == u64::from(n_tx) && host.inbound.is_empty() {
                    break;
                }
                // "The TAP fd is readable" is `!host.inbound.is_empty()`.
                if t.more {
                    actor.yield_now();
                } else if r.needs_buffers || host.inbound.is_empty() {
                    actor.sleep();
                }
            }
            for (i, f) in host.outbound.iter().enumerate() {
                assert_eq!(f, &frame(i as u32, len(i as u32)));
            }
        },
    )
    .map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The backend loop of the module documentation never strands a request or a frame, and the
    /// frontend's final check never misses a response.
    #[test]
    fn interleaved_traffic_strands_nothing(
        choices in proptest::collection::vec(any::<u8>(), 0..400),
        n_tx in 0..40u32,
        n_rx in 0..40u32,
        pages_each in 1..6u16,
    ) {
        run_net_actors(&choices, n_tx, n_rx, pages_each).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn interleaved_smoke() {
    run_net_actors(&[], 20, 20, 2).unwrap();
    run_net_actors(&[3, 15, 0, 7], 5, 30, 1).unwrap();
}

#[test]
fn errors_display() {
    assert_eq!(format!("{}", PacketError::Busy), "host queue full");
    assert_eq!(
        format!("{}", FrontError::IdInUse),
        "request id already in flight"
    );
    let _ = NetifRxRequest::default();
}

/// A frontend that refills the transmit ring as fast as the backend consumes it (here: every
/// grant the backend maps publishes another request) cannot keep one batch going: it stops at
/// its budget and says there may be more.
#[test]
fn a_transmit_batch_stops_at_its_budget() {
    use crate::grant_table::{GrantError, GrantMapper};
    use zerocopy::IntoBytes;

    struct Refilling<'p>(&'p TestPage);
    impl Refilling<'_> {
        fn publish_one(&self) {
            let req_prod = self.0.load_u32(offset::REQ_PROD);
            let slot = 64 + (req_prod % NETIF_TX_RING_SIZE) as usize * 12;
            let r = NetifTxRequest {
                gref: 0,
                offset: 0,
                flags: 0,
                id: req_prod as u16,
                size: 60,
            };
            self.0.write(slot, r.as_bytes());
            self.0.store_u32(offset::REQ_PROD, req_prod.wrapping_add(1));
        }
    }
    impl GrantMapper for Refilling<'_> {
        type Mapping = &'static TestPage;
        fn map(&self, _: u32, _: bool) -> Result<&'static TestPage, GrantError> {
            self.publish_one();
            Err(GrantError::BadRef)
        }
    }

    let page = TestPage::new();
    let _ = NetifFront::new(&page, &TestPage::new());
    let grants = Refilling(&page);
    let mut back: NetifTxBackRing<_> = BackRing::attach(&page);
    let mut host = Host::default();
    let mut counters = NetCounters::default();
    grants.publish_one();
    for _ in 0..3 {
        let outcome = serve_tx(&mut back, &grants, &mut host, &mut counters).unwrap();
        assert_eq!((outcome.handled, outcome.more), (TX_BATCH_BUDGET, true));
    }
}
