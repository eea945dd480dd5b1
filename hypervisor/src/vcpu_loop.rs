//! The vCPU run loop: runs the guest, serves its hypercalls and exits, and returns when the
//! guest's run is over or a debugger must look at it.

use crate::control::Control;
use crate::domain::Domain;
use crate::emulated::EmulatedDevices;
use crate::error::{Error, Result};
use crate::guest_console::Stdout;
use crate::hypercall::{self, Action, Context};
use crate::kvm::{self, vcpu::Exit, vcpu::Vcpu};
use crate::layout;
use crate::outcome::{FaultInfo, GuestExit};
use crate::stats::ExitCounters;
use parapet_abi::Errno;
use parapet_abi::event_channel::virq;
use parapet_abi::start_info::Platform;
use tracing::{debug, warn};
use vm_memory::GuestAddress;

/// On kvm_pvm, more emulated instructions than this before the first hypercall mean the guest
/// is not running natively (a native guest shows about one per port-I/O exit).
const EMULATION_WARN_THRESHOLD: u64 = 1000;

/// Why [`VcpuLoop::run`] returned.
#[derive(Debug)]
pub enum Stop {
    /// The guest's run is over.
    Exit(GuestExit),
    /// The guest is paused for the debugger; it can go on.
    Debug(DebugStop),
}

/// A pause for the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugStop {
    /// The guest reached a software breakpoint; RIP is the breakpoint's address.
    Breakpoint,
    /// A single step finished.
    Step,
    /// The debugger asked to stop (`Control::DebugInterrupt`).
    Interrupt,
}

/// The vCPU run loop and what it needs.
#[derive(Debug)]
pub struct VcpuLoop<'a> {
    /// The vCPU, run on this thread.
    pub vcpu: &'a mut Vcpu,
    /// Its domain.
    pub dom: &'a Domain,
    /// Exit statistics.
    pub counters: &'a mut ExitCounters,
    /// The host.
    pub platform: Platform,
    /// Whether to check, at the first hypercall, that the guest runs natively (kvm_pvm).
    pub check_native: bool,
    /// Whether hypercalls come through KVM's Xen intercept (for the statistics).
    pub xen_transport: bool,
    /// Whether `SIGUSR1` suspends the domain for a snapshot (else it is only reported).
    pub host_snapshots: bool,
}

