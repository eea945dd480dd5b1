//! One guest run, start to finish: validate, build, run the vCPU, report.

use crate::builder::{self, BootParams};
use crate::config::{DiskSpec, NetSpec, RestoreConfig, StatsFormat, VmConfig};
use crate::control::Control;
use crate::debug::core_dump::CoreDumper;
use crate::debug::gdb::{self, SessionEnd};
use crate::debug::listen::GdbListener;
use crate::devices::block::{BlockDevice, DiskImage};
use crate::devices::console::{Console, ConsoleInput};
use crate::devices::loopback::Loopback;
use crate::devices::net::{NetDevice, Tap};
use crate::devices::{Backend, Device};
use crate::domain::{Domain, SystemClock};
use crate::error::{Error, Result};
use crate::kvm::{self, irq, vcpu::Vcpu};
use crate::layout;
use crate::loader::{self, LoadError};
use crate::memory::GuestPage;
use crate::memory::GuestRam;
use crate::outcome::{FaultInfo, GuestExit, status};
use crate::platform::{self, Host};
use crate::restore::{Restored, WarmInput, WarmReset};
use crate::snapshot::state::{DomainState, SavedDevice};
use crate::snapshot::{self, SnapshotOut, format::HostKind};
use crate::stats::ExitCounters;
use crate::symbols::SymbolTable;
use crate::vcpu_loop::{Stop, VcpuLoop, vcpu_fault};
use crossbeam_channel::Sender;
use kvm_ioctls::IoEventAddress;
use kvm_ioctls::{Kvm, VmFd};
use parapet_abi::hypercall::PIO_DOORBELL_PORT;
use parapet_abi::start_info::{Platform, Transport};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};
use vmm_sys_util::eventfd::EventFd;

/// Runs the guest `config` describes; returns the process exit status.
pub fn run(config: &VmConfig) -> Result<u8> {
    let started = Instant::now();
    // First, before this process opens anything: inherited TAP descriptors (`--net fd=N`).
    crate::devices::net::check_inherited(&config.nets)?;
    prepare_process(config.seccomp)?;
    let mem_size = check_memory(config.memory.bytes())?;
    let gdb_listener = config.gdb.as_ref().map(GdbListener::bind).transpose()?;
    // The image is checked against the guest's memory before any segment byte is read.
    let image = loader::load(&config.kernel, |image| {
        builder::check_fit(image, mem_size, &config.cmdline)
    })
    .map_err(|e| match e {
        LoadError::Io(source) => Error::KernelRead {
            path: config.kernel.clone(),
            source,
        },
        LoadError::Invalid(reason) => Error::KernelInvalid {
            path: config.kernel.clone(),
            reason,
        },
        LoadError::Unfit(e) => e,
    })?;
    let mut backends = open_backends(&config.disks, &config.nets)?;
    if config.loopback {
        backends.push(Arc::new(Loopback));
    }
    check_device_count(backends.len())?;
    let snapshot_out = config
        .snapshot
        .as_deref()
        .map(SnapshotOut::create)
        .transpose()?;

    let mut machine = Machine::create()?;
    let clock = SystemClock::starting_at(Instant::now());
    let host = machine.host;
    let transport = platform::choose_transport(&host, config.transport)?;
    let ram = Arc::new(GuestRam::new(mem_size).map_err(|source| Error::Io {
        op: "cannot allocate guest memory",
        source,
    })?);
    let dom = machine.domain(ram.clone(), transport, clock, false)?;
    let console_kick = backend_port(&machine.vm, &dom, None)?;
    let mut devices = Vec::new();
    for backend in backends {
        let (port, kick) = backend_port(&machine.vm, &dom, None)?;
        devices.push(Device::new(backend, port, kick));
    }
    let device_infos: Vec<_> = devices.iter().map(Device::info).collect();
    let mut masked_ports: Vec<u32> = device_infos.iter().map(|d| d.evtchn).collect();
    masked_ports.push(console_kick.0);
    dom.set_devices(devices);
    info!(
        "platform={} transport={} tsc_khz={} memory={}",
        host.platform.name(),
        transport.name(),
        host.tsc_khz,
        config.memory
    );

    let boot = builder::build(
        &ram,
        &BootParams {
            image: &image,
            cmdline: &config.cmdline,
            platform: host.platform,
            transport,
            patchable_hypercall_page: platform::is_foreign_trap(&host, transport),
            tsc_khz: host.tsc_khz,
            guest_tsc: host.guest_tsc,
            tsc_stable: host.tsc_stable,
            wallclock: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            upcall_vector: irq::UPCALL_VECTOR,
            console_evtchn: console_kick.0,
            devices: &device_infos,
            masked_ports: &masked_ports,
        },
    )?;
    machine.vcpu.set_boot_state(&boot)?;
    if host.platform == Platform::KvmPvm {
        platform::register_vif(&machine.vcpu)?;
    }
    debug!("guest built in {:?}", started.elapsed());
    let guest = Guest {
        machine,
        dom,
        transport,
        console_kick,
    };
    serve(
        guest,
        Session {
            started,
            kernel: config.kernel.clone(),
            timeout: config.timeout,
            stats: config.stats,
            gdb: gdb_listener,
            core: config.core.clone(),
            snapshot_out,
            warm: None,
            timings: Vec::new(),
        },
    )
}

