//! The PV network backend (docs/abi.md §10.3): frames between the guest's rings and a host TAP
//! device, in batches, one notification per batch.

mod tap;

pub use tap::{Tap, check_inherited};

use super::{Backend, BackendIo, Wake};
use crate::grant_table::{GrantMapping, GrantTable};
use crate::seccomp::Role;
use parapet_abi::device::{DeviceInfo, kind};
use pv_drivers::netif::{
    NetCounters, NetifRxBackRing, NetifTxBackRing, PacketError, PacketIo, serve_rx, serve_tx,
};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// A PV network interface on a host TAP device (`--net`).
#[derive(Debug)]
pub struct NetDevice {
    tap: Arc<Tap>,
    counters: SharedCounters,
}

impl NetDevice {
    /// The interface on `tap`.
    pub fn new(tap: Tap) -> NetDevice {
        NetDevice {
            tap: Arc::new(tap),
            counters: SharedCounters::default(),
        }
    }
}

impl Backend for NetDevice {
    fn kind(&self) -> u32 {
        kind::NET
    }

    /// Transmit, then receive.
    fn nr_rings(&self) -> u32 {
        2
    }

    fn role(&self) -> Role {
        Role::Net
    }

    fn source(&self) -> String {
        self.tap.source()
    }

    fn describe(&self, info: &mut DeviceInfo) {
        use parapet_abi::netif::{CONFIG_MAC, CONFIG_MTU};
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(&self.tap.mac());
        info.config[CONFIG_MAC] = u64::from_le_bytes(mac);
        info.config[CONFIG_MTU] = u64::from(self.tap.mtu());
    }

    fn stats(&self, index: usize) -> Vec<(String, u64)> {
        let c = *self.counters.lock().unwrap_or_else(|e| e.into_inner());
        [
            ("tx_packets", c.tx_packets),
            ("tx_bytes", c.tx_bytes),
            ("tx_dropped", c.tx_dropped),
            ("tx_errors", c.tx_errors),
            ("rx_packets", c.rx_packets),
            ("rx_bytes", c.rx_bytes),
            ("rx_dropped", c.rx_dropped),
            ("rx_errors", c.rx_errors),
        ]
        .into_iter()
        .map(|(name, v)| (format!("net{index}.{name}"), v))
        .collect()
    }

    fn serve(
        &self,
        rings: Vec<GrantMapping>,
        grants: GrantTable,
    ) -> Box<dyn FnOnce(BackendIo) + Send> {
        let [tx, rx] = <[GrantMapping; 2]>::try_from(rings).expect("two rings");
        let (tap, counters) = (self.tap.clone(), self.counters.clone());
        Box::new(move |io| serve(io, tx, rx, grants, &tap, &counters))
    }
}

/// The TAP device as the protocol logic sees it: non-blocking frame I/O.
struct TapIo<'a>(&'a Tap);

impl PacketIo for TapIo<'_> {
    fn send(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        match (&mut self.0.file()).write(frame) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(PacketError::Busy),
            Err(_) => Err(PacketError::Refused),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        // WouldBlock: nothing queued. Any other error (the link went down) reads as nothing
        // queued too; the guest's next kick retries.
        (&mut self.0.file()).read(buf).ok().filter(|&n| n > 0)
    }
}

/// Serves both rings until the VMM stops the backend.
fn serve(
    io: BackendIo,
    tx_ring: GrantMapping,
    rx_ring: GrantMapping,
    grants: GrantTable,
    tap: &Tap,
    counters: &Mutex<NetCounters>,
) {
    let mut tx = NetifTxBackRing::attach(tx_ring);
    let mut rx = NetifRxBackRing::attach(rx_ring);
    let mut net = TapIo(tap);
    let mut local = NetCounters::default();
    loop {
        let served = serve_tx(&mut tx, &grants, &mut net, &mut local)
            .and_then(|t| serve_rx(&mut rx, &grants, &mut net, &mut local).map(|r| (t, r)));
        *counters.lock().unwrap_or_else(|e| e.into_inner()) = local;
        let (t, r) = match served {
            Ok(outcomes) => outcomes,
            Err(e) => {
                io.guest_fault(format!("network device {}: {e}", tap.name()));
                return;
            }
        };
        if t.notify || r.notify {
            io.notify_guest();
        }
        // Batches are bounded: a stop is noticed within one however busy the rings are.
        if io.stop_requested() {
            return;
        }
        if t.more {
            std::thread::yield_now();
            continue;
        }
        // With no receive buffers posted, leave frames queued in the kernel until the guest
        // posts some (and rings the doorbell).
        let tap_fd = (!r.needs_buffers).then(|| tap.file().as_raw_fd());
        if io.wait(tap_fd) == Wake::Stop {
            return;
        }
    }
}

/// Counters shared between a net backend thread and `--stats`.
type SharedCounters = Arc<Mutex<NetCounters>>;
