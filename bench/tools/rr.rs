//! A TCP request/response latency probe (netperf's TCP_RR, which Debian
//! does not ship), std only, built static by `cargo xtask bench network`
//! and run in containers and on hosts alike:
//!
//!   rr server PORT                 answers each byte with one byte, forever
//!   rr client ADDR:PORT COUNT      COUNT round trips of one byte; prints
//!                                  "p50_us p99_us mean_us" over them
//!
//! Not part of the workspace: `rustc -O -C target-feature=+crt-static`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

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
    let mut c = TcpStream::connect(addr)?;
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
    let mean = us.iter().sum::<f64>() / us.len().max(1) as f64;
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    println!("{:.1} {:.1} {:.1}", at(0.5), at(0.99), mean);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("server") if args.len() == 3 => serve(&args[2]),
        Some("client") if args.len() == 4 => match args[3].parse() {
            Ok(n) if n > 0 => client(&args[2], n),
            _ => Err(std::io::Error::other("COUNT must be a positive number")),
        },
        _ => Err(std::io::Error::other("usage: rr server PORT | rr client ADDR:PORT COUNT")),
    };
    if let Err(e) = r {
        eprintln!("rr: {e}");
        std::process::exit(1);
    }
}
