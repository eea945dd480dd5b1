//! One guest run, start to finish: validate, build, run the vCPU, report.

use crate::builder::{self, BootParams};
use crate::config::VmConfig;
use crate::control::Control;
use crate::debug::core_dump::CoreDumper;
use crate::debug::gdb::{self, SessionEnd};
use crate::debug::listen::GdbListener;
use crate::devices::block::{BlockDevice, DiskImage};
use crate::devices::loopback::Loopback;
use crate::devices::net::{NetDevice, Tap};
use crate::devices::{BackendThread, Device};
use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::kvm::{self, irq, vcpu::Vcpu};
use crate::layout;
use crate::loader::{self, LoadError};
use crate::memory::GuestPage;
use crate::memory::GuestRam;
use crate::outcome::{FaultInfo, GuestExit, status};
use crate::platform::{self, Host};
use crate::stats::ExitCounters;
use crate::symbols::SymbolTable;
use crate::vcpu_loop::{Stop, VcpuLoop, vcpu_fault};
use crossbeam_channel::Sender;
use kvm_ioctls::IoEventAddress;
use kvm_ioctls::{Kvm, VmFd};
use parapet_abi::hypercall::PIO_DOORBELL_PORT;
use parapet_abi::start_info::{Platform, Transport};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};
use vmm_sys_util::eventfd::EventFd;

