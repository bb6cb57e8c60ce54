//! `watch --exec` hooks: what their environment holds, where their output
//! goes, and how they keep up when they fall behind.

use std::collections::{HashMap, HashSet};
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

/// A hook's stdout goes to sockwatch's stderr: stdout is the event stream,
/// and `--json` readers must get JSON only.
#[test]
fn hook_output_goes_to_stderr_not_into_the_event_stream() {
    let _ns = Netns::enter();
    let mut watch = Running::start_watching(
        "netlink",
        &[
            "watch",
            "--json",
            "--no-initial",
            "--interval",
            "20ms",
            "--exec",
            "sh",
            "-c",
            r#"echo "hi from the hook: $EVENT""#,
        ],
    );
    let web = tcp("127.0.0.1:8080");
    watch.stderr_until("hi from the hook: socket");
    drop(web);
    watch.stderr_until("hi from the hook: socket-closed");
    let _next = tcp("127.0.0.1:8081");
    // Three events, and nothing else, on stdout.
    let events: Vec<String> = watch
        .lines(3)
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"));
            format!("{} {}", value["event"], value["port"])
        })
        .collect();
    assert_eq!(
        events,
        [
            r#""socket" 8080"#,
            r#""socket-closed" 8080"#,
            r#""socket" 8081"#
        ]
    );
}

/// 3,000 events with a 10 ms hook: the hook falls far behind. Events are
/// coalesced per endpoint rather than dropped, so its runs end in step with
/// the listeners: an endpoint whose last run was `socket` listens, and every
/// listener's last run was `socket`. A few summary lines say so, not one
/// line per event.
#[test]
fn a_hook_that_falls_behind_ends_in_step_with_the_listeners() {
    let _ns = Netns::enter();
    let log = std::env::temp_dir().join(format!("sockwatch-hook-behind-{}", std::process::id()));
    let _ = fs::remove_file(&log);
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
            r#"echo "$EVENT $PORT" >> "$0"; sleep 0.01"#,
            log.to_str().unwrap(),
        ],
    );
    let address = |port: u16| format!("127.0.0.1:{port}");
    // 1,500 appear, 1,000 of them close, 500 others appear: 3,000 events,
    // each step seen (the stream itself loses nothing) before the next.
    let mut first: Vec<_> = (30_000..31_500u16).map(|p| (p, tcp(&address(p)))).collect();
    watch.lines(1500);
    first.drain(..1000);
    let closes = watch.lines(1000);
    assert!(closes.iter().all(|l| l.starts_with("socket-closed")));
    let second: Vec<_> = (31_500..32_000u16).map(|p| (p, tcp(&address(p)))).collect();
    watch.lines(500);
    let listening: HashSet<u16> = first.iter().chain(&second).map(|(p, _)| *p).collect();
    let mut said = watch.stderr_lines_until("hook queue drained", Duration::from_secs(120));
    // The last run may still be writing its line.
    let until = Instant::now() + PROMPTLY;
    let told = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let mut told: HashMap<u16, String> = HashMap::new();
        for line in text.lines() {
            let (event, port) = line.split_once(' ').unwrap();
            told.insert(port.parse().unwrap(), event.to_owned());
        }
        let in_step = told
            .iter()
            .all(|(port, event)| (event == "socket") == listening.contains(port))
            && listening.iter().all(|port| told.contains_key(port));
        if in_step || Instant::now() > until {
            break told;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = fs::remove_file(&log);
    let out_of_step: Vec<String> = told
        .iter()
        .filter(|(port, event)| (*event == "socket") != listening.contains(port))
        .map(|(port, event)| format!("{port}: last run {event}"))
        .chain(
            listening
                .iter()
                .filter(|port| !told.contains_key(port))
                .map(|port| format!("{port}: listens, never told")),
        )
        .collect();
    assert!(
        out_of_step.is_empty(),
        "out of step:\n{}",
        out_of_step.join("\n")
    );
    said.extend(watch.stderr_so_far());
    let about_hooks: Vec<&String> = said.iter().filter(|l| l.contains("hook")).collect();
    assert!(
        about_hooks.len() <= 4,
        "a few summary lines, not one per event:\n{}",
        said.join("\n")
    );
}
