//! PV block devices end to end: a FAT32 image made and checked with the host's dosfstools and
//! mtools, flush durability under SIGKILL, and guests that send bad requests.

use parapet_tests::{TempDir, guest, run_guest, vmm};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a host tool, failing the test with its output if it fails.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install dosfstools and mtools): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A zero-filled image of `mib` MiB.
fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(mib << 20))
        .expect("create image");
    path
}

/// A 64 MiB FAT32 image holding `HELLO.TXT`.
fn fat_image(dir: &TempDir) -> PathBuf {
    let img = image(dir, "fat.img", 64);
    let img_s = img.to_str().unwrap();
    tool("mkfs.vfat", &["-F", "32", img_s]);
    let hello = dir.file("hello.txt", b"Hello, disk!\n");
    tool(
        "mcopy",
        &["-i", img_s, hello.to_str().unwrap(), "::HELLO.TXT"],
    );
    img
}

#[test]
fn blk_fat_reads_and_writes_a_host_made_fat32_image() {
    let dir = TempDir::new("blk-fat");
    let img = fat_image(&dir);
    let disk = img.to_str().unwrap();
    let out = run_guest(
        "blk-fat",
        &[
            "--disk",
            disk,
            "--cmdline",
            "cat=HELLO.TXT write=GUEST.TXT text=Written by a Parapet guest",
        ],
    );
    out.assert_status(0).assert_no_panic();
    for line in [
        "file HELLO.TXT 13\n",
        "files: 1\n",
        "cat HELLO.TXT 13\nHello, disk!\nend HELLO.TXT\n",
        "wrote GUEST.TXT 27\n",
        "verified GUEST.TXT\n",
        "flushed\n",
        "blk-fat: ok\n",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?}\n{out}");
    }
    // The host's own FAT tools see the guest's file.
    let i = format!("-i{disk}");
    assert_eq!(
        tool("mtype", &[&i, "::GUEST.TXT"]),
        "Written by a Parapet guest\n"
    );
    let listing = tool("mdir", &["-b", &i, "::"]);
    assert!(
        listing.contains("GUEST.TXT") && listing.contains("HELLO.TXT"),
        "{listing}"
    );
}

#[test]
fn a_missing_disk_image_is_a_one_line_error() {
    let out = run_guest("hello", &["--disk", "/nonexistent/parapet.img"]);
    out.assert_status(1).assert_no_panic();
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("parapet: error: disk /nonexistent/parapet.img")
            && lines[0].contains("does not exist"),
        "{out}"
    );
}

/// Block `i`'s 4096 bytes as blk-durability writes them.
fn block(i: u64) -> Vec<u8> {
    (0..512u64)
        .flat_map(|k| ((i << 32) | (k << 16) | 0xb10c).to_le_bytes())
        .collect()
}

/// A small, seedable generator for kill points (no dependency needed for this).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The environment variable that replays a durability run: the seed it prints.
const SEED_VAR: &str = "PARAPET_BLK_SEED";

/// The seed of the kill points: `$PARAPET_BLK_SEED`, or the clock's nanoseconds and the process
/// id (printed, so that a failure can be replayed).
fn durability_seed() -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?} is not an unsigned integer")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is past 1970");
            (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
        }
    };
    println!("blk durability seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}

#[test]
fn acknowledged_flushes_survive_sigkill() {
    let dir = TempDir::new("blk-durability");
    let seed = durability_seed();
    // xorshift never leaves 0.
    let mut state = seed | 1;
    let mut total_acked = 0;
    for cycle in 0..6 {
        let img = image(&dir, &format!("durable-{cycle}.img"), 32);
        // The kill point: right after the guest reports this many blocks durable (3 per flush,
        // up to 600 of the image's 8192), whatever the host's speed; the writes in flight then
        // are cut off wherever they are.
        let kill_after = 3 * (1 + next_random(&mut state) % 200);
        let mut child = Command::new(vmm())
            .arg("run")
            .arg(guest("blk-durability"))
            .args(["--disk", img.to_str().unwrap(), "--cmdline", "batch=3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start parapet");
        let (acks_tx, acks) = std::sync::mpsc::channel();
        let reader = {
            let stdout = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                let mut last = 0u64;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                        last = n;
                        let _ = acks_tx.send(n);
                    }
                }
                last
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let reached = loop {
            match acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(n) if n >= kill_after => break true,
                Ok(_) => {}
                // The guest ended (or went quiet for the whole safety limit) first.
                Err(_) => break false,
            }
        };
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap");
        let acked = reader.join().expect("reader");
        assert!(
            reached,
            "cycle {cycle} (seed {seed}): the guest never reported {kill_after} blocks durable \
             (last `acked {acked}`, {status})"
        );
        println!(
            "cycle {cycle}: killed after `acked {kill_after}`; the last line: `acked {acked}`"
        );
        total_acked += acked;
        let data = std::fs::read(&img).expect("read image");
        for i in 0..acked {
            let at = (i * 4096) as usize;
            assert!(
                data.get(at..at + 4096) == Some(&block(i)[..]),
                "cycle {cycle} (seed {seed}, killed after `acked {kill_after}`): block {i} of \
                 {acked} acknowledged blocks is not on disk"
            );
        }
    }
    assert!(
        total_acked > 0,
        "no flush was ever acknowledged: the test checked nothing"
    );
}

