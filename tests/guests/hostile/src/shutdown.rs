//! Shutdown requests (`VIRQ_SHUTDOWN`, docs/abi.md §7.5) from guests that do not play along.
//! Each case runs until the host sends `SIGTERM` to the VMM (tests/shutdown.rs); what the VMM
//! must then do is in the table of `main.rs`.

use super::*;
use guest_sdk::event_channel::PortStatus;
use guest_sdk::println;
use guest_sdk::shutdown::{self, ListenError};
use guest_sdk::timer;

/// Sleeps until the VMM ends this guest.
fn sleep_forever() -> ! {
    loop {
        timer::sleep(Duration::from_secs(3600));
    }
}

/// `shutdown-ignore`: listens (twice, and binds the VIRQ once more by hand), says when the
/// request arrives, and ignores it.
pub(super) fn ignore() -> u32 {
    let case = "shutdown-ignore";
    let port = match shutdown::listen() {
        Ok(p) => p,
        Err(e) => {
            println!("FAIL {case}: listen: {e}");
            return 1;
        }
    };
    if shutdown::listen() != Ok(port) {
        println!("FAIL {case}: a second listen gave another answer");
        return 1;
    }
    match event_channel::bind_virq(virq::SHUTDOWN) {
        Err(Errno::EEXIST) => {}
        other => {
            println!("FAIL {case}: binding VIRQ_SHUTDOWN again gave {other:?}, not -EEXIST");
            return 1;
        }
    }
    if event_channel::status(port) != Ok(PortStatus::Virq(virq::SHUTDOWN)) {
        println!("FAIL {case}: port {port} is not bound to VIRQ_SHUTDOWN");
        return 1;
    }
    println!("hostile: {case}: listening on port {port}");
    timer::wait_until(None, shutdown::requested);
    println!("hostile: {case}: request arrived; ignoring it");
    sleep_forever()
}

/// `shutdown-closed`: binds the VIRQ by hand (so the SDK's `listen` must refuse), closes the
/// port, binds and closes it once more, and sleeps: nobody listens, so `SIGTERM` must end the
/// VMM at once.
pub(super) fn closed() -> u32 {
    let case = "shutdown-closed";
    for round in 1..=2 {
        let port = match event_channel::bind_virq(virq::SHUTDOWN) {
            Ok(p) => p,
            Err(e) => {
                println!("FAIL {case}: bind {round}: {e}");
                return 1;
            }
        };
        if round == 1 && shutdown::listen() != Err(ListenError::AlreadyBound) {
            println!("FAIL {case}: listen did not say the VIRQ is bound already");
            return 1;
        }
        if let Err(e) = event_channel::close(port) {
            println!("FAIL {case}: close {round}: {e}");
            return 1;
        }
    }
    println!("hostile: {case}: bound and closed; nobody listens");
    sleep_forever()
}

/// `shutdown-poll`: listens, masks upcalls and spins on [`shutdown::requested`] without ever
/// blocking: the request must reach a guest that takes no upcall and makes no exit, through
/// the port's pending bit. Exits 0 when it sees it.
pub(super) fn poll() -> u32 {
    let case = "shutdown-poll";
    if let Err(e) = shutdown::listen() {
        println!("FAIL {case}: listen: {e}");
        return 1;
    }
    guest_sdk::console::flush();
    event_channel::disable_upcalls();
    println!("hostile: {case}: spinning with upcalls masked");
    while !shutdown::requested() {
        core::hint::spin_loop();
    }
    let upcalls = event_channel::upcall_count();
    event_channel::enable_upcalls();
    println!("hostile: {case}: request seen without an upcall ({upcalls} upcalls in all)");
    0
}