/// Restores the snapshot `config` names and runs the guest on from it (or, with `warm`, serves
/// invocations from it); returns the process exit status.
pub fn restore(config: &RestoreConfig) -> Result<u8> {
    let started = Instant::now();
    crate::devices::net::check_inherited(&config.nets)?;
    prepare_process(config.seccomp)?;
    let snapshot_out = config
        .snapshot_out
        .as_deref()
        .map(SnapshotOut::create)
        .transpose()?;
    let mut machine = Machine::create()?;
    let t_vm = started.elapsed();
    let restored = Restored::load(&config.snapshot, &machine.host, host_kind(&machine.host))?;
    let backends = restored.backends(config)?;
    let transport = restored.transport;
    let fail = restored.fail();
    let snap = &restored.loaded.snapshot;
    let mut ram =
        GuestRam::from_snapshot(&restored.loaded.file, snap.memory_offset, snap.memory_size)
            .map_err(|e| fail(format!("cannot map its memory: {e}")))?;
    if config.warm {
        // A warm reset reverts the pages written: the guest's (KVM's dirty log) and the VMM's.
        ram.track_vmm_writes();
    }
    let ram = Arc::new(ram);
    let t_map = started.elapsed();
    let state = &restored.loaded.domain;
    let clock = SystemClock::continuing_from(restored.system_time_now());
    let dom = machine.domain(ram.clone(), transport, clock, config.warm)?;
    let console_kick = backend_port(&machine.vm, &dom, Some(state.console_port))?;
    let mut kicks = vec![(console_kick.0, console_kick.1.clone())];
    let mut devices = Vec::new();
    for (backend, saved) in backends.into_iter().zip(&state.devices) {
        let (port, kick) = backend_port(&machine.vm, &dom, Some(saved.evtchn))?;
        kicks.push((port, kick.clone()));
        devices.push(Device::new(backend, port, kick));
    }
    dom.event_channels
        .restore(&state.event_channels, |port| {
            kicks.iter().find(|k| k.0 == port).map(|k| k.1.clone())
        })
        .map_err(|e| {
            fail(format!(
                "the snapshot is malformed: its event channels: {e}"
            ))
        })?;
    dom.set_devices(devices);
    ram.protect(state.read_only.iter().map(|&(a, b)| a..b).collect());
    let refused = restored.loaded.vcpu.apply(&machine.vcpu)?;
    if !refused.is_empty() {
        return Err(fail(format!(
            "this host's KVM refuses the guest's MSRs {refused:#x?}"
        )));
    }
    if machine.host.platform == Platform::KvmPvm {
        platform::register_vif(&machine.vcpu)?;
    }
    let warm = if config.warm {
        machine.vcpu.sync_sregs();
        Some(WarmReset::new(
            &machine.vcpu,
            &ram,
            &restored,
            machine.host.platform,
        )?)
    } else {
        None
    };
    restored.resume(&machine.vcpu, &dom)?;
    let t_state = started.elapsed();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let timings = vec![
        ("restore.vm_ns".to_string(), ns(t_vm)),
        ("restore.snapshot_ns".to_string(), ns(t_map - t_vm)),
        ("restore.state_ns".to_string(), ns(t_state - t_map)),
    ];
    debug!(
        "restored in {:?}: VM and vCPU {:?}, snapshot checked and memory mapped {:?}, state {:?}",
        t_state,
        t_vm,
        t_map - t_vm,
        t_state - t_map
    );
    let kernel = state.kernel.clone();
    let guest = Guest {
        machine,
        dom,
        transport,
        console_kick,
    };
    serve(
        guest,
        Session {
            started,
            kernel,
            timeout: config.timeout,
            stats: config.stats,
            gdb: None,
            core: None,
            snapshot_out,
            warm: warm.map(|w| (w, restored)),
            timings,
        },
    )
}