/// Runs the guest `config` describes; returns the process exit status.
pub fn run(config: &VmConfig) -> Result<u8> {
    let started = Instant::now();
    // A background job (`parapet run … &`) must not be stopped by the terminal: that would stop
    // the guest too. The console reads standard input only in the foreground.
    crate::sys::ignore_terminal_stops().map_err(|source| Error::Io {
        op: "cannot ignore SIGTTIN and SIGTTOU",
        source,
    })?;
    if config.seccomp {
        crate::seccomp::enable().map_err(|source| Error::Io {
            op: "cannot install the SIGSYS handler",
            source,
        })?;
    }
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
    let disks = config
        .disks
        .iter()
        .map(DiskImage::open)
        .collect::<Result<Vec<_>>>()?;
    let taps = config
        .nets
        .iter()
        .map(Tap::open)
        .collect::<Result<Vec<_>>>()?;
    if disks.len() + taps.len() + usize::from(config.loopback) > parapet_abi::device::MAX_DEVICES {
        return Err(Error::HostUnsupported(format!(
            "a guest can have at most {} devices",
            parapet_abi::device::MAX_DEVICES
        )));
    }

    let kvm = kvm::open()?;
    let vm = kvm::create_vm(&kvm)?;
    let ram = Arc::new(GuestRam::new(mem_size).map_err(|source| Error::Io {
        op: "cannot allocate guest memory",
        source,
    })?);
    kvm::register_ram(&vm, &ram)?;
    irq::create_irqchip(&vm)?;
    let mut vcpu = Vcpu::new(vm.create_vcpu(0).map_err(|source| Error::Kvm {
        op: "KVM_CREATE_VCPU",
        source,
    })?);
    let host = platform::detect(&vcpu, kvm::xen_intercept_available(&vm))?;
    let boot_instant = Instant::now();
    let transport = platform::choose_transport(&host, config.transport)?;
    prepare_platform(&kvm, &vm, &vcpu, &host, transport)?;
    irq::enable_x2apic(&vcpu)?;
    let upcall_irqfd = irq::upcall_irqfd(&vm, irq::UPCALL_VECTOR)?;
    let dom = Domain::new(ram.clone(), Some(upcall_irqfd), boot_instant);
    let console_kick = backend_port(&vm, &dom)?;
    let mut devices = Vec::new();
    for disk in disks {
        let (port, kick) = backend_port(&vm, &dom)?;
        devices.push(Device::new(Arc::new(BlockDevice::new(disk)), port, kick));
    }
    for tap in taps {
        let (port, kick) = backend_port(&vm, &dom)?;
        devices.push(Device::new(Arc::new(NetDevice::new(tap)), port, kick));
    }
    if config.loopback {
        let (port, kick) = backend_port(&vm, &dom)?;
        devices.push(Device::new(Arc::new(Loopback), port, kick));
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
    vcpu.set_boot_state(&boot)?;
    if host.platform == Platform::KvmPvm {
        platform::register_vif(&vcpu)?;
    }
    debug!("guest built in {:?}", started.elapsed());

    vcpu.arm_kick().map_err(|source| Error::Io {
        op: "cannot install the vCPU kick handler",
        source,
    })?;
    dom.vcpu.set_vcpu_thread();
    let console = start_console(&dom, console_kick)?;
    // Lives until the run ends: dropping it cancels the watchdog.
    let watchdog = match config.timeout {
        Some(limit) => Some(start_watchdog(&dom, limit)?),
        None => None,
    };
    // Kept open for a fault report's symbols: the vCPU thread opens no files once it is confined.
    let kernel_file = open_kernel_again(&config.kernel);
    let core_dumper = config
        .core
        .as_ref()
        .map(|path| CoreDumper::start(path, ram.clone()))
        .transpose()?;
    let gdb_connection = match gdb_listener {
        Some(listener) => {
            eprintln!(
                "parapet: the guest waits for gdb; in gdb: file {} / {}",
                config.kernel.display(),
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
    let mut run = VcpuLoop {
        vcpu: &mut vcpu,
        dom: &dom,
        counters: &mut counters,
        platform: host.platform,
        check_native: host.platform == Platform::KvmPvm,
        xen_transport: transport != Transport::Pio,
    };
    let exit = match gdb_connection {
        Some((conn, fd)) => debug_run(&mut run, conn, fd),
        None => run_to_end(&mut run),
    };
    if let Some((done, _)) = &watchdog {
        // The guest no longer runs: the watchdog now only bounds the rest of the run.
        let _ = done.try_send(());
    }
    // Stop the backends; the console drains the guest's last output first.
    for device in dom.devices() {
        device.stop();
    }
    console.stop();
    debug!("guest ran for {:?}", started.elapsed());

    if let Some(format) = config.stats {
        let kvm_stats = kvm::stats::read(vcpu.fd()).unwrap_or_else(|e| {
            warn!("cannot read the vCPU's KVM statistics: {e}");
            Vec::new()
        });
        let device_stats: Vec<_> = dom
            .devices()
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.stats(i))
            .chain(crate::seccomp::stats())
            .collect();
        let all = counters.all(&kvm_stats, &device_stats);
        eprint!("{}", crate::stats::render(&all, format));
    }
    let exit = exit?;
    let core = core_dumper.and_then(|dumper| {
        let (cr3, regs) = crate::debug::core_dump::registers(&exit, &vcpu)?;
        Some(dumper.dump(cr3, regs, crate::debug::fatal_signal(&exit).into()))
    });
    let status = report(exit, &vcpu, &ram, kernel_file.as_ref(), config.timeout);
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

/// Connects a new guest port to a backend doorbell: the port's notifications signal the
/// returned eventfd inside KVM (an ioeventfd on the doorbell port matching the port number).
fn backend_port(vm: &VmFd, dom: &Domain) -> Result<(u32, Arc<EventFd>)> {
    let kick = Arc::new(
        EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Io {
            op: "cannot create a backend eventfd",
            source,
        })?,
    );
    let port = dom.event_channels.bind_backend(kick.clone()).map_err(|e| {
        Error::HostUnsupported(format!("cannot allocate a backend event channel: {e}"))
    })?;
    vm.register_ioevent(&kick, &IoEventAddress::Pio(PIO_DOORBELL_PORT.into()), port)
        .map_err(|source| Error::Kvm {
            op: "KVM_IOEVENTFD",
            source,
        })?;
    Ok((port, kick))
}

/// Starts the console backend on the console page.
fn start_console(dom: &Domain, (port, kick): (u32, Arc<EventFd>)) -> Result<BackendThread> {
    let page = GuestPage::new(dom.ram.clone(), layout::CONSOLE_PAGE)
        .expect("the console page lies inside guest RAM");
    crate::devices::console::start(&dom.backend_link(), page, port, kick).map_err(|source| {
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
