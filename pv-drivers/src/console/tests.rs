use std::format;
use std::string::String;
use std::sync::atomic::{AtomicU32, Ordering};
use std::vec::Vec;

use parapet_abi::console::{CONSOLE_EOF, console_offset};
use proptest::prelude::*;

use super::{ConsoleBack, ConsoleError, ConsoleFront, ConsoleRing};
use crate::shared::{SharedPage, TestPage};
use crate::testutil::{StoreCounts, run_interleaved};

fn drain_all<P: SharedPage>(back: &mut ConsoleBack<P>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let notify = back
        .drain_output(|bytes| out.extend_from_slice(bytes))
        .unwrap();
    (out, notify)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn output_round_trips_and_notifies_a_sleeping_backend_once() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    let mut back = ConsoleBack::attach(&page);
    // Fresh page: out_event = 0, the backend starts awake, so no notification.
    assert_eq!(front.write(b"hello "), (6, false));
    assert!(back.prepare_to_sleep(), "output is waiting");
    assert_eq!(drain_all(&mut back), (b"hello ".to_vec(), false));
    assert!(!back.prepare_to_sleep());
    assert_eq!(page.load_u32(console_offset::OUT_EVENT), 7);
    assert_eq!(front.write(b"world"), (5, true), "backend asleep");
    assert_eq!(front.write(b"!"), (1, false), "already notified");
    assert_eq!(front.pending_output(), 6);
    assert_eq!(drain_all(&mut back), (b"world!".to_vec(), false));
    assert_eq!(front.pending_output(), 0);
    assert_eq!(drain_all(&mut back), (Vec::new(), false));
}

#[test]
fn output_wraps_around_the_ring() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    let mut back = ConsoleBack::attach(&page);
    let data = pattern(5000, 7);
    let mut seen = Vec::new();
    for chunk in data.chunks(1500) {
        assert_eq!(front.write(chunk).0, chunk.len());
        seen.extend(drain_all(&mut back).0);
    }
    assert_eq!(seen, data);
}

#[test]
fn a_full_output_ring_asks_for_space() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    let mut back = ConsoleBack::attach(&page);
    let data = pattern(3000, 1);
    assert_eq!(front.write(&data).0, 2048);
    assert_eq!(front.write(&data[2048..]), (0, false));
    assert_eq!(front.output_space(), 0);
    assert!(!front.request_space_notification(), "still full: sleep");
    assert_eq!(page.load_u32(console_offset::OUT_SPACE_EVENT), 1);
    let (out, notify) = drain_all(&mut back);
    assert_eq!((out.as_slice(), notify), (&data[..2048], true));
    assert!(
        front.request_space_notification(),
        "space now (armed anyway)"
    );
    assert_eq!(front.write(&data[2048..]).0, 952);
    assert_eq!(
        drain_all(&mut back),
        (data[2048..].to_vec(), true),
        "spurious"
    );
    assert_eq!(front.write(b"x").0, 1);
    assert_eq!(drain_all(&mut back), (b"x".to_vec(), false), "no one waits");
}

#[test]
fn a_flush_waits_for_the_ring_to_empty() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    let mut back = ConsoleBack::attach(&page);
    assert!(front.request_drain_notification(), "empty");
    assert_eq!(front.write(b"abc").0, 3);
    assert!(!front.request_drain_notification(), "sleep until drained");
    assert_eq!(page.load_u32(console_offset::OUT_SPACE_EVENT), 1);
    assert_eq!(drain_all(&mut back), (b"abc".to_vec(), true));
    assert!(front.request_drain_notification());
}

#[test]
fn input_honours_in_event_and_the_guest_notifies_after_reading() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    let mut back = ConsoleBack::attach(&page);
    let mut buf = [0; 64];
    assert_eq!(front.read(&mut buf), (0, false));
    assert_eq!(back.push_input(b"ab"), Ok((2, false)), "guest did not ask");
    assert!(front.want_input(), "input already waiting");
    assert_eq!(front.read(&mut buf), (2, true));
    assert_eq!(&buf[..2], b"ab");
    assert!(!front.want_input());
    assert_eq!(back.push_input(b"cd"), Ok((2, true)));
    assert_eq!(back.push_input(b"e"), Ok((1, false)), "already notified");

    let big = pattern(2000, 3);
    assert_eq!(back.input_space(), Ok(1021));
    assert_eq!(back.push_input(&big), Ok((1021, false)));
    assert_eq!(back.push_eof(), Ok((false, false)), "ring full");
    assert_eq!(front.pending_input(), 1024);
    let mut all = [0; 2000];
    assert_eq!(front.read(&mut all), (1024, true));
    assert_eq!(&all[..3], b"cde");
    assert_eq!(&all[3..1024], &big[..1021]);
    assert_eq!(back.push_eof(), Ok((true, false)));
    assert_eq!(front.read(&mut all), (1, true));
    assert_eq!(all[0], CONSOLE_EOF);
}

