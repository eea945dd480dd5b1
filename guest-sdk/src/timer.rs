//! Timers and waiting: one-shot and periodic [`Timer`]s multiplexed on the vCPU's single
//! `set_timer_op` deadline, [`wait_any`], which blocks until one of several event sources is
//! ready, and [`sleep`].
//!
//! # How it works
//!
//! The first [`Timer`] binds `VIRQ_TIMER` to a port whose handler runs expired timers and
//! re-arms the hardware deadline with the earliest one still due (one `set_timer_op`, made only
//! when that deadline changes). Callbacks run in the handler, in interrupt context: keep them
//! short and never block in them. Waits and sleeps alone do not bind the VIRQ (it costs an
//! exit): they are woken by the bare timer wake-up and run expired timers themselves.
//!
//! A wait masks interrupts, checks its sources, arms the deadline it needs, and calls
//! `SCHEDOP_block`, which re-enables event delivery and halts until an event (docs/abi.md §7.3);
//! because interrupts were masked between the check and the block, an event that arrives in
//! between leaves `evtchn_upcall_pending` set and the block returns at once, so no wake-up is
//! lost. After the block the wait unmasks interrupts, which runs the upcall, and looks again.
//! Without `VIRQ_TIMER` the bare timer wake-up (an upcall with no port) ends the block.
//!
//! Waits must not be made from event handlers or timer callbacks. A wait for sources that
//! can never become ready (a masked port, no deadline) spins: `SCHEDOP_block` returns at once
//! when nothing can wake the vCPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use parapet_abi::event_channel::virq;
use spin::Mutex;

use crate::event_channel::{self, Port};
use crate::time::{self, Instant};
use crate::{hypercall, pvops};

/// How many timers may exist at once.
pub const MAX_TIMERS: usize = 32;

/// A callback run (in interrupt context) each time a timer fires.
pub type Callback = fn(TimerId);

/// Identifies a timer slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId(pub usize);

/// Why a timer could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// All [`MAX_TIMERS`] slots are in use.
    #[error("no free timer slot")]
    NoFreeSlot,
    /// A periodic timer needs a non-zero period.
    #[error("zero timer period")]
    ZeroPeriod,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    used: bool,
    /// Next expiry (ns of system time), or `u64::MAX` when stopped.
    deadline: u64,
    /// 0 for a one-shot timer.
    period: u64,
    fired: u64,
    consumed: u64,
    callback: Option<Callback>,
}

const FREE: Slot = Slot {
    used: false,
    deadline: u64::MAX,
    period: 0,
    fired: 0,
    consumed: 0,
    callback: None,
};

/// The timer slots. Touched only with interrupts masked (a thread-context user holds
/// `pvops::irq_save`; handlers run masked), so the lock is never contended on one vCPU.
static SLOTS: Mutex<[Slot; MAX_TIMERS]> = Mutex::new([FREE; MAX_TIMERS]);
/// The deadline of the wait in progress, or `u64::MAX`.
static WAIT_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// The deadline last given to `set_timer_op` that has not fired yet, or 0.
static PROGRAMMED: AtomicU64 = AtomicU64::new(0);
/// The port bound to `VIRQ_TIMER`, or 0.
static VIRQ_PORT: AtomicU32 = AtomicU32::new(0);
/// Whether binding was attempted.
static INIT: AtomicBool = AtomicBool::new(false);
/// `set_timer_op` calls made by this module.
static SET_TIMER_CALLS: AtomicU64 = AtomicU64::new(0);

/// Binds `VIRQ_TIMER` (once). Called when a [`Timer`] is created; harmless to call again.
pub fn init() {
    if INIT.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Ok(port) = event_channel::bind_virq(virq::TIMER) {
        event_channel::set_handler(port, on_virq);
        VIRQ_PORT.store(port.0, Ordering::SeqCst);
    }
}

/// The port bound to `VIRQ_TIMER` by this module, if any.
pub fn virq_port() -> Option<Port> {
    match VIRQ_PORT.load(Ordering::SeqCst) {
        0 => None,
        p => Some(Port(p)),
    }
}

