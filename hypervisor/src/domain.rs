//! A running guest's shared state: what the vCPU thread, the timer and the backend threads all
//! reach.

use crate::control::{Control, VcpuWake};
use crate::devices::{BackendLink, Device};
use crate::event_channel::{EventChannels, Upcall};
use crate::grant_table::GrantTable;
use crate::memory::GuestRam;
use crate::timer::TimerService;
use crossbeam_channel::{Receiver, Sender};
use parapet_abi::event_channel::virq;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// The guest's shared state.
#[derive(Debug)]
pub struct Domain {
    /// Guest RAM.
    pub ram: Arc<GuestRam>,
    /// Event channels.
    pub event_channels: Arc<EventChannels>,
    /// The one-shot timer.
    pub timer: TimerService,
    /// The grant table.
    pub grant_table: GrantTable,
    /// Waking the vCPU.
    pub vcpu: Arc<VcpuWake>,
    /// System time.
    pub clock: SystemClock,
    /// Split-driver devices, fixed before the guest starts.
    devices: OnceLock<Vec<Device>>,
    /// Messages to the vCPU thread (stop, backend faults); send, then [`VcpuWake::kick`].
    control: (Sender<Control>, Receiver<Control>),
    /// Whether `SHUTDOWN_suspend` writes a snapshot (the VMM has somewhere to write it).
    snapshots: std::sync::atomic::AtomicBool,
}

impl Domain {
    /// A domain over `ram` with the boot structures of `layout`, whose upcalls go through
    /// `irqfd` (`None` without KVM, in unit tests).
    pub fn new(ram: Arc<GuestRam>, irqfd: Option<EventFd>, clock: SystemClock) -> Domain {
        use crate::layout;
        let shared_info = layout::SHARED_INFO;
        let grant_frames = (layout::GRANT_TABLE.end - layout::GRANT_TABLE.start) / layout::PAGE;
        let grants = GrantTable::new(ram.clone(), layout::GRANT_TABLE.start, grant_frames as u32);
        let events = Arc::new(EventChannels::new(Upcall::new(
            ram.clone(),
            shared_info,
            irqfd,
        )));
        let vcpu = Arc::new(VcpuWake::default());
        let timer = {
            let (events, vcpu) = (events.clone(), vcpu.clone());
            TimerService::new(move || {
                // A VIRQ_TIMER interrupt wakes a blocked vCPU by itself; otherwise kick it.
                if !events.raise_virq(virq::TIMER) && vcpu.blocked() {
                    vcpu.kick();
                }
            })
        };
        Domain {
            ram,
            event_channels: events,
            timer,
            grant_table: grants,
            vcpu,
            clock,
            devices: OnceLock::new(),
            control: crossbeam_channel::unbounded(),
            snapshots: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Lets `SHUTDOWN_suspend` suspend the domain for a snapshot (else it answers `-ENOSYS`).
    pub fn enable_snapshots(&self) {
        self.snapshots
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `SHUTDOWN_suspend` suspends the domain.
    pub fn snapshots(&self) -> bool {
        self.snapshots.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fixes the device list; later calls are ignored.
    pub fn set_devices(&self, devices: Vec<Device>) {
        let _ = self.devices.set(devices);
    }

    /// What the devices' backend threads need from the domain.
    pub fn backend_link(&self) -> BackendLink {
        BackendLink {
            grant_table: self.grant_table.clone(),
            event_channels: self.event_channels.clone(),
            control: self.control_sender(),
            vcpu: self.vcpu.clone(),
        }
    }

    /// The devices, in start-info order.
    pub fn devices(&self) -> &[Device] {
        self.devices.get().map_or(&[], Vec::as_slice)
    }

    /// A sender for messages to the vCPU thread.
    pub fn control_sender(&self) -> Sender<Control> {
        self.control.0.clone()
    }

    /// The vCPU thread's end of the control channel.
    pub fn control(&self) -> &Receiver<Control> {
        &self.control.1
    }
}

/// The domain's system time (ns since it was built, docs/abi.md §4.2) on the host's monotonic
/// clock: system time `anchor_ns` was at host instant `anchor`. A booted domain's anchor is
/// system time 0; a restored one's is the system time it continues from.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    anchor: Instant,
    anchor_ns: u64,
}

impl SystemClock {
    /// System time 0 at `at`.
    pub fn starting_at(at: Instant) -> SystemClock {
        SystemClock {
            anchor: at,
            anchor_ns: 0,
        }
    }

    /// System time `ns` now.
    pub fn continuing_from(ns: u64) -> SystemClock {
        SystemClock {
            anchor: Instant::now(),
            anchor_ns: ns,
        }
    }

    /// System time now.
    pub fn now_ns(&self) -> u64 {
        let since = u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.anchor_ns.saturating_add(since)
    }

    /// The host instant of system time `ns` (a time before the anchor is the anchor: it has
    /// passed either way; one too far ahead to represent is ~136 years ahead).
    pub fn instant_of(&self, ns: u64) -> Instant {
        let far = || self.anchor + std::time::Duration::from_secs(u32::MAX.into());
        match ns.checked_sub(self.anchor_ns) {
            Some(ahead) => self
                .anchor
                .checked_add(std::time::Duration::from_nanos(ahead))
                .unwrap_or_else(far),
            None => self.anchor,
        }
    }

    /// The system time of host instant `at`.
    pub fn ns_of(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self
                .anchor_ns
                .saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)),
            None => {
                let before = u64::try_from((self.anchor - at).as_nanos()).unwrap_or(u64::MAX);
                self.anchor_ns.saturating_sub(before)
            }
        }
    }
}
