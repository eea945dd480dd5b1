//! Snapshots end to end (docs/abi.md §2.4 `generation`, §3.6 `SHUTDOWN_suspend`): a guest that
//! suspends itself to a file and is restored from it (twice, in new processes), a warm-reset VMM
//! serving a thousand invocations from one snapshot, snapshot files the VMM must refuse, hostile
//! suspends, a host-initiated snapshot (`SIGUSR1`) of a running guest, and a web server that
//! keeps its console, disk and network interface (on a new TAP, with a new MAC) across a
//! restore. The last needs root (network namespaces, TAP devices), as CI has, like tests/net.rs.

use parapet_tests::{
    Output, TempDir, guest, parapet, parapet_with_input, run, run_guest, run_kernel, stat, vmm,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The value of `key=` among the space-separated words of `line`.
#[track_caller]
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A 16-hex-digit field as a number.
#[track_caller]
fn hex_field(line: &str, key: &str) -> u64 {
    let text = field(line, key);
    assert_eq!(text.len(), 16, "{key}= is not 16 hex digits: {line:?}");
    u64::from_str_radix(text, 16).unwrap_or_else(|_| panic!("{key}= is not hex: {line:?}"))
}

/// The lines of `text` that start with `prefix`.
fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The one line of `out`'s stdout starting with `prefix`.
#[track_caller]
fn one_line<'a>(out: &'a Output, prefix: &str) -> &'a str {
    let lines = lines_starting(&out.stdout, prefix);
    assert_eq!(lines.len(), 1, "want one {prefix:?} line\n{out}");
    lines[0]
}

/// Asserts that `out` is a run that wrote a snapshot to `file` because the guest suspended (or
/// the host asked): status 0, the one stderr line, the file in place, and no temporary file left
/// beside it.
#[track_caller]
fn assert_suspended_to(out: &Output, file: &Path) {
    out.assert_status(0).assert_no_panic();
    let lines = out.stderr_lines();
    let want = format!(
        "parapet: guest suspended; snapshot written to {} (",
        file.display()
    );
    assert!(
        lines.len() == 1 && lines[0].starts_with(&want) && lines[0].ends_with(')'),
        "want one stderr line {want:?}…\n{out}"
    );
    assert!(file.is_file(), "no snapshot at {}\n{out}", file.display());
    assert_eq!(
        other_files(file.parent().unwrap(), file),
        Vec::<String>::new(),
        "files left beside the snapshot\n{out}"
    );
}

/// The names in `dir` other than `except`'s and those the test made (`*.img`, `*.snap`).
fn other_files(dir: &Path, except: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the temp dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            let ours = path == except || name.ends_with(".snap") || name.ends_with(".img");
            (!ours).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// The checksum of the one `ready` line; nothing after the suspend may have run.
#[track_caller]
fn ready_checksum(out: &Output) -> u64 {
    let ready = one_line(out, "snapshot-guest: ready ");
    assert!(
        !out.stdout.contains("resumed") && !out.stdout.contains("no snapshots"),
        "the suspend returned in the process that took the snapshot\n{out}"
    );
    hex_field(ready, "checksum")
}

#[test]
fn a_suspended_guest_restores_twice_from_one_file() {
    let dir = TempDir::new("snap-twice");
    let snap = dir.join("guest.snap");
    let snap_s = snap.to_str().unwrap();
    let run_started = Instant::now();
    let saved = run_guest(
        "snapshot",
        &["--snapshot", snap_s, "--cmdline", "init-mib=8 sleep-ms=300"],
    );
    let saved_at = Instant::now();
    assert_suspended_to(&saved, &snap);
    let ready = ready_checksum(&saved);
    let file_before = std::fs::read(&snap).expect("read the snapshot");

    std::thread::sleep(Duration::from_millis(500));
    let mut seen = Vec::new();
    for restore in 1..=2 {
        let started = Instant::now();
        let out = parapet(["restore", snap_s]);
        let ended = Instant::now();
        out.assert_status(0).assert_no_panic();
        assert!(out.stderr_lines().is_empty(), "restore {restore}\n{out}");
        let resumed = one_line(&out, "snapshot-guest: resumed ");
        assert!(
            !out.stdout.contains("ready"),
            "restore {restore} ran the guest from its start\n{out}"
        );
        assert_eq!(
            hex_field(resumed, "checksum"),
            ready,
            "restore {restore}: the guest's memory changed\n{out}"
        );
        assert_eq!(field(resumed, "resumes"), "1", "restore {restore}\n{out}");
        let generation = hex_field(resumed, "generation");
        assert_ne!(generation, 0, "restore {restore}\n{out}");
        // The guest's clock carries on across the restore: from just before its suspend (in the
        // saving process, so before `saved_at`) to just after it returned (in this process, so
        // after `started`) at least the real time between those passed; and no more than the
        // whole span of both processes. `elapsed_ms` is rounded down: 2 ms of slack below.
        let elapsed: u128 = field(resumed, "elapsed_ms").parse().expect("elapsed_ms");
        let at_least = (started - saved_at).as_millis();
        let at_most = (ended - run_started).as_millis();
        assert!(
            elapsed + 2 >= at_least && elapsed <= at_most,
            "restore {restore}: elapsed_ms={elapsed}, but {at_least} ms passed between the \
             snapshot and the restore (and {at_most} ms in all)\n{out}"
        );
        // The timer armed before the suspend fires after the restore.
        let after_resumed = out.stdout.split_once(resumed).unwrap().1;
        assert!(
            after_resumed.contains("snapshot-guest: slept\n"),
            "restore {restore}: the timer armed before the snapshot never fired\n{out}"
        );
        seen.push((generation, elapsed));
    }
    let [(gen1, elapsed1), (gen2, elapsed2)] = seen[..] else {
        unreachable!()
    };
    assert_ne!(gen1, gen2, "two restores got the same generation");
    assert!(
        elapsed2 > elapsed1,
        "the second restore ran later, yet its guest saw {elapsed2} ms against {elapsed1} ms"
    );
    // Restores map the file copy-on-write: the guest's writes never reach it.
    assert!(
        std::fs::read(&snap).expect("read the snapshot") == file_before,
        "a restore changed the snapshot file"
    );
}

#[test]
fn without_a_snapshot_file_suspend_is_refused() {
    let out = run_guest("snapshot", &["--cmdline", "init-mib=1"]);
    out.assert_status(3).assert_no_panic();
    out.assert_stdout_contains("snapshot-guest: no snapshots\n");
    assert!(out.stderr_lines().is_empty(), "{out}");
}

#[test]
fn a_guest_that_never_suspends_leaves_no_file() {
    let dir = TempDir::new("snap-none");
    let snap = dir.join("never.snap");
    let out = run_guest("hello", &["--snapshot", snap.to_str().unwrap()]);
    out.assert_status(0).assert_no_panic();
    assert!(!snap.exists(), "a snapshot appeared\n{out}");
    let left: Vec<_> = std::fs::read_dir(&*dir).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}\n{out}");
}