/// What every run does to the process first.
fn prepare_process(seccomp: bool) -> Result<()> {
    // A background job (`parapet run … &`) must not be stopped by the terminal: that would stop
    // the guest too. The console reads standard input only in the foreground.
    crate::sys::ignore_terminal_stops().map_err(|source| Error::Io {
        op: "cannot ignore SIGTTIN and SIGTTOU",
        source,
    })?;
    crate::sys::on_snapshot_signal().map_err(|source| Error::Io {
        op: "cannot install the SIGUSR1 handler",
        source,
    })?;
    if seccomp {
        crate::seccomp::enable().map_err(|source| Error::Io {
            op: "cannot install the SIGSYS handler",
            source,
        })?;
    }
    Ok(())
}

/// Opens the host resources of the disks and network interfaces the user named.
fn open_backends(disks: &[DiskSpec], nets: &[NetSpec]) -> Result<Vec<Arc<dyn Backend>>> {
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for disk in disks {
        backends.push(Arc::new(BlockDevice::new(DiskImage::open(disk)?)));
    }
    for net in nets {
        backends.push(Arc::new(NetDevice::new(Tap::open(net)?)));
    }
    Ok(backends)
}

fn check_device_count(n: usize) -> Result<()> {
    if n > parapet_abi::device::MAX_DEVICES {
        return Err(Error::HostUnsupported(format!(
            "a guest can have at most {} devices",
            parapet_abi::device::MAX_DEVICES
        )));
    }
    Ok(())
}

/// A VM with its one vCPU, and what the VMM learnt about the host from it.
struct Machine {
    kvm: Kvm,
    vm: VmFd,
    vcpu: Vcpu,
    host: Host,
}

impl Machine {
    /// Opens KVM, creates the VM (with the split irqchip, before the vCPU) and the vCPU, and
    /// probes the host. The guest's TSC is read now: system time 0 of a booted guest.
    fn create() -> Result<Machine> {
        let kvm = kvm::open()?;
        let vm = kvm::create_vm(&kvm)?;
        irq::create_irqchip(&vm)?;
        let vcpu = Vcpu::new(vm.create_vcpu(0).map_err(|source| Error::Kvm {
            op: "KVM_CREATE_VCPU",
            source,
        })?);
        let host = platform::detect(&vcpu, kvm::xen_intercept_available(&vm))?;
        Ok(Machine {
            kvm,
            vm,
            vcpu,
            host,
        })
    }

