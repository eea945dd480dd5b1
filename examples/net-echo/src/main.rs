//! Echo servers on the PV network interface: smoltcp over `guest_sdk::net`, with a static IPv4
//! address from the command line. It answers ping, and:
//!
//! | port | service |
//! |---|---|
//! | UDP 7 | echo (RFC 862): every datagram goes back to its sender, byte for byte |
//! | TCP 7 | echo: every byte goes back on the same connection, until the client closes (four connections at once) |
//! | TCP 9 | discard (RFC 863): reads and drops everything; prints the byte count and rate when the client closes (for host→guest throughput) |
//! | TCP 19 | source: sends a repeating pattern as fast as the client reads until it closes (for guest→host throughput; the pattern is 0, 1, …, 255, 0, …) |
//!
//! ```text
//! parapet run net-echo --net tap=tap0 --cmdline "ip=10.77.0.2/24 [gw=10.77.0.1] [count=N]"
//! ```
//!
//! Output: `net-echo: udp+tcp echo on A.B.C.D port 7, discard 9, source 19 (mac M)`, then per
//! finished discard/source connection `net-echo: tcp/9 received N bytes in T us (R Mbit/s)` or
//! `net-echo: tcp/19 sent N bytes in T us (R Mbit/s)`. With `count=N` it powers off with exit
//! code 0 after echoing N UDP datagrams, printing `net-echo: echoed N datagrams` and the
//! guest's counters (`net-echo: stats rx_packets … tx_packets …`). Without it it runs until
//! powered off. A missing or malformed `ip=` prints a usage line and exits 2; no network
//! interface exits 3.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use guest_sdk::net::smoltcp::iface::{SocketHandle, SocketSet};
use guest_sdk::net::smoltcp::socket::{tcp, udp};
use guest_sdk::net::{MacDisplay, Net, ip_config};
use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::time::{self, Instant};

guest_sdk::entry!(main);

const USAGE: &str = "usage: net-echo ip=A.B.C.D/N [gw=A.B.C.D] [count=N]";
const ECHO: u16 = 7;
const DISCARD: u16 = 9;
const SOURCE: u16 = 19;
const TCP_ECHO_SOCKETS: usize = 4;
/// The big socket buffer of each throughput port (discard: receive, source: send); smoltcp
/// scales its window to fit. 1 MiB covers the bandwidth-delay product of a loaded 2-core host.
const BULK_BUFFER: usize = 1024 * 1024;

/// A discard or source connection's progress.
#[derive(Debug, Default)]
struct Bulk {
    bytes: u64,
    started: Option<Instant>,
}

fn main() -> u32 {
    let line = cmdline();
    let (cidr, gw) = match ip_config(line) {
        Ok(c) => c,
        Err(why) => {
            println!("net-echo: {why}; {USAGE}");
            return 2;
        }
    };
    let count = match find_param(line, "count").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            println!("net-echo: count= is not a number; {USAGE}");
            return 2;
        }
    };
    let mut net = match Net::connect() {
        Ok(n) => n,
        Err(e) => {
            println!("net-echo: {e}");
            return 3;
        }
    };
    let mut iface = net.interface(cidr, gw);
    let mut sockets = SocketSet::new(Vec::new());
    let udp_handle = {
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 128], vec![0; 128 * 1024]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 128], vec![0; 128 * 1024]);
        let mut s = udp::Socket::new(rx, tx);
        s.bind(ECHO).expect("port 7 is a valid endpoint");
        sockets.add(s)
    };
    let tcp_socket = |rx: usize, tx: usize| {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        )
    };
    let echo: Vec<SocketHandle> = (0..TCP_ECHO_SOCKETS)
        .map(|_| sockets.add(tcp_socket(16 * 1024, 16 * 1024)))
        .collect();
    let discard = sockets.add(tcp_socket(BULK_BUFFER, 4096));
    let source = sockets.add(tcp_socket(4096, BULK_BUFFER));
    let (mut discard_state, mut source_state) = (Bulk::default(), Bulk::default());
    let pattern: Vec<u8> = (0..=255u8).cycle().take(64 * 1024 + 256).collect();
    println!(
        "net-echo: udp+tcp echo on {} port {ECHO}, discard {DISCARD}, source {SOURCE} (mac {})",
        cidr.address(),
        MacDisplay(net.mac())
    );
    let mut echoed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        net.poll_interface(&mut iface, &mut sockets);
        echoed += echo_udp(sockets.get_mut::<udp::Socket>(udp_handle), &mut buf);
        if count.is_some_and(|n| echoed >= n) {
            // Let the last echoes out before powering off.
            net.poll_interface(&mut iface, &mut sockets);
            net.flush(time::now() + Duration::from_secs(1));
            break;
        }
        for h in &echo {
            echo_tcp(sockets.get_mut::<tcp::Socket>(*h), &mut buf);
        }
        run_discard(sockets.get_mut::<tcp::Socket>(discard), &mut discard_state);
        run_source(
            sockets.get_mut::<tcp::Socket>(source),
            &mut source_state,
            &pattern,
        );
        net.wait_interface(&mut iface, &sockets, None);
    }
    println!("net-echo: echoed {echoed} datagrams");
    let s = net.stats();
    println!(
        "net-echo: stats rx_packets {} rx_bytes {} rx_errors {} tx_packets {} tx_bytes {} \
         tx_dropped {} notifies {} waits {}",
        s.rx_packets,
        s.rx_bytes,
        s.rx_errors,
        s.tx_packets,
        s.tx_bytes,
        s.tx_dropped,
        s.notifies,
        s.waits
    );
    0
}

