//! The update under load: a web service of 20 replicas (busybox `httpd`)
//! on the overlay, port 8080 published on the routing mesh, with a
//! readiness probe, rolled (`--env-add`, every task replaced) while a
//! bounded loop of HTTP requests from the test host hits node 1's
//! published port; every request that fails (refused, reset, timed out,
//! not a 200 with the page) is counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The clients: each one request at a time, paced.
pub const CLIENTS: usize = 4;
/// Each client's pause between requests: ~200 requests/s in all, load
/// that leaves the two cores to the systems under test.
pub const PACE: Duration = Duration::from_millis(20);
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The loop's bound, whatever happens.
const MAX: Duration = Duration::from_secs(600);
pub const PORT: u16 = 8080;

/// Requests sent and failed while a load ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Count {
    pub sent: u64,
    pub failed: u64,
}

/// A running load against `addr`; [`Load::stop`] ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One request: did it come back a 200 with `page`?
pub fn get(addr: SocketAddr, page: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, TIMEOUT) else { return false };
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    if s.read_to_end(&mut out).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&out);
    text.starts_with("HTTP/1.") && text.split(' ').nth(1) == Some("200") && text.ends_with(page)
}

impl Load {
    pub fn start(addr: SocketAddr, page: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                std::thread::spawn(move || {
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX {
                        sent.fetch_add(1, Ordering::Relaxed);
                        if !get(addr, page) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(PACE);
                    }
                })
            })
            .collect();
        Load { stop, sent, failed, threads }
    }

    pub fn stop(self) -> Count {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        Count { sent: self.sent.load(Ordering::Relaxed), failed: self.failed.load(Ordering::Relaxed) }
    }
}

/// Waits until `addr` has answered `n` requests in a row.
pub fn answering(addr: SocketAddr, page: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut streak = 0;
    while streak < n {
        anyhow::ensure!(start.elapsed() < limit, "{addr} did not answer {n} requests in a row");
        streak = if get(addr, page) { streak + 1 } else { 0 };
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