    /// Gives the VM its RAM, sets the vCPU up for `transport`, and makes the domain.
    fn domain(
        &self,
        ram: Arc<GuestRam>,
        transport: Transport,
        clock: SystemClock,
        log_dirty: bool,
    ) -> Result<Domain> {
        kvm::register_ram(&self.vm, &ram, log_dirty)?;
        prepare_platform(&self.kvm, &self.vm, &self.vcpu, &self.host, transport)?;
        irq::enable_x2apic(&self.vcpu)?;
        let upcall_irqfd = irq::upcall_irqfd(&self.vm, irq::UPCALL_VECTOR)?;
        Ok(Domain::new(ram, Some(upcall_irqfd), clock))
    }
}

fn host_kind(host: &Host) -> HostKind {
    match host.platform {
        Platform::KvmPvm => HostKind::KvmPvm,
        Platform::KvmHardware => HostKind::KvmHardware,
    }
}

/// A built (or restored) guest, ready to run.
struct Guest {
    machine: Machine,
    dom: Domain,
    transport: Transport,
    console_kick: (u32, Arc<EventFd>),
}

/// How this run is served.
struct Session {
    started: Instant,
    /// The guest's kernel, for a fault report's symbols.
    kernel: PathBuf,
    timeout: Option<Duration>,
    stats: Option<StatsFormat>,
    gdb: Option<GdbListener>,
    core: Option<PathBuf>,
    snapshot_out: Option<SnapshotOut>,
    warm: Option<(WarmReset, Restored)>,
    /// Where the time to the guest's first instruction went (`--stats`).
    timings: Vec<(String, u64)>,
}

