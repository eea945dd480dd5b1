//! Counters the vCPU loop keeps, and the `--stats` report.

use crate::config::StatsFormat;
use crate::kvm::vcpu::Exit;
use parapet_abi::hypercall::{Hypercall, NR_STUBS};
use std::fmt::Write;

/// Exits to the VMM by reason, and hypercalls by number.
#[derive(Debug)]
pub struct ExitCounters {
    by_reason: [u64; REASONS.len()],
    by_hypercall: [u64; NR_STUBS + 1],
}

const REASONS: [&str; 10] = [
    "io",
    "xen",
    "mmio",
    "hlt",
    "intr",
    "shutdown",
    "internal_error",
    "fail_entry",
    "other",
    "debug",
];

impl Default for ExitCounters {
    fn default() -> Self {
        ExitCounters {
            by_reason: [0; REASONS.len()],
            by_hypercall: [0; NR_STUBS + 1],
        }
    }
}

impl ExitCounters {
    /// Counts one exit.
    pub fn count(&mut self, exit: &Exit, xen_transport: bool) {
        let reason = match exit {
            Exit::Hypercall { .. } if xen_transport => 1,
            Exit::Hypercall { .. } | Exit::Io { .. } | Exit::Doorbell { .. } => 0,
            Exit::Mmio { .. } => 2,
            Exit::Halt => 3,
            Exit::Interrupted => 4,
            Exit::Shutdown => 5,
            Exit::InternalError { .. } => 6,
            Exit::FailEntry { .. } => 7,
            Exit::Other(_) => 8,
            Exit::PortBreakpoint { .. } | Exit::Debug { .. } => 9,
        };
        self.by_reason[reason] += 1;
        if let Exit::Hypercall { nr, .. } = exit {
            let slot = usize::try_from(*nr).unwrap_or(NR_STUBS).min(NR_STUBS);
            self.by_hypercall[slot] += 1;
        }
    }

    /// Total exits to the VMM.
    pub fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    /// Every counter `--stats` reports, named `group.name`, in report order: VMM exits,
    /// hypercalls, device counters, then the vCPU's KVM statistics.
    pub fn all(&self, kvm: &[(String, u64)], devices: &[(String, u64)]) -> Vec<(String, u64)> {
        let mut out = vec![("exit.total".to_owned(), self.total())];
        for (name, n) in REASONS.iter().zip(self.by_reason) {
            if n > 0 {
                out.push((format!("exit.{name}"), n));
            }
        }
        for (nr, &n) in self
            .by_hypercall
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
        {
            let name = match Hypercall(nr as u32).name() {
                _ if nr == NR_STUBS => "out_of_range".to_owned(),
                "unknown" => format!("unknown_{nr}"),
                known => known.to_owned(),
            };
            out.push((format!("hypercall.{name}"), n));
        }
        out.extend(devices.iter().cloned());
        for (name, value) in kvm {
            if *value > 0 || name == "exits" || name == "insn_emulation" {
                out.push((format!("kvm.{name}"), *value));
            }
        }
        out
    }
}

/// The `--stats` report of `counters` ([`ExitCounters::all`]) in `format`.
pub fn render(counters: &[(String, u64)], format: StatsFormat) -> String {
    match format {
        StatsFormat::Text => {
            let mut out = String::from("parapet stats:\n");
            for (name, value) in counters {
                let _ = writeln!(out, "  {name} {value}");
            }
            out
        }
        StatsFormat::Json => {
            let object: serde_json::Map<String, serde_json::Value> = counters
                .iter()
                .map(|(name, value)| (name.clone(), (*value).into()))
                .collect();
            format!("{}\n", serde_json::Value::Object(object))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nonzero_counters() {
        let mut c = ExitCounters::default();
        let hc = |nr| Exit::Hypercall {
            nr,
            args: [0; 5],
            from_user: false,
        };
        c.count(&hc(18), false);
        c.count(&hc(18), false);
        c.count(&hc(500), false);
        c.count(&Exit::Shutdown, false);
        let all = c.all(
            &[
                ("exits".into(), 0),
                ("halt_exits".into(), 0),
                ("io_exits".into(), 3),
            ],
            &[("net0.rx_packets".into(), 5)],
        );
        let text = render(&all, StatsFormat::Text);
        let json: serde_json::Value =
            serde_json::from_str(&render(&all, StatsFormat::Json)).unwrap();
        assert_eq!(json["exit.total"], 4);
        assert_eq!(json["hypercall.out_of_range"], 1);
        assert_eq!(json.as_object().unwrap().len(), all.len());
        assert!(text.contains("  net0.rx_packets 5\n"));
        assert!(text.contains("  exit.total 4\n"));
        assert!(text.contains("  exit.io 3\n"));
        assert!(text.contains("  hypercall.console_io 2\n"));
        assert!(text.contains("  hypercall.out_of_range 1\n"));
        assert!(text.contains("  kvm.exits 0\n"));
        assert!(!text.contains("halt_exits"));
        assert!(text.contains("  kvm.io_exits 3\n"));
    }
}
