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
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering, fence};
use core::time::Duration;

use parapet_abi::shared_info::vcpu_time_offset;
use parapet_abi::start_info::StartInfo;
use parapet_abi::time::VcpuTimeInfo;

/// `vcpu_info[0].time` in the shared-info page, or null before boot.
static TIME_INFO: AtomicPtr<VcpuTimeInfo> = AtomicPtr::new(core::ptr::null_mut());
/// TSC frequency from start-info.
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Finds the PV clock. Called once by the boot code.
#[cfg_attr(
    not(target_os = "none"),
    expect(dead_code, reason = "only guest boot code calls it")
)]
pub(crate) fn init(info: &StartInfo) {
    let rec = info.shared_info + vcpu_time_offset(0) as u64;
    TIME_INFO.store(rec as *mut VcpuTimeInfo, Ordering::Relaxed);
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

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC only read the TSC (RDTSC is not trapped in any mode Parapet uses);
    // the fence keeps the read from moving ahead of earlier instructions.
    unsafe {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The TSC frequency in kHz the VMM announced (0 before boot).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// A consistent copy of the PV clock record at `rec` and the TSC read while it was valid.
///
/// # Safety
///
/// `rec` must point to a readable `VcpuTimeInfo` that may be changed concurrently only by a
/// writer following the version protocol.
pub unsafe fn read_time_info(rec: *const VcpuTimeInfo) -> (VcpuTimeInfo, u64) {
    loop {
        // SAFETY: the caller guarantees `rec` is readable; every read is volatile because the
        // VMM may write the record at any time.
        let (before, copy, tsc, after) = unsafe {
            let before = (&raw const (*rec).version).read_volatile();
            fence(Ordering::Acquire);
            let copy = rec.read_volatile();
            let tsc = rdtsc();
            fence(Ordering::Acquire);
            (
                before,
                copy,
                tsc,
                (&raw const (*rec).version).read_volatile(),
            )
        };
        if before & 1 == 0 && before == after {
            return (copy, tsc);
        }
        core::hint::spin_loop();
    }
}

/// The current system time.
pub fn now() -> Instant {
    let rec = TIME_INFO.load(Ordering::Relaxed);
    if rec.is_null() {
        return Instant::ZERO;
    }
    // SAFETY: `rec` is `vcpu_info[0].time` in the shared-info page (guest RAM, mapped
    // read/write), which the VMM updates with the version protocol.
    let (info, tsc) = unsafe { read_time_info(rec) };
    Instant(info.system_time_at(tsc))
}

/// The wall clock: time since the Unix epoch, from the shared-info page's `wc_*` fields (the
/// Unix time at system time 0, docs/abi.md §4.2) plus [`now`]. `None` before boot or if the VMM
/// left the wall clock at 0.
pub fn unix_time() -> Option<Duration> {
    let info = crate::start_info::try_start_info()?;
    let p = info.shared_info as *const parapet_abi::shared_info::SharedInfo;
    if p.is_null() {
        return None;
    }
    let (sec, nsec) = loop {
        // SAFETY: the shared-info page is guest RAM mapped readable for the guest's life (it was
        // validated at boot); the fields are read with volatile loads because the VMM may
        // update them, following the version protocol.
        let (before, sec, sec_hi, nsec, after) = unsafe {
            let before = (&raw const (*p).wc_version).read_volatile();
            fence(Ordering::Acquire);
            let sec = (&raw const (*p).wc_sec).read_volatile();
            let sec_hi = (&raw const (*p).wc_sec_hi).read_volatile();
            let nsec = (&raw const (*p).wc_nsec).read_volatile();
            fence(Ordering::Acquire);
            (
                before,
                sec,
                sec_hi,
                nsec,
                (&raw const (*p).wc_version).read_volatile(),
            )
        };
        if before & 1 == 0 && before == after {
            break (u64::from(sec_hi) << 32 | u64::from(sec), nsec);
        }
        core::hint::spin_loop();
    };
    if sec == 0 && nsec == 0 {
        return None;
    }
    Some(Duration::new(sec, nsec.min(999_999_999)) + Duration::from_nanos(now().as_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parapet_abi::time::TscScale;

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
    fn reads_a_consistent_record() {
        let s = TscScale::from_tsc_khz(1_000_000);
        let rec = VcpuTimeInfo {
            version: 2,
            tsc_timestamp: rdtsc(),
            system_time: 42,
            tsc_to_system_mul: s.mul,
            tsc_shift: s.shift,
            ..Default::default()
        };
        // SAFETY: a local record nobody else writes.
        let (copy, tsc) = unsafe { read_time_info(&rec) };
        assert_eq!(copy.system_time, 42);
        assert!(copy.system_time_at(tsc) >= 42);
    }

    #[test]
    fn clock_reads_zero_before_boot() {
        assert_eq!(now(), Instant::ZERO);
        assert_eq!(tsc_khz(), 0);
    }
}
