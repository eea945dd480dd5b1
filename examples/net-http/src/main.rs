//! A web server on the PV network interface: smoltcp over `guest_sdk::net`, with a static IPv4
//! address from the command line. It answers ping (smoltcp's automatic ICMP echo replies) and
//! serves HTTP/1.1 on port 80:
//!
//! | request | response |
//! |---|---|
//! | `GET /` | `200`, a small HTML page containing `Hello from Parapet` |
//! | `GET /stats` | `200`, `text/plain`: one `name value` line per counter: `rx_packets`, `rx_bytes`, `rx_errors`, `tx_packets`, `tx_bytes`, `tx_dropped`, `notifies`, `waits`, `requests` (the guest's own counters, see `guest_sdk::net::NetStats`; `requests` counts responses begun, this one included) |
//! | `GET /disk` | with a PV block device (the first `--disk PATH[,readonly]`): `200`, `text/plain`: the disk's first sector, read for this request, up to its first NUL byte (at most 512 bytes); `500` if the read fails. Without a disk, `404` |
//! | `GET` of any other path | `404`, `not found` |
//! | another method | `405` |
//! | a malformed request, or headers over 4 KiB | `400` |
//!
//! Every response has `Content-Length` and `Connection: close`; the server waits for the
//! client to close first (up to 5 s), so its sockets never sit in `TIME-WAIT`. 32 listening
//! sockets serve up to 32 connections at once (smoltcp has no accept backlog: a connection
//! beyond that is refused), and the server keeps serving until it is asked to shut down or
//! powered off, or:
//!
//! ```text
//! parapet run net-http --net tap=tap0 [--disk PATH[,readonly]] \
//!     --cmdline "ip=10.77.0.2/24 [gw=10.77.0.1] [requests=N] [suspend]"
//! ```
//!
//! With `requests=N` it powers off with exit code 0 once N responses have been sent and their
//! connections closed. It listens for shutdown requests (`guest_sdk::shutdown`, docs/abi.md
//! §7.5): when one arrives (`SIGTERM` to its VMM, e.g. `ctr task kill`; it wakes the server
//! from its wait for the network), it stops serving at once, resets the connections still
//! open, sends what it has queued and powers off with exit code 0. Output:
//! `net-http: listening on http://A.B.C.D:80/ (mac M)`, one line `net-http: GET PATH -> STATUS`
//! per request, and a last line: with `requests=N`, `net-http: served N requests`; after a
//! shutdown request, `net-http: shutdown requested after N requests` (N: the requests it
//! answered). A missing or malformed `ip=` prints a usage line and exits 2; no network
//! interface exits 3. The disk is connected at start; if that fails, the guest
//! prints `net-http: disk: …` and serves without it.
//!
//! With `suspend`, once the interface is up (after the `listening` line) and before it serves
//! anything, the guest suspends for a snapshot (`guest_sdk::snapshot::suspend`; run it with
//! `--snapshot FILE`, and the VMM exits once the snapshot is written). In each restore
//! (`parapet restore FILE --net tap=NAME[,mac=M2] [--disk …]`) the network interface and the
//! disk are still connected; the guest reads its MAC address afresh (a clone may have been given
//! a new one), gives it to smoltcp if it changed, prints
//! `net-http: resumed generation=<16 hex digits> (mac M)` and serves as above. A VMM without
//! `--snapshot` makes it print `net-http: no snapshots (run with --snapshot FILE); serving
//! anyway` and serve in the same domain; a cancelled or refused suspend is printed too, and it
//! serves anyway.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use guest_sdk::block::{self, BlockDevice};
use guest_sdk::net::smoltcp::iface::{Interface, SocketHandle, SocketSet};
use guest_sdk::net::smoltcp::socket::tcp::{self, State};
use guest_sdk::net::{MacDisplay, Net, NetStats, ip_config};
use guest_sdk::println;
use guest_sdk::shutdown;
use guest_sdk::snapshot::{self, Resumed, SuspendError};
use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::time::{self, Instant};

guest_sdk::entry!(main);

const USAGE: &str = "usage: net-http ip=A.B.C.D/N [gw=A.B.C.D] [requests=N] [suspend]";
const PORT: u16 = 80;
const SOCKETS: usize = 32;
const MAX_HEADER: usize = 4096;
/// Bytes of a disk sector.
const SECTOR: usize = 512;
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// A connection with no traffic for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const INDEX: &str = "<!DOCTYPE html>\n<html>\n<head><title>Parapet</title></head>\n<body>\n\
                     <h1>Hello from Parapet</h1>\n<p>A paravirtualized Rust unikernel on Linux \
                     KVM, serving HTTP/1.1 with smoltcp over a Xen-style PV network \
                     interface.</p>\n<p><a href=\"/stats\">packet counters</a></p>\n</body>\n\
                     </html>\n";

