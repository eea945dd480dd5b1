//! The vCPU's one-shot timer (`set_timer_op`), served by a thread that sleeps until the deadline.
//!
//! The thread starts with the first armed deadline, so guests that never use the timer pay
//! nothing. When the deadline passes it runs the domain's `on_fire` callback, which raises
//! `VIRQ_TIMER` or wakes a blocked vCPU.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

enum Msg {
    /// Arm for this instant, or cancel.
    Arm(Option<Instant>),
    /// Exit the thread.
    Stop,
}

/// The timer and its thread.
pub struct TimerService {
    on_fire: Arc<dyn Fn() + Send + Sync>,
    thread: OnceLock<(Sender<Msg>, JoinHandle<()>)>,
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    /// The last deadline armed (for a snapshot; `armed` says whether it is still ahead).
    deadline: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for TimerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerService")
            .field("armed", &self.armed)
            .field("fired", &self.fired)
            .finish_non_exhaustive()
    }
}

impl TimerService {
    /// A timer that calls `on_fire` on its own thread when a deadline passes.
    pub fn new(on_fire: impl Fn() + Send + Sync + 'static) -> TimerService {
        TimerService {
            on_fire: Arc::new(on_fire),
            thread: OnceLock::new(),
            armed: Arc::new(AtomicBool::new(false)),
            fired: Arc::new(AtomicBool::new(false)),
            deadline: std::sync::Mutex::new(None),
        }
    }

    /// The armed deadline that has not fired, and whether a fired one is still untaken: what a
    /// snapshot saves (docs/snapshots.md).
    pub fn state(&self) -> (Option<Instant>, bool) {
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        (deadline.filter(|_| self.armed()), self.fired.load(SeqCst))
    }

    /// Disarms the timer and returns its [`state`](Self::state), for a snapshot: nothing fires
    /// while the snapshot is written.
    pub fn take_state(&self) -> (Option<Instant>, bool) {
        let state = self.state();
        self.arm(None);
        if state.1 {
            self.fired.store(true, SeqCst);
        }
        state
    }

    /// Puts the timer in a saved `state` (a deadline now in the past fires at once).
    pub fn set_state(&self, (deadline, fired): (Option<Instant>, bool)) {
        self.arm(deadline);
        if fired {
            self.fired.store(true, SeqCst);
        }
    }

    /// Arms the timer for `deadline` (replacing any armed one), or cancels it with `None`.
    pub fn arm(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        self.fired.store(false, SeqCst);
        self.armed.store(deadline.is_some(), SeqCst);
        if deadline.is_none() && self.thread.get().is_none() {
            return;
        }
        let (tx, _) = self.thread.get_or_init(|| self.spawn());
        // The thread only exits after `Stop`, so the channel is open.
        let _ = tx.send(Msg::Arm(deadline));
    }

    /// Whether a deadline is armed and has not fired.
    pub fn armed(&self) -> bool {
        self.armed.load(SeqCst)
    }

    /// Whether the deadline has fired since it was armed; clears the flag.
    pub fn take_fired(&self) -> bool {
        self.fired.swap(false, SeqCst)
    }

    fn spawn(&self) -> (Sender<Msg>, JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (on_fire, armed, fired) =
            (self.on_fire.clone(), self.armed.clone(), self.fired.clone());
        let handle = crate::seccomp::spawn(crate::seccomp::Role::Timer, move || {
            run(&rx, &*on_fire, &armed, &fired)
        })
        .expect("cannot start the timer thread");
        (tx, handle)
    }
}

fn run(rx: &Receiver<Msg>, on_fire: &dyn Fn(), armed: &AtomicBool, fired: &AtomicBool) {
    crate::sys::set_timer_slack_ns(1);
    let mut deadline: Option<Instant> = None;
    loop {
        let msg = match deadline {
            Some(d) => rx.recv_deadline(d),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Arm(d)) => deadline = d,
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                deadline = None;
                armed.store(false, SeqCst);
                fired.store(true, SeqCst);
                on_fire();
            }
        }
    }
}

impl Drop for TimerService {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.thread.take() {
            let _ = tx.send(Msg::Stop);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_once_at_the_deadline_and_can_be_cancelled() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let timer = TimerService::new(move || tx.send(Instant::now()).unwrap());
        let deadline = Instant::now() + Duration::from_millis(5);
        timer.arm(Some(deadline));
        assert!(timer.armed());
        let fired_at = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(fired_at >= deadline);
        assert!(timer.take_fired());
        assert!(!timer.take_fired());
        assert!(!timer.armed());
        timer.arm(Some(Instant::now() + Duration::from_millis(5)));
        timer.arm(None);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}
