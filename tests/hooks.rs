//! `watch --exec` hooks: what their environment holds.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::*;

/// A hook's environment has the event's fields and nothing stale: variables
/// of the same names that sockwatch itself inherited are removed when the
/// event has no value for them.
#[test]
fn hooks_see_no_stale_fields_from_sockwatchs_own_environment() {
    let _ns = Netns::enter();
    let log = std::env::temp_dir().join(format!("sockwatch-hook-env-{}", std::process::id()));
    let _ = fs::remove_file(&log);
    let mut command = command(
        "netlink",
        &[
            "-v",
            "watch",
            "--no-initial",
            "--interval",
            "20ms",
            "--exec",
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s|%s\n' "$EVENT" "$PORT" "${V6ONLY-unset}" "${PID-unset}" "${COMM-unset}" >> "$0""#,
            log.to_str().unwrap(),
        ],
    );
    command
        .env("V6ONLY", "1")
        .env("PID", "1")
        .env("COMM", "evil");
    let mut watch = Running::spawn(command);
    watch.stderr_until("sockwatch: watching");
    let web = tcp("127.0.0.1:8080");
    watch.line();
    drop(web);
    watch.line();
    let until = Instant::now() + PROMPTLY;
    let text = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > until {
            break text;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = fs::remove_file(&log);
    assert_lines(
        &text.lines().collect::<Vec<_>>(),
        &[
            "socket|8080|unset|unset|unset",
            "socket-closed|8080|unset|unset|unset",
        ],
    );
}
