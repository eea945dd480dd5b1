//! The rows of `cargo xtask bench`: each paravirtual mechanism next to the trap it replaces,
//! the floor of each exit, and the peer.

/// What a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The bare KVM program (bench/floor): the same exit with nothing else.
    Floor,
    /// A paravirtual mechanism that does not exit to the VMM.
    Pv,
    /// A paravirtual mechanism that is a hypercall (one exit to the VMM).
    Hypercall,
    /// Trap-and-emulate: a trapped instruction or an emulated device register.
    Trap,
    /// A reference point (the cost of the measurement, a sleep, other PV-core operations).
    Other,
    /// The peer (Solo5 hvt) and its Parapet counterpart, timed by the host.
    Peer,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Pv => "PV",
            Kind::Hypercall => "PV hcall",
            Kind::Trap => "trap",
            Kind::Other => "other",
            Kind::Peer => "peer",
        }
    }
}

/// Where a row's numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A benchmark of the bench guest, in its own `parapet run --stats` process.
    Guest {
        bench: &'static str,
        /// `--loopback`.
        loopback: bool,
        /// `--hypercall-transport vmcall` (a row of its own; refused where KVM cannot).
        vmcall: bool,
    },
    /// An operation of the floor program.
    Floor { op: &'static str },
    /// Spawn-to-exit wall time of a program, timed by the host.
    Boot(Boot),
    /// Solo5's `test_time`, which measures one `solo5_yield()` (a POLL hypercall) in the guest.
    Solo5Yield,
}

/// The programs whose spawn-to-exit time is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// `parapet run hello` (release).
    ParapetHello,
    /// `solo5-hvt --mem=8 test_hello.hvt`.
    Solo5Hello,
    /// `solo5-hvt --mem=8 test_quiet.hvt --solo5:quiet`.
    Solo5Quiet,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Stable key (JSON, `--only`).
    pub id: &'static str,
    pub section: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub source: Source,
    /// Iterations = `--iters` × this (at least 2).
    pub scale: f64,
}

impl Row {
    pub fn iters(&self, base: u32) -> u32 {
        ((f64::from(base) * self.scale).round() as u32).max(2)
    }

    pub fn is_peer(&self) -> bool {
        matches!(
            self.source,
            Source::Solo5Yield | Source::Boot(Boot::Solo5Hello | Boot::Solo5Quiet)
        )
    }
}

pub const HYPERCALL: &str = "Hypercall round trip: guest -> VMM -> guest";
pub const PRIVILEGED: &str = "Privileged instruction: trapped into KVM vs its PV replacement";
pub const DEVICE: &str = "Device register: trapped and emulated in the VMM vs a shared ring";
pub const TIMER: &str = "Timer: set_timer_op vs the local APIC timer (trapped MSR writes)";
pub const EVENTS: &str = "Event notification: ioeventfd doorbell vs hypercall";
pub const CONSOLE: &str = "Console output, per KiB (16 lines of 64 bytes)";
pub const CORE: &str = "Other PV-core operations";
pub const EMULATION: &str = "Native vs instruction-emulated guest on this host (floor program)";
pub const PEER: &str = "Boot and the peer: Solo5 hvt, same run (host wall clock)";

const fn guest(bench: &'static str) -> Source {
    Source::Guest {
        bench,
        loopback: false,
        vmcall: false,
    }
}

const fn guest_loopback(bench: &'static str) -> Source {
    Source::Guest {
        bench,
        loopback: true,
        vmcall: false,
    }
}

const fn row(
    id: &'static str,
    section: &'static str,
    label: &'static str,
    kind: Kind,
    source: Source,
    scale: f64,
) -> Row {
    Row {
        id,
        section,
        label,
        kind,
        source,
        scale,
    }
}

