//! Dumps that skip rows must not turn into wrong answers.
//!
//! The kernel resumes a multi-datagram UDP dump by position inside a hash
//! slot, and every socket on one port shares a slot: when sockets ahead of
//! the position go away between two datagrams, rows of sockets that never
//! moved are skipped, without `NLM_F_DUMP_INTR`. /proc/net/udp resumes the
//! same way. 3,000 UDP sockets on port 5000 that live throughout, and a
//! thread that binds and closes other sockets on port 5000 as fast as it
//! can, make that happen every few dumps. sockwatch must never report one
//! of the 3,000 closed, never leave one out of `list`, and never let `wait
//! --gone` succeed on one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::each_source;
use crate::support::*;

/// How many sockets live throughout.
const STABLE: usize = 3_000;
const PORT: u16 = 5000;

/// The address of stable socket `i`: 127.0.x.y.
fn stable_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The stable sockets, and a churning thread that runs until the returned
/// guard drops.
struct Churn {
    _stable: Vec<std::net::UdpSocket>,
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Churn {
    fn start() -> Churn {
        let stable = (0..STABLE)
            .map(|i| std::net::UdpSocket::bind(SocketAddrV4::new(stable_addr(i), PORT)).unwrap())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, cycles) = (stop.clone(), cycles.clone());
            // Inherits the test thread's network namespace.
            thread::spawn(move || {
                let mut n: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    // A burst of short-lived sockets on the same port (the
                    // same hash slot), most of them ahead of the stable ones.
                    let burst: Vec<std::net::UdpSocket> = (0..50)
                        .filter_map(|_| {
                            n = n.wrapping_add(1);
                            let addr =
                                Ipv4Addr::new(127, 1, (n / 250 % 250) as u8, (n % 250 + 1) as u8);
                            std::net::UdpSocket::bind(SocketAddrV4::new(addr, PORT)).ok()
                        })
                        .collect();
                    drop(burst);
                    cycles.fetch_add(1, Ordering::Relaxed);
                    // Leave the CPU to the readers now and then: the suite
                    // runs beside this, on as few as two cores.
                    thread::sleep(Duration::from_micros(200));
                }
            })
        };
        Churn {
            _stable: stable,
            stop,
            cycles,
            thread: Some(thread),
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The condition that selects only the stable sockets.
const STABLE_ONLY: &str = "socket TRANSPORT=udp PORT=5000 ADDR=127.0.0.0/16";

each_source!(churn_in_the_same_slot_never_gives_a_wrong_answer);

/// One test per source, so that only two churning threads compete for the
/// CPU with the rest of the suite.
fn churn_in_the_same_slot_never_gives_a_wrong_answer(source: &str) {
    let _ns = Netns::enter();
    let churn = Churn::start();
    never_closes_a_stable_socket(source, &churn);
    never_drops_a_stable_socket_from_list(source);
    never_satisfies_wait_gone(source);
}

fn never_closes_a_stable_socket(source: &str, churn: &Churn) {
    let mut watch = Running::start_watching(
        source,
        &["watch", "--no-initial", "--interval", "10ms", STABLE_ONLY],
    );
    let before = churn.cycles.load(Ordering::Relaxed);
    watch.no_line_for(Duration::from_secs(3));
    let cycles = churn.cycles.load(Ordering::Relaxed) - before;
    assert!(cycles > 10, "the churn ran ({cycles} bursts)");
}

fn never_drops_a_stable_socket_from_list(source: &str) {
    for attempt in 0..10 {
        // A settled list under this churn reads the table a dozen times:
        // give it longer than a quiet one on a loaded machine.
        let out = finish(command(source, &["list", STABLE_ONLY]), PROMPTLY * 3);
        assert_eq!(out.code(), 0, "{out}");
        assert_eq!(
            out.lines().len(),
            STABLE,
            "list {attempt} missed stable sockets\n{}",
            out.stderr
        );
    }
}

/// `wait --gone --timeout` on a living socket times out (124), whether or
/// not its first answer had time to settle: it is never 0.
fn never_satisfies_wait_gone(source: &str) {
    for i in [0, 1234, STABLE - 1] {
        let condition = format!("socket TRANSPORT=udp PORT=5000 ADDR={}", stable_addr(i));
        for _ in 0..3 {
            let out = run(
                source,
                &[
                    "wait",
                    "--gone",
                    "--timeout",
                    "500ms",
                    "--interval",
                    "5ms",
                    &condition,
                ],
            );
            assert_eq!(out.code(), 124, "{condition} is never gone: {out}");
        }
    }
}
