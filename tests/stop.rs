//! A stop (SIGTERM or SIGINT) ends `watch` within a second, with 0, whatever
//! it is doing: writing to a stdout that nobody reads, or waiting for a hook
//! that never ends.

use std::fs;
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
    // TCP: the churn tests' same-slot UDP sockets are walked by every /proc
    // read of any namespace; these would only slow them down.
    let _endpoints: Vec<_> = (0..3000)
        .map(|i| tcp(&format!("127.0.0.1:{}", 20_000 + i)))
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

/// Whether process `pid` is gone: absent, or a zombie whose parent died
/// (left for init to reap).
fn gone(pid: &str) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rsplit_once(") ") {
        None => true,
        Some((_, rest)) => rest.starts_with('Z'),
    }
}

/// Waits for `marker` to hold a whole line (the pids a hook wrote).
fn pids_in(marker: &std::path::Path) -> Vec<String> {
    let until = Instant::now() + PROMPTLY;
    loop {
        let text = fs::read_to_string(marker).unwrap_or_default();
        if text.ends_with('\n') {
            return text.split_whitespace().map(str::to_owned).collect();
        }
        assert!(Instant::now() < until, "the hook never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `watch --exec sleep 1000`: a stop ends sockwatch within a second, and the
/// hook with it (SIGTERM, then SIGKILL for one that ignores SIGTERM), with
/// whatever the hook started; hooks still waiting are dropped, and stderr
/// says so.
#[test]
fn a_stop_ends_a_watch_behind_a_hook_that_never_exits() {
    let _ns = Netns::enter();
    let marker = std::env::temp_dir().join(format!("sockwatch-hook-stop-{}", std::process::id()));
    let cases = [
        // The hook is the sleep itself.
        (libc::SIGTERM, r#"echo $$ > "$0"; exec sleep 1000"#),
        // A shell that ignores SIGTERM, as its child does: only SIGKILL,
        // sent to the hook's process group, ends both.
        (
            libc::SIGINT,
            r#"trap '' TERM; sleep 1000 & echo $$ $! > "$0"; wait"#,
        ),
    ];
    for (signal, script) in cases {
        let _ = fs::remove_file(&marker);
        let mut watch = Running::start_watching(
            "netlink",
            &[
                "watch",
                "--no-initial",
                "--interval",
                "20ms",
                "--exec",
                "sh",
                "-c",
                script,
                marker.to_str().unwrap(),
            ],
        );
        // Three events: one hook runs (forever), two wait behind it.
        let _listeners: Vec<_> = (8080..8083)
            .map(|port| tcp(&format!("127.0.0.1:{port}")))
            .collect();
        watch.lines(3);
        let pids = pids_in(&marker);
        let started = Instant::now();
        let status = watch.signal(signal);
        let took = started.elapsed();
        assert_eq!(status.code(), Some(0), "after signal {signal}: {status}");
        assert!(took < STOP_WITHIN, "signal {signal}: ended after {took:?}");
        for pid in &pids {
            assert!(
                gone(pid),
                "signal {signal}: hook process {pid} outlived sockwatch"
            );
        }
        let said = watch.stderr_until("sockwatch: stopping");
        assert!(
            said.contains("sent SIGTERM to hook sh")
                && said.contains("2 waiting hook run(s) dropped"),
            "{said}"
        );
    }
    let _ = fs::remove_file(&marker);
}
