//! Event channels: the VMM's table of the guest's ports (docs/abi.md §7).
//!
//! The table says what each port is connected to; [`Upcall`] does the raising. Ports connected to
//! backends are created by the domain builder and cannot be closed by the guest; their kick is an
//! eventfd the backend thread waits on, also registered as the port's ioeventfd doorbell.

mod upcall;

pub use upcall::Upcall;

use parapet_abi::Errno;
use parapet_abi::event_channel::{NR_PORTS, status, virq};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use vmm_sys_util::eventfd::EventFd;

/// What a port is connected to.
#[derive(Clone, Debug, Default)]
enum Port {
    /// Not in use.
    #[default]
    Free,
    /// Allocated by the guest for itself to bind (`alloc_unbound`).
    Unbound,
    /// Connected to another guest port (`bind_interdomain` with the guest itself).
    Loop {
        /// The other end.
        peer: u32,
    },
    /// Connected to a VMM backend, which waits on `kick`.
    Backend {
        /// Signalled to notify the backend.
        kick: Arc<EventFd>,
    },
    /// Bound to a virtual IRQ.
    Virq(u32),
}

/// What a port is connected to, as a snapshot saves it (docs/snapshots.md): a backend port by
/// the backend's kick, which the restoring VMM creates again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SavedPort {
    /// Allocated by the guest, not bound.
    Unbound(u32),
    /// Connected to another guest port.
    Loop {
        /// This port.
        port: u32,
        /// The other end.
        peer: u32,
    },
    /// Connected to a backend.
    Backend(u32),
    /// Bound to a virtual IRQ.
    Virq {
        /// This port.
        port: u32,
        /// The virtual IRQ.
        virq: u32,
    },
}

/// The guest's event channels.
#[derive(Debug)]
pub struct EventChannels {
    upcall: Upcall,
    table: Mutex<Table>,
    /// The table changed since it was last restored ([`EventChannels::changed`]).
    changed: std::sync::atomic::AtomicBool,
    /// A virtual IRQ whose binding someone follows, and whom to tell
    /// ([`EventChannels::watch_virq`]).
    watch: OnceLock<(u32, fn(bool))>,
}

#[derive(Debug)]
struct Table {
    ports: Vec<Port>,
    virqs: [Option<u32>; virq::NR as usize],
}

impl EventChannels {
    /// An empty table raising through `upcall`.
    pub fn new(upcall: Upcall) -> EventChannels {
        EventChannels {
            upcall,
            table: Mutex::new(Table {
                ports: vec![Port::Free; NR_PORTS as usize],
                virqs: [None; virq::NR as usize],
            }),
            changed: std::sync::atomic::AtomicBool::new(false),
            watch: OnceLock::new(),
        }
    }

    /// Calls `tell` with whether a port is bound to `virq`: now, and under the table's lock
    /// whenever that changes (a bind, a close, a restored table). One watch per table; a second
    /// is ignored. `tell` must not touch the table.
    pub fn watch_virq(&self, virq: u32, tell: fn(bool)) {
        let t = self.table();
        if self.watch.set((virq, tell)).is_ok() {
            self.publish(&t);
        }
    }

    /// Tells the watcher again whether its VIRQ is bound (after someone else told it
    /// otherwise).
    pub fn republish(&self) {
        self.publish(&self.table());
    }

    /// Tells the watcher, if any, whether its VIRQ is bound in `t`.
    fn publish(&self, t: &Table) {
        if let Some(&(virq, tell)) = self.watch.get() {
            tell(t.virqs.get(virq as usize).copied().flatten().is_some());
        }
    }

    /// The raising side, for backends.
    pub fn upcall(&self) -> &Upcall {
        &self.upcall
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock is a VMM bug; the table itself is always consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table for an operation that may change it.
    fn table_mut(&self) -> MutexGuard<'_, Table> {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.table()
    }

