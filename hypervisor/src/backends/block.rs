//! The PV block backend (docs/abi.md §10.2): requests from the ring, performed on a disk image,
//! in bounded batches (checking for a stop between them), each response published as it completes, the guest notified when it
//! asked (`rsp_event`).

use super::{BackendIo, Wake};
use crate::disk::{FileDisk, GuestDisk};
use crate::grants::{GrantMapping, GrantTable};
use pv_drivers::blkif::{BlkifBackRing, serve_batch};

/// Serves the ring until the VMM stops the backend.
pub fn serve(io: BackendIo, ring: GrantMapping, grants: GrantTable, disk: &FileDisk) {
    let mut ring = BlkifBackRing::attach(ring);
    let ram = grants.ram().clone();
    let store = GuestDisk { disk, ram: &ram };
    loop {
        // Requests may already be waiting when the frontend connects.
        let more = match serve_batch(&mut ring, &grants, &store, &mut || io.notify_guest()) {
            Ok(outcome) => outcome.more,
            Err(e) => {
                io.guest_fault(format!("block device {}: {e}", disk.path().display()));
                return;
            }
        };
        // Each batch is bounded: a stop is noticed within one batch however busy the ring is.
        // Requests left unserved were never answered, so the guest was told nothing about them.
        if io.stop_requested() {
            return;
        }
        if more {
            std::thread::yield_now();
        } else if io.wait(None) == Wake::Stop {
            return;
        }
    }
}
