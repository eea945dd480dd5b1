//! What the user asked for: the VM configuration. The CLI (`main.rs`) parses into it; the
//! option values that are plain choices derive clap's `ValueEnum` here so both name them once.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How hypercalls should reach the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportChoice {
    /// The fastest transport this host offers.
    Auto,
    /// The host CPU's hypercall instruction (VMCALL on Intel, VMMCALL on AMD) through KVM's
    /// Xen hypercall intercept.
    Vmcall,
    /// Intel's VMCALL through the Xen intercept, whatever the CPU: KVM on AMD emulates it (and
    /// the reverse). For testing the other vendor's hypercall page.
    IntelVmcall,
    /// AMD's VMMCALL through the Xen intercept, whatever the CPU.
    AmdVmmcall,
    /// Port I/O.
    Pio,
}

/// How `--stats` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// `parapet stats:` and one `  group.name value` line per counter.
    Text,
    /// One JSON object on one line, `{"group.name": value, …}`, for programs.
    Json,
}

/// A configuration for one guest run.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Path of the guest ELF.
    pub kernel: PathBuf,
    /// Guest RAM.
    pub memory: MemSize,
    /// Guest command line.
    pub cmdline: String,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Print statistics at exit, in this format.
    pub stats: Option<StatsFormat>,
    /// Hypercall transport.
    pub transport: TransportChoice,
    /// Give the guest a loopback test device.
    pub loopback: bool,
    /// Disk images, in device order.
    pub disks: Vec<DiskSpec>,
    /// Network interfaces, in device order.
    pub nets: Vec<NetSpec>,
    /// Run every VMM thread under its seccomp filter (`--no-seccomp` turns it off).
    pub seccomp: bool,
    /// Wait for gdb here before the guest's first instruction, and serve it.
    pub gdb: Option<GdbAddr>,
    /// Write an ELF core dump here if the guest faults or panics.
    pub core: Option<PathBuf>,
    /// Where a suspend (`SHUTDOWN_suspend`, or `SIGUSR1` from the host) writes a snapshot.
    pub snapshot: Option<PathBuf>,
}

/// A configuration for restoring a snapshot (`parapet restore`).
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// Disk images for the snapshot's block devices, in device order; empty: the images it was
    /// taken with.
    pub disks: Vec<DiskSpec>,
    /// TAP devices for its network interfaces, in device order; empty: the TAPs it was taken
    /// with.
    pub nets: Vec<NetSpec>,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Print statistics at exit, in this format.
    pub stats: Option<StatsFormat>,
    /// Run every VMM thread under its seccomp filter.
    pub seccomp: bool,
    /// Where a further suspend writes a snapshot.
    pub snapshot_out: Option<PathBuf>,
    /// Warm reset: serve one invocation per line of standard input, each from the snapshot.
    pub warm: bool,
}

/// `--gdb ADDR`: where the gdb stub listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GdbAddr {
    /// `HOST:PORT`, a TCP address (`localhost:1234`, `127.0.0.1:1234`, `[::1]:1234`).
    Tcp(String),
    /// A path (anything with a `/`): a Unix socket to create, or a serial line (a character
    /// device such as `/dev/ttyS1`) to speak the protocol on.
    Path(PathBuf),
}

impl FromStr for GdbAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            return Ok(GdbAddr::Path(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(GdbAddr::Tcp(s.to_owned()))
            }
            _ => Err(format!(
                "`{s}` is neither HOST:PORT nor a path (a Unix socket path or a serial line; a path needs a `/`, e.g. ./gdb.sock or /dev/ttyS1)"
            )),
        }
    }
}

impl fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GdbAddr::Tcp(addr) => f.write_str(addr),
            GdbAddr::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// `--net tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,mtu=M]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// The host TAP device.
    pub tap: TapSource,
    /// The guest's MAC address; derived from the TAP name if not given.
    pub mac: Option<[u8; 6]>,
    /// The interface's MTU as the guest is told it (68–1500); 1500 if not given.
    pub mtu: Option<u16>,
}

/// Where a network interface's TAP device comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapSource {
    /// `tap=NAME`: the TAP device of that name, attached (or created) by the VMM.
    Name(String),
    /// `fd=N`: a TAP file descriptor inherited from the parent, already attached (like
    /// crosvm's `--tap-fd`): the parent made the device, possibly in another network namespace.
    Fd(i32),
}

impl fmt::Display for TapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapSource::Name(name) => write!(f, "tap={name}"),
            TapSource::Fd(fd) => write!(f, "fd={fd}"),
        }
    }
}

/// The largest MTU a PV network interface carries (a 1514-byte frame, docs/abi.md §10.3).
pub const MAX_MTU: u16 = 1500;
/// The smallest MTU IPv4 allows.
pub const MIN_MTU: u16 = 68;

impl FromStr for NetSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut tap, mut mac, mut mtu) = (None, None, None);
        for part in s.split(',') {
            let source = match part.split_once('=') {
                Some(("tap", name)) if !name.is_empty() => Some(TapSource::Name(name.to_owned())),
                Some(("fd", n)) => Some(TapSource::Fd(parse_fd(n)?)),
                Some(("mac", m)) => {
                    mac = Some(parse_mac(m)?);
                    None
                }
                Some(("mtu", m)) => {
                    mtu = Some(parse_mtu(m)?);
                    None
                }
                _ => {
                    return Err(format!(
                        "`{part}` is not `tap=NAME`, `fd=N`, `mac=XX:XX:XX:XX:XX:XX` or `mtu=M`"
                    ));
                }
            };
            if let Some(source) = source {
                if let Some(first) = &tap {
                    return Err(format!(
                        "`{first}` and `{source}`: an interface has one TAP device"
                    ));
                }
                tap = Some(source);
            }
        }
        let tap = tap.ok_or("the interface needs `tap=NAME` or `fd=N`")?;
        Ok(NetSpec { tap, mac, mtu })
    }
}