impl VcpuLoop<'_> {
    /// Runs the guest until its run is over, or a debugger event.
    pub fn run(&mut self) -> Result<Stop> {
        let mut console = Stdout;
        let mut bus_console = Stdout;
        let mut bus = EmulatedDevices::new(&mut bus_console);
        loop {
            let exit = self.vcpu.run(&mut bus)?;
            let was_blocked = self.dom.vcpu.set_blocked(false);
            self.counters.count(&exit, self.xen_transport);
            match exit {
                Exit::Hypercall {
                    nr,
                    args,
                    from_user,
                } => {
                    if self.check_native {
                        self.check_native = false;
                        self.warn_if_emulated();
                    }
                    let action = if from_user {
                        Action::Return(Errno::EPERM.to_ret())
                    } else {
                        let mut ctx = Context {
                            dom: self.dom,
                            ram: &self.dom.ram,
                            console: &mut console,
                        };
                        hypercall::dispatch(&mut ctx, nr, args)
                    };
                    match action {
                        Action::Stop(GuestExit::Suspended) => {
                            self.vcpu
                                .complete_hypercall(parapet_abi::sched::SUSPEND_RESUMED);
                            return Ok(Stop::Exit(GuestExit::Suspended));
                        }
                        Action::Return(ret) => self.vcpu.complete_hypercall(ret),
                        Action::Block => self.block()?,
                        Action::Stop(exit) => return Ok(Stop::Exit(exit)),
                    }
                }
                Exit::Doorbell { port } => {
                    let _ = self.dom.event_channels.send(port);
                }
                Exit::Io { handled: true, .. } | Exit::Mmio { handled: true, .. } => {}
                Exit::Io { port, write, .. } => {
                    debug!("port I/O to unserved port {port:#x} (write: {write})");
                }
                Exit::Mmio { gpa, write, .. } => {
                    debug!("MMIO to unbacked address {gpa:#x} (write: {write})");
                }
                Exit::PortBreakpoint { addr } => {
                    debug!("breakpoint at {addr:#x}");
                    return Ok(Stop::Debug(DebugStop::Breakpoint));
                }
                Exit::Debug { exception: 1, .. } => return Ok(Stop::Debug(DebugStop::Step)),
                Exit::Debug { exception: 3, .. } => {
                    return Ok(Stop::Debug(DebugStop::Breakpoint));
                }
                Exit::Debug { exception, pc } => {
                    return self.fault(format!(
                        "unexpected debug exit (exception {exception}, rip {pc:#x})"
                    ));
                }
                Exit::Interrupted => {
                    if crate::sys::take_snapshot_request() {
                        if self.host_snapshots {
                            if was_blocked {
                                // Saved halted: the restored vCPU waits for its timer or events.
                                self.dom.vcpu.set_blocked(true);
                            }
                            return Ok(Stop::Exit(GuestExit::Suspended));
                        }
                        eprintln!(
                            "parapet: SIGUSR1 asks for a snapshot, but this VMM has no --snapshot \
                             file (or serves warm invocations): ignored"
                        );
                    }
                    if crate::sys::take_shutdown_request() {
                        // A blocked vCPU wakes below, with the event pending.
                        self.request_shutdown();
                    }
                    match self.dom.control().try_recv() {
                        Ok(Control::Stop) => return Ok(Stop::Exit(GuestExit::Stopped)),
                        Ok(Control::Fault(what)) => return self.fault(what),
                        Ok(Control::DebugInterrupt) => {
                            if was_blocked {
                                // Still halted in KVM: keep it marked so the timer wakes it.
                                self.dom.vcpu.set_blocked(true);
                            }
                            return Ok(Stop::Debug(DebugStop::Interrupt));
                        }
                        Err(_) => {}
                    }
                    if was_blocked {
                        // Woken without an interrupt (a timer with no VIRQ bound).
                        self.vcpu.set_halted(false)?;
                    }
                }
                Exit::Halt => {
                    return self.fault(
                        "the guest executed HLT; Parapet guests idle with sched_op(SCHEDOP_block)"
                            .into(),
                    );
                }
                Exit::Shutdown => return self.fault("triple fault (KVM_EXIT_SHUTDOWN)".into()),
                Exit::InternalError { suberror, data } => {
                    let what = match suberror {
                        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => {
                            "KVM could not emulate an instruction"
                        }
                        _ => "KVM internal error",
                    };
                    return self.fault(format!(
                        "{what} (KVM_EXIT_INTERNAL_ERROR suberror {suberror}, data {data:x?})"
                    ));
                }
                Exit::FailEntry { reason } => {
                    return self.fault(format!("VM entry failed (hardware reason {reason:#x})"));
                }
                Exit::Other(what) => return self.fault(format!("unexpected KVM exit: {what}")),
            }
        }
    }

    /// `SCHEDOP_block`: re-enable event delivery and halt in the kernel until an interrupt
    /// (docs/abi.md §7.3). The timer thread checks `blocked` after it marks the timer fired, and
    /// we check the timer after marking `blocked`, so one of us always sees the other.
    fn block(&mut self) -> Result<()> {
        let dom = self.dom;
        self.vcpu.complete_hypercall(0);
        dom.vcpu.set_blocked(true);
        if dom.timer.take_fired() || dom.event_channels.upcall().upcall_pending() {
            dom.vcpu.set_blocked(false);
            return Ok(());
        }
        dom.event_channels.upcall().unmask_upcalls();
        match self.platform {
            Platform::KvmPvm => dom
                .ram
                .atomic_u8(GuestAddress(
                    layout::VIF_PAGE + parapet_abi::start_info::vif::IF as u64,
                ))
                .expect("the VIF page lies inside guest RAM")
                .store(1, std::sync::atomic::Ordering::SeqCst),
            Platform::KvmHardware => self.vcpu.set_interrupt_flag_on_entry(),
        }
        self.vcpu.set_halted(true)
    }

    /// `SIGTERM` found the guest listening: raise `VIRQ_SHUTDOWN` (docs/abi.md §7.5). If the
    /// guest closed the port since the signal handler looked, end the process as the signal
    /// would have.
    fn request_shutdown(&self) {
        match self.dom.event_channels.raise_bound_virq(virq::SHUTDOWN) {
            Some(_) => eprintln!(
                "parapet: SIGTERM: asked the guest to shut down (send it again to stop it at once)"
            ),
            None => crate::sys::terminate_by_sigterm(),
        }
    }

    fn fault(&self, what: String) -> Result<Stop> {
        Ok(Stop::Exit(GuestExit::Fault(vcpu_fault(self.vcpu, what)?)))
    }

    fn warn_if_emulated(&self) {
        let stats = kvm::stats::read(self.vcpu.fd()).unwrap_or_default();
        let emulated = stats
            .iter()
            .find(|(name, _)| name == "insn_emulation")
            .map_or(0, |s| s.1);
        if emulated > EMULATION_WARN_THRESHOLD {
            warn!(
                "the guest is being instruction-emulated ({emulated} instructions before its \
                 first hypercall), not running natively"
            );
        } else {
            debug!(
                "guest runs natively ({emulated} emulated instructions before its first hypercall)"
            );
        }
    }
}

/// A fault report from KVM's view of the vCPU.
pub fn vcpu_fault(vcpu: &Vcpu, what: String) -> Result<FaultInfo> {
    let regs = vcpu.fd().get_regs().map_err(|source| Error::Kvm {
        op: "KVM_GET_REGS",
        source,
    })?;
    let sregs = vcpu.fd().get_sregs().map_err(|source| Error::Kvm {
        op: "KVM_GET_SREGS",
        source,
    })?;
    Ok(FaultInfo::from_vcpu(what, &regs, &sregs))
}
