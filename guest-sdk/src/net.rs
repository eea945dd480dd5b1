//! PV network interfaces (docs/abi.md §10.3; `parapet run --net tap=NAME[,mac=…]`): a
//! [`pv_drivers::netif::NetifFront`] on two heap pages, granted and connected, with pools of
//! granted packet pages, driven with the device's event channel; and, with the `smoltcp`
//! feature, an implementation of smoltcp's `phy::Device`, so a guest runs smoltcp's ARP, IPv4,
//! ICMP, UDP and TCP over it.
//!
//! ```ignore
//! let mut net = Net::connect()?;
//! let cidr: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
//! let mut iface = net.interface(cidr, None);
//! let mut sockets = SocketSet::new(Vec::new());
//! // … add sockets …
//! loop {
//!     net.poll_interface(&mut iface, &mut sockets);
//!     // … use the sockets …
//!     net.wait_interface(&mut iface, &sockets, None);   // blocks (SCHEDOP_block) until a
//! }                                                     // frame arrives or smoltcp's timer is due
//! ```
//!
//! # Pages and grants
//!
//! [`Net::connect`] allocates the two ring pages (granted read/write), `rx_buffers` receive
//! pages (granted read/write) and `tx_buffers` transmit pages (granted read-only), once: the
//! grants stay in place while the device is connected and the pages are reused, so sending or
//! receiving a frame grants nothing. Every receive page is posted at connect; a page comes back
//! with a frame, which is copied out of it, and is posted again on the next [`Net::poll`]. A
//! transmit page takes one frame at offset 0 and is reused only after its transmit response
//! arrived. Request ids are pool indices.
//!
//! # Notifications
//!
//! Frames are published one by one, with a doorbell only when the backend asked for one (it
//! sleeps); reposted receive pages are published together by [`Net::poll`]. [`Net::wait`]
//! arms the receive ring's event index (and the transmit ring's, when every transmit page is in
//! flight) and blocks in [`timer::wait_until`], so the guest sleeps in `SCHEDOP_block` until the
//! backend delivers something or the deadline passes.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use parapet_abi::Errno;
use parapet_abi::device::kind;
use parapet_abi::event_channel::DOMID_BACKEND;
use parapet_abi::netif::{
    CONFIG_MAC, CONFIG_MTU, NETIF_MAX_PACKET, NETIF_RSP_OKAY, NetifTxRequest, RING_RX, RING_TX,
};
use pv_drivers::netif::{MAX_IDS, NetifFront, RxCompletion, RxPacket};
use pv_drivers::shared::SharedPage;

use crate::device::{self, Connection, ConnectionError};
use crate::event_channel::{self, Port};
use crate::grant_table::{self, GrantError, GrantRef};
use crate::page::{self, GuestPage, PageBox};
use crate::time::Instant;
use crate::timer;

/// Ethernet header bytes (destination, source, type).
pub const ETHERNET_HEADER: usize = 14;

/// Why the interface could not be set up or torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Start-info lists no network interface (run with `--net tap=NAME`).
    #[error("no network interface (run with --net tap=NAME)")]
    NoDevice,
    /// The device's MAC address (`DeviceInfo::config[0]`) is not a unicast address.
    #[error("bad MAC address {}", MacDisplay(*.0))]
    BadMac([u8; 6]),
    /// A [`NetConfig`] asked for more than 256 pages in a pool.
    #[error("a page pool larger than its ring")]
    BadConfig,
    /// The heap has no room for the pages.
    #[error("out of memory for packet pages")]
    NoMemory,
    /// Granting a page failed.
    #[error("grant: {0}")]
    Grant(GrantError),
    /// `device_op` failed.
    #[error("device_op: {0}")]
    Device(Errno),
}

impl From<ConnectionError> for NetError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::NoMemory => NetError::NoMemory,
            ConnectionError::Grant(e) => NetError::Grant(e),
            ConnectionError::Device(e) => NetError::Device(e),
        }
    }
}