/// Runs the guest until its run is over, and reports.
fn serve(guest: Guest, mut session: Session) -> Result<u8> {
    let Guest {
        machine,
        dom,
        transport,
        console_kick,
    } = guest;
    let Machine {
        kvm: _kvm,
        vm,
        mut vcpu,
        host,
    } = machine;
    let ram = dom.ram.clone();
    vcpu.arm_kick().map_err(|source| Error::Io {
        op: "cannot install the vCPU kick handler",
        source,
    })?;
    dom.vcpu.set_vcpu_thread();
    if session.snapshot_out.is_some() || session.warm.is_some() {
        dom.enable_snapshots();
    }
    // SIGUSR1 (docs/snapshots.md): a snapshot where there is a file for it and no warm reset.
    let host_snapshots = session.snapshot_out.is_some() && session.warm.is_none();
    if crate::sys::kick_on_snapshot_signal(
        crate::sys::current_thread(),
        crate::control::kick_signal(),
    ) {
        dom.vcpu.kick(); // asked before the guest ran: before its first instruction, then
    }
    let mut warm_input = session.warm.as_ref().map(|_| WarmInput::stdin());
    let first_input = match &mut warm_input {
        Some(input) => match input.next_request() {
            Some(request) => ConsoleInput::Bytes(request),
            None => return Ok(0), // no invocation asked for
        },
        None => ConsoleInput::Stdin,
    };
    let mut console = Some(start_console(&dom, console_kick.clone(), first_input)?);
    // Lives until the run ends: dropping it cancels the watchdog.
    let watchdog = match session.timeout {
        Some(limit) => Some(start_watchdog(&dom, limit)?),
        None => None,
    };
    // Kept open for a fault report's symbols: the vCPU thread opens no files once it is confined.
    let kernel_file = open_kernel_again(&session.kernel);
    let core_dumper = session
        .core
        .as_ref()
        .map(|path| CoreDumper::start(path, ram.clone()))
        .transpose()?;
    let gdb_connection = match session.gdb.take() {
        Some(listener) => {
            eprintln!(
                "parapet: the guest waits for gdb; in gdb: file {} / {}",
                session.kernel.display(),
                listener.describe()
            );
            Some(listener.accept()?)
        }
        None => None,
    };
    // Threads that start once the guest runs come from the spawner; then this thread, the vCPU,
    // takes its own filter. From here on every VMM thread is confined.
    let confine = |what: &'static str, r: std::io::Result<()>| {
        r.map_err(|source| Error::Io { op: what, source })
    };
    confine(
        "cannot start the spawner thread",
        crate::seccomp::start_spawner(),
    )?;
    let role = match gdb_connection {
        Some(_) => crate::seccomp::Role::DebuggedVcpu,
        None => crate::seccomp::Role::Vcpu,
    };
    confine(
        "cannot install the vCPU thread's seccomp filter",
        crate::seccomp::install(role),
    )?;
    let mut counters = ExitCounters::default();
    let mut invocations = 0u64;
    let mut resets: Vec<u64> = Vec::new();
    session.timings.push((
        "start.to_guest_ns".to_string(),
        u64::try_from(session.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    ));
    let exit = {
        let mut run = VcpuLoop {
            vcpu: &mut vcpu,
            dom: &dom,
            counters: &mut counters,
            platform: host.platform,
            check_native: host.platform == Platform::KvmPvm,
            xen_transport: transport != Transport::Pio,
            host_snapshots,
        };
        match gdb_connection {
            Some((conn, fd)) => debug_run(&mut run, conn, fd),
            None => loop {
                let exit = run_to_end(&mut run);
                let (Ok(GuestExit::Suspended), Some((warm, restored)), Some(input)) =
                    (&exit, &mut session.warm, &mut warm_input)
                else {
                    break exit;
                };
                invocations += 1;
                let Some(request) = input.next_request() else {
                    break exit;
                };
                let reset_started = Instant::now();
                // End of one invocation: its output out, the domain back to the snapshot, the
                // next request in.
                for device in dom.devices() {
                    device.stop();
                }
                let paused = console.as_ref().map(Console::pause);
                warm.reset(run.vcpu, &vm, &dom, restored)?;
                if let Some(paused) = paused {
                    paused.resume(request);
                }
                resets.push(u64::try_from(reset_started.elapsed().as_nanos()).unwrap_or(u64::MAX));
            },
        }
    };
    if let Some((done, _)) = &watchdog {
        // The guest no longer runs: the watchdog now only bounds the rest of the run.
        let _ = done.try_send(());
    }
    // Stop the backends (a snapshot notes which were connected first); the console drains the
    // guest's last output.
    let rings: Vec<_> = dom.devices().iter().map(Device::connected_rings).collect();
    for device in dom.devices() {
        device.stop();
    }
    if let Some(c) = console.take() {
        c.stop();
    }
    debug!("guest ran for {:?}", session.started.elapsed());

    if let Some(format) = session.stats {
        let kvm_stats = kvm::stats::read(vcpu.fd()).unwrap_or_else(|e| {
            warn!("cannot read the vCPU's KVM statistics: {e}");
            Vec::new()
        });
        resets.sort_unstable();
        let pct =
            |p: usize| resets.get((resets.len() * p / 100).min(resets.len().saturating_sub(1)));
        let warm_stats = session.warm.as_ref().map(|(w, _)| {
            [
                ("warm.invocations".to_string(), invocations),
                ("warm.slot_reloads".to_string(), w.slot_reloads),
                ("warm.reverted_pages".to_string(), w.reverted_pages),
                (
                    "warm.reset_p50_ns".to_string(),
                    pct(50).copied().unwrap_or(0),
                ),
                (
                    "warm.reset_p99_ns".to_string(),
                    pct(99).copied().unwrap_or(0),
                ),
                (
                    "warm.reset_max_ns".to_string(),
                    resets.last().copied().unwrap_or(0),
                ),
            ]
        });
        let device_stats: Vec<_> = dom
            .devices()
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.stats(i))
            .chain(crate::seccomp::stats())
            .chain(warm_stats.into_iter().flatten())
            .chain(session.timings.iter().cloned())
            .collect();
        let all = counters.all(&kvm_stats, &device_stats);
        eprint!("{}", crate::stats::render(&all, format));
    }
    let exit = exit?;
    let saved = match (&exit, &mut session.snapshot_out) {
        (GuestExit::Suspended, Some(out)) if session.warm.is_none() => {
            let state = domain_state(
                &dom,
                &host,
                transport,
                &session.kernel,
                console_kick.0,
                rings,
            );
            Some(
                snapshot::save(out, &mut vcpu, &state, &ram, host_kind(&host))
                    .map(|s| (out.path().to_owned(), s)),
            )
        }
        _ => None,
    };
    let core = core_dumper.and_then(|dumper| {
        let (cr3, regs) = crate::debug::core_dump::registers(&exit, &vcpu)?;
        Some(dumper.dump(cr3, regs, crate::debug::fatal_signal(&exit).into()))
    });
    let status = match saved {
        Some(Ok((path, s))) => {
            eprintln!(
                "parapet: guest suspended; snapshot written to {} ({} KiB of {} MiB of memory, in {:.1} ms)",
                path.display(),
                s.memory_bytes >> 10,
                s.memory_size >> 20,
                s.took.as_secs_f64() * 1e3
            );
            0
        }
        Some(Err(e)) => {
            eprintln!("parapet: error: {e}");
            status::VMM_ERROR
        }
        None => report(exit, &vcpu, &ram, kernel_file.as_ref(), session.timeout),
    };
    match core {
        Some(Ok(path)) => eprintln!("parapet: core dumped to {}", path.display()),
        Some(Err(e)) => eprintln!("parapet: error: cannot write the core dump: {e}"),
        None => {}
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    crate::sys::defer_vm_teardown(&[vm.as_raw_fd(), vcpu.fd().as_raw_fd()]);
    Ok(status)
}

