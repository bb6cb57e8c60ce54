//! Bad conditions: exit 2, with the position and what was expected. These
//! need no sockets, only the parser.

use crate::support::*;

/// Runs `wait` (and `list`) with a bad condition.
#[track_caller]
fn refused(condition: &str, expected: &[&str]) {
    for command in ["wait", "list"] {
        let out = run("netlink", &[command, condition]);
        assert_eq!(out.code(), 2, "{command} {condition:?}: {out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert!(out.stderr.contains("column"), "names the position: {out}");
        for part in expected {
            assert!(
                out.stderr.contains(part),
                "{condition:?}: stderr lacks {part:?}:\n{out}"
            );
        }
    }
}

#[test]
fn mixed_and_or_without_parentheses() {
    refused(
        "socket PORT=1 and socket PORT=2 or socket PORT=3",
        &["column 33", "cannot mix 'and' and 'or'"],
    );
}

#[test]
fn unknown_key_lists_the_known_ones() {
    refused(
        "socket PROT=inet",
        &[
            "unknown key 'PROT'",
            "PROTO, PORT, ADDR, SOCKET_PATH, TRANSPORT",
        ],
    );
}

#[test]
fn unknown_event() {
    refused(
        "sockt PORT=80",
        &["column 1", "unknown event 'sockt'", "'socket'"],
    );
}

#[test]
fn port_out_of_range() {
    refused("socket PORT=70000", &["column 13", "70000", "1-65535"]);
}

#[test]
fn invalid_proto_and_transport() {
    refused(
        "socket PROTO=inet7",
        &["invalid PROTO 'inet7'", "inet, inet6 or unix"],
    );
    refused(
        "socket TRANSPORT=sctp",
        &[
            "invalid TRANSPORT 'sctp'",
            "tcp, udp, stream, seqpacket or dgram",
        ],
    );
}

/// Unix sockets have a name, not a port or address: asking for both is a
/// usage error, not an endless wait.
#[test]
fn unix_with_port_or_addr_is_refused() {
    refused(
        "socket PROTO=unix PORT=80",
        &[
            "column 19",
            "PORT=80 can never hold together with PROTO=unix",
        ],
    );
    refused("socket unix 80", &["column 13", "no PORT"]);
    refused("socket PROTO=unix ADDR=127.0.0.1", &["column 19", "ADDR"]);
    refused("socket PROTO=inet SOCKET_PATH=/run/x", &["no SOCKET_PATH"]);
}

#[test]
fn unbalanced_parentheses() {
    refused("(socket PORT=80", &["column 1", "never closed"]);
    refused("socket PORT=80)", &["column 15", "')'"]);
}

#[test]
fn dangling_operator() {
    refused("socket PORT=80 and", &["column 16", "after 'and'"]);
    refused("or socket PORT=80", &["column 1", "found 'or'"]);
}

/// Terms that can never hold are refused at once (exit 2, with the
/// position), instead of a `wait` that never ends.
#[test]
fn addresses_that_no_listener_has() {
    refused(
        "socket ADDR=localhost",
        &[
            "column 13",
            "addresses, not host names",
            "ADDR=127.0.0.1",
            "ADDR=::1",
        ],
    );
    refused(
        "socket ADDR=[::]:3000",
        &["column 13", "with a port", "ADDR=:: PORT=3000"],
    );
    refused("socket ADDR=0x7f000001", &["column 13", "dotted decimal"]);
    refused(
        "socket ADDR=fe80::1%lo",
        &["column 13", "zone ids", "ADDR=fe80::1"],
    );
    refused(
        "socket ADDR=[::1]/128",
        &["column 13", "brackets", "ADDR=::1/128"],
    );
    refused("socket ADDR=local*", &["column 13", "'l' is in no address"]);
}

#[test]
fn two_ports_in_one_clause() {
    refused(
        "socket PORT=80 PORT=81",
        &[
            "column 16",
            "PORT=81 can never hold together with PORT=80",
            "'or'",
        ],
    );
    refused(
        "socket TRANSPORT=tcp TRANSPORT=udp",
        &["column 22", "one transport"],
    );
}

#[test]
fn ports_and_pids_that_are_never_listening() {
    refused("socket PORT=0", &["column 13", "PORT 0 never listens"]);
    refused("socket PORT=eighty*", &["column 13", "'e' is not a digit"]);
    refused("socket PORT=abc*", &["column 13", "'a' is not a digit"]);
    refused(
        "socket PORT=8*-90",
        &["column 13", "a range takes two numbers, not globs"],
    );
    refused(
        "socket PORT=08*",
        &["column 13", "matches no port", "leading zeros"],
    );
    refused("socket PID=0", &["column 12", "PID 0 is not a process"]);
}

#[test]
fn globs_that_match_no_value() {
    refused(
        r"socket TRANSPORT=tcp\",
        &["column 21", "dangling backslash"],
    );
    refused(
        "socket TRANSPORT=x*",
        &[
            "column 18",
            "matches none of tcp, udp, stream, seqpacket, dgram",
        ],
    );
}

/// 50,000 parentheses once overflowed the stack (exit 134).
#[test]
fn deep_nesting_is_a_usage_error() {
    let deep = "(".repeat(50_000);
    refused(&deep, &["column 65", "nest deeper than 64 levels"]);
}

/// The column counts the quotes the user typed.
#[test]
fn caret_counts_quote_characters() {
    let out = run("netlink", &["wait", r#"socket P""ORT=x"#]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("column 15"), "{out}");
    let caret = out.stderr.lines().last().unwrap();
    assert_eq!(caret.len(), 2 + 14 + 1, "the caret under x: {out}");
}

/// A megabyte of condition gets an error of a few lines, not a megabyte.
#[test]
fn huge_condition_errors_are_clipped() {
    // One argument may hold at most 128 KiB: give the megabyte in pieces,
    // joined as words.
    let piece = "socket PORT=80 or ".repeat(100_000 / 18);
    let mut args = vec!["wait"];
    args.extend(std::iter::repeat_n(piece.as_str(), 10));
    args.push("socket PORT=x");
    let out = run("netlink", &args);
    assert_eq!(
        out.code(),
        2,
        "{}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    assert!(out.stderr.contains("invalid PORT 'x'"), "{}", out.stderr);
    assert!(
        out.stderr.len() < 1024,
        "{} bytes of stderr",
        out.stderr.len()
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    assert!(lines[1].starts_with("  ..."), "cut before: {}", out.stderr);
    assert!(lines[1].ends_with("socket PORT=x"), "{}", out.stderr);
    assert_eq!(lines[2].trim(), "^", "{}", out.stderr);
    assert_eq!(
        &lines[1][lines[2].len() - 1..],
        "x",
        "the caret under x: {}",
        out.stderr
    );
}

/// Words echoed in an error cannot forge a line of a log.
#[test]
fn errors_escape_control_characters() {
    let out = run(
        "netlink",
        &["wait", "socket PROTO=\"x\nsockwatch: ready\u{1b}[2J\""],
    );
    assert_eq!(out.code(), 2, "{out}");
    assert!(!out.stderr.contains('\u{1b}'), "{out}");
    assert!(out.stderr.contains(r"x\nsockwatch: ready\x1b[2J"), "{out}");
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.starts_with("sockwatch: ready")),
        "{out}"
    );
}

#[test]
fn messages_say_what_to_write() {
    refused(
        r#""socket" PORT=80"#,
        &["column 1", "the event name is written bare"],
    );
    refused(
        "socket PORT=80 AND socket PORT=81",
        &["column 16", "operators are lower case: write 'and'"],
    );
    refused(
        "socket port=80",
        &["column 8", "keys are upper case, write PORT=80"],
    );
    refused("socket 80", &["column 8", "write PORT=80"]);
    refused("PORT=80", &["column 1", "write 'socket PORT=80'"]);
}

/// `COMM=""` (the empty name) is a value; an unquoted `COMM=` is not.
#[test]
fn quoted_empty_value_is_a_value() {
    let _ns = Netns::enter();
    let out = run("netlink", &["list", r#"socket COMM="""#]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    refused("socket COMM=", &["column 13", "expected a value for COMM"]);
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in ["list", "watch", "wait", "run"] {
        let out = run("netlink", &[command, "--help"]);
        assert_eq!(out.code(), 0, "{out}");
        assert!(out.stdout.contains("Examples:"), "{command}: {out}");
        assert!(
            out.stdout.contains(&format!("sockwatch {command}")),
            "{command}: {out}"
        );
    }
}
