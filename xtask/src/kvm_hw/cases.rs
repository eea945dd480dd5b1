//! What the hardware-KVM lane runs: each test guest with the arguments and input the integration
//! tests give it, and what a pass looks like. The lane runs every case under every transport.
//! The gdb cases also run the host's gdb against the guest, over a serial line.

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
}

/// The serial line the gdb cases serve gdb on: the VM's second UART, whose other end is a TCP
/// port on the host's loopback.
pub const GDB_LINE: &str = "/dev/ttyS1";

/// The TAP device of the network cases, with the host side's address 10.77.0.1/24.
pub const TAP: &str = "tap0";
/// The guests' address in the network cases.
pub const GUEST_IP: &str = "10.77.0.2";

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
    }
}

/// Every case, in the order the lane runs them.
pub const CASES: &[Case] = &[
    Case {
        stdout: &["Hello from Parapet! platform=kvm-hw transport={transport}\n"],
        ..case("hello", "hello", 0)
    },
    Case {
        stdout: &["hypercall checks: ", ", 0 failed"],
        stdout_not: &["FAIL", "hypercall checks: 0 ok"],
        ..case("hypercalls", "hypercalls", 0)
    },
    Case {
        args: &["--loopback"],
        stdout: &["ok ", ", 0 failed"],
        stdout_not: &["FAIL"],
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

/// These run only the first three cases (hello, hypercalls, pv-selftest): `auto` must pick the
/// Xen intercept, and the other vendor's instruction must work through KVM's emulation of it.
pub const EXTRA_TRANSPORTS: &[Transport] = &[
    Transport("auto"),
    Transport("intel-vmcall"),
    Transport("amd-vmmcall"),
];

/// How many of [`CASES`] the extra transports run.
pub const EXTRA_CASES: usize = 3;

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
