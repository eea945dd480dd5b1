//! `cargo xtask bench net`: the PV network interface against the same traffic over a veth pair
//! between two network namespaces and over loopback, in the same run (docs/benchmarks.md,
//! "PV network"). Needs root: every address lives in namespaces this bench makes and deletes.
//!
//! - **Guest path.** Namespace `ppbench-<pid>-tap` holds `tap0` (10.77.0.1/24); the guest is
//!   `examples/net-echo` (10.77.0.2: TCP discard 9, TCP source 19, UDP echo 7) in its own
//!   `parapet run --stats --net tap=tap0` per test, and the client is this process, on a
//!   thread inside that namespace.
//! - **Ceilings.** Namespaces `ppbench-<pid>-a` and `-b` joined by a veth pair (10.78.0.1 and
//!   .2); the same three services run in `-b` as threads of this process ([`Servers`]); the
//!   veth client is in `-a`, the loopback client in `-b` (127.0.0.1).
//! - **Traffic**, the same on every path: TCP host→peer (connect to 9, write `--mib` MiB,
//!   half-close, wait for the peer to close: all of it was received), TCP peer→host (connect to
//!   19, read `--mib` MiB), both timed by the client from the established connection to the
//!   last byte; UDP round trips (`--udp` requests of `--udp-size` bytes to 7, one at a time,
//!   after 100 unmeasured ones; median and p99; a request unanswered after 200 ms is lost).
//! - **Exits per packet**: each guest run powers off after its last UDP echo (`count=`), so its
//!   `--stats` are complete; a baseline run per round does nothing but boot and echo one
//!   datagram. (run − baseline) of `exit.total` and `kvm.exits`, over (run − baseline) of the
//!   frames the backend moved (`net0.rx_packets + net0.tx_packets`).
//! - **What limits it**: during each guest transfer the bench samples the CPU time of the VMM's
//!   threads (`/proc/PID/task/*/stat`) and of the whole host (`/proc/stat`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::chart::{self, Bar};
use super::cpu::{Cpu, CpuSnapshot};
use super::netns::{self, Netns};
use super::parse;
use super::report::{HostInfo, fmt_ns, median};
use super::suite::{self, Cells};
use super::table::{Align, Column, Table};
use crate::Workspace;

const TAP_HOST: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";
const VETH_A: &str = "10.78.0.1";
const VETH_B: &str = "10.78.0.2";
const DISCARD: u16 = 9;
const SOURCE: u16 = 19;
const ECHO: u16 = 7;
const UDP_WARMUP: u64 = 100;
const UDP_TIMEOUT: Duration = Duration::from_millis(200);
/// The client's read and write size.
const CHUNK: usize = 128 * 1024;
/// The starting goal for TCP through Parapet, bits per second.
const TCP_GOAL: f64 = 1e9;

#[derive(Debug, Args)]
pub struct NetArgs {
    /// MiB per TCP transfer.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    mib: u64,
    /// UDP round trips per run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    udp: u64,
    /// Bytes per UDP request (8 to 1472).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=1472))]
    udp_size: u64,
    /// Rounds: each runs every test on every path.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Where net.json, net.svg and the guests' output (raw/) go (default: target/bench).
    #[arg(long, value_name = "DIR")]
    pub(super) out: Option<PathBuf>,
    /// Use this `parapet` binary instead of building it (release).
    #[arg(long, value_name = "PATH")]
    vmm: Option<PathBuf>,
    /// Use this net-echo guest ELF instead of building it (release).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
}

/// The tests, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    TcpToPeer,
    TcpFromPeer,
    UdpRtt,
}

const TESTS: [Test; 3] = [Test::TcpToPeer, Test::TcpFromPeer, Test::UdpRtt];

impl Test {
    fn id(self) -> &'static str {
        match self {
            Test::TcpToPeer => "tcp_host_to_guest",
            Test::TcpFromPeer => "tcp_guest_to_host",
            Test::UdpRtt => "udp_rtt",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Test::TcpToPeer => "TCP host -> guest (port 9)",
            Test::TcpFromPeer => "TCP guest -> host (port 19)",
            Test::UdpRtt => "UDP round trip (port 7)",
        }
    }
}

/// Where the traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The guest on the TAP device.
    Guest,
    /// Two namespaces over a veth pair.
    Veth,
    /// Loopback inside one namespace.
    Loopback,
}

