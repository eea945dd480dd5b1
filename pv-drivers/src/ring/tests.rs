use std::collections::VecDeque;
use std::format;

use parapet_abi::loopback::{LoopbackRequest, LoopbackResponse};
use parapet_abi::ring::offset;
use proptest::prelude::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{BackRing, FrontRing, RingError, RingFull};
use crate::shared::{SharedPage, TestPage};
use crate::testutil::{CountingPage, StoreCounts, run_interleaved};

/// A 512-byte request, so the ring has only 4 slots and fills up often.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Req {
    id: u64,
    body: [u8; 504],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Rsp {
    id: u64,
    check: u64,
}

type Front<P> = FrontRing<Req, Rsp, P>;
type Back<P> = BackRing<Req, Rsp, P>;

const SIZE: u32 = Front::<()>::SIZE;

fn req(id: u64) -> Req {
    Req {
        id,
        body: [id as u8; 504],
    }
}

fn rsp(id: u64) -> Rsp {
    Rsp { id, check: !id }
}

fn assert_intact(r: &Req) {
    assert!(
        r.body.iter().all(|&b| b == r.id as u8),
        "torn request {}",
        r.id
    );
}

#[test]
fn geometry_matches_xen() {
    assert_eq!(SIZE, 4);
    assert_eq!(FrontRing::<LoopbackRequest, LoopbackResponse, ()>::SIZE, 64);
    assert_eq!(BackRing::<u64, u64, ()>::SIZE, 256);
    assert_eq!(FrontRing::<[u8; 112], u64, ()>::SIZE, 32);
}

#[test]
fn init_writes_the_header_only() {
    let page = TestPage::new();
    page.write(0, &[0xff; 4096]);
    let _front = Front::init(&page);
    assert_eq!(page.load_u32(offset::REQ_PROD), 0);
    assert_eq!(page.load_u32(offset::REQ_EVENT), 1);
    assert_eq!(page.load_u32(offset::RSP_PROD), 0);
    assert_eq!(page.load_u32(offset::RSP_EVENT), 1);
    let mut rest = [0; 4096 - 16];
    page.read(16, &mut rest);
    assert!(rest[..48].iter().all(|&b| b == 0), "padding zeroed");
    assert!(rest[48..].iter().all(|&b| b == 0xff), "slots untouched");
}

#[test]
fn requests_and_responses_round_trip_with_suppressed_notifications() {
    let page = TestPage::new();
    let mut front = Front::init(&page);
    let mut back = Back::attach(&page);
    assert_eq!(back.next_request(), Ok(None));
    assert!(!front.commit_requests(), "nothing to publish");

    front.push_request(&req(0)).unwrap();
    front.push_request(&req(1)).unwrap();
    assert_eq!(back.next_request(), Ok(None), "not yet published");
    assert!(front.commit_requests(), "backend armed req_event = 1");
    front.push_request(&req(2)).unwrap();
    assert!(!front.commit_requests(), "backend did not re-arm");
    assert_eq!(front.free_requests(), 1);
    assert_eq!(front.requests_in_flight(), 3);

    for id in 0..3 {
        assert_eq!(back.next_request().unwrap().map(|r| r.id), Some(id));
    }
    assert_eq!(back.next_request(), Ok(None));
    assert_eq!(back.requests_in_flight(), 3);
    assert_eq!(back.final_check_for_requests(), Ok(false));
    assert_eq!(
        page.load_u32(offset::REQ_EVENT),
        4,
        "req_event = req_cons + 1"
    );

    back.push_response(&rsp(0)).unwrap();
    assert_eq!(front.next_response(), None, "not yet published");
    assert!(back.commit_responses(), "frontend armed rsp_event = 1");
    back.push_response(&rsp(1)).unwrap();
    assert!(!back.commit_responses());
    assert_eq!(front.next_response(), Some(rsp(0)));
    assert_eq!(front.next_response(), Some(rsp(1)));
    assert_eq!(front.next_response(), None);
    assert!(!front.final_check_for_responses());
    assert_eq!(page.load_u32(offset::RSP_EVENT), 3);
    back.push_response(&rsp(2)).unwrap();
    assert!(back.commit_responses(), "frontend re-armed");
    assert!(front.final_check_for_responses(), "response waiting");
    assert_eq!(front.next_response(), Some(rsp(2)));

    front.push_request(&req(3)).unwrap();
    assert!(front.commit_requests(), "backend re-armed");
    assert!(!front.backend_overflowed());
}

