//! Test helpers: a deterministic two-actor scheduler that interleaves a frontend and a backend
//! at every shared-memory access, and an in-memory grant table.
//!
//! [`run_interleaved`] runs two actors on two threads, but only one at a time: every access an
//! actor makes through its [`SchedPage`] is a scheduling point. The test's input is a list of
//! run lengths: at each switch the other actor runs for the next one's number of accesses
//! (mod 16) before the scheduler switches back, so short and long runs between switches are
//! both explored. Actors sleep ([`Actor::sleep`]) and wake each other
//! ([`Actor::notify`]) like vCPUs blocking on an event channel: a notification sets a pending
//! flag that the next sleep consumes. If every unfinished actor is asleep, a notification was
//! lost and the run fails. Nothing depends on timing: the same choices give the same run.

use std::boxed::Box;
use std::format;
use std::string::String;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::vec::Vec;

use parapet_abi::grant_table::GrantRef;

use crate::grant_table::{GrantError, GrantMapper};
use crate::shared::{PAGE_SIZE, SharedPage, TestPage};

/// Panic payload that unwinds an actor when the run is aborted.
struct Aborted;

/// Steps after which a run is declared stuck (no actor here needs nearly as many).
const STEP_LIMIT: u64 = 5_000_000;

#[derive(Debug)]
struct State {
    /// The actor allowed to run.
    running: Option<usize>,
    asleep: [bool; 2],
    done: [bool; 2],
    /// A notification arrived that the actor has not slept on yet.
    pending: [bool; 2],
    choices: Vec<u8>,
    next_choice: usize,
    /// Steps the running actor may still take before the next switch.
    run_left: u32,
    steps: u64,
    /// Notifications sent to each actor.
    notifications: [u32; 2],
    failure: Option<String>,
}

impl State {
    fn runnable(&self, id: usize) -> bool {
        !self.asleep[id] && !self.done[id]
    }

    /// Picks who runs next, given that `current` just reached a scheduling point.
    fn schedule(&mut self, current: usize) {
        self.steps += 1;
        if self.steps > STEP_LIMIT {
            self.fail(format!("no progress after {STEP_LIMIT} steps"));
            return;
        }
        let other = 1 - current;
        let candidates = [current, other].map(|id| self.runnable(id));
        self.running = match candidates {
            [true, true] if self.run_left > 0 => {
                self.run_left -= 1;
                Some(current)
            }
            [true, true] => {
                // Switch, and let the other actor run for the next choice's number of steps
                // (once the choices run out, alternate at every step).
                let choice = self.choices.get(self.next_choice).copied();
                self.next_choice += 1;
                self.run_left = u32::from(choice.unwrap_or(0) % 16);
                Some(other)
            }
            [true, false] => Some(current),
            [false, true] => Some(other),
            [false, false] => {
                if !(self.done[0] && self.done[1]) {
                    self.fail(format!(
                        "lost notification: every unfinished actor is asleep (asleep {:?}, \
                         done {:?})",
                        self.asleep, self.done
                    ));
                }
                None
            }
        };
    }

    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
        self.running = None;
    }
}

/// The scheduler shared by the two actors of one run.
#[derive(Debug)]
pub struct Interleaver {
    state: Mutex<State>,
    turn: Condvar,
}

impl Interleaver {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until `id` may run; unwinds with [`Aborted`] if the run failed.
    fn wait_turn(&self, mut state: MutexGuard<'_, State>, id: usize) {
        self.turn.notify_all();
        while state.running != Some(id) && state.failure.is_none() {
            state = self.turn.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.failure.is_some() {
            drop(state);
            std::panic::resume_unwind(Box::new(Aborted));
        }
    }
}

/// One actor's handle on the scheduler.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'s> {
    sched: &'s Interleaver,
    id: usize,
}

impl<'s> Actor<'s> {
    /// A scheduling point: the scheduler may run the other actor first.
    pub fn yield_now(&self) {
        let mut state = self.sched.lock();
        state.schedule(self.id);
        self.sched.wait_turn(state, self.id);
    }

    /// Blocks until notified (returns at once if a notification is already pending).
    pub fn sleep(&self) {
        let mut state = self.sched.lock();
        if !state.pending[self.id] {
            state.asleep[self.id] = true;
            state.schedule(self.id);
            self.sched.wait_turn(state, self.id);
            state = self.sched.lock();
        }
        state.pending[self.id] = false;
    }

    /// Raises the other actor's event channel.
    pub fn notify_other(&self) {
        let mut state = self.sched.lock();
        let other = 1 - self.id;
        state.notifications[other] += 1;
        state.pending[other] = true;
        state.asleep[other] = false;
    }

    /// A view of `page` whose every access is a scheduling point for this actor.
    pub fn page<'p>(&self, page: &'p TestPage, stores: &'p StoreCounts) -> SchedPage<'p>
    where
        's: 'p,
    {
        SchedPage {
            page,
            actor: *self,
            stores,
        }
    }

    fn finish(&self) {
        let mut state = self.sched.lock();
        state.done[self.id] = true;
        state.schedule(self.id);
        self.sched.turn.notify_all();
    }

