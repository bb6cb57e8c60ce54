//! Idle cost and memory: CPU time per second of `sockwatch watch` at the
//! default interval with 50,000 background TIME_WAIT sockets and 10
//! listeners, per source, and its peak RSS; beside a naive poller that
//! reads and parses /proc/net/tcp* in full (the procfs crate) at the same
//! interval, in a thread of this process.
//!
//! Kernel triggers are measured beside them: every table (the unix tables
//! keep the counters' 15 ms check), and the inet tables alone (no tick at
//! all); then, with `ss` binding a netlink socket every 100 ms (noise that
//! must not wake anyone), the inet watches of each detection; then two
//! storms: 3,000 UDP bind(0)/close a second (CPU, and how soon listeners
//! opened during it are reported) and 20,000 TCP connect/close a second
//! (how often the kernel woke sockwatch: it should not, for connections).
//!
//! Run: `cargo bench --bench idle` (as root). SECONDS=N changes the
//! measuring time (default 10; the storms last 5 s).

#[path = "support/lab.rs"]
mod lab;
#[path = "support/timing.rs"]
mod timing;

use timing::{lines_of, thread_cpu};

use std::fs;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    for (source, detect, condition) in [
        ("netlink", "kernel", None),
        ("netlink", "kernel", Some(INET)),
        ("netlink", "changes", None),
        ("netlink", "poll", None),
        ("proc", "kernel", Some(INET)),
        ("proc", "changes", None),
        ("proc", "poll", None),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .args(["--source", source, "--detect", detect, "watch"])
            .args(condition)
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
        let condition = condition.map(|c| format!(" '{c}'")).unwrap_or_default();
        println!(
            "| sockwatch watch --source {source} --detect {detect}{condition} | {:.0} µs | {:.3} % | {rss} KiB |",
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
    let _lab = lab::Lab::new(10, 0);
    with_netlink_noise(window);
    udp_bind_storm();
    tcp_connect_storm();
}

/// The inet tables only: no unix table, so kernel triggers need no tick.
const INET: &str = "socket PROTO=inet*";
/// How long each storm lasts.
const STORM: Duration = Duration::from_secs(5);

/// `sockwatch -v --detect DETECT watch --no-initial 'socket PROTO=inet*'`,
/// its stdout piped.
fn inet_watch(detect: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["-v", "--detect", detect, "watch", "--no-initial", INET])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ends `child` with SIGTERM and returns what `-v` said of its reads and
/// wake-ups (the last line of its stderr).
fn counts_at_end(mut child: Child) -> String {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    stderr
        .lines()
        .rfind(|l| l.contains("read the tables"))
        .unwrap_or("")
        .trim_start_matches("sockwatch: ")
        .to_owned()
}

/// CPU share of `child` over `window`, in percent of one CPU.
fn share_over(child: &Child, window: Duration, during: impl FnOnce()) -> f64 {
    let before = cpu_of(child.id());
    let began = Instant::now();
    during();
    thread::sleep(window.saturating_sub(began.elapsed()));
    let used = cpu_of(child.id()) - before;
    used.as_secs_f64() / began.elapsed().as_secs_f64() * 100.0
}

/// Idle cost with `ss` listing sockets every 100 ms (each run binds a
/// netlink socket: a bind that kernel triggers filter out by its length).
fn with_netlink_noise(window: Duration) {
    println!();
    println!(
        "Idle, inet tables only, with `ss -tln` every 100 ms; {} s each",
        window.as_secs()
    );
    println!("| detect | CPU per second | share of one CPU | -v at the end |");
    println!("|---|---|---|---|");
    for detect in ["kernel", "changes", "poll"] {
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = Command::new("ss")
                        .arg("-tln")
                        .stdout(Stdio::null())
                        .status();
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let child = inet_watch(detect);
        thread::sleep(Duration::from_secs(1));
        let share = share_over(&child, window, || {});
        stop.store(true, Ordering::Relaxed);
        noise.join().unwrap();
        let counts = counts_at_end(child);
        println!(
            "| {detect} | {:.0} µs | {share:.3} % | {counts} |",
            share * 1e4
        );
    }
}

/// 3,000 UDP bind(0)/close a second for 5 s: sockwatch's CPU, and how soon
/// a TCP listener opened every 250 ms during the storm is reported.
fn udp_bind_storm() {
    println!();
    println!(
        "3,000 UDP bind(0)/close per second for {} s (inet tables)",
        STORM.as_secs()
    );
    println!(
        "| detect | binds done | share of one CPU | listeners seen p50 | max | -v at the end |"
    );
    println!("|---|---|---|---|---|---|");
    for detect in ["kernel", "changes"] {
        let mut child = inet_watch(detect);
        let lines = lines_of(&mut child);
        thread::sleep(Duration::from_secs(1));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let storm = {
            let (stop, done) = (stop.clone(), done.clone());
            thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    drop(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
                    done.fetch_add(1, Ordering::Relaxed);
                    next += Duration::from_micros(333);
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        };
        let mut seen = Vec::new();
        let share = share_over(&child, STORM, || {
            for k in 0..(STORM.as_millis() / 250 - 1) as u16 {
                let port = 40_000 + k;
                let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
                let opened = Instant::now();
                let want = format!("socket PROTO=inet PORT={port} ");
                loop {
                    let (line, at) = lines
                        .recv_timeout(Duration::from_secs(5))
                        .expect("an event");
                    if line.starts_with(&want) {
                        seen.push(at - opened);
                        break;
                    }
                }
                drop(listener);
                thread::sleep(Duration::from_millis(250).saturating_sub(opened.elapsed()));
            }
        });
        stop.store(true, Ordering::Relaxed);
        storm.join().unwrap();
        let counts = counts_at_end(child);
        seen.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {detect} | {} | {share:.2} % | {:.2} ms | {:.2} ms | {counts} |",
            done.load(Ordering::Relaxed),
            ms(seen[seen.len() / 2]),
            ms(*seen.last().unwrap())
        );
    }
}

/// TCP connections made and closed as fast as one thread can, up to
/// 20,000 a second, for 5 s (the client resets, so no TIME_WAIT piles up
/// and no port runs out): how often the kernel woke sockwatch.
fn tcp_connect_storm() {
    println!();
    println!(
        "TCP connect/accept/close, up to 20,000 per second for {} s (inet tables)",
        STORM.as_secs()
    );
    println!("| detect | connections | per second | share of one CPU | -v at the end |");
    println!("|---|---|---|---|---|");
    let sink = std::net::TcpListener::bind("127.0.0.1:7997").unwrap();
    for detect in ["kernel", "changes"] {
        let child = inet_watch(detect);
        thread::sleep(Duration::from_secs(1));
        let mut done = 0u64;
        let began = Instant::now();
        let share = share_over(&child, STORM, || {
            let mut next = Instant::now();
            while began.elapsed() < STORM {
                let client = std::net::TcpStream::connect("127.0.0.1:7997").unwrap();
                let (accepted, _) = sink.accept().unwrap();
                socket2::SockRef::from(&client)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(client);
                drop(accepted);
                done += 1;
                next += Duration::from_micros(50);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        let rate = done as f64 / began.elapsed().as_secs_f64();
        let counts = counts_at_end(child);
        println!("| {detect} | {done} | {rate:.0} | {share:.3} % | {counts} |");
    }
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
