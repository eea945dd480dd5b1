//! Time: Xen's PV clock (`vcpu_time_info`) and the arithmetic both sides share.
//!
//! System time is nanoseconds since the domain was built. The guest computes it from its TSC:
//! `system_time + scale(tsc - tsc_timestamp)`, where `scale(d) = ((d << shift) * mul) >> 32`
//! (a negative `shift` shifts right).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Xen's `vcpu_time_info`. The VMM makes `version` odd while it updates the record and even
/// again afterwards; a reader retries when it sees an odd or changed version.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Update counter (odd while an update is in progress).
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// Guest TSC value at `system_time`.
    pub tsc_timestamp: u64,
    /// System time in ns at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier, a 32.32 fixed-point fraction.
    pub tsc_to_system_mul: u32,
    /// Shift applied to the TSC delta before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags; bit 0 (TSC stable) is set when the TSC is invariant.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<VcpuTimeInfo>() == 32);

/// `flags` bit: the TSC is invariant and synchronised, so time never goes backwards.
pub const PVCLOCK_TSC_STABLE: u8 = 1;

/// A TSC → nanoseconds scale factor, as stored in [`VcpuTimeInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    /// 32.32 fixed-point multiplier.
    pub mul: u32,
    /// Pre-multiplication shift.
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC running at `tsc_khz` kHz (Xen's `set_time_scale`). `tsc_khz` must be
    /// non-zero.
    pub const fn from_tsc_khz(tsc_khz: u64) -> TscScale {
        const NS_PER_SEC: u64 = 1_000_000_000;
        let mut tps = tsc_khz * 1000;
        let mut shift: i8 = 0;
        while tps > 2 * NS_PER_SEC {
            tps >>= 1;
            shift -= 1;
        }
        while tps <= NS_PER_SEC {
            tps <<= 1;
            shift += 1;
        }
        TscScale {
            mul: ((NS_PER_SEC << 32) / tps) as u32,
            shift,
        }
    }

    /// Nanoseconds in `delta` TSC ticks.
    pub const fn ticks_to_ns(self, delta: u64) -> u64 {
        let d = if self.shift >= 0 {
            delta << self.shift
        } else {
            delta >> -self.shift
        };
        ((d as u128 * self.mul as u128) >> 32) as u64
    }
}

impl VcpuTimeInfo {
    /// System time at guest TSC value `tsc`, from a consistent copy of this record.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let scale = TscScale {
            mul: self.tsc_to_system_mul,
            shift: self.tsc_shift,
        };
        self.system_time + scale.ticks_to_ns(tsc.wrapping_sub(self.tsc_timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_frequency() {
        for khz in [1_000_000, 2_596_120, 3_000_000, 4_700_000, 100_000] {
            let s = TscScale::from_tsc_khz(khz);
            // One second of ticks is one second of nanoseconds, within 1 ppm.
            let ns = s.ticks_to_ns(khz * 1000);
            assert!(ns.abs_diff(1_000_000_000) < 1_000, "{khz} kHz -> {ns} ns");
        }
    }

    #[test]
    fn system_time_advances_from_timestamp() {
        let s = TscScale::from_tsc_khz(2_000_000);
        let t = VcpuTimeInfo {
            tsc_timestamp: 1_000,
            system_time: 5,
            tsc_to_system_mul: s.mul,
            tsc_shift: s.shift,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1_000), 5);
        assert_eq!(t.system_time_at(1_000 + 2_000_000), 5 + 1_000_000);
    }
}
