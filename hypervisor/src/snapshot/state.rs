//! The snapshot's `domain` section: every piece of VMM state the guest can observe that is not in
//! its memory or its vCPU (docs/snapshots.md, "What a snapshot holds").

use crate::event_channel::SavedPort;
use parapet_abi::device::DeviceInfo;
use parapet_abi::grant_table::GrantRef;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The VMM's side of a suspended domain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainState {
    /// The kernel the domain booted from, for the symbols of a later fault report (it may have
    /// changed or gone since: then reports have no symbols).
    pub kernel: PathBuf,
    /// `Platform` as in start-info.
    pub platform: u32,
    /// `Transport` as in start-info: the hypercall page in guest memory traps this way.
    pub transport: u32,
    /// The TSC frequency the guest's PV clock scales by.
    pub tsc_khz: u64,
    /// Guest system time (ns since the domain was built) at the snapshot.
    pub system_time_ns: u64,
    /// Unix time (ns) at the snapshot.
    pub unix_time_ns: u64,
    /// The armed timer deadline (system time, ns), if any.
    pub timer_deadline_ns: Option<u64>,
    /// A deadline fired that the guest has not yet seen.
    pub timer_fired: bool,
    /// The event-channel table.
    pub event_channels: Vec<SavedPort>,
    /// The port of the console backend.
    pub console_port: u32,
    /// The devices, in start-info order.
    pub devices: Vec<SavedDevice>,
    /// Guest-physical ranges the guest's page tables map read-only (backends never write them).
    pub read_only: Vec<(u64, u64)>,
}

/// One device as the guest saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedDevice {
    /// Its start-info entry: kind, rings, port, flags, config words.
    pub kind: u32,
    /// Rings it takes.
    pub nr_rings: u32,
    /// Its backend port.
    pub evtchn: u32,
    /// Kind-specific flags.
    pub flags: u32,
    /// Kind-specific configuration words.
    pub config: [u64; 4],
    /// The grant references of its rings if it was connected.
    pub rings: Option<Vec<GrantRef>>,
    /// The host resource it was served from (a disk image path, a TAP name), to reuse when the
    /// restore names none.
    pub source: String,
}

impl SavedDevice {
    /// The saved entry of `info`, connected to `rings`, served from `source`.
    pub fn new(info: &DeviceInfo, rings: Option<Vec<GrantRef>>, source: String) -> SavedDevice {
        SavedDevice {
            kind: info.kind,
            nr_rings: info.nr_rings,
            evtchn: info.evtchn,
            flags: info.flags,
            config: info.config,
            rings,
            source,
        }
    }
}

impl DomainState {
    /// The section's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a DomainState always serialises")
    }

    /// Reads the section; `None` if it is not a `DomainState` this VMM wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<DomainState> {
        postcard::from_bytes(bytes).ok()
    }
}
