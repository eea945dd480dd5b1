//! The gdb stub (`parapet run --gdb ADDR`): gdb's remote protocol, through the `gdbstub` crate,
//! served on the vCPU thread while the guest is paused.
//!
//! How each debugger operation is done on each host is in docs/debugging.md. In short:
//! - software breakpoints replace an instruction's first byte: with `int3`, which KVM reports
//!   (`KVM_GUESTDBG_USE_SW_BP`), on VT-x/AMD-V; with [`OUT_DX_AL`] on kvm_pvm, whose native mode
//!   ignores `KVM_SET_GUEST_DEBUG` but sends every port write to the VMM;
//! - a single step is `KVM_GUESTDBG_SINGLESTEP`; on kvm_pvm the vCPU leaves native mode for that
//!   one instruction (the VIF MSR is cleared, then registered again);
//! - gdb's Ctrl-C wakes a watcher thread polling the connection, which kicks the vCPU;
//! - a guest fault (its exception handler's `SCHEDOP_fault`) or panic stops in gdb at the
//!   faulting instruction, with the registers the guest reported; continuing ends the run.

use super::arch::{GuestArch, GuestRegs};
use crate::control::Control;
use crate::error::{Error, KvmContext, Result};
use crate::kvm::vcpu::OUT_DX_AL;
use crate::memory::GuestRam;
use crate::outcome::{FaultInfo, GuestExit};
use crate::page_walk;
use crate::platform::MSR_PVM_VIF;
use crate::vcpu_loop::{DebugStop, Stop, VcpuLoop};
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{self, BlockingEventLoop, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use parapet_abi::start_info::Platform;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{debug, info};
use vm_memory::GuestAddress;

/// The connection to gdb.
pub type GdbConnection = Box<dyn ConnectionExt<Error = std::io::Error>>;

/// `int3`: the software breakpoint KVM reports on VT-x/AMD-V.
const INT3: u8 = 0xcc;

/// How the debugger stops the guest at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BreakpointStyle {
    /// `int3`, reported by KVM as `KVM_EXIT_DEBUG` (VT-x/AMD-V).
    Int3,
    /// `out %al, (%dx)`, reported as a port write (kvm_pvm).
    PortWrite,
}

/// A breakpoint written into guest memory.
#[derive(Clone, Copy, Debug)]
struct Patch {
    /// Where the byte is, guest-physical.
    gpa: u64,
    /// The instruction byte the breakpoint replaced.
    original: u8,
}

/// What the next `wait_for_stop_reason` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// The guest as gdb sees it.
pub struct GdbTarget<'l, 'a> {
    run: &'l mut VcpuLoop<'a>,
    ram: Arc<GuestRam>,
    style: BreakpointStyle,
    breakpoints: BTreeMap<u64, Patch>,
    resume: Resume,
    /// Why the guest cannot go on, once it cannot; `true` once gdb has been told it stopped.
    ended: Option<(GuestExit, bool)>,
    watch: InterruptWatch,
}

impl std::fmt::Debug for GdbTarget<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbTarget")
            .field("breakpoints", &self.breakpoints)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// How the gdb session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The guest's run is over.
    Exit(GuestExit),
    /// gdb detached (or went away): the guest runs on without it.
    Detached,
    /// gdb killed the guest.
    Killed,
}

/// Serves gdb on `conn` until the guest's run ends or gdb leaves. `conn_fd` is the connection's
/// descriptor, which a watcher thread polls for gdb's Ctrl-C while the guest runs.
pub fn serve(run: &mut VcpuLoop<'_>, conn: GdbConnection, conn_fd: RawFd) -> Result<SessionEnd> {
    let style = match run.platform {
        Platform::KvmPvm => BreakpointStyle::PortWrite,
        Platform::KvmHardware => BreakpointStyle::Int3,
    };
    let watch = InterruptWatch::start(conn_fd, run)?;
    let ram = run.dom.ram.clone();
    let mut target = GdbTarget {
        run,
        ram,
        style,
        breakpoints: BTreeMap::new(),
        resume: Resume::Continue,
        ended: None,
        watch,
    };
    let outcome = GdbStub::new(conn).run_blocking::<EventLoop<'_, '_>>(&mut target);
    target.watch.stop();
    let reason = match outcome {
        Ok(reason) => reason,
        Err(e) if e.is_target_error() => {
            return Err(e.into_target_error().expect("checked it is a target error"));
        }
        Err(e) => {
            debug!("gdb stub: {e:?}");
            // A broken connection is gdb leaving: the guest goes on without it.
            eprintln!("parapet: gdb connection lost ({e}); the guest runs on");
            DisconnectReason::Disconnect
        }
    };
    if let Some((exit, _)) = target.ended.take() {
        return Ok(SessionEnd::Exit(exit));
    }
    target.remove_all_breakpoints()?;
    Ok(match reason {
        DisconnectReason::Kill => SessionEnd::Killed,
        _ => SessionEnd::Detached,
    })
}