/// The VMM's side of a stopped domain, for its snapshot; `rings` says which devices were
/// connected to which rings. Disarms the timer.
fn domain_state(
    dom: &Domain,
    host: &Host,
    transport: Transport,
    kernel: &Path,
    console_port: u32,
    rings: Vec<Option<Vec<u32>>>,
) -> DomainState {
    let (deadline, fired) = dom.timer.take_state();
    let kernel = std::path::absolute(kernel).unwrap_or_else(|_| kernel.to_owned());
    DomainState {
        kernel,
        platform: host.platform as u32,
        transport: transport as u32,
        tsc_khz: host.tsc_khz,
        system_time_ns: dom.clock.now_ns(),
        unix_time_ns: snapshot::unix_now_ns(),
        timer_deadline_ns: deadline.map(|d| dom.clock.ns_of(d)),
        timer_fired: fired,
        event_channels: dom.event_channels.save(),
        console_port,
        devices: dom
            .devices()
            .iter()
            .zip(rings)
            .map(|(d, rings)| SavedDevice::new(&d.info(), rings, d.source()))
            .collect(),
        read_only: dom
            .ram
            .read_only_ranges()
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect(),
    }
}

/// Runs the guest without a debugger until its run is over.
fn run_to_end(run: &mut VcpuLoop<'_>) -> Result<GuestExit> {
    loop {
        match run.run()? {
            Stop::Exit(exit) => return Ok(exit),
            // Only a stale request from a debugger that has left: go on.
            Stop::Debug(stop) => debug!("debug stop {stop:?} without a debugger"),
        }
    }
}

/// Runs the guest under gdb; if gdb detaches, on without it.
fn debug_run(
    run: &mut VcpuLoop<'_>,
    conn: gdb::GdbConnection,
    fd: std::os::fd::RawFd,
) -> Result<GuestExit> {
    match gdb::serve(run, conn, fd)? {
        SessionEnd::Exit(exit) => Ok(exit),
        SessionEnd::Killed => Ok(GuestExit::Killed),
        SessionEnd::Detached => {
            eprintln!("parapet: gdb detached; the guest runs on");
            run_to_end(run)
        }
    }
}

