//! The PV block backend (docs/abi.md §10.2): requests from the ring, performed on a disk image,
//! in bounded batches (checking for a stop between them), each response published as it completes, the guest notified when it
//! asked (`rsp_event`).

mod image;

pub use image::DiskImage;

use super::{Backend, BackendIo, Wake};
use crate::grant_table::{GrantMapping, GrantTable};
use crate::seccomp::Role;
use image::GuestDisk;
use parapet_abi::device::{DeviceInfo, kind};
use pv_drivers::blkif::{BlkifBackRing, serve_batch};
use std::sync::Arc;

/// A PV block device over a disk image (`--disk`).
#[derive(Debug)]
pub struct BlockDevice {
    image: Arc<DiskImage>,
}

impl BlockDevice {
    /// The block device over `image`.
    pub fn new(image: DiskImage) -> BlockDevice {
        BlockDevice {
            image: Arc::new(image),
        }
    }
}

impl Backend for BlockDevice {
    fn kind(&self) -> u32 {
        kind::BLOCK
    }

    fn role(&self) -> Role {
        Role::Block
    }

    fn source(&self) -> String {
        let path = self.image.absolute_path().display().to_string();
        if self.image.read_only() {
            format!("{path},readonly")
        } else {
            path
        }
    }

    fn describe(&self, info: &mut DeviceInfo) {
        use parapet_abi::blkif::{CONFIG_MAX_INDIRECT_SEGMENTS, CONFIG_SECTORS, flags};
        info.config[CONFIG_SECTORS] = self.image.sectors();
        info.config[CONFIG_MAX_INDIRECT_SEGMENTS] = pv_drivers::blkif::MAX_INDIRECT_SEGMENTS as u64;
        info.flags = flags::FLUSH | flags::DISCARD;
        if self.image.read_only() {
            info.flags |= flags::READONLY;
        }
    }

    fn serve(
        &self,
        rings: Vec<GrantMapping>,
        grants: GrantTable,
    ) -> Box<dyn FnOnce(BackendIo) + Send> {
        let [ring] = <[GrantMapping; 1]>::try_from(rings).expect("one ring");
        let image = self.image.clone();
        Box::new(move |io| serve(io, ring, grants, &image))
    }
}

/// Serves the ring until the VMM stops the backend.
fn serve(io: BackendIo, ring: GrantMapping, grants: GrantTable, disk: &DiskImage) {
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