impl GdbTarget<'_, '_> {
    /// The page-table root the guest runs on now.
    fn cr3(&self) -> TargetResult<u64, Self> {
        Ok(self
            .run
            .vcpu
            .fd()
            .get_sregs()
            .kvm("KVM_GET_SREGS")
            .map_err(TargetError::Fatal)?
            .cr3)
    }

    /// The guest-physical run at `va` ([`page_walk::translate`]).
    fn translate(&self, cr3: u64, va: u64) -> Option<(u64, u64)> {
        page_walk::translate(&self.ram, cr3, va)
    }

    /// Tells the vCPU where the breakpoints are (and KVM whether to report `int3`).
    fn sync_breakpoints(&mut self) -> Result<()> {
        match self.style {
            BreakpointStyle::PortWrite => {
                self.run
                    .vcpu
                    .set_port_breakpoints(self.breakpoints.keys().copied());
                Ok(())
            }
            BreakpointStyle::Int3 => self
                .run
                .vcpu
                .set_guest_debug(false, !self.breakpoints.is_empty()),
        }
    }

    fn remove_all_breakpoints(&mut self) -> Result<()> {
        for (_, patch) in std::mem::take(&mut self.breakpoints) {
            let _ = self
                .ram
                .write_as_debugger(GuestAddress(patch.gpa), &[patch.original]);
        }
        self.sync_breakpoints()
    }

    /// Runs the guest as the last resume asked: until a breakpoint, a finished step, gdb's
    /// interrupt, or the end of its run.
    fn run_guest(&mut self) -> Result<Stop> {
        let step = self.resume == Resume::Step;
        let sw_bp = self.style == BreakpointStyle::Int3 && !self.breakpoints.is_empty();
        if step {
            if self.run.platform == Platform::KvmPvm {
                // Native mode ignores guest debugging: run this instruction emulated.
                if !self.run.vcpu.write_msr(MSR_PVM_VIF, 0)? {
                    return Err(Error::HostUnsupported(
                        "kvm_pvm refused to leave native mode for a single step".into(),
                    ));
                }
            }
            self.run.vcpu.set_guest_debug(true, sw_bp)?;
        }
        self.watch.arm();
        let stop = self.run.run();
        self.watch.disarm();
        if step {
            self.run.vcpu.set_guest_debug(false, sw_bp)?;
            if self.run.platform == Platform::KvmPvm {
                crate::platform::register_vif(self.run.vcpu)?;
            }
        }
        match stop? {
            Stop::Exit(GuestExit::Fault(info)) if sw_bp => self.breakpoint_the_guest_took(info),
            stop => Ok(stop),
        }
    }

    /// A fault the guest reported, unless it is one of our `int3`s that reached the guest's own
    /// #BP handler instead of KVM: then the stop at that breakpoint, with the guest put back as
    /// it was before the `int3`.
    ///
    /// With `KVM_GUESTDBG_USE_SW_BP` KVM intercepts the #BP exception, which on VT-x and AMD-V
    /// hardware includes `int3`. QEMU's emulated SVM (TCG, as in `cargo xtask test-kvm-hw`)
    /// checks `int3` against the INTn intercept instead, which KVM does not set, so the guest's
    /// IDT gets it: its handler reports vector 3 with RIP just past the breakpoint through
    /// `SCHEDOP_fault`. That report holds every register the handler could have changed (the
    /// interrupted RIP, RSP, RFLAGS and general registers; CS and SS must be the current ones,
    /// as for a breakpoint in the guest kernel), so putting them back undoes the handler; its
    /// only other effects are stack writes below the interrupted RSP (guests have no red zone)
    /// and a console flush. The fault hypercall is abandoned: RIP no longer points at it.
    fn breakpoint_the_guest_took(&mut self, info: FaultInfo) -> Result<Stop> {
        let fd = self.run.vcpu.fd();
        let ours = match &info.report {
            Some(r) if r.vector == 3 && self.breakpoints.contains_key(&r.rip.wrapping_sub(1)) => {
                let s = fd.get_sregs().kvm("KVM_GET_SREGS")?;
                (r.cs, r.ss) == (s.cs.selector.into(), s.ss.selector.into())
            }
            _ => false,
        };
        let report = match info.report {
            Some(report) if ours => report,
            _ => return Ok(Stop::Exit(GuestExit::Fault(info))),
        };
        info!(
            "gdb: the guest's own #BP handler took the breakpoint at {:#x}; undoing it",
            report.rip.wrapping_sub(1)
        );
        let mut r = fd.get_regs().kvm("KVM_GET_REGS")?;
        super::set_gprs(&mut r, super::gprs_from_report(&report));
        (r.rip, r.rflags) = (report.rip.wrapping_sub(1), report.rflags);
        fd.set_regs(&r).kvm("KVM_SET_REGS")?;
        self.run.vcpu.abandon_hypercall();
        Ok(Stop::Debug(DebugStop::Breakpoint))
    }

