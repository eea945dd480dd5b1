//! What the hardware-KVM lane runs: each test guest with the arguments and input the integration
//! tests give it, and what a pass looks like. The lane runs every case under every transport.
//! The gdb cases also run the host's gdb against the guest, over a serial line; the snapshot
//! cases also restore the snapshot their run wrote, in new `parapet restore` processes.

/// A disk image a case needs, copied fresh for each run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// A FAT32 image holding `HELLO.TXT` ("Hello, disk!\n"), made with mkfs.vfat and mcopy.
    Fat,
    /// 4 MiB of zeros.
    Zeros,
    /// 4 MiB of zeros, attached read-only.
    ZerosReadonly,
}

impl Image {
    /// The file name inside the initramfs's `/img`.
    pub fn file(self) -> &'static str {
        match self {
            Image::Fat => "fat.img",
            Image::Zeros | Image::ZerosReadonly => "zeros.img",
        }
    }

    /// The `--disk` value, given the path of the run's copy.
    pub fn disk_arg(self, path: &str) -> String {
        match self {
            Image::ZerosReadonly => format!("{path},readonly"),
            _ => path.to_owned(),
        }
    }
}

/// One guest run and what it must show.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// A short, unique name for the table.
    pub name: &'static str,
    /// The guest (a directory under examples/, tests/guests/ or bench/guests/).
    pub guest: &'static str,
    /// Extra `parapet run` arguments.
    pub args: &'static [&'static str],
    /// The guest's command line, if any.
    pub cmdline: Option<&'static str>,
    /// Disks, in order.
    pub disks: &'static [Image],
    /// Standard input; `None` is /dev/null.
    pub stdin: Option<&'static str>,
    /// The exit status.
    pub status: i32,
    /// Strings standard output must contain. `{transport}` stands for the transport's name as
    /// the guest reports it.
    pub stdout: &'static [&'static str],
    /// Strings standard output must not contain.
    pub stdout_not: &'static [&'static str],
    /// Strings standard error must contain.
    pub stderr: &'static [&'static str],
    /// A shell script run inside the lane's VM once the guest answers ping on the TAP device
    /// [`TAP`] (the guest runs with `--net tap=TAP` and should take [`GUEST_IP`]); `None`: the
    /// guest has no network.
    pub client: Option<&'static str>,
    /// Strings the client's output (or gdb's, with [`Case::gdb`]) must contain.
    pub client_out: &'static [&'static str],
    /// gdb commands: if any, the guest runs with `--gdb` [`GDB_LINE`] and, once it waits for
    /// gdb, the host runs `gdb -batch` on the guest's ELF with these commands after connecting
    /// to the other end of that serial line; its output is the client's output.
    pub gdb: &'static [&'static str],
    /// `parapet restore`s of the run's snapshot, in order, after the run: if any, the guest runs
    /// with `--snapshot` [`SNAPSHOT`].
    pub restores: &'static [Restore],
    /// A check across the outputs of the run and its restores, in that order (some may be
    /// missing if the VM stopped early): what is wrong, if anything.
    pub across: Option<Across>,
    /// Whether the [`EXTRA_TRANSPORTS`] run the case too.
    pub extra_transports: bool,
}

/// A check across the outputs of a case's processes (see [`Case::across`]).
pub type Across = fn(&[Output]) -> Vec<String>;

/// A `parapet restore` in a snapshot case, and what it must show.
#[derive(Clone, Copy, Debug)]
pub struct Restore {
    /// Restore [`CORRUPTED`] instead of [`SNAPSHOT`].
    pub corrupted: bool,
    /// `--warm`: one invocation per line of standard input.
    pub warm: bool,
    /// Standard input; `None` is /dev/null.
    pub stdin: Option<&'static str>,
    /// The exit status.
    pub status: i32,
    /// Strings standard output must contain.
    pub stdout: &'static [&'static str],
    /// Strings standard output must not contain.
    pub stdout_not: &'static [&'static str],
    /// Strings standard error must contain.
    pub stderr: &'static [&'static str],
}

/// What one `parapet` process of a case printed, and its exit status (`None`: never reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The serial line the gdb cases serve gdb on: the VM's second UART, whose other end is a TCP
/// port on the host's loopback.
pub const GDB_LINE: &str = "/dev/ttyS1";

