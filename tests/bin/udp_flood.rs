//! Sends numbered UDP datagrams to an echo server and checks that every one comes back intact.
//!
//! `udp-flood ADDR:PORT COUNT`: keeps at most `WINDOW` datagrams in flight, retransmits a
//! datagram whose echo has not arrived within a timeout (UDP may drop), and exits 0 when every
//! datagram came back once with its exact payload; prints `udp-flood: N sent, N echoed intact,
//! R retransmitted` and, on failure, what went wrong. Run inside the test's network namespace.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const WINDOW: u32 = 32;
const RETRANSMIT_AFTER: Duration = Duration::from_millis(200);
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Datagram `seq`: its number, then a payload derived from it, 32–543 bytes in all.
fn datagram(seq: u32) -> Vec<u8> {
    let len = 32 + (seq as usize * 7919) % 512;
    let mut d: Vec<u8> = seq.to_le_bytes().to_vec();
    d.extend((4..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    d
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(target), Some(count)) =
        (args.get(1), args.get(2).and_then(|c| c.parse::<u32>().ok()))
    else {
        eprintln!("usage: udp-flood ADDR:PORT COUNT");
        return ExitCode::from(2);
    };
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect(target).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let start = Instant::now();
    let (mut next, mut echoed, mut retransmits) = (0u32, 0u32, 0u32);
    let mut in_flight: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut buf = [0u8; 2048];
    while echoed < count {
        if start.elapsed() > GIVE_UP_AFTER {
            eprintln!(
                "udp-flood: gave up: {echoed} of {count} echoed, {} in flight",
                in_flight.len()
            );
            return ExitCode::FAILURE;
        }
        while next < count && (in_flight.len() as u32) < WINDOW {
            sock.send(&datagram(next)).expect("send");
            in_flight.insert(next, Instant::now());
            next += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let seq = u32::from_le_bytes(buf[..4.min(n)].try_into().unwrap_or([0xff; 4]));
                if buf[..n] != datagram(seq)[..] {
                    eprintln!("udp-flood: datagram {seq} came back corrupted ({n} bytes)");
                    return ExitCode::FAILURE;
                }
                // A retransmitted datagram may come back twice: count it once.
                if in_flight.remove(&seq).is_some() {
                    echoed += 1;
                }
            }
            Err(_) => {
                let now = Instant::now();
                for (&seq, sent) in in_flight.iter_mut() {
                    if now.duration_since(*sent) > RETRANSMIT_AFTER {
                        sock.send(&datagram(seq)).expect("send");
                        *sent = now;
                        retransmits += 1;
                    }
                }
            }
        }
    }
    println!("udp-flood: {count} sent, {echoed} echoed intact, {retransmits} retransmitted");
    ExitCode::SUCCESS
}
