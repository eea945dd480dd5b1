//! Restoring a snapshot (docs/snapshots.md): checking it against this host and the devices the
//! user gives, putting the VMM state back and re-anchoring what moved on since (the clocks, the
//! generation, the devices' host resources), and the warm reset that does it again in the same
//! VM for every invocation.

use crate::config::{DiskSpec, NetSpec, RestoreConfig};
use crate::devices::Backend;
use crate::devices::block::{BlockDevice, DiskImage};
use crate::devices::loopback::Loopback;
use crate::devices::net::{NetDevice, Tap};
use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::kvm::vcpu::Vcpu;
use crate::memory::GuestRam;
use crate::platform::Host;
use crate::snapshot::format::HostKind;
use crate::snapshot::{self, Loaded};
use kvm_ioctls::VmFd;
use parapet_abi::device::{DeviceInfo, kind};
use parapet_abi::start_info::{Platform, Transport};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::debug;

/// The most read-only ranges a snapshot may list: far more than the builder makes, and a bound
/// on the work each backend write check does.
const MAX_READ_ONLY_RANGES: usize = 64;

/// The guest's TSC, which the PV clock is anchored on.
const MSR_IA32_TSC: u32 = 0x10;

/// A checked snapshot, and what restoring it needs.
#[derive(Debug)]
pub struct Restored {
    /// The file and its decoded state.
    pub loaded: Loaded,
    /// The hypercall transport the guest's hypercall page uses.
    pub transport: Transport,
    path: PathBuf,
}

impl Restored {
    /// Loads the snapshot at `path` and checks that `host` can run it.
    pub fn load(path: &Path, host: &Host, host_kind: HostKind) -> Result<Restored> {
        let loaded = snapshot::load(path, host_kind)?;
        let fail = |reason: String| Error::Snapshot {
            path: path.to_owned(),
            reason,
        };
        let state = &loaded.domain;
        let size = loaded.snapshot.memory_size;
        if !(crate::layout::MIN_MEMORY..=crate::layout::MAX_MEMORY).contains(&size)
            || !size.is_multiple_of(crate::layout::MEMORY_GRANULE)
        {
            return Err(fail(format!(
                "the snapshot is malformed: guest memory of {size} bytes"
            )));
        }
        if state.platform != host.platform as u32 {
            return Err(fail(format!(
                "the snapshot was taken on platform {}; this host is {}",
                state.platform,
                host.platform.name()
            )));
        }
        if state.tsc_khz != host.tsc_khz {
            return Err(fail(format!(
                "the guest's clock counts a {} kHz TSC; this host's runs at {} kHz",
                state.tsc_khz, host.tsc_khz
            )));
        }
        let transport = Transport::from_raw(state.transport).ok_or_else(|| {
            fail(format!(
                "the snapshot is malformed: hypercall transport {}",
                state.transport
            ))
        })?;
        if transport != Transport::Pio && !host.xen_intercept {
            return Err(fail(format!(
                "the guest makes hypercalls with {}, which needs KVM's Xen intercept; this host \
                 has none",
                transport.name()
            )));
        }
        // The builder protects a handful of ranges (kernel text, read-only data, boot pages).
        if state.read_only.len() > MAX_READ_ONLY_RANGES
            || state
                .read_only
                .iter()
                .any(|&(start, end)| start >= end || end > size)
        {
            return Err(fail(
                "the snapshot is malformed: its read-only ranges".into(),
            ));
        }
        if state.devices.len() > parapet_abi::device::MAX_DEVICES {
            return Err(fail("the snapshot is malformed: too many devices".into()));
        }
        Ok(Restored {
            loaded,
            transport,
            path: path.to_owned(),
        })
    }

    /// An error about this snapshot.
    pub fn fail(&self) -> impl Fn(String) -> Error + use<> {
        let path = self.path.clone();
        move |reason| Error::Snapshot {
            path: path.clone(),
            reason,
        }
    }

    /// The guest's system time now: at the snapshot, plus the real time since (none if the
    /// wall clock went back).
    pub fn system_time_now(&self) -> u64 {
        let state = &self.loaded.domain;
        let since = snapshot::unix_now_ns().saturating_sub(state.unix_time_ns);
        state.system_time_ns.saturating_add(since)
    }