#[test]
fn hostile_guest_indices_are_errors() {
    let page = TestPage::new();
    let mut back = ConsoleBack::attach(&page);
    page.store_u32(console_offset::OUT_PROD, 2049);
    let mut called = false;
    let overflow = ConsoleError::Overflow {
        ring: ConsoleRing::Output,
        unconsumed: 2049,
        size: 2048,
    };
    assert_eq!(back.drain_output(|_| called = true), Err(overflow));
    assert!(!called, "nothing passed on");
    assert!(
        back.prepare_to_sleep(),
        "reports work so the caller drains and sees the error"
    );
    page.store_u32(console_offset::OUT_PROD, 2048);
    assert_eq!(back.drain_output(|b| assert_eq!(b.len(), 2048)), Ok(false));
    page.store_u32(console_offset::OUT_PROD, 2047);
    assert!(matches!(
        back.drain_output(|_| called = true),
        Err(ConsoleError::Overflow {
            unconsumed: u32::MAX,
            ..
        })
    ));

    page.store_u32(console_offset::IN_CONS, 1);
    let input_overflow = ConsoleError::Overflow {
        ring: ConsoleRing::Input,
        unconsumed: u32::MAX,
        size: 1024,
    };
    assert_eq!(back.push_input(b"x"), Err(input_overflow));
    assert_eq!(back.push_eof(), Err(input_overflow));
    let message = format!("{input_overflow}");
    assert!(message.contains("in_cons claims 4294967295"), "{message}");
}

#[test]
fn the_frontend_survives_a_hostile_backend() {
    let page = TestPage::new();
    let mut front = ConsoleFront::new(&page);
    page.store_u32(console_offset::OUT_CONS, 5);
    assert_eq!(
        front.pending_output(),
        2048,
        "cons ahead of prod looks full"
    );
    assert_eq!(front.write(b"x"), (0, false));
    page.store_u32(console_offset::IN_PROD, 1025);
    assert_eq!(front.pending_input(), 0);
    assert_eq!(front.read(&mut [0; 8]), (0, false));
    assert!(!front.want_input());
}

/// A console page that has carried `start` bytes each way: every index and event index is
/// `start` (as the zeroed page has 0).
fn page_at(start: u32) -> TestPage {
    let page = TestPage::new();
    for at in [
        console_offset::IN_CONS,
        console_offset::IN_PROD,
        console_offset::OUT_CONS,
        console_offset::OUT_PROD,
        console_offset::OUT_EVENT,
        console_offset::IN_EVENT,
        console_offset::OUT_SPACE_EVENT,
    ] {
        page.store_u32(at, start);
    }
    page
}

proptest! {
    /// Any `out_prod` or `in_cons` a hostile guest writes is either consistent or an error;
    /// nothing panics and no byte is passed on from an inconsistent ring.
    #[test]
    fn hostile_guest_indices_never_panic(
        start in prop_oneof![Just(0u32), Just(u32::MAX - 100), any::<u32>()],
        written in 0..2048usize,
        drained in any::<bool>(),
        out_prod in prop_oneof![any::<u32>(), 0..4200u32],
        in_pushed in 0..1024usize,
        in_cons in prop_oneof![any::<u32>(), 0..2100u32],
        relative in any::<bool>(),
    ) {
        let page = page_at(start);
        let mut front = ConsoleFront::new(&page);
        let mut back = ConsoleBack::attach(&page);
        prop_assert_eq!(front.write(&pattern(written, 0)).0, written);
        let out_cons = if drained { drain_all(&mut back).0.len() as u32 } else { 0 };
        let out_cons = start.wrapping_add(out_cons);
        let out_prod = if relative { out_cons.wrapping_add(out_prod).wrapping_sub(100) } else { out_prod };
        page.store_u32(console_offset::OUT_PROD, out_prod);
        let unconsumed = out_prod.wrapping_sub(out_cons);
        let mut got = 0;
        let result = back.drain_output(|bytes| got += bytes.len());
        if unconsumed > 2048 {
            prop_assert_eq!(result, Err(ConsoleError::Overflow {
                ring: ConsoleRing::Output, unconsumed, size: 2048 }));
            prop_assert_eq!(got, 0);
        } else {
            prop_assert!(result.is_ok());
            prop_assert_eq!(got, unconsumed as usize);
        }

        prop_assert_eq!(back.push_input(&pattern(in_pushed, 1)), Ok((in_pushed, false)));
        let in_prod = start.wrapping_add(in_pushed as u32);
        let in_cons = if relative { in_prod.wrapping_sub(in_cons).wrapping_add(100) } else { in_cons };
        page.store_u32(console_offset::IN_CONS, in_cons);
        let unconsumed = in_prod.wrapping_sub(in_cons);
        let result = back.push_input(b"more");
        if unconsumed > 1024 {
            prop_assert_eq!(result, Err(ConsoleError::Overflow {
                ring: ConsoleRing::Input, unconsumed, size: 1024 }));
        } else {
            let accepted = (1024 - unconsumed as usize).min(4);
            prop_assert_eq!(result.map(|(n, _)| n), Ok(accepted));
        }
    }
}