/// Formats a MAC address as `xx:xx:xx:xx:xx:xx`.
#[derive(Clone, Copy, Debug)]
pub struct MacDisplay(pub [u8; 6]);

impl fmt::Display for MacDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The MAC address in a network device's `config[CONFIG_MAC]` (bytes 0–5 of the little-endian
/// `u64`), if it is a unicast address.
fn mac_from_config(config: u64) -> Result<[u8; 6], NetError> {
    let bytes = config.to_le_bytes();
    let mac: [u8; 6] = bytes[..6].try_into().expect("6 bytes");
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(NetError::BadMac(mac));
    }
    Ok(mac)
}

/// How many packet pages [`Net::connect_with`] sets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Receive pages, all posted (0–256).
    pub rx_buffers: u16,
    /// Transmit pages (0–256): frames in flight at once.
    pub tx_buffers: u16,
}

impl Default for NetConfig {
    /// A full receive ring (256 pages) and 128 transmit pages: 1.5 MiB of heap.
    fn default() -> Self {
        NetConfig {
            rx_buffers: 256,
            tx_buffers: 128,
        }
    }
}

/// The guest's own packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes of the frames received.
    pub rx_bytes: u64,
    /// Receive pages that came back without a frame (an error status).
    pub rx_errors: u64,
    /// Frames the backend sent (transmit responses `OKAY`).
    pub tx_packets: u64,
    /// Bytes of the frames the backend sent.
    pub tx_bytes: u64,
    /// Frames not sent: answered `ERROR` or `DROPPED`, or dropped here because every transmit
    /// page was in flight.
    pub tx_dropped: u64,
    /// Doorbells rung.
    pub notifies: u64,
    /// Times [`Net::wait`] blocked.
    pub waits: u64,
}

/// A granted page of a pool.
#[derive(Debug)]
struct Buffer {
    page: PageBox,
    gref: GrantRef,
}

impl Buffer {
    fn new(readonly: bool) -> Result<Buffer, NetError> {
        let page = PageBox::try_new().ok_or(NetError::NoMemory)?;
        let gref = grant_table::grant_access(page.frame(), DOMID_BACKEND, readonly)
            .map_err(NetError::Grant)?;
        Ok(Buffer { page, gref })
    }
}

/// Revokes the grants of `buffers`; a page whose grant the backend still holds is leaked, not
/// freed. Returns whether every grant was revoked.
fn release(buffers: &mut Vec<Buffer>) -> bool {
    let mut all = true;
    for b in buffers.drain(..) {
        if grant_table::end_access(b.gref).is_err() {
            all = false;
            core::mem::forget(b);
        }
    }
    all
}

/// Everything but the receive scratch buffer, so a transmit token can borrow it while a receive
/// token borrows the scratch buffer.
#[derive(Debug)]
struct Link {
    front: NetifFront<GuestPage>,
    port: Port,
    tx_pages: Vec<Buffer>,
    /// Transmit page ids free for a frame.
    tx_free: Vec<u16>,
    /// The frame length in flight on each transmit page.
    tx_len: Vec<u16>,
    /// Where smoltcp builds a frame before it is copied into a transmit page.
    tx_frame: Box<[u8; NETIF_MAX_PACKET]>,
    rx_pages: Vec<Buffer>,
    /// Receive pages holding a frame, in arrival order.
    rx_ready: VecDeque<RxPacket>,
    /// Receive pages to post again.
    rx_idle: Vec<u16>,
    stats: NetStats,
}

impl Link {
    fn kick(&mut self) {
        self.stats.notifies += 1;
        event_channel::notify(self.port);
    }

    fn commit(&mut self) {
        if self.front.commit() {
            self.kick();
        }
    }