    /// Registers from KVM, or from the guest's fault report once it faulted.
    fn registers(&self) -> Result<GuestRegs> {
        let fd = self.run.vcpu.fd();
        let r = fd.get_regs().kvm("KVM_GET_REGS")?;
        let s = fd.get_sregs().kvm("KVM_GET_SREGS")?;
        let fpu = fd.get_fpu().kvm("KVM_GET_FPU")?;
        let mut regs = GuestRegs::default();
        let c = &mut regs.core;
        c.regs = super::gprs_from_kvm(&r);
        c.rip = r.rip;
        c.eflags = r.rflags as u32;
        c.segments.cs = s.cs.selector.into();
        c.segments.ss = s.ss.selector.into();
        c.segments.ds = s.ds.selector.into();
        c.segments.es = s.es.selector.into();
        c.segments.fs = s.fs.selector.into();
        c.segments.gs = s.gs.selector.into();
        for (st, fpr) in c.st.iter_mut().zip(fpu.fpr) {
            st.copy_from_slice(&fpr[..10]);
        }
        c.fpu.fctrl = fpu.fcw.into();
        c.fpu.fstat = fpu.fsw.into();
        c.fpu.ftag = full_tag_word(fpu.ftwx);
        c.fpu.fop = fpu.last_opcode.into();
        c.fpu.fioff = fpu.last_ip as u32;
        c.fpu.fooff = fpu.last_dp as u32;
        for (x, bytes) in c.xmm.iter_mut().zip(fpu.xmm) {
            *x = u128::from_le_bytes(bytes);
        }
        c.mxcsr = fpu.mxcsr;
        regs.fs_base = s.fs.base;
        regs.gs_base = s.gs.base;
        if let Some((GuestExit::Fault(info), _)) = &self.ended
            && let Some(report) = &info.report
        {
            c.regs = super::gprs_from_report(report);
            c.rip = report.rip;
            c.eflags = report.rflags as u32;
        }
        Ok(regs)
    }

    fn set_registers(&mut self, regs: &GuestRegs) -> Result<()> {
        let fd = self.run.vcpu.fd();
        let mut r = fd.get_regs().kvm("KVM_GET_REGS")?;
        super::set_gprs(&mut r, regs.core.regs);
        r.rip = regs.core.rip;
        r.rflags = u64::from(regs.core.eflags) | 0x2;
        fd.set_regs(&r).kvm("KVM_SET_REGS")?;
        let mut s = fd.get_sregs().kvm("KVM_GET_SREGS")?;
        if (s.fs.base, s.gs.base) != (regs.fs_base, regs.gs_base) {
            (s.fs.base, s.gs.base) = (regs.fs_base, regs.gs_base);
            fd.set_sregs(&s).kvm("KVM_SET_SREGS")?;
        }
        let mut fpu = fd.get_fpu().kvm("KVM_GET_FPU")?;
        let xmm: [[u8; 16]; 16] = std::array::from_fn(|i| regs.core.xmm[i].to_le_bytes());
        if fpu.xmm != xmm || fpu.mxcsr != regs.core.mxcsr {
            fpu.xmm = xmm;
            fpu.mxcsr = regs.core.mxcsr;
            fd.set_fpu(&fpu).kvm("KVM_SET_FPU")?;
        }
        Ok(())
    }

    /// The stop gdb hears of for `stop`; records an ended run.
    fn stop_reason(&mut self, stop: Stop) -> SingleThreadStopReason<u64> {
        match stop {
            Stop::Debug(DebugStop::Breakpoint) => SingleThreadStopReason::SwBreak(()),
            Stop::Debug(DebugStop::Step) => SingleThreadStopReason::DoneStep,
            Stop::Debug(DebugStop::Interrupt) => SingleThreadStopReason::Signal(Signal::SIGINT),
            Stop::Exit(exit) => {
                let reason = first_report(&exit);
                self.ended = Some((exit, true));
                reason
            }
        }
    }
}

