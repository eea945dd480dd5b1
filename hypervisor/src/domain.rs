//! A running guest's shared state: what the vCPU thread, the timer and the backend threads all
//! reach.

use crate::devices::Device;
use crate::events::{EventChannels, Upcall};
use crate::grants::GrantTable;
use crate::hypercall::Control;
use crate::kvm::vcpu::kick_signal;
use crate::memory::GuestRam;
use crate::timer::TimerService;
use crossbeam_channel::{Receiver, Sender};
use parapet_abi::event_channel::virq;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// Whether the vCPU is blocked in `SCHEDOP_block`, and how to wake it without an event.
#[derive(Debug, Default)]
pub struct VcpuWake {
    blocked: AtomicBool,
    /// Kernel thread ID of the vCPU thread, 0 until it runs.
    thread: AtomicI32,
}

impl VcpuWake {
    /// Records the calling thread as the vCPU thread.
    pub fn set_vcpu_thread(&self) {
        self.thread.store(crate::sys::current_thread(), SeqCst);
    }

    /// Marks the vCPU blocked (or not); returns the previous state.
    pub fn set_blocked(&self, blocked: bool) -> bool {
        self.blocked.swap(blocked, SeqCst)
    }

    /// Whether the vCPU is blocked.
    pub fn blocked(&self) -> bool {
        self.blocked.load(SeqCst)
    }

    /// Interrupts the vCPU thread's `KVM_RUN` (a halted vCPU returns with `EINTR`).
    pub fn kick(&self) {
        let thread = self.thread.load(SeqCst);
        if thread != 0 {
            // The vCPU thread is the main thread, which outlives every thread that kicks it: the
            // VMM stops them all before it returns.
            crate::sys::signal_thread(thread, kick_signal());
        }
    }
}

/// The guest's shared state.
#[derive(Debug)]
pub struct Domain {
    /// Guest RAM.
    pub ram: Arc<GuestRam>,
    /// Event channels.
    pub events: Arc<EventChannels>,
    /// The one-shot timer.
    pub timer: TimerService,
    /// The grant table.
    pub grants: GrantTable,
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
        use crate::builder::layout;
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
            events,
            timer,
            grants,
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