fn check_memory(bytes: u64) -> Result<u64> {
    use crate::config::MemSize;
    let mib = |b| MemSize(b).to_string();
    if bytes < layout::MIN_MEMORY {
        return Err(Error::Memory(format!(
            "guest memory of {} is too small: the minimum is {}",
            mib(bytes),
            mib(layout::MIN_MEMORY)
        )));
    }
    if bytes > layout::MAX_MEMORY {
        return Err(Error::Memory(format!(
            "guest memory of {} is too large: the maximum is {}",
            mib(bytes),
            mib(layout::MAX_MEMORY)
        )));
    }
    if !bytes.is_multiple_of(layout::MEMORY_GRANULE) {
        return Err(Error::Memory(format!(
            "guest memory of {} is not a multiple of 2 MiB",
            mib(bytes)
        )));
    }
    Ok(bytes)
}

/// Host-specific VM setup before the guest is built.
fn prepare_platform(
    kvm: &Kvm,
    vm: &VmFd,
    vcpu: &Vcpu,
    host: &Host,
    transport: Transport,
) -> Result<()> {
    if host.platform == Platform::KvmPvm && !host.pvm_native {
        warn!(
            "kvm_pvm reports that native execution is unavailable: the guest will be \
             instruction-emulated, thousands of times slower"
        );
    }
    // KVM checks long mode and NX (KVM_SET_SREGS) and x2APIC (the APIC base MSR) against the
    // guest CPUID. On VT-x/AMD-V the guest also sees this table, so it gets everything KVM
    // supports. kvm_pvm does not intercept CPUID in native mode, so there the table only feeds
    // KVM's own checks, and the few leaves they read are much cheaper than the full query.
    let cpuid = match host.platform {
        Platform::KvmPvm => platform::minimal_cpuid(),
        Platform::KvmHardware => kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|source| Error::Kvm {
                op: "KVM_GET_SUPPORTED_CPUID",
                source,
            })?,
    };
    vcpu.fd().set_cpuid2(&cpuid).map_err(|source| Error::Kvm {
        op: "KVM_SET_CPUID2",
        source,
    })?;
    if transport != Transport::Pio {
        kvm::enable_xen_intercept(vm)?;
    }
    Ok(())
}

/// Connects a guest port to a backend doorbell: the port's notifications signal the returned
/// eventfd inside KVM (an ioeventfd on the doorbell port matching the port number). A new port,
/// or `restored`, a port of a restored snapshot's event-channel table.
fn backend_port(vm: &VmFd, dom: &Domain, restored: Option<u32>) -> Result<(u32, Arc<EventFd>)> {
    let kick = Arc::new(
        EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Io {
            op: "cannot create a backend eventfd",
            source,
        })?,
    );
    let port = match restored {
        Some(port) => port,
        None => dom.event_channels.bind_backend(kick.clone()).map_err(|e| {
            Error::HostUnsupported(format!("cannot allocate a backend event channel: {e}"))
        })?,
    };
    vm.register_ioevent(&kick, &IoEventAddress::Pio(PIO_DOORBELL_PORT.into()), port)
        .map_err(|source| Error::Kvm {
            op: "KVM_IOEVENTFD",
            source,
        })?;
    Ok((port, kick))
}

/// Starts the console backend on the console page.
fn start_console(
    dom: &Domain,
    (port, kick): (u32, Arc<EventFd>),
    input: ConsoleInput,
) -> Result<Console> {
    let page = GuestPage::new(dom.ram.clone(), layout::CONSOLE_PAGE)
        .expect("the console page lies inside guest RAM");
    crate::devices::console::start(&dom.backend_link(), page, port, kick, input).map_err(|source| {
        Error::Io {
            op: "cannot start the console backend",
            source,
        }
    })
}

/// How long the VMM has, after `--timeout` stopped the guest, to stop its backends and report
/// before the watchdog ends the process itself: `--timeout N` always ends it within N + 1 s.
const STOP_GRACE: Duration = Duration::from_millis(750);