#[test]
fn a_frontend_can_ask_to_be_woken_after_several_responses() {
    let page = TestPage::new();
    let mut front = Front::init(&page);
    let mut back = Back::attach(&page);
    for id in 0..3 {
        front.push_request(&req(id)).unwrap();
    }
    let _ = front.commit_requests();
    while back.next_request().unwrap().is_some() {}
    assert!(!front.final_check_for_responses_after(2));
    assert_eq!(
        page.load_u32(offset::RSP_EVENT),
        2,
        "rsp_event = rsp_cons + 2"
    );
    back.push_response(&rsp(0)).unwrap();
    assert!(!back.commit_responses(), "one response: not yet");
    back.push_response(&rsp(1)).unwrap();
    assert!(back.commit_responses(), "the second one wakes the frontend");
    for _ in 0..2 {
        assert!(front.next_response().is_some());
    }
    // Asking for more responses than are in flight would never be answered: clamped.
    assert!(!front.final_check_for_responses_after(100));
    assert_eq!(
        page.load_u32(offset::RSP_EVENT),
        3,
        "one request left in flight"
    );
    back.push_response(&rsp(2)).unwrap();
    assert!(back.commit_responses());
}

#[test]
fn a_full_ring_refuses_requests_until_a_response_is_consumed() {
    let page = TestPage::new();
    let mut front = Front::init(&page);
    let mut back = Back::attach(&page);
    for id in 0..u64::from(SIZE) {
        front.push_request(&req(id)).unwrap();
    }
    assert_eq!(front.push_request(&req(99)), Err(RingFull));
    assert_eq!(front.free_requests(), 0);
    let _ = front.commit_requests();
    let first = back.next_request().unwrap().unwrap();
    back.push_response(&rsp(first.id)).unwrap();
    assert_eq!(
        front.push_request(&req(99)),
        Err(RingFull),
        "not yet published"
    );
    let _ = back.commit_responses();
    assert_eq!(
        front.push_request(&req(99)),
        Err(RingFull),
        "not yet consumed"
    );
    assert_eq!(front.next_response(), Some(rsp(0)));
    assert_eq!(front.push_request(&req(4)), Ok(()));
}

#[test]
fn the_backend_cannot_respond_to_a_request_it_has_not_consumed() {
    let page = TestPage::new();
    let mut front = Front::init(&page);
    let mut back = Back::attach(&page);
    assert_eq!(back.push_response(&rsp(0)), Err(RingFull));
    front.push_request(&req(0)).unwrap();
    let _ = front.commit_requests();
    assert_eq!(back.push_response(&rsp(0)), Err(RingFull));
    back.next_request().unwrap().unwrap();
    assert_eq!(back.push_response(&rsp(0)), Ok(()));
}

#[test]
fn a_corrupt_req_prod_is_an_overflow() {
    let page = TestPage::new();
    let _front = Front::init(&page);
    let mut back = Back::attach(&page);
    page.store_u32(offset::REQ_PROD, SIZE);
    assert_eq!(back.unconsumed_requests(), Ok(SIZE), "exactly full is fine");
    page.store_u32(offset::REQ_PROD, SIZE + 1);
    let overflow = Err(RingError::Overflow {
        unconsumed: SIZE + 1,
        in_flight: 0,
        size: SIZE,
    });
    assert_eq!(back.next_request(), overflow);
    assert_eq!(
        back.final_check_for_requests().map(|_| ()),
        overflow.map(|_| ())
    );

    // Two consumed and unanswered requests still hold their slots.
    page.store_u32(offset::REQ_PROD, 2);
    back.next_request().unwrap().unwrap();
    back.next_request().unwrap().unwrap();
    page.store_u32(offset::REQ_PROD, 2 + SIZE - 1);
    assert_eq!(
        back.next_request(),
        Err(RingError::Overflow {
            unconsumed: SIZE - 1,
            in_flight: 2,
            size: SIZE,
        })
    );
    // req_prod moving backwards.
    page.store_u32(offset::REQ_PROD, 1);
    assert_eq!(
        back.next_request(),
        Err(RingError::Overflow {
            unconsumed: u32::MAX,
            in_flight: 2,
            size: SIZE,
        })
    );
    let message = format!("{}", back.next_request().unwrap_err());
    assert!(message.contains("4294967295 unconsumed"), "{message}");
}