/// How many `set_timer_op` calls the timer module made (each is an exit to the VMM).
pub fn set_timer_calls() -> u64 {
    SET_TIMER_CALLS.load(Ordering::Relaxed)
}

/// The `VIRQ_TIMER` handler: the armed deadline has fired.
fn on_virq(_port: Port) {
    PROGRAMMED.store(0, Ordering::SeqCst);
    poll_masked();
}

/// Runs expired timers and re-arms the hardware deadline. Interrupts must be masked.
fn poll_masked() {
    run_expired_masked();
    reprogram_masked();
}

/// Runs expired timers. Interrupts must be masked.
fn run_expired_masked() {
    let now = time::now().as_nanos();
    let programmed = PROGRAMMED.load(Ordering::SeqCst);
    if programmed != 0 && programmed <= now {
        PROGRAMMED.store(0, Ordering::SeqCst);
    }
    let mut due: [Option<(TimerId, Callback)>; MAX_TIMERS] = [None; MAX_TIMERS];
    {
        let mut slots = SLOTS.lock();
        for (i, s) in slots.iter_mut().enumerate() {
            if !s.used || s.deadline > now {
                continue;
            }
            match (now - s.deadline).checked_div(s.period) {
                None => {
                    s.fired += 1;
                    s.deadline = u64::MAX;
                }
                Some(late) => {
                    let missed = late + 1;
                    s.fired += missed;
                    s.deadline = s.deadline.saturating_add(missed.saturating_mul(s.period));
                }
            }
            due[i] = s.callback.map(|cb| (TimerId(i), cb));
        }
    }
    for (id, cb) in due.into_iter().flatten() {
        cb(id);
    }
}

/// Arms `set_timer_op` for the earliest of the timers and the current wait, if it changed.
/// Interrupts must be masked.
fn reprogram_masked() {
    let mut next = WAIT_DEADLINE.load(Ordering::SeqCst);
    for s in SLOTS.lock().iter() {
        if s.used {
            next = next.min(s.deadline);
        }
    }
    if next == u64::MAX {
        // Nothing is due. An armed deadline is left alone: cancelling it would cost an exit,
        // and its firing costs only a spurious upcall.
        return;
    }
    let next = next.max(1);
    if PROGRAMMED.load(Ordering::SeqCst) != next {
        SET_TIMER_CALLS.fetch_add(1, Ordering::Relaxed);
        let _ = hypercall::set_timer(next);
        PROGRAMMED.store(next, Ordering::SeqCst);
    }
}

/// A one-shot or periodic timer. Dropping it stops it and frees its slot.
#[derive(Debug)]
pub struct Timer {
    id: TimerId,
}

impl Timer {
    fn create(deadline: u64, period: u64, callback: Option<Callback>) -> Result<Timer, TimerError> {
        init();
        let _irq = pvops::irq_save();
        let id = {
            let mut slots = SLOTS.lock();
            let i = slots
                .iter()
                .position(|s| !s.used)
                .ok_or(TimerError::NoFreeSlot)?;
            slots[i] = Slot {
                used: true,
                deadline: deadline.max(1),
                period,
                fired: 0,
                consumed: 0,
                callback,
            };
            TimerId(i)
        };
        poll_masked();
        Ok(Timer { id })
    }

    /// A timer that fires once, at `at`.
    pub fn oneshot(at: Instant) -> Result<Timer, TimerError> {
        Timer::create(at.as_nanos(), 0, None)
    }

    /// A timer that fires once, at `at`, and then runs `callback` in interrupt context.
    pub fn oneshot_with(at: Instant, callback: Callback) -> Result<Timer, TimerError> {
        Timer::create(at.as_nanos(), 0, Some(callback))
    }

    /// A timer that fires every `period`, first at now + `period`. Periods the guest misses
    /// (interrupts masked for longer than a period) are counted, not replayed.
    pub fn periodic(period: Duration) -> Result<Timer, TimerError> {
        Timer::periodic_inner(period, None)
    }