/// What gdb first hears of a run that ended: a signal stop at the fault (so the user can look
/// around), or the exit.
fn first_report(exit: &GuestExit) -> SingleThreadStopReason<u64> {
    match exit {
        GuestExit::Poweroff(code) => SingleThreadStopReason::Exited(*code),
        GuestExit::Fault(_) | GuestExit::Crash => {
            SingleThreadStopReason::Signal(fatal_signal(exit))
        }
        _ => SingleThreadStopReason::Terminated(Signal::SIGKILL),
    }
}

/// What gdb hears when asked to go on after the run ended.
fn final_report(exit: &GuestExit) -> SingleThreadStopReason<u64> {
    match exit {
        GuestExit::Poweroff(code) => SingleThreadStopReason::Exited(*code),
        GuestExit::Fault(_) | GuestExit::Crash => {
            SingleThreadStopReason::Terminated(fatal_signal(exit))
        }
        _ => SingleThreadStopReason::Terminated(Signal::SIGKILL),
    }
}

/// [`super::fatal_signal`] as gdb's.
fn fatal_signal(exit: &GuestExit) -> Signal {
    Signal(super::fatal_signal(exit))
}

/// The x87 tag word from KVM's abridged one (a bit per register, set if valid).
fn full_tag_word(abridged: u8) -> u32 {
    (0..8).fold(0, |tag, i| {
        let empty = abridged & (1 << i) == 0;
        tag | if empty { 3 << (2 * i) } else { 0 }
    })
}

impl Target for GdbTarget<'_, '_> {
    type Arch = GuestArch;
    type Error = Error;

    fn base_ops(&mut self) -> BaseOps<'_, GuestArch, Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget<'_, '_> {
    fn read_registers(&mut self, regs: &mut GuestRegs) -> TargetResult<(), Self> {
        *regs = self.registers().map_err(TargetError::Fatal)?;
        Ok(())
    }

    fn write_registers(&mut self, regs: &GuestRegs) -> TargetResult<(), Self> {
        if self.ended.is_some() {
            // A guest that ended cannot run again: its registers are only for looking at.
            return Err(TargetError::NonFatal);
        }
        self.set_registers(regs).map_err(TargetError::Fatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let cr3 = self.cr3()?;
        let mut done = 0;
        while done < data.len() {
            let va = start.wrapping_add(done as u64);
            let Some((gpa, in_page)) = self.translate(cr3, va) else {
                break;
            };
            let n = (data.len() - done).min(in_page as usize);
            if self
                .ram
                .read(GuestAddress(gpa), &mut data[done..done + n])
                .is_err()
            {
                break;
            }
            done += n;
        }
        if done == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14)); // EFAULT
        }
        // gdb sees the instructions, not the breakpoints written over them.
        let end = start.saturating_add(done as u64);
        for (&addr, patch) in self.breakpoints.range(start..end) {
            data[(addr - start) as usize] = patch.original;
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let cr3 = self.cr3()?;
        for (i, &byte) in data.iter().enumerate() {
            let va = start.wrapping_add(i as u64);
            let (gpa, _) = self.translate(cr3, va).ok_or(TargetError::Errno(14))?;
            // A write over a breakpoint changes the instruction under it.
            let byte = match self.breakpoints.get_mut(&va) {
                Some(patch) => {
                    patch.original = byte;
                    continue;
                }
                None => byte,
            };
            self.ram
                .write_as_debugger(GuestAddress(gpa), &[byte])
                .map_err(|_| TargetError::Errno(14))?;
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget<'_, '_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<()> {
        // A signal gdb passes on means nothing to a guest: it is dropped.
        self.resume = Resume::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget<'_, '_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<()> {
        self.resume = Resume::Step;
        Ok(())
    }
}

impl Breakpoints for GdbTarget<'_, '_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget<'_, '_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        let cr3 = self.cr3()?;
        let Some((gpa, _)) = self.translate(cr3, addr) else {
            return Ok(false);
        };
        let mut original = [0u8];
        if self.ram.read(GuestAddress(gpa), &mut original).is_err() {
            return Ok(false);
        }
        let byte = match self.style {
            BreakpointStyle::Int3 => INT3,
            BreakpointStyle::PortWrite => OUT_DX_AL,
        };
        if self
            .ram
            .write_as_debugger(GuestAddress(gpa), &[byte])
            .is_err()
        {
            return Ok(false);
        }
        self.breakpoints.insert(
            addr,
            Patch {
                gpa,
                original: original[0],
            },
        );
        self.sync_breakpoints().map_err(TargetError::Fatal)?;
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(patch) = self.breakpoints.remove(&addr) else {
            return Ok(false);
        };
        let _ = self
            .ram
            .write_as_debugger(GuestAddress(patch.gpa), &[patch.original]);
        self.sync_breakpoints().map_err(TargetError::Fatal)?;
        Ok(true)
    }
}

