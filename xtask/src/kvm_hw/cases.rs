//! What the hardware-KVM lane runs: each test guest with the arguments and input the integration
//! tests give it, and what a pass looks like. The lane runs every case under every transport.

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
    /// The guest (a directory under examples/).
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
    /// Strings the client's output must contain.
    pub client_out: &'static [&'static str],
}

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

/// The guests the cases use, each once.
pub fn guests() -> Vec<&'static str> {
    let mut guests: Vec<&str> = CASES.iter().map(|c| c.guest).collect();
    guests.sort_unstable();
    guests.dedup();
    guests
}
