//! `--detect`: new listeners noticed through the socket counters
//! (`changes`) or by reading every interval (`poll`); kernel triggers have
//! tests of their own (`kernel.rs`).

use std::fs;
use std::time::Duration;

use crate::each_source;
use crate::support::*;

each_source!(
    changes_and_poll_both_see_appear_and_close,
    a_balanced_restart_is_seen,
    an_idle_watch_does_not_read_the_tables,
);

fn changes_and_poll_both_see_appear_and_close(source: &str) {
    let _ns = Netns::enter();
    for detect in ["changes", "poll"] {
        let mut watch = Running::start_watching(
            source,
            &[
                "--detect",
                detect,
                "watch",
                "--no-initial",
                "--interval",
                "20ms",
            ],
        );
        let web = tcp("[::1]:8080");
        assert_eq!(
            watch.line(),
            v6(
                source,
                "socket PROTO=inet6 PORT=8080 ADDR=::1 TRANSPORT=tcp",
                // The kernel sets IPV6_V6ONLY on a socket bound to a
                // concrete IPv6 address.
                true
            ),
            "{detect}"
        );
        let dns = udp("127.0.0.1:53");
        assert_eq!(
            watch.line(),
            "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
            "{detect}"
        );
        drop(web);
        assert!(
            watch
                .line()
                .starts_with("socket-closed PROTO=inet6 PORT=8080")
        );
        drop(dns);
        assert!(watch.line().starts_with("socket-closed PROTO=inet PORT=53"));
    }
}

/// A listener closing and another opening in the same instant leave every
/// counter where it was. Through netlink the pushed close makes the next
/// tick read; through /proc the safety net (10 s) finds it.
fn a_balanced_restart_is_seen(source: &str) {
    let _ns = Netns::enter();
    let old = tcp("127.0.0.1:8080");
    let mut watch = Running::start_watching(
        source,
        &[
            "--detect",
            "changes",
            "watch",
            "--no-initial",
            "--interval",
            "20ms",
        ],
    );
    // Both sockets exist before the swap, so only listen() and close()
    // happen in the instant between two checks.
    let new = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    new.bind(
        &"127.0.0.1:9090"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    drop(old);
    new.listen(16).unwrap();
    let within = match source {
        "netlink" => PROMPTLY,
        _ => Duration::from_secs(15),
    };
    let mut lines = vec![watch.line_within(within), watch.line_within(within)];
    lines.sort();
    assert_eq!(
        lines,
        [
            "socket PROTO=inet PORT=9090 ADDR=127.0.0.1 TRANSPORT=tcp",
            "socket-closed PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp",
        ]
    );
}

/// The reads an idle `watch` makes after its first answer, as `-v` counts
/// them when it ends.
fn reads_while_idle(source: &str, detect: &str, idle: Duration) -> u64 {
    let mut watch =
        Running::start_watching(source, &["--detect", detect, "watch", "--interval", "20ms"]);
    watch.still_running_after(idle);
    watch.signal(libc::SIGTERM);
    let line = watch.stderr_until("read the tables");
    line.split(", ")
        .nth(1)
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

fn an_idle_watch_does_not_read_the_tables(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:8080");
    let idle = Duration::from_millis(1500);
    let gated = reads_while_idle(source, "changes", idle);
    assert_eq!(gated, 0, "nothing moved, and the safety net is 2 s away");
    let polled = reads_while_idle(source, "poll", idle);
    assert!(polled >= 20, "poll reads every 20 ms: {polled}");
}

#[test]
fn unreadable_counters_fall_back_to_polling() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:8080");
    // A /proc without net/sockstat: copies of this namespace's tables.
    let root = std::env::temp_dir().join(format!("sockwatch-no-sockstat-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("net")).unwrap();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = fs::read(format!("/proc/thread-self/net/{table}")).unwrap();
        fs::write(root.join("net").join(table), text).unwrap();
    }
    let root_arg = root.display().to_string();
    let mut watch = Running::start(
        "proc",
        &[
            "-v",
            "--proc-root",
            &root_arg,
            "watch",
            "--interval",
            "20ms",
        ],
    );
    let said = watch.stderr_until("cannot read the socket counters");
    assert!(said.contains("net/sockstat"), "{said}");
    let watching = watch.stderr_until("sockwatch: watching");
    assert!(
        watching.contains("by reading the tables every interval"),
        "{watching}"
    );
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
    drop(watch);
    fs::remove_dir_all(&root).unwrap();
}