/// The TAP device of the network cases, with the host side's address 10.77.0.1/24.
pub const TAP: &str = "tap0";
/// The guests' address in the network cases.
pub const GUEST_IP: &str = "10.77.0.2";

/// Where the snapshot cases' runs write their snapshot, inside the lane's VM.
pub const SNAPSHOT: &str = "/tmp/snapshot";
/// A copy of [`SNAPSHOT`] with the byte at [`CORRUPTED_BYTE`] flipped (all its bits).
pub const CORRUPTED: &str = "/tmp/snapshot-corrupted";
/// The byte [`CORRUPTED`] differs in: the header's host kind, which its CRC-32 covers.
pub const CORRUPTED_BYTE: u32 = 20;

const fn case(name: &'static str, guest: &'static str, status: i32) -> Case {
    Case {
        name,
        guest,
        args: &[],
        cmdline: None,
        disks: &[],
        stdin: None,
        status,
        stdout: &[],
        stdout_not: &[],
        stderr: &[],
        client: None,
        client_out: &[],
        gdb: &[],
        restores: &[],
        across: None,
        extra_transports: false,
    }
}

const fn restore(status: i32) -> Restore {
    Restore {
        corrupted: false,
        warm: false,
        stdin: None,
        status,
        stdout: &[],
        stdout_not: &[],
        stderr: &[],
    }
}

/// A restore of the `snapshot` guest with `sleep-ms`: it resumes once (the `resumed` line), its
/// timer fires, it exits 0; the saver's output does not come again.
const RESUME: Restore = Restore {
    stdout: &[
        "snapshot-guest: resumed generation=",
        " resumes=1\n",
        "snapshot-guest: slept\n",
    ],
    stdout_not: &["snapshot-guest: ready"],
    ..restore(0)
};

