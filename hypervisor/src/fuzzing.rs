//! Fuzz target bodies: every guest-facing parser and state machine, and the host inputs, fed
//! arbitrary bytes. The cargo-fuzz targets in `fuzz/` call these, and `tests/fuzz_corpus.rs`
//! replays the checked-in corpus (`fuzz/corpus/TARGET/`) through them on every `cargo test`.
//!
//! Each function must return normally for every input: a panic, an overflow (debug builds) or a
//! hang is a bug. They check the invariants that do not depend on the input too (e.g. a refused
//! grant leaves no mark; a backend never writes a page the guest may not write).

use crate::builder;
use crate::config::{DiskSpec, MemSize, NetSpec};
use crate::domain::Domain;
use crate::event_channel::{EventChannels, Upcall};
use crate::grant_table::GrantTable;
use crate::guest_console::ConsoleSink;
use crate::hypercall::{self, Action, Context};
use crate::loader;
use crate::memory::GuestRam;
use parapet_abi::event_channel::DOMID_BACKEND;
use parapet_abi::grant_table::{GrantEntry, gtf};
use pv_drivers::blkif::{BlkifBackRing, BlockIoError, BlockStore};
use pv_drivers::console::ConsoleBack;
use pv_drivers::loopback::LoopbackBackRing;
use pv_drivers::netif::{NetCounters, NetifRxBackRing, NetifTxBackRing, PacketError, PacketIo};
use std::str::FromStr;
use std::sync::Arc;
use vm_memory::GuestAddress;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets, by name (the corpus folder of each is `fuzz/corpus/NAME/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("hypercalls", hypercalls),
    ("blkif", blkif),
    ("loopback", loopback),
    ("netif", netif),
    ("console", console),
    ("grants", grants),
    ("elf", elf),
    ("cli", cli),
    ("snapshot", snapshot),
];

/// Guest RAM for the targets: small, laid out like a guest's (grant table at 0xc000).
const RAM: u64 = 4 << 20;
const GRANT_TABLE: u64 = 0xc000;
/// Where the targets put ring pages and data pages.
const RING: u64 = 0x20_0000;
const DATA: u64 = 0x20_1000;
/// Pages the targets protect, as the builder protects kernel text and read-only data.
const READ_ONLY: std::ops::Range<u64> = 0x10_0000..0x10_4000;
/// Grant entries the targets fill from the input.
const ENTRIES: usize = 16;

/// Takes `n` bytes off the front of `data` (fewer if it is shorter).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

/// RAM with the read-only pages protected; the first [`ENTRIES`] grant entries come from the
/// input (each pointed at a data page or the ring page unless the input's frame is used as is),
/// then one ring page, then data pages.
fn ram_from(mut data: &[u8]) -> (Arc<GuestRam>, GrantTable) {
    let ram = Arc::new(GuestRam::new(RAM).expect("fuzz RAM"));
    for i in 0..ENTRIES {
        let raw = take(&mut data, 8);
        let mut b = [0u8; 8];
        b[..raw.len()].copy_from_slice(raw);
        let flags = u16::from_le_bytes([b[0], b[1]]);
        let domid = if b[2] & 0x80 == 0 {
            DOMID_BACKEND
        } else {
            u16::from_le_bytes([b[2], b[3]])
        };
        let frame = match b[4] & 0xc0 {
            // A data page, the ring page, a read-only page, or the input's frame as it is.
            0x00 | 0x40 => (DATA >> 12) as u32 + u32::from(b[5] & 7),
            0x80 => (READ_ONLY.start >> 12) as u32 + u32::from(b[5] & 3),
            _ => u32::from_le_bytes([b[4] & 0x3f, b[5], b[6], b[7]]),
        };
        let frame = if i == 0 { (RING >> 12) as u32 } else { frame };
        let flags = if i == 0 {
            gtf::PERMIT_ACCESS
        } else {
            flags & !(gtf::READING | gtf::WRITING)
        };
        let entry = GrantEntry {
            flags,
            domid,
            frame,
        };
        ram.write_obj(GuestAddress(GRANT_TABLE + 8 * i as u64), &entry)
            .expect("inside RAM");
    }
    let ring = take(&mut data, 4096);
    ram.write(GuestAddress(RING), ring).expect("inside RAM");
    let rest = take(&mut data, 8 * 4096);
    ram.write(GuestAddress(DATA), rest).expect("inside RAM");
    ram.protect(vec![0..0x1000, READ_ONLY]);
    let grants = GrantTable::new(ram.clone(), GRANT_TABLE, 1);
    (ram, grants)
}

/// Checks what every target must leave behind: no grant entry marked in use (every mapping
/// released) and the read-only pages unchanged (zero: the targets never fill them).
fn check_after(ram: &GuestRam) {
    for i in 0..ENTRIES as u64 {
        let e: GrantEntry = ram
            .read_obj(GuestAddress(GRANT_TABLE + 8 * i))
            .expect("inside RAM");
        assert_eq!(
            e.flags & (gtf::READING | gtf::WRITING),
            0,
            "entry {i} still marked in use: {e:?}"
        );
    }
    let mut page = vec![0u8; (READ_ONLY.end - READ_ONLY.start) as usize];
    ram.read(GuestAddress(READ_ONLY.start), &mut page)
        .expect("inside RAM");
    assert!(page.iter().all(|&b| b == 0), "a read-only page was written");
}

/// Console output, discarded.
#[derive(Debug, Default)]
struct Sink;

impl ConsoleSink for Sink {
    fn write_console(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hypercall dispatch: the input seeds the grant table and some RAM, then names up to 64
/// hypercalls (number and five arguments each, small numbers favoured so the handlers'
/// sub-commands and in-RAM pointers are hit).
pub fn hypercalls(data: &[u8]) {
    let (ram, _) = ram_from(data.get(..40 * 1024).unwrap_or(data));
    let mut data = data.get(40 * 1024..).unwrap_or(&[]);
    let dom = Domain::new(
        ram.clone(),
        None,
        crate::domain::SystemClock::starting_at(std::time::Instant::now()),
    );
    let mut sink = Sink;
    let mut ctx = Context {
        dom: &dom,
        ram: &ram,
        console: &mut sink,
    };
    for _ in 0..64 {
        let call = take(&mut data, 1 + 5 * 8);
        if call.is_empty() {
            break;
        }
        let nr = u64::from(call[0] & 0x7f);
        let mut args = [0u64; 5];
        for (i, arg) in args.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            let raw = call.get(1 + 8 * i..).unwrap_or(&[]);
            let raw = &raw[..raw.len().min(8)];
            b[..raw.len()].copy_from_slice(raw);
            let v = u64::from_le_bytes(b);
            // Small values (commands, counts), RAM addresses, or anything.
            *arg = match b[7] >> 6 {
                0 => v & 0xff,
                1 => v % RAM,
                _ => v,
            };
        }
        match hypercall::dispatch(&mut ctx, nr, args) {
            Action::Return(_) | Action::Block => {}
            Action::Stop(_) => break,
        }
    }
    // Nothing was connected, so no grant may be left marked.
    check_after(&ram);
}

/// A block disk in memory: 64 sectors.
#[derive(Debug)]
struct MemDisk(std::cell::RefCell<Vec<u8>>);

impl<P> BlockStore<P> for MemDisk {
    fn sectors(&self) -> u64 {
        (self.0.borrow().len() / 512) as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockIoError> {
        let at = offset as usize;
        buf.copy_from_slice(&self.0.borrow()[at..at + buf.len()]);
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), BlockIoError> {
        let at = offset as usize;
        self.0.borrow_mut()[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> Result<(), BlockIoError> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), BlockIoError> {
        let at = offset as usize;
        self.0.borrow_mut()[at..at + len as usize].fill(0);
        Ok(())
    }
}

/// The block backend's ring consumer (direct, indirect, flush, discard requests) over the VMM's
/// grant table, with the ring page and everything it names from the input.
pub fn blkif(data: &[u8]) {
    let (ram, grants) = ram_from(data);
    if let Ok(ring) = grants.map_ring(0) {
        let mut ring = BlkifBackRing::attach(ring);
        let disk = MemDisk(std::cell::RefCell::new(vec![0x5a; 64 * 512]));
        for _ in 0..3 {
            match pv_drivers::blkif::serve_batch(&mut ring, &grants, &disk, &mut || {}) {
                Ok(o) if o.more => continue,
                _ => break,
            }
        }
    }
    check_after(&ram);
}

/// The loopback backend's ring consumer.
pub fn loopback(data: &[u8]) {
    let (ram, grants) = ram_from(data);
    if let Ok(ring) = grants.map_ring(0) {
        let mut ring = LoopbackBackRing::attach(ring);
        for _ in 0..3 {
            match pv_drivers::loopback::serve_batch(&mut ring, &grants) {
                Ok(o) if o.more => continue,
                _ => break,
            }
        }
    }
    check_after(&ram);
}

/// A network "host" that takes every frame and has the input's frames queued.
#[derive(Debug, Default)]
struct Host {
    inbound: Vec<Vec<u8>>,
}

impl PacketIo for Host {
    fn send(&mut self, frame: &[u8]) -> Result<(), PacketError> {
        assert!(!frame.is_empty() && frame.len() <= parapet_abi::netif::NETIF_MAX_PACKET);
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let frame = self.inbound.pop()?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Some(frame.len())
    }
}

/// The network backend's transmit and receive ring consumers: the transmit ring is the input's
/// ring page, the receive ring a data page, and the host has frames of the input's sizes.
pub fn netif(data: &[u8]) {
    let (ram, grants) = ram_from(data);
    // Entry 1 names the receive ring: make it the first data page, writable.
    let rx_entry = GrantEntry {
        flags: gtf::PERMIT_ACCESS,
        domid: DOMID_BACKEND,
        frame: (DATA >> 12) as u32,
    };
    ram.write_obj(GuestAddress(GRANT_TABLE + 8), &rx_entry)
        .expect("inside RAM");
    let sizes = data.get(data.len().saturating_sub(8)..).unwrap_or(&[]);
    let mut host = Host {
        inbound: sizes
            .iter()
            .map(|&s| vec![0xab; usize::from(s) * 8])
            .collect(),
    };
    if let (Ok(tx), Ok(rx)) = (grants.map_ring(0), grants.map_ring(1)) {
        let (mut tx, mut rx) = (NetifTxBackRing::attach(tx), NetifRxBackRing::attach(rx));
        let mut counters = NetCounters::default();
        for _ in 0..3 {
            let t = pv_drivers::netif::serve_tx(&mut tx, &grants, &mut host, &mut counters);
            let r = pv_drivers::netif::serve_rx(&mut rx, &grants, &mut host, &mut counters);
            if t.is_err() || r.is_err() {
                break;
            }
        }
    }
    check_after(&ram);
}

/// The console backend: the console page from the input, output drained, input pushed.
pub fn console(data: &[u8]) {
    let ram = Arc::new(GuestRam::new(RAM).expect("fuzz RAM"));
    ram.write(GuestAddress(RING), data.get(..4096).unwrap_or(data))
        .expect("inside RAM");
    let page = crate::memory::GuestPage::new(ram, RING).expect("inside RAM");
    let mut console = ConsoleBack::attach(page);
    let mut drained = 0usize;
    for _ in 0..4 {
        let Ok(_) = console.drain_output(|bytes| drained += bytes.len()) else {
            return;
        };
        if !console.prepare_to_sleep() {
            break;
        }
    }
    assert!(drained <= 4 * 2048, "drained more than the ring held");
    let input = data.get(4096..).unwrap_or(&[]);
    let _ = console.push_input(input);
    let _ = console.push_eof();
}

/// Grant-table validation: the input's entries mapped and released in the input's order, for
/// reading, writing and as rings; afterwards no entry may be left marked.
pub fn grants(data: &[u8]) {
    let (ram, grants) = ram_from(data);
    let ops = data.get(ENTRIES * 8 + 4096 + 8 * 4096..).unwrap_or(&[]);
    let mut held = Vec::new();
    for &op in ops.iter().take(256) {
        let gref = u32::from(op & 0x0f) + if op & 0x10 != 0 { 2040 } else { 0 };
        match op >> 5 {
            0 | 1 => {
                if let Ok(m) = grants.map(gref, op & 0x20 != 0) {
                    if m.writable() {
                        assert!(
                            ram.check_writable(GuestAddress(m.gpa()), 4096).is_ok(),
                            "a writable mapping of a page the guest may not write"
                        );
                    }
                    held.push(m);
                }
            }
            2 => {
                if let Ok(m) = grants.map_ring(gref) {
                    held.push(m);
                }
            }
            _ => {
                if !held.is_empty() {
                    held.swap_remove(usize::from(op) % held.len());
                }
            }
        }
    }
    drop(held);
    check_after(&ram);
}

/// The ELF loader's parser and the fit check, on the input as a whole kernel file.
pub fn elf(data: &[u8]) {
    if let Ok(image) = loader::parse(data, data.len() as u64) {
        for seg in &image.segments {
            assert!(seg.file.end as u64 <= data.len() as u64);
            assert!(seg.gpa >= parapet_abi::start_info::KERNEL_MIN_ADDR);
        }
        let _ = builder::check_fit(&image, 64 << 20, "");
    }
}

/// The command line's size and device parsers, on each line of the input.
pub fn cli(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().take(64) {
        if let Ok(size) = MemSize::from_str(line) {
            let _ = size.to_string();
        }
        let _ = DiskSpec::from_str(line);
        let _ = NetSpec::from_str(line);
    }
}

/// A snapshot file's metadata: the header and section checks, then the decoding of each section
/// and the event-channel table's checks, as `parapet restore` does before it uses any of it.
pub fn snapshot(data: &[u8]) {
    use crate::snapshot::format::{HostKind, SectionKind, Snapshot};
    // Memory is not read here: let the file be long enough for any memory the header names.
    let Ok(snap) = Snapshot::parse(data, u64::MAX, HostKind::KvmPvm) else {
        return;
    };
    assert!(snap.memory_offset.is_multiple_of(4096));
    if let Some(bytes) = snap.section(SectionKind::Vcpu) {
        let _ = crate::kvm::state::VcpuState::from_bytes(bytes);
    }
    let Some(state) = snap
        .section(SectionKind::Domain)
        .and_then(crate::snapshot::state::DomainState::from_bytes)
    else {
        return;
    };
    let ram = Arc::new(GuestRam::new(RAM).expect("fuzz RAM"));
    let events = EventChannels::new(Upcall::new(ram, 0x2000, None));
    let kick = Arc::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    if events
        .restore(&state.event_channels, |_| Some(kick.clone()))
        .is_ok()
    {
        assert_eq!(events.save().len(), state.event_channels.len());
    }
}
