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
    /// System time 0.
    pub boot: Instant,
    /// Split-driver devices, fixed before the guest starts.
    devices: OnceLock<Vec<Device>>,
    /// Messages to the vCPU thread (stop, backend faults); send, then [`VcpuWake::kick`].
    control: (Sender<Control>, Receiver<Control>),
}

impl Domain {
    /// A domain over `ram` with the boot structures of `layout`, whose upcalls go through
    /// `irqfd` (`None` without KVM, in unit tests).
    pub fn new(ram: Arc<GuestRam>, irqfd: Option<EventFd>, boot: Instant) -> Domain {
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
            boot,
            devices: OnceLock::new(),
            control: crossbeam_channel::unbounded(),
        }
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