/// Every case, in the order the lane runs them.
pub const CASES: &[Case] = &[
    Case {
        stdout: &["Hello from Parapet! platform=kvm-hw transport={transport}\n"],
        extra_transports: true,
        ..case("hello", "hello", 0)
    },
    Case {
        stdout: &["hypercall checks: ", ", 0 failed"],
        stdout_not: &["FAIL", "hypercall checks: 0 ok"],
        extra_transports: true,
        ..case("hypercalls", "hypercalls", 0)
    },
    Case {
        args: &["--loopback"],
        stdout: &["ok ", ", 0 failed"],
        stdout_not: &["FAIL"],
        extra_transports: true,
        ..case("pv-selftest", "pv-selftest", 0)
    },
    Case {
        stdin: Some("hello\nworld\nquit\nnever\n"),
        stdout: &["echo: hello\necho: world\n"],
        stdout_not: &["echo: never"],
        ..case("echo", "echo", 0)
    },
    Case {
        cmdline: Some("panic"),
        stdout: &["deliberate panic from the crash guest"],
        stderr: &["parapet: guest crashed"],
        ..case("crash panic", "crash", 101)
    },
    Case {
        cmdline: Some("ud2"),
        stderr: &["parapet: guest fault:", "#UD", "do_ud2"],
        ..case("crash ud2", "crash", 102)
    },
    Case {
        cmdline: Some("pagefault"),
        stderr: &["parapet: guest fault:", "#PF", "cr2=0x7f0000000000"],
        ..case("crash pagefault", "crash", 102)
    },
    Case {
        cmdline: Some("triple"),
        stderr: &["parapet: guest fault:", "triple fault"],
        ..case("crash triple", "crash", 102)
    },
    Case {
        cmdline: Some("exit=42"),
        ..case("crash exit=42", "crash", 42)
    },
    Case {
        args: &["--timeout", "1"],
        cmdline: Some("hang"),
        stderr: &["parapet: guest timed out after 1 s"],
        ..case("crash hang", "crash", 124)
    },
    Case {
        args: &["--loopback"],
        cmdline: Some("all"),
        stdout: &["ok ", ", 0 failed"],
        stdout_not: &["FAIL"],
        ..case("hostile all", "hostile", 0)
    },
    Case {
        args: &["--loopback"],
        cmdline: Some("ring-overflow"),
        stderr: &[
            "parapet: guest fault:",
            "req_prod claims 1000 unconsumed requests",
        ],
        ..case("hostile ring-overflow", "hostile", 102)
    },
    Case {
        args: &["--loopback"],
        cmdline: Some("console-overflow"),
        stderr: &[
            "parapet: guest fault:",
            "out_prod claims 5000 unconsumed bytes",
        ],
        ..case("hostile console-overflow", "hostile", 102)
    },
    Case {
        cmdline: Some("blk-requests blk-grants"),
        disks: &[Image::Zeros, Image::ZerosReadonly],
        stdout: &[
            "ok blk-requests indirect: a 12-page read",
            "ok blk-grants",
            ", 0 failed",
        ],
        stdout_not: &["FAIL"],
        ..case("hostile blk", "hostile", 0)
    },
    Case {
        cmdline: Some("blk-ring-overflow"),
        disks: &[Image::Zeros],
        stderr: &["parapet: guest fault: block device", "req_prod claims"],
        ..case("hostile blk-ring-overflow", "hostile", 102)
    },
    Case {
        cmdline: Some("cat=HELLO.TXT write=GUEST.TXT text=Written by a Parapet guest"),
        disks: &[Image::Fat],
        stdout: &[
            "cat HELLO.TXT 13\nHello, disk!\nend HELLO.TXT\n",
            "wrote GUEST.TXT 27\n",
            "verified GUEST.TXT\n",
            "blk-fat: ok\n",
        ],
        ..case("blk-fat", "blk-fat", 0)
    },
    Case {
        cmdline: Some("count=300 batch=31 mode=one-write verify"),
        disks: &[Image::Zeros],
        stdout: &["requests up to 2048 sectors", "verified 300"],
        ..case("blk-durability", "blk-durability", 0)
    },
    Case {
        cmdline: Some("ip=10.77.0.2/24 requests=3"),
        client: Some(
            "wget -q -O - http://10.77.0.2/; wget -q -O - http://10.77.0.2/stats; \
             wget -q -O - http://10.77.0.2/nope",
        ),
        client_out: &["Hello from Parapet", "rx_packets", "404"],
        stdout: &["net-http: served 3 requests"],
        ..case("net-http", "net-http", 0)
    },
    Case {
        cmdline: Some("ip=10.77.0.2/24"),
        // busybox's nc speaks TCP only; the guest runs until the client stops it (SIGTERM,
        // which the shell reports as 143).
        client: Some("echo 'parapet tcp echo' | timeout 5 nc 10.77.0.2 7; kill $guest"),
        client_out: &["parapet tcp echo"],
        stdout: &["net-echo: udp+tcp echo on 10.77.0.2 port 7"],
        ..case("net-echo", "net-echo", 143)
    },
    // Snapshots: the guest fills 4 MiB, arms a timer for SLEEP_MS after the suspend and
    // suspends; the run writes the snapshot and exits 0. Each of two restores of that one file
    // resumes the guest (its memory's checksum as before the suspend, its own generation), the
    // timer fires, and the guest exits 0. The first restore comes before the deadline and
    // waits for it; the second, after the first ended, finds it past.
    Case {
        cmdline: Some("init-mib=4 sleep-ms=1000"),
        stdout: &["snapshot-guest: ready checksum="],
        stdout_not: &["snapshot-guest: resumed"],
        stderr: &["parapet: guest suspended; snapshot written to /tmp/snapshot ("],
        restores: &[RESUME, RESUME],
        across: Some(restores_resume_the_ready_guest),
        extra_transports: true,
        ..case("snapshot", "snapshot", 0)
    },
    // Warm reset: one restored VM serves three invocations, one per input line, each from the
    // snapshot again: no invocation sees what the one before wrote.
    Case {
        cmdline: Some("mode=serve"),
        stdout: &["snapshot-guest: ready checksum="],
        stderr: &["parapet: guest suspended; snapshot written to /tmp/snapshot ("],
        restores: &[Restore {
            warm: true,
            stdin: Some("one\ntwo\nthree\n"),
            stdout: &[
                "snapshot-guest: reply one generation=",
                "snapshot-guest: reply two generation=",
                "snapshot-guest: reply three generation=",
            ],
            stdout_not: &["leak=yes"],
            ..restore(0)
        }],
        across: Some(warm_replies_once_each),
        extra_transports: true,
        ..case("snapshot warm", "snapshot", 0)
    },
    // A snapshot with one byte of its header flipped: the restore refuses it, with one line.
    Case {
        cmdline: Some("init-mib=1"),
        stdout: &["snapshot-guest: ready checksum="],
        stderr: &["parapet: guest suspended; snapshot written to /tmp/snapshot ("],
        restores: &[Restore {
            corrupted: true,
            stdout_not: &["snapshot-guest: resumed"],
            stderr: &["the snapshot is corrupted: the header checksum does not match"],
            ..restore(1)
        }],
        across: Some(restore_refused_in_one_line),
        extra_transports: true,
        ..case("snapshot corrupted", "snapshot", 0)
    },
    // gdb, on the host, against the stub on kvm_amd: an int3 breakpoint, locals, `next` and
    // `stepi` (single steps), the breakpoint hit again after gdb stepped over it, a memory
    // write (5 rounds claimed done when 1 is: 14 in all, total 143), and the run to the exit;
    // tests/debug.rs does the same on kvm_pvm, but for the second hit.
    Case {
        gdb: &[
            "print $pc == &_start",
            "break debuggee::step",
            "continue",
            "print pair",
            "next",
            "print next",
            "bt 2",
            "stepi",
            "info registers rip fs_base gs_base",
            "continue",
            "print pair",
            "set var ROUNDS_DONE.v.value = 5",
            "delete",
            "continue",
        ],
        client_out: &[
            "$1 = 1",
            "Breakpoint 1, debuggee::step (pair=...) at examples/debuggee/src/main.rs:25",
            "$2 = (0, 1)",
            "$3 = 1",
            "#1  0x",
            "in debuggee::main () at examples/debuggee/src/main.rs",
            "fs_base",
            "gs_base",
            "$4 = (1, 1)",
            // 143 as gdb prints exit codes, in octal.
            "exited with code 0217",
        ],
        stdout: &["debuggee: 14 rounds, total 143"],
        stderr: &["the guest waits for gdb"],
        ..case("gdb", "debuggee", 143)
    },
    // A guest fault, with a breakpoint set (and hit) on the way, stops gdb at the faulting
    // instruction; continuing ends the run.
    Case {
        cmdline: Some("fault"),
        gdb: &[
            "break debuggee::poke",
            "continue",
            "continue",
            "bt",
            "print/x $rdi",
            "continue",
        ],
        client_out: &[
            "Breakpoint 1, debuggee::poke (target=0x0, value=1) at examples/debuggee/src/main.rs",
            "Program received signal SIGSEGV",
            "debuggee::poke (target=0x0, value=1) at examples/debuggee/src/main.rs",
            "debuggee::main () at examples/debuggee/src/main.rs",
            "$1 = 0x0",
            "Program terminated with signal SIGSEGV",
        ],
        stderr: &["#PF page fault"],
        ..case("gdb fault", "debuggee", 102)
    },
];

