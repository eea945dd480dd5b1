//! Fatal cases: rings whose indices claim the impossible; the VMM must stop the guest (status 102).

use super::*;
use guest_sdk::println;

pub(super) fn ring_overflow() {
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

pub(super) fn ring_backwards() {
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

pub(super) fn console_overflow() {
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
    event_channel::notify(port);
}

pub(super) fn blk_ring_overflow() {
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