#[test]
fn the_frontend_ignores_responses_it_did_not_ask_for() {
    let page = TestPage::new();
    let mut front = Front::init(&page);
    front.push_request(&req(0)).unwrap();
    front.push_request(&req(1)).unwrap();
    let _ = front.commit_requests();
    page.store_u32(offset::RSP_PROD, 3);
    assert_eq!(front.next_response(), None);
    assert!(front.backend_overflowed());
    page.store_u32(offset::RSP_PROD, u32::MAX);
    assert!(!front.final_check_for_responses());
    page.store_u32(offset::RSP_PROD, 2);
    assert!(front.next_response().is_some());
    assert!(front.next_response().is_some());
    assert_eq!(front.next_response(), None);
}

/// One step of a frontend or backend, for the model test.
#[derive(Clone, Debug)]
enum Op {
    Push(u8),
    CommitRequests,
    ConsumeResponses(u8),
    FrontFinalCheck,
    ConsumeRequests(u8),
    Respond(u8),
    CommitResponses,
    BackFinalCheck,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..6u8).prop_map(Op::Push),
        Just(Op::CommitRequests),
        (1..6u8).prop_map(Op::ConsumeResponses),
        Just(Op::FrontFinalCheck),
        (1..6u8).prop_map(Op::ConsumeRequests),
        (1..6u8).prop_map(Op::Respond),
        Just(Op::CommitResponses),
        Just(Op::BackFinalCheck),
    ]
}

/// The model test: a frontend and a backend on one page, each step atomic, with the
/// bookkeeping needed to check delivery, wake-ups and suppression.
struct Model<'p> {
    page: &'p TestPage,
    stores: &'p StoreCounts,
    front: Front<CountingPage<'p>>,
    back: Back<CountingPage<'p>>,
    pushed: u64,
    committed: u64,
    back_expects: u64,
    unanswered: VecDeque<u64>,
    answered_uncommitted: u64,
    front_expects: u64,
    front_asleep: bool,
    back_asleep: bool,
    /// Event-index arms seen at the last notification of each side.
    req_arms_at_notify: u32,
    rsp_arms_at_notify: u32,
    notifications: u32,
}

impl<'p> Model<'p> {
    fn new(page: &'p TestPage, stores: &'p StoreCounts, start: u32) -> Self {
        let front = Front::init_at(CountingPage { page, stores }, start);
        let back = Back::attach(CountingPage { page, stores });
        Self {
            page,
            stores,
            front,
            back,
            pushed: 0,
            committed: 0,
            back_expects: 0,
            unanswered: VecDeque::new(),
            answered_uncommitted: 0,
            front_expects: 0,
            front_asleep: false,
            back_asleep: false,
            req_arms_at_notify: 0,
            rsp_arms_at_notify: 0,
            notifications: 0,
        }
    }

    fn notify_backend(&mut self) -> Result<(), TestCaseError> {
        let arms = self.stores.at(offset::REQ_EVENT);
        prop_assert!(
            arms > self.req_arms_at_notify,
            "second notification without re-arm"
        );
        self.req_arms_at_notify = arms;
        self.notifications += 1;
        self.back_asleep = false;
        Ok(())
    }