    fn abort(&self, why: String) {
        let mut state = self.sched.lock();
        state.fail(why);
        self.sched.turn.notify_all();
    }
}

/// Stores per 4-byte word of a page, for counting how often an event index was armed.
#[derive(Debug)]
pub struct StoreCounts([AtomicU32; PAGE_SIZE / 4]);

impl StoreCounts {
    pub fn new() -> Self {
        Self([const { AtomicU32::new(0) }; PAGE_SIZE / 4])
    }

    /// `store_u32`s at `offset` so far.
    pub fn at(&self, offset: usize) -> u32 {
        self.0[offset / 4].load(Ordering::Relaxed)
    }
}

/// A [`TestPage`] seen by one actor: each access first yields to the scheduler.
#[derive(Debug)]
pub struct SchedPage<'p> {
    page: &'p TestPage,
    actor: Actor<'p>,
    stores: &'p StoreCounts,
}

impl SharedPage for SchedPage<'_> {
    fn load_u32(&self, offset: usize) -> u32 {
        self.actor.yield_now();
        self.page.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.actor.yield_now();
        self.stores.0[offset / 4].fetch_add(1, Ordering::Relaxed);
        self.page.store_u32(offset, value)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        self.actor.yield_now();
        self.page.read(offset, buf)
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        self.actor.yield_now();
        self.page.write(offset, buf)
    }

    fn fence(&self) {
        self.actor.yield_now();
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    /// Notifications each actor received.
    pub notifications: [u32; 2],
}

/// Runs `actor0` and `actor1` interleaved by `choices` (see the module docs). Returns the
/// failure (a lost notification, a stuck run, or an actor's panic message) as an error.
pub fn run_interleaved<A, B>(choices: &[u8], actor0: A, actor1: B) -> Result<RunReport, String>
where
    A: FnOnce(Actor<'_>) + Send,
    B: FnOnce(Actor<'_>) + Send,
{
    let sched = Interleaver {
        state: Mutex::new(State {
            running: Some(0),
            asleep: [false; 2],
            done: [false; 2],
            pending: [false; 2],
            choices: choices.to_vec(),
            next_choice: 0,
            run_left: 0,
            steps: 0,
            notifications: [0; 2],
            failure: None,
        }),
        turn: Condvar::new(),
    };
    fn body<F: FnOnce(Actor<'_>)>(actor: Actor<'_>, f: F) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            actor.sched.wait_turn(actor.sched.lock(), actor.id);
            f(actor)
        }));
        match run {
            Ok(()) => actor.finish(),
            Err(payload) if payload.is::<Aborted>() => {}
            Err(payload) => {
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| String::from(*s)))
                    .unwrap_or_else(|| String::from("actor panicked"));
                actor.abort(format!("actor {} panicked: {why}", actor.id));
            }
        }
    }
    std::thread::scope(|scope| {
        let sched = &sched;
        scope.spawn(move || body(Actor { sched, id: 0 }, actor0));
        scope.spawn(move || body(Actor { sched, id: 1 }, actor1));
    });
    let state = sched.lock();
    match &state.failure {
        Some(why) => Err(why.clone()),
        None => Ok(RunReport {
            notifications: state.notifications,
        }),
    }
}

/// An in-memory grant table: entry `r` is `pages[r]` with its writability, or absent.
#[derive(Debug, Default)]
pub struct TestGrants {
    pub entries: Vec<Option<(TestPage, bool)>>,
}

impl TestGrants {
    /// Adds a grant of a fresh zeroed page; returns its reference.
    pub fn grant(&mut self, writable: bool) -> GrantRef {
        self.entries.push(Some((TestPage::new(), writable)));
        (self.entries.len() - 1) as GrantRef
    }

    /// The page behind `gref` (test-side access, ignoring permissions).
    pub fn page(&self, gref: GrantRef) -> &TestPage {
        &self.entries[gref as usize].as_ref().expect("granted").0
    }
}

impl<'g> GrantMapper for &'g TestGrants {
    type Mapping = &'g TestPage;

    fn map(&self, gref: GrantRef, writable: bool) -> Result<&'g TestPage, GrantError> {
        match self.entries.get(gref as usize) {
            Some(Some((page, page_writable))) => {
                if writable && !page_writable {
                    Err(GrantError::PermissionDenied)
                } else {
                    Ok(page)
                }
            }
            _ => Err(GrantError::BadRef),
        }
    }
}

/// A [`TestPage`] view that counts stores (single-threaded model tests).
#[derive(Debug)]
pub struct CountingPage<'p> {
    pub page: &'p TestPage,
    pub stores: &'p StoreCounts,
}

impl SharedPage for CountingPage<'_> {
    fn load_u32(&self, offset: usize) -> u32 {
        self.page.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.stores.0[offset / 4].fetch_add(1, Ordering::Relaxed);
        self.page.store_u32(offset, value)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        self.page.read(offset, buf)
    }

    fn write(&self, offset: usize, buf: &[u8]) {
        self.page.write(offset, buf)
    }
}
