//! The benchmark runs and its output is well formed: the bench guest's lines, and
//! `cargo xtask bench`, `bench blk` and `bench net` end to end (table, JSON, SVG) with tiny
//! iteration counts and sizes. Timings are not checked here; they belong to the benchmarks
//! themselves (docs/benchmarks.md).

use parapet_tests::{TempDir, guest, host_binary, run, run_guest, vmm};
use std::collections::BTreeMap;
use std::process::Command;

/// `key=value` fields of a `bench <name> …` line.
fn fields(line: &str) -> (String, BTreeMap<String, String>) {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("bench"), "{line}");
    let name = words.next().expect("a name").to_owned();
    let map = words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("{w:?} in {line}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (name, map)
}

#[test]
fn bench_guest_prints_well_formed_lines() {
    let names = [
        "null_hypercall",
        "multicall_null",
        "vif_irq_off_on",
        "timer_fire_lapic",
    ];
    let cmdline = format!("{} iters=3", names.join(" "));
    let out = run_guest("bench", &["--cmdline", &cmdline]);
    out.assert_status(0).assert_no_panic();
    let info = out
        .stdout
        .lines()
        .find(|l| l.starts_with("bench-info "))
        .unwrap_or_else(|| panic!("no bench-info line\n{out}"));
    for key in ["platform=", "transport=", "tsc_khz=", "kvm_msr="] {
        assert!(info.contains(key), "bench-info lacks {key}\n{out}");
    }
    let lines: Vec<_> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("bench "))
        .collect();
    assert_eq!(lines.len(), names.len(), "one line per benchmark\n{out}");
    for (line, name) in lines.iter().zip(names) {
        let (n, f) = fields(line);
        assert_eq!(n, name, "{out}");
        let int = |k: &str| -> u64 {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k}= missing or not an integer in {line}"))
        };
        assert_eq!((int("iters"), int("warmup")), (3, 3), "{line}");
        assert!(int("batch") >= 1 && int("tsc_khz") > 0, "{line}");
        assert!(
            int("min") <= int("median") && int("median") <= int("p99"),
            "{line}"
        );
    }
}