    /// Collects responses, posts idle receive pages, publishes.
    fn poll(&mut self) {
        while let Some(r) = self.front.next_tx_response() {
            let id = usize::from(r.id);
            if id >= self.tx_pages.len() {
                continue; // not one of ours (a raw request through `front()`)
            }
            match r.status {
                NETIF_RSP_OKAY => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += u64::from(self.tx_len[id]);
                }
                _ => self.stats.tx_dropped += 1,
            }
            self.tx_free.push(r.id);
        }
        while let Some(c) = self.front.next_rx() {
            if usize::from(c.id()) >= self.rx_pages.len() {
                continue;
            }
            match c {
                RxCompletion::Packet(p) => self.rx_ready.push_back(p),
                RxCompletion::Error { id, .. } => {
                    self.stats.rx_errors += 1;
                    self.rx_idle.push(id);
                }
            }
        }
        let mut posted = false;
        while let Some(id) = self.rx_idle.pop() {
            if self
                .front
                .post_rx(id, self.rx_pages[usize::from(id)].gref.0)
                .is_err()
            {
                break;
            }
            posted = true;
        }
        if posted {
            self.commit();
        }
    }

    /// Copies the next received frame into `buf` and queues its page for reposting.
    fn take_rx(&mut self, buf: &mut [u8; NETIF_MAX_PACKET]) -> Option<usize> {
        if self.rx_ready.is_empty() {
            self.poll();
        }
        let p = self.rx_ready.pop_front()?;
        self.rx_pages[usize::from(p.id)]
            .page
            .read(p.offset, &mut buf[..p.len]);
        self.rx_idle.push(p.id);
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += p.len as u64;
        Some(p.len)
    }

    /// Every transmit page is in flight.
    fn tx_starved(&self) -> bool {
        self.tx_free.is_empty() && !self.tx_pages.is_empty()
    }

    fn has_tx_page(&mut self) -> bool {
        if self.tx_free.is_empty() {
            self.poll();
        }
        !self.tx_free.is_empty()
    }

    /// Sends one frame built by `build` in a `len`-byte buffer (dropped, and counted, if `len`
    /// is out of range or every transmit page is in flight).
    fn send_with<R>(&mut self, len: usize, build: impl FnOnce(&mut [u8]) -> R) -> R {
        if len == 0 || len > NETIF_MAX_PACKET || !self.has_tx_page() {
            let mut scratch = alloc::vec![0u8; len];
            let r = build(&mut scratch);
            self.stats.tx_dropped += 1;
            return r;
        }
        let r = build(&mut self.tx_frame[..len]);
        let id = self.tx_free.pop().expect("checked above");
        let page = &self.tx_pages[usize::from(id)];
        page.page.write(0, &self.tx_frame[..len]);
        let request = NetifTxRequest {
            gref: page.gref.0,
            offset: 0,
            flags: 0,
            id,
            size: len as u16,
        };
        self.tx_len[usize::from(id)] = len as u16;
        self.front
            .push_tx(&request)
            .expect("a free page has a free slot and id");
        self.commit();
        r
    }
}

/// A connected network interface. Dropping it disconnects the device and revokes the grants;
/// pages whose grants cannot be revoked are leaked rather than freed under the backend.
#[derive(Debug)]
pub struct Net {
    link: Link,
    /// The frame a receive token hands out.
    rx_frame: Box<[u8; NETIF_MAX_PACKET]>,
    conn: Connection,
    mac: [u8; 6],
    mtu: usize,
}

impl Net {
    /// Connects the first network interface with the default [`NetConfig`].
    pub fn connect() -> Result<Net, NetError> {
        Net::connect_with(NetConfig::default())
    }

