//! Shared rings end to end with the loopback device: requests, responses, notifications,
//! failing requests, disconnecting and connecting again.

use super::*;
use crate::grant_copy::pattern;
use guest_sdk::println;

pub(super) static DEV_EVENTS: AtomicU32 = AtomicU32::new(0);

pub(super) fn on_device(_: Port) {
    DEV_EVENTS.fetch_add(1, Ordering::SeqCst);
}

pub(super) struct Expect {
    op: u32,
    value: u64,
}

pub(super) fn rings(c: &mut Checks, verbose: bool) {
    let mut lb = match Loopback::connect() {
        Ok(lb) => lb,
        Err(LoopbackError::NoDevice) => {
            println!("skip rings: no loopback device (run with --loopback)");
            return;
        }
        Err(e) => {
            c.fail("loopback connect", format_args!("{e}"));
            return;
        }
    };
    c.pass("loopback connect", format_args!(""));
    event_channel::set_handler(lb.port(), on_device);
    c.eq(
        "loopback port is connected to the backend",
        event_channel::status(lb.port()).map(|s| {
            matches!(
                s,
                PortStatus::Interdomain {
                    remote_dom: DOMID_BACKEND,
                    ..
                }
            )
        }),
        Ok(true),
    );
    let ring_gref = lb.ring_gref();
    c.that(
        "loopback ring grant held (GTF_writing)",
        grant_table::entry(ring_gref).is_some_and(|e| e.flags & gtf::WRITING != 0),
        format_args!("{:?}", grant_table::entry(ring_gref)),
    );
    c.eq(
        "grant end_access refused while the backend maps it",
        grant_table::end_access(ring_gref),
        Err(GrantError::Busy),
    );
    c.eq(
        "loopback connect twice",
        guest_sdk::device::connect(lb.index(), &[ring_gref]),
        Err(Errno::EBUSY),
    );

    // Data pages: two writable (FILL targets), one read-only with a known pattern.
    let fills = [PageBox::new(), PageBox::new()];
    let src = PageBox::new();
    let bytes: Vec<u8> = (0..4096).map(pattern).collect();
    src.write(0, &bytes);
    let gfill: Vec<GrantRef> = fills
        .iter()
        .map(|p| grant_table::grant_access(p.frame(), DOMID_BACKEND, false).unwrap())
        .collect();
    let gsrc = grant_table::grant_access(src.frame(), DOMID_BACKEND, true).unwrap();

    // 300 requests (ring of 64), pushed in bursts of up to 48, answered as they come.
    const TOTAL: u64 = 300;
    let mut expect: Vec<Expect> = Vec::new();
    let mut requests: Vec<LoopbackRequest> = Vec::new();
    for id in 0..TOTAL {
        let (op, gref, offset, len, value, want) = match id % 4 {
            0 | 3 => (LOOPBACK_OP_ECHO, 0, 0, 0, id * 1_000_003, id * 1_000_003),
            1 => {
                let off = (id as u32 * 37) % 3000;
                let len = 1 + (id as u32 * 11) % 1000;
                let sum: u64 = bytes[off as usize..(off + len) as usize]
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum();
                (LOOPBACK_OP_SUM, gsrc.0, off, len, 0, sum)
            }
            _ => {
                // FILL: page (id/2)%2, a 64-byte stripe chosen by id.
                let page = ((id / 2) % 2) as usize;
                let stripe = ((id / 4) % 64) as u32;
                (
                    LOOPBACK_OP_FILL,
                    gfill[page].0,
                    stripe * 64,
                    64,
                    u64::from(stripe as u8 ^ 0xa5),
                    0,
                )
            }
        };
        requests.push(LoopbackRequest {
            id,
            op,
            gref,
            offset,
            len,
            value,
        });
        expect.push(Expect { op, value: want });
    }
    let events_before = DEV_EVENTS.load(Ordering::SeqCst);
    let t0 = rdtsc();
    let mut next = 0usize;
    let mut answered = 0u64;
    let mut wrong = Vec::new();
    let mut seen = alloc::vec![false; TOTAL as usize];
    let mut batches = 0u64;
    let give_up = time::now() + Duration::from_secs(5);
    while answered < TOTAL && time::now() < give_up {
        let mut pushed = 0;
        while next < requests.len()
            && pushed < 48
            && lb.ring().push_request(&requests[next]).is_ok()
        {
            next += 1;
            pushed += 1;
        }
        if pushed > 0 {
            batches += 1;
            lb.commit();
        }
        let mut got_any = false;
        while let Some(r) = lb.poll_response() {
            got_any = true;
            answered += 1;
            check_response(&r, &expect, &mut seen, &mut wrong);
        }
        if !got_any
            && lb
                .wait_response_until(give_up)
                .map(|r| {
                    answered += 1;
                    check_response(&r, &expect, &mut seen, &mut wrong);
                })
                .is_none()
        {
            break;
        }
    }
    let cycles = rdtsc().wrapping_sub(t0);
    c.eq("loopback 300 requests answered", answered, TOTAL);
    c.that(
        "loopback every id answered once",
        seen.iter().all(|&s| s),
        format_args!("missing ids"),
    );
    c.that(
        "loopback answers correct",
        wrong.is_empty(),
        format_args!("{} wrong, first {:?}", wrong.len(), wrong.first()),
    );
    let mut fill_ok = true;
    for (p, page) in fills.iter().enumerate() {
        let got = page.to_array();
        for stripe in 0..64u32 {
            // Stripe s of page p was filled by a request with id%4==2, (id/2)%2==p, (id/4)%64==s.
            let filled = (0..TOTAL).any(|id| {
                id % 4 == 2 && ((id / 2) % 2) as usize == p && (id / 4) % 64 == u64::from(stripe)
            });
            let want = if filled { stripe as u8 ^ 0xa5 } else { 0 };
            let s = stripe as usize * 64;
            if got[s..s + 64].iter().any(|&x| x != want) {
                fill_ok = false;
            }
        }
    }
    c.that(
        "loopback FILLed pages have the right contents",
        fill_ok,
        format_args!("wrong bytes"),
    );
    let doorbells = lb.notifies();
    let response_events = DEV_EVENTS.load(Ordering::SeqCst) - events_before;
    c.that(
        "loopback notifications suppressed",
        doorbells <= batches,
        format_args!("{doorbells} doorbells for {batches} batches"),
    );
    // How many responses raised an event depends on how the backend's pace and the guest's
    // interleave (a loaded host can answer each request before the next is pushed): an
    // observation for benchmarks, not a property to check.
    c.note(
        "loopback response events",
        format_args!("{response_events} for {TOTAL} responses"),
    );
    println!(
        "  loopback: {TOTAL} requests in {batches} batches (ring {LOOPBACK_RING_SIZE}), \
         {doorbells} doorbells, \
         {response_events} response events, {} waits, {} us total",
        lb.waits(),
        micros(cycles)
    );
    if verbose {
        println!("  loopback: {} us per request", micros(cycles / TOTAL));
    }

    // Failing requests fail alone.
    let bad = [
        LoopbackRequest {
            id: 1000,
            op: LOOPBACK_OP_FILL,
            gref: gsrc.0,
            offset: 0,
            len: 16,
            value: 1,
        },
        LoopbackRequest {
            id: 1001,
            op: LOOPBACK_OP_SUM,
            gref: gsrc.0,
            offset: 4000,
            len: 200,
            value: 0,
        },
        LoopbackRequest {
            id: 1002,
            op: 77,
            gref: gsrc.0,
            offset: 0,
            len: 1,
            value: 0,
        },
        LoopbackRequest {
            id: 1003,
            op: LOOPBACK_OP_SUM,
            gref: 4000,
            offset: 0,
            len: 1,
            value: 0,
        },
        LoopbackRequest {
            id: 1004,
            op: LOOPBACK_OP_ECHO,
            gref: 0,
            offset: 0,
            len: 0,
            value: 99,
        },
    ];
    for r in &bad {
        let _ = lb.ring().push_request(r);
    }
    lb.commit();
    let mut statuses = Vec::new();
    for _ in 0..bad.len() {
        match lb.wait_response_until(time::now() + Duration::from_secs(2)) {
            Some(r) => statuses.push((r.id, r.status)),
            None => break,
        }
    }
    let e = LOOPBACK_STATUS_ERROR;
    c.eq(
        "loopback bad requests fail alone",
        statuses,
        alloc::vec![
            (1000, e),
            (1001, e),
            (1002, e),
            (1003, e),
            (1004, LOOPBACK_STATUS_OK)
        ],
    );
    c.that(
        "loopback FILL on read-only grant left it unchanged",
        src.to_array()[..] == bytes[..],
        format_args!("changed"),
    );
    c.eq(
        "loopback data grants released",
        gfill.iter().chain([&gsrc]).any(|&g| grant_table::in_use(g)),
        false,
    );

    // Disconnect, then the ring grant can be revoked; connect again.
    event_channel::clear_handler(lb.port());
    match lb.disconnect() {
        Ok(()) => c.pass("loopback disconnect + ring end_access", format_args!("")),
        Err(e) => c.fail("loopback disconnect", format_args!("{e}")),
    }
    match Loopback::connect() {
        Ok(mut lb) => {
            let _ = lb.submit(&LoopbackRequest {
                id: 7,
                op: LOOPBACK_OP_ECHO,
                value: 0x1234,
                ..Default::default()
            });
            let r = lb.wait_response_until(time::now() + Duration::from_secs(2));
            c.eq(
                "loopback reconnect echo",
                r.map(|r| (r.id, r.status, r.value)),
                Some((7, 0, 0x1234)),
            );
            c.that(
                "loopback disconnect again",
                lb.disconnect().is_ok(),
                format_args!("failed"),
            );
        }
        Err(e) => c.fail("loopback reconnect", format_args!("{e}")),
    }
    for g in gfill.into_iter().chain([gsrc]) {
        let _ = grant_table::end_access(guest_sdk::grant_table::GrantRef(g.0));
    }
}

pub(super) fn check_response(
    r: &LoopbackResponse,
    expect: &[Expect],
    seen: &mut [bool],
    wrong: &mut Vec<(u64, i32, u64)>,
) {
    let Some(e) = expect.get(r.id as usize) else {
        wrong.push((r.id, r.status, r.value));
        return;
    };
    if seen[r.id as usize]
        || r.status != LOOPBACK_STATUS_OK
        || (e.op != LOOPBACK_OP_FILL && r.value != e.value)
    {
        wrong.push((r.id, r.status, r.value));
    }
    seen[r.id as usize] = true;
}
