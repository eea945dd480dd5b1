use std::format;
use std::vec::Vec;

use parapet_abi::loopback::{
    LOOPBACK_OP_ECHO, LOOPBACK_OP_FILL, LOOPBACK_OP_SUM, LOOPBACK_STATUS_ERROR, LOOPBACK_STATUS_OK,
    LoopbackRequest, LoopbackResponse,
};
use parapet_abi::ring::offset;
use proptest::prelude::*;

use super::{LOOPBACK_RING_SIZE, LoopbackBackRing, LoopbackFront, ServeOutcome, serve_batch};
use crate::ring::{BackRing, RingError};
use crate::shared::{PAGE_SIZE, SharedPage, TestPage};
use crate::testutil::{StoreCounts, TestGrants, run_interleaved};

fn request(id: u64, op: u32, gref: u32, offset: u32, len: u32, value: u64) -> LoopbackRequest {
    LoopbackRequest {
        id,
        op,
        gref,
        offset,
        len,
        value,
    }
}

fn ok(id: u64, value: u64) -> LoopbackResponse {
    LoopbackResponse {
        id,
        status: LOOPBACK_STATUS_OK,
        pad: 0,
        value,
    }
}

fn error(id: u64) -> LoopbackResponse {
    LoopbackResponse {
        id,
        status: LOOPBACK_STATUS_ERROR,
        pad: 0,
        value: 0,
    }
}

/// Submits `requests`, serves one batch, and collects the responses.
fn round_trip(
    grants: &TestGrants,
    requests: &[LoopbackRequest],
) -> (Vec<LoopbackResponse>, ServeOutcome) {
    let page = TestPage::new();
    let mut front = LoopbackFront::new(&page);
    let mut back: LoopbackBackRing<_> = BackRing::attach(&page);
    for r in requests {
        front.ring().push_request(r).unwrap();
    }
    let _ = front.ring().commit_requests();
    let outcome = serve_batch(&mut back, &grants).unwrap();
    let mut responses = Vec::new();
    while let Some(r) = front.poll_response() {
        responses.push(r);
    }
    (responses, outcome)
}

#[test]
fn the_ring_has_64_slots() {
    assert_eq!(LOOPBACK_RING_SIZE, 64);
}

#[test]
fn every_op_and_every_failure_answers_only_its_request() {
    let mut grants = TestGrants::default();
    let rw = grants.grant(true);
    let ro = grants.grant(false);
    grants.page(rw).write(10, &[1, 2, 3, 250]);
    grants.page(ro).write(4090, &[200; 6]);
    let requests = [
        request(1, LOOPBACK_OP_ECHO, 999, u32::MAX, u32::MAX, 0xdead_beef),
        request(2, LOOPBACK_OP_SUM, rw, 10, 4, 0),
        request(3, LOOPBACK_OP_SUM, ro, 4090, 6, 0),
        request(4, LOOPBACK_OP_FILL, rw, 100, 3, 0x1_07),
        request(5, LOOPBACK_OP_FILL, ro, 0, 1, 7),
        request(6, LOOPBACK_OP_SUM, 999, 0, 1, 0),
        request(7, LOOPBACK_OP_SUM, rw, 4000, 97, 0),
        request(8, LOOPBACK_OP_SUM, rw, u32::MAX, 2, 0),
        request(9, LOOPBACK_OP_FILL, rw, 2, u32::MAX, 9),
        request(10, 3, rw, 0, 1, 0),
        request(11, LOOPBACK_OP_SUM, rw, 4096, 0, 0),
        request(12, LOOPBACK_OP_SUM, rw, 4097, 0, 0),
        request(13, LOOPBACK_OP_SUM, rw, 99, 5, 0),
    ];
    let (responses, outcome) = round_trip(&grants, &requests);
    assert_eq!(
        responses,
        [
            ok(1, 0xdead_beef),
            ok(2, 256),
            ok(3, 1200),
            ok(4, 0),
            error(5),
            error(6),
            error(7),
            error(8),
            error(9),
            error(10),
            ok(11, 0),
            error(12),
            ok(13, 21),
        ]
    );
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 13,
            notify: true,
            more: false
        }
    );
    let mut ro_page = [0; PAGE_SIZE];
    grants.page(ro).read(0, &mut ro_page);
    assert_eq!(ro_page[0], 0, "read-only page untouched");
}