    /// Finds the first network interface, sets up its rings and page pools, posts every receive
    /// page, unmasks the device's port and connects.
    pub fn connect_with(config: NetConfig) -> Result<Net, NetError> {
        let (index, info) = device::find(kind::NET).ok_or(NetError::NoDevice)?;
        let mac = mac_from_config(info.config[CONFIG_MAC])?;
        if config.rx_buffers > MAX_IDS || config.tx_buffers > MAX_IDS {
            return Err(NetError::BadConfig);
        }
        let mtu = match info.config[CONFIG_MTU] {
            0 => NETIF_MAX_PACKET,
            ip_mtu => (ip_mtu as usize + ETHERNET_HEADER).min(NETIF_MAX_PACKET),
        };
        // The rings first (initialised by `NetifFront::new` before the backend may use them:
        // only `DEVOP_connect` hands them over), then the pools. On failure, dropping `conn`
        // revokes the ring grants, `release` those of the pools.
        let mut conn = Connection::new(index, info, 2)?;
        let mut rx_pages = Vec::new();
        let mut tx_pages = Vec::new();
        let built = (|| {
            for _ in 0..config.rx_buffers {
                rx_pages.push(Buffer::new(false)?);
            }
            for _ in 0..config.tx_buffers {
                tx_pages.push(Buffer::new(true)?);
            }
            Ok(())
        })();
        if let Err(e) = built {
            release(&mut rx_pages);
            release(&mut tx_pages);
            return Err(e);
        }
        let front = NetifFront::new(conn.ring(RING_TX), conn.ring(RING_RX));
        let mut link = Link {
            front,
            port: conn.port(),
            tx_free: (0..config.tx_buffers).rev().collect(),
            tx_len: alloc::vec![0; tx_pages.len()],
            tx_pages,
            tx_frame: Box::new([0; NETIF_MAX_PACKET]),
            rx_idle: (0..config.rx_buffers).rev().collect(),
            rx_pages,
            rx_ready: VecDeque::new(),
            stats: NetStats::default(),
        };
        while let Some(id) = link.rx_idle.pop() {
            let gref = link.rx_pages[usize::from(id)].gref;
            link.front.post_rx(id, gref.0).expect("at most one ring");
        }
        let _ = link.front.commit();
        if let Err(e) = conn.connect() {
            // Dropping `link` revokes nothing: release the pools here (`conn` its rings).
            release(&mut link.rx_pages);
            release(&mut link.tx_pages);
            return Err(e.into());
        }
        let mut net = Net {
            link,
            rx_frame: Box::new([0; NETIF_MAX_PACKET]),
            conn,
            mac,
            mtu,
        };
        // The backend serves what was published before it attached; a kick costs nothing here.
        net.link.kick();
        Ok(net)
    }

    /// The device index.
    pub fn index(&self) -> u32 {
        self.conn.index()
    }

    /// The device's event channel.
    pub fn port(&self) -> Port {
        self.link.port
    }

    /// The interface's MAC address: the one start-info gave at connect, or the last one
    /// [`refresh_mac`](Self::refresh_mac) adopted.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Reads the device's MAC address afresh from start-info (`DeviceInfo::config[CONFIG_MAC]`)
    /// and adopts it; returns the address now in use. Call it after a restore
    /// ([`crate::snapshot::suspend`] returned `Restored`): the VMM may have given this clone an
    /// address of its own (`parapet restore FILE --net tap=NAME,mac=…`) while the domain was
    /// stopped. An address that is not unicast is refused ([`NetError::BadMac`]) and the old
    /// one kept. The device stays connected: nothing else changes. With smoltcp, give the
    /// interface the new address too: `iface.set_hardware_addr(net.hardware_addr())`.
    pub fn refresh_mac(&mut self) -> Result<[u8; 6], NetError> {
        let config = page::start_info_device_config(self.conn.index(), CONFIG_MAC)
            .ok_or(NetError::NoDevice)?;
        self.mac = mac_from_config(config)?;
        Ok(self.mac)
    }

    /// The largest frame, Ethernet header included (MTU + 14, at most 1514).
    pub fn max_frame(&self) -> usize {
        self.mtu
    }