    fn notify_frontend(&mut self) -> Result<(), TestCaseError> {
        let arms = self.stores.at(offset::RSP_EVENT);
        prop_assert!(
            arms > self.rsp_arms_at_notify,
            "second notification without re-arm"
        );
        self.rsp_arms_at_notify = arms;
        self.notifications += 1;
        self.front_asleep = false;
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            _ if self.front_asleep
                && matches!(
                    op,
                    Op::Push(_) | Op::CommitRequests | Op::ConsumeResponses(_)
                ) => {}
            _ if self.back_asleep
                && matches!(
                    op,
                    Op::ConsumeRequests(_) | Op::Respond(_) | Op::CommitResponses
                ) => {}
            Op::Push(n) => {
                for _ in 0..n {
                    let outstanding = self.pushed - self.front_expects;
                    prop_assert_eq!(
                        u64::from(self.front.free_requests()),
                        u64::from(SIZE) - outstanding
                    );
                    match self.front.push_request(&req(self.pushed)) {
                        Ok(()) => self.pushed += 1,
                        Err(RingFull) => prop_assert_eq!(outstanding, u64::from(SIZE)),
                    }
                }
            }
            Op::CommitRequests => {
                if self.front.commit_requests() {
                    self.notify_backend()?;
                }
                self.committed = self.pushed;
            }
            Op::ConsumeResponses(n) => {
                for _ in 0..n {
                    let Some(r) = self.front.next_response() else {
                        break;
                    };
                    prop_assert_eq!(r, rsp(self.front_expects), "responses in order, once");
                    self.front_expects += 1;
                }
            }
            Op::FrontFinalCheck => {
                // A frontend sleeps only with its requests published.
                if !self.front_asleep
                    && self.committed == self.pushed
                    && !self.front.final_check_for_responses()
                {
                    self.front_asleep = true;
                }
            }
            Op::ConsumeRequests(n) => {
                for _ in 0..n {
                    let Some(r) = self.back.next_request().map_err(fail)? else {
                        break;
                    };
                    prop_assert_eq!(r.id, self.back_expects, "requests in order, once");
                    assert_intact(&r);
                    self.back_expects += 1;
                    self.unanswered.push_back(r.id);
                }
            }
            Op::Respond(n) => {
                for _ in 0..n {
                    match self.unanswered.pop_front() {
                        Some(id) => {
                            self.back.push_response(&rsp(id)).map_err(fail)?;
                            self.answered_uncommitted += 1;
                        }
                        None => {
                            prop_assert_eq!(self.back.push_response(&rsp(0)), Err(RingFull));
                            break;
                        }
                    }
                }
            }
            Op::CommitResponses => {
                if self.back.commit_responses() {
                    self.notify_frontend()?;
                }
                self.answered_uncommitted = 0;
            }
            Op::BackFinalCheck => {
                // A backend sleeps only with every consumed request answered and published.
                if !self.back_asleep
                    && self.unanswered.is_empty()
                    && self.answered_uncommitted == 0
                    && !self.back.final_check_for_requests().map_err(fail)?
                {
                    self.back_asleep = true;
                }
            }
        }
        self.check_sleepers()
    }

    /// A sleeping consumer must have nothing to consume: otherwise its wake-up was lost.
    fn check_sleepers(&self) -> Result<(), TestCaseError> {
        if self.back_asleep {
            prop_assert_eq!(
                self.back.unconsumed_requests(),
                Ok(0),
                "backend asleep with requests pending: lost notification"
            );
        }
        if self.front_asleep {
            prop_assert!(
                !self.front.has_unconsumed_responses(),
                "frontend asleep with responses pending: lost notification"
            );
        }
        prop_assert!(!self.front.backend_overflowed());
        let _ = self.page;
        Ok(())
    }

    /// Runs both sides (as far as they are awake) until nothing changes, then checks that
    /// every request was answered.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let script = [
            Op::CommitRequests,
            Op::ConsumeRequests(u8::MAX),
            Op::Respond(u8::MAX),
            Op::CommitResponses,
            Op::ConsumeResponses(u8::MAX),
        ];
        loop {
            let before = (self.front_expects, self.back_expects, self.committed);
            for op in &script {
                self.step(op)?;
            }
            if before == (self.front_expects, self.back_expects, self.committed) {
                break;
            }
        }
        prop_assert_eq!(self.front_expects, self.pushed, "every request answered");
        Ok(())
    }
}

fn fail(e: impl core::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{e:?}"))
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(u32::MAX - 5), any::<u32>()]
}

proptest! {
    /// Random interleavings of whole operations: exactly-once in-order delivery, no sleeping
    /// consumer with work pending, at most one notification per armed event index.
    #[test]
    fn model_delivers_everything_and_loses_no_wakeup(
        start in start_index(),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let page = TestPage::new();
        let stores = StoreCounts::new();
        let mut model = Model::new(&page, &stores, start);
        for op in &ops {
            model.step(op)?;
        }
        model.drain()?;
        prop_assert!(u64::from(model.notifications) <= 2 * (ops.len() as u64 + 2));
    }

    /// Any `req_prod` a hostile frontend writes is either consistent or an `Overflow`.
    #[test]
    fn a_hostile_req_prod_never_panics(
        start in start_index(),
        produced in 0..=SIZE,
        consumed_pick in any::<u32>(),
        answered_pick in any::<u32>(),
        hostile in prop_oneof![any::<u32>(), (0..12u32)],
        relative in any::<bool>(),
    ) {
        let page = TestPage::new();
        let mut front = Front::init_at(&page, start);
        let mut back = Back::attach(&page);
        for id in 0..produced {
            front.push_request(&req(u64::from(id))).unwrap();
        }
        let _ = front.commit_requests();
        let consumed = consumed_pick % (produced + 1);
        for _ in 0..consumed {
            back.next_request().unwrap().unwrap();
        }
        let answered = answered_pick % (consumed + 1);
        for id in 0..answered {
            back.push_response(&rsp(u64::from(id))).unwrap();
        }
        let req_cons = start.wrapping_add(consumed);
        let value = if relative { req_cons.wrapping_add(hostile).wrapping_sub(4) } else { hostile };
        page.store_u32(offset::REQ_PROD, value);

        let in_flight = consumed - answered;
        let unconsumed = value.wrapping_sub(req_cons);
        let expect_overflow = unconsumed > SIZE - in_flight;
        let result = back.next_request();
        prop_assert_eq!(result.is_err(), expect_overflow, "{:?}", result);
        if let Err(e) = result {
            prop_assert_eq!(e, RingError::Overflow { unconsumed, in_flight, size: SIZE });
            prop_assert_eq!(back.final_check_for_requests(), Err(e));
        } else {
            prop_assert_eq!(result.unwrap().is_some(), unconsumed > 0);
        }
    }

    /// Any `rsp_prod` a broken backend writes yields at most the responses in flight.
    #[test]
    fn a_hostile_rsp_prod_yields_no_extra_responses(
        start in start_index(),
        in_flight in 0..=SIZE,
        hostile in any::<u32>(),
    ) {
        let page = TestPage::new();
        let mut front = Front::init_at(&page, start);
        for id in 0..in_flight {
            front.push_request(&req(u64::from(id))).unwrap();
        }
        let _ = front.commit_requests();
        page.store_u32(offset::RSP_PROD, hostile);
        let claimed = hostile.wrapping_sub(start);
        let mut got = 0;
        while front.next_response().is_some() {
            got += 1;
            prop_assert!(got <= in_flight);
        }
        prop_assert_eq!(got, if claimed <= in_flight { claimed } else { 0 });
        prop_assert_eq!(front.backend_overflowed(), claimed > in_flight);
    }
}