/// Echoes every datagram that fits in the transmit buffer; returns how many.
fn echo_udp(socket: &mut udp::Socket<'_>, buf: &mut [u8]) -> u64 {
    let mut n = 0;
    while let Ok((len, meta)) = socket.peek_slice(buf) {
        let to = meta.endpoint;
        if socket.send_slice(&buf[..len], to).is_err() {
            break; // the transmit buffer is full: keep it queued until the next round
        }
        let _ = socket.recv();
        n += 1;
    }
    n
}

fn listen(socket: &mut tcp::Socket<'_>, port: u16) -> bool {
    if !socket.is_open() {
        socket.listen(port).expect("a valid listen endpoint");
        return false;
    }
    true
}

fn echo_tcp(socket: &mut tcp::Socket<'_>, buf: &mut [u8]) {
    if !listen(socket, ECHO) {
        return;
    }
    while socket.can_recv() && socket.can_send() {
        let room = socket.send_capacity() - socket.send_queue();
        let take = room.min(buf.len());
        let Ok(n) = socket.recv_slice(&mut buf[..take]) else {
            break;
        };
        if n == 0 {
            break;
        }
        let _ = socket.send_slice(&buf[..n]);
    }
    // The client closed its side and everything it sent was echoed (queued): close ours; the
    // FIN follows the queued data.
    if socket.state() == tcp::State::CloseWait && !socket.can_recv() {
        socket.close();
    }
}

fn rate(bytes: u64, started: Option<Instant>) -> (u64, u64) {
    let us = started.map_or(0, |t| t.elapsed().as_micros() as u64).max(1);
    (us, bytes * 8 / us)
}

fn run_discard(socket: &mut tcp::Socket<'_>, state: &mut Bulk) {
    if !listen(socket, DISCARD) {
        *state = Bulk::default(); // a connection reset before it closed reports nothing
        return;
    }
    if socket.is_active() && state.started.is_none() && socket.may_recv() {
        state.started = Some(time::now());
    }
    while let Ok(n) = socket.recv(|data| (data.len(), data.len())) {
        if n == 0 {
            break;
        }
        state.bytes += n as u64;
    }
    if state.started.is_some() && !socket.may_recv() {
        let (us, mbit) = rate(state.bytes, state.started);
        println!(
            "net-echo: tcp/{DISCARD} received {} bytes in {us} us ({mbit} Mbit/s)",
            state.bytes
        );
        *state = Bulk::default();
        socket.close();
    }
}

fn run_source(socket: &mut tcp::Socket<'_>, state: &mut Bulk, pattern: &[u8]) {
    if !listen(socket, SOURCE) {
        *state = Bulk::default();
        return;
    }
    if socket.may_send() && state.started.is_none() {
        state.started = Some(time::now());
    }
    if state.started.is_some() && !socket.may_recv() {
        let (us, mbit) = rate(state.bytes, state.started);
        println!(
            "net-echo: tcp/{SOURCE} sent {} bytes in {us} us ({mbit} Mbit/s)",
            state.bytes
        );
        *state = Bulk::default();
        socket.abort();
        return;
    }
    while socket.can_send() {
        let at = (state.bytes % 256) as usize;
        let Ok(n) = socket.send_slice(&pattern[at..at + 64 * 1024]) else {
            break;
        };
        if n == 0 {
            break;
        }
        state.bytes += n as u64;
    }
}
