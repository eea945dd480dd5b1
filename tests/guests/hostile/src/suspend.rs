//! Suspending at bad moments (`SHUTDOWN_suspend`, docs/abi.md §3.6): with requests in flight,
//! with a garbage ring index, and 10,000 times in a row.
//!
//! These cases work with and without `parapet run --snapshot FILE`. Without it, every suspend
//! returns `NotAvailable` and the case goes on in the same domain. With it, the first suspend
//! ends the VMM (status 0, the snapshot written) and `parapet restore FILE` continues the case
//! from there, where the suspend returns `Restored`. Either way the suspend must return with one
//! of the documented answers (`Restored`, `Cancelled`, `NotAvailable`), and the guest must go on.

use super::*;
use alloc::format;
use guest_sdk::snapshot::{self, Resumed, SuspendError};

/// Requests `suspend-in-flight` queues before it suspends (the ring has 64 slots).
const IN_FLIGHT: u64 = 48;
/// The byte `suspend-in-flight`'s SUM requests add up.
const SUM_BYTE: u8 = 0x07;
/// How many suspends `suspend-storm` makes.
const STORM: u32 = 10_000;

/// Checks that a suspend returned one of the documented answers.
fn returned(r: &mut Report, case: &str, got: Result<Resumed, SuspendError>) {
    r.check(
        &format!("{case} suspend returned"),
        !matches!(got, Err(SuspendError::Refused(_))),
        format_args!("{got:?}"),
    );
}

pub(super) fn suspend_in_flight(r: &mut Report) {
    let case = "suspend-in-flight";
    let Some(mut lb) = loopback(r, case) else {
        return;
    };
    let data = PageBox::new();
    data.write(0, &[SUM_BYTE; PAGE_SIZE as usize]);
    let gref = match grant_table::grant_access(data.frame(), DOMID_BACKEND, true) {
        Ok(g) => g,
        Err(e) => {
            r.check(case, false, format_args!("grant: {e}"));
            disconnect(r, case, lb);
            return;
        }
    };
    // Echoes and SUMs over the granted page, alternately; all published with one doorbell.
    let want = |id: u64| {
        if id.is_multiple_of(2) {
            (LOOPBACK_STATUS_OK, id * 3 + 1)
        } else {
            (LOOPBACK_STATUS_OK, u64::from(SUM_BYTE) * PAGE_SIZE)
        }
    };
    for id in 0..IN_FLIGHT {
        let req = if id.is_multiple_of(2) {
            request(id, LOOPBACK_OP_ECHO, 0, 0, 0, want(id).1)
        } else {
            request(id, LOOPBACK_OP_SUM, gref.0, 0, PAGE_SIZE as u32, 0)
        };
        if lb.ring().push_request(&req).is_err() {
            r.check(case, false, format_args!("ring full at request {id}"));
            break;
        }
    }
    let _ = lb.ring().commit_requests();
    lb.kick();
    let got = snapshot::suspend();
    returned(r, case, got);
    // Every response must come, and be right. Poll in short waits, in case an answer comes
    // without its event.
    let deadline = time::now() + Duration::from_secs(2);
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    while (seen.len() as u64) < IN_FLIGHT && time::now() < deadline {
        let window = (time::now() + Duration::from_millis(50)).min(deadline);
        let Some(rsp) = lb.wait_response_until(window) else {
            continue;
        };
        if rsp.id >= IN_FLIGHT || seen.contains(&rsp.id) || (rsp.status, rsp.value) != want(rsp.id)
        {
            wrong.push((rsp.id, rsp.status, rsp.value));
        } else {
            seen.push(rsp.id);
        }
    }
    r.check(
        &format!("{case} responses are right"),
        wrong.is_empty(),
        format_args!("{} right, wrong (id, status, value): {wrong:?}", seen.len()),
    );
    if seen.len() as u64 == IN_FLIGHT {
        r.pass(
            &format!("{case} responses"),
            format_args!(": all {IN_FLIGHT} arrived"),
        );
    } else {
        r.note(
            &format!("{case} responses"),
            format_args!(
                "{} of {IN_FLIGHT} arrived within 2 s; the device must still disconnect",
                seen.len()
            ),
        );
    }
    let res = lb.disconnect();
    r.check(
        &format!("{case} disconnect"),
        res.is_ok(),
        format_args!("{res:?}"),
    );
    if res.is_ok() {
        let end = grant_table::end_access(gref);
        r.check(
            &format!("{case} the data page's grant is revocable"),
            end.is_ok(),
            format_args!("{end:?}"),
        );
        if end.is_err() {
            core::mem::forget(data);
        }
    } else {
        // The backend may still map the page: never give it back to the heap.
        core::mem::forget(data);
    }
}

pub(super) fn suspend_bad_ring(r: &mut Report) {
    let case = "suspend-bad-ring";
    let Some(mut lb) = loopback(r, case) else {
        return;
    };
    let got = one(&mut lb, request(1, LOOPBACK_OP_ECHO, 0, 0, 0, 11));
    r.check(
        &format!("{case} device works"),
        got == Some((LOOPBACK_STATUS_OK, 11)),
        format_args!("{got:?}"),
    );
    // Let the backend finish its final check and go to sleep before the index turns bad.
    guest_sdk::timer::sleep(Duration::from_millis(20));
    let page = lb.ring().page();
    let prod = page.load_u32(ring_offset::REQ_PROD);
    page.store_u32(ring_offset::REQ_PROD, prod.wrapping_add(1 << 30));
    // No doorbell: the garbage only lies in the ring page the snapshot saves.
    let got = snapshot::suspend();
    returned(r, case, got);
    let res = lb.disconnect();
    r.check(
        &format!("{case} disconnect"),
        res.is_ok(),
        format_args!("{res:?}"),
    );
    // The device answers a fresh connection.
    if let Some(mut lb) = loopback(r, case) {
        let got = one(&mut lb, request(2, LOOPBACK_OP_ECHO, 0, 0, 0, 22));
        r.check(
            &format!("{case} a new connection answers"),
            got == Some((LOOPBACK_STATUS_OK, 22)),
            format_args!("{got:?}"),
        );
        disconnect(r, case, lb);
    }
}

pub(super) fn suspend_storm(r: &mut Report) {
    let (mut restored, mut cancelled, mut unavailable, mut refused) = (0u32, 0u32, 0u32, 0u32);
    let mut first_refusal = None;
    for _ in 0..STORM {
        match snapshot::suspend() {
            Ok(Resumed::Restored { .. }) => restored += 1,
            Ok(Resumed::Cancelled) => cancelled += 1,
            Err(SuspendError::NotAvailable) => unavailable += 1,
            Err(e @ SuspendError::Refused(_)) => {
                refused += 1;
                first_refusal.get_or_insert(e);
            }
        }
    }
    r.check(
        "suspend-storm every suspend returned",
        refused == 0,
        format_args!(
            "{STORM} suspends: {restored} restored, {cancelled} cancelled, {unavailable} not \
             available, {refused} refused (first: {first_refusal:?})"
        ),
    );
}