    /// The grant references of the ring pages: `[tx, rx]`.
    pub fn ring_grefs(&self) -> [GrantRef; 2] {
        [self.conn.ring_gref(RING_TX), self.conn.ring_gref(RING_RX)]
    }

    /// The counters.
    pub fn stats(&self) -> NetStats {
        self.link.stats
    }

    /// The frontend itself, for tests that write raw requests. Ids below the pool sizes belong
    /// to the pools: use others, and do not mix raw requests with [`Net`]'s own traffic.
    pub fn front(&mut self) -> &mut NetifFront<GuestPage> {
        &mut self.link.front
    }

    /// Rings the doorbell unconditionally.
    pub fn kick(&mut self) {
        self.link.kick();
    }

    /// Publishes pushed requests (e.g. raw ones through [`front`](Self::front)), ringing the
    /// doorbell if the backend asked for it.
    pub fn commit(&mut self) {
        self.link.commit();
    }

    /// Collects transmit and receive responses and posts the receive pages that are free again.
    pub fn poll(&mut self) {
        self.link.poll();
    }

    /// Whether a received frame is waiting.
    pub fn rx_ready(&self) -> bool {
        !self.link.rx_ready.is_empty()
    }

    /// Copies the next received frame into `buf` (which must hold [`NETIF_MAX_PACKET`] bytes)
    /// and returns its length.
    pub fn recv(&mut self, buf: &mut [u8; NETIF_MAX_PACKET]) -> Option<usize> {
        self.link.take_rx(buf)
    }

    /// The next received frame, copied out of its page into a buffer of the device (valid until
    /// the next call that takes `&mut self`).
    pub fn recv_frame(&mut self) -> Option<&[u8]> {
        let len = self.link.take_rx(&mut self.rx_frame)?;
        Some(&self.rx_frame[..len])
    }