const WAYS: [Way; 3] = [Way::Guest, Way::Veth, Way::Loopback];

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Guest => "guest",
            Way::Veth => "veth",
            Way::Loopback => "loopback",
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// Bits per second (TCP) or the median round trip in ns (UDP).
    value: f64,
    /// UDP: the 99th percentile and the minimum round trip (ns), and requests lost.
    p99: Option<f64>,
    min: Option<f64>,
    /// Ceilings' UDP: the median and p99 round trip again with the client and the server
    /// pinned to one CPU (no cross-CPU wake-ups).
    one_cpu: Option<(f64, f64)>,
    lost: u64,
    bytes: u64,
    seconds: f64,
    /// Guest runs: `--stats` counters less the baseline run's.
    stats: Option<BTreeMap<String, i64>>,
    cpu: Option<Cpu>,
    /// Guest runs: what the guest printed about the transfer.
    guest_says: Option<String>,
}

impl Sample {
    fn packets(&self) -> Option<i64> {
        let s = self.stats.as_ref()?;
        let p = s.get("net0.rx_packets").copied().unwrap_or(0)
            + s.get("net0.tx_packets").copied().unwrap_or(0);
        (p > 0).then_some(p)
    }

    fn per_packet(&self, counter: &str) -> Option<f64> {
        let n = self.stats.as_ref()?.get(counter).copied().unwrap_or(0);
        Some(n.max(0) as f64 / self.packets()? as f64)
    }
}

struct Bins {
    vmm: PathBuf,
    guest: PathBuf,
}

/// Everything the bench made: namespaces (deleted on drop, last), servers (stopped on drop).
struct Lab {
    tap: Netns,
    a: Netns,
    b: Netns,
    servers: Option<Servers>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(s) = self.servers.take() {
            s.stop();
        }
    }
}

/// The `bench net` suite: every test on every way, once per round.
pub struct Net {
    args: NetArgs,
    bins: Bins,
    /// Where the guests' output goes.
    raw: PathBuf,
    lab: Lab,
    /// Per (test, way): a sample per round, or why the cell ended.
    cells: Cells<(usize, usize), Sample>,
}

impl Net {
    /// Builds (or takes) the programs and makes the namespaces, devices and ceiling servers.
    pub fn new(ws: &Workspace, args: NetArgs, out_dir: &Path) -> Result<Net> {
        let bins = Bins {
            guest: suite::prebuilt_or(args.guest.as_deref(), || ws.build_guest("net-echo", true))?,
            vmm: suite::prebuilt_or(args.vmm.as_deref(), || ws.build_vmm(true))?,
        };
        let raw = out_dir.join("raw");
        std::fs::create_dir_all(&raw)
            .with_context(|| format!("cannot create {}", raw.display()))?;
        netns::remove_stale();
        let lab = make_lab()?;
        Ok(Net {
            args,
            bins,
            raw,
            lab,
            cells: Cells::default(),
        })
    }
}

impl suite::Suite for Net {
    const NAME: &'static str = "bench net";
    type Report = NetReport;

    fn rounds(&self) -> u32 {
        self.args.rounds
    }

    /// The baseline guest run, then each test on every way, the way that goes first rotating
    /// from round to round.
    fn round(&mut self, round: u32) -> Result<()> {
        let (args, lab) = (&self.args, &self.lab);
        let bytes = args.mib << 20;
        let guest = GuestRunner {
            bins: &self.bins,
            ns: &lab.tap,
            raw: &self.raw,
        };
        let base = guest
            .session("baseline", 1, |_| Ok(Sample::default()))
            .context("the baseline guest run")?
            .1;
        for (ti, &test) in TESTS.iter().enumerate() {
            for k in 0..WAYS.len() {
                let wi = (k + round as usize - 1) % WAYS.len();
                if self.cells.is_over((ti, wi)) {
                    continue;
                }
                let result = match WAYS[wi] {
                    Way::Guest => {
                        let count = match test {
                            Test::UdpRtt => UDP_WARMUP + args.udp,
                            _ => 1,
                        };
                        let addr = addr(GUEST_IP, test);
                        guest
                            .session(test.id(), count, |pid| {
                                lab.tap.run(|| measure(test, addr, bytes, args, Some(pid)))
                            })
                            .map(|(mut s, stats)| {
                                s.stats = Some(
                                    stats
                                        .iter()
                                        .map(|(k, &v)| {
                                            (
                                                k.clone(),
                                                v as i64 - base.get(k).copied().unwrap_or(0) as i64,
                                            )
                                        })
                                        .collect(),
                                );
                                s
                            })
                    }
                    Way::Veth | Way::Loopback => {
                        let (ns, ip) = match WAYS[wi] {
                            Way::Veth => (&lab.a, VETH_B),
                            _ => (&lab.b, "127.0.0.1"),
                        };
                        let to = addr(ip, test);
                        ns.run(|| measure(test, to, bytes, args, None))
                            .and_then(|mut s| {
                                if test == Test::UdpRtt {
                                    let echo = lab.servers.as_ref().map_or(0, |x| x.echo_tid());
                                    let pinned = ns.run(|| {
                                        let _pin = OneCpu::pin(&[0, echo])?;
                                        measure(test, to, bytes, args, None)
                                    })?;
                                    s.one_cpu = Some((pinned.value, pinned.p99.unwrap_or(0.0)));
                                }
                                Ok(s)
                            })
                    }
                };
                self.cells
                    .record((ti, wi), result.map_err(|e| format!("{e:#}")));
            }
        }
        Ok(())
    }

