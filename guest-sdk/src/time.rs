//! Time: a monotonic clock from the PV clock in the shared-info page (docs/abi.md §4.2).
//!
//! System time is nanoseconds since the domain was built. [`now`] reads `vcpu_info[0].time`
//! with Xen's version protocol (copy the record between two reads of `version`, retry if it was
//! odd or changed), reads the TSC and scales the difference; no hypercall and no exit.
//! Sleeping, timers and waits on several sources are in [`crate::timer`] ([`timer::sleep`](crate::timer::sleep)), which
//! builds on this clock.
//!
//! Before boot (and on the host) the clock reads 0.

use core::ops::{Add, Sub};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use parapet_abi::start_info::StartInfo;

pub use crate::cpu::rdtsc;
use crate::page::SharedInfoPage;

/// TSC frequency from start-info.
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Records the TSC frequency. Called once by the boot code.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init(info: &StartInfo) {
    TSC_KHZ.store(info.tsc_khz, Ordering::Relaxed);
}

/// A point in system time: nanoseconds since the domain was built. Monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// System time 0, when the domain was built.
    pub const ZERO: Instant = Instant(0);

    /// The instant `ns` nanoseconds after system time 0.
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    /// Nanoseconds since system time 0 (the unit of `set_timer_op`).
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The current time; same as [`now`].
    pub fn now() -> Instant {
        now()
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time elapsed since `self`.
    pub fn elapsed(self) -> Duration {
        now().saturating_duration_since(self)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let ns = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(ns).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of time instead of overflowing.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant(u64::MAX))
    }
}

impl Sub for Instant {
    type Output = Duration;

    /// Saturates at zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The TSC frequency in kHz the VMM announced (0 before boot).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// The current system time.
pub fn now() -> Instant {
    match SharedInfoPage::get() {
        Some(page) => {
            let (info, tsc) = page.vcpu_time();
            Instant(info.system_time_at(tsc))
        }
        None => Instant::ZERO,
    }
}

/// The wall clock: time since the Unix epoch, from the shared-info page's `wc_*` fields (the
/// Unix time at system time 0, docs/abi.md §4.2) plus [`now`]. `None` before boot or if the VMM
/// left the wall clock at 0.
pub fn unix_time() -> Option<Duration> {
    let (sec, nsec) = SharedInfoPage::get()?.wall_clock();
    if sec == 0 && nsec == 0 {
        return None;
    }
    Some(Duration::new(sec, nsec.min(999_999_999)) + Duration::from_nanos(now().as_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_do_saturating_arithmetic() {
        let a = Instant::from_nanos(1_000);
        let b = a + Duration::from_micros(2);
        assert_eq!(b.as_nanos(), 3_000);
        assert_eq!(b - a, Duration::from_nanos(2_000));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), None);
        assert_eq!(
            Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(1),
            Instant(u64::MAX)
        );
        assert_eq!(a.checked_add(Duration::MAX), None);
    }

    #[test]
    fn clock_reads_zero_before_boot() {
        assert_eq!(now(), Instant::ZERO);
        assert_eq!(tsc_khz(), 0);
        assert_eq!(unix_time(), None);
    }
}