    /// Sends `frame` (a whole Ethernet frame); returns `false` if it was dropped because it is
    /// empty, too long or every transmit page is in flight.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let before = self.link.stats.tx_dropped;
        self.link
            .send_with(frame.len(), |buf| buf.copy_from_slice(frame));
        self.link.stats.tx_dropped == before
    }

    /// Blocks until a received frame is waiting or `deadline` passes; returns whether a frame
    /// is waiting. Also wakes when a transmit page comes back while all were in flight.
    pub fn wait(&mut self, deadline: Option<Instant>) -> bool {
        self.wait_or(deadline, || false)
    }

    /// [`Net::wait`] that also returns as soon as `stop()` holds, e.g.
    /// [`shutdown::requested`](crate::shutdown::requested): `stop` is checked before the wait
    /// blocks (with interrupts masked, so an event that makes it true cannot slip in between)
    /// and again after every event. Returns whether a frame is waiting; the caller checks
    /// `stop` itself.
    pub fn wait_or(&mut self, deadline: Option<Instant>, mut stop: impl FnMut() -> bool) -> bool {
        self.link.poll();
        if self.rx_ready() {
            return true;
        }
        self.link.stats.waits += 1;
        let tx_starved = self.link.tx_starved();
        let front = &mut self.link.front;
        timer::wait_until(deadline, || {
            stop()
                || if tx_starved {
                    front.final_check()
                } else {
                    front.final_check_rx()
                }
        });
        self.link.poll();
        self.rx_ready()
    }

    /// Blocks until every frame handed to the device has its transmit response (the backend
    /// sent it to the host, or dropped it), or `deadline` passes; returns whether all were
    /// answered. Call it before powering off, or the last frames may never leave.
    pub fn flush(&mut self, deadline: Instant) -> bool {
        loop {
            self.link.poll();
            if self.link.tx_free.len() == self.link.tx_pages.len() {
                return true;
            }
            if crate::time::now() >= deadline {
                return false;
            }
            let front = &mut self.link.front;
            timer::wait_until(Some(deadline), || front.final_check());
        }
    }

    /// Disconnects, masks the port and revokes every grant. On failure, pages the backend may
    /// still map are leaked, never freed.
    pub fn disconnect(mut self) -> Result<(), NetError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), NetError> {
        let rings = self.conn.disconnect();
        if self.conn.is_connected() {
            // DEVOP_disconnect failed: the backend may still use every page.
            return rings.map_err(NetError::from);
        }
        let rx = release(&mut self.link.rx_pages);
        let tx = release(&mut self.link.tx_pages);
        if rings.is_ok() && rx && tx {
            Ok(())
        } else {
            Err(NetError::Grant(GrantError::Busy))
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.teardown().is_err() && self.conn.is_connected() {
            // The backend may still use every page: never give them back to the heap (the
            // connection keeps the ring pages).
            core::mem::forget(core::mem::take(&mut self.link.rx_pages));
            core::mem::forget(core::mem::take(&mut self.link.tx_pages));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// smoltcp.

#[cfg(feature = "smoltcp")]
pub use self::smoltcp_device::{NetRxToken, NetTxToken, ip_config, smoltcp_now};
/// The smoltcp crate this module implements `phy::Device` for (use it rather than a separate
/// dependency, so the versions match).
#[cfg(feature = "smoltcp")]
pub use smoltcp;

#[cfg(feature = "smoltcp")]
mod smoltcp_device {
    use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
    use smoltcp::phy::{self, DeviceCapabilities, Medium};
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

    use super::{Link, NETIF_MAX_PACKET, Net};
    use crate::start_info::find_param;
    use crate::time::{self, Instant};

    /// The interface address and gateway from a command line: `ip=A.B.C.D/N` (required) and
    /// `gw=A.B.C.D` (optional). Returns a one-line reason if they are missing or malformed.
    pub fn ip_config(cmdline: &str) -> Result<(Ipv4Cidr, Option<Ipv4Address>), &'static str> {
        let ip = find_param(cmdline, "ip").ok_or("no ip=A.B.C.D/N on the command line")?;
        let cidr: Ipv4Cidr = ip.parse().map_err(|_| "ip= is not A.B.C.D/N")?;
        let gw = match find_param(cmdline, "gw") {
            Some(g) => Some(g.parse().map_err(|_| "gw= is not A.B.C.D")?),
            None => None,
        };
        Ok((cidr, gw))
    }

    /// The SDK clock as smoltcp's: microseconds since the domain was built.
    pub fn smoltcp_now() -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros((time::now().as_nanos() / 1_000) as i64)
    }

    /// A received frame (already copied out of its page).
    #[derive(Debug)]
    pub struct NetRxToken<'a> {
        frame: &'a [u8],
    }

    impl phy::RxToken for NetRxToken<'_> {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(self.frame)
        }
    }

    /// Room for one frame: a transmit page, taken when the token is consumed.
    #[derive(Debug)]
    pub struct NetTxToken<'a> {
        link: &'a mut Link,
    }

    impl phy::TxToken for NetTxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            self.link.send_with(len, f)
        }
    }

    impl phy::Device for Net {
        type RxToken<'a> = NetRxToken<'a>;
        type TxToken<'a> = NetTxToken<'a>;

        fn receive(
            &mut self,
            _timestamp: smoltcp::time::Instant,
        ) -> Option<(NetRxToken<'_>, NetTxToken<'_>)> {
            let len = self.link.take_rx(&mut self.rx_frame)?;
            Some((
                NetRxToken {
                    frame: &self.rx_frame[..len],
                },
                NetTxToken {
                    link: &mut self.link,
                },
            ))
        }

        fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<NetTxToken<'_>> {
            self.link.has_tx_page().then_some(NetTxToken {
                link: &mut self.link,
            })
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = self.mtu.min(NETIF_MAX_PACKET);
            caps.max_burst_size = None;
            // `checksum` stays at its default: smoltcp computes and verifies every checksum.
            caps
        }
    }

    impl Net {
        /// The MAC address as smoltcp's hardware address.
        pub fn hardware_addr(&self) -> HardwareAddress {
            HardwareAddress::Ethernet(EthernetAddress(self.mac))
        }

        /// A smoltcp interface on this device with address `cidr` and, if given, a default
        /// route through `gateway`. Its random seed comes from the TSC.
        pub fn interface(&mut self, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) -> Interface {
            let mut config = Config::new(self.hardware_addr());
            config.random_seed = time::rdtsc()
                ^ u64::from_le_bytes([
                    self.mac[0],
                    self.mac[1],
                    self.mac[2],
                    self.mac[3],
                    self.mac[4],
                    self.mac[5],
                    0x5a,
                    0xa5,
                ]);
            let mut iface = Interface::new(config, self, smoltcp_now());
            iface.update_ip_addrs(|addrs| {
                let _ = addrs.push(IpCidr::Ipv4(cidr));
            });
            if let Some(gw) = gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
            }
            iface
        }

        /// `iface.poll` at the current time: receives what arrived, sends what the sockets
        /// have queued.
        pub fn poll_interface(
            &mut self,
            iface: &mut Interface,
            sockets: &mut SocketSet<'_>,
        ) -> PollResult {
            iface.poll(smoltcp_now(), self, sockets)
        }

        /// Blocks until a frame arrives, smoltcp's next timer is due (`iface.poll_delay`), or
        /// `deadline` passes, whichever comes first (when smoltcp has frames to send but every
        /// transmit page is in flight: until a page comes back). Returns whether a frame is
        /// waiting.
        pub fn wait_interface(
            &mut self,
            iface: &mut Interface,
            sockets: &SocketSet<'_>,
            deadline: Option<Instant>,
        ) -> bool {
            self.wait_interface_or(iface, sockets, deadline, || false)
        }

        /// [`Net::wait_interface`] that also returns as soon as `stop()` holds, e.g.
        /// [`shutdown::requested`](crate::shutdown::requested) (see [`Net::wait_or`]). Returns
        /// whether a frame is waiting; the caller checks `stop` itself.
        pub fn wait_interface_or(
            &mut self,
            iface: &mut Interface,
            sockets: &SocketSet<'_>,
            deadline: Option<Instant>,
            stop: impl FnMut() -> bool,
        ) -> bool {
            let due = iface
                .poll_delay(smoltcp_now(), sockets)
                .map(|d| time::now() + core::time::Duration::from_micros(d.total_micros()));
            let until = match (due, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if until.is_some_and(|t| t <= time::now()) {
                // smoltcp has work now. If it is waiting for a transmit page, sleep until one
                // comes back (or a frame arrives) instead of spinning.
                self.link.poll();
                if !self.link.tx_starved() || self.rx_ready() {
                    return self.rx_ready();
                }
                return self.wait_or(deadline, stop);
            }
            self.wait_or(until, stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_device_before_boot() {
        assert_eq!(Net::connect().err(), Some(NetError::NoDevice));
    }

    #[test]
    fn macs_come_from_the_low_six_bytes_and_must_be_unicast() {
        assert_eq!(
            mac_from_config(0xffff_0c0b_0a09_5002),
            Ok([0x02, 0x50, 0x09, 0x0a, 0x0b, 0x0c])
        );
        assert_eq!(mac_from_config(0), Err(NetError::BadMac([0; 6])));
        assert_eq!(
            mac_from_config(0x01),
            Err(NetError::BadMac([1, 0, 0, 0, 0, 0]))
        );
    }

    #[test]
    fn macs_format_like_ip_link() {
        let m = MacDisplay([0x02, 0x50, 0x50, 0xab, 0x0c, 0xff]);
        assert_eq!(alloc::format!("{m}"), "02:50:50:ab:0c:ff");
    }
}
