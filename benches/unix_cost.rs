//! Unix sockets: the cost of one read of the three unix tables through
//! unix_diag and through /proc/net/unix, with 10 listeners among N unix
//! sockets in the namespace (the kernel walks every one of them: there is no
//! listening hash for unix sockets); and the idle cost of `watch` with and
//! without the unix tables.
//!
//! Run: `cargo bench --bench unix_cost` (as root). SOCKETS=N sets the
//! number of unix sockets (default 40,000), SECONDS=N the idle window
//! (default 10). The sockets are socketpairs held by helper processes
//! (python3), 14,000 each, since RLIMIT_NOFILE is 20,000 here.

#[path = "../tests/netns.rs"]
mod netns;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sockwatch::endpoint::{Socket, Table};
use sockwatch::source::Source;
use sockwatch::source::netlink::Netlink;
use sockwatch::source::proc::Proc;

/// Median and 90th percentile of `runs` reads of the unix tables.
fn time_reads(source: &mut dyn Source, runs: usize, expected: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(runs);
    let mut out: Vec<Socket> = Vec::new();
    let mut failed = Vec::new();
    for _ in 0..runs {
        out.clear();
        failed.clear();
        let start = Instant::now();
        source.read(&Table::UNIX, &mut out, &mut failed);
        times.push(start.elapsed());
        assert!(failed.is_empty(), "a read failed");
        assert_eq!(out.len(), expected, "listeners read");
    }
    times.sort();
    (times[runs / 2], times[runs * 9 / 10])
}

/// CPU time a process has used, from /proc/<pid>/schedstat.
fn cpu_of(pid: u32) -> Duration {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

/// A python3 process holding `pairs` socketpairs, once it says it holds them.
fn holder(pairs: usize) -> Child {
    let code = format!(
        "import socket, sys\nl = [socket.socketpair() for _ in range({pairs})]\nprint('ok', \
         flush=True)\nsys.stdin.read()"
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ok");
    child
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let sockets = env("SOCKETS", 40_000);
    let seconds = env("SECONDS", 10) as u64;
    netns::Netns::enter();
    let dir = std::env::temp_dir().join(format!("sockwatch-unix-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let listeners: Vec<UnixListener> = (0..10)
        .map(|i| UnixListener::bind(dir.join(format!("l{i}.sock"))).unwrap())
        .collect();
    let mut holders = Vec::new();
    let mut left = sockets / 2;
    while left > 0 {
        let pairs = left.min(7_000);
        holders.push(holder(pairs));
        left -= pairs;
    }
    let unix_lines = fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .count()
        - 1;
    println!(
        "{} listeners among {unix_lines} unix sockets (/proc/net/unix: {} bytes)",
        listeners.len(),
        fs::metadata("/proc/net/unix")
            .map(|_| fs::read("/proc/net/unix").unwrap().len())
            .unwrap()
    );
    println!("| read of the unix tables | median | p90 |");
    println!("|---|---|---|");
    let mut netlink = Netlink::open().unwrap();
    let (median, p90) = time_reads(&mut netlink, 200, listeners.len());
    println!("| unix_diag (netlink) | {median:.2?} | {p90:.2?} |");
    let mut proc = Proc::new(std::path::Path::new("/proc"));
    let first = Instant::now();
    time_reads(&mut proc, 1, listeners.len());
    let first = first.elapsed();
    let (median, p90) = time_reads(&mut proc, 50, listeners.len());
    println!("| /proc/net/unix, verified owners cached | {median:.2?} | {p90:.2?} |");
    println!("| /proc/net/unix, first read (owners looked up) | {first:.2?} | - |");
    println!();
    println!("idle `sockwatch watch` (default detection and interval), {seconds} s each");
    println!("| watch | CPU per second | share of one CPU |");
    println!("|---|---|---|");
    for (what, args) in [
        ("every table", vec!["watch"]),
        (
            "inet only (`socket PROTO=inet*`)",
            vec!["watch", "socket PROTO=inet*"],
        ),
        (
            "unix only (`socket PROTO=unix`)",
            vec!["watch", "socket PROTO=unix"],
        ),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_secs(1));
        let before = cpu_of(child.id());
        thread::sleep(Duration::from_secs(seconds));
        let used = cpu_of(child.id()) - before;
        let _ = child.kill();
        let _ = child.wait();
        let per_second = used.as_secs_f64() / seconds as f64;
        println!(
            "| {what} | {:.0} µs | {:.3} % |",
            per_second * 1e6,
            per_second * 100.0
        );
    }
    for mut child in holders {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    drop(listeners);
    let _ = fs::remove_dir_all(&dir);
}
