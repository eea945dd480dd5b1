//! A backend's thread: each backend runs on its own thread, woken by its doorbell eventfd (which KVM
//! signals directly when the guest rings the doorbell: no exit to the VMM), and answers by
//! raising the guest's port (an irqfd write, again without the vCPU thread).
//!
//! A backend that catches the guest breaking its protocol (a ring index past the ring) reports
//! it with [`BackendIo::guest_fault`]; the vCPU loop then stops the guest with that message.

use crate::control::Control;
use crate::control::VcpuWake;
use crate::event_channel::EventChannels;
use crossbeam_channel::Sender;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

/// Why a backend woke up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The VMM asks the backend to stop.
    Stop,
    /// The guest rang the doorbell (and/or the extra descriptor is readable).
    Work {
        /// The doorbell rang.
        kicked: bool,
        /// The extra descriptor passed to [`BackendIo::wait`] is readable.
        extra: bool,
    },
}

/// What a backend thread uses to talk to the guest and the VMM.
#[derive(Debug)]
pub struct BackendIo {
    /// The doorbell: KVM signals it when the guest notifies `port`.
    pub kick: Arc<EventFd>,
    stop: EventFd,
    stopping: Arc<AtomicBool>,
    event_channels: Arc<EventChannels>,
    /// The guest's port connected to this backend.
    pub port: u32,
    control: Sender<Control>,
    vcpu: Arc<VcpuWake>,
}

impl BackendIo {
    /// Waits for the doorbell, a stop request, or `extra` (e.g. standard input) to be readable.
    pub fn wait(&self, extra: Option<RawFd>) -> Wake {
        self.poll(extra, None)
    }

    /// Like [`wait`](Self::wait), for at most `limit`: then it returns
    /// `Wake::Work { kicked: false, extra: false }`. For a backend that must look at something
    /// no descriptor signals. Only the backend's thread wakes; the guest does not exit.
    pub fn wait_at_most(&self, extra: Option<RawFd>, limit: Duration) -> Wake {
        self.poll(extra, Some(limit))
    }

    /// Like [`wait`](Self::wait), without waiting: for a backend that still has work (its last
    /// batch stopped at its budget) but should notice a stop or new input.
    pub fn check(&self, extra: Option<RawFd>) -> Wake {
        self.poll(extra, Some(Duration::ZERO))
    }

    fn poll(&self, extra: Option<RawFd>, timeout: Option<Duration>) -> Wake {
        let fds = [
            Some(self.stop.as_raw_fd()),
            Some(self.kick.as_raw_fd()),
            extra,
        ];
        let ready = match crate::sys::poll(&fds, timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("backend cannot wait for events: {e}");
                return Wake::Stop;
            }
        };
        if ready[0].readable {
            return Wake::Stop;
        }
        let kicked = ready[1].readable;
        if kicked {
            let _ = self.kick.read(); // reset the counter; one wake-up serves every notification
        }
        Wake::Work {
            kicked,
            extra: ready[2].readable,
        }
    }

    /// Whether the VMM asked the backend to stop, without waiting: a backend that still has work
    /// checks this between bounded batches, so a guest that keeps it busy cannot delay a stop.
    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Raises the guest's port.
    pub fn notify_guest(&self) {
        self.event_channels.upcall().raise(self.port);
    }

    /// Stops the guest: it broke the protocol.
    pub fn guest_fault(&self, what: String) {
        let _ = self.control.send(Control::Fault(what));
        self.vcpu.kick();
    }
}

/// A running backend thread.
#[derive(Debug)]
pub struct BackendThread {
    stop: EventFd,
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl BackendThread {
    /// Starts `serve` on a thread with `role`'s name and seccomp filter, woken by `kick` and
    /// answering the guest on `port`.
    pub fn spawn(
        role: crate::seccomp::Role,
        kick: Arc<EventFd>,
        port: u32,
        link: &super::BackendLink,
        serve: impl FnOnce(BackendIo) + Send + 'static,
    ) -> std::io::Result<BackendThread> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let io = BackendIo {
            kick,
            stop: stop.try_clone()?,
            stopping: stopping.clone(),
            event_channels: link.event_channels.clone(),
            port,
            control: link.control.clone(),
            vcpu: link.vcpu.clone(),
        };
        let handle = crate::seccomp::spawn(role, move || serve(io))?;
        Ok(BackendThread {
            stop,
            stopping,
            handle: Some(handle),
        })
    }

    /// Asks the backend to stop and waits until it has.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.stopping.store(true, Ordering::Release);
            let _ = self.stop.write(1);
            if handle.join().is_err() {
                tracing::error!("a backend thread panicked");
            }
        }
    }
}

impl Drop for BackendThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
