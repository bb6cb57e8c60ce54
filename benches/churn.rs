//! Same-slot churn: wrong answers that skipped rows would cause, counted.
//!
//! 3,000 UDP sockets on 127.0.x.y:5000 live throughout; a thread binds and
//! closes other sockets on port 5000 (the same hash slot) as fast as it can.
//! A dump of that slot resumes by position, so rows of the living sockets
//! are skipped without NLM_F_DUMP_INTR. Counted per source, all targets 0:
//! - phantom closes: `socket-closed` lines from `sockwatch watch` over the
//!   window (at `--interval 10ms`, far busier than the default);
//! - list misses: living sockets missing from `sockwatch list`, over 20 runs;
//! - false gones: `sockwatch wait --gone` on a living socket that returned 0,
//!   over 20 runs.
//!
//! Comparators, measured in the same run: one read of the table through
//! the same source without confirmation (what 0.1.0 reported), and `ss -lun`.
//!
//! Run: `cargo bench --bench churn` (as root). SECONDS=N changes the watch
//! window (default 5).

#[path = "../tests/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sockwatch::endpoint::{Family, Table, Transport};
use sockwatch::source::Source;
use sockwatch::source::netlink::Netlink;
use sockwatch::source::proc::Proc;

const STABLE: usize = 3_000;
const RUNS: usize = 20;
const STABLE_ONLY: &str = "socket TRANSPORT=udp PORT=5000 ADDR=127.0.0.0/16";
const BIN: &str = env!("CARGO_BIN_EXE_sockwatch");

fn stable_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Binds and closes bursts of sockets on port 5000 until `stop`.
fn churn(stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let (mut n, mut bursts) = (0u32, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let burst: Vec<UdpSocket> = (0..50)
                .filter_map(|_| {
                    n = n.wrapping_add(1);
                    let addr = Ipv4Addr::new(127, 1, (n / 250 % 250) as u8, (n % 250 + 1) as u8);
                    UdpSocket::bind(SocketAddrV4::new(addr, 5000)).ok()
                })
                .collect();
            drop(burst);
            bursts += 1;
        }
        bursts
    })
}

/// Living sockets missing from the lines of a listing (`ADDR=` or ss form).
fn missing(text: &str) -> usize {
    let seen = (0..STABLE)
        .filter(|&i| {
            let addr = stable_addr(i).to_string();
            text.contains(&format!("ADDR={addr} ")) || text.contains(&format!(" {addr}:5000 "))
        })
        .count();
    STABLE - seen
}

fn phantom_closes(source: &str, window: Duration) -> usize {
    let mut child = Command::new(BIN)
        .args([
            "--source",
            source,
            "watch",
            "--no-initial",
            "--interval",
            "10ms",
        ])
        .arg(STABLE_ONLY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("socket-closed"))
            .count()
    });
    thread::sleep(window);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait().unwrap();
    reader.join().unwrap()
}

fn list_misses(source: &str) -> usize {
    (0..RUNS)
        .map(|_| {
            let out = Command::new(BIN)
                .args(["--source", source, "list", STABLE_ONLY])
                .output()
                .unwrap();
            missing(&String::from_utf8_lossy(&out.stdout))
        })
        .sum()
}

fn false_gones(source: &str) -> usize {
    (0..RUNS)
        .filter(|i| {
            let condition = format!(
                "socket TRANSPORT=udp PORT=5000 ADDR={}",
                stable_addr(i * 149 % STABLE)
            );
            let status = Command::new(BIN)
                .args(["--source", source, "wait", "--gone", "--timeout", "200ms"])
                .args(["--interval", "5ms", &condition])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            status.code() == Some(0)
        })
        .count()
}

/// Rows missing from single unconfirmed reads of the udp table.
fn single_read_misses(source: &mut dyn Source) -> usize {
    let udp = [Table::new(Transport::Udp, Family::Inet)];
    (0..RUNS)
        .map(|_| {
            let (mut out, mut failed) = (Vec::new(), Vec::new());
            source.read(&udp, &mut out, &mut failed);
            // A resumed dump can repeat rows too: count distinct sockets.
            let seen: std::collections::HashSet<_> = out
                .iter()
                .filter(|s| s.endpoint.port() == Some(5000))
                .filter_map(|s| s.endpoint.ip())
                .filter(|ip| ip.to_string().starts_with("127.0."))
                .collect();
            STABLE - seen.len()
        })
        .sum()
}

fn ss_misses() -> usize {
    (0..RUNS)
        .map(|_| {
            let out = Command::new("ss").args(["-lunH"]).output().unwrap();
            missing(&String::from_utf8_lossy(&out.stdout).replace('\n', " \n"))
        })
        .sum()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    netns::Netns::enter();
    let _stable: Vec<UdpSocket> = (0..STABLE)
        .map(|i| UdpSocket::bind(SocketAddrV4::new(stable_addr(i), 5000)).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(stop.clone());
    let started = Instant::now();
    println!(
        "{STABLE} living UDP sockets on port 5000, churn on the same port; watch {seconds} s at 10 ms; {RUNS} runs of list and wait --gone"
    );
    println!(
        "| source | phantom closes (watch) | list misses | false wait --gone | comparator: rows missed by {RUNS} single reads |"
    );
    println!("|---|---|---|---|---|");
    let mut netlink = Netlink::open().unwrap();
    let mut proc = Proc::new(std::path::Path::new("/proc/self"));
    for (source, single) in [
        ("netlink", &mut netlink as &mut dyn Source),
        ("proc", &mut proc as &mut dyn Source),
    ] {
        let phantom = phantom_closes(source, Duration::from_secs(seconds));
        let lists = list_misses(source);
        let gones = false_gones(source);
        let comparator = single_read_misses(single);
        println!("| {source} | {phantom} | {lists} | {gones} | {comparator} |");
    }
    println!(
        "| ss -lun | - | {} (rows missed by {RUNS} runs) | - | - |",
        ss_misses()
    );
    stop.store(true, Ordering::Relaxed);
    let bursts = churner.join().unwrap();
    println!(
        "churn: {bursts} bursts of 50 binds in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