/// Runs a frontend that sends `total` requests in bursts and a backend that answers them, as
/// two actors interleaved at every shared-memory access.
fn run_ring_actors(choices: &[u8], total: u64, bursts: &[u8]) -> Result<(), std::string::String> {
    let page = TestPage::new();
    let stores = StoreCounts::new();
    // Initialise outside the actors: the frontend does this before it grants the page.
    let _ = Front::init(&page);
    let report = run_interleaved(
        choices,
        |actor| {
            let mut front = Front::init(actor.page(&page, &stores));
            let (mut sent, mut received, mut burst) = (0u64, 0u64, 0usize);
            while received < total {
                let want = bursts
                    .get(burst % bursts.len().max(1))
                    .copied()
                    .unwrap_or(1)
                    .max(1);
                burst += 1;
                for _ in 0..want {
                    if sent == total || front.push_request(&req(sent)).is_err() {
                        break;
                    }
                    sent += 1;
                }
                if front.commit_requests() {
                    actor.notify_other();
                }
                while let Some(r) = front.next_response() {
                    assert_eq!(r, rsp(received), "responses in order, once");
                    received += 1;
                }
                if received == total || (sent < total && front.free_requests() > 0) {
                    continue;
                }
                if !front.final_check_for_responses() {
                    actor.sleep();
                }
            }
            assert!(!front.backend_overflowed());
        },
        |actor| {
            let mut back = Back::attach(actor.page(&page, &stores));
            let mut answered = 0u64;
            loop {
                while let Some(r) = back.next_request().expect("honest frontend") {
                    assert_eq!(r.id, answered, "requests in order, once");
                    assert_intact(&r);
                    back.push_response(&rsp(r.id)).unwrap();
                    answered += 1;
                }
                if back.commit_responses() {
                    actor.notify_other();
                }
                if answered == total {
                    break;
                }
                if !back.final_check_for_requests().expect("honest frontend") {
                    actor.sleep();
                }
            }
        },
    )?;
    // Each notification needs a fresh arm of the target's event index.
    if report.notifications[1] > stores.at(offset::REQ_EVENT)
        || report.notifications[0] > stores.at(offset::RSP_EVENT)
    {
        return Err(format!(
            "more notifications {:?} than arms (req_event {}, rsp_event {})",
            report.notifications,
            stores.at(offset::REQ_EVENT),
            stores.at(offset::RSP_EVENT)
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The real implementation, interleaved at every shared access (including between a final
    /// check's store and its re-check): no lost wake-up, exactly-once in-order delivery.
    #[test]
    fn interleaved_front_and_back_lose_nothing(
        choices in proptest::collection::vec(any::<u8>(), 0..400),
        total in 1..24u64,
        bursts in proptest::collection::vec(1..6u8, 1..8),
    ) {
        run_ring_actors(&choices, total, &bursts).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn interleaved_round_robin_and_run_to_block() {
    // No choices: strict alternation. All zeros: each actor runs until it blocks.
    run_ring_actors(&[], 50, &[3]).unwrap();
    run_ring_actors(&[0; 4000], 50, &[1, 4]).unwrap();
}