#[test]
fn warm_reset_serves_1000_invocations_without_leaks() {
    const N: usize = 1000;
    let dir = TempDir::new("snap-warm");
    let snap = dir.join("serve.snap");
    let snap_s = snap.to_str().unwrap();
    let saved = run_guest(
        "snapshot",
        &["--snapshot", snap_s, "--cmdline", "mode=serve init-mib=4"],
    );
    assert_suspended_to(&saved, &snap);
    let ready = ready_checksum(&saved);

    let input: String = (0..N).map(|i| format!("req-{i}\n")).collect();
    let started = Instant::now();
    // Each invocation re-reads the guest's 4 MiB after the reset (page faults on a fresh
    // mapping): tens of milliseconds each in a debug build, so a generous limit.
    let out = parapet_with_input(
        ["restore", snap_s, "--warm", "--stats=json"],
        input.as_bytes(),
        Duration::from_secs(400),
    );
    eprintln!("{N} warm invocations took {:?}", started.elapsed());
    out.assert_status(0).assert_no_panic();
    let resumed = lines_starting(&out.stdout, "snapshot-guest: resumed ");
    let replies = lines_starting(&out.stdout, "snapshot-guest: reply ");
    assert_eq!(replies.len(), N, "replies\n{out}");
    assert_eq!(resumed.len(), N, "one restore per invocation\n{out}");
    let mut generations = HashSet::new();
    for (i, (reply, resumed)) in replies.iter().zip(&resumed).enumerate() {
        let want = format!("snapshot-guest: reply req-{i} generation=");
        assert!(
            reply.starts_with(&want),
            "reply {i} is {reply:?}, want {want:?}…"
        );
        assert_eq!(
            field(reply, "leak"),
            "no",
            "invocation {i} saw another's writes"
        );
        let generation = hex_field(reply, "generation");
        assert_ne!(generation, 0, "invocation {i}: {reply}");
        assert_eq!(
            hex_field(resumed, "generation"),
            generation,
            "invocation {i}: start-info's generation is not the one suspend returned"
        );
        // Memory and statics as in the snapshot: each invocation's suspend returns for the
        // first time in its memory.
        assert_eq!(hex_field(resumed, "checksum"), ready, "invocation {i}");
        assert_eq!(field(resumed, "resumes"), "1", "invocation {i}: {resumed}");
        generations.insert(generation);
    }
    assert_eq!(generations.len(), N, "generations repeat");
    // Lines alternate: each invocation's `resumed` comes just before its `reply`.
    let sequence: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("snapshot-guest: re"))
        .map(|l| if l.contains("resumed") { "r" } else { "q" })
        .collect();
    assert!(
        sequence.chunks(2).all(|c| c == ["r", "q"]),
        "invocations' output interleaves\n{out}"
    );
    assert!(
        !out.stdout.contains("end of input"),
        "a guest saw the end of input\n{out}"
    );
    let stats = out.stats();
    assert_eq!(
        stat(&stats, "warm.invocations"),
        Some(N as u64),
        "warm.invocations\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files the VMM must refuse.

/// Offsets in the header (hypervisor/src/snapshot/format.rs): magic [0..16], format version
/// [16..20], host kind [20..24], VMM version [24..40], memory size [40..48], memory offset
/// [48..56], table offset [56..60], section count [60..64], then the CRC-32 of those 64 bytes.
const FORMAT_VERSION_AT: usize = 16;
const HOST_AT: usize = 20;
const VMM_VERSION_AT: usize = 24;
const MEMORY_SIZE_AT: usize = 40;
const MEMORY_OFFSET_AT: usize = 48;
const TABLE_AT: usize = 56;
const NR_SECTIONS_AT: usize = 60;
const HEADER_CRC_AT: usize = 64;
/// A section table entry: kind u32 (1 vCPU, 2 domain), CRC-32 u32, offset u64, length u64,
/// reserved u64.
const ENTRY_LEN: usize = 32;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// CRC-32 (IEEE, reflected, as zlib computes it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the header's CRC, so that a changed field is checked for what it says.
fn reseal(b: &mut [u8]) {
    let crc = crc32(&b[..HEADER_CRC_AT]);
    b[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The (offset, length) of the section of `kind`.
fn section(b: &[u8], kind: u32) -> (usize, usize) {
    let table = u32_at(b, TABLE_AT) as usize;
    (0..u32_at(b, NR_SECTIONS_AT) as usize)
        .map(|i| table + i * ENTRY_LEN)
        .find(|&e| u32_at(b, e) == kind)
        .map(|e| (u64_at(b, e + 8) as usize, u64_at(b, e + 16) as usize))
        .unwrap_or_else(|| panic!("no section of kind {kind}"))
}

/// Asserts a refused restore: status 1, one line `parapet: error: snapshot FILE: …` naming one
/// of `any_of`, no panic.
#[track_caller]
fn assert_refused(out: &Output, file: &Path, any_of: &[&str]) {
    out.assert_one_line_error(any_of);
    let want = format!("parapet: error: snapshot {}: ", file.display());
    assert!(
        out.stderr.starts_with(&want),
        "the error does not name the file as {want:?}\n{out}"
    );
    assert!(out.stdout.is_empty(), "the guest ran\n{out}");
}

#[test]
fn corrupted_and_mismatched_snapshots_are_refused() {
    let dir = TempDir::new("snap-bad");
    let snap = dir.join("good.snap");
    let snap_s = snap.to_str().unwrap();
    // A small guest, so that each broken copy is cheap.
    let saved = run_guest("snapshot", &["--memory", "4M", "--snapshot", snap_s]);
    assert_suspended_to(&saved, &snap);
    let good = std::fs::read(&snap).unwrap();
    let memory_offset = u64_at(&good, MEMORY_OFFSET_AT) as usize;
    assert_eq!(memory_offset % 4096, 0, "memory is not page-aligned");
    assert_eq!(good.len(), memory_offset + (4 << 20), "file length");
    let (vcpu_at, vcpu_len) = section(&good, 1);
    let (domain_at, domain_len) = section(&good, 2);
    assert!(vcpu_len > 0 && domain_len > 0 && domain_at + domain_len <= memory_offset);

    type Breaker = Box<dyn Fn(&mut Vec<u8>)>;
    let flip = |at: usize| -> Breaker { Box::new(move |b: &mut Vec<u8>| b[at] ^= 0x5a) };
    let cases: Vec<(&str, Breaker, &[&str])> = vec![
        ("magic", flip(3), &["not a Parapet snapshot"]),
        // Byte 20 (the host kind's), the header checksum unchanged.
        ("header", flip(20), &["corrupted", "header"]),
        ("header-crc", flip(HEADER_CRC_AT + 1), &["corrupted"]),
        // The first table entry's kind: the table has no checksum, its fields are checked.
        ("table", flip(70), &["malformed", "section"]),
        ("vcpu", flip(vcpu_at + vcpu_len / 2), &["corrupted", "vcpu"]),
        (
            "domain",
            flip(domain_at + domain_len / 2),
            &["corrupted", "domain"],
        ),
        (
            "format-version",
            Box::new(|b: &mut Vec<u8>| {
                b[FORMAT_VERSION_AT..FORMAT_VERSION_AT + 4].copy_from_slice(&2u32.to_le_bytes());
                reseal(b);
            }),
            &["format version 2"],
        ),
        (
            "vmm-version",
            Box::new(|b: &mut Vec<u8>| {
                b[VMM_VERSION_AT..VMM_VERSION_AT + 16].copy_from_slice(b"0.0.0-elsewhere\0");
                reseal(b);
            }),
            &["taken by parapet 0.0.0-elsewhere"],
        ),
        (
            "other-host",
            Box::new(|b: &mut Vec<u8>| {
                // kvm_pvm (1) and VT-x/AMD-V KVM (2): the other one.
                let other = 3 - u32_at(b, HOST_AT);
                b[HOST_AT..HOST_AT + 4].copy_from_slice(&other.to_le_bytes());
                reseal(b);
            }),
            &["taken on"],
        ),
        (
            "memory-size",
            Box::new(|b: &mut Vec<u8>| {
                b[MEMORY_SIZE_AT..MEMORY_SIZE_AT + 8].copy_from_slice(&(8u64 << 20).to_le_bytes());
                reseal(b);
            }),
            &["truncated"],
        ),
        (
            "truncated-memory",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 4096)),
            &["truncated"],
        ),
        (
            "truncated-sections",
            Box::new(move |b: &mut Vec<u8>| b.truncate(domain_at + 1)),
            &["truncated"],
        ),
        (
            "truncated-header",
            Box::new(|b: &mut Vec<u8>| b.truncate(40)),
            &["truncated"],
        ),
        (
            "empty",
            Box::new(|b: &mut Vec<u8>| b.clear()),
            &["truncated"],
        ),
        (
            "elf",
            Box::new(|b: &mut Vec<u8>| *b = std::fs::read(guest("snapshot")).unwrap()),
            &["not a Parapet snapshot"],
        ),
    ];
    for (name, breaker, words) in &cases {
        let mut bytes = good.clone();
        breaker(&mut bytes);
        assert_ne!(bytes, good, "case {name} changed nothing");
        let path = dir.file(&format!("{name}.snap"), &bytes);
        let out = parapet([OsStr::new("restore"), path.as_os_str()]);
        assert_refused(&out, &path, words);
    }

    // Not files at all.
    let fifo = dir.join("fifo.snap");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let missing = dir.join("missing.snap");
    for (path, words) in [
        (&*dir, &["not a regular file"][..]),
        (fifo.as_path(), &["not a regular file"]),
        (Path::new("/dev/null"), &["not a regular file"]),
        (missing.as_path(), &["no such file"]),
    ] {
        // A FIFO must be refused, not waited on: a hang ends in the harness's kill, which
        // assert_refused rejects (it wants exit status 1).
        let out = parapet([OsStr::new("restore"), path.as_os_str()]);
        assert_refused(&out, path, words);
    }

    // Devices the guest does not have.
    let disk = dir.file("disk.img", &[0u8; 4096]);
    let out = parapet(["restore", snap_s, "--disk", disk.to_str().unwrap()]);
    assert_refused(&out, &snap, &["0 block devices"]);
    let out = parapet(["restore", snap_s, "--net", "tap=pp-none0"]);
    assert_refused(&out, &snap, &["0 network interfaces"]);

    // Refused for what was broken, not by accident: the original restores, and the refusals
    // left it as it was.
    assert!(
        std::fs::read(&snap).unwrap() == good,
        "the snapshot changed"
    );
    let out = parapet(["restore", snap_s]);
    out.assert_status(0).assert_no_panic();
    one_line(&out, "snapshot-guest: resumed ");
}

/// A disk image of `len` bytes whose first bytes are `text`.
fn disk_image(dir: &TempDir, name: &str, text: &str, len: usize) -> PathBuf {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(len, 0);
    dir.file(name, &bytes)
}

#[test]
fn restored_disks_must_be_read_only_and_alike() {
    let dir = TempDir::new("snap-disks");
    let disk = disk_image(&dir, "saved.img", "saved", 1 << 20);
    let disk_s = disk.to_str().unwrap();
    let ro = format!("{disk_s},readonly");
    // Snapshots of the same guest with a writable and with a read-only disk.
    let writable = dir.join("writable.snap");
    let saved = run_guest(
        "snapshot",
        &["--memory", "4M", "--disk", disk_s, "--snapshot"]
            .into_iter()
            .chain([writable.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_suspended_to(&saved, &writable);
    let read_only = dir.join("read-only.snap");
    let saved = run_guest(
        "snapshot",
        &["--memory", "4M", "--disk", &ro, "--snapshot"]
            .into_iter()
            .chain([read_only.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_suspended_to(&saved, &read_only);
    let restore = |snap: &Path, extra: &[&str]| {
        let mut cmd = Command::new(vmm());
        cmd.arg("restore").arg(snap).args(extra);
        parapet_tests::run(cmd)
    };

    // A writable disk moved on since the snapshot: refused however it is given.
    for extra in [&[][..], &["--disk", &ro]] {
        let out = restore(&writable, extra);
        assert_refused(&out, &writable, &["writable disk"]);
    }
    // The saved read-only disk, by default or named; or another read-only image of its size.
    let twin = disk_image(&dir, "twin.img", "twin", 1 << 20);
    let twin_ro = format!("{},readonly", twin.display());
    for extra in [&[][..], &["--disk", &ro], &["--disk", &twin_ro]] {
        let out = restore(&read_only, extra);
        out.assert_status(0).assert_no_panic();
        one_line(&out, "snapshot-guest: resumed ");
    }
    // Not the device the guest had: another size, or writable.
    let bigger = disk_image(&dir, "bigger.img", "bigger", 2 << 20);
    let bigger_ro = format!("{},readonly", bigger.display());
    for extra in [["--disk", &bigger_ro], ["--disk", twin.to_str().unwrap()]] {
        let out = restore(&read_only, &extra);
        assert_refused(&out, &read_only, &["is not the device the guest had"]);
    }
    // The saved image gone: one line naming it.
    std::fs::remove_file(&disk).unwrap();
    let out = restore(&read_only, &[]);
    out.assert_one_line_error(&["does not exist", "no such file"]);
    assert!(
        out.stderr.contains(disk_s),
        "the error names another disk\n{out}"
    );
}

/// VMM bug: a snapshot records a disk's path as given (`--disk rel.img`), so a restore in
/// another working directory opens whatever file that relative path names there: none here (a
/// refusal), or a same-sized stranger, which passes every check and becomes the guest's disk.
#[test]
fn a_disk_given_by_a_relative_path_is_found_from_another_directory() {
    let dir = TempDir::new("snap-relative");
    let elsewhere = TempDir::new("snap-relative-cwd");
    disk_image(&dir, "disk.img", "the saved disk", 1 << 20);
    let snap = dir.join("relative.snap");
    let mut cmd = Command::new(vmm());
    cmd.current_dir(&*dir)
        .arg("run")
        .arg(guest("snapshot"))
        .args([
            "--memory",
            "4M",
            "--disk",
            "disk.img,readonly",
            "--snapshot",
        ])
        .arg(&snap);
    let saved = parapet_tests::run(cmd);
    assert_suspended_to(&saved, &snap);
    let mut cmd = Command::new(vmm());
    cmd.current_dir(&*elsewhere).arg("restore").arg(&snap);
    let out = parapet_tests::run(cmd);
    out.assert_status(0).assert_no_panic();
    one_line(&out, "snapshot-guest: resumed ");
}

// ---------------------------------------------------------------------------------------------
// Hostile suspends.

/// Check names (`ok NAME: …` up to the colon) of a hostile run, sorted.
fn ok_checks(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = lines_starting(stdout, "ok ")
        .iter()
        .map(|l| l.split_once(':').map_or(*l, |(n, _)| n).to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_suspends_leave_the_vmm_standing() {
    const CASES: &str = "suspend-in-flight suspend-bad-ring suspend-storm";
    let hostile = guest("hostile");
    let dir = TempDir::new("snap-hostile");
    let timeout = ["--timeout", "60"];

    // (a) Without --snapshot: every suspend returns NotAvailable and the guest goes on.
    let plain = run_kernel(
        &hostile,
        ["--loopback", "--cmdline", CASES].iter().chain(&timeout),
    );
    plain.assert_status(0).assert_no_panic();
    assert!(!plain.stdout.contains("FAIL"), "{plain}");
    plain.assert_stdout_contains("10000 not available, 0 refused");
    let summary = one_line(&plain, "hostile: ").to_string();
    assert!(summary.ends_with(" ok, 0 failed"), "{plain}");
    let checks = ok_checks(&plain.stdout);
    assert!(checks.len() >= 9, "too few checks ran\n{plain}");

    // (b) With --snapshot each suspend ends its process. A chain of restores, each with a
    // further --snapshot, carries the guest through all three cases: restore 1 continues
    // suspend-in-flight from its suspend and stops at suspend-bad-ring's, restore 2 continues
    // that and stops at the storm's first suspend, restore 3 (without --snapshot) finishes the
    // storm, whose remaining suspends return NotAvailable. The guest's report lives in its
    // memory, so the last summary covers every check.
    let files: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("h{i}.snap"))).collect();
    let first = run_kernel(
        &hostile,
        [
            "--loopback",
            "--cmdline",
            CASES,
            "--snapshot",
            files[0].to_str().unwrap(),
        ]
        .iter()
        .chain(&timeout),
    );
    assert_suspended_to(&first, &files[0]);
    assert!(
        !first.stdout.contains("ok ") && !first.stdout.contains("FAIL"),
        "checks ran before the first suspend returned\n{first}"
    );
    let mut stdout = first.stdout.clone();
    let steps: [(&Path, Option<&Path>, &str); 3] = [
        (
            &files[0],
            Some(&files[1]),
            "ok suspend-in-flight suspend returned: Ok(Restored",
        ),
        (
            &files[1],
            Some(&files[2]),
            "ok suspend-bad-ring suspend returned: Ok(Restored",
        ),
        (
            &files[2],
            None,
            "10000 suspends: 1 restored, 0 cancelled, 9999 not available, 0 refused",
        ),
    ];
    let mut last = None;
    for (from, to, expect) in steps {
        let mut args = vec!["restore", from.to_str().unwrap(), "--timeout", "60"];
        if let Some(to) = to {
            args.extend(["--snapshot", to.to_str().unwrap()]);
        }
        let out = parapet(&args);
        match to {
            Some(to) => assert_suspended_to(&out, to),
            None => {
                out.assert_status(0).assert_no_panic();
                assert!(out.stderr_lines().is_empty(), "{out}");
            }
        }
        out.assert_stdout_contains(expect);
        assert!(!out.stdout.contains("FAIL"), "{out}");
        stdout.push_str(&out.stdout);
        last = Some(out);
    }
    let last = last.unwrap();
    assert!(
        stdout.contains("ok suspend-in-flight responses: all 48 arrived"),
        "requests in flight at the snapshot were lost\n{stdout}"
    );
    // The same checks passed as without snapshots, and the same summary.
    assert_eq!(ok_checks(&stdout), checks, "{stdout}");
    assert_eq!(one_line(&last, "hostile: "), summary, "{stdout}");

    // (c) Under a warm-reset VMM, from the first snapshot (the loopback device connected, 48
    // requests in flight): each invocation gets every response, disconnects, and ends at
    // suspend-bad-ring's suspend.
    const WARM: usize = 20;
    let input: String = (0..WARM).map(|i| format!("{i}\n")).collect();
    let warm = parapet_with_input(
        [
            "restore",
            files[0].to_str().unwrap(),
            "--warm",
            "--stats=json",
            "--timeout",
            "60",
        ],
        input.as_bytes(),
        Duration::from_secs(90),
    );
    warm.assert_status(0).assert_no_panic();
    assert!(!warm.stdout.contains("FAIL"), "{warm}");
    assert_eq!(
        stat(&warm.stats(), "warm.invocations"),
        Some(WARM as u64),
        "{warm}"
    );
    let restored = lines_starting(
        &warm.stdout,
        "ok suspend-in-flight suspend returned: Ok(Restored { generation: ",
    );
    assert_eq!(restored.len(), WARM, "{warm}");
    assert_eq!(
        restored.iter().collect::<HashSet<_>>().len(),
        WARM,
        "generations repeat\n{warm}"
    );
    for line in [
        "ok suspend-in-flight responses: all 48 arrived",
        "ok suspend-in-flight the data page's grant is revocable: Ok(())",
        "ok suspend-bad-ring device works: Some((0, 11))",
    ] {
        assert_eq!(
            lines_starting(&warm.stdout, line).len(),
            WARM,
            "{line:?}\n{warm}"
        );
    }

    // (d) The snapshot guest's storm under a warm-reset VMM: each invocation starts at the
    // storm's first suspend, which returns Restored, and ends at its second.
    let storm = dir.join("storm.snap");
    let saved = run_guest(
        "snapshot",
        &[
            "--snapshot",
            storm.to_str().unwrap(),
            "--cmdline",
            "mode=storm count=10000",
        ],
    );
    assert_suspended_to(&saved, &storm);
    saved.assert_stdout_contains("snapshot-guest: storm count=10000\n");
    let warm = parapet_with_input(
        [
            "restore",
            storm.to_str().unwrap(),
            "--warm",
            "--stats=json",
            "--timeout",
            "60",
        ],
        b"one\ntwo\nthree\nfour\nfive\n",
        Duration::from_secs(90),
    );
    warm.assert_status(0).assert_no_panic();
    assert_eq!(
        stat(&warm.stats(), "warm.invocations"),
        Some(5),
        "warm.invocations\n{warm}"
    );
    assert!(
        !warm.stdout.contains("storm results"),
        "a suspend under a warm-reset VMM did not end the invocation\n{warm}"
    );
    // A plain restore runs the storm to its end: the first suspend restored, the others
    // refused for want of --snapshot.
    let cold = parapet(["restore", storm.to_str().unwrap(), "--timeout", "60"]);
    cold.assert_status(0).assert_no_panic();
    cold.assert_stdout_contains(
        "snapshot-guest: storm results restored=1 cancelled=0 not-available=9999 refused=0\n",
    );
    cold.assert_stdout_contains("snapshot-guest: storm done\n");
}

// ---------------------------------------------------------------------------------------------
// Host-initiated snapshots.

/// A VMM running in the background, its stdout read line by line; killed on drop.
struct Background {
    child: Child,
    lines: Receiver<String>,
    stdout: String,
    stderr: Option<JoinHandle<String>>,
}

impl Background {
    fn start(mut cmd: Command) -> Background {
        let mut child = cmd
            .env_remove("PARAPET_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Background {
            child,
            lines,
            stdout: String::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits (at most `limit`) for a stdout line starting with `prefix`, and returns it.
    fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line {prefix:?} within {limit:?}; stdout:\n{}",
                        self.stdout
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let out = self.finish(Duration::from_secs(5));
                    panic!("the VMM ended before printing {prefix:?}\n{out}")
                }
            }
        }
    }

    /// Waits (at most `limit`, then kills it) for the VMM to end; returns what it printed.
    fn finish(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let mut killed = false;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                killed = true;
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        Output {
            command: format!("{:?}", self.child),
            status: status.code(),
            stdout: self.stdout.clone(),
            stderr,
            killed,
            limit,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (number, guest ms) of each `tick N at MS ms` line.
fn ticks(stdout: &str) -> Vec<(u64, u64)> {
    lines_starting(stdout, "tick ")
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split_ascii_whitespace().collect();
            assert!(w.len() == 5 && w[2] == "at" && w[4] == "ms", "{l:?}");
            (w[1].parse().unwrap(), w[3].parse().unwrap())
        })
        .collect()
}

#[test]
fn a_running_guest_is_snapshotted_on_sigusr1() {
    const PAUSE_MS: u64 = 3000;
    let dir = TempDir::new("snap-usr1");
    let snap = dir.join("ticker.snap");
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg(guest("ticker"))
        .args(["--snapshot", snap.to_str().unwrap(), "--timeout", "60"])
        .args(["--cmdline", &format!("ticks=3 pause_ms={PAUSE_MS}")]);
    let mut ticker = Background::start(cmd);
    // The first tick comes once the guest runs (and the VMM handles SIGUSR1); the guest then
    // sleeps, blocked, for 3 s: the snapshot must not wait for it to wake, so the saving
    // process prints tick 1 only.
    ticker.wait_for_line("tick 1 ", Duration::from_secs(30));
    let pid = rustix::process::Pid::from_child(&ticker.child);
    rustix::process::kill_process(pid, rustix::process::Signal::USR1).expect("send SIGUSR1");
    let saved = ticker.finish(Duration::from_secs(30));
    assert_suspended_to(&saved, &snap);
    let before = ticks(&saved.stdout);
    assert_eq!(
        before.iter().map(|t| t.0).collect::<Vec<_>>(),
        [1],
        "the snapshot waited for the blocked guest to wake\n{saved}"
    );

    std::thread::sleep(Duration::from_millis(200));
    let restored = parapet(["restore", snap.to_str().unwrap(), "--timeout", "60"]);
    restored.assert_status(0).assert_no_panic();
    assert!(restored.stderr_lines().is_empty(), "{restored}");
    let after = ticks(&restored.stdout);
    assert!(
        !after.is_empty(),
        "the restored guest printed no tick\n{restored}"
    );
    // Every tick exactly once across the two processes, in order, the guest's clock never going
    // back; the sleep armed before the snapshot ends at its deadline, not earlier.
    let all: Vec<(u64, u64)> = before.iter().chain(&after).copied().collect();
    assert_eq!(
        all.iter().map(|t| t.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "\n{saved}\n{restored}"
    );
    assert!(
        all.windows(2).all(|w| w[1].1 >= w[0].1 + PAUSE_MS),
        "ticks closer than {PAUSE_MS} ms apart\n{saved}\n{restored}"
    );
}

// ---------------------------------------------------------------------------------------------
// Console, disk and network across a restore (root only, like tests/net.rs).

const HOST_IP: &str = "10.79.0.1";
const GUEST_IP: &str = "10.79.0.2";

/// A network namespace, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        let name = format!("ppsnap{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed (the snapshot network test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = NetNs { name };
        ns.sh("ip link set lo up");
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell command in the namespace; returns whether it succeeded, and its stdout.
    fn try_sh(&self, script: &str) -> (bool, String) {
        let out = self
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("run sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[track_caller]
    fn sh(&self, script: &str) -> String {
        let out = self
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes TAP device `tap` with the host's address, up.
    fn add_tap(&self, tap: &str) {
        self.sh(&format!(
            "ip tuntap add dev {tap} mode tap && ip addr add {HOST_IP}/24 dev {tap} && \
             ip link set {tap} up"
        ));
    }

    /// Waits until the guest answers ping, or `vmm` ends.
    fn wait_for_guest(&self, vmm: &mut Background) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = vmm.child.try_wait() {
                let out = vmm.finish(Duration::from_secs(1));
                panic!("the guest stopped before answering ping\n{out}");
            }
            if self.try_sh(&format!("ping -c 1 -W 1 {GUEST_IP}")).0 {
                return;
            }
        }
        let out = vmm.finish(Duration::from_secs(1));
        panic!("the guest never answered ping\n{out}");
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_guest_with_console_disk_and_net_keeps_working_across_restore() {
    const NEW_MAC: &str = "02:5a:00:00:14:01";
    let dir = TempDir::new("snap-net");
    let ns = NetNs::new();
    ns.add_tap("tap0");
    let text = format!("parapet snapshot test disk {}", std::process::id());
    let mut sector = text.clone().into_bytes();
    sector.resize(1 << 20, 0);
    let disk = dir.file("disk.img", &sector);
    let snap = dir.join("net-http.snap");

    let mut cmd = ns.command(vmm().to_str().unwrap());
    cmd.arg("run")
        .arg(guest("net-http"))
        .args(["--net", "tap=tap0", "--timeout", "60"])
        .arg("--disk")
        .arg(format!("{},readonly", disk.display()))
        .arg("--snapshot")
        .arg(&snap)
        .args(["--cmdline", &format!("ip={GUEST_IP}/24 suspend")]);
    let mut saver = Background::start(cmd);
    let listening = saver.wait_for_line("net-http: listening ", Duration::from_secs(30));
    let saved = saver.finish(Duration::from_secs(30));
    assert_suspended_to(&saved, &snap);
    let old_mac = listening
        .rsplit_once("(mac ")
        .and_then(|(_, m)| m.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no mac in {listening:?}"));
    assert_ne!(old_mac, NEW_MAC);

    // The clone gets another TAP device (the first one is gone) and another MAC.
    ns.sh("ip link del tap0");
    ns.add_tap("tap1");
    let mut cmd = ns.command(vmm().to_str().unwrap());
    cmd.arg("restore").arg(&snap).args([
        "--net",
        &format!("tap=tap1,mac={NEW_MAC}"),
        "--timeout",
        "60",
    ]);
    let mut clone = Background::start(cmd);
    let resumed = clone.wait_for_line("net-http: resumed ", Duration::from_secs(30));
    assert!(
        resumed.ends_with(&format!(" (mac {NEW_MAC})")),
        "the clone kept its MAC: {resumed:?}"
    );
    assert_ne!(hex_field(&resumed, "generation"), 0, "{resumed}");
    ns.wait_for_guest(&mut clone);
    let (ok, ping) = ns.try_sh(&format!("ping -c 3 -i 0.2 -W 2 {GUEST_IP}"));
    assert!(ok, "ping: {ping}");
    // The host learnt the new MAC from the guest's own frames.
    let neigh = ns.sh(&format!("ip neigh show {GUEST_IP} dev tap1"));
    assert!(neigh.contains(NEW_MAC), "ip neigh: {neigh:?}");
    let curl = |path: &str| {
        ns.try_sh(&format!(
            "curl -s -w '\\n%{{http_code}}' --max-time 10 http://{GUEST_IP}{path}"
        ))
        .1
    };
    let index = curl("/");
    assert!(
        index.ends_with("\n200") && index.contains("Hello from Parapet"),
        "GET /: {index:?}"
    );
    let disk_page = curl("/disk");
    assert_eq!(disk_page, format!("{text}\n200"), "GET /disk");
    // The console carries on too: each request's line (printed once it is answered).
    clone.wait_for_line("net-http: GET / -> 200", Duration::from_secs(10));
    clone.wait_for_line("net-http: GET /disk -> 200", Duration::from_secs(10));
    let out = clone.finish(Duration::ZERO);
    assert!(!out.stdout.contains("listening"), "{out}");
    out.assert_no_panic();
}

/// A TAP device attached the way `parapet-runc` makes one (`IFF_TAP|IFF_NO_PI`, not persistent:
/// it goes when the descriptor closes), named after this process, in the test's own namespace
/// (no address, not up: the guest below never sends on it).
fn open_tap(name: &str) -> std::os::fd::OwnedFd {
    use rustix::fs::{Mode, OFlags};
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: i16,
        _pad: [u8; 22],
    }
    const TUNSETIFF: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<i32>(b'T', 202);
    let fd = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open /dev/net/tun (the network tests need root)");
    let mut req = IfReq {
        name: [0; 16],
        flags: 0x0002 | 0x1000, // IFF_TAP | IFF_NO_PI
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `IfReq` is in size and
    // layout (a 16-byte name, then the flags); the descriptor is ours.
    unsafe {
        rustix::ioctl::ioctl(
            &fd,
            rustix::ioctl::Updater::<TUNSETIFF, IfReq>::new(&mut req),
        )
    }
    .expect("TUNSETIFF");
    fd
}

#[test]
fn a_guest_on_an_inherited_tap_needs_net_again_to_restore() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("snap-fd");
    let snap = dir.join("net-http.snap");
    let tap_name = format!("pfd{}", std::process::id());
    let tap = open_tap(&tap_name);
    let raw = tap.as_raw_fd();
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg(guest("net-http"))
        .args(["--net", &format!("fd={raw}"), "--timeout", "60"])
        .arg("--snapshot")
        .arg(&snap)
        .args(["--cmdline", "ip=10.77.9.2/24 suspend"]);
    // SAFETY: the closure only clears the descriptor's close-on-exec flag (fcntl, which is
    // async-signal-safe), so the VMM inherits the TAP at the same number.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let saved = run(cmd);
    drop(tap);
    saved.assert_stdout_contains("net-http: listening on http://10.77.9.2:80/");
    assert_suspended_to(&saved, &snap);

    // The snapshot names the interface, but the descriptor is gone: --net is needed again.
    let out = parapet([OsStr::new("restore"), snap.as_os_str()]);
    out.assert_one_line_error(&[&format!(
        "inherited TAP descriptor (fd={raw} (TAP {tap_name}))"
    )]);
    out.assert_stderr_contains("give --net tap=NAME or --net fd=N");
}
