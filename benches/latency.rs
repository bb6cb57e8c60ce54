//! Detection latency: from `listen()` (or a UDP `bind()`) returning to the
//! event reaching its consumer, and from `close()` to `socket-closed`, per
//! detection, source and poll interval, through the library (a callback in
//! this process) and through the binary (a line on its stdout). Trials take
//! the four inet tables in turn: tcp4, tcp6, udp4, udp6.
//!
//! Run: `cargo bench --bench latency` (as root: the kernel rows need perf).
//! TRIALS=N changes the number of trials per row (default 200); DETECT=NAME
//! measures only that detection's rows.

#[path = "support/lab.rs"]
mod lab;
// Only `lines_of` is used here.
#[allow(dead_code)]
#[path = "support/timing.rs"]
mod timing;

use timing::lines_of;

use std::net::{TcpListener, UdpSocket};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use sockwatch::detect::{CHANGES_INTERVAL, Detect};
use sockwatch::endpoint::Table;
use sockwatch::event::EventKind;
use sockwatch::watcher::{Options, SourceChoice, Watcher};

/// A tiny LCG: jitter between trials so that `listen()` falls at every
/// phase of the poll timer, not always just after a poll.
struct Jitter(u64);

impl Jitter {
    fn below(&mut self, limit: Duration) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        limit.mul_f64((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

struct Row {
    source: &'static str,
    detect: &'static str,
    consumer: &'static str,
    interval: Duration,
    appear: Vec<Duration>,
    close: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:7.2} | {:7.2} | {:7.2}",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        ms(*samples.last().unwrap())
    )
}

/// The longest random wait between trials: a poll interval's worth, so
/// that listeners fall at every phase of the timer, but no more than 50 ms
/// (the kernel rows' interval is a safety net of seconds).
fn jitter_limit(interval: Duration) -> Duration {
    interval.min(Duration::from_millis(50))
}

/// How long a watcher is given to take its first snapshot.
fn settling(interval: Duration) -> Duration {
    jitter_limit(interval) * 3 + Duration::from_millis(200)
}

/// A listening socket of trial `i`: tcp4, tcp6, udp4, udp6 in turn.
fn listen(i: usize) -> socket2::Socket {
    let port = 30_000 + (i % 1000) as u16;
    match i % 4 {
        0 => TcpListener::bind(("127.0.0.1", port)).unwrap().into(),
        1 => TcpListener::bind(("::1", port)).unwrap().into(),
        2 => UdpSocket::bind(("127.0.0.1", port)).unwrap().into(),
        _ => UdpSocket::bind(("::1", port)).unwrap().into(),
    }
}

/// Times `trials` listen/close pairs; `next` waits for the consumer to
/// report the next event and returns when it saw it.
fn trials(
    trials: usize,
    interval: Duration,
    quiet: Duration,
    mut next: impl FnMut(EventKind) -> Instant,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut jitter = Jitter(0x5eed);
    let (mut appear, mut close) = (Vec::new(), Vec::new());
    let limit = jitter_limit(interval);
    for i in 0..trials {
        thread::sleep(quiet + jitter.below(limit));
        let listener = listen(i);
        let listening = Instant::now();
        appear.push(next(EventKind::Socket) - listening);
        thread::sleep(jitter.below(limit));
        let closing = Instant::now();
        drop(listener);
        close.push(next(EventKind::SocketClosed) - closing);
    }
    (appear, close)
}

/// Trials of /proc with `changes` or `kernel` are spaced by 1.5 s of quiet, fewer of
/// them: back to back they are a namespace whose counters move all the
/// time, where reads are paced by their cost (the read budget refills at
/// 5 % of a CPU, and a /proc close costs about 80 ms of reads to confirm);
/// spaced, they measure a quiet namespace, as the target says.
fn quiet_trials(source: &str, detect: &str, n: usize) -> (usize, Duration) {
    // Kernel triggers keep the counters' gate, and its budget, with /proc.
    if source == "proc" && detect != "poll" {
        (n.min(30), Duration::from_millis(1500))
    } else {
        (n, Duration::ZERO)
    }
}

fn through_binary(source: &'static str, detect: &'static str, interval: Duration, n: usize) -> Row {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["--source", source, "--detect", detect])
        .args(["watch", "--no-initial", "--interval"])
        .arg(format!("{}ms", interval.as_millis()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    // Let it take its first snapshot before the first trial.
    thread::sleep(settling(interval));
    let (n, quiet) = quiet_trials(source, detect, n);
    let (appear, close) = trials(n, interval, quiet, |kind| {
        let (line, at) = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event");
        let want = match kind {
            EventKind::Socket => "socket ",
            EventKind::SocketClosed => "socket-closed ",
        };
        assert!(line.starts_with(want), "{line}");
        at
    });
    let _ = child.kill();
    let _ = child.wait();
    Row {
        source,
        detect,
        consumer: "binary stdout",
        interval,
        appear,
        close,
    }
}

fn through_library(
    source: &'static str,
    choice: SourceChoice,
    detect: (&'static str, Detect),
    interval: Duration,
    n: usize,
) -> Row {
    let (send, events) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let watcher = thread::spawn(move || {
        let mut watcher = Watcher::open(&Options {
            source: choice,
            tables: Table::ALL.to_vec(),
            pushed: true,
            processes: false,
            proc_root: "/proc".into(),
            announce: false,
            verbose: std::env::var_os("VERBOSE").is_some(),
            detect: detect.1,
            refresh_owners: false,
            v6only_matters: false,
            netns: Vec::new(),
            all_netns: false,
        })
        .unwrap();
        let mut first = true;
        watcher
            .run(interval, None, None, |changes, _| {
                let now = Instant::now();
                if !std::mem::take(&mut first) {
                    for change in changes {
                        let _ = send.send((change.kind, now));
                    }
                }
                Ok(if stopping.load(Ordering::Relaxed) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })
            .unwrap();
    });
    thread::sleep(settling(interval));
    let (n, quiet) = quiet_trials(source, detect.0, n);
    let (appear, close) = trials(n, interval, quiet, |kind| {
        let (got, at) = events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event");
        assert_eq!(got, kind);
        at
    });
    stop.store(true, Ordering::Relaxed);
    let _last = TcpListener::bind("127.0.0.1:29999").unwrap(); // one more change ends the loop
    watcher.join().unwrap();
    Row {
        source,
        detect: detect.0,
        consumer: "library callback",
        interval,
        appear,
        close,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe
    }
    let n: usize = std::env::var("TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(200);
    let _lab = lab::Lab::new(0, 0);
    eprintln!(
        "a quiet namespace: /proc/net/tcp is {} bytes",
        lab::proc_net_tcp_size()
    );
    assert_eq!(
        lab::procfs_listening(),
        1,
        "only the lab's own sink listens"
    );
    let mut rows = Vec::new();
    // Each detection at its default interval, then polling at others.
    let runs = [
        // Every table, unix included: the counters' 15 ms check stays for
        // them (the default interval), beside the triggers.
        ("kernel", Detect::Kernel, CHANGES_INTERVAL),
        ("changes", Detect::Changes, CHANGES_INTERVAL),
        ("poll", Detect::Poll, Duration::from_millis(50)),
        ("poll", Detect::Poll, Duration::from_millis(20)),
    ];
    // DETECT=kernel (or changes, poll) measures only those rows.
    let only = std::env::var("DETECT").ok();
    for (name, detect, interval) in runs {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for (source, choice) in [
            ("netlink", SourceChoice::Netlink),
            ("proc", SourceChoice::Proc),
        ] {
            rows.push(through_library(source, choice, (name, detect), interval, n));
            rows.push(through_binary(source, name, interval, n));
        }
    }
    println!("{n} trials per row; milliseconds");
    println!(
        "| source | detect | consumer | interval | appear p50 | p99 | max | close p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for mut row in rows {
        println!(
            "| {} | {} | {} | {} ms | {} | {} |",
            row.source,
            row.detect,
            row.consumer,
            row.interval.as_millis(),
            summary(&mut row.appear),
            summary(&mut row.close)
        );
    }
}