/// The guest writes `output` in `chunks`, reads input until EOF and flushes; the VMM drains output and
/// pushes `input` then EOF in `chunks`; the two are interleaved at every shared access.
fn run_console_actors(
    choices: &[u8],
    start: u32,
    output: &[u8],
    input: &[u8],
    chunks: &[u16],
) -> Result<(), String> {
    let page = page_at(start);
    let stores = StoreCounts::new();
    let chunk = |i: &mut usize| {
        *i += 1;
        usize::from(chunks[*i % chunks.len()]).max(1)
    };
    let (output_notifies, space_notifies, input_notifies) =
        (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    run_interleaved(
        choices,
        |actor| {
            let mut front = ConsoleFront::new(actor.page(&page, &stores));
            let (mut written, mut got, mut eof, mut i) = (0, Vec::new(), false, 0);
            loop {
                let mut progress = false;
                if written < output.len() {
                    let end = output.len().min(written + chunk(&mut i));
                    let (n, notify) = front.write(&output[written..end]);
                    if notify {
                        output_notifies.fetch_add(1, Ordering::Relaxed);
                        actor.notify_other();
                    }
                    written += n;
                    progress |= n > 0;
                }
                if !eof {
                    let mut buf = std::vec![0; chunk(&mut i)];
                    let (n, notify) = front.read(&mut buf);
                    if notify {
                        actor.notify_other();
                    }
                    for &byte in &buf[..n] {
                        assert!(!eof, "input after EOF");
                        if byte == CONSOLE_EOF {
                            eof = true;
                        } else {
                            got.push(byte);
                        }
                    }
                    progress |= n > 0;
                }
                // Finish with a flush: wait until the backend consumed everything.
                if written == output.len() && eof && front.pending_output() == 0 {
                    break;
                }
                if progress || (!eof && front.want_input()) {
                    continue;
                }
                if written < output.len() {
                    if front.request_space_notification() {
                        continue;
                    }
                } else if front.request_drain_notification() && eof {
                    continue; // flushed
                }
                actor.sleep();
            }
            assert_eq!(got, input, "input arrives in order, once");
        },
        |actor| {
            let mut back = ConsoleBack::attach(actor.page(&page, &stores));
            let (mut got, mut pushed, mut eof_pushed, mut i) = (Vec::new(), 0, false, 0);
            loop {
                let before = got.len();
                let notify = back
                    .drain_output(|bytes| got.extend_from_slice(bytes))
                    .expect("honest guest");
                if notify {
                    space_notifies.fetch_add(1, Ordering::Relaxed);
                    actor.notify_other();
                }
                let mut progress = got.len() > before;
                let notify = if pushed < input.len() {
                    let end = input.len().min(pushed + chunk(&mut i));
                    let (n, notify) = back.push_input(&input[pushed..end]).expect("honest");
                    pushed += n;
                    progress |= n > 0;
                    notify
                } else if !eof_pushed {
                    let (accepted, notify) = back.push_eof().expect("honest guest");
                    eof_pushed = accepted;
                    progress |= accepted;
                    notify
                } else {
                    false
                };
                if notify {
                    input_notifies.fetch_add(1, Ordering::Relaxed);
                    actor.notify_other();
                }
                if got.len() == output.len() && eof_pushed {
                    break;
                }
                if progress || back.prepare_to_sleep() {
                    continue;
                }
                actor.sleep();
            }
            assert_eq!(got, output, "output arrives in order, once");
        },
    )?;
    // Suppression: each notification needs a fresh arm of its event index.
    for (what, sent, at) in [
        ("output", &output_notifies, console_offset::OUT_EVENT),
        ("space", &space_notifies, console_offset::OUT_SPACE_EVENT),
        ("input", &input_notifies, console_offset::IN_EVENT),
    ] {
        let (sent, arms) = (sent.load(Ordering::Relaxed), stores.at(at));
        if sent > arms {
            return Err(format!("{sent} {what} notifications for {arms} arms"));
        }
    }
    Ok(())
}

fn no_eof(bytes: Vec<u8>) -> Vec<u8> {
    bytes
        .into_iter()
        .map(|b| if b == CONSOLE_EOF { b'.' } else { b })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Both directions interleaved at every shared access: bytes arrive in order, none lost
    /// or duplicated, no lost wake-up (with full rings in both directions), notifications
    /// suppressed.
    #[test]
    fn interleaved_console_loses_nothing(
        choices in proptest::collection::vec(any::<u8>(), 0..400),
        start in prop_oneof![Just(0u32), Just(u32::MAX - 3000), any::<u32>()],
        output in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..5000),
            proptest::collection::vec(any::<u8>(), 2049..9000),
        ],
        input in prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..2500).prop_map(no_eof),
        ],
        chunks in proptest::collection::vec(1..1500u16, 1..6),
    ) {
        run_console_actors(&choices, start, &output, &input, &chunks)
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn interleaved_console_round_robin() {
    let (output, input) = (pattern(6000, 9), no_eof(pattern(3000, 4)));
    run_console_actors(&[], 0, &output, &input, &[700]).unwrap();
    run_console_actors(&[15; 2000], u32::MAX - 10, &output, &input, &[3000, 1]).unwrap();
}