#[test]
fn xtask_bench_prints_the_table_and_writes_json_and_svg() {
    let xtask = host_binary("xtask", "xtask");
    let floor = host_binary("bench-floor", "parapet-floor");
    let dir = TempDir::new("bench");
    let mut cmd = Command::new(xtask);
    cmd.args(["bench", "--iters", "2", "--rounds", "1", "--boot-runs", "1"])
        .arg("--vmm")
        .arg(vmm())
        .arg("--guest")
        .arg(guest("bench"))
        .arg("--hello")
        .arg(guest("hello"))
        .arg("--floor")
        .arg(floor)
        .arg("--out")
        .arg(&*dir);
    let out = run(cmd);
    out.assert_status(0).assert_no_panic();
    for needle in [
        "Parapet bench: platform ",
        "Dispatch overhead",
        "Peer: none measured",
    ] {
        out.assert_stdout_contains(needle);
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("results.json"))
            .expect("results.json is JSON");
    assert_eq!(json["schema"], "parapet-bench/1");
    assert!(json["host"]["tsc_khz"].as_u64().unwrap_or(0) > 0, "{json}");
    let rows = json["rows"].as_array().expect("rows");
    let status = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no row {id}"))["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for r in rows {
        let label = r["label"].as_str().expect("label");
        assert!(out.stdout.contains(label), "the table lacks {label}\n{out}");
        let s = r["status"].as_str().expect("status");
        assert!(
            ["measured", "failed", "skipped", "unavailable", "not_run"].contains(&s),
            "{r}"
        );
        if s == "measured" {
            let ns = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
            assert!(
                ns("min_ns") <= ns("median_ns") && ns("median_ns") <= ns("p99_ns"),
                "{r}"
            );
            assert!(r["iters"].as_u64().unwrap_or(0) >= 1, "{r}");
        }
    }
    // Every mechanism the host certainly has is measured. (The scratch MMIO rows depend on the
    // VMM's scratch page, VMCALL on KVM's Xen intercept, the emulated floor on kvm_pvm.)
    for id in [
        "floor_out",
        "null_hypercall",
        "multicall_null",
        "rdmsr_kvm",
        "startinfo_tsc_khz",
        "cli_sti",
        "vif_irq_off_on",
        "pio_read",
        "pio_write",
        "floor_mmio_read",
        "ring_echo",
        "ring_echo_batch",
        "timer_arm_hypercall",
        "timer_arm_lapic",
        "timer_fire_hypercall",
        "timer_fire_lapic",
        "notify_doorbell",
        "notify_hypercall",
        "event_rtt_doorbell",
        "event_rtt_hypercall",
        "console_ring_1k",
        "console_io_1k",
        "console_trap_1k",
        "boot_parapet_hello",
    ] {
        assert_eq!(status(id), "measured", "row {id}\n{out}");
    }
    assert!(
        ["measured", "unavailable"].contains(&status("null_hypercall_vmcall").as_str()),
        "{out}"
    );
    assert_eq!(status("solo5_yield"), "not_run", "{out}");
    let null = rows.iter().find(|r| r["id"] == "null_hypercall").unwrap();
    assert!(
        (0.9..1.5).contains(&null["vmm_exits_per_op"].as_f64().unwrap_or(0.0)),
        "a null hypercall is one exit: {null}"
    );

    let svg = std::fs::read_to_string(dir.join("chart.svg")).expect("chart.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

/// Reads `dir/name` as JSON.
fn json_file(dir: &std::path::Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn assert_svg(dir: &std::path::Path, name: &str) {
    let svg = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{name}"
    );
}

#[test]
fn xtask_bench_blk_measures_both_sides() {
    let xtask = host_binary("xtask", "xtask");
    let dir = TempDir::new("bench-blk");
    let mut cmd = Command::new(&xtask);
    cmd.args([
        "bench",
        "blk",
        "--size",
        "4M",
        "--seconds",
        "0.05",
        "--rounds",
        "1",
    ])
    .arg("--vmm")
    .arg(vmm())
    .arg("--guest")
    .arg(guest("blk-bench"))
    .arg("--harness")
    .arg(&xtask)
    .arg("--image")
    .arg(dir.join("blk.img"))
    .arg("--out")
    .arg(&*dir);
    let out = run(cmd);
    out.assert_status(0).assert_no_panic();
    out.assert_stdout_contains("Parapet bench blk:")
        .assert_stdout_contains("goals: randread_qd32");
    let json = json_file(&dir, "blk.json");
    assert_eq!(json["schema"], "parapet-bench-blk/1");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "{json}");
    for r in rows {
        let label = r["label"].as_str().expect("label");
        assert!(out.stdout.contains(label), "the table lacks {label}\n{out}");
        assert_eq!(r["status"], "measured", "{r}\n{out}");
        for k in ["guest_rate", "host_rate", "ratio", "vmm_exits_per_request"] {
            assert!(r[k].as_f64().is_some_and(|x| x >= 0.0), "{k} in {r}");
        }
        let lat = |k: &str| r[k].as_f64().unwrap_or(-1.0);
        assert!(
            lat("guest_lat_median_ns") > 0.0 && lat("host_lat_median_ns") > 0.0,
            "{r}"
        );
    }
    assert_svg(&dir, "blk.svg");
}

/// Needs root (network namespaces, a TAP device), as the network tests do.
#[test]
fn xtask_bench_net_measures_the_guest_and_the_ceilings() {
    let xtask = host_binary("xtask", "xtask");
    let dir = TempDir::new("bench-net");
    let mut cmd = Command::new(&xtask);
    cmd.args(["bench", "net", "--mib", "1", "--udp", "50", "--rounds", "1"])
        .arg("--vmm")
        .arg(vmm())
        .arg("--guest")
        .arg(guest("net-echo"))
        .arg("--out")
        .arg(&*dir);
    let out = run(cmd);
    out.assert_status(0).assert_no_panic();
    out.assert_stdout_contains("Parapet bench net:")
        .assert_stdout_contains("goal: >= 1 Gbit/s TCP");
    let json = json_file(&dir, "net.json");
    assert_eq!(json["schema"], "parapet-bench-net/1");
    let tests = json["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 3, "{json}");
    for t in tests {
        for way in ["guest", "veth", "loopback"] {
            let w = &t["ways"][way];
            assert_eq!(
                w["status"], "measured",
                "{} over {way}: {w}\n{out}",
                t["id"]
            );
            assert!(w["median"].as_f64().is_some_and(|x| x > 0.0), "{w}");
        }
        let g = &t["ways"]["guest"];
        assert!(
            g["vmm_exits_per_packet"].as_f64().is_some_and(|x| x >= 0.0),
            "exits per packet: {g}"
        );
    }
    assert_svg(&dir, "net.svg");
    // Its namespaces are gone.
    let left = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("ppbench-"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "bench net left namespaces behind");
}
