//! What `sockwatch run` costs while its service starts, beside processes
//! that are none of its business: CPU time of `run --timeout 3s -- sleep`
//! (a service that never listens, while an unrelated listener exists, so
//! every tick looks for the service's own sockets) with 0 and with N
//! unrelated sleeping processes. The service tree is found from sockwatch's
//! own children, so the figure should not grow with N.
//!
//! Run: `cargo bench --bench run_tree` (as root, for a network namespace of
//! its own). UNRELATED=N changes N (default 1000).

#[path = "../tests/netns.rs"]
mod netns;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `sockwatch run` until it gives up, and returns the CPU time it
/// used (user + system, its own and its reaped service's).
fn cpu_of_run(seconds: u64) -> Duration {
    #[expect(clippy::zombie_processes, reason = "reaped by wait4, for its rusage")]
    let child = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args([
            "run",
            "--timeout",
            &format!("{seconds}s"),
            "--",
            "sleep",
            "600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our
    // child, not yet waited for.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        assert_eq!(pid, child.id() as libc::pid_t, "wait4");
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let unrelated: usize = std::env::var("UNRELATED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    netns::Netns::enter();
    let _unrelated_listener = TcpListener::bind("127.0.0.1:9999").unwrap();
    let seconds = 3;
    println!("`sockwatch run --timeout {seconds}s -- sleep 600`, one unrelated listener");
    println!("| unrelated processes | CPU time of run | share of one CPU |");
    println!("|---|---|---|");
    let mut sleepers: Vec<Child> = Vec::new();
    for count in [0, unrelated] {
        while sleepers.len() < count {
            sleepers.push(
                Command::new("sleep")
                    .arg("600")
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let used = cpu_of_run(seconds);
        println!(
            "| {count} | {:.0} ms | {:.1} % |",
            used.as_secs_f64() * 1e3,
            used.as_secs_f64() / seconds as f64 * 100.0
        );
    }
    for mut sleeper in sleepers {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
}