    /// The backends of the snapshot's devices, in order: from the disks and TAPs of `config`
    /// if it names any, else from those the snapshot was taken with. Each must look to the
    /// guest as the saved one did (only a network interface's MAC may change), and a disk that
    /// was writable is refused: its contents moved on since the snapshot.
    pub fn backends(&self, config: &RestoreConfig) -> Result<Vec<Arc<dyn Backend>>> {
        let fail = self.fail();
        let saved = &self.loaded.domain.devices;
        let count = |k| saved.iter().filter(|d| d.kind == k).count();
        let (want_disks, want_nets) = (count(kind::BLOCK), count(kind::NET));
        if !config.disks.is_empty() && config.disks.len() != want_disks {
            return Err(fail(format!(
                "the guest has {want_disks} block devices; {} --disk given",
                config.disks.len()
            )));
        }
        if !config.nets.is_empty() && config.nets.len() != want_nets {
            return Err(fail(format!(
                "the guest has {want_nets} network interfaces; {} --net given",
                config.nets.len()
            )));
        }
        let (mut disks, mut nets) = (config.disks.iter(), config.nets.iter());
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        for (index, d) in saved.iter().enumerate() {
            let backend: Arc<dyn Backend> = match d.kind {
                kind::BLOCK => {
                    if d.flags & parapet_abi::blkif::flags::READONLY == 0 {
                        return Err(fail(format!(
                            "device {index} is the writable disk {}: its contents have moved on \
                             since the snapshot, so it cannot be restored (take snapshots of \
                             guests whose disks are read-only)",
                            d.source
                        )));
                    }
                    let spec = match disks.next() {
                        Some(spec) => spec.clone(),
                        None => d.source.parse::<DiskSpec>().map_err(&fail)?,
                    };
                    Arc::new(BlockDevice::new(DiskImage::open(&spec)?))
                }
                kind::NET => {
                    let spec = match nets.next() {
                        Some(spec) => spec.clone(),
                        None if d.source.starts_with("fd=") => {
                            return Err(fail(format!(
                                "device {index} is a network interface on an inherited TAP \
                                 descriptor ({}), which ended with the process that took the \
                                 snapshot: give --net tap=NAME or --net fd=N for each interface",
                                d.source
                            )));
                        }
                        None => d.source.parse::<NetSpec>().map_err(&fail)?,
                    };
                    Arc::new(NetDevice::new(Tap::open(&spec)?))
                }
                kind::LOOPBACK => Arc::new(Loopback),
                other => {
                    return Err(fail(format!(
                        "the snapshot is malformed: device {index} has kind {other}"
                    )));
                }
            };
            let mut info = DeviceInfo {
                kind: backend.kind(),
                nr_rings: backend.nr_rings(),
                evtchn: d.evtchn,
                ..Default::default()
            };
            backend.describe(&mut info);
            let mut config_words = info.config;
            if d.kind == kind::NET {
                config_words[parapet_abi::netif::CONFIG_MAC] =
                    d.config[parapet_abi::netif::CONFIG_MAC];
            }
            if info.nr_rings != d.nr_rings || info.flags != d.flags || config_words != d.config {
                return Err(fail(format!(
                    "device {index} ({}) is not the device the guest had: {} differs",
                    backend.source(),
                    if d.kind == kind::BLOCK {
                        "its size or mode"
                    } else {
                        "its configuration"
                    }
                )));
            }
            backends.push(backend);
        }
        Ok(backends)
    }

    /// Makes a domain whose memory and vCPU are the snapshot's into the running one it was:
    /// re-anchors the clocks on `vcpu`'s TSC, gives it a new generation and its devices'
    /// start-info entries, re-arms its timer, marks it blocked if it was, and re-attaches the
    /// connected devices to their rings.
    pub fn resume(&self, vcpu: &Vcpu, dom: &Domain) -> Result<()> {
        self.resume_at(guest_tsc(vcpu)?, dom)
    }

    /// [`Restored::resume`] with the guest's TSC now.
    fn resume_at(&self, tsc: u64, dom: &Domain) -> Result<()> {
        let state = &self.loaded.domain;
        let ram = &dom.ram;
        let system_ns = dom.clock.now_ns();
        let unix_ns = snapshot::unix_now_ns();
        snapshot::anchor_clock(ram, tsc, system_ns, unix_ns)?;
        snapshot::write_generation(ram, snapshot::new_generation())?;
        snapshot::drop_console_input(ram)?;
        for (index, device) in dom.devices().iter().enumerate() {
            snapshot::write_device_info(ram, index, &device.info())?;
        }
        let fired = state.timer_fired;
        let deadline = state.timer_deadline_ns.map(|ns| dom.clock.instant_of(ns));
        dom.timer.set_state((deadline, fired));
        dom.vcpu.set_blocked(self.loaded.vcpu.halted());
        let link = dom.backend_link();
        for (index, (device, saved)) in dom.devices().iter().zip(&state.devices).enumerate() {
            if let Some(rings) = &saved.rings {
                device.reattach(&link, rings).map_err(|e| {
                    (self.fail())(format!(
                        "device {index} cannot re-attach to its rings: {e} (the snapshot is \
                         malformed)"
                    ))
                })?;
            }
        }
        Ok(())
    }
}

/// The guest's TSC now, as KVM reports it.
fn guest_tsc(vcpu: &Vcpu) -> Result<u64> {
    vcpu.read_msrs(&[MSR_IA32_TSC])?
        .first()
        .copied()
        .ok_or_else(|| Error::HostUnsupported("KVM cannot read the guest TSC".into()))
}

/// Warm reset (docs/snapshots.md): puts the VM that restored a snapshot back to it after each
/// invocation, without a new VM.
#[derive(Debug)]
pub struct WarmReset {
    /// The snapshot's page-table pages and their contents: on kvm_pvm the shadow MMU keeps
    /// translations from a page-table page the host reverts behind its back (kvm-pvm.md §8),
    /// so an invocation that changed one costs a memory-slot reload.
    tables: Vec<(u64, Vec<u8>)>,
    shadow_mmu: bool,
    /// The guest's TSC minus the host's: constant for one VM, so a reset reads the host's TSC
    /// instead of asking KVM.
    tsc_offset: u64,
    /// Resets that reloaded the memory slot.
    pub slot_reloads: u64,
    /// Pages reverted, over all resets.
    pub reverted_pages: u64,
}

