//! The loopback test device's backend (docs/abi.md §10.1): answers requests about granted
//! pages, a batch per doorbell, one notification per batch.

use super::{Backend, BackendIo, Wake};
use crate::grant_table::{GrantMapping, GrantTable};
use crate::seccomp::Role;
use parapet_abi::device::kind;
use pv_drivers::loopback::{LoopbackBackRing, serve_batch};

/// The loopback test device (`--loopback`): no host resource.
#[derive(Debug, Default)]
pub struct Loopback;

impl Backend for Loopback {
    fn kind(&self) -> u32 {
        kind::LOOPBACK
    }

    fn role(&self) -> Role {
        Role::Loopback
    }

    fn serve(
        &self,
        rings: Vec<GrantMapping>,
        grants: GrantTable,
    ) -> Box<dyn FnOnce(BackendIo) + Send> {
        let [ring] = <[GrantMapping; 1]>::try_from(rings).expect("one ring");
        Box::new(move |io| serve(io, ring, grants))
    }
}

/// Serves the ring until the VMM stops the backend.
fn serve(io: BackendIo, ring: GrantMapping, grants: GrantTable) {
    let mut ring = LoopbackBackRing::attach(ring);
    loop {
        // Requests may already be waiting when the frontend connects.
        let more = match serve_batch(&mut ring, &grants) {
            Ok(outcome) => {
                if outcome.notify {
                    io.notify_guest();
                }
                outcome.more
            }
            Err(e) => {
                io.guest_fault(format!("loopback device: {e}"));
                return;
            }
        };
        // Batches are bounded: a stop is noticed within one however busy the ring is.
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