/// Every row, in table order.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    row("floor_out", HYPERCALL, "floor: bare KVM `out` exit, registers synced", Kind::Floor,
        Source::Floor { op: "out" }, 1.0),
    row("null_hypercall", HYPERCALL, "null hypercall (xen_version), port I/O", Kind::Hypercall,
        guest("null_hypercall"), 1.0),
    row("null_hypercall_vmcall", HYPERCALL, "null hypercall, VMCALL (KVM Xen intercept)",
        Kind::Hypercall,
        Source::Guest { bench: "null_hypercall", loopback: false, vmcall: true }, 1.0),
    row("multicall_null", HYPERCALL, "multicall of 32 null calls, per call", Kind::Hypercall,
        guest("multicall_null"), 0.25),
    row("floor_rdmsr", PRIVILEGED, "floor: RDMSR of a KVM MSR, bare guest", Kind::Floor,
        Source::Floor { op: "rdmsr" }, 1.0),
    row("rdmsr_kvm", PRIVILEGED, "RDMSR of a KVM MSR (TSC kHz), handled in KVM", Kind::Trap,
        guest("rdmsr_kvm"), 1.0),
    row("startinfo_tsc_khz", PRIVILEGED, "PV: the same value read from start-info", Kind::Pv,
        guest("startinfo_tsc_khz"), 5.0),
    row("floor_cli_sti", PRIVILEGED, "floor: CLI+STI, bare guest", Kind::Floor,
        Source::Floor { op: "cli_sti" }, 1.0),
    row("cli_sti", PRIVILEGED, "CLI+STI (on kvm_pvm: 2 traps, no effect)", Kind::Trap,
        guest("cli_sti"), 1.0),
    row("vif_irq_off_on", PRIVILEGED, "PV: pvops irq_disable+irq_enable (VIF byte)", Kind::Pv,
        guest("vif_irq_off_on"), 5.0),
    row("floor_in", DEVICE, "floor: bare KVM `in` exit", Kind::Floor,
        Source::Floor { op: "in" }, 1.0),
    row("pio_read", DEVICE, "scratch register read, port I/O (in)", Kind::Trap,
        guest("pio_read"), 1.0),
    row("pio_write", DEVICE, "scratch register write, port I/O (out)", Kind::Trap,
        guest("pio_write"), 1.0),
    row("floor_mmio_read", DEVICE, "floor: bare KVM MMIO read exit", Kind::Floor,
        Source::Floor { op: "mmio_read" }, 1.0),
    row("mmio_read", DEVICE, "scratch register read, MMIO", Kind::Trap, guest("mmio_read"), 1.0),
    row("mmio_write", DEVICE, "scratch register write, MMIO", Kind::Trap, guest("mmio_write"),
        1.0),
    row("ring_echo", DEVICE, "PV: loopback ECHO via ring + doorbell, spin", Kind::Pv,
        guest_loopback("ring_echo"), 1.0),
    row("ring_echo_batch", DEVICE, "PV: 32 ECHOs per doorbell (suppression), each", Kind::Pv,
        guest_loopback("ring_echo_batch"), 0.25),
    row("timer_arm_hypercall", TIMER, "arm: set_timer_op hypercall", Kind::Hypercall,
        guest("timer_arm_hypercall"), 1.0),
    row("timer_arm_lapic", TIMER, "arm: LAPIC initial-count WRMSR (trap in KVM)", Kind::Trap,
        guest("timer_arm_lapic"), 1.0),
    row("timer_fire_hypercall", TIMER, "due set_timer_op -> VIRQ_TIMER handler ran", Kind::Hypercall,
        guest("timer_fire_hypercall"), 0.05),
    row("timer_fire_lapic", TIMER, "due LAPIC timer -> interrupt handler ran", Kind::Trap,
        guest("timer_fire_lapic"), 1.0),
    row("sleep_100us", TIMER, "sleep 100 us: set_timer_op + SCHEDOP_block", Kind::Other,
        guest("sleep_100us"), 0.25),
    row("floor_doorbell", EVENTS, "floor: `out` to an ioeventfd, bare guest", Kind::Floor,
        Source::Floor { op: "doorbell" }, 1.0),
    row("notify_doorbell", EVENTS, "doorbell (ioeventfd, no VMM exit), guest cost", Kind::Pv,
        guest_loopback("notify_doorbell"), 1.0),
    row("notify_hypercall", EVENTS, "EVTCHNOP_send hypercall, guest cost", Kind::Hypercall,
        guest_loopback("notify_hypercall"), 1.0),
    row("event_rtt_doorbell", EVENTS, "round trip to the backend, doorbell", Kind::Pv,
        guest_loopback("event_rtt_doorbell"), 1.0),
    row("event_rtt_hypercall", EVENTS, "round trip to the backend, hypercall", Kind::Hypercall,
        guest_loopback("event_rtt_hypercall"), 1.0),
    row("console_ring_1k", CONSOLE, "PV: console ring (suppression + doorbell)", Kind::Pv,
        guest("console_ring_1k"), 0.1),
    row("console_io_1k", CONSOLE, "console_io hypercall per line", Kind::Hypercall,
        guest("console_io_1k"), 0.05),
    row("console_trap_1k", CONSOLE, "trap per byte: out 0xe9 (debug console)", Kind::Trap,
        guest("console_trap_1k"), 0.005),
    row("tsc_read", CORE, "lfence+rdtsc (the measurement's own cost)", Kind::Other,
        guest("tsc_read"), 5.0),
    row("evtchn_send_dropped", CORE, "EVTCHNOP_send on an unbound port", Kind::Hypercall,
        guest("evtchn_send_dropped"), 1.0),
    row("evtchn_send_upcall", CORE, "EVTCHNOP_send on a loop, incl. the upcall", Kind::Hypercall,
        guest("evtchn_send_upcall"), 1.0),
    row("evtchn_notify_upcall", CORE, "doorbell on a loop (via the VMM), incl. upcall",
        Kind::Hypercall, guest("evtchn_notify_upcall"), 1.0),
    row("grant_copy_4k", CORE, "GNTTABOP_copy of a granted 4 KiB page", Kind::Hypercall,
        guest("grant_copy_4k"), 1.0),
    row("loopback_echo", CORE, "loopback ECHO, guest blocks for the response", Kind::Pv,
        guest_loopback("loopback_echo"), 0.5),
    row("floor_alu100", EMULATION, "floor: 100 register ADDs, native", Kind::Floor,
        Source::Floor { op: "alu100" }, 5.0),
    row("floor_alu100_emulated", EMULATION, "floor: 100 register ADDs, emulated", Kind::Floor,
        Source::Floor { op: "alu100_emulated" }, 0.25),
    row("floor_out_emulated", EMULATION, "floor: `out` exit of an emulated guest", Kind::Floor,
        Source::Floor { op: "out_emulated" }, 1.0),
    row("boot_parapet_hello", PEER, "Parapet: spawn -> exit, `parapet run hello`", Kind::Peer,
        Source::Boot(Boot::ParapetHello), 1.0),
    row("boot_solo5_hello", PEER, "Solo5 hvt: spawn -> exit, test_hello", Kind::Peer,
        Source::Boot(Boot::Solo5Hello), 1.0),
    row("boot_solo5_quiet", PEER, "Solo5 hvt: spawn -> exit, test_quiet", Kind::Peer,
        Source::Boot(Boot::Solo5Quiet), 1.0),
    row("solo5_yield", PEER, "Solo5 hvt: solo5_yield() hypercall (test_time)", Kind::Peer,
        Source::Solo5Yield, 1.0),
];

/// Parapet rows and the floor rows they are divided by: the dispatch overhead.
pub const FLOOR_PAIRS: &[(&str, &str)] = &[
    ("null_hypercall", "floor_out"),
    ("pio_read", "floor_in"),
    ("mmio_read", "floor_mmio_read"),
    ("rdmsr_kvm", "floor_rdmsr"),
    ("cli_sti", "floor_cli_sti"),
    ("notify_doorbell", "floor_doorbell"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_pairs_exist() {
        let mut ids: Vec<_> = ROWS.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
        for (a, b) in FLOOR_PAIRS {
            assert!(ROWS.iter().any(|r| r.id == *a) && ROWS.iter().any(|r| r.id == *b));
        }
        for r in ROWS {
            assert!(
                r.label.len() <= super::super::report::LABEL_WIDTH,
                "{}",
                r.label
            );
            assert!(r.iters(2) >= 2);
        }
    }
}
