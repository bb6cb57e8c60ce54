//! Idle cost and memory: CPU time per second of `sockwatch watch` at the
//! default interval with 50,000 background TIME_WAIT sockets and 10
//! listeners, per source, and its peak RSS; beside a naive poller that
//! reads and parses /proc/net/tcp* in full (the procfs crate) at the same
//! interval, in a thread of this process.
//!
//! Run: `cargo bench --bench idle` (as root). SECONDS=N changes the
//! measuring time (default 10).

#[path = "support/lab.rs"]
mod lab;

use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// CPU time a process has used, from /proc/<pid>/schedstat (nanoseconds).
fn cpu_of(pid: u32) -> Duration {
    let text = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let window = Duration::from_secs(seconds);
    let lab = lab::Lab::new(10, 50_000);
    println!(
        "10 listeners, 50000 TIME_WAIT sockets (/proc/net/tcp: {} bytes); {seconds} s each; default interval",
        lab::proc_net_tcp_size()
    );
    println!("| poller | CPU per second | share of one CPU | peak RSS |");
    println!("|---|---|---|---|");
    for (source, detect) in [
        ("netlink", "changes"),
        ("netlink", "poll"),
        ("proc", "changes"),
        ("proc", "poll"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["--source", source, "--detect", detect, "watch"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_secs(1)); // past start-up
        let before = cpu_of(child.id());
        thread::sleep(window);
        let used = cpu_of(child.id()) - before;
        let rss = peak_rss_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let per_second = used.as_secs_f64() / window.as_secs_f64();
        println!(
            "| sockwatch watch --source {source} --detect {detect} | {:.0} µs | {:.3} % | {rss} KiB |",
            per_second * 1e6,
            per_second * 100.0
        );
    }
    let naive = thread::spawn(move || {
        let interval = Duration::from_millis(50);
        let start = thread_cpu();
        let began = Instant::now();
        let mut next = began;
        while began.elapsed() < window {
            assert!(lab::procfs_listening() >= 10);
            next += interval;
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        thread_cpu() - start
    });
    let used = naive.join().unwrap();
    let per_second = used.as_secs_f64() / window.as_secs_f64();
    println!(
        "| naive poller: procfs full parse of tcp+tcp6 every 50 ms | {:.0} µs | {:.3} % | - |",
        per_second * 1e6,
        per_second * 100.0
    );
    for ms in [15, 50] {
        let floor = thread::spawn(move || {
            // Nothing but waking up: what any poller pays on this machine
            // before it does any work.
            let mut poll = mio::Poll::new().unwrap();
            let mut events = mio::Events::with_capacity(4);
            let start = thread_cpu();
            let began = Instant::now();
            while began.elapsed() < window {
                poll.poll(&mut events, Some(Duration::from_millis(ms)))
                    .unwrap();
            }
            thread_cpu() - start
        });
        let used = floor.join().unwrap();
        let per_second = used.as_secs_f64() / window.as_secs_f64();
        println!(
            "| floor: a thread that only wakes every {ms} ms (epoll_wait) | {:.0} µs | {:.3} % | - |",
            per_second * 1e6,
            per_second * 100.0
        );
    }
    busy_proc(window);
    drop(lab);
}

/// `watch --source proc` (changes, default interval) while 200 TCP
/// connections a second come and go in the namespace: the counters move
/// every tick, so reads are paced by their cost.
fn busy_proc(window: Duration) {
    let sink = std::net::TcpListener::bind("127.0.0.1:7998").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let client = std::net::TcpStream::connect("127.0.0.1:7998").unwrap();
                let (accepted, _) = sink.accept().unwrap();
                drop(accepted);
                drop(client);
                next += Duration::from_millis(5);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["--source", "proc", "--detect", "changes", "watch"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(1));
    let before = cpu_of(child.id());
    thread::sleep(window);
    let used = cpu_of(child.id()) - before;
    let _ = child.kill();
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    let per_second = used.as_secs_f64() / window.as_secs_f64();
    println!(
        "| sockwatch watch --source proc --detect changes, 200 connections/s | {:.0} µs | {:.3} % | - |",
        per_second * 1e6,
        per_second * 100.0
    );
}
