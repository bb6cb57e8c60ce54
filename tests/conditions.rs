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
        &["unknown key 'PROT'", "PROTO, PORT, ADDR, TRANSPORT"],
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
    refused("socket PORT=70000", &["column 13", "70000", "0-65535"]);
}

#[test]
fn invalid_proto_and_transport() {
    refused(
        "socket PROTO=inet7",
        &["invalid PROTO 'inet7'", "inet or inet6"],
    );
    refused(
        "socket TRANSPORT=sctp",
        &["invalid TRANSPORT 'sctp'", "tcp or udp"],
    );
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