#[test]
fn one_notification_per_batch_and_only_when_the_frontend_waits() {
    let grants = TestGrants::default();
    let page = TestPage::new();
    let mut front = LoopbackFront::new(&page);
    let mut back: LoopbackBackRing<_> = BackRing::attach(&page);
    let echo = |id| request(id, LOOPBACK_OP_ECHO, 0, 0, 0, id);

    assert_eq!(front.submit(&echo(0)), Ok(true), "backend armed at init");
    assert_eq!(front.submit(&echo(1)), Ok(false));
    let outcome = serve_batch(&mut back, &&grants).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 2,
            notify: true,
            more: false
        }
    );
    assert_eq!(
        page.load_u32(offset::REQ_EVENT),
        3,
        "backend re-armed by its final check"
    );

    // The frontend has not consumed or re-armed: no notification for the next batch.
    assert_eq!(front.submit(&echo(2)), Ok(true));
    let outcome = serve_batch(&mut back, &&grants).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 1,
            notify: false,
            more: false
        }
    );
    let ids: Vec<u64> = core::iter::from_fn(|| front.poll_response())
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [0, 1, 2]);
    assert!(!front.final_check_for_responses());

    assert_eq!(front.submit(&echo(3)), Ok(true));
    let outcome = serve_batch(&mut back, &&grants).unwrap();
    assert_eq!(
        outcome,
        ServeOutcome {
            handled: 1,
            notify: true,
            more: false
        }
    );
    assert_eq!(
        serve_batch(&mut back, &&grants),
        Ok(ServeOutcome::default())
    );
}

#[test]
fn a_corrupt_req_prod_stops_the_batch() {
    let grants = TestGrants::default();
    let page = TestPage::new();
    let mut front = LoopbackFront::new(&page);
    let mut back: LoopbackBackRing<_> = BackRing::attach(&page);
    let _ = front.submit(&request(0, LOOPBACK_OP_ECHO, 0, 0, 0, 0));
    page.store_u32(offset::REQ_PROD, 1000);
    assert_eq!(
        serve_batch(&mut back, &&grants),
        Err(RingError::Overflow {
            unconsumed: 1000,
            in_flight: 0,
            size: 64
        })
    );
}

/// The reference semantics of one request, applied to a model of the granted pages.
fn model(req: &LoopbackRequest, pages: &mut [(Vec<u8>, bool)]) -> LoopbackResponse {
    let range = || {
        let (offset, len) = (req.offset as usize, req.len as usize);
        (offset + len <= PAGE_SIZE).then_some(offset..offset + len)
    };
    let page = pages.get_mut(req.gref as usize);
    match (req.op, page, range()) {
        (LOOPBACK_OP_ECHO, _, _) => ok(req.id, req.value),
        (LOOPBACK_OP_SUM, Some((bytes, _)), Some(range)) => {
            ok(req.id, bytes[range].iter().map(|&b| u64::from(b)).sum())
        }
        (LOOPBACK_OP_FILL, Some((bytes, true)), Some(range)) => {
            bytes[range].fill(req.value as u8);
            ok(req.id, 0)
        }
        _ => error(req.id),
    }
}

fn any_request() -> impl Strategy<Value = LoopbackRequest> {
    (
        prop_oneof![0..4u32, any::<u32>()],
        prop_oneof![0..4u32, any::<u32>()],
        prop_oneof![0..4200u32, any::<u32>()],
        prop_oneof![0..4200u32, any::<u32>()],
        any::<u64>(),
    )
        .prop_map(|(op, gref, offset, len, value)| request(0, op, gref, offset, len, value))
}

