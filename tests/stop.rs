//! A stop (SIGTERM or SIGINT) ends `watch` within a second, with 0, whatever
//! it is doing: writing to a stdout that nobody reads, for one.

use std::os::fd::AsRawFd;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// What "within a second" allows.
const STOP_WITHIN: Duration = Duration::from_secs(1);

/// Sends `signal` to `child`; its exit status, and how long it took to end.
fn stop(child: &mut Child, signal: i32) -> (ExitStatus, Duration) {
    let started = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let status = wait_deadline(child, PROMPTLY);
    (status, started.elapsed())
}

/// How many bytes wait in the pipe whose read end is `fd`, and how many it
/// holds at most.
fn pipe_fill(fd: &impl AsRawFd) -> (usize, usize) {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int, which `waiting` is, to a valid
    // address; F_GETPIPE_SZ takes no argument.
    let (read, size) = unsafe {
        (
            libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut waiting),
            libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ),
        )
    };
    assert!(read == 0 && size > 0, "FIONREAD or F_GETPIPE_SZ failed");
    (waiting as usize, size as usize)
}

/// `sockwatch watch --json | sleep 600` with 3,000 endpoints: the pipe
/// fills up and sockwatch waits for a reader that never reads. A stop still
/// ends it at once.
#[test]
fn a_stop_ends_a_watch_whose_stdout_nobody_reads() {
    let _ns = Netns::enter();
    let _endpoints: Vec<_> = (0..3000)
        .map(|i| udp(&format!("127.0.0.1:{}", 20_000 + i)))
        .collect();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut watch = command("netlink", &["watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held, never read.
        let stdout = watch.stdout.take().unwrap();
        let until = Instant::now() + PROMPTLY;
        loop {
            let (waiting, size) = pipe_fill(&stdout);
            // Full: less room than one page is left.
            if waiting + 4096 > size {
                break;
            }
            assert!(
                Instant::now() < until,
                "the pipe never filled: {waiting} of {size} bytes"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (status, took) = stop(&mut watch, signal);
        assert_eq!(status.code(), Some(0), "after signal {signal}: {status}");
        assert!(
            took < STOP_WITHIN,
            "signal {signal}: ended {took:?} after the stop"
        );
    }
}