    fn report(mut self) -> Result<NetReport> {
        // The namespaces and servers go first.
        drop(self.lab);
        Ok(NetReport {
            host: HostInfo::read_proc(),
            mib: self.args.mib,
            udp: self.args.udp,
            udp_size: self.args.udp_size,
            rounds: self.args.rounds,
            cells: (0..TESTS.len())
                .map(|ti| {
                    (0..WAYS.len())
                        .map(|wi| {
                            let (samples, failure) = self.cells.take((ti, wi));
                            Cell { samples, failure }
                        })
                        .collect()
                })
                .collect(),
        })
    }
}

fn addr(ip: &str, test: Test) -> SocketAddr {
    let port = match test {
        Test::TcpToPeer => DISCARD,
        Test::TcpFromPeer => SOURCE,
        Test::UdpRtt => ECHO,
    };
    SocketAddr::new(ip.parse().expect("a valid address"), port)
}

/// The namespaces, devices and ceiling servers.
fn make_lab() -> Result<Lab> {
    let tap = Netns::new("tap")?;
    tap.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"])?;
    tap.ip(&["addr", "add", &format!("{TAP_HOST}/24"), "dev", "tap0"])?;
    tap.ip(&["link", "set", "tap0", "up"])?;
    let a = Netns::new("a")?;
    let b = Netns::new("b")?;
    a.ip(&[
        "link",
        "add",
        "veth0",
        "type",
        "veth",
        "peer",
        "name",
        "veth1",
        "netns",
        b.name(),
    ])?;
    a.ip(&["addr", "add", &format!("{VETH_A}/24"), "dev", "veth0"])?;
    b.ip(&["addr", "add", &format!("{VETH_B}/24"), "dev", "veth1"])?;
    a.ip(&["link", "set", "veth0", "up"])?;
    b.ip(&["link", "set", "veth1", "up"])?;
    let mut lab = Lab {
        tap,
        a,
        b,
        servers: None,
    };
    lab.servers = Some(Servers::start(&lab.b)?);
    Ok(lab)
}