fn parse_fd(s: &str) -> Result<i32, String> {
    let fd: i32 = s
        .parse()
        .map_err(|_| format!("`fd={s}`: not a file descriptor number"))?;
    if fd < 3 {
        return Err(format!(
            "`fd={s}`: descriptors 0-2 are the guest's console; pass the TAP above them"
        ));
    }
    Ok(fd)
}

fn parse_mtu(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Ok(m),
        _ => Err(format!(
            "`mtu={s}`: the MTU is {MIN_MTU} to {MAX_MTU} (a PV interface carries frames of at \
             most 1514 bytes)"
        )),
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("`{s}` is not a MAC address like 02:00:00:00:00:01");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!("`{s}` is a multicast address"));
    }
    Ok(mac)
}

/// `--disk PATH[,readonly]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// The raw image file.
    pub path: PathBuf,
    /// Refuse writes and discards.
    pub readonly: bool,
}

impl FromStr for DiskSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, options) = match s.rsplit_once(',') {
            Some((path, opts)) if opts == "readonly" || opts == "ro" => (path, Some(opts)),
            Some((_, opts)) if !opts.contains('/') => {
                return Err(format!(
                    "unknown disk option `{opts}` (the only one is `readonly`)"
                ));
            }
            _ => (s, None),
        };
        if path.is_empty() {
            return Err("the disk needs a path".into());
        }
        Ok(DiskSpec {
            path: PathBuf::from(path),
            readonly: options.is_some(),
        })
    }
}

/// A memory size given as bytes or with a K/M/G suffix (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize(pub u64);

impl MemSize {
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
            Some(b'K') => (&s[..s.len() - 1], 10),
            Some(b'M') => (&s[..s.len() - 1], 20),
            Some(b'G') => (&s[..s.len() - 1], 30),
            Some(b'T') => (&s[..s.len() - 1], 40),
            _ => (s, 0),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size (try 64M or 1G)"))?;
        n.checked_mul(1u64 << shift)
            .map(MemSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MemSize;

    #[test]
    fn parses_suffixes() {
        assert_eq!("64M".parse(), Ok(MemSize(64 << 20)));
        assert_eq!("1g".parse(), Ok(MemSize(1 << 30)));
        assert_eq!("512K".parse(), Ok(MemSize(512 << 10)));
        assert_eq!("4096".parse(), Ok(MemSize(4096)));
        assert!("abc".parse::<MemSize>().is_err());
        assert!("".parse::<MemSize>().is_err());
        assert!("-1M".parse::<MemSize>().is_err());
        assert!("99999999999T".parse::<MemSize>().is_err());
    }

    #[test]
    fn parses_gdb_addresses() {
        use super::GdbAddr;
        assert_eq!(
            "localhost:1234".parse(),
            Ok(GdbAddr::Tcp("localhost:1234".into()))
        );
        assert_eq!("[::1]:9".parse(), Ok(GdbAddr::Tcp("[::1]:9".into())));
        assert_eq!(
            "./gdb.sock".parse(),
            Ok(GdbAddr::Path(std::path::PathBuf::from("./gdb.sock")))
        );
        for bad in ["1234", "host:", ":1234", "host:99999", "gdb.sock"] {
            assert!(bad.parse::<GdbAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_disk_specs() {
        use super::DiskSpec;
        let d: DiskSpec = "/tmp/a.img".parse().unwrap();
        assert_eq!((d.path.to_str(), d.readonly), (Some("/tmp/a.img"), false));
        let d: DiskSpec = "a,b.img,readonly".parse().unwrap();
        assert_eq!((d.path.to_str(), d.readonly), (Some("a,b.img"), true));
        assert!("x.img,rw".parse::<DiskSpec>().is_err());
        assert!(",readonly".parse::<DiskSpec>().is_err());
    }

    #[test]
    fn parses_net_specs() {
        use super::{NetSpec, TapSource};
        let n: NetSpec = "tap=tap0".parse().unwrap();
        assert_eq!(
            (n.tap, n.mac, n.mtu),
            (TapSource::Name("tap0".into()), None, None)
        );
        let n: NetSpec = "tap=t1,mac=02:aa:bb:cc:dd:ee".parse().unwrap();
        assert_eq!(n.mac, Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        let n: NetSpec = "fd=3,mac=02:aa:bb:cc:dd:ee,mtu=1400".parse().unwrap();
        assert_eq!((n.tap, n.mtu), (TapSource::Fd(3), Some(1400)));
        let n: NetSpec = "mtu=68,fd=1000".parse().unwrap();
        assert_eq!((n.tap, n.mtu), (TapSource::Fd(1000), Some(68)));
        for bad in [
            "",
            "tap=",
            "mac=02:00:00:00:00:01",
            "tap=t,mac=01:00:00:00:00:00",
            "tap=t,mac=02:00:00:00:00",
            "tap=t,mac=02:00:00:00:00:0g",
            "tap=t,speed=1",
            "fd=",
            "fd=x",
            "fd=-1",
            "fd=0",
            "fd=2",
            "fd=3,tap=t",
            "tap=t,tap=u",
            "fd=3,fd=4",
            "fd=3,mtu=1501",
            "fd=3,mtu=67",
            "fd=3,mtu=",
        ] {
            assert!(bad.parse::<NetSpec>().is_err(), "{bad}");
        }
        let e = "fd=3,tap=t".parse::<NetSpec>().unwrap_err();
        assert!(e.contains("one TAP device"), "{e}");
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(MemSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(MemSize(3 << 30).to_string(), "3 GiB");
        assert_eq!(MemSize(1000).to_string(), "1000 bytes");
    }
}