impl WarmReset {
    /// Prepares to reset `ram` (mapped from `restored`) on a host on `platform`.
    pub fn new(
        vcpu: &Vcpu,
        ram: &GuestRam,
        restored: &Restored,
        platform: Platform,
    ) -> Result<WarmReset> {
        let tsc_offset = guest_tsc(vcpu)?.wrapping_sub(crate::sys::rdtsc());
        let shadow_mmu = platform == Platform::KvmPvm;
        let tables = if shadow_mmu {
            snapshot::page_table_pages(ram, restored.loaded.vcpu.cr3())
                .into_iter()
                .map(|gpa| {
                    let mut page = vec![0u8; 4096];
                    let _ = ram.read(vm_memory::GuestAddress(gpa), &mut page);
                    (gpa, page)
                })
                .collect()
        } else {
            Vec::new()
        };
        debug!("warm reset watches {} page-table pages", tables.len());
        Ok(WarmReset {
            tables,
            shadow_mmu,
            tsc_offset,
            slot_reloads: 0,
            reverted_pages: 0,
        })
    }

    /// Puts the stopped domain (its backends stopped) back to the snapshot `restored`: memory
    /// (the pages written since go back to the file's), the vCPU, the event channels and the
    /// timer; then resumes it as a restore does, with a new generation.
    pub fn reset(
        &mut self,
        vcpu: &mut Vcpu,
        vm: &VmFd,
        dom: &Domain,
        restored: &Restored,
    ) -> Result<()> {
        vcpu.finish_exit()?;
        let ram = &dom.ram;
        let tables_changed = self.shadow_mmu
            && self.tables.iter().any(|(gpa, saved)| {
                let mut now = [0u8; 4096];
                ram.read(vm_memory::GuestAddress(*gpa), &mut now).is_err()
                    || !same_entries(&now, saved)
            });
        let mut written = crate::kvm::dirty_pages(vm, ram)?;
        for (page, vmm) in written.iter_mut().zip(ram.take_vmm_writes()) {
            *page |= vmm;
        }
        self.reverted_pages += written
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        ram.revert_pages(&written).map_err(|source| Error::Io {
            op: "cannot revert guest memory to the snapshot",
            source,
        })?;
        if tables_changed {
            crate::kvm::reload_ram(vm, ram, true)?;
            self.slot_reloads += 1;
        }
        let refused = restored.loaded.vcpu.reapply(vcpu)?;
        if !refused.is_empty() {
            return Err(Error::HostUnsupported(format!(
                "KVM refused MSRs {refused:#x?} on a warm reset"
            )));
        }
        if tables_changed && dom_platform_is_pvm(restored) {
            crate::platform::register_vif(vcpu)?;
        }
        if dom.event_channels.changed() {
            self.restore_event_channels(dom, restored)?;
        }
        restored.resume_at(crate::sys::rdtsc().wrapping_add(self.tsc_offset), dom)
    }

    fn restore_event_channels(&self, dom: &Domain, restored: &Restored) -> Result<()> {
        let kicks: Vec<_> = restored
            .loaded
            .domain
            .event_channels
            .iter()
            .filter_map(|p| match p {
                crate::event_channel::SavedPort::Backend(port) => {
                    Some((*port, dom.event_channels.backend_kick(*port)?))
                }
                _ => None,
            })
            .collect();
        dom.event_channels
            .restore(&restored.loaded.domain.event_channels, |port| {
                kicks.iter().find(|k| k.0 == port).map(|k| k.1.clone())
            })
            .map_err(|e| Error::HostUnsupported(format!("warm reset: event channels: {e}")))
    }
}

/// Whether two page-table pages hold the same entries, ignoring the accessed and dirty bits the
/// CPU (or KVM's shadow MMU) sets: reverting those changes no translation.
fn same_entries(a: &[u8], b: &[u8]) -> bool {
    const ACCESSED_DIRTY: u64 = (1 << 5) | (1 << 6);
    a.chunks_exact(8).zip(b.chunks_exact(8)).all(|(x, y)| {
        let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
        (x ^ y) & !ACCESSED_DIRTY == 0
    })
}

fn dom_platform_is_pvm(restored: &Restored) -> bool {
    restored.loaded.domain.platform == Platform::KvmPvm as u32
}

/// The requests of a warm-reset VMM: one per line of standard input, read by the vCPU thread
/// between invocations.
#[derive(Debug)]
pub struct WarmInput {
    lines: std::io::StdinLock<'static>,
}

impl WarmInput {
    /// Reads requests from standard input.
    pub fn stdin() -> WarmInput {
        WarmInput {
            lines: std::io::stdin().lock(),
        }
    }

    /// The next request, with its newline; `None` at the end of input.
    pub fn next_request(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                Some(line)
            }
        }
    }
}