/// Writes of 31 blocks (124 KiB, indirect requests) and 1 MiB read-back (indirect, several in
/// flight) move exactly the right bytes, as the host sees them in the image.
#[test]
fn large_requests_go_indirect_and_move_exactly_their_data() {
    let dir = TempDir::new("blk-indirect");
    let img = image(&dir, "big.img", 8);
    let out = run_guest(
        "blk-durability",
        &[
            "--disk",
            img.to_str().unwrap(),
            "--cmdline",
            "count=1500 batch=31 mode=one-write verify",
        ],
    );
    out.assert_status(0).assert_no_panic();
    assert!(
        out.stdout.contains("requests up to 2048 sectors") && out.stdout.contains("verified 1500"),
        "{out}"
    );
    let data = std::fs::read(&img).expect("read image");
    for i in 0..1500u64 {
        let at = (i * 4096) as usize;
        assert!(
            data[at..at + 4096] == block(i)[..],
            "block {i} is not what the guest wrote"
        );
    }
    assert!(
        data[1500 * 4096..].iter().all(|&b| b == 0),
        "bytes past the last block were written"
    );
}

#[test]
fn bad_block_requests_fail_alone_and_the_vmm_survives() {
    let dir = TempDir::new("blk-hostile");
    let rw = image(&dir, "rw.img", 4);
    let ro = image(&dir, "ro.img", 4);
    let ro_arg = format!("{},readonly", ro.display());
    for case in ["blk-requests", "blk-grants", "blk-self-feed"] {
        let out = run_guest(
            "hostile",
            &[
                "--disk",
                rw.to_str().unwrap(),
                "--disk",
                &ro_arg,
                "--cmdline",
                case,
            ],
        );
        out.assert_status(0).assert_no_panic();
        assert!(out.stdout.contains(", 0 failed"), "case {case}\n{out}");
        assert!(
            out.stdout.contains("ok "),
            "case {case} checked nothing\n{out}"
        );
        if case == "blk-requests" {
            assert!(
                out.stdout
                    .contains("ok blk-requests indirect: a 12-page read")
                    && out
                        .stdout
                        .contains("ok blk-requests indirect: pages released"),
                "the indirect cases did not run\n{out}"
            );
        }
        if case == "blk-grants" {
            assert!(
                out.stdout.contains(
                    "ok blk-grants read into a writable grant of read-only data: status error"
                ) && out.stdout.contains("ok blk-grants kernel text unchanged"),
                "W^X through block reads was not checked\n{out}"
            );
        }
        if case == "blk-self-feed" {
            assert!(
                out.stdout
                    .contains("ok blk-self-feed: a read into the live ring page: status error"),
                "the self-feeding ring was not refused\n{out}"
            );
        }
    }
    assert!(
        std::fs::read(&ro).unwrap().iter().all(|&b| b == 0),
        "the read-only image was modified"
    );
    let out = run_guest(
        "hostile",
        &[
            "--disk",
            rw.to_str().unwrap(),
            "--cmdline",
            "blk-ring-overflow",
        ],
    );
    out.assert_status(102).assert_no_panic();
    assert!(
        out.stderr.contains("parapet: guest fault: block device")
            && out.stderr.contains("req_prod claims"),
        "{out}"
    );
}