proptest! {
    /// Random requests in random batches match the reference semantics, in order, and the
    /// granted pages end up as the model says.
    #[test]
    fn serve_batch_matches_the_model(
        requests in proptest::collection::vec(any_request(), 0..150),
        batches in proptest::collection::vec(1..70usize, 1..10),
        seed in any::<u8>(),
    ) {
        let mut grants = TestGrants::default();
        let mut pages = Vec::new();
        for writable in [true, false, true] {
            let gref = grants.grant(writable);
            let bytes: Vec<u8> = (0..PAGE_SIZE).map(|i| (i as u8) ^ seed).collect();
            grants.page(gref).write(0, &bytes);
            pages.push((bytes, writable));
        }
        let page = TestPage::new();
        let mut front = LoopbackFront::new(&page);
        let mut back: LoopbackBackRing<_> = BackRing::attach(&page);
        let (mut next, mut batch) = (0, 0);
        while next < requests.len() {
            let n = batches[batch % batches.len()].min(requests.len() - next);
            batch += 1;
            let mut expected = Vec::new();
            for (i, r) in requests[next..next + n].iter().enumerate() {
                let r = LoopbackRequest { id: (next + i) as u64, ..*r };
                match front.ring().push_request(&r) {
                    Ok(()) => expected.push(model(&r, &mut pages)),
                    Err(_) => break,
                }
            }
            next += expected.len();
            let _ = front.ring().commit_requests();
            let outcome = serve_batch(&mut back, &&grants).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(outcome.handled, expected.len());
            let got: Vec<_> = core::iter::from_fn(|| front.poll_response()).collect();
            prop_assert_eq!(got, expected);
        }
        for (gref, (bytes, _)) in pages.iter().enumerate() {
            let mut actual = std::vec![0; PAGE_SIZE];
            grants.page(gref as u32).read(0, &mut actual);
            prop_assert_eq!(&actual, bytes);
        }
    }
}

/// A frontend submitting `total` requests against a backend running [`serve_batch`] and
/// sleeping between batches, interleaved at every shared access.
fn run_loopback_actors(choices: &[u8], total: u64) -> Result<(), std::string::String> {
    let mut grants = TestGrants::default();
    let gref = grants.grant(false);
    grants.page(gref).write(0, &[1; 16]);
    let grants = &grants;
    let page = TestPage::new();
    let stores = StoreCounts::new();
    let _ = LoopbackFront::new(&page);
    run_interleaved(
        choices,
        |actor| {
            let mut front = LoopbackFront::new(actor.page(&page, &stores));
            let (mut sent, mut received) = (0u64, 0u64);
            while received < total {
                if sent < total {
                    let r = match sent % 2 {
                        0 => request(sent, LOOPBACK_OP_ECHO, 0, 0, 0, sent * 3),
                        _ => request(sent, LOOPBACK_OP_SUM, gref, 0, 16, 0),
                    };
                    if let Ok(notify) = front.submit(&r) {
                        sent += 1;
                        if notify {
                            actor.notify_other();
                        }
                        continue;
                    }
                }
                while let Some(r) = front.poll_response() {
                    let value = if received % 2 == 0 { received * 3 } else { 16 };
                    assert_eq!(r, ok(received, value), "responses in order, once");
                    received += 1;
                }
                if received < total
                    && (sent == total || front.ring().free_requests() == 0)
                    && !front.final_check_for_responses()
                {
                    actor.sleep();
                }
            }
        },
        |actor| {
            let mut ring: LoopbackBackRing<_> = BackRing::attach(actor.page(&page, &stores));
            let mut handled = 0;
            loop {
                let outcome = serve_batch(&mut ring, &grants).expect("honest frontend");
                handled += outcome.handled;
                if outcome.notify {
                    actor.notify_other();
                }
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
    )
    .map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `serve_batch` returns only when sleeping is safe: no request is ever stranded.
    #[test]
    fn interleaved_serve_batch_strands_nothing(
        choices in proptest::collection::vec(any::<u8>(), 0..400),
        total in 1..150u64,
    ) {
        run_loopback_actors(&choices, total).map_err(TestCaseError::fail)?;
    }
}

/// A frontend that refills the ring as fast as the backend consumes it (here: every grant the
/// backend maps publishes another request) cannot keep one batch going: it stops at its budget
/// and says there may be more.
#[test]
fn a_batch_stops_at_its_budget() {
    use super::BATCH_BUDGET;
    use crate::grant_table::{GrantError, GrantMapper};
    use parapet_abi::ring::offset;
    use zerocopy::IntoBytes;

    struct Refilling<'p>(&'p TestPage);
    impl Refilling<'_> {
        fn publish_one(&self) {
            let req_prod = self.0.load_u32(offset::REQ_PROD);
            let slot = 64 + (req_prod % LOOPBACK_RING_SIZE) as usize * 32;
            let r = request(u64::from(req_prod), LOOPBACK_OP_SUM, 0, 0, 1, 0);
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
    let _ = LoopbackFront::new(&page);
    let grants = Refilling(&page);
    let mut back: LoopbackBackRing<_> = BackRing::attach(&page);
    grants.publish_one();
    for _ in 0..3 {
        let outcome = serve_batch(&mut back, &grants).unwrap();
        assert_eq!((outcome.handled, outcome.more), (BATCH_BUDGET, true));
    }
}