/// One connection's progress.
#[derive(Debug, Default)]
struct Conn {
    /// The request head received so far.
    request: Vec<u8>,
    /// The response, and how much of it was queued.
    response: Option<(Vec<u8>, usize)>,
    /// When the whole response was queued (then we wait for the client to close).
    sent_at: Option<Instant>,
}

fn main() -> u32 {
    let line = cmdline();
    let (cidr, gw) = match ip_config(line) {
        Ok(c) => c,
        Err(why) => {
            println!("net-http: {why}; {USAGE}");
            return 2;
        }
    };
    let limit = match find_param(line, "requests").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            println!("net-http: requests= is not a number; {USAGE}");
            return 2;
        }
    };
    let mut net = match Net::connect() {
        Ok(n) => n,
        Err(e) => {
            println!("net-http: {e}");
            return 3;
        }
    };
    let mut disk = if block::disks().next().is_some() {
        match BlockDevice::open(0) {
            Ok(d) => Some(d),
            Err(e) => {
                println!("net-http: disk: {e}");
                None
            }
        }
    } else {
        None
    };
    if let Err(e) = shutdown::listen() {
        println!("net-http: {e}");
    }
    let mut iface = net.interface(cidr, gw);
    let mut sockets = SocketSet::new(Vec::new());
    let handles: Vec<SocketHandle> = (0..SOCKETS)
        .map(|_| {
            let rx = tcp::SocketBuffer::new(vec![0; 2048]);
            let tx = tcp::SocketBuffer::new(vec![0; 8192]);
            sockets.add(tcp::Socket::new(rx, tx))
        })
        .collect();
    let mut conns: Vec<Conn> = (0..SOCKETS).map(|_| Conn::default()).collect();
    println!(
        "net-http: listening on http://{}:{PORT}/ (mac {})",
        cidr.address(),
        MacDisplay(net.mac())
    );
    if find_param(line, "suspend").is_some() {
        suspend(&mut net, &mut iface);
    }
    let (mut begun, mut served) = (0u64, 0u64);
    loop {
        if shutdown::requested() {
            // Reset what is still open, and let the resets (and anything queued) leave.
            for handle in &handles {
                sockets.get_mut::<tcp::Socket>(*handle).abort();
            }
            net.poll_interface(&mut iface, &mut sockets);
            net.flush(time::now() + Duration::from_secs(1));
            println!("net-http: shutdown requested after {begun} requests");
            return 0;
        }
        net.poll_interface(&mut iface, &mut sockets);
        for (handle, conn) in handles.iter().zip(conns.iter_mut()) {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            if serve(socket, conn, &net.stats(), &mut begun, disk.as_mut()) {
                served += 1;
            }
        }
        if limit.is_some_and(|n| served >= n) {
            net.poll_interface(&mut iface, &mut sockets);
            net.flush(time::now() + Duration::from_secs(1));
            break;
        }
        net.wait_interface_or(&mut iface, &sockets, None, shutdown::requested);
    }
    println!("net-http: served {served} requests");
    0
}

/// Suspends for a snapshot (the `suspend` word); in a restore, picks up the clone's MAC.
fn suspend(net: &mut Net, iface: &mut Interface) {
    match snapshot::suspend() {
        Ok(Resumed::Restored { generation }) => {
            let old = net.mac();
            match net.refresh_mac() {
                Ok(mac) if mac != old => iface.set_hardware_addr(net.hardware_addr()),
                Ok(_) => {}
                Err(e) => println!("net-http: {e}; keeping mac {}", MacDisplay(old)),
            }
            println!(
                "net-http: resumed generation={generation:016x} (mac {})",
                MacDisplay(net.mac())
            );
        }
        Ok(Resumed::Cancelled) => println!("net-http: suspend cancelled; serving anyway"),
        Err(SuspendError::NotAvailable) => {
            println!("net-http: no snapshots (run with --snapshot FILE); serving anyway")
        }
        Err(e) => println!("net-http: suspend: {e}; serving anyway"),
    }
}