/// A transport the lane runs every case under: the `--hypercall-transport` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport(pub &'static str);

/// Every case runs under these.
pub const TRANSPORTS: &[Transport] = &[Transport("vmcall"), Transport("pio")];

/// These run only the cases marked [`Case::extra_transports`] (hello, hypercalls, pv-selftest
/// and the snapshot cases): `auto` must pick the Xen intercept, the other vendor's instruction
/// must work through KVM's emulation of it, and a snapshot must restore under each.
pub const EXTRA_TRANSPORTS: &[Transport] = &[
    Transport("auto"),
    Transport("intel-vmcall"),
    Transport("amd-vmmcall"),
];

/// The transport name the guest prints for `transport` on a CPU of this vendor.
pub fn reported_name(transport: Transport, amd: bool) -> &'static str {
    match transport.0 {
        "pio" => "pio",
        "intel-vmcall" => "vmcall",
        "amd-vmmcall" => "vmmcall",
        _ if amd => "vmmcall",
        _ => "vmcall",
    }
}

/// Whether the lane builds `guest` with the dev profile (debug information, no optimisation):
/// those gdb debugs, whose locals and lines it must see; the others are release builds.
pub fn dev_build(guest: &str) -> bool {
    CASES.iter().any(|c| c.guest == guest && !c.gdb.is_empty())
}

/// The guests the cases use, each once.
pub fn guests() -> Vec<&'static str> {
    let mut guests: Vec<&str> = CASES.iter().map(|c| c.guest).collect();
    guests.sort_unstable();
    guests.dedup();
    guests
}

