//! `--detect kernel`: perf tracepoints wake sockwatch when a socket listens
//! or binds, and the tables are read at once.
//!
//! Whether this run may use perf is asked of the kernel, not assumed: the
//! test process opens a CPU-wide perf event itself (`perf_allowed`). Where
//! it may (root, as CI runs the suite), the kernel path is asserted; where
//! it may not (an ordinary user: the suite's user namespace grants no
//! CAP_PERFMON), the same tests assert the fallback instead: `auto` says why
//! under `-v` and goes on with the socket counters, `--detect kernel` exits
//! 1 with the reason.

use std::time::{Duration, Instant};

use crate::all_netns::{Member, tcp_line};
use crate::support::*;

/// How soon a triggered read must report a new listener. The safety net
/// is set to minutes, so nothing else could.
const AT_ONCE: Duration = Duration::from_millis(100);

/// `watch --no-initial` of the inet tables, once watching: with kernel
/// triggers and the safety net ten minutes away where perf is allowed, else
/// with what `auto` falls back to at its default interval.
fn watch_inet(allowed: bool) -> Running {
    let detect: &[&str] = if allowed {
        &["--detect", "kernel", "--interval", "10min"]
    } else {
        &[]
    };
    Running::start_watching(
        "netlink",
        &[&["watch", "--no-initial"], detect, &["socket PROTO=inet*"]].concat(),
    )
}

/// The reason `--detect kernel` gives where perf is not allowed.
#[track_caller]
fn assert_names_a_refusal(text: &str) {
    assert!(
        text.contains("EACCES") || text.contains("EPERM"),
        "the step and its errno: {text}"
    );
}

#[test]
fn each_table_is_reported_at_once() {
    let _ns = Netns::enter();
    if !perf_allowed() {
        let out = run(
            "netlink",
            &["--detect", "kernel", "watch", "socket PROTO=inet*"],
        );
        assert_eq!(out.code(), 1, "{out}");
        assert!(
            out.stderr
                .starts_with("sockwatch: --detect kernel: kernel triggers cannot be used here: "),
            "{out}"
        );
        assert_names_a_refusal(&out.stderr);
        assert!(out.stdout.is_empty(), "{out}");
        return;
    }
    let mut watch = watch_inet(true);
    let expected = [
        (
            "tcp4",
            "socket PROTO=inet PORT=8081 ADDR=127.0.0.1 TRANSPORT=tcp",
        ),
        (
            "tcp6",
            "socket PROTO=inet6 PORT=8082 ADDR=::1 TRANSPORT=tcp V6ONLY=1",
        ),
        (
            "udp4",
            "socket PROTO=inet PORT=8083 ADDR=127.0.0.1 TRANSPORT=udp",
        ),
        (
            "udp6",
            "socket PROTO=inet6 PORT=8084 ADDR=::1 TRANSPORT=udp V6ONLY=1",
        ),
    ];
    let mut held = Vec::new();
    for (table, line) in expected {
        let began = Instant::now();
        held.push(match table {
            "tcp4" => tcp("127.0.0.1:8081"),
            "tcp6" => tcp("[::1]:8082"),
            "udp4" => udp("127.0.0.1:8083"),
            _ => udp("[::1]:8084"),
        });
        assert_eq!(watch.line_within(PROMPTLY), line, "{table}");
        let took = began.elapsed();
        assert!(
            took <= AT_ONCE,
            "{table}: reported after {took:?}, not at once (the safety net is 10 minutes away)"
        );
    }
    // Closes are pushed, as with every detection.
    held.clear();
    let mut closed = watch.lines(4);
    closed.sort();
    assert!(
        closed.iter().all(|l| l.starts_with("socket-closed ")),
        "{closed:?}"
    );
}

#[test]
fn auto_says_which_detection_it_took_and_why() {
    let _ns = Netns::enter();
    let mut watch = Running::start(
        "netlink",
        &["-v", "watch", "--no-initial", "socket PROTO=inet*"],
    );
    let said = watch.stderr_lines_until("sockwatch: watching", PROMPTLY);
    let watching = said.last().unwrap();
    if perf_allowed() {
        assert!(
            watching.contains("new listeners by kernel triggers"),
            "{said:#?}"
        );
        assert!(
            !said.iter().any(|l| l.contains("not using kernel triggers")),
            "{said:#?}"
        );
    } else {
        let why = said
            .iter()
            .find(|l| l.starts_with("sockwatch: not using kernel triggers: "))
            .unwrap_or_else(|| panic!("auto says why not kernel triggers: {said:#?}"));
        assert_names_a_refusal(why);
        assert!(
            watching.contains("new listeners by socket counters"),
            "{said:#?}"
        );
    }
    // Either way, a listener is seen.
    let _web = tcp("127.0.0.1:8085");
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=8085 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
}