/// Moves one socket along; returns `true` when a connection that got a response has closed.
fn serve(
    socket: &mut tcp::Socket<'_>,
    conn: &mut Conn,
    stats: &NetStats,
    begun: &mut u64,
    disk: Option<&mut BlockDevice>,
) -> bool {
    if !socket.is_open() {
        let finished = conn.response.is_some();
        *conn = Conn::default();
        socket.set_timeout(Some(IDLE_TIMEOUT.into()));
        socket
            .listen(PORT)
            .expect("port 80 is a valid listen endpoint");
        return finished;
    }
    if conn.response.is_none() && socket.can_recv() {
        let _ = socket.recv(|data| {
            let room = MAX_HEADER + 1 - conn.request.len().min(MAX_HEADER + 1);
            let take = data.len().min(room);
            conn.request.extend_from_slice(&data[..take]);
            (take, ())
        });
        if let Some(head) = request_head(&conn.request) {
            *begun += 1;
            let (status, response) = respond(head, stats, *begun, disk);
            println!("net-http: {} -> {status}", request_line(head));
            conn.response = Some((response, 0));
        } else if conn.request.len() > MAX_HEADER {
            *begun += 1;
            println!("net-http: request head too long -> 400");
            conn.response = Some((
                response(400, "Bad Request", "text/plain", b"bad request\n"),
                0,
            ));
        }
    }
    if let Some((data, queued)) = &mut conn.response {
        if *queued < data.len() && socket.can_send() {
            *queued += socket.send_slice(&data[*queued..]).unwrap_or(0);
        }
        if *queued == data.len() && conn.sent_at.is_none() {
            conn.sent_at = Some(time::now());
        }
    }
    // Close once the client has closed its side (CLOSE-WAIT: our FIN follows the queued data,
    // and no TIME-WAIT for us), or when it keeps the connection after its response too long.
    let client_closed = socket.state() == State::CloseWait;
    let overstayed = conn.sent_at.is_some_and(|t| t.elapsed() > CLOSE_WAIT);
    if client_closed || overstayed {
        socket.close();
    }
    false
}

/// The request head (up to the blank line), once it is complete.
fn request_head(request: &[u8]) -> Option<&[u8]> {
    request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| &request[..end])
}

/// The first line of a request, for the log.
fn request_line(head: &[u8]) -> String {
    let line = head.split(|&b| b == b'\r').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    match line.rsplit_once(' ') {
        Some((method_path, _version)) => String::from(method_path),
        None => String::from(line.as_ref()),
    }
}

/// The status and the whole response for a request head.
fn respond(
    head: &[u8],
    stats: &NetStats,
    requests: u64,
    disk: Option<&mut BlockDevice>,
) -> (u16, Vec<u8>) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or(b"");
    let mut words = line.split(|&b| b == b' ');
    let (method, path, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(path), Some(version), None) = (method, path, version, words.next())
    else {
        return (
            400,
            response(400, "Bad Request", "text/plain", b"bad request\n"),
        );
    };
    if !version.starts_with(b"HTTP/1.") {
        return (
            400,
            response(400, "Bad Request", "text/plain", b"bad request\n"),
        );
    }
    if method != b"GET" {
        return (
            405,
            response(
                405,
                "Method Not Allowed",
                "text/plain",
                b"method not allowed\n",
            ),
        );
    }
    match path {
        b"/" | b"/index.html" => (
            200,
            response(200, "OK", "text/html; charset=utf-8", INDEX.as_bytes()),
        ),
        b"/stats" => {
            let s = stats;
            let body = format!(
                "rx_packets {}\nrx_bytes {}\nrx_errors {}\ntx_packets {}\ntx_bytes {}\n\
                 tx_dropped {}\nnotifies {}\nwaits {}\nrequests {requests}\n",
                s.rx_packets,
                s.rx_bytes,
                s.rx_errors,
                s.tx_packets,
                s.tx_bytes,
                s.tx_dropped,
                s.notifies,
                s.waits,
            );
            (200, response(200, "OK", "text/plain", body.as_bytes()))
        }
        b"/disk" if disk.is_some() => {
            let mut sector = [0u8; SECTOR];
            match disk.map(|d| d.read(0, &mut sector)) {
                Some(Ok(())) => {
                    let end = sector.iter().position(|&b| b == 0).unwrap_or(SECTOR);
                    (200, response(200, "OK", "text/plain", &sector[..end]))
                }
                _ => (
                    500,
                    response(
                        500,
                        "Internal Server Error",
                        "text/plain",
                        b"disk read failed\n",
                    ),
                ),
            }
        }
        _ => (
            404,
            response(404, "Not Found", "text/plain", b"not found\n"),
        ),
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: parapet-net-http\r\nContent-Type: \
         {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}