/// Starts the thread that stops the guest after `limit`, and ends the process if the VMM has
/// not finished [`STOP_GRACE`] after that deadline (or after stopping the guest). A message on
/// the returned sender says the guest stopped by itself; dropping it (at the end of the run)
/// cancels the watchdog.
fn start_watchdog(
    dom: &Domain,
    limit: Duration,
) -> Result<(Sender<()>, std::thread::JoinHandle<()>)> {
    use crossbeam_channel::RecvTimeoutError::Timeout;
    let (vcpu, control) = (dom.vcpu.clone(), dom.control_sender());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let handle = crate::seccomp::spawn(crate::seccomp::Role::Watchdog, move || {
        use crossbeam_channel::RecvTimeoutError::Disconnected;
        let deadline = Instant::now() + limit;
        match done_rx.recv_deadline(deadline) {
            // The guest stopped by itself: only the hard deadline below is left.
            Ok(()) => {}
            Err(Disconnected) => return,
            Err(Timeout) => {
                let _ = control.send(Control::Stop);
                vcpu.kick();
            }
        }
        // Whatever happened, the process ends within STOP_GRACE of the deadline.
        let hard = deadline.max(Instant::now()) + STOP_GRACE;
        loop {
            match done_rx.recv_deadline(hard) {
                Ok(()) => continue,
                Err(Disconnected) => return,
                Err(Timeout) => crate::sys::exit_now(
                    i32::from(status::TIMEOUT),
                    &format!(
                        "parapet: guest timed out after {} s; the VMM did not finish within {} \
                         ms of the deadline and exits now\n",
                        limit.as_secs_f64(),
                        STOP_GRACE.as_millis()
                    ),
                ),
            }
        }
    })
    .map_err(|source| Error::Io {
        op: "cannot start the watchdog thread",
        source,
    })?;
    Ok((done_tx, handle))
}

/// The most kernel bytes read again for a fault report's symbols.
const SYMBOLS_FILE_MAX: u64 = 256 << 20;

/// The kernel file again, opened without blocking, for a fault report's symbols.
fn open_kernel_again(kernel: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(kernel)
        .ok()
}

/// The kernel file's bytes, for its symbols: only a regular file of at most
/// [`SYMBOLS_FILE_MAX`] bytes (the file may have changed since the guest was loaded).
fn read_symbols_file(file: &std::fs::File) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > SYMBOLS_FILE_MAX {
        return None;
    }
    let mut bytes = vec![0u8; meta.len() as usize];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Some(bytes)
}

/// Tells the user how the guest ended; returns the exit status.
fn report(
    exit: GuestExit,
    vcpu: &Vcpu,
    ram: &GuestRam,
    kernel: Option<&std::fs::File>,
    timeout: Option<Duration>,
) -> u8 {
    // Symbols are read only now, for the report; a kernel that vanished meanwhile just has none.
    let symbols = || SymbolTable::from_elf(&kernel.and_then(read_symbols_file).unwrap_or_default());
    let render = |info: &FaultInfo| info.render(ram, &symbols());
    match exit {
        GuestExit::Poweroff(code) => {
            debug!("guest powered off with exit code {code}");
            code
        }
        GuestExit::Crash => {
            eprintln!("parapet: guest crashed");
            status::CRASH
        }
        GuestExit::Reboot => {
            eprintln!("parapet: guest asked to reboot; Parapet does not restart guests");
            status::REBOOT
        }
        GuestExit::Watchdog => {
            eprintln!("parapet: guest watchdog fired");
            status::WATCHDOG
        }
        GuestExit::Fault(info) => {
            eprint!("parapet: guest fault: {}\n{}", info.what, render(&info));
            status::FAULT
        }
        // The end of the last warm-reset invocation (other suspends write a snapshot).
        GuestExit::Suspended => 0,
        GuestExit::Killed => {
            eprintln!("parapet: gdb killed the guest");
            status::KILLED
        }
        GuestExit::Stopped => {
            let secs = timeout.map_or(0.0, |t| t.as_secs_f64());
            eprintln!("parapet: guest timed out after {secs} s");
            if let Ok(info) = vcpu_fault(vcpu, "timeout".into()) {
                eprint!("{}", render(&info));
            }
            status::TIMEOUT
        }
    }
}