    /// A periodic timer that runs `callback` in interrupt context each time it fires.
    pub fn periodic_with(period: Duration, callback: Callback) -> Result<Timer, TimerError> {
        Timer::periodic_inner(period, Some(callback))
    }

    fn periodic_inner(period: Duration, cb: Option<Callback>) -> Result<Timer, TimerError> {
        let ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        if ns == 0 {
            return Err(TimerError::ZeroPeriod);
        }
        Timer::create((time::now() + period).as_nanos(), ns, cb)
    }

    /// This timer's slot.
    pub fn id(&self) -> TimerId {
        self.id
    }

    fn with<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let _irq = pvops::irq_save();
        let mut slots = SLOTS.lock();
        f(&mut slots[self.id.0])
    }

    /// How often the timer has fired since it was created.
    pub fn fired(&self) -> u64 {
        self.with(|s| s.fired)
    }

    /// Firings not yet consumed by [`Timer::take`], [`Timer::wait`] or [`wait_any`].
    pub fn unconsumed(&self) -> u64 {
        self.with(|s| s.fired - s.consumed)
    }

    /// Consumes all unconsumed firings and returns how many there were.
    pub fn take(&self) -> u64 {
        self.with(|s| {
            let n = s.fired - s.consumed;
            s.consumed = s.fired;
            n
        })
    }

    /// Consumes one firing, if there is one.
    fn take_one(&self) -> bool {
        self.with(|s| {
            let ready = s.fired > s.consumed;
            if ready {
                s.consumed += 1;
            }
            ready
        })
    }

    /// When the timer fires next, or `None` if it is stopped.
    pub fn deadline(&self) -> Option<Instant> {
        self.with(|s| (s.deadline != u64::MAX).then(|| Instant::from_nanos(s.deadline)))
    }

    /// Stops the timer (it keeps its counts).
    pub fn stop(&self) {
        self.with(|s| s.deadline = u64::MAX);
    }

    /// Restarts the timer as a one-shot at `at` (or, for a periodic timer, first at `at`).
    pub fn restart_at(&self, at: Instant) {
        let _irq = pvops::irq_save();
        SLOTS.lock()[self.id.0].deadline = at.as_nanos().max(1);
        poll_masked();
    }

    /// Blocks until the timer has fired at least once more than it was consumed, and consumes
    /// one firing.
    pub fn wait(&self) {
        wait_any(&[Source::Timer(self)]);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let _irq = pvops::irq_save();
        SLOTS.lock()[self.id.0] = FREE;
    }
}

/// Something [`wait_any`] can wait for.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// An event on a port (its latch: see [`event_channel::take_event`]). The port must be unmasked.
    Port(Port),
    /// The clock reaching an instant.
    Deadline(Instant),
    /// A timer firing (one unconsumed firing).
    Timer(&'a Timer),
}

impl Source<'_> {
    /// Whether the source is ready; consumes the event (port latch, timer firing) if so.
    fn take_ready(&self, now: Instant) -> bool {
        match *self {
            Source::Port(p) => event_channel::take_event(p),
            Source::Deadline(t) => now >= t,
            Source::Timer(t) => t.take_one(),
        }
    }
}

