//! A TCP request/response latency probe (netperf's TCP_RR, which Debian
//! does not ship), std only, built static by `cargo xtask bench network`
//! and run in containers and on hosts alike:
//!
//!   rr server PORT                 answers each byte with one byte, forever
//!   rr client ADDR:PORT COUNT      COUNT round trips of one byte; prints
//!                                  "p50_us p99_us mean_us" over them
//!   rr dns SERVER NAME COUNT       COUNT DNS queries (A, over UDP) of NAME
//!                                  to SERVER:53, one at a time; prints
//!                                  "p50_us p99_us mean_us" over the answers
//!
//! Not part of the workspace: `rustc -O -C target-feature=+crt-static`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

fn serve(port: &str) -> std::io::Result<()> {
    let l = TcpListener::bind(format!("0.0.0.0:{port}"))?;
    for c in l.incoming() {
        let mut c = c?;
        std::thread::spawn(move || {
            let _ = c.set_nodelay(true);
            let mut b = [0u8; 1];
            while c.read_exact(&mut b).is_ok() {
                if c.write_all(&b).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

fn client(addr: &str, count: usize) -> std::io::Result<()> {
    // Bounded: a path that does not answer fails in seconds, not never.
    let to = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.set_nodelay(true)?;
    let mut b = [7u8; 1];
    // Warm the path (ARP, conntrack, caches) before measuring.
    for _ in 0..count.min(1000) {
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
    }
    let mut us: Vec<f64> = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report(us);
    Ok(())
}

/// A DNS query for the A records of `name`, with id `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns(server: &str, name: &str, count: usize) -> std::io::Result<()> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(format!("{server}:53"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 1500];
    let mut us: Vec<f64> = Vec::with_capacity(count);
    for i in 0..count + count.min(100) {
        let id = i as u16;
        let t = Instant::now();
        s.send(&query(id, name))?;
        loop {
            let n = s.recv(&mut buf)?;
            // An answer to this query, with at least one record.
            if n >= 12 && buf[..2] == id.to_be_bytes() {
                if buf[6] == 0 && buf[7] == 0 {
                    return Err(std::io::Error::other(format!("no answer for {name}")));
                }
                break;
            }
        }
        // The first hundred warm the path.
        if i >= count.min(100) {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    report(us);
    Ok(())
}

fn report(mut us: Vec<f64>) {
    let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    println!("{:.1} {:.1} {:.1}", at(0.5), at(0.99), mean);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("server") if args.len() == 3 => serve(&args[2]),
        Some("client") if args.len() == 4 => match args[3].parse() {
            Ok(n) if n > 0 => client(&args[2], n),
            _ => Err(std::io::Error::other("COUNT must be a positive number")),
        },
        Some("dns") if args.len() == 5 => match args[4].parse() {
            Ok(n) if n > 0 => dns(&args[2], &args[3], n),
            _ => Err(std::io::Error::other("COUNT must be a positive number")),
        },
        _ => Err(std::io::Error::other("usage: rr server PORT | rr client ADDR:PORT COUNT | rr dns SERVER NAME COUNT")),
    };
    if let Err(e) = r {
        eprintln!("rr: {e}");
        std::process::exit(1);
    }
}