/// Runs `test` against `addr` from the calling thread (inside the client's namespace); with
/// `vmm`, samples that process's threads' CPU time around the measurement.
fn measure(
    test: Test,
    addr: SocketAddr,
    bytes: u64,
    args: &NetArgs,
    vmm: Option<u32>,
) -> Result<Sample> {
    match test {
        Test::TcpToPeer | Test::TcpFromPeer => {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .with_context(|| format!("connect to {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.set_write_timeout(Some(Duration::from_secs(60)))?;
            let before = CpuSnapshot::take(vmm);
            let start = Instant::now();
            let mut buf = vec![0u8; CHUNK];
            let mut moved = 0u64;
            if test == Test::TcpToPeer {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = i as u8;
                }
                while moved < bytes {
                    let n = (bytes - moved).min(CHUNK as u64) as usize;
                    s.write_all(&buf[..n]).context("sending")?;
                    moved += n as u64;
                }
                s.shutdown(Shutdown::Write)?;
                // The peer closes once it has read everything.
                while s.read(&mut buf).context("waiting for the peer to close")? > 0 {}
            } else {
                while moved < bytes {
                    let n = s.read(&mut buf).context("receiving")?;
                    if n == 0 {
                        bail!("the peer closed after {moved} bytes");
                    }
                    moved += n as u64;
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            let cpu = before.map(|b| b.until_now(seconds));
            drop(s);
            Ok(Sample {
                value: moved as f64 * 8.0 / seconds,
                bytes: moved,
                seconds,
                cpu,
                ..Sample::default()
            })
        }
        Test::UdpRtt => {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.connect(addr)?;
            sock.set_read_timeout(Some(UDP_TIMEOUT))?;
            let size = args.udp_size as usize;
            let mut msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut buf = vec![0u8; 2048];
            let mut lat = Vec::with_capacity(args.udp as usize);
            let mut lost = 0;
            let before = CpuSnapshot::take(vmm);
            let start = Instant::now();
            for seq in 0..UDP_WARMUP + args.udp {
                msg[..8].copy_from_slice(&seq.to_le_bytes());
                let t0 = Instant::now();
                sock.send(&msg)?;
                loop {
                    match sock.recv(&mut buf) {
                        Ok(n) if n == size && buf[..8] == msg[..8] => {
                            if seq >= UDP_WARMUP {
                                lat.push(t0.elapsed().as_nanos() as f64);
                            }
                            break;
                        }
                        Ok(_) => {} // a late answer to an earlier request
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            lost += 1;
                            break;
                        }
                        Err(e) => return Err(e).context("receiving"),
                    }
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            if lat.is_empty() {
                bail!("no UDP request was answered");
            }
            lat.sort_by(f64::total_cmp);
            let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
            Ok(Sample {
                value: pct(50),
                p99: Some(pct(99)),
                min: Some(lat[0]),
                lost,
                bytes: (UDP_WARMUP + args.udp) * size as u64,
                seconds,
                cpu: before.map(|b| b.until_now(seconds)),
                ..Sample::default()
            })
        }
    }
}

/// Runs guests in the TAP namespace.
struct GuestRunner<'a> {
    bins: &'a Bins,
    ns: &'a Netns,
    raw: &'a Path,
}

/// A running `parapet run net-echo`; killed on drop if it is still running.
struct RunningGuest {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl RunningGuest {
    fn output(&self) -> (String, String) {
        (
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }

    fn failure(&mut self, what: &str) -> anyhow::Error {
        let status = self.child.try_wait().ok().flatten();
        let (out, err) = self.output();
        let tail: Vec<&str> = out.lines().chain(err.lines()).rev().take(6).collect();
        anyhow::anyhow!(
            "{what}{}; its last output: {}",
            status.map_or(String::new(), |s| format!(" (the VMM exited: {s})")),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    }
}

impl GuestRunner<'_> {
    /// Boots net-echo with `count=N`, waits until it serves, runs `work` (given the VMM's pid),
    /// then sends UDP datagrams to port 7 until the guest has echoed `count` and powered off.
    /// Returns `work`'s sample (with what the guest said about it) and the `--stats` counters.
    fn session(
        &self,
        name: &str,
        count: u64,
        work: impl FnOnce(u32) -> Result<Sample>,
    ) -> Result<(Sample, BTreeMap<String, u64>)> {
        let stdout = self.raw.join(format!("net-{name}.out"));
        let stderr = self.raw.join(format!("net-{name}.err"));
        let file = |p: &Path| {
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))
        };
        let child = self
            .ns
            .command(&self.bins.vmm)
            .arg("run")
            .arg("--stats=json")
            .arg(&self.bins.guest)
            .args(["--net", "tap=tap0", "--cmdline"])
            .arg(format!("ip={GUEST_IP}/24 count={count}"))
            .stdin(Stdio::null())
            .stdout(file(&stdout)?)
            .stderr(file(&stderr)?)
            .spawn()
            .context("cannot start `ip netns exec … parapet run`")?;
        let mut g = RunningGuest {
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !g.output().0.contains("net-echo: udp+tcp echo on") {
            if Instant::now() > deadline {
                return Err(g.failure("the guest did not come up in 30 s"));
            }
            if let Ok(Some(_)) = g.child.try_wait() {
                return Err(g.failure("the guest stopped before serving"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut sample = match work(g.child.id()) {
            Ok(s) => s,
            Err(e) => {
                let why = g.failure("");
                return Err(e.context(format!("guest: {why}")));
            }
        };
        // Power the guest off: echoes until it reaches `count`.
        let pid = &mut g.child;
        self.ns.run(|| {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.connect(addr(GUEST_IP, Test::UdpRtt))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while pid.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    bail!("the guest did not power off after its count of echoes");
                }
                let _ = sock.send(b"power off");
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })?;
        let status = g.child.wait()?;
        let (out, err) = g.output();
        if !status.success() {
            return Err(g.failure(&format!("the guest ended with {status}")));
        }
        sample.guest_says = out
            .lines()
            .find(|l| l.contains(" received ") || l.contains(" sent "))
            .map(|l| l.trim().to_owned());
        Ok((sample, parse::stats(&err)))
    }
}

/// The ceiling's TCP discard (9), TCP source (19) and UDP echo (7) servers, as threads of this
/// process on sockets made in a namespace.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The UDP echo thread's id (for pinning it).
    echo_tid: Arc<AtomicI32>,
}

/// Threads pinned to CPU 0 while this lives; their previous CPU sets are restored on drop.
struct OneCpu {
    saved: Vec<(libc::pid_t, libc::cpu_set_t)>,
}

impl OneCpu {
    /// Pins threads `tids` (0: the calling thread) to CPU 0.
    fn pin(tids: &[libc::pid_t]) -> Result<OneCpu> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut pinned = OneCpu { saved: Vec::new() };
        for &tid in tids {
            // SAFETY: a zeroed cpu_set_t is an empty set; the calls read or write exactly
            // `size` bytes of it.
            unsafe {
                let mut old: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(tid, size, &mut old) != 0 {
                    bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
                }
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut one);
                if libc::sched_setaffinity(tid, size, &one) != 0 {
                    bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
                }
                pinned.saved.push((tid, old));
            }
        }
        Ok(pinned)
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        for (tid, set) in &self.saved {
            // SAFETY: restores a set read by sched_getaffinity for the same thread.
            unsafe { libc::sched_setaffinity(*tid, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
    }
}

/// Waits until `fd` is readable or 100 ms pass.
fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 100) > 0 }
}

impl Servers {
    fn start(ns: &Netns) -> Result<Servers> {
        let (discard, source, echo) = ns.run(|| {
            Ok((
                TcpListener::bind(("0.0.0.0", DISCARD))?,
                TcpListener::bind(("0.0.0.0", SOURCE))?,
                UdpSocket::bind(("0.0.0.0", ECHO))?,
            ))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let serve = |listener: TcpListener, f: fn(TcpStream)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if readable(listener.as_raw_fd())
                        && let Ok((s, _)) = listener.accept()
                    {
                        f(s);
                    }
                }
            })
        };
        let mut threads = vec![
            serve(discard, |mut s| {
                let mut buf = vec![0u8; CHUNK];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }),
            serve(source, |mut s| {
                let buf: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
                let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                while s.write_all(&buf).is_ok() {}
            }),
        ];
        let stop2 = stop.clone();
        let echo_tid = Arc::new(AtomicI32::new(0));
        let tid = echo_tid.clone();
        threads.push(std::thread::spawn(move || {
            // SAFETY: gettid has no memory effects.
            tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            let _ = echo.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        }));
        Ok(Servers {
            stop,
            threads,
            echo_tid,
        })
    }

    fn echo_tid(&self) -> libc::pid_t {
        self.echo_tid.load(Ordering::SeqCst)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// A number read from a cell (its median, its p99, …).
type CellValue = Box<dyn Fn(&Cell) -> Option<f64>>;

/// One test on one way over the rounds.
struct Cell {
    samples: Vec<Sample>,
    failure: Option<String>,
}

impl Cell {
    fn value(&self) -> Option<f64> {
        self.med(|s| Some(s.value))
    }

    fn med(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    }

    fn per_packet(&self, counter: &str) -> Option<f64> {
        self.med(|s| s.per_packet(counter))
    }

    fn cpu(&self, thread: &str) -> Option<f64> {
        self.med(|s| s.cpu.as_ref()?.threads.get(thread).copied())
    }
}

pub struct NetReport {
    host: HostInfo,
    mib: u64,
    udp: u64,
    udp_size: u64,
    rounds: u32,
    /// `[test][way]`
    cells: Vec<Vec<Cell>>,
}

fn fmt_bits(b: Option<f64>) -> String {
    match b {
        Some(b) if b >= 1e9 => format!("{:.2} Gbit/s", b / 1e9),
        Some(b) => format!("{:.0} Mbit/s", b / 1e6),
        None => "-".into(),
    }
}

fn fmt_x(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 0.995 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

impl NetReport {
    fn cell(&self, t: usize, w: Way) -> &Cell {
        &self.cells[t][WAYS.iter().position(|&x| x == w).expect("a way")]
    }

    /// Guest over ceiling, as speed: for round trips, the ceiling's time over the guest's.
    fn ratio(&self, t: usize, w: Way, f: impl Fn(&Cell) -> Option<f64>) -> Option<f64> {
        let (g, c) = (f(self.cell(t, Way::Guest))?, f(self.cell(t, w))?);
        Some(match TESTS[t] {
            Test::UdpRtt => c / g,
            _ => g / c,
        })
    }
}

/// The table's columns: test, the three ways, the guest over the ceilings, exits per frame
/// (VMM, KVM).
const COLUMNS: [Column; 8] = [
    (30, Align::Left),
    (13, Align::Right),
    (13, Align::Right),
    (13, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
    (7, Align::Right),
];

/// `net.json`.
#[derive(Serialize)]
struct Json<'a> {
    schema: &'static str,
    host: JsonHost<'a>,
    method: JsonMethod,
    tests: Vec<JsonTest<'a>>,
}

#[derive(Serialize)]
struct JsonHost<'a> {
    kernel: &'a str,
    cpu: &'a str,
    cpus: usize,
}

#[derive(Serialize)]
struct JsonMethod {
    guest: &'static str,
    veth: &'static str,
    loopback: &'static str,
    tcp: &'static str,
    tcp_mib: u64,
    udp_round_trips: u64,
    udp_warmup: u64,
    udp_bytes: u64,
    udp_timeout_ms: u64,
    rounds: u32,
    exits_per_packet: &'static str,
    ratios: &'static str,
}

#[derive(Serialize)]
struct JsonTest<'a> {
    id: &'static str,
    label: &'static str,
    unit: &'static str,
    guest_over_veth: Option<f64>,
    guest_over_loopback: Option<f64>,
    ways: BTreeMap<&'static str, JsonWay<'a>>,
}

#[derive(Serialize)]
struct JsonWay<'a> {
    status: &'static str,
    failure: Option<&'a str>,
    median: Option<f64>,
    p99_ns: Option<f64>,
    vmm_exits_per_packet: Option<f64>,
    kvm_exits_per_packet: Option<f64>,
    rounds: Vec<JsonSample<'a>>,
}

#[derive(Serialize)]
struct JsonSample<'a> {
    value: f64,
    p99_ns: Option<f64>,
    min_ns: Option<f64>,
    one_cpu_median_ns: Option<f64>,
    one_cpu_p99_ns: Option<f64>,
    lost: u64,
    bytes: u64,
    seconds: f64,
    packets: Option<i64>,
    vmm_exits_per_packet: Option<f64>,
    kvm_exits_per_packet: Option<f64>,
    stats_less_baseline: Option<&'a BTreeMap<String, i64>>,
    cpu_threads: Option<&'a BTreeMap<String, f64>>,
    cpu_system: Option<f64>,
    guest_says: Option<&'a str>,
}

impl<'a> JsonSample<'a> {
    fn of(s: &'a Sample) -> JsonSample<'a> {
        JsonSample {
            value: s.value,
            p99_ns: s.p99,
            min_ns: s.min,
            one_cpu_median_ns: s.one_cpu.map(|x| x.0),
            one_cpu_p99_ns: s.one_cpu.map(|x| x.1),
            lost: s.lost,
            bytes: s.bytes,
            seconds: s.seconds,
            packets: s.packets(),
            vmm_exits_per_packet: s.per_packet("exit.total"),
            kvm_exits_per_packet: s.per_packet("kvm.exits"),
            stats_less_baseline: s.stats.as_ref(),
            cpu_threads: s.cpu.as_ref().map(|c| &c.threads),
            cpu_system: s.cpu.as_ref().map(|c| c.system),
            guest_says: s.guest_says.as_deref(),
        }
    }
}

impl suite::Report for NetReport {
    const JSON: &'static str = "net.json";
    const SVG: &'static str = "net.svg";

    fn table(&self) -> String {
        let h = &self.host;
        let mut t = Table::new(&COLUMNS);
        t.line(
            "Parapet bench net: the PV network interface (net-echo on a TAP device, `parapet run \
             --net`) vs the same traffic over a veth pair and over loopback",
        );
        t.line(format_args!(
            "host: Linux {}, {}, {} CPUs; TCP: {} MiB per transfer, one connection, timed by the \
             host side from connected to the last byte; UDP: {} round trips of {} B, one at a \
             time",
            h.kernel, h.cpu, h.cpus, self.mib, self.udp, self.udp_size
        ));
        t.line(format_args!(
            "{} rounds, ways interleaved, medians of the rounds; g/veth, g/lo: the guest's speed \
             over the ceiling's (round trips: the ceiling's time over the guest's); VMM x, KVM x: \
             exits per frame the backend moved, (run - baseline run) / (rx + tx frames); \
             \"on 1 CPU\": the ceiling's client and server pinned to CPU 0",
            self.rounds
        ));
        t.line("");
        t.row([
            "test",
            "guest (TAP)",
            "veth",
            "loopback",
            "g/veth",
            "g/lo",
            "VMM x",
            "KVM x",
        ]);
        for (ti, &test) in TESTS.iter().enumerate() {
            let g = self.cell(ti, Way::Guest);
            let fmt = |c: &Cell, f: &dyn Fn(&Cell) -> Option<f64>| -> String {
                if c.samples.is_empty() {
                    return "failed".into();
                }
                match test {
                    Test::UdpRtt => f(c).map_or("-".into(), fmt_ns),
                    _ => fmt_bits(f(c)),
                }
            };
            let rows: Vec<(String, CellValue)> = match test {
                Test::UdpRtt => vec![
                    (
                        format!("UDP round trip, median ({} B)", self.udp_size),
                        Box::new(|c: &Cell| c.value()),
                    ),
                    (
                        "UDP round trip, p99".into(),
                        Box::new(|c: &Cell| c.med(|s| s.p99)),
                    ),
                    (
                        "UDP rtt, median, on 1 CPU".into(),
                        Box::new(|c: &Cell| c.med(|s| Some(s.one_cpu?.0))),
                    ),
                ],
                _ => vec![(test.label().to_owned(), Box::new(|c: &Cell| c.value()))],
            };
            for (k, (label, f)) in rows.iter().enumerate() {
                let exits = |counter| {
                    if k == 0 {
                        fmt_x(g.per_packet(counter))
                    } else {
                        String::new()
                    }
                };
                t.row([
                    label.clone(),
                    fmt(g, f.as_ref()),
                    fmt(self.cell(ti, Way::Veth), f.as_ref()),
                    fmt(self.cell(ti, Way::Loopback), f.as_ref()),
                    fmt_x(self.ratio(ti, Way::Veth, f.as_ref())),
                    fmt_x(self.ratio(ti, Way::Loopback, f.as_ref())),
                    exits("exit.total"),
                    exits("kvm.exits"),
                ]);
            }
        }
        for (ti, &test) in TESTS.iter().enumerate() {
            for &w in &WAYS {
                if let Some(f) = &self.cell(ti, w).failure {
                    t.line(format_args!(
                        "  {} over {}: failed: {f}",
                        test.id(),
                        w.name()
                    ));
                }
            }
        }
        t.line("");
        t.line(
            "guest, per frame: blocks (sched_op) / halt wake-ups / injected interrupts; CPU \
             during the test (1.0 = one core): VMM threads, whole host",
        );
        for (ti, &test) in TESTS.iter().enumerate() {
            let g = self.cell(ti, Way::Guest);
            let mut threads: Vec<String> = g
                .samples
                .iter()
                .filter_map(|s| s.cpu.as_ref())
                .flat_map(|c| c.threads.keys().cloned())
                .collect();
            threads.sort();
            threads.dedup();
            let cpu: Vec<String> = threads
                .iter()
                .filter_map(|n| {
                    let v = g.cpu(n)?;
                    (v >= 0.01).then(|| format!("{n} {v:.2}"))
                })
                .collect();
            t.line(format_args!(
                "  {:<18} {}/{}/{} per frame; CPU {}, host {} (veth: host {}){}",
                test.id(),
                fmt_x(g.per_packet("hypercall.sched_op")),
                fmt_x(g.per_packet("kvm.halt_wakeup")),
                fmt_x(g.per_packet("kvm.irq_injections")),
                if cpu.is_empty() {
                    "-".into()
                } else {
                    cpu.join(", ")
                },
                fmt_x(g.med(|s| Some(s.cpu.as_ref()?.system))),
                fmt_x(
                    self.cell(ti, Way::Veth)
                        .med(|s| Some(s.cpu.as_ref()?.system))
                ),
                g.samples
                    .last()
                    .and_then(|s| s.guest_says.as_deref())
                    .map_or(String::new(), |l| format!("; guest: \"{l}\"")),
            ));
        }
        let lost: u64 = self.cells[2]
            .iter()
            .flat_map(|c| &c.samples)
            .map(|s| s.lost)
            .sum();
        let mut goals = Vec::new();
        for (ti, &test) in TESTS.iter().enumerate() {
            if test == Test::UdpRtt {
                continue;
            }
            if let Some(v) = self.cell(ti, Way::Guest).value() {
                goals.push(format!(
                    "{} {} ({})",
                    test.id(),
                    fmt_bits(Some(v)),
                    if v >= TCP_GOAL { "met" } else { "NOT met" }
                ));
            }
        }
        t.line(format_args!(
            "goal: >= 1 Gbit/s TCP: {}; UDP requests lost (all ways, all rounds): {lost}",
            goals.join(", ")
        ));
        t.into_string()
    }

    fn json(&self) -> impl Serialize + '_ {
        let h = &self.host;
        let tests = TESTS
            .iter()
            .enumerate()
            .map(|(ti, &test)| {
                let ways = WAYS
                    .iter()
                    .map(|&w| {
                        let c = self.cell(ti, w);
                        (
                            w.name(),
                            JsonWay {
                                status: if c.samples.is_empty() {
                                    "failed"
                                } else {
                                    "measured"
                                },
                                failure: c.failure.as_deref(),
                                median: c.value(),
                                p99_ns: c.med(|s| s.p99),
                                vmm_exits_per_packet: c.per_packet("exit.total"),
                                kvm_exits_per_packet: c.per_packet("kvm.exits"),
                                rounds: c.samples.iter().map(JsonSample::of).collect(),
                            },
                        )
                    })
                    .collect();
                JsonTest {
                    id: test.id(),
                    label: test.label(),
                    unit: if test == Test::UdpRtt {
                        "ns (round trip)"
                    } else {
                        "bits/s"
                    },
                    guest_over_veth: self.ratio(ti, Way::Veth, Cell::value),
                    guest_over_loopback: self.ratio(ti, Way::Loopback, Cell::value),
                    ways,
                }
            })
            .collect();
        Json {
            schema: "parapet-bench-net/1",
            host: JsonHost {
                kernel: &h.kernel,
                cpu: &h.cpu,
                cpus: h.cpus,
            },
            method: JsonMethod {
                guest: "examples/net-echo on tap0 in its own namespace, one `parapet run --stats` per test; the client is xtask in that namespace",
                veth: "xtask's servers in one namespace, its client in another, over a veth pair",
                loopback: "xtask's servers and client in one namespace, 127.0.0.1",
                tcp: "one connection; host->peer: write, half-close, wait for the peer's close; peer->host: read; timed from connected to the last byte",
                tcp_mib: self.mib,
                udp_round_trips: self.udp,
                udp_warmup: UDP_WARMUP,
                udp_bytes: self.udp_size,
                udp_timeout_ms: UDP_TIMEOUT.as_millis() as u64,
                rounds: self.rounds,
                exits_per_packet: "(counter of the run - counter of a baseline run) / (net0.rx_packets + net0.tx_packets, less the baseline's)",
                ratios: "guest over ceiling as speed: throughput guest/ceiling, round trip ceiling/guest",
            },
            tests,
        }
    }

    fn chart(&self, path: &Path) -> Result<()> {
        chart::ratios(
            path,
            &format!(
                "PV network: guest on a TAP device / veth pair ({} rounds, medians)",
                self.rounds
            ),
            &self.bars(),
        )
    }
}

impl NetReport {
    fn bars(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        for (t, &test) in TESTS.iter().enumerate() {
            let g = self.cell(t, Way::Guest);
            let veth = self.cell(t, Way::Veth);
            let one_cpu = veth.med(|s| Some(s.one_cpu?.0));
            let ratio = match test {
                // Against the stable ceiling: the veth pair's ends on one CPU.
                Test::UdpRtt => one_cpu.zip(g.value()).map(|(c, g)| c / g),
                _ => self.ratio(t, Way::Veth, Cell::value),
            };
            let Some(ratio) = ratio else {
                continue;
            };
            let (label, goal) = match test {
                Test::UdpRtt => (
                    format!(
                        "{} median: {} vs {} (veth on 1 CPU)",
                        test.label(),
                        g.value().map_or("-".into(), fmt_ns),
                        one_cpu.map_or("-".into(), fmt_ns)
                    ),
                    None,
                ),
                _ => (
                    format!(
                        "{}: {} vs {}",
                        test.label(),
                        fmt_bits(g.value()),
                        fmt_bits(self.cell(t, Way::Veth).value())
                    ),
                    // 1 Gbit/s as a share of the veth ceiling.
                    self.cell(t, Way::Veth).value().map(|v| TCP_GOAL / v),
                ),
            };
            bars.push(Bar { label, ratio, goal });
        }
        bars
    }
}