    /// Whether the table changed since [`EventChannels::restore`] (a warm reset restores it
    /// only then).
    pub fn changed(&self) -> bool {
        self.changed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connects a new port to a backend that waits on `kick`; the port starts masked.
    pub fn bind_backend(&self, kick: Arc<EventFd>) -> Result<u32, Errno> {
        let port = self.table_mut().allocate(Port::Backend { kick })?;
        self.upcall.set_masked(port, true);
        Ok(port)
    }

    /// The kick of backend port `port`, if it is one.
    pub fn backend_kick(&self, port: u32) -> Option<Arc<EventFd>> {
        match self.table().get(port) {
            Ok(Port::Backend { kick }) => Some(kick.clone()),
            _ => None,
        }
    }

    /// `EVTCHNOP_alloc_unbound` for the guest itself.
    pub fn alloc_unbound(&self) -> Result<u32, Errno> {
        let port = self.table_mut().allocate(Port::Unbound)?;
        self.reset(port);
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain` to one of the guest's own unbound ports.
    pub fn bind_loop(&self, remote: u32) -> Result<u32, Errno> {
        let mut t = self.table_mut();
        if !matches!(t.get(remote)?, Port::Unbound) {
            return Err(Errno::EINVAL);
        }
        let local = t.allocate(Port::Loop { peer: remote })?;
        t.ports[remote as usize] = Port::Loop { peer: local };
        drop(t);
        self.reset(local);
        Ok(local)
    }

    /// `EVTCHNOP_bind_virq`.
    pub fn bind_virq(&self, virq: u32) -> Result<u32, Errno> {
        if !known_virq(virq) {
            return Err(Errno::EINVAL);
        }
        let mut t = self.table_mut();
        if t.virqs[virq as usize].is_some() {
            return Err(Errno::EEXIST);
        }
        let port = t.allocate(Port::Virq(virq))?;
        t.virqs[virq as usize] = Some(port);
        // Unmasked and not pending before anyone hears of it: a raise right after finds it ready.
        self.reset(port);
        self.publish(&t);
        Ok(port)
    }

    /// `EVTCHNOP_close`. Backend ports cannot be closed.
    pub fn close(&self, port: u32) -> Result<(), Errno> {
        let mut t = self.table_mut();
        match t.get(port)?.clone() {
            Port::Free | Port::Backend { .. } => return Err(Errno::EINVAL),
            Port::Loop { peer } => t.ports[peer as usize] = Port::Unbound,
            Port::Virq(v) => t.virqs[v as usize] = None,
            Port::Unbound => {}
        }
        t.ports[port as usize] = Port::Free;
        self.publish(&t);
        drop(t);
        self.upcall.clear_pending(port);
        Ok(())
    }

    /// `EVTCHNOP_send`: raises the other end.
    pub fn send(&self, port: u32) -> Result<(), Errno> {
        let target = self.table().get(port)?.clone();
        match target {
            Port::Loop { peer } => {
                self.upcall.raise(peer);
            }
            Port::Backend { kick } => {
                // A full eventfd counter means the backend has a wake-up pending anyway.
                let _ = kick.write(1);
            }
            Port::Unbound => {} // dropped, as in Xen
            Port::Free | Port::Virq(_) => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    /// `EVTCHNOP_status`: (status, detail) as in docs/abi.md §7.1.
    pub fn status(&self, port: u32) -> Result<(u32, u64), Errno> {
        use parapet_abi::event_channel::{DOMID_BACKEND, DOMID_GUEST};
        let guest = u64::from(DOMID_GUEST);
        Ok(match self.table().get(port)? {
            Port::Free => (status::CLOSED, 0),
            Port::Unbound => (status::UNBOUND, guest),
            Port::Loop { peer } => (status::INTERDOMAIN, guest | u64::from(*peer) << 32),
            Port::Backend { .. } => (status::INTERDOMAIN, u64::from(DOMID_BACKEND)),
            Port::Virq(v) => (status::VIRQ, u64::from(*v)),
        })
    }

    /// `EVTCHNOP_unmask`.
    pub fn unmask(&self, port: u32) -> Result<(), Errno> {
        if matches!(self.table().get(port)?, Port::Free) {
            return Err(Errno::EINVAL);
        }
        self.upcall.unmask(port);
        Ok(())
    }

    /// Raises the port bound to `virq`, if any; returns whether the upcall interrupt was sent.
    pub fn raise_virq(&self, virq: u32) -> bool {
        self.raise_bound_virq(virq).unwrap_or(false)
    }

    /// Raises the port bound to `virq`: `None` if there is none, else whether the upcall
    /// interrupt was sent (not if the port was pending already, or masked, or upcalls are).
    pub fn raise_bound_virq(&self, virq: u32) -> Option<bool> {
        let port = self.table().virqs.get(virq as usize).copied().flatten()?;
        Some(self.upcall.raise(port))
    }

    /// Whether some event could still arrive: a bound port whose mask bit is clear.
    pub fn can_wake(&self) -> bool {
        let t = self.table();
        t.ports.iter().enumerate().any(|(port, p)| {
            matches!(p, Port::Loop { .. } | Port::Backend { .. } | Port::Virq(_))
                && !self.upcall.is_masked(port as u32)
        })
    }

    /// The table, for a snapshot: every port in use. (Pending and mask bits are in guest
    /// memory.)
    pub fn save(&self) -> Vec<SavedPort> {
        let t = self.table();
        t.ports
            .iter()
            .enumerate()
            .filter_map(|(port, p)| {
                let port = port as u32;
                Some(match p {
                    Port::Free => return None,
                    Port::Unbound => SavedPort::Unbound(port),
                    Port::Loop { peer } => SavedPort::Loop { port, peer: *peer },
                    Port::Backend { .. } => SavedPort::Backend(port),
                    Port::Virq(virq) => SavedPort::Virq { port, virq: *virq },
                })
            })
            .collect()
    }

    /// Replaces the table with a snapshot's `saved` one; `kick` gives each backend port's
    /// doorbell. Refuses (with what is wrong) a table no VMM could have saved: a port out of
    /// range or used twice, a loop whose ends do not match, a virtual IRQ bound twice or not one
    /// the VMM raises, a backend port `kick` does not know.
    pub fn restore(
        &self,
        saved: &[SavedPort],
        kick: impl Fn(u32) -> Option<Arc<EventFd>>,
    ) -> Result<(), String> {
        let mut ports = vec![Port::Free; NR_PORTS as usize];
        let mut virqs = [None; virq::NR as usize];
        for &entry in saved {
            let (port, what) = match entry {
                SavedPort::Unbound(port) => (port, Port::Unbound),
                SavedPort::Loop { port, peer } => (port, Port::Loop { peer }),
                SavedPort::Backend(port) => {
                    let kick = kick(port).ok_or(format!("port {port} names no backend"))?;
                    (port, Port::Backend { kick })
                }
                SavedPort::Virq { port, virq: v } => {
                    if !known_virq(v) {
                        return Err(format!("port {port} is bound to unknown VIRQ {v}"));
                    }
                    if virqs[v as usize].replace(port).is_some() {
                        return Err(format!("VIRQ {v} is bound twice"));
                    }
                    (port, Port::Virq(v))
                }
            };
            match ports.get_mut(port as usize) {
                Some(slot @ Port::Free) if port != 0 => *slot = what,
                _ => return Err(format!("port {port} is out of range or used twice")),
            }
        }
        for (port, p) in ports.iter().enumerate() {
            if let Port::Loop { peer } = p {
                let back = ports.get(*peer as usize);
                if !matches!(back, Some(Port::Loop { peer: p2 }) if *p2 as usize == port) {
                    return Err(format!(
                        "port {port}'s loop peer {peer} does not point back"
                    ));
                }
            }
        }
        let mut t = self.table();
        t.ports = ports;
        t.virqs = virqs;
        self.publish(&t);
        self.changed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// A port the guest just allocated starts unmasked and not pending.
    fn reset(&self, port: u32) {
        self.upcall.clear_pending(port);
        self.upcall.set_masked(port, false);
    }
}

/// The virtual IRQs a guest may bind (docs/abi.md §7.1).
fn known_virq(v: u32) -> bool {
    matches!(v, virq::TIMER | virq::CONSOLE | virq::SHUTDOWN)
}

impl Table {
    fn get(&self, port: u32) -> Result<&Port, Errno> {
        match self.ports.get(port as usize) {
            Some(p) if port != 0 => Ok(p),
            _ => Err(Errno::EINVAL),
        }
    }

    fn allocate(&mut self, what: Port) -> Result<u32, Errno> {
        let port = (1..self.ports.len())
            .find(|&p| matches!(self.ports[p], Port::Free))
            .ok_or(Errno::ENOSPC)?;
        self.ports[port] = what;
        Ok(port as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;

    fn channels() -> (EventChannels, EventFd) {
        let ram = Arc::new(GuestRam::new(1 << 20).unwrap());
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let up = Upcall::new(ram, 0x2000, Some(fd.try_clone().unwrap()));
        (EventChannels::new(up), fd)
    }

    #[test]
    fn a_loop_raises_the_other_end() {
        let (ev, fd) = channels();
        let a = ev.alloc_unbound().unwrap();
        assert_eq!(ev.status(a).unwrap(), (status::UNBOUND, 1));
        ev.send(a).unwrap(); // unbound: dropped
        assert!(fd.read().is_err());
        let b = ev.bind_loop(a).unwrap();
        assert_eq!(
            ev.status(b).unwrap(),
            (status::INTERDOMAIN, 1 | u64::from(a) << 32)
        );
        ev.send(b).unwrap();
        assert!(ev.upcall().is_pending(a));
        assert!(!ev.upcall().is_pending(b));
        assert_eq!(fd.read().unwrap(), 1);
        ev.close(a).unwrap();
        assert_eq!(ev.status(b).unwrap().0, status::UNBOUND);
        assert!(!ev.upcall().is_pending(a));
    }

    #[test]
    fn refuses_bad_ports_and_states() {
        let (ev, _fd) = channels();
        for port in [0, 4095, 4096, u32::MAX] {
            assert_eq!(ev.send(port), Err(Errno::EINVAL), "port {port}");
            assert_eq!(ev.close(port), Err(Errno::EINVAL));
            assert_eq!(ev.unmask(port), Err(Errno::EINVAL));
        }
        assert_eq!(ev.bind_loop(7), Err(Errno::EINVAL));
        let t = ev.bind_virq(virq::TIMER).unwrap();
        assert_eq!(ev.bind_virq(virq::TIMER), Err(Errno::EEXIST));
        assert_eq!(ev.bind_virq(99), Err(Errno::EINVAL));
        assert_eq!(ev.send(t), Err(Errno::EINVAL));
        let kick = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let b = ev.bind_backend(kick.clone()).unwrap();
        assert_eq!(ev.close(b), Err(Errno::EINVAL));
        ev.send(b).unwrap();
        assert_eq!(kick.read().unwrap(), 1);
    }

    #[test]
    fn wake_sources_are_bound_unmasked_ports() {
        let (ev, _fd) = channels();
        assert!(!ev.can_wake());
        let kick = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let b = ev.bind_backend(kick).unwrap();
        assert!(!ev.can_wake(), "backend ports start masked");
        ev.unmask(b).unwrap();
        assert!(ev.can_wake());
    }

    #[test]
    fn a_saved_table_comes_back_and_a_forged_one_is_refused() {
        let (ev, _fd) = channels();
        let kick = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let b = ev.bind_backend(kick.clone()).unwrap();
        let a = ev.alloc_unbound().unwrap();
        let l = ev.bind_loop(a).unwrap();
        let t = ev.bind_virq(virq::TIMER).unwrap();
        let u = ev.alloc_unbound().unwrap();
        let saved = ev.save();
        let (ev2, _fd2) = channels();
        ev2.restore(&saved, |p| (p == b).then(|| kick.clone()))
            .unwrap();
        assert_eq!(ev2.save(), saved);
        assert_eq!(ev2.status(l).unwrap(), ev.status(l).unwrap());
        assert_eq!(ev2.status(t).unwrap(), (status::VIRQ, 0));
        assert_eq!(ev2.status(u).unwrap().0, status::UNBOUND);
        assert_eq!(ev2.bind_virq(virq::TIMER), Err(Errno::EEXIST));
        for forged in [
            vec![SavedPort::Unbound(0)],
            vec![SavedPort::Unbound(NR_PORTS)],
            vec![SavedPort::Unbound(3), SavedPort::Unbound(3)],
            vec![SavedPort::Loop { port: 3, peer: 4 }],
            vec![SavedPort::Virq { port: 3, virq: 9 }],
            vec![SavedPort::Backend(7)],
        ] {
            assert!(ev2.restore(&forged, |_| None).is_err(), "{forged:?}");
        }
    }

    #[test]
    fn a_watched_virq_is_reported_on_bind_close_and_restore() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
        // Bit 0: the last report; bit 1: a report came.
        static SEEN: AtomicU32 = AtomicU32::new(0);
        fn tell(bound: bool) {
            SEEN.store(2 | u32::from(bound), SeqCst);
        }
        let seen = || SEEN.swap(0, SeqCst);
        let (ev, _fd) = channels();
        assert_eq!(ev.raise_bound_virq(virq::SHUTDOWN), None);
        ev.watch_virq(virq::SHUTDOWN, tell);
        assert_eq!(seen(), 2, "reported at once: not bound");
        let t = ev.bind_virq(virq::TIMER).unwrap();
        ev.close(t).unwrap();
        let p = ev.bind_virq(virq::SHUTDOWN).unwrap();
        assert_eq!(seen(), 3);
        assert_eq!(
            ev.status(p).unwrap(),
            (status::VIRQ, u64::from(virq::SHUTDOWN))
        );
        assert_eq!(ev.bind_virq(virq::SHUTDOWN), Err(Errno::EEXIST));
        assert_eq!(ev.raise_bound_virq(virq::SHUTDOWN), Some(true));
        assert!(ev.upcall().is_pending(p));
        assert_eq!(
            ev.raise_bound_virq(virq::SHUTDOWN),
            Some(false),
            "still pending"
        );
        let saved = ev.save();
        ev.close(p).unwrap();
        assert_eq!(seen(), 2);
        assert!(!ev.upcall().is_pending(p), "closing clears the event");
        assert_eq!(ev.raise_bound_virq(virq::SHUTDOWN), None);
        ev.restore(&saved, |_| None).unwrap();
        assert_eq!(seen(), 3, "the restored table has it bound");
        assert_eq!(seen(), 0);
        ev.republish();
        assert_eq!(seen(), 3);
        ev.restore(&[], |_| None).unwrap();
        assert_eq!(seen(), 2);
    }

    #[test]
    fn ports_run_out_cleanly() {
        let (ev, _fd) = channels();
        for _ in 1..NR_PORTS {
            ev.alloc_unbound().unwrap();
        }
        assert_eq!(ev.alloc_unbound(), Err(Errno::ENOSPC));
    }
}