/// Runs the guest between gdb's commands.
struct EventLoop<'l, 'a: 'l>(std::marker::PhantomData<(&'l (), &'a ())>);

impl<'l, 'a: 'l> BlockingEventLoop for EventLoop<'l, 'a> {
    type Target = GdbTarget<'l, 'a>;
    type Connection = GdbConnection;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut Self::Connection,
    ) -> std::result::Result<
        run_blocking::Event<Self::StopReason>,
        WaitForStopReasonError<Error, std::io::Error>,
    > {
        if let Some((exit, _)) = &target.ended {
            return Ok(run_blocking::Event::TargetStopped(final_report(exit)));
        }
        loop {
            let stop = target.run_guest().map_err(WaitForStopReasonError::Target)?;
            debug!("gdb: the guest stopped: {stop:?}");
            if matches!(stop, Stop::Debug(DebugStop::Interrupt)) {
                // The watcher saw gdb write; a stale kick with nothing to read runs on.
                match conn.peek().map_err(WaitForStopReasonError::Connection)? {
                    Some(_) => {
                        let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
                        return Ok(run_blocking::Event::IncomingData(byte));
                    }
                    None => continue,
                }
            }
            return Ok(run_blocking::Event::TargetStopped(target.stop_reason(stop)));
        }
    }

    fn on_interrupt(
        _target: &mut Self::Target,
    ) -> std::result::Result<Option<Self::StopReason>, Error> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Polls gdb's connection from another thread while the guest runs, and pauses the guest
/// (`Control::DebugInterrupt` and a kick) when gdb writes: gdb's Ctrl-C.
struct InterruptWatch {
    running: Arc<AtomicBool>,
    wake: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long the watcher's `poll` waits before it checks whether the guest still runs.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl InterruptWatch {
    fn start(conn_fd: RawFd, run: &VcpuLoop<'_>) -> Result<InterruptWatch> {
        let running = Arc::new(AtomicBool::new(false));
        let (wake, woken) = crossbeam_channel::unbounded::<()>();
        let (control, vcpu) = (run.dom.control_sender(), run.dom.vcpu.clone());
        let flag = running.clone();
        let thread = crate::seccomp::spawn(crate::seccomp::Role::GdbWatch, move || {
            while woken.recv().is_ok() {
                while flag.load(Ordering::Acquire) {
                    let ready = crate::sys::poll(&[Some(conn_fd)], Some(WATCH_POLL));
                    if ready.is_ok_and(|r| r[0].readable) && flag.load(Ordering::Acquire) {
                        debug!("gdb wrote while the guest runs: pausing it");
                        let _ = control.send(Control::DebugInterrupt);
                        vcpu.kick();
                        break;
                    }
                }
            }
        })
        .map_err(|source| Error::Io {
            op: "cannot start the gdb watcher thread",
            source,
        })?;
        Ok(InterruptWatch {
            running,
            wake,
            thread: Some(thread),
        })
    }

    fn arm(&self) {
        self.running.store(true, Ordering::Release);
        let _ = self.wake.send(());
    }

    fn disarm(&self) {
        self.running.store(false, Ordering::Release);
    }

    fn stop(&mut self) {
        self.disarm();
        let (dead, _) = crossbeam_channel::unbounded();
        drop(std::mem::replace(&mut self.wake, dead));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection's descriptor and the connection, for [`serve`].
pub fn connection<C>(conn: C) -> (GdbConnection, RawFd)
where
    C: ConnectionExt<Error = std::io::Error> + std::os::fd::AsRawFd + 'static,
{
    let fd = conn.as_raw_fd();
    (Box::new(conn), fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_word_marks_invalid_registers_empty() {
        assert_eq!(full_tag_word(0), 0xffff);
        assert_eq!(full_tag_word(0xff), 0);
        assert_eq!(full_tag_word(0b1), 0xfffc);
    }

    #[test]
    fn a_fault_reports_a_signal_first_then_the_termination() {
        let exit = GuestExit::Crash;
        assert_eq!(
            first_report(&exit),
            SingleThreadStopReason::Signal(Signal::SIGABRT)
        );
        assert_eq!(
            final_report(&exit),
            SingleThreadStopReason::Terminated(Signal::SIGABRT)
        );
        assert_eq!(
            first_report(&GuestExit::Poweroff(3)),
            SingleThreadStopReason::Exited(3)
        );
    }
}