/// The value of `key=` in the first line of `text` that starts with `prefix`.
fn field<'a>(text: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split(' ')
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The `snapshot` case's `sleep-ms`.
const SLEEP_MS: u64 = 1000;

/// The most the guest's clock may say passed between its suspend and a restore resuming it: the
/// lane gives each process at most 600 s, and two restores may come between.
const MAX_ELAPSED_MS: u64 = 1_200_000;

/// The `snapshot` case: each restore resumed the guest with the memory checksum its `ready`
/// line showed before the suspend; no two restores got the same generation; and the guest's
/// clock and timer carried on across each: the time since the suspend is plausible and grows
/// from one restore to the next, and a restore after one that waited for the timer (which
/// fires [`SLEEP_MS`] after the suspend) comes at least that long after the suspend.
fn restores_resume_the_ready_guest(outputs: &[Output]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(ready) = outputs
        .first()
        .and_then(|run| field(&run.stdout, "snapshot-guest: ready ", "checksum"))
    else {
        return vec!["the run printed no ready checksum".to_owned()];
    };
    let mut generations = Vec::new();
    // The restore before: the time it saw since the suspend, and whether the timer fired.
    let mut before: Option<(u64, bool)> = None;
    for (k, restore) in outputs.iter().enumerate().skip(1) {
        let resumed = "snapshot-guest: resumed ";
        match field(&restore.stdout, resumed, "checksum") {
            Some(sum) if sum == ready => {}
            Some(sum) => problems.push(format!(
                "restore {k}: checksum {sum} after the resume, {ready} before the suspend"
            )),
            None => problems.push(format!("restore {k}: no checksum resumed")),
        }
        if let Some(generation) = field(&restore.stdout, resumed, "generation") {
            if generations.contains(&generation) {
                problems.push(format!("restore {k}: generation {generation} again"));
            }
            generations.push(generation);
        }
        let elapsed = field(&restore.stdout, resumed, "elapsed_ms").and_then(|e| e.parse().ok());
        match (elapsed, before) {
            (Some(ms), _) if ms > MAX_ELAPSED_MS => problems.push(format!(
                "restore {k}: the guest's clock says {ms} ms passed since the suspend"
            )),
            (Some(ms), Some((seen, _))) if ms <= seen => problems.push(format!(
                "restore {k}: {ms} ms since the suspend, after the restore before it saw {seen}"
            )),
            (Some(ms), Some((_, true))) if ms < SLEEP_MS => problems.push(format!(
                "restore {k}: {ms} ms since the suspend, yet the restore before it saw the \
                 guest's {SLEEP_MS} ms timer fire"
            )),
            _ => {}
        }
        if let Some(ms) = elapsed {
            before = Some((ms, restore.stdout.contains("snapshot-guest: slept\n")));
        }
    }
    problems
}

/// The `snapshot warm` case: exactly one reply per input line, in order, none with a leak.
fn warm_replies_once_each(outputs: &[Output]) -> Vec<String> {
    let Some(warm) = outputs.get(1) else {
        return Vec::new();
    };
    let replies: Vec<(&str, &str)> = warm
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("snapshot-guest: reply "))
        .map(|r| {
            let line = r.split(" generation=").next().unwrap_or(r);
            (line, field(r, "", "leak").unwrap_or("?"))
        })
        .collect();
    let want = [("one", "no"), ("two", "no"), ("three", "no")];
    if replies == want {
        Vec::new()
    } else {
        vec![format!("replies (line, leak) {replies:?}, want {want:?}")]
    }
}

/// The `snapshot corrupted` case: the refusal is one line, `parapet: error: snapshot FILE: …`.
fn restore_refused_in_one_line(outputs: &[Output]) -> Vec<String> {
    let Some(refused) = outputs.get(1) else {
        return Vec::new();
    };
    let prefix = format!("parapet: error: snapshot {CORRUPTED}: ");
    let lines: Vec<&str> = refused.stderr.lines().collect();
    if lines.len() == 1 && lines[0].starts_with(&prefix) {
        Vec::new()
    } else {
        vec![format!(
            "standard error is not one line starting {prefix:?}: {lines:?}"
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_case_sleeps_as_its_check_expects() {
        let case = CASES.iter().find(|c| c.name == "snapshot").unwrap();
        let sleep = format!("sleep-ms={SLEEP_MS}");
        assert!(case.cmdline.unwrap().split(' ').any(|w| w == sleep));
    }
}