/// Blocks until one of `sources` is ready and returns the index of the first ready one,
/// consuming its event (a port's latch, one timer firing). Sources are checked in order, so an
/// earlier source wins a tie. Interrupts are enabled while it waits and when it returns.
///
/// Must not be called from an event handler or timer callback.
pub fn wait_any(sources: &[Source<'_>]) -> usize {
    debug_assert!(
        !event_channel::in_handler(),
        "wait_any from an event handler"
    );
    let deadline = sources
        .iter()
        .filter_map(|s| match s {
            Source::Deadline(t) => Some(t.as_nanos()),
            _ => None,
        })
        .min()
        .unwrap_or(u64::MAX);
    loop {
        pvops::irq_disable();
        // Blocking re-enables event delivery (§7.3); do it now, so that events that pended
        // while upcalls were masked are handled before the check rather than never.
        event_channel::enable_upcalls();
        run_expired_masked();
        let now = time::now();
        if let Some(i) = sources.iter().position(|s| s.take_ready(now)) {
            WAIT_DEADLINE.store(u64::MAX, Ordering::SeqCst);
            pvops::irq_enable();
            return i;
        }
        WAIT_DEADLINE.store(deadline, Ordering::SeqCst);
        reprogram_masked();
        pvops::block();
        if virq_port().is_none() {
            // Without the VIRQ nobody tells us the deadline fired: arm it again next time.
            PROGRAMMED.store(0, Ordering::SeqCst);
        }
        pvops::irq_enable();
    }
}

/// Blocks until an event arrives on `port` (consuming its latch).
pub fn wait_port(port: Port) {
    wait_any(&[Source::Port(port)]);
}

/// Blocks until an event arrives on `port` or the clock reaches `deadline`; returns whether the
/// port fired.
pub fn wait_port_until(port: Port, deadline: Instant) -> bool {
    wait_any(&[Source::Port(port), Source::Deadline(deadline)]) == 0
}

/// Sleeps until the clock reaches `deadline`: arms the timer and blocks, repeating until the
/// clock has passed it; it wakes through `VIRQ_TIMER` (or the bare timer wake-up). Returns at
/// once for a deadline in the past. Events that arrive meanwhile run their handlers. Must not be
/// called from an event handler.
pub fn sleep_until(deadline: Instant) {
    if time::now() >= deadline {
        return;
    }
    wait_any(&[Source::Deadline(deadline)]);
}

/// Sleeps for at least `d` (see [`sleep_until`]).
pub fn sleep(d: Duration) {
    sleep_until(time::now() + d);
}

/// Blocks until `ready()` holds or the clock reaches `deadline` (if any); returns `false` if
/// the deadline came first. `ready` is evaluated with interrupts masked, so an event that makes
/// it true cannot slip in between the check and the block; every event (on any unmasked port)
/// and the deadline make it look again. Interrupts are enabled when it returns.
///
/// Must not be called from an event handler or timer callback.
pub fn wait_until(deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
    debug_assert!(
        !event_channel::in_handler(),
        "wait_until from an event handler"
    );
    let wait_deadline = deadline.map_or(u64::MAX, Instant::as_nanos);
    loop {
        pvops::irq_disable();
        // Blocking re-enables event delivery (§7.3); do it now, so that events that pended
        // while upcalls were masked are handled before the check rather than never.
        event_channel::enable_upcalls();
        run_expired_masked();
        let done = if ready() {
            Some(true)
        } else if deadline.is_some_and(|d| time::now() >= d) {
            Some(false)
        } else {
            None
        };
        if let Some(result) = done {
            WAIT_DEADLINE.store(u64::MAX, Ordering::SeqCst);
            pvops::irq_enable();
            return result;
        }
        WAIT_DEADLINE.store(wait_deadline, Ordering::SeqCst);
        reprogram_masked();
        pvops::block();
        if virq_port().is_none() {
            PROGRAMMED.store(0, Ordering::SeqCst);
        }
        pvops::irq_enable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_allocate_and_free_slots_before_boot() {
        let t = Timer::oneshot(Instant::from_nanos(0)).unwrap();
        // The clock reads 0 before boot, so a deadline of 0 (stored as 1) is not yet due.
        assert_eq!(t.fired(), 0);
        assert_eq!(
            Timer::periodic(Duration::ZERO).err(),
            Some(TimerError::ZeroPeriod)
        );
        let id = t.id();
        drop(t);
        let again = Timer::oneshot(Instant::from_nanos(5)).unwrap();
        assert_eq!(again.id(), id);
        again.stop();
        assert_eq!(again.deadline(), None);
    }

    #[test]
    fn sleeping_for_nothing_returns_before_boot() {
        sleep(Duration::ZERO);
        sleep_until(Instant::ZERO);
    }

    #[test]
    fn deadline_sources_are_ready_once_passed() {
        let s = Source::Deadline(Instant::from_nanos(10));
        assert!(!s.take_ready(Instant::from_nanos(9)));
        assert!(s.take_ready(Instant::from_nanos(10)));
    }
}