#[test]
fn an_ordinary_user_falls_back() {
    let _ns = Netns::enter();
    let mut kernel = command("netlink", &["--detect", "kernel", "list"]);
    as_ordinary_user(&mut kernel);
    let out = finish(kernel, PROMPTLY);
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("--detect kernel: "), "{out}");
    assert_names_a_refusal(&out.stderr);

    let _web = tcp("127.0.0.1:8086");
    let mut auto = command("netlink", &["-v", "wait", "socket PORT=8086"]);
    as_ordinary_user(&mut auto);
    let out = finish(auto, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr
            .contains("sockwatch: not using kernel triggers: "),
        "{out}"
    );
    assert_names_a_refusal(&out.stderr);
}

#[test]
fn a_listener_in_another_namespace_wakes_but_is_no_event() {
    let _ns = Netns::enter();
    let allowed = perf_allowed();
    let mut watch = watch_inet(allowed);
    let elsewhere = Inside::listen(None, "127.0.0.1:8087");
    watch.no_line_for(Duration::from_millis(300));
    drop(elsewhere);
    // Ours is still seen at once.
    let _web = tcp("127.0.0.1:8088");
    assert_eq!(
        watch.line_within(if allowed {
            Duration::from_secs(1)
        } else {
            PROMPTLY
        }),
        "socket PROTO=inet PORT=8088 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
    watch.no_line_for(Duration::from_millis(100));
    watch.signal(libc::SIGTERM);
    let counts = watch.stderr_until("read the tables");
    if allowed {
        let woken: u64 = counts
            .split("woken by the kernel ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no wake-up count in {counts:?}"));
        assert!(
            woken >= 2,
            "the other namespace's listener woke us too: {counts}"
        );
    } else {
        assert!(!counts.contains("woken by the kernel"), "{counts}");
    }
}

#[test]
fn unix_listeners_are_seen_beside_kernel_triggers() {
    let _ns = Netns::enter();
    let dir = std::env::temp_dir().join(format!("sockwatch-kernel-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let mut watch = Running::start_watching("netlink", &["watch", "--no-initial"]);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    assert_eq!(
        watch.line(),
        format!(
            "socket PROTO=unix SOCKET_PATH={} TRANSPORT=stream",
            path.display()
        )
    );
    drop(listener);
    assert!(watch.line().starts_with("socket-closed PROTO=unix"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_triggers_need_an_inet_table() {
    let _ns = Netns::enter();
    let out = run(
        "netlink",
        &["--detect", "kernel", "list", "socket", "PROTO=unix"],
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains("no tracepoint announces a unix listener"),
        "{out}"
    );
}

#[test]
fn with_several_namespaces_a_trigger_reads_the_one_whose_listener_appeared() {
    let _ns = Netns::enter();
    let (a, b) = (Member::start(47320), Member::start(47320));
    let (path_a, path_b) = (a.ns_path(), b.ns_path());
    let args = [
        "--netns",
        &path_a,
        "--netns",
        &path_b,
        "--detect",
        "kernel",
        "watch",
        "--no-initial",
        "--interval",
        "10min",
        "socket PROTO=inet*",
    ];
    if !perf_allowed() {
        let out = run("netlink", &args);
        assert_eq!(out.code(), 1, "{out}");
        assert_names_a_refusal(&out.stderr);
        return;
    }
    // Each namespace's counters are checked every 10 minutes at most: only
    // the trigger can report this in time.
    let mut watch = Running::start_watching("netlink", &args);
    let _second = b.join(47321);
    let listening = Instant::now();
    assert_eq!(
        watch.line_within(PROMPTLY),
        tcp_line("socket", 47321, &b.label())
    );
    let took = listening.elapsed();
    assert!(
        took <= AT_ONCE,
        "reported {took:?} after the listener was up, not at once"
    );
    watch.no_line_for(Duration::from_millis(100));
}
